"""Losses as fused primitives: mean squared error."""
import warnings

from minilean.autograd.function import Function, tensor_input
from minilean.autograd.elementwise import as_tensors, check_broadcast, floating
from minilean.autograd.reduce import narrowed, widened

REDUCTIONS = ("mean", "sum", "none")


class MseLoss(Function):
    """L = reduce((input - target)^2);  dL/dinput = 2 (input - target) * s = -dL/dtarget,

    with s = 1/n for ``mean`` (n elements), 1 for ``sum``, and the output gradient for ``none``.
    float16 is summed and scaled in float32 (``widened``): n may be past its largest number.
    """
    @staticmethod
    def forward(ctx, input, target, reduction="mean"):
        diff = input - target
        squared = diff * diff
        if ctx.recording:
            ctx.diff, ctx.reduction = diff, reduction
        if reduction == "none":
            return squared
        wide = widened(squared)
        return narrowed(wide.mean() if reduction == "mean" else wide.sum(), squared.dtype)

    @staticmethod
    def backward(ctx, grad):
        need_input, need_target = ctx.needs_input_grad
        # an empty input's gradient is empty whatever the scale (its mean loss is 0/0 = nan)
        scale = 2 / max(ctx.diff.size, 1) if ctx.reduction == "mean" else 2
        grad_input = narrowed((widened(grad) * scale) * ctx.diff, grad.dtype)
        return (grad_input if need_input else None), (-grad_input if need_target else None)


def check_target_shape(name, input, target):
    """A target of another shape than the input: refused in the loss's own words where the two
    do not broadcast (the op inside the loss, ``sub`` or ``mul``, which the caller never
    called, named itself; for mse_loss it was NumPy), else PyTorch's warning: broadcasting
    (N, 1) against (N,) makes an (N, N) loss, a mean over every pair and no error."""
    if not hasattr(input, "shape"):  # a list failed on its missing .shape (an array is taken)
        tensor_input(input, name)
    if hasattr(target, "shape") and tuple(target.shape) != tuple(input.shape):
        check_broadcast(name, (tuple(input.shape), tuple(target.shape)))
        warnings.warn(f"{name}: target shape {tuple(target.shape)} differs from input shape "
                      f"{tuple(input.shape)}; they are broadcast, which is likely not what is "
                      f"meant", UserWarning, stacklevel=3)


def check_reduction(reduction):
    """A loss's ``reduction`` must be one of ``REDUCTIONS``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def mse_loss(input, target, *, reduction="mean"):  # keyword-only: PyTorch's 3rd is size_average
    check_reduction(reduction)
    check_target_shape("mse_loss", input, target)
    # both in the result's dtype (an int64 target with a float32 input gives float32, as in
    # PyTorch; NumPy alone would compute it in float64), float32 when both are integers
    input, target = map(floating, as_tensors(input, target))
    return MseLoss.apply(input, target, reduction=reduction)
