"""A Ctrl-C (or a stop signal) that Python could not raise where it landed, kept and raised
at the next point where the work can stop.

Python raises a signal's ``KeyboardInterrupt`` in whatever Python code runs when it arrives.
In a garbage collector's callback (hypothesis installs one, which runs all through the proofs),
a weak reference's callback or a ``__del__``, no exception can leave: Python printed it as
"Exception ignored in ..." with a traceback and dropped it, and the command ran on to its end
and exited 0, as if no Ctrl-C had come. ``catch_lost_interrupts`` keeps such an interrupt
instead, and ``raise_lost_interrupt`` raises it (between two statements of the proofs; at the
command's end, where ``minilean/cli.py`` checks).
"""
import contextlib
import sys

_lost = []  # the interrupts kept since the last raise_lost_interrupt


def _keep_interrupts(previous):
    """An unraisable hook that keeps a ``KeyboardInterrupt`` and leaves the rest to
    ``previous``."""
    def hook(unraisable):
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            _lost.append(unraisable.exc_value or unraisable.exc_type())
        else:
            previous(unraisable)
    return hook


@contextlib.contextmanager
def catch_lost_interrupts():
    """Keep the interrupts lost inside the block for ``raise_lost_interrupt``; the hook before
    it is put back after."""
    previous = sys.unraisablehook
    sys.unraisablehook = _keep_interrupts(previous)
    try:
        yield
    finally:
        sys.unraisablehook = previous
        _lost.clear()


def raise_lost_interrupt():
    """Raise the first interrupt kept by ``catch_lost_interrupts`` since the last call, if any
    (a stop signal's ``Stopped`` as it was, with its signal's number)."""
    if _lost:
        interrupt = _lost[0]
        _lost.clear()
        raise interrupt.with_traceback(None)
