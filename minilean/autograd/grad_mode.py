"""Grad mode: whether ops record the graph that ``backward`` walks.

Each thread has its own, on at the thread's start, as in PyTorch: a ``no_grad`` block in one
thread (sampling while another thread trains) leaves the others recording.
"""
import contextlib
import functools
import inspect
import threading

import numpy

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


class set_grad_enabled(_GradMode):
    """Grad mode set to ``mode`` at once, as PyTorch's: called alone, ``set_grad_enabled(False)``
    switches recording off in this thread until it is switched on again; a ``with`` block
    puts back on its way out the mode there was before the call, and a decorated function
    runs in ``mode`` (leaving the mode as it was when decorated)."""

    def __new__(cls, mode):
        return super().__new__(cls)  # a mode, not a function to decorate without parentheses

    def __init__(self, mode):
        if not isinstance(mode, bool):  # PyTorch's check: "false", read from a flag, is truthy
            raise TypeError(f"set_grad_enabled takes a bool, got {mode!r}")
        self.enabled = mode
        self._before_call = is_grad_enabled()  # what a ``with`` entered next restores
        _thread.enabled = mode

    def __call__(self, function):
        _thread.enabled, self._before_call = self._before_call, None
        return super().__call__(function)

    def __enter__(self):
        before, self._before_call = self._before_call, None
        super().__enter__()
        if before is not None:  # the first entry after the call: the mode before the call
            _thread.saved[-1] = before


class inference_mode(no_grad):
    """``no_grad`` under PyTorch's name for evaluation and sampling. PyTorch's inference mode
    is a stricter no_grad: the tensors made in it can never enter a graph later (an error
    if a recorded op saves one for backward), which lets it skip some bookkeeping. Here
    they are plain tensors, usable anywhere, and there is no bookkeeping to skip (no_grad
    already saves nothing for backward). ``inference_mode(False)`` records the graph, as
    ``enable_grad`` (PyTorch's leaves inference mode, which turns grad mode on), so that
    ``inference_mode(not training)`` reads as in PyTorch; a mode that is no bool is refused
    (PyTorch's decorates "false" as if it were a function). NumPy's bools are bools here, as
    for ``train`` and ``requires_grad`` (PyTorch's decorates them too)."""

    def __new__(cls, mode=True):
        if isinstance(mode, (bool, numpy.bool_)):
            return super().__new__(cls)
        if not callable(mode):
            raise TypeError(f"inference_mode takes a bool mode or a function to decorate, "
                            f"got {type(mode).__name__} {mode!r}")
        return super().__new__(cls, mode)  # @inference_mode, without parentheses

    def __init__(self, mode=True):
        self.enabled = not mode
