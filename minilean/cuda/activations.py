"""Fast activations: relu, leaky_relu, silu, gelu, sigmoid, tanh as one CUDA kernel per pass.

Each fast Function keeps the contract of the op it replaces in
``minilean/autograd/elementwise.py`` but runs ``activations.cu``: forward reads x and writes y,
backward reads the saved x and the incoming gradient and writes dx, one pass each.
``reference`` is the NumPy statement of the same math.
"""
import math

import numpy

from minilean.autograd.elementwise import tail_accurate_sigmoid
from minilean.cuda import compile as kernels
from minilean.cuda.fast_function import FastFunction

# kind -> its Activation in activation_math.cuh, the kernels' template argument
KINDS = {"relu": "RELU", "leaky_relu": "LEAKY_RELU", "silu": "SILU", "gelu": "GELU",
         "gelu_tanh": "GELU_TANH", "sigmoid": "SIGMOID", "tanh": "TANH"}


def _kernel_name(direction, dtype, kind):
    """``activation_forward<float, GELU>``: the kernel of one direction, type and kind."""
    return f"activation_{direction}<{kernels.type_name(dtype)}, {KINDS[kind]}>"


program = kernels.Program("activations.cu", [
    _kernel_name(direction, dtype, kind) for direction in ("forward", "backward")
    for dtype in (numpy.float32, numpy.float64) for kind in KINDS])


def reference(kind, x, slope=0.01):
    """(y, dy/dx) of activation ``kind`` at ``x``, in NumPy: what the kernels compute."""
    if kind == "relu":
        return numpy.maximum(x, 0), (x > 0).astype(x.dtype)
    if kind == "leaky_relu":
        return numpy.where(x > 0, x, slope * x), numpy.where(x > 0, 1, slope).astype(x.dtype)
    if kind == "silu":
        sigma = tail_accurate_sigmoid(x)
        return x * sigma, sigma * (1 + x * (1 - sigma))
    if kind == "gelu":
        phi = 0.5 * numpy.vectorize(math.erfc, otypes=[x.dtype])(-x / math.sqrt(2))
        return x * phi, phi + x * numpy.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    if kind == "gelu_tanh":
        s = tail_accurate_sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))
        slope_two_u = 2 * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
        return x * s, s + x * s * (1 - s) * slope_two_u
    if kind == "sigmoid":
        sigma = tail_accurate_sigmoid(x)
        return sigma, sigma * (1 - sigma)
    if kind == "tanh":
        y = numpy.tanh(x)
        return y, 1 - y * y
    raise ValueError(f"activation kind must be one of {sorted(KINDS)}, got {kind!r}")


def forward(kind, x, slope=0.01):
    """y = f(x) on the GPU (x a float32/float64 CuPy array, made contiguous here)."""
    import cupy
    x = kernels.chunk_aligned(x)
    y = cupy.empty_like(x)
    kernels.launch_chunked(program, _kernel_name("forward", x.dtype, kind), x.size, x.itemsize,
                           (x, y, numpy.int64(x.size), x.dtype.type(slope)))
    return y


def backward(kind, x, grad, slope=0.01):
    """dx = grad * f'(x) on the GPU."""
    import cupy
    x = kernels.chunk_aligned(x)
    grad = kernels.chunk_aligned(grad, x.dtype)
    dx = cupy.empty_like(x)
    kernels.launch_chunked(program, _kernel_name("backward", x.dtype, kind), x.size, x.itemsize,
                           (x, grad, dx, numpy.int64(x.size), x.dtype.type(slope)))
    return dx


def _fast_activation(op_name, kind_and_slope):
    """The fast Function for op ``op_name``; ``kind_and_slope(**params)`` reads the kernel's
    (kind, slope) from the op's own params."""

    class FastActivation(FastFunction):
        @staticmethod
        def kernel_forward(ctx, x, **params):
            kind, slope = kind_and_slope(**params)
            if ctx.recording:
                ctx.x, ctx.kind, ctx.slope = x, kind, slope
            return forward(kind, x, slope)

        @staticmethod
        def kernel_backward(ctx, grad):
            return backward(ctx.kind, ctx.x, grad, ctx.slope)

    FastActivation.__name__ = FastActivation.__qualname__ = f"Fast{op_name}"
    FastActivation.__doc__ = f"{op_name} through activations.cu (the op's own contract)."
    return FastActivation


FastRelu = _fast_activation("Relu", lambda: ("relu", 0.0))
FastLeakyRelu = _fast_activation(
    "LeakyRelu", lambda negative_slope=0.01: ("leaky_relu", negative_slope))
FastSilu = _fast_activation("Silu", lambda: ("silu", 0.0))
FastGelu = _fast_activation(
    "Gelu", lambda approximate="none": ("gelu_tanh" if approximate == "tanh" else "gelu", 0.0))
FastSigmoid = _fast_activation("Sigmoid", lambda: ("sigmoid", 0.0))
FastTanh = _fast_activation("Tanh", lambda: ("tanh", 0.0))
