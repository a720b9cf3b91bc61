"""Regression tests for the rounding counts in numerics.py, and examples on which a statement
failed the correct engine where float32 underflows or overflows."""
import mpmath
import numpy
import pytest

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


TINY = float(numpy.finfo(numpy.float32).tiny)  # the least float32 that ``reals`` draws
SCHEDULE = numpy.asarray([2.0 ** -13, 0.5])  # beta_0 at _betas' least: alpha_bar_0 near 1


@pytest.mark.parametrize("name, example", [
    # beta KL = 1.38e-76 is 0 in float32
    ("betaVae_loss_decomposition", {"reconstruction": 0.0, "kl": TINY, "beta": TINY}),
    # sqrt(1 - alpha_bar) x0 ~ 1.3e-40, subnormal in float32
    ("vTarget_value", {"betas": SCHEDULE[:1], "t": numpy.asarray([0]),
                       "x0": numpy.asarray([[TINY]]), "eps": numpy.asarray([[0.0]]), "c": 0.0}),
    ("epsModelFromV_recovers_eps", {"betas": SCHEDULE[:1], "t": numpy.asarray([0]),
                                    "x0": numpy.asarray([[TINY]]),
                                    "eps": numpy.asarray([[0.0]]), "c": 0.0,
                                    "fractions": numpy.asarray([0.5])}),
    # sigma z and the posterior mean's x_t term ~ 1e-40 and 2e-42 (ddimStep_eq_eta_formula
    # shares the DDIM step's bound, and its hypothesis is an ``assume``, for hypothesis only)
    ("ddpmStep_eq_posterior_step", {"betas": SCHEDULE, "t": 1, "x": numpy.asarray([0.0]),
                                    "eps": numpy.asarray([0.0]), "noise": numpy.asarray([TINY])}),
    ("ddimStep_eta_one_eq_ddpm_posterior", {
        "betas": SCHEDULE, "t": 1, "t_prev": 0, "x": numpy.asarray([0.0]),
        "eps": numpy.asarray([0.0]), "noise": numpy.asarray([TINY])}),
    ("samplerStep_clip_x0Pred", {
        "betas": SCHEDULE, "t": 1, "ddim_t": 1, "t_prev": 0, "eta": 0.0,
        "x": numpy.asarray([0.0]), "eps": numpy.asarray([0.0]), "noise": numpy.asarray([TINY])}),
    ("ddpm_posterior_mean_variance", {"betas": SCHEDULE, "t": len(SCHEDULE) - 1, "x0": 0.0,
                                      "x_t": TINY}),
    # p sd = 1e-38 * 1e-3, subnormal in float32
    ("visibleStatistics_denormalize_value", {"patches": numpy.zeros((1, 2, 1)),
                                             "prediction": numpy.full((1, 2, 1), TINY),
                                             "hidden": numpy.zeros((1, 2))}),
])
def test_statement_allows_float32_underflow(name, example):
    """Statements with only a relative bound failed the correct engine on these (hypothesis
    6.130.0 drew such values in most runs): a product that underflows in float32 has an
    absolute error of up to a smallest subnormal, which its bound must allow."""
    with mpmath.workdps(DIGITS):
        load_all()[name].body(Check(), **example)


def test_adam_bound_survives_an_underflowed_second_moment():
    """v = (1 - b2) g^2 of g ~ 1e-38 is ~1e-80 exactly and 0 in float32, an error ~1e-45: the
    running error bound of sqrt(v) as e / sqrt(v) alone (~1e-5) swamped eps = 1e-8, left the
    update's bound infinite and, times beta1 = 0 at the next step, nan (hypothesis 6.80.0 drew
    this); |sqrt v' - sqrt v| <= sqrt |v' - v| bounds it by ~4e-23."""
    example = {"params": [numpy.asarray([TINY])], "grads": [[numpy.asarray([TINY])]] * 3,
               "lr": float(numpy.float32(0.01)), "beta1": 0.0,
               "beta2": float(numpy.float32(0.9999)), "eps": float(numpy.float32(1e-8)),
               "weight_decay": 0.5}
    with mpmath.workdps(DIGITS):
        load_all()["adam_adamW_update"].body(Check(), **example)


def test_ema_codebook_draws_no_total_count_below_one():
    """At a total count n ~ 1e-38 (N = (1.2e-38, 0)), e_2 = m_2 / N~_2 ~ 5e38 is past float32's
    largest value, inf on the engine (hypothesis 6.130.0 drew such counts in every run of 200
    examples); training keeps n >= 1, and so does the statement's strategy."""
    from hypothesis import find, settings
    from hypothesis.errors import NoSuchExample

    from proofs.statements.vq_codebook import _ema_inputs
    with pytest.raises(NoSuchExample):
        find(_ema_inputs(), lambda example: sum(example["sizes"]) < 1,
             settings=settings(max_examples=200, database=None, derandomize=True))


def test_reals_draws_float32s_in_its_bounds_rounded_inward():
    """Bounds that are float32s are drawn (1 and 2); bounds that are not (-0.3 and 0.3, whose
    nearest float32s lie outside them) are rounded inward, so that no draw, a float32 itself,
    lies outside them."""
    from hypothesis import find, settings
    from hypothesis.errors import NoSuchExample

    from proofs.numerics import reals
    quick = settings(max_examples=300, database=None, derandomize=True)
    for bound in (1.0, 2.0):
        assert find(reals(1.0, 2.0), lambda x, bound=bound: x == bound, settings=quick) == bound
    for outside in (lambda x: not -0.3 <= x <= 0.3, lambda x: float(numpy.float32(x)) != x):
        with pytest.raises(NoSuchExample):
            find(reals(-0.3, 0.3), outside, settings=quick)
