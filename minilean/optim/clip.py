"""Gradient clipping by the global norm over all parameters (PyTorch's ``clip_grad_norm_``)."""
from minilean.autograd.tensor import Tensor
from minilean.backend import array_module
from minilean.optim.optimizer import fused_or_plain

fast_clip_arrays = None  # a fused CUDA version of clip_arrays, set by minilean.cuda


def clip_grad_norm_(parameters, max_norm, *, eps=1e-6):
    """Scale all gradients by min(1, max_norm / (norm + eps)), where norm is the 2-norm of
    every gradient element together; returns that norm (before clipping) as a 0-d float64
    tensor on the gradients' device. ``eps`` is keyword-only: PyTorch's third argument is
    ``norm_type``, so ``clip_grad_norm_(params, 1.0, 2.0)`` is refused, not read as eps=2.

    One norm over all parameters keeps the update's direction; clipping each tensor alone
    would not. The norm and the scale stay on the device (no host copy, so a GPU training
    step does not wait for it); ``.item()`` the result to log it. Parameters without a
    gradient are skipped. With fast kernels on, "cuda" gradients of float32 or float64, all
    C-contiguous and none listed twice, are clipped in two passes over them, four launches in
    all (``minilean/cuda/clip.py``), inside a CUDA graph too; other gradients take the plain
    clipping (``fused_or_plain``).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    if isinstance(parameters, Tensor):  # one tensor, as PyTorch takes it, not its rows
        parameters = [parameters]
    grads = [param.grad.data for param in parameters if param.grad is not None]
    if not grads:
        return Tensor(0.0, dtype="float64")
    return Tensor._wrap(fused_or_plain(fast_clip_arrays, clip_arrays, grads, max_norm, eps),
                        False)


def clip_arrays(grads, max_norm, eps):
    """Clip the arrays ``grads`` in place; return their norm before clipping (0-d float64)."""
    xp = array_module(grads[0])
    # summed in float64 so that many float32 squares do not lose the small ones
    total_norm = xp.sqrt(sum((grad.astype(xp.float64) ** 2).sum() for grad in grads))
    scale = xp.minimum(1.0, max_norm / (total_norm + eps))
    for grad in grads:
        grad *= scale.astype(grad.dtype)
    return total_norm
