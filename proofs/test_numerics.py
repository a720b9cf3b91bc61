"""Regression tests for the rounding counts in numerics.py."""
import mpmath
import numpy

from proofs.framework import DIGITS, Check, load_all
from proofs.numerics import library_roundings, unit_roundoff

EXP_COUNTEREXAMPLE = -5.8898945  # float32 exp is off by more than 3u here (NumPy 2.4: 3.43u)


def test_library_roundings_follow_numpys_ulp_tolerances():
    assert library_roundings(numpy.float32) == 8  # 4 ulp (float32 log), 2u per ulp
    assert library_roundings(numpy.float64) == 4  # 2 ulp (float64 tanh)


def test_exp_backward_at_the_former_false_alarm():
    """With a library call counted as 3 roundings, the correct engine failed the exp row here
    (3.19e-11 > 3.12e-11 in float32): float32 exp is not within 1.5 ulp."""
    x = numpy.float32(EXP_COUNTEREXAMPLE)
    with mpmath.workdps(DIGITS):
        exact = mpmath.exp(mpmath.mpf(float(x)))
        relative = abs((mpmath.mpf(float(numpy.exp(x))) - exact) / exact)
        assert relative <= library_roundings(numpy.float32) * unit_roundoff(numpy.float32)
        statement = load_all()["autograd_backward_eq_mpmath_derivative[exp]"]
        statement.body(Check(), inputs=(numpy.asarray([float(x)]),), seed=1)
