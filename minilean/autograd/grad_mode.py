"""Grad mode: whether ops record the graph that ``backward`` walks.

Each thread has its own, on at the thread's start, as in PyTorch: a ``no_grad`` block in one
thread (sampling while another thread trains) leaves the others recording.
"""
import contextlib
import threading

_thread = threading.local()  # .enabled, and .saved: the modes the open blocks will restore


def is_grad_enabled():
    return getattr(_thread, "enabled", True)


class _GradMode(contextlib.ContextDecorator):
    """Grad mode set to ``enabled`` inside a ``with`` block or a decorated function, and put
    back as it was on the way out. As PyTorch 2's: one instance may be entered again, also
    inside itself (blocks nest, so the thread's modes to restore are one stack: each exit
    restores its own entry's), and the class decorates without parentheses (``@no_grad`` as
    ``@no_grad()``)."""
    enabled = None  # set by each subclass

    def __new__(cls, function=None):
        mode = super().__new__(cls)
        return mode if function is None else mode(function)  # __call__: ContextDecorator's

    def __enter__(self):
        _thread.__dict__.setdefault("saved", []).append(is_grad_enabled())
        _thread.enabled = self.enabled

    def __exit__(self, *exception):
        _thread.enabled = _thread.saved.pop()


class no_grad(_GradMode):
    """Run a block without recording the graph (sampling, evaluation, optimizer steps)."""
    enabled = False


class enable_grad(_GradMode):
    """Record the graph inside a ``no_grad`` block."""
    enabled = True
