r"""Normalisation layers as fused primitives: layer_norm and group_norm.

Both standardise x over a group of n elements and then scale and shift elementwise (per
channel for group_norm, per position of the normalised axes for layer_norm):

    mu = mean(x),  sigma^2 = mean((x - mu)^2),  r = 1 / sqrt(sigma^2 + eps),
    xhat = (x - mu) r,  y = w * xhat + b.

With gxhat = dy * w, differentiating through mu and sigma^2 gives the closed form

    dx = r (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)),
    dw = sum(dy * xhat),  db = sum(dy)   (over every axis that w and b are broadcast along).

One fused backward is a few passes over x, where the same ops composed from primitives
would record a dozen nodes and keep their intermediates alive. The statistics are computed in
float32 or wider: float16 sums over thousands of elements lose the mean to rounding.
"""
import math
import numbers

from minilean import backend
from minilean.autograd.elementwise import floating, silu_backward, silu_forward
from minilean.autograd.function import Function
from minilean.autograd.tensor import is_int
from minilean.backend import array_module


def _standardize(x, axes, eps):
    """xhat = (x - mean) / sqrt(var + eps) over ``axes`` and r = 1 / sqrt(var + eps),
    both in float32 or wider."""
    xp = array_module(x)
    x = x.astype(xp.promote_types(x.dtype, xp.float32), copy=False)
    # x - mean as (x - x_1) - mean(x - x_1), x_1 the first element of each row (as Var): a
    # constant row gives exact zeros, where its rounded mean (a float32 sum of 100 values of
    # 12345.678 is off by 2^-9 in the mean), multiplied by 1 / sqrt(eps), standardised it to
    # +-0.5 instead of 0
    first = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(x.ndim))
    centered = x - x[first]
    centered -= centered.mean(axis=axes, keepdims=True)
    inv_std = 1 / xp.sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
    return centered * inv_std, inv_std


def _standardize_backward(grad_xhat, xhat, inv_std, axes):
    """dx = r (gxhat - mean(gxhat) - xhat mean(gxhat xhat)) over ``axes``."""
    return inv_std * (grad_xhat - grad_xhat.mean(axis=axes, keepdims=True)
                      - xhat * (grad_xhat * xhat).mean(axis=axes, keepdims=True))


def _affine_grads(ctx, needs, weight_grad, bias_grad):
    """Gradients of the affine inputs that were passed (weight first), None where unneeded;
    ``weight_grad`` and ``bias_grad`` compute them only when asked. ``needs`` has one entry per
    affine input passed, so without a bias the zip ends before ``bias_grad``."""
    makers = ([weight_grad] if ctx.weight is not None else []) + [bias_grad]
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
            ctx.dtype = x.dtype
        # without weight and bias the result would be xhat itself, which backward reads: a
        # write into it (a leaf made of it by detach() and trained) changed the gradient
        return out.astype(x.dtype, copy=out is xhat)

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


