r"""Normalisation layers as fused primitives: layer_norm and group_norm.

Both standardise x over a group of n elements and then scale and shift per channel:

    mu = mean(x),  sigma^2 = mean((x - mu)^2),  r = 1 / sqrt(sigma^2 + eps),
    xhat = (x - mu) r,  y = w * xhat + b.

With gxhat = dy * w, differentiating through mu and sigma^2 gives the closed form

    dx = r (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)),
    dw = sum(dy * xhat),  db = sum(dy)   (over everything but the channel axis).

One fused backward is a few passes over x, where the same ops composed from primitives
would record a dozen nodes and keep their intermediates alive. The statistics are computed in
float32 or wider: float16 sums over thousands of elements lose the mean to rounding.
"""
from minilean.autograd.function import Function
from minilean.backend import array_module


def _standardize(x, axes, eps):
    """xhat = (x - mean) / sqrt(var + eps) over ``axes`` and r = 1 / sqrt(var + eps),
    both in float32 or wider."""
    xp = array_module(x)
    x = x.astype(xp.promote_types(x.dtype, xp.float32), copy=False)
    centered = x - x.mean(axis=axes, keepdims=True)
    inv_std = 1 / xp.sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
    return centered * inv_std, inv_std


def _standardize_backward(grad_xhat, xhat, inv_std, axes):
    """dx = r (gxhat - mean(gxhat) - xhat mean(gxhat xhat)) over ``axes``."""
    return inv_std * (grad_xhat - grad_xhat.mean(axis=axes, keepdims=True)
                      - xhat * (grad_xhat * xhat).mean(axis=axes, keepdims=True))


def _affine_grads(ctx, needs, weight_grad, bias_grad):
    """Gradients of the affine inputs that were passed (weight first), None where unneeded;
    ``weight_grad`` and ``bias_grad`` compute them only when asked."""
    makers = ([weight_grad] if ctx.weight is not None else []) + (
        [bias_grad] if ctx.has_bias else [])
    return tuple(make() if need else None for make, need in zip(makers, needs))


class LayerNorm(Function):
    """Standardise over the last ``len(normalized_shape)`` axes, then y = w * xhat + b with
    w, b of ``normalized_shape`` (see the module docstring for the derivative)."""
    @staticmethod
    def forward(ctx, x, *affine, axes=(), eps=1e-5, has_weight=False):
        xhat, inv_std = _standardize(x, axes, eps)
        weight = affine[0] if has_weight else None
        out = xhat if weight is None else xhat * weight
        if len(affine) > has_weight:
            out = out + affine[-1]
        if ctx.recording:
            ctx.xhat, ctx.inv_std, ctx.weight, ctx.axes = xhat, inv_std, weight, axes
            ctx.dtype, ctx.has_bias = x.dtype, len(affine) > has_weight
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        need_x, *need_affine = ctx.needs_input_grad
        grad_x = None
        if need_x:
            grad_xhat = grad if ctx.weight is None else grad * ctx.weight
            grad_x = _standardize_backward(grad_xhat, ctx.xhat, ctx.inv_std, ctx.axes)
            grad_x = grad_x.astype(ctx.dtype, copy=False)
        # dw = dy * xhat and db = dy in x's shape; the graph walk sums the leading axes.
        return (grad_x, *_affine_grads(ctx, need_affine,
                                       lambda: (grad * ctx.xhat).astype(ctx.dtype, copy=False),
                                       lambda: grad))


class GroupNorm(Function):
    """x of shape (N, C, *spatial): standardise each of ``num_groups`` groups of C / G channels
    (with all their positions), then y = w_c * xhat + b_c per channel c (derivative: module
    docstring)."""
    @staticmethod
    def forward(ctx, x, *affine, num_groups=1, eps=1e-5, has_weight=False):
        grouped = x.reshape(x.shape[0], num_groups, -1)  # (N, G, C/G * spatial)
        xhat, inv_std = _standardize(grouped, -1, eps)
        xhat = xhat.reshape(x.shape)  # (N, C, *spatial)
        channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # w, b broadcast as (1, C, 1, ...)
        weight = affine[0].reshape(channel) if has_weight else None
        out = xhat if weight is None else xhat * weight
        if len(affine) > has_weight:
            out = out + affine[-1].reshape(channel)
        if ctx.recording:
            ctx.xhat, ctx.inv_std, ctx.weight = xhat, inv_std, weight
            ctx.num_groups, ctx.dtype, ctx.has_bias = num_groups, x.dtype, len(affine) > has_weight
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        need_x, *need_affine = ctx.needs_input_grad
        xhat = ctx.xhat
        batch, groups = xhat.shape[0], ctx.num_groups
        not_channel = (0,) + tuple(range(2, xhat.ndim))
        grad_x = None
        if need_x:
            grad_xhat = grad if ctx.weight is None else grad * ctx.weight
            grad_x = _standardize_backward(grad_xhat.reshape(batch, groups, -1),  # (N, G, -1)
                                           xhat.reshape(batch, groups, -1),  # (N, G, -1)
                                           ctx.inv_std, -1)
            grad_x = grad_x.reshape(xhat.shape).astype(ctx.dtype, copy=False)  # (N, C, ...)
        return (grad_x, *_affine_grads(
            ctx, need_affine,
            lambda: (grad * xhat).sum(axis=not_channel).astype(ctx.dtype, copy=False),
            lambda: grad.sum(axis=not_channel)))


def _affine(weight, bias):
    """The affine tensors that are present, and whether the first of them is the weight."""
    return tuple(t for t in (weight, bias) if t is not None), weight is not None


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    normalized_shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                        else tuple(normalized_shape))
    count = len(normalized_shape)
    if count == 0 or x.shape[x.ndim - count:] != normalized_shape:
        raise ValueError(f"layer_norm normalized_shape {normalized_shape} must match the last "
                         f"axes of the input shape {x.shape}")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.shape != normalized_shape:
            raise ValueError(f"layer_norm {name} has shape {tensor.shape}, "
                             f"expected {normalized_shape}")
    affine, has_weight = _affine(weight, bias)
    return LayerNorm.apply(x, *affine, axes=tuple(range(x.ndim - count, x.ndim)), eps=eps,
                           has_weight=has_weight)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    if x.ndim < 2:
        raise ValueError(f"group_norm needs an input of shape (N, C, ...), got {x.shape}")
    channels = x.shape[1]
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(f"group_norm num_groups {num_groups} must divide the {channels} channels")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.shape != (channels,):
            raise ValueError(f"group_norm {name} has shape {tensor.shape}, expected ({channels},)")
    affine, has_weight = _affine(weight, bias)
    return GroupNorm.apply(x, *affine, num_groups=num_groups, eps=eps, has_weight=has_weight)
