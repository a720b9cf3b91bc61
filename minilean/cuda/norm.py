"""Fast layer_norm and group_norm, forward and backward (``norm.cu``).

Both normalise rows of contiguous elements, one block per row, and save the row mean and
1/std for backward. Element j of row r uses the affine parameters of channel
c = (r % groups) * channels_per_group + j / spatial, which covers layer_norm (groups = 1,
c = j) and group_norm (rows are (sample, group), j runs over channels_per_group x spatial).
``silu=True`` ends the forward in a SiLU and starts the backward with its derivative, for
group_norm's ``activation="silu"``.
``reference`` is the NumPy statement, written over the same rows.
"""
import functools
import math

import numpy

from minilean.cuda import activations, compile as kernels
from minilean.cuda.fast_function import FastFunction

program = kernels.Program("norm.cu", [
    f"{name}<{type_name}>"
    for name in ("norm_forward", "norm_backward_input", "norm_backward_affine")
    for type_name in ("float", "double")])


class RowLayout:
    """How an input splits into normalised rows and which channel each element scales by."""

    def __init__(self, rows, length, groups, channels_per_group, spatial):
        self.rows, self.length, self.groups = rows, length, groups
        self.channels_per_group, self.spatial = channels_per_group, spatial

    @property
    def channels(self):
        return self.groups * self.channels_per_group

    @functools.cached_property
    def ints(self):
        """rows, length, groups, channels_per_group, spatial: the kernels' int64 arguments."""
        return tuple(numpy.int64(v) for v in (self.rows, self.length, self.groups,
                                              self.channels_per_group, self.spatial))