def _grouped(a, num_groups, channels_last):
    """(N, C, *spatial) as a 4-D view (N, G, C/G, S) or, for channels-last memory (what the
    convolutions return), (N, S, G, C/G): both without a copy. Returns (view, spatial axis,
    axis of the channels within a group)."""
    xp = array_module(a)
    batch, channels = a.shape[:2]
    positions = math.prod(a.shape[2:])  # S, named: with no samples, -1 could not be inferred
    if channels_last:
        # (N, C, *spatial) -> (N, *spatial, C) -> (N, S, G, C/G)
        return (xp.moveaxis(a, 1, -1).reshape(batch, positions, num_groups,
                                              channels // num_groups), 1, 3)
    return a.reshape(batch, num_groups, channels // num_groups, positions), 3, 2  # (N, G, C/G, S)


def _ungrouped(grouped, shape, channels_last):
    """The inverse of ``_grouped``: back to (N, C, *spatial), in the same memory layout."""
    xp = array_module(grouped)
    if channels_last:
        # (N, S, G, C/G) -> (N, *spatial, C) -> (N, C, *spatial)
        return xp.moveaxis(grouped.reshape((shape[0],) + shape[2:] + (shape[1],)), -1, 1)
    return grouped.reshape(shape)  # (N, G, C/G, S) -> (N, C, *spatial)


def _position_sums(grouped, spatial):
    """Sums over the positions of a contiguous grouped view, per (sample, channel), keeping
    the axis (NumPy's reductions over strided axes are 5-10 times slower than a product with
    a vector of ones)."""
    if spatial == 1:  # (N, S, G, C/G) -> (N, 1, G, C/G)
        return backend.sum_middle_axis(grouped)
    ones = array_module(grouped).ones(grouped.shape[spatial], dtype=grouped.dtype)
    # (N, G, C/G, S) -> (N G C/G, S); @ (S,) -> (N G C/G,) -> (N, G, C/G, 1); the rows named,
    # since with no positions (S = 0) -1 could not be inferred
    rows = math.prod(grouped.shape[:3])
    sums = backend.matmul(grouped.reshape(rows, grouped.shape[3]), ones)
    return sums.reshape(grouped.shape[:3] + (1,))


def _group_means(grouped, spatial, within):
    """The mean of each (sample, group) of a grouped view, broadcastable against it."""
    count = grouped.shape[spatial] * grouped.shape[within]
    return _position_sums(grouped, spatial).sum(axis=within, keepdims=True) / count


def _group_firsts(grouped, spatial, within):
    """The first element of each (sample, group) of a grouped view, broadcastable against it
    (repeated per channel by ``_per_channel`` where the group has positions)."""
    first = tuple(slice(0, 1) if axis in (spatial, within) else slice(None) for axis in range(4))
    firsts = grouped[first]  # (N, G, 1, 1) or (N, 1, G, 1)
    return _per_channel(firsts, grouped, spatial) if grouped.shape[spatial] else firsts


def _per_channel(statistic, grouped, spatial):
    """A per-group statistic, (N, 1, G, 1) or (N, G, 1, 1), repeated for every channel of its
    group as a contiguous (N, 1, G, C/G) or (N, G, C/G, 1) array: broadcasting it against the
    grouped view then loops over whole rows of channels instead of runs of C/G (on
    channels-last input a full-size subtraction takes 0.25 ms instead of 0.4)."""
    xp = array_module(statistic)
    shape = grouped.shape[:spatial] + (1,) + grouped.shape[spatial + 1:]
    return xp.ascontiguousarray(xp.broadcast_to(statistic, shape))


def _is_channels_last(x):
    """Whether (N, C, *spatial) lives in channels-last memory (and not also in NCHW order)."""
    return (x.ndim > 2 and not x.flags.c_contiguous
            and array_module(x).moveaxis(x, 1, -1).flags.c_contiguous)


GROUP_NORM_ACTIVATIONS = (None, "silu")  # what GroupNorm can apply to its result in the same op


def check_group_norm_activation(activation, caller):
    """``activation`` if GroupNorm can apply it, else a ValueError that names ``caller``."""
    if activation not in GROUP_NORM_ACTIVATIONS:
        raise ValueError(f"{caller} activation must be one of {GROUP_NORM_ACTIVATIONS}, "
                         f"got {activation!r}")
    return activation


class GroupNorm(Function):
    """x of shape (N, C, *spatial): standardise each of ``num_groups`` groups of C / G channels
    (with all their positions), then y = w_c * xhat + b_c per channel c (derivative: module
    docstring).

    The work happens on a grouped *view* in the input's own memory layout (channels-last
    outputs of a convolution stay channels-last, no copy). The forward folds r into the
    scale, y = (x - mu) (r w) + b, and saves the centred x and r rather than xhat (one
    full-size pass fewer); the backward needs only sums per (sample, channel) of dy and of
    dy (x - mu): from them come dw, db and the two group means of the closed form, so the
    full-size passes are few.

    ``activation="silu"`` applies SiLU to the result in the same op, y = silu(w_c xhat + b_c)
    (a ResBlock's GroupNorm -> SiLU): the backward first takes dy back through the SiLU. On the
    CPU this is the same arithmetic as the two ops; the fast kernel does it in the norm's own
    passes over memory, one launch and one full-size array fewer each way.
    """
    fresh_grads = True

    @staticmethod
    def forward(ctx, x, *affine, num_groups=1, eps=1e-5, has_weight=False, activation=None):
        channels_last = _is_channels_last(x)
        xp = array_module(x)
        wide = x.astype(xp.promote_types(x.dtype, xp.float32), copy=False)  # statistics dtype
        grouped, spatial, within = _grouped(wide, num_groups, channels_last)
        # centred as (x - x_1) - mean(x - x_1), x_1 the first element of each group (as
        # layer_norm): a constant group gives exact zeros, not its mean's rounding / sqrt(eps)
        centered = grouped - _group_firsts(grouped, spatial, within)
        centered -= _per_channel(_group_means(centered, spatial, within), centered, spatial)
        squares = centered * centered
        inv_std = 1 / xp.sqrt(_group_means(squares, spatial, within) + eps)
        # per-channel parameters broadcast against the grouped view: (G, C/G) or (G, C/G, 1)
        channel = (num_groups, -1) if channels_last else (num_groups, -1, 1)
        weight = affine[0].reshape(channel) if has_weight else None
        scale = _per_channel(inv_std, grouped, spatial) if weight is None else inv_std * weight
        out = xp.multiply(centered, scale, out=squares)  # the squares' memory is free again
        if len(affine) > has_weight:
            out += affine[-1].reshape(channel)
        silu_saved = None  # the SiLU's input and its sigmoid, which its backward reads
        if activation == "silu":
            normalized = out
            out, sigma = silu_forward(normalized)
            silu_saved = normalized, sigma
        if ctx.recording:
            ctx.silu_saved = silu_saved
            ctx.centered, ctx.inv_std, ctx.scale = centered, inv_std, scale
            ctx.weight, ctx.num_groups = weight, num_groups
            ctx.dtype = x.dtype
            ctx.layout = channels_last, spatial, within, x.shape
        return _ungrouped(out.astype(x.dtype, copy=False), x.shape, channels_last)

    @staticmethod
    def backward(ctx, grad):
        need_x, *need_affine = ctx.needs_input_grad
        channels_last, spatial, within, shape = ctx.layout
        centered, inv_std, weight = ctx.centered, ctx.inv_std, ctx.weight
        grad, _, _ = _grouped(grad.astype(centered.dtype, copy=False), ctx.num_groups,
                              channels_last)
        if ctx.silu_saved is not None:  # dy at the norm's own output, before the SiLU
            grad = silu_backward(*ctx.silu_saved, grad)
        # sums over positions, per (sample, channel): of dy and of dy * xhat = r dy (x - mu)
        grad_sum = _position_sums(grad, spatial)
        product = grad * centered  # full-size scratch, reused below
        grad_xhat_sum = inv_std * _position_sums(product, spatial)
        grad_x = None
        if need_x:
            count = math.prod(shape[1:]) // ctx.num_groups  # elements per group, C/G x S
            # mean(gxhat) and mean(gxhat xhat) over a group, gxhat = w dy, from the sums
            weighted_sum = grad_sum if weight is None else grad_sum * weight
            weighted_xhat_sum = grad_xhat_sum if weight is None else grad_xhat_sum * weight
            mean_grad = weighted_sum.sum(axis=within, keepdims=True) / count
            mean_grad_xhat = weighted_xhat_sum.sum(axis=within, keepdims=True) / count
            # r (w dy - mean(gxhat) - xhat mean(gxhat xhat)), with xhat = r (x - mu)
            grad_x = grad * ctx.scale
            grad_x -= array_module(grad).multiply(
                centered, _per_channel(inv_std * inv_std * mean_grad_xhat, grad, spatial),
                out=product)
            grad_x -= _per_channel(inv_std * mean_grad, grad, spatial)
            grad_x = _ungrouped(grad_x.astype(ctx.dtype, copy=False), shape, channels_last)
        # dw_c = sum over samples and positions of dy * xhat, db_c = of dy:
        # per-sample sums (N, 1, G, C/G) or (N, G, C/G, 1) -> over N -> (C,)
        return (grad_x, *_affine_grads(
            ctx, need_affine,
            lambda: grad_xhat_sum.sum(axis=0).reshape(-1).astype(ctx.dtype, copy=False),
            lambda: grad_sum.sum(axis=0).reshape(-1).astype(ctx.dtype, copy=False)))


def _affine(weight, bias):
    """The affine tensors that are present, and whether the first of them is the weight."""
    # spelt out, with no generator: this runs at every call of a norm layer
    present = () if weight is None else (weight,)
    return (present if bias is None else present + (bias,)), weight is not None


def check_eps(eps, op):
    """``eps`` as a float, a finite number >= 0: None made the fast kernels' float32(None), NaN,
    and the result all NaN without a word (the plain op's TypeError was NumPy's)."""
    if type(eps) is float and 0 <= eps < math.inf:  # a layer's own, at every call (NaN fails)
        return eps
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or \
            not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{op} eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    normalized_shape = ((normalized_shape,) if is_int(normalized_shape)
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
    # an integer x in float32 (``floating``): the standardised values cast back to its dtype
    # were truncated to -1, 0, 1
    return LayerNorm.apply(floating(x), *affine, axes=tuple(range(x.ndim - count, x.ndim)),
                           eps=check_eps(eps, "layer_norm"), has_weight=has_weight)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, activation=None):
    """GroupNorm of x (N, C, ...), then ``activation`` (None, or "silu" fused into the op)."""
    check_group_norm_activation(activation, "group_norm")
    if x.ndim < 2:
        raise ValueError(f"group_norm needs an input of shape (N, C, ...), got {x.shape}")
    channels = x.shape[1]
    # an integer, passed on as Python's: a NumPy one (numpy.gcd's, which nn.GroupNorm takes)
    # made the fast kernels' launch sizes NumPy integers, which stopped them on an
    # AttributeError where the plain op ran; a bool ran there as 1 group where the plain op
    # refused it, and a float failed in NumPy's words
    if not is_int(num_groups):
        raise ValueError(f"group_norm num_groups must be an int, got {num_groups!r}")
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(f"group_norm num_groups {num_groups} must divide the {channels} channels")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.shape != (channels,):
            raise ValueError(f"group_norm {name} has shape {tensor.shape}, expected ({channels},)")
    affine, has_weight = _affine(weight, bias)
    # an integer x in float32, as in layer_norm
    return GroupNorm.apply(floating(x), *affine, num_groups=int(num_groups),
                           eps=check_eps(eps, "group_norm"), has_weight=has_weight,
                           activation=activation)
