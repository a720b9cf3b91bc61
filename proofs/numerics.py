"""Rounding-error bounds, mpmath conversions, engine tensors in each dtype, and ``reals``, the
one hypothesis strategy every statement file builds its inputs from.

Bounds follow Higham (Accuracy and Stability of Numerical Algorithms, ch. 3): with unit
roundoff u (2^-53 in float64, 2^-24 in float32) every correctly rounded +, -, *, / and sqrt
satisfies fl(a op b) = (a op b)(1 + d), |d| <= u, and a product of n such factors (1 + d_i)
lies within gamma_n = n u / (1 - n u) of 1. A value computed through at most n roundings on
every path from the inputs, as a sum of terms t_i, therefore has
|computed - exact| <= gamma_n * sum_i |t_i|. Library functions (exp, log, tanh, sin, cos,
pow, erf, ...) are not correctly rounded: ``library_roundings(dtype)`` is what one call counts,
taken from the ulp tolerances NumPy's own accuracy tests hold its ufuncs to
(numpy/_core/tests/data/umath-validation-set-*.csv: float32 exp 3, log 4, sin/cos/tanh 2 ulp;
float64 exp/log/sin/cos 1, tanh 2 ulp), the worst per dtype, at 2 roundings of u per ulp
(1 ulp is at most 2u relative): float32 4 ulp -> 8, float64 2 ulp -> 4. (The former flat 1.5
ulp = 3 roundings was a false alarm on the correct engine: NumPy 2.4's float32 exp is off by
3.43u at -5.8898945, log by up to 4.54u.)

``reals`` draws float32-representable values (``width=32``), so the very same inputs reach
the float64 and float32 engines and mpmath without rounding on the way in.
"""
import math

import mpmath
import numpy
from hypothesis import strategies as st

ENGINE_DTYPES = (numpy.float64, numpy.float32)


def unit_roundoff(dtype):
    return float(numpy.finfo(dtype).eps) / 2


def gamma(n, dtype):
    """gamma_n = n u / (1 - n u): the relative effect of n roundings in ``dtype``."""
    u = unit_roundoff(dtype)
    return n * u / (1 - n * u)


# worst ulp tolerance of NumPy's accuracy tests for its library ufuncs, per dtype (see above)
LIBRARY_ULPS = {numpy.dtype(numpy.float32): 4, numpy.dtype(numpy.float64): 2}


def library_roundings(dtype):
    """Roundings one library call (exp, log, tanh, sin, cos, pow, erf) counts in ``dtype``:
    its ulp tolerance times 2 (1 ulp <= 2u relative)."""
    return 2 * LIBRARY_ULPS[numpy.dtype(dtype)]


def underflow(n, dtype):
    """Absolute error that n roundings can add through gradual underflow (Higham's
    fl(x op y) = (x op y)(1 + d) + e, |e| <= the smallest subnormal)."""
    return n * float(numpy.finfo(dtype).smallest_subnormal)


def mp(values):
    """Exact mpmath copies of floats or arrays: one mpf or a flat list of mpf."""
    if numpy.ndim(values) == 0:
        return mpmath.mpf(float(values))
    return [mpmath.mpf(float(v)) for v in numpy.asarray(values, dtype=numpy.float64).reshape(-1)]


def mp_array(values):
    """An object array of exact mpf copies, in the shape of ``values``."""
    return numpy.asarray(mp(values), dtype=object).reshape(numpy.shape(values))


def engine(values, dtype, requires_grad=False):
    """A minilean Tensor holding a copy of ``values`` in ``dtype`` (exact: the values are
    float32s). A copy, so that an in-place update by the engine (an optimizer step, clipping)
    leaves the statement's drawn values, its reference's inputs, as they were."""
    from minilean.autograd.tensor import Tensor
    return Tensor(numpy.array(values, dtype=dtype), requires_grad=requires_grad)


def host(tensor):
    """A float64 NumPy array of an engine result (a Tensor, on either device)."""
    return numpy.asarray(tensor.numpy(), dtype=numpy.float64)


def mp_tolerance(scale=1):
    """Rounding of an identity evaluated in mpmath itself: 10^-(dps - 5) (1 + |scale|), a unit
    in the 45th digit at the working 50 digits (five digits of room for the roundings of the
    identity's own evaluation)."""
    return mpmath.mpf(10) ** (-(mpmath.mp.dps - 5)) * (1 + abs(scale))


# --- the input strategy -------------------------------------------------------------------

def reals(low=-100.0, high=100.0, **kwargs):
    """Finite float32-representable reals in [low, high] (bounds rounded inward to float32)."""
    low32, high32 = numpy.float32(low), numpy.float32(high)
    # compared as Python floats: NumPy 2 compares a float32 with a Python float in float32
    # (NEP 50), where float32(0.3) > 0.3 reads as equal and 0.30000001 was drawn
    if float(low32) < low:
        low32 = numpy.nextafter(low32, numpy.float32(numpy.inf))
    if float(high32) > high:
        high32 = numpy.nextafter(high32, numpy.float32(-numpy.inf))
    return st.floats(float(low32), float(high32), width=32, allow_nan=False, allow_infinity=False,
                     allow_subnormal=False, **kwargs)


def real_array(draw, shape, low, high):
    """Inside a ``st.composite``: a float64 array of ``shape`` holding float32-representable
    reals in [low, high]."""
    size = math.prod(shape)
    values = draw(st.lists(reals(low, high), min_size=size, max_size=size))
    return numpy.asarray(values, dtype=numpy.float64).reshape(shape)
