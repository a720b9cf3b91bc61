"""Writes into a tensor's array between a forward and its backward, found before they do harm.

Optimizers, EMA, ``load_state_dict``, the init functions and the VQ-VAE's moving-average
codebook write new values into a tensor's array in place. An op keeps its inputs' arrays for
backward (Mul keeps both factors), so a write between a forward and its backward would have
backward use values the forward never saw: a wrong gradient, without a word. (GAN-style code
that steps one optimizer between two backwards through one graph meets this.)

PyTorch counts versions per tensor. Here one clock counts writes: each graph node remembers
the clock when it was made (``Node.made_at``), each written tensor when it was last written
(``Tensor.written_at``), and the graph walk refuses a node with an input written after it.
A walk in which nothing was written since its nodes were made (every training step, which
writes the weights after backward) costs one comparison per node.

Replacing ``tensor.data`` by another array is no such write: the forward's arrays stay as
they were, and backward uses them.
"""
clock = 0  # the number of writes so far


def wrote(tensors):
    """Say that the arrays of ``tensors`` were just written in place."""
    global clock
    clock += 1
    for tensor in tensors:
        tensor.written_at = clock


def written_after(node, tensor):
    """The error for a backward through ``node`` whose input ``tensor`` was written since."""
    return RuntimeError(f"backward through {node!r}: its input of shape {tuple(tensor.shape)} "
                        f"was written in place after this forward (by an optimizer step, an "
                        f"EMA swap, load_state_dict or an init), so its gradient would use the "
                        f"new values; call backward before changing the weights, or run the "
                        f"forward again")