# Layouts are remembered by shape: a training step normalises the same few shapes each time.
@functools.lru_cache(maxsize=256)
def layer_norm_layout(shape, normalized_ndim):
    length = math.prod(shape[len(shape) - normalized_ndim:])
    return RowLayout(math.prod(shape) // max(length, 1), length, 1, length, 1)


@functools.lru_cache(maxsize=256)
def group_norm_layout(shape, num_groups):
    batch, channels = shape[0], shape[1]
    spatial = math.prod(shape[2:])
    return RowLayout(batch * num_groups, channels // num_groups * spatial, num_groups,
                     channels // num_groups, spatial)


def reference(x, layout, weight=None, bias=None, eps=1e-5, silu=False):
    """(y, vjp) in NumPy; vjp(grad) -> (dx, dweight, dbias) with dweight/dbias per channel."""
    rows = x.reshape(layout.rows, layout.length)  # one normalised row per line
    shifted = rows - rows[:, :1]  # x - x_1, as the kernels centre: a constant row gives zeros
    centered = shifted - shifted.mean(axis=1, keepdims=True)
    inv_std = 1 / numpy.sqrt((centered ** 2).mean(axis=1, keepdims=True) + eps)
    xhat = centered * inv_std
    # the channel of every element of ``rows``: (r % groups) * channels_per_group + j // spatial
    channel = ((numpy.arange(layout.rows)[:, None] % layout.groups) * layout.channels_per_group
               + numpy.arange(layout.length)[None, :] // layout.spatial)
    scale = weight[channel] if weight is not None else 1
    y = xhat * scale + (bias[channel] if bias is not None else 0)
    silu_slope = 1
    if silu:
        y, silu_slope = activations.reference("silu", y)

    def vjp(grad):
        grad = grad.reshape(rows.shape) * silu_slope  # like x: (rows, length)
        grad_scaled = grad * scale
        dx = inv_std * (grad_scaled - grad_scaled.mean(axis=1, keepdims=True)
                        - xhat * (grad_scaled * xhat).mean(axis=1, keepdims=True))
        def per_channel(values):
            return numpy.bincount(channel.ravel(), values.ravel(),
                                  layout.channels).astype(x.dtype)
        return dx.reshape(x.shape), per_channel(grad * xhat), per_channel(grad)

    return y.reshape(x.shape).astype(x.dtype), vjp


def forward(x, layout, weight=None, bias=None, eps=1e-5, silu=False):
    """(y, mean, inv_std) on the GPU, one mean and inv_std per row; ``mean`` is that of the
    row shifted by its first element, mean(x - x_1), as the kernels centre x (norm.cu)."""
    import cupy
    x = cupy.ascontiguousarray(x)
    return _forward(x, layout, _affine_arguments(x, weight, bias, silu), eps)


def backward(x, layout, grad, mean, inv_std, weight=None, bias=None, silu=False,
             affine_grads=True):
    """(dx, dweight, dbias) on the GPU; dweight/dbias are None unless ``affine_grads``.
    ``bias`` matters only with ``silu`` (the SiLU's input is recomputed)."""
    return _backward(x, layout, grad, mean, inv_std, _affine_arguments(x, weight, bias, silu),
                     affine_grads)


def _affine_arguments(x, weight, bias, silu):
    """The kernels' weight and bias arguments (``_flat``) and their has_weight, has_bias and
    silu flags: made once per op by the fast Function, which hands them to its backward
    (each was flattened, and the flags made, again there)."""
    return (_flat(weight, x), _flat(bias, x)) + _output_flags(weight, bias, silu)


def _forward(x, layout, affine_arguments, eps):
    """``forward`` of a contiguous x, given ``_affine_arguments``."""
    import cupy
    weight, bias, *flags = affine_arguments
    y = cupy.empty_like(x)
    mean, inv_std = cupy.empty(layout.rows, dtype=x.dtype), cupy.empty(layout.rows, dtype=x.dtype)
    kernels.launch_rows(
        program, f"norm_forward<{kernels.type_name(x.dtype)}>", layout.rows, layout.length,
        (x, weight, bias, y, mean, inv_std) + layout.ints + (x.dtype.type(eps), *flags))
    return y, mean, inv_std


def _backward(x, layout, grad, mean, inv_std, affine_arguments, affine_grads):
    """``backward``, given ``_affine_arguments``."""
    import cupy
    grad = cupy.ascontiguousarray(grad, dtype=x.dtype)
    type_name = kernels.type_name(x.dtype)
    output, flags = affine_arguments[:2], affine_arguments[2:]
    dx = cupy.empty_like(x)
    kernels.launch_rows(
        program, f"norm_backward_input<{type_name}>", layout.rows, layout.length,
        (x, *output, grad, mean, inv_std, dx) + layout.ints + flags)
    if not affine_grads:
        return dx, None, None
    dweight, dbias = (cupy.empty(layout.channels, dtype=x.dtype),
                      cupy.empty(layout.channels, dtype=x.dtype))
    rows_per_group = layout.rows // layout.groups
    kernels.launch_rows(
        program, f"norm_backward_affine<{type_name}>", layout.channels,
        rows_per_group * layout.spatial,
        (x, *output, grad, mean, inv_std, dweight, dbias, numpy.int64(layout.channels),
         numpy.int64(rows_per_group)) + layout.ints[1:] + flags)
    return dx, dweight, dbias


def _output_flags(weight, bias, silu):
    """The kernels' has_weight, has_bias and silu arguments."""
    return numpy.int32(weight is not None), numpy.int32(bias is not None), numpy.int32(silu)


def _flat(array, x):
    """``array`` contiguous, flat and of x's dtype; for an absent weight or bias, ``x``: any
    array of the right type, which the kernel is told (by a 0 flag) never to read. A float64
    weight beside float32 x is converted, as the kernel reads x's type (the plain ops return
    x's dtype too)."""
    import cupy
    return x if array is None else cupy.ascontiguousarray(array, dtype=x.dtype).reshape(-1)


def _fast_norm(op_name, layout_of, fresh_grads):
    """The fast Function for ``op_name``; ``layout_of(shape, **params)`` gives its RowLayout.
    ``fresh_grads`` is the replaced op's: the kernels' gradients are all new arrays, but an
    uncovered call (a float16 input) runs the replaced op's backward, whose gradients may be
    ``grad`` itself (LayerNorm's bias gradient)."""

    class FastNorm(FastFunction):
        @staticmethod
        def covers(x, *affine, **params):
            # an empty x goes to the op: with samples but no positions the kernels summed dw
            # over no elements to 0, where the op's (and PyTorch's) 0/0 statistics give nan
            return FastFunction.covers(x, *affine) and x.size > 0

        @staticmethod
        def kernel_forward(ctx, x, *affine, eps=1e-5, has_weight=False, activation=None,
                           **params):
            import cupy
            layout = layout_of(x.shape, **params)
            weight = affine[0] if has_weight else None
            bias = affine[-1] if len(affine) > has_weight else None
            x = cupy.ascontiguousarray(x)  # saved for backward: made contiguous once
            affine_arguments = _affine_arguments(x, weight, bias, activation == "silu")
            y, mean, inv_std = _forward(x, layout, affine_arguments, eps)
            if ctx.recording:
                ctx.x, ctx.layout, ctx.mean, ctx.inv_std = x, layout, mean, inv_std
                ctx.affine_arguments, ctx.present = affine_arguments, (weight is not None,
                                                                       bias is not None)
                ctx.affine_shapes = [array.shape for array in affine]
            return y

        @staticmethod
        def kernel_backward(ctx, grad):
            need_x, *need_affine = ctx.needs_input_grad
            dx, dweight, dbias = _backward(ctx.x, ctx.layout, grad, ctx.mean, ctx.inv_std,
                                           ctx.affine_arguments, affine_grads=any(need_affine))
            has_weight, has_bias = ctx.present
            present = ([dweight] if has_weight else []) + ([dbias] if has_bias else [])
            # (C,) -> the parameter's shape, reshaped only where that is another (layer_norm
            # over several axes): GroupNorm's are (C,) already
            return (dx if need_x else None, *(
                None if not need else grad_affine if grad_affine.shape == shape
                else grad_affine.reshape(shape)
                for grad_affine, shape, need in zip(present, ctx.affine_shapes, need_affine)))

    FastNorm.fresh_grads = fresh_grads
    FastNorm.__name__ = FastNorm.__qualname__ = f"Fast{op_name}"
    FastNorm.__doc__ = f"{op_name} through norm.cu (the op's own contract)."
    return FastNorm


FastLayerNorm = _fast_norm("LayerNorm", lambda shape, axes=(): layer_norm_layout(
    shape, len(axes)), fresh_grads=False)
FastGroupNorm = _fast_norm("GroupNorm", lambda shape, num_groups=1: group_norm_layout(
    shape, num_groups), fresh_grads=True)
