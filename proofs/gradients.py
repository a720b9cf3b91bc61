"""What every backward statement does with an engine gradient: the upstream gradient g it
applies backward to, and the checks the gradient that comes back must pass."""
import mpmath
import numpy

from proofs.numerics import mp_tolerance, unit_roundoff


def backward_name(op):
    """The name of the statement about ``op``'s backward."""
    return f"autograd_backward_eq_mpmath_derivative[{op}]"


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


def check_against_replay(check, tensor, reference, replayed, dtype, what):
    """The replay's exact values are the reference's (to 10^-45 of its bound over u, the
    magnitude its 50-digit evaluation rounds), and the engine's gradient is within the
    replay's carried bound of the reference (a finite one: a quotient by a divisor its error
    could reach 0 would leave it infinite, and the check empty)."""
    u = unit_roundoff(dtype)
    with check.reference():
        check.holds(all(mpmath.isfinite(c.error) for c in replayed), f"{what}: infinite bound")
        check.close([c.value for c in replayed], reference,
                    [mp_tolerance(c.error / u) for c in replayed],
                    f"{what}: replay at 50 digits")
    check_gradient(check, tensor, reference, [c.error for c in replayed], what)
