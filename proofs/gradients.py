"""What every backward statement does with an engine gradient: the upstream gradient g it
applies backward to, and the checks the gradient that comes back must pass."""
import numpy


def upstream(seed, shape):
    """g for ``output.backward(g)``: uniform in (-2, 2) from ``seed``, rounded to float32 so
    that mpmath and the engine in either dtype see the very same g."""
    g = numpy.random.default_rng(seed).uniform(-2, 2, shape)
    return g.astype(numpy.float32).astype(numpy.float64)


def check_gradient(check, tensor, reference, bounds, what):
    """``tensor.grad`` is there, has the tensor's own dtype and shape, and lies within
    ``bounds`` of ``reference`` elementwise (both flat, in the tensor's element order)."""
    check.holds(tensor.grad is not None, f"{what}: no gradient")
    check.holds(tensor.grad.dtype == tensor.dtype and tensor.grad.shape == tensor.shape,
                f"{what}: gradient is {tensor.grad.dtype} {tensor.grad.shape}, "
                f"input is {tensor.dtype} {tensor.shape}")
    check.close(tensor.grad, reference, bounds, what)
