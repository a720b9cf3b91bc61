"""Fast mean squared error and its gradient (``mse.cu``).

"none" is one elementwise pass; "sum" and "mean" sum squared errors into one partial per
block and add the partials with ``reduce.sum_rows`` (a fixed order, so the loss is the same
every run). Backward writes d input and d target in one pass, reading the loss gradient from
device memory (no copy to the host). Inputs of different shapes (broadcasting) run the op.
"""
import numpy

from minilean.cuda import compile as kernels
from minilean.cuda.fast_function import FastFunction
from minilean.cuda.reduce import sum_rows

program = kernels.Program("mse.cu", [
    f"{name}<{type_name}>"
    for name in ("squared_error", "squared_error_partial_sums", "mse_backward")
    for type_name in ("float", "double")])


def reference(input, target, reduction="mean"):
    """(loss, d loss / d input for a unit loss gradient), in NumPy."""
    diff = input - target
    if reduction == "none":
        return diff * diff, 2 * diff
    scale = 1 / diff.size if reduction == "mean" else 1
    return numpy.asarray((diff * diff).sum() * scale, dtype=input.dtype), 2 * scale * diff


def forward(input, target, reduction="mean"):
    import cupy
    input = kernels.chunk_aligned(input)
    target = kernels.chunk_aligned(target, input.dtype)
    type_name, count = kernels.type_name(input.dtype), numpy.int64(input.size)
    if reduction == "none":
        out = cupy.empty_like(input)
        kernels.launch_chunked(program, f"squared_error<{type_name}>", input.size,
                               input.itemsize, (input, target, out, count))
        return out
    blocks = kernels.partial_sum_blocks(input.size, input.itemsize)
    partial = cupy.empty(blocks, dtype=input.dtype)
    program.kernel(f"squared_error_partial_sums<{type_name}>")(
        (blocks,), (kernels.THREADS,), (input, target, partial, count))
    scale = 1 / input.size if reduction == "mean" else 1.0
    return sum_rows(partial, 1, blocks, 1, scale).reshape(())


def backward(input, target, grad, reduction="mean"):
    """(d input, d target); ``grad`` is the loss gradient (0-d unless reduction is "none")."""
    import cupy
    input = kernels.chunk_aligned(input)
    target = kernels.chunk_aligned(target, input.dtype)
    grad = cupy.ascontiguousarray(grad, dtype=input.dtype)
    scale = 1 / input.size if reduction == "mean" else 1.0
    grad_input, grad_target = cupy.empty_like(input), cupy.empty_like(input)
    kernels.launch_chunked(program, f"mse_backward<{kernels.type_name(input.dtype)}>",
                           input.size, input.itemsize,
                           (input, target, grad, numpy.int64(0 if reduction != "none" else 1),
                            input.dtype.type(scale), grad_input, grad_target,
                            numpy.int64(input.size)))
    return grad_input, grad_target


class FastMseLoss(FastFunction):
    """MseLoss through mse.cu (the op's own contract)."""
    @staticmethod
    def covers(input, target, reduction="mean"):
        return (FastFunction.covers(input, target) and input.shape == target.shape
                and input.dtype == target.dtype and input.size > 0)

    @staticmethod
    def kernel_forward(ctx, input, target, reduction="mean"):
        if ctx.recording:
            ctx.input, ctx.target, ctx.reduction = input, target, reduction
        return forward(input, target, reduction)

    @staticmethod
    def kernel_backward(ctx, grad):
        need_input, need_target = ctx.needs_input_grad
        grad_input, grad_target = backward(ctx.input, ctx.target, grad, ctx.reduction)
        return (grad_input if need_input else None), (grad_target if need_target else None)
