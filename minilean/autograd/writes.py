"""Writes into a tensor's array between a forward and its backward, found before they do harm.

Optimizers, EMA, ``load_state_dict``, the init functions and the VQ-VAE's moving-average
codebook write new values into a tensor's array in place. An op keeps its inputs' arrays for
backward (Mul keeps both factors), so a write between a forward and its backward would have
backward use values the forward never saw: a wrong gradient, without a word. (GAN-style code
that steps one optimizer between two backwards through one graph meets this.)

PyTorch counts versions per storage. Here one clock counts writes: each graph node remembers
the clock when it was made (``Node.made_at``), each written memory when it was last written
(``last_written``), and the graph walk refuses a node with an input whose memory was written
after it. Memory, not tensor: ``p.detach()``, the tensors of ``state_dict()`` and a view made
under ``no_grad`` are other tensors around the weight's memory, and a forward through one of
them keeps that memory all the same. A walk in which nothing was written since its nodes were
made (every training step, which writes the weights after backward) costs one comparison per
node.

Replacing ``tensor.data`` by another array is no such write: the forward's arrays stay as
they were, and backward uses them.
"""
import weakref

clock = 0  # the number of writes so far
# id(the object that owns a written memory) -> the clock when it was last written; an entry
# goes when its owner does (``_forget``), so that a later object with its id starts unwritten
_written = {}
_watchers = {}


def _owner(array):
    """The object that owns ``array``'s memory: the array itself, or what its views lead to."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


def _forget(key, watcher):
    if _watchers.get(key) is watcher:
        del _watchers[key], _written[key]


def wrote(tensors):
    """Say that the arrays of ``tensors`` were just written in place."""
    global clock
    clock += 1
    for tensor in tensors:
        owner = _owner(tensor.data)
        key = id(owner)
        if key not in _written:
            try:
                _watchers[key] = weakref.ref(owner, lambda watcher, key=key: _forget(key, watcher))
            except TypeError:  # an owner that takes no weak reference: its entry stays
                pass
        _written[key] = clock


def last_written(tensor):
    """The clock when the memory of ``tensor``'s array was last written (0: never)."""
    return _written.get(id(_owner(tensor.data)), 0)


def written_after(node, tensor, role="input"):
    """The error for a backward through ``node`` whose input (or kept output) ``tensor`` was
    written since."""
    return RuntimeError(f"backward through {node!r}: its {role} of shape {tuple(tensor.shape)} "
                        f"was written in place after this forward (by an optimizer step, an "
                        f"EMA swap, load_state_dict or an init), so its gradient would use the "
                        f"new values; call backward before changing the weights, or run the "
                        f"forward again")
