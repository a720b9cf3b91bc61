"""Grad mode: whether ops record the graph that ``backward`` walks."""
import contextlib

_enabled = True


def is_grad_enabled():
    return _enabled


class _GradMode(contextlib.ContextDecorator):
    """Grad mode set to ``enabled`` inside a ``with`` block or a decorated function, and put
    back as it was on the way out. As PyTorch 2's: one instance may be entered again, also
    inside itself (the modes to restore are a stack, so each exit restores its own entry's),
    and the class decorates without parentheses (``@no_grad`` as ``@no_grad()``)."""
    enabled = None  # set by each subclass

    def __new__(cls, function=None):
        mode = super().__new__(cls)
        mode._previous = []
        return mode if function is None else mode(function)  # __call__: ContextDecorator's

    def __enter__(self):
        global _enabled
        self._previous.append(_enabled)
        _enabled = self.enabled

    def __exit__(self, *exception):
        global _enabled
        _enabled = self._previous.pop()


class no_grad(_GradMode):
    """Run a block without recording the graph (sampling, evaluation, optimizer steps)."""
    enabled = False


class enable_grad(_GradMode):
    """Record the graph inside a ``no_grad`` block."""
    enabled = True
