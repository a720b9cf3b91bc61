"""Gradient clipping by the global norm over all parameters (PyTorch's ``clip_grad_norm_``)."""
import math

from minilean.backend import array_module


def clip_grad_norm_(parameters, max_norm, eps=1e-6):
    """Scale all gradients by min(1, max_norm / (norm + eps)), where norm is the 2-norm of
    every gradient element together; returns that norm (before clipping) as a float.

    One norm over all parameters keeps the update's direction; clipping each tensor alone
    would not. Parameters without a gradient are skipped.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    grads = [param.grad.data for param in parameters if param.grad is not None]
    if not grads:
        return 0.0
    # summed on the device in float64, then one transfer to the host
    total_norm = math.sqrt(float(sum((grad.astype("float64") ** 2).sum() for grad in grads)))
    scale = min(1.0, max_norm / (total_norm + eps))
    if scale < 1.0:
        for grad in grads:
            grad *= array_module(grad).asarray(scale, dtype=grad.dtype)
    return total_norm
