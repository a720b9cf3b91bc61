"""Grad mode: whether ops record the graph that ``backward`` walks."""
import contextlib

_enabled = True


def is_grad_enabled():
    return _enabled


@contextlib.contextmanager
def no_grad():
    """Run a block without recording the graph (sampling, evaluation, optimizer steps)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Record the graph inside a ``no_grad`` block."""
    global _enabled
    previous, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = previous
