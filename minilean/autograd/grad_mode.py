"""Grad mode: whether ops record the graph that ``backward`` walks.

Each thread has its own, on at the thread's start, as in PyTorch: a ``no_grad`` block in one
thread (sampling while another thread trains) leaves the others recording.
"""
import contextlib
import functools
import inspect
import threading

_thread = threading.local()  # .enabled, and .saved: the modes the open blocks will restore


def is_grad_enabled():
    return getattr(_thread, "enabled", True)


class _GradMode(contextlib.ContextDecorator):
    """Grad mode set to ``enabled`` inside a ``with`` block or a decorated function, and put
    back as it was on the way out. One instance may be entered again (as in PyTorch 2), also
    inside itself (blocks nest, so the thread's modes to restore are one stack: each exit
    restores its own entry's; PyTorch's instance keeps one, and leaves grad off there), and
    the class decorates without parentheses (``@no_grad`` as ``@no_grad()``)."""
    enabled = None  # set by each subclass

    def __new__(cls, function=None):
        mode = super().__new__(cls)
        return mode if function is None else mode(function)  # __call__: ContextDecorator's

    def __call__(self, function):
        """``function`` run in this mode; a generator function's body in it at each resume,
        as PyTorch's decorators do, while the caller's code between its yields keeps the
        caller's mode (ContextDecorator's wrapper would set the mode only while the generator
        object is made, before any of the body runs)."""
        if not inspect.isgeneratorfunction(function):
            return super().__call__(function)

        @functools.wraps(function)
        def generator(*args, **kwargs):
            body = function(*args, **kwargs)
            resume = functools.partial(body.send, None)
            while True:
                try:
                    with self:
                        value = resume()
                except StopIteration as stop:
                    return stop.value
                try:
                    sent = yield value
                except BaseException as error:  # throw() and close(): raised in the body
                    resume = functools.partial(body.throw, error)
                else:
                    resume = functools.partial(body.send, sent)
        return generator

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
