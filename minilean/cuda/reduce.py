"""Fast sum and mean over an axis, or over a run of adjacent axes (``reduce.cu``).

The input is viewed as (outer, length, inner) with the reduced axes merged into ``length``;
one block sums each output element. Backward is the replaced op's own broadcast, which is a
view and needs no kernel. Axes that are not adjacent run the replaced op. The graph walk's
sums of broadcast gradients (``unbroadcast``) go through the same kernel (``sum_kept``).
"""
import functools
import math

import numpy

from minilean.cuda import compile as kernels
from minilean.cuda.fast_function import KERNEL_DTYPES, FastFunction

program = kernels.Program("reduce.cu", ["sum_rows<float>", "sum_rows<double>"])


def row_layout(shape, axes):
    """(outer, length, inner) for reducing the adjacent ``axes`` of ``shape``; None when the
    axes are empty or not adjacent."""
    if not axes or list(axes) != list(range(axes[0], axes[-1] + 1)):
        return None
    return (math.prod(shape[:axes[0]]), math.prod(shape[axes[0]:axes[-1] + 1]),
            math.prod(shape[axes[-1] + 1:]))


def reduced_shape(shape, axes, keepdim):
    return tuple(1 if axis in axes else size for axis, size in enumerate(shape)
                 if keepdim or axis not in axes)


def reference(x, axes, keepdim=False, mean=False):
    """Sum (or mean) over ``axes`` through the (outer, length, inner) view, in NumPy."""
    outer, length, inner = row_layout(x.shape, axes)
    total = x.reshape(outer, length, inner).sum(axis=1)  # (outer, inner)
    scale = 1 / length if mean else 1
    return (total * scale).astype(x.dtype).reshape(reduced_shape(x.shape, axes, keepdim))


@functools.lru_cache(maxsize=256)
def _sum_rows_arguments(outer, length, inner, scale, dtype):
    """(kernel name, its scalar arguments) of ``sum_rows`` (remembered: a training step sums
    the same few shapes, several times each)."""
    return f"sum_rows<{kernels.type_name(dtype)}>", (
        numpy.int64(outer * inner), numpy.int64(length), numpy.int64(inner), dtype.type(scale))


def sum_rows(x, outer, length, inner, scale=1.0):
    """The (outer * inner,) row sums of contiguous ``x`` viewed as (outer, length, inner)."""
    import cupy
    x = cupy.ascontiguousarray(x)
    out = cupy.empty(outer * inner, dtype=x.dtype)
    name, scalars = _sum_rows_arguments(outer, length, inner, scale, x.dtype)
    kernels.launch_rows(program, name, outer * inner, length, (x, out) + scalars)
    return out


def covered(x, axes):
    """Whether ``sum_rows`` reduces ``x`` over ``axes``: float32/float64 elements, and axes that
    are adjacent."""
    return x.dtype in KERNEL_DTYPES and x.size > 0 and row_layout(x.shape, axes) is not None


def reduce_rows(x, axes, keepdim, mean=False):
    """The sum (or mean) of ``x`` over the adjacent ``axes`` by ``sum_rows``, in the reduced
    shape (``covered`` says where it applies)."""
    outer, length, inner = row_layout(x.shape, axes)
    out = sum_rows(x, outer, length, inner, 1 / length if mean else 1.0)
    return out.reshape(reduced_shape(x.shape, axes, keepdim))


def sum_kept(x, axes):
    """``x.sum(axis=axes, keepdims=True)`` for a CuPy array ``x``: by ``sum_rows`` where the
    axes are adjacent (as a broadcast gradient's are when its input was broadcast over leading
    axes, as a bias over rows, or over trailing ones, as a per-channel value over positions),
    else by CuPy's own sum. The registry puts it in ``unbroadcast``'s slot: a small model's step
    makes a score of these sums, and on the host a sum_rows launch costs half of what CuPy's
    reduction does (``benchmarks/host_costs.py``)."""
    if covered(x, axes):
        return reduce_rows(x, axes, keepdim=True)
    return x.sum(axis=axes, keepdims=True)


def _fast_reduction(op_name, mean):
    class FastReduction(FastFunction):
        @staticmethod
        def covers(x, axes=(), keepdim=False):
            return covered(x, axes)

        @staticmethod
        def kernel_forward(ctx, x, axes=(), keepdim=False):
            if ctx.recording:
                ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
            return reduce_rows(x, axes, keepdim, mean)

    FastReduction.__name__ = FastReduction.__qualname__ = f"Fast{op_name}"
    FastReduction.__doc__ = f"{op_name} through reduce.cu; backward is {op_name}'s own."
    return FastReduction


FastSum = _fast_reduction("Sum", mean=False)
FastMean = _fast_reduction("Mean", mean=True)
