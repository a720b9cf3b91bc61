"""Fast softmax and log_softmax over one axis, forward and backward (``softmax.cu``).

The input is viewed as (outer, length, inner) around the softmax axis; one block normalises
each row, shifted by the row maximum. Backward reads only the saved output.
"""
import numpy

from minilean.cuda import compile as kernels
from minilean.cuda.fast_function import FastFunction
from minilean.cuda.reduce import row_layout

program = kernels.Program("softmax.cu", [
    f"softmax_{direction}<{type_name}>"
    for direction in ("forward", "backward") for type_name in ("float", "double")])


def reference(x, axis, log=False):
    """(y, vjp) with vjp(y, grad) -> dx, in NumPy, through the (outer, length, inner) view.

    Softmax is written here as e^(shifted - log s), the kernel's as e^shifted / s (as the plain
    op's): the same values up to rounding, and the same NaN on a row of -inf or with +inf."""
    axis = axis % x.ndim
    outer, length, inner = row_layout(x.shape, (axis,))
    rows = x.reshape(outer, length, inner)  # the softmax axis in the middle
    peak = rows.max(axis=1, keepdims=True)
    shifted = rows - numpy.where(numpy.isfinite(peak), peak, 0)
    log_sum = numpy.log(numpy.exp(shifted).sum(axis=1, keepdims=True))
    y = (shifted - log_sum) if log else numpy.exp(shifted - log_sum)

    def vjp(y, grad):
        if log:
            return grad - numpy.exp(y) * grad.sum(axis=1, keepdims=True)
        return y * (grad - (grad * y).sum(axis=1, keepdims=True))

    return y.reshape(x.shape), lambda y, grad: vjp(
        y.reshape(rows.shape), grad.reshape(rows.shape)).reshape(x.shape)


def _launch(name, arrays, out, axis, log):
    outer, length, inner = row_layout(out.shape, (axis % out.ndim,))
    kernels.launch_rows(program, f"{name}<{kernels.type_name(out.dtype)}>", outer * inner, length,
                        arrays + (out, numpy.int64(outer * inner), numpy.int64(length),
                                  numpy.int64(inner), numpy.int32(log)))
    return out


def forward(x, axis, log=False):
    import cupy
    x = cupy.ascontiguousarray(x)
    return _launch("softmax_forward", (x,), cupy.empty_like(x), axis, log)


def backward(y, grad, axis, log=False):
    import cupy
    grad = cupy.ascontiguousarray(grad, dtype=y.dtype)
    return _launch("softmax_backward", (y, grad), cupy.empty_like(y), axis, log)


def _fast_softmax(op_name, log):
    class FastSoftmax(FastFunction):
        @staticmethod
        def covers(x, axis=-1):
            return FastFunction.covers(x) and x.ndim > 0 and x.size > 0

        @staticmethod
        def kernel_forward(ctx, x, axis=-1):
            out = forward(x, axis, log)
            if ctx.recording:
                ctx.out, ctx.axis = out, axis
            return out

        @staticmethod
        def kernel_backward(ctx, grad):
            return backward(ctx.out, grad, ctx.axis, log)

    FastSoftmax.__name__ = FastSoftmax.__qualname__ = f"Fast{op_name}"
    FastSoftmax.__doc__ = f"{op_name} through softmax.cu (the op's own contract)."
    return FastSoftmax


FastSoftmax = _fast_softmax("Softmax", log=False)
FastLogSoftmax = _fast_softmax("LogSoftmax", log=True)
