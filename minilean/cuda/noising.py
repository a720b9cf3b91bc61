"""Forward noising of diffusion, q_sample, as one kernel each way (``noising.cu``).

x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise with a timestep per sample;
the backward gives d x0 and d noise in the same pass. ``reference`` is the NumPy statement.
"""
import numpy

from minilean import backend
from minilean.cuda import compile as kernels
from minilean.cuda.fast_function import FastFunction

program = kernels.Program("noising.cu", [
    f"q_sample_{direction}<{type_name}>"
    for direction in ("forward", "backward") for type_name in ("float", "double")])


def _per_sample(alpha_bar, t, ndim):
    """alpha_bar[t] shaped (N, 1, 1, ...) to broadcast over one sample."""
    return alpha_bar[t].reshape((-1,) + (1,) * (ndim - 1))  # (N, 1, ..., 1)


def reference(x0, noise, alpha_bar, t):
    """x_t, and the factors (sqrt(alpha_bar[t]), sqrt(1 - alpha_bar[t])) that are its
    derivatives with respect to x0 and noise, in NumPy."""
    alpha = _per_sample(alpha_bar, t, x0.ndim)
    return (numpy.sqrt(alpha) * x0 + numpy.sqrt(1 - alpha) * noise,
            (numpy.sqrt(alpha), numpy.sqrt(1 - alpha)))


def _launch(name, arrays, alpha_bar, t, outputs):
    import cupy
    first = arrays[0]
    args = tuple(kernels.chunk_aligned(a, first.dtype) for a in arrays) + (
        cupy.ascontiguousarray(alpha_bar, dtype=first.dtype),
        cupy.ascontiguousarray(t, dtype=numpy.int64)) + outputs
    kernels.launch_chunked(program, f"{name}<{kernels.type_name(first.dtype)}>", first.size,
                           first.itemsize,
                           args + (numpy.int64(first.size // max(first.shape[0], 1)),
                                   numpy.int64(first.size)))


def forward(x0, noise, alpha_bar, t):
    """x_t on the GPU; ``t`` holds one integer timestep per sample (x0.shape[0] of them)."""
    import cupy
    out = cupy.empty(x0.shape, dtype=x0.dtype)
    _launch("q_sample_forward", (x0, noise), alpha_bar, t, (out,))
    return out


def backward(grad, alpha_bar, t):
    """(d x0, d noise) on the GPU."""
    import cupy
    grad_x0 = cupy.empty(grad.shape, dtype=grad.dtype)
    grad_noise = cupy.empty(grad.shape, dtype=grad.dtype)
    _launch("q_sample_backward", (grad,), alpha_bar, t, (grad_x0, grad_noise))
    return grad_x0, grad_noise


class FastQSample(FastFunction):
    """x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps through noising.cu.

    Contract: ``QSample.apply(x0, eps, alpha_bar=<float64 host schedule>, t=<one int per
    sample>)``; backward gives (d x0, d eps).
    """
    @staticmethod
    def covers(x0, eps, alpha_bar=None, t=None):
        return FastFunction.covers(x0, eps) and x0.shape == eps.shape and x0.ndim > 0

    @staticmethod
    def kernel_forward(ctx, x0, eps, alpha_bar=None, t=None):
        import cupy
        schedule = backend.constant(numpy.asarray(alpha_bar, dtype=x0.dtype), "cuda")
        t = cupy.asarray(t, dtype=numpy.int64).reshape(-1)
        if t.size == 1:
            t = cupy.broadcast_to(t, (x0.shape[0],))
        if ctx.recording:
            ctx.schedule, ctx.t = schedule, t
        return forward(x0, eps, schedule, t)

    @staticmethod
    def kernel_backward(ctx, grad):
        grad_x0, grad_eps = backward(grad, ctx.schedule, ctx.t)
        need_x0, need_eps = ctx.needs_input_grad
        return (grad_x0 if need_x0 else None), (grad_eps if need_eps else None)
