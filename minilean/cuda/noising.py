"""Forward noising of diffusion, q_sample, as one kernel each way (``noising.cu``).

x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise with a timestep per sample;
the backward gives d x0 and d noise in the same pass. ``reference`` is the NumPy statement.
"""
import numpy

from minilean import backend
from minilean.cuda import compile as kernels
from minilean.cuda import graph
from minilean.cuda.fast_function import FastFunction

program = kernels.Program("noising.cu", [
    f"q_sample_{direction}<{type_name}>"
    for direction in ("forward", "backward") for type_name in ("float", "double")])


def coefficients(alpha_bar, dtype):
    """The tables sqrt(alpha_bar) and sqrt(1 - alpha_bar) in ``dtype``, computed in float64 from
    the float64 schedule, as the plain op computes them: near t = 0, where alpha_bar is within
    1e-4 of 1, 1 - alpha_bar taken in float32 keeps only a few correct bits (at t = 0 of a
    1000-step cosine schedule, sqrt(1 - alpha_bar) would be 2.6e-4 off, relatively)."""
    alpha_bar = numpy.asarray(alpha_bar, dtype=numpy.float64)
    return numpy.sqrt(alpha_bar).astype(dtype), numpy.sqrt(1.0 - alpha_bar).astype(dtype)


def device_coefficients(alpha_bar, dtype):
    """``coefficients`` on the device as one (T, 2) table, row t = (sqrt(alpha_bar[t]),
    sqrt(1 - alpha_bar[t])), copied there once per schedule and dtype: the kernels read a
    row in one aligned load through one pointer (two tables took more registers:
    ``noising.cu``'s header)."""
    return graph.held(backend.constant(numpy.stack(coefficients(alpha_bar, dtype), axis=1),
                                       "cuda"))


def _per_sample(table, t, ndim):
    """table[t] shaped (N, 1, 1, ...) to broadcast over one sample."""
    return table[t].reshape((-1,) + (1,) * (ndim - 1))  # (N, 1, ..., 1)


def reference(x0, noise, alpha_bar, t):
    """x_t, and the factors (sqrt(alpha_bar[t]), sqrt(1 - alpha_bar[t])) that are its
    derivatives with respect to x0 and noise, in NumPy in x0's dtype (the factors rounded to it
    once, from the float64 schedule ``alpha_bar``)."""
    signal, noise_scale = (_per_sample(table, t, x0.ndim)
                           for table in coefficients(alpha_bar, x0.dtype))
    return signal * x0 + noise_scale * noise, (signal, noise_scale)


def timesteps_in_schedule(t, steps):
    """``t`` (a number, a list, a host or device array) as int64 timesteps in [0, steps) on the
    device, read as the plain q_sample reads them, so that the kernels never index past the
    tables. On the host (``q_sample`` has refused any outside 0..T-1; ``QSample.apply`` called
    directly has not), NumPy's indexing: a negative timestep counts from the end, and one
    past either end is its IndexError, as for the plain op. On the device, checking would
    wait for a copy back, which a training step never makes (a CUDA graph cannot): there they
    wrap around, as CuPy's indexing of the plain op's device table does."""
    import cupy
    if backend.device_of(t) == "cuda":
        return t.astype(numpy.int64) % steps
    return cupy.asarray(numpy.arange(steps)[numpy.asarray(t).astype(numpy.int64)])


def _launch(name, arrays, factors, t, outputs):
    import cupy
    first = arrays[0]
    args = tuple(kernels.chunk_aligned(a, first.dtype) for a in arrays) + (
        cupy.ascontiguousarray(factors, dtype=first.dtype),
        cupy.ascontiguousarray(t, dtype=numpy.int64)) + outputs
    kernels.launch_chunked(program, f"{name}<{kernels.type_name(first.dtype)}>", first.size,
                           first.itemsize,
                           args + (numpy.int64(first.size // max(first.shape[0], 1)),
                                   numpy.int64(first.size)))


def forward(x0, noise, factors, t):
    """x_t on the GPU. ``factors``: ``device_coefficients``; ``t``: one integer timestep per
    sample (x0.shape[0] of them), each in [0, len(factors)), which the kernel does not check."""
    import cupy
    out = cupy.empty(x0.shape, dtype=x0.dtype)
    _launch("q_sample_forward", (x0, noise), factors, t, (out,))
    return out


def backward(grad, factors, t):
    """(d x0, d noise) on the GPU."""
    import cupy
    grad_x0 = cupy.empty(grad.shape, dtype=grad.dtype)
    grad_noise = cupy.empty(grad.shape, dtype=grad.dtype)
    _launch("q_sample_backward", (grad,), factors, t, (grad_x0, grad_noise))
    return grad_x0, grad_noise


class FastQSample(FastFunction):
    """x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps through noising.cu.

    Contract: ``QSample.apply(x0, eps, alpha_bar=<float64 host schedule>, t=<one int, or one
    per sample>)``; backward gives (d x0, d eps).
    """
    @staticmethod
    def covers(x0, eps, alpha_bar=None, t=None):
        # the kernels read t[sample] for every sample: other counts go to the plain op, which
        # broadcasts them or refuses them as NumPy does; and they write x0's dtype, so noise of
        # another (float64 beside float32 x0: the plain op's result is float64) goes there too.
        # One timestep on the host goes there as well: the plain op makes it two numbers,
        # where the kernels would copy it to the device at every call (which a CUDA graph
        # cannot capture)
        return (FastFunction.covers(x0, eps) and x0.shape == eps.shape and x0.ndim > 0
                and x0.dtype == eps.dtype and numpy.size(t) in (1, x0.shape[0])
                and not (numpy.ndim(t) == 0 and backend.device_of(t) == "cpu"))

    @staticmethod
    def kernel_forward(ctx, x0, eps, alpha_bar=None, t=None):
        import cupy
        factors = device_coefficients(alpha_bar, x0.dtype)
        t = timesteps_in_schedule(t, len(alpha_bar)).reshape(-1)
        if t.size == 1:
            t = cupy.broadcast_to(t, (x0.shape[0],))
        if ctx.recording:
            ctx.factors, ctx.t = factors, t
        return forward(x0, eps, factors, t)

    @staticmethod
    def kernel_backward(ctx, grad):
        grad_x0, grad_eps = backward(grad, ctx.factors, ctx.t)
        need_x0, need_eps = ctx.needs_input_grad
        return (grad_x0 if need_x0 else None), (grad_eps if need_eps else None)
