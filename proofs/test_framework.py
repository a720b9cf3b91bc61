"""The checking machinery itself: a false statement fails, bounds are what they say, the
runner's table and exit code."""
import io
import re
import sys

import mpmath
import numpy
import pytest
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from proofs import runner, statistics
from proofs.framework import DIGITS, Check, ReferenceFailed, Statement, StatementFailed
from proofs.numerics import gamma, mp, unit_roundoff


def _statement(body, given):
    return Statement("test statement", body, ("minilean.models.objectives.weighted_two_term",),
                     st.fixed_dictionaries(given))


def test_a_false_statement_fails_and_says_why():
    def body(check, x):
        """x^2 = x (false)."""
        check.close(x * x, mp(x), 0, "square")
    outcome = _statement(body, {"x": st.floats(2, 3)}).run()
    assert outcome.status == "FAIL"
    assert "square" in outcome.message and "bound 0" in outcome.message


def test_a_true_statement_passes_and_counts_examples():
    def body(check, x):
        """x + 0 = x."""
        check.close(x + 0.0, mp(x), 0, "sum")
    outcome = _statement(body, {"x": st.floats(-1, 1)}).run(max_examples=7)
    assert outcome.status == "pass" and outcome.examples == 7


def test_examples_its_hypothesis_discards_are_not_counted_as_tried_nor_their_errors():
    """An example the body rejects with ``assume`` (the statement's hypothesis computed, as
    ddimStep_eq_eta_formula's) is no example of the statement: the table counted it as tried
    (24 for 21 checked) and took its comparisons made before the ``assume`` as the worst."""
    from hypothesis import assume

    def body(check, x):
        """x >= 0  =>  x + 0 = x."""
        check.close(1e-9 if x < 0 else 0.0, mp(0), 1e-8, "made before the hypothesis is known")
        assume(x >= 0)
        check.close(x + 0.0, mp(x), 0, "sum")
    outcome = _statement(body, {"x": st.floats(-1, 1)}).run(max_examples=20, derandomize=True)
    assert outcome.status == "pass" and outcome.examples == 20
    assert (outcome.worst_error, outcome.worst_bound) == (0.0, 1e-8)


def test_a_crash_in_the_code_under_test_is_a_failure():
    def body(check, x):
        """1 / 0 is a number (it is not)."""
        raise ZeroDivisionError("division by zero")
    outcome = _statement(body, {"x": st.just(0)}).run()
    assert outcome.status == "FAIL" and "ZeroDivisionError" in outcome.message


def test_missing_function_is_reported_not_run():
    statement = Statement("s", lambda check: None, ("minilean.models.nothing_here.f",),
                          st.fixed_dictionaries({}))
    outcome = statement.run()
    assert outcome.status == "missing" and "nothing_here" in outcome.message
    assert outcome.examples == 0


@pytest.mark.parametrize("about, reason", [
    ("minilean.autograd.tensor.Tensor:backward", None),
    ("minilean.autograd.tensor.Tensor:no_such_method",
     "minilean.autograd.tensor.Tensor:no_such_method does not exist yet"),
    ("minilean.autograd.tensor.no_such_function",
     "minilean.autograd.tensor.no_such_function does not exist yet")])
def test_missing_names_a_function_or_method_not_written_yet(about, reason):
    """``about`` names a module's function, or a class's method as "module.Class:method"."""
    statement = Statement("s", lambda check: None, ("minilean.models.objectives.weighted_two_term",
                                                    about), st.fixed_dictionaries({}))
    assert statement.missing() == reason


def test_check_close_records_the_worst_ratio():
    check = Check()
    check.close([1.0, 2.0], [mpmath.mpf(1.5), mpmath.mpf(2)], 1.0, "pair")
    assert (check.worst_error, check.worst_bound) == (0.5, 1.0)
    with pytest.raises(StatementFailed, match="pair"):
        check.close(numpy.nan, mpmath.mpf(0), 1.0, "pair")


def test_check_close_bounds_are_inclusive_and_the_worst_is_the_closest_to_its_bound():
    """An error equal to its bound passes; the table's worst error / bound is the comparison
    nearest its bound (the first of equals), an exact one below any other; a nan or inf
    result is an infinite error."""
    check = Check()
    check.close(1.0, mpmath.mpf(1), 0.5, "exact")
    check.close(2.0, mpmath.mpf(2), 0, "exact at bound 0")
    assert (check.worst_error, check.worst_bound) == (0.0, 0.5)
    check.close([1.25, 3.0], [mpmath.mpf(1), mpmath.mpf(3)], [1.0, 0.0], "a quarter")
    assert (check.worst_error, check.worst_bound) == (0.25, 1.0)
    check.close(numpy.float32(1.5), mpmath.mpf(1), 0.5, "at its bound")
    assert (check.worst_error, check.worst_bound) == (0.5, 0.5)
    for value in (numpy.nan, numpy.inf):
        with pytest.raises(StatementFailed, match="error inf > bound 1$"):
            check.close(value, mpmath.mpf(0), 1.0, "not finite")
    assert (check.worst_error, check.worst_bound) == (numpy.inf, 1.0)


@pytest.mark.parametrize("bound", [mpmath.inf, numpy.inf, [1.0, numpy.inf]])
def test_check_close_refuses_an_infinite_bound_whatever_the_value(bound):
    """An infinite bound let a NaN through (inf <= inf): discretizedLogistic_value's bound of a
    float32 bin mass below its rounding once passed any value."""
    for value in (0.0, numpy.nan):
        with pytest.raises(StatementFailed, match="^mass: bound inf is not finite \\(a check no "
                                                  "value could fail\\)$"):
            Check().close([0.0, value], [mpmath.mpf(0)] * 2, bound, "mass")


def test_a_statement_checked_only_by_holds_reports_no_error():
    def body(check, x):
        """x = x."""
        check.holds(x == x, "x != x")
    outcome = _statement(body, {"x": st.integers(0, 3)}).run(max_examples=3)
    assert outcome.status == "pass" and (outcome.worst_error, outcome.worst_bound) == (0, 0)


def test_the_outcome_carries_the_worst_comparison_and_the_statistical_tests():
    """What the examples' checks recorded reaches the Outcome: the table's worst error / bound
    and the counts test_statements.py holds to the false-alarm budget."""
    def body(check, x):
        """A mean test and a Gaussian law's three tests on N(0, 1) draws, and a close value."""
        draws = numpy.random.default_rng(x).standard_normal(1000)
        statistics.monte_carlo_mean_check(check, draws.mean(), 0, 1 / 1000 ** 0.5, "mean")
        statistics.gaussian_law_checks(check, draws, 0.0, 1.0, "N(0, 1)")
        check.close(0.75, mpmath.mpf(1), 0.25, "a quarter off, at its bound")
    # derandomized, and the close value at its bound: a statistical test passes nearer its
    # bound than half of it on some seeds (a mean 3 standard errors off is 1 in 400)
    outcome = _statement(body, {"x": st.integers(0, 2 ** 30)}).run(max_examples=2,
                                                                    derandomize=True)
    assert outcome.status == "pass", outcome.message
    assert (outcome.worst_error, outcome.worst_bound) == (0.25, 0.25)
    assert (outcome.statistical_tests, outcome.gaussian_law_tests) == (8, 6)


def test_the_summary_and_the_message_are_first_lines():
    """The table shows a statement's first docstring line and the failure's first line."""
    def body(check, x):
        """x is a number.

        A longer explanation the table leaves out."""
        raise ValueError("the first line\nand a second")
    statement = _statement(body, {"x": st.just(0)})
    outcome = statement.run()
    assert statement.summary == outcome.summary == "x is a number."
    assert outcome.message == "ValueError: the first line"


def test_a_failed_check_of_the_reference_is_no_counterexample():
    """Dropping x <= 0 breaks only the reference's own identity: the statement fails on such
    an example, but counterexample() does not take it; the same check outside
    ``check.reference()`` would be taken."""
    def body(check, x, marked=True):
        """|x| >= 0 (its reference computes |x| twice, the second route wrong for x > 0)."""
        second_route = -mp(x) if x > 0 else abs(mp(x))
        if marked:
            with check.reference():
                check.close(second_route, abs(mp(x)), 0, "|x| by two routes")
        else:
            check.close(second_route, abs(mp(x)), 0, "|x| by two routes")
        check.holds(abs(mp(x)) >= 0, "|x| < 0")
    relaxed = st.fixed_dictionaries({"x": st.floats(0.5, 1)})
    statement = Statement("s", body, (), st.fixed_dictionaries({"x": st.floats(-1, 0)}),
                          relaxed)
    outcome = Statement("s", body, (), relaxed).run()
    assert outcome.status == "FAIL" and outcome.message.startswith(
        "ReferenceFailed: reference: |x| by two routes")
    with pytest.raises(NoSuchExample):
        statement.counterexample(max_examples=20)
    unmarked = st.fixed_dictionaries({"x": st.floats(0.5, 1), "marked": st.just(False)})
    assert Statement("s", body, (), relaxed, unmarked).counterexample()["x"] >= 0.5


def test_gamma_matches_higham():
    assert unit_roundoff(numpy.float64) == 2.0 ** -53
    assert unit_roundoff(numpy.float32) == 2.0 ** -24
    u = 2.0 ** -24
    # abs=0: approx's default absolute tolerance, 1e-12, is 5e-6 of gamma_3 in float32
    assert gamma(3, numpy.float32) == pytest.approx(3 * u / (1 - 3 * u), rel=1e-15, abs=0)


def test_runner_prints_the_table_and_exit_code():
    out = io.StringIO()
    assert runner.main("weightedTwoTerm_zero_weight", out=out) == 0
    text = out.getvalue()
    assert "weightedTwoTerm_zero_weight" in text and "| pass" in text
    assert "examples tried" in text and "worst error / bound" in text


def test_runner_unknown_pattern_is_an_error():
    with pytest.raises(runner.NoStatement, match="^no statement name contains 'no such "
                                                 "theorem'$"):
        runner.main("no such theorem", out=io.StringIO())


def test_runner_exit_code_is_nonzero_when_a_statement_fails():
    from proofs.mutation import MUTANTS, applied
    out = io.StringIO()
    with applied(MUTANTS["two-term weight on the base"]):
        assert runner.main("weightedTwoTerm_zero_weight", out=out) == 1
    assert "FAIL" in out.getvalue()


def test_the_statistical_constants_hold_their_false_alarm_rate():
    """Z, the variance band, the KS critical value and Z_CLT are each at most FALSE_ALARM under
    their null law (recomputed here in mpmath), and the rates add up to the run's budget."""
    alpha = mpmath.mpf(statistics.FALSE_ALARM)
    assert statistics.TESTS_PER_RUN * alpha == pytest.approx(statistics.RUN_FALSE_ALARM)
    assert mpmath.erfc(statistics.Z / mpmath.sqrt(2)) == pytest.approx(alpha, rel=1e-9)
    for n in (1000, statistics.LAW_SAMPLES):
        band, dof = statistics.variance_band(n), n - 1
        assert statistics.chi_square_tail(dof, dof * (1 + band)) == pytest.approx(alpha / 2)
        assert statistics.chi_square_tail(dof, dof * (1 - band), upper=False) <= alpha / 2
        assert 2 * mpmath.exp(-2 * n * statistics.ks_critical(n) ** 2) == pytest.approx(alpha)
    z, n = mpmath.mpf(statistics.Z_CLT), 1000
    student = mpmath.betainc((n - 1) / mpmath.mpf(2), 0.5, 0, (n - 1) / (n - 1 + z * z),
                             regularized=True)  # P(|t_{n-1}| > z)
    spread = n * z * mpmath.sqrt(2 / mpmath.mpf(n))  # the mean of n chi-square(1) values
    skewed = (statistics.chi_square_tail(n, n + spread)
              + statistics.chi_square_tail(n, n - spread, upper=False))
    assert student <= alpha and skewed <= alpha


def test_the_law_samples_catch_the_slips_with_their_miss_rate():
    """At LAW_SAMPLES draws (and at no fewer: the shift sets it) the mean test passes normals
    off by DETECTED_SHIFT with probability at most MISS, and the variance test passes normals
    DETECTED_SCALE times too wide with at most MISS (recomputed here in mpmath); the mutants of
    those slips name every Gaussian law statement, whose misses add up to the run's."""
    from proofs.mutation import MUTANTS
    n, miss = statistics.LAW_SAMPLES, mpmath.mpf(statistics.MISS)
    assert len(statistics.GAUSSIAN_LAWS) * miss == pytest.approx(statistics.RUN_MISS)

    def mean_passes(n):
        offset = statistics.DETECTED_SHIFT * mpmath.sqrt(n)
        return (mpmath.erfc((offset - statistics.Z) / mpmath.sqrt(2))
                - mpmath.erfc((offset + statistics.Z) / mpmath.sqrt(2))) / 2
    assert mean_passes(n) <= miss < mean_passes(n - 1)
    dof, upper = n - 1, (n - 1) * (1 + statistics.variance_band(n))
    wide = mpmath.gammainc(dof / mpmath.mpf(2), 0, upper / (2 * statistics.DETECTED_SCALE ** 2),
                           regularized=True)  # P(1.04^2 chi-square(n - 1) <= upper)
    assert wide <= miss
    slips = [m for m in MUTANTS.values() if m.target == "minilean.autograd.creation.randn"]
    assert len(slips) == 2
    assert all(set(m.caught_by) == set(statistics.GAUSSIAN_LAWS) for m in slips)


def test_chi_square_tails_are_the_laws():
    """Chi-square with 2 degrees of freedom is exponential of mean 2: P(X > x) = e^(-x/2)."""
    for x in (0.5, 3.0, 40.0):
        assert statistics.chi_square_tail(2, x) == pytest.approx(mpmath.exp(-x / 2), rel=1e-12)
        assert statistics.chi_square_tail(2, x, upper=False) == pytest.approx(
            -mpmath.expm1(-x / 2), rel=1e-12)


def test_the_miss_rates_are_the_probabilities_that_the_tests_pass():
    """mean_test_miss and variance_test_miss are the probabilities that the mean and the
    variance test pass samples off by a shift or a scale (recomputed here in mpmath); with no
    slip, 1 minus the test's false-alarm rate."""
    n, alpha = 1000, statistics.FALSE_ALARM
    assert 1 - statistics.mean_test_miss(n, 0) == pytest.approx(alpha, rel=1e-6)
    offset, z = 0.1 * mpmath.sqrt(n), statistics.Z  # the standardised mean is N(offset, 1)
    passes = mpmath.ncdf(z - offset) - mpmath.ncdf(-z - offset)
    assert statistics.mean_test_miss(n, 0.1) == pytest.approx(float(passes), rel=1e-12, abs=0)
    dof, band = n - 1, statistics.variance_band(n)
    for scale in (0.96, 1.0, 1.04):  # (n - 1) s^2 / sigma^2 is scale^2 chi-square(n - 1)
        low, high = (dof * (1 + side * band) / (2 * scale ** 2) for side in (-1, 1))
        passes = mpmath.gammainc(dof / mpmath.mpf(2), low, high, regularized=True)
        assert statistics.variance_test_miss(n, scale) == pytest.approx(float(passes),
                                                                        rel=1e-12, abs=0)


def test_smallest_sample_is_the_first_n_whose_miss_is_small_enough():
    """For miss(n) = 1 / n, the smallest n >= 1000 with miss(n) <= 1 / k is k itself, met
    exactly at k (k at the start, at a doubling, between doublings)."""
    for k in (1000, 1001, 1500, 1999, 2000, 2001, 4097):
        assert statistics.smallest_sample(lambda n: 1 / n, 1 / k) == k


def test_each_gaussian_law_test_fails_a_slip_that_the_others_pass():
    """gaussian_law_checks, three tests, passes 1000 quantiles of N(1, 3^2), and them shifted
    by 0.15 sigma or scaled by 1.1 (the bounds are 0.185 sigma and 0.284 sigma^2); fails them
    shifted by 0.2 sigma on the mean test (their KS distance, 0.08, is within 0.099), scaled
    by 1.2 on the variance test (KS 0.044), and a uniform law of that mean and variance
    (47196 points) on the KS test alone."""
    n, mean, std = 1000, 1.0, 3.0
    with mpmath.workdps(20):
        normal = numpy.array([float(mpmath.sqrt(2) * mpmath.erfinv(2 * (i + 0.5) / n - 1))
                              for i in range(n)])
    check = Check()
    for samples in (normal, normal + 0.15, normal * 1.1):
        statistics.gaussian_law_checks(check, mean + std * samples, mean, std, "N(1, 9)")
    assert (check.statistical_tests, check.gaussian_law_tests) == (9, 9)
    uniform = 3 ** 0.5 * (2 * (numpy.arange(47196) + 0.5) / 47196 - 1)
    for samples, failed in ((normal + 0.2, "mean"), (normal * 1.2, "variance"),
                            (uniform, "Kolmogorov-Smirnov")):
        with pytest.raises(StatementFailed, match=f"^slip: {failed}: computed"):
            statistics.gaussian_law_checks(Check(), mean + std * samples, mean, std, "slip")


def test_a_monte_carlo_mean_is_held_to_z_clt_standard_errors_plus_its_slack():
    """One CLT test each: an estimate Z_CLT standard errors (plus the slack given) away
    passes, one further away fails."""
    check = Check()
    edge = statistics.Z_CLT * 0.1
    statistics.monte_carlo_mean_check(check, 2 + edge, 2, 0.1, "at the edge")
    statistics.monte_carlo_mean_check(check, 2 + edge + 0.5, 2, 0.1, "with slack", slack=0.5)
    assert check.statistical_tests == 2
    for estimate, slack in ((2 + 1.01 * edge, {}), (2 - 1.01 * edge - 0.5, {"slack": 0.5})):
        with pytest.raises(StatementFailed, match="^beyond: computed"):
            statistics.monte_carlo_mean_check(Check(), estimate, 2, 0.1, "beyond", **slack)


def test_engine_noise_is_seeded_and_its_uniform_stand_in_has_mean_0_and_variance_1():
    """The same seed draws the same noise (the statistical statements stay deterministic);
    the uniform law that shows the Gaussian hypothesis matters is on [-sqrt 3, sqrt 3]."""
    for law in ("normal", "uniform"):
        first, again = (statistics.engine_noise(law, (3, 4), seed=7).numpy() for _ in range(2))
        assert numpy.array_equal(first, again)
    uniform = statistics.engine_noise("uniform", (20000,), seed=7).numpy()
    assert -3 ** 0.5 <= uniform.min() < -1.7 and 1.7 < uniform.max() <= 3 ** 0.5
    assert abs(uniform.mean()) < 0.03 and abs(uniform.var() - 1) < 0.03


@pytest.mark.parametrize("name, slip", [("engine normals 4% too wide", lambda z: 1.04 * z),
                                        ("engine normals off by 0.05", lambda z: z + 0.05)])
def test_the_normal_generator_slips_are_the_ones_stated(name, slip):
    """Each mutant of minilean.randn draws the engine's own normals, slipped: times
    DETECTED_SCALE or plus DETECTED_SHIFT, needing no gradient unless asked."""
    import minilean
    from proofs.mutation import MUTANTS, applied
    minilean.manual_seed(3)
    exact = minilean.randn(4, 5, dtype=numpy.float64).numpy()
    with applied(MUTANTS[name]):
        minilean.manual_seed(3)
        slipped = minilean.randn(4, 5, dtype=numpy.float64)
        assert minilean.randn(2, requires_grad=True).requires_grad
    assert not slipped.requires_grad
    assert numpy.allclose(slipped.numpy(), slip(exact), rtol=1e-15, atol=0)


@pytest.mark.parametrize("scipy", [True, False])
def test_normal_cdf_matches_mpmath(scipy, monkeypatch):
    """The KS test's model CDF, with SciPy's erf and without SciPy (the standard library's)."""
    if not scipy:
        monkeypatch.setitem(sys.modules, "scipy.special", None)  # importing it fails
    x = numpy.linspace(-9, 9, 721)
    computed = statistics.normal_cdf(x, 0.5, 1.5)
    exact = [mpmath.ncdf(mpmath.mpf(v), 0.5, 1.5) for v in x]
    assert max(abs(c - e) for c, e in zip(computed, exact)) <= 1e-15


def test_ks_statistic_is_the_largest_step_distance():
    """sup |F_n - F| over the steps of the empirical CDF, on the sorted samples: F_n below F
    at the second sample of (2, -3, 2.5) (by 0.64, above it by 0.33 at most), and above F
    at the second of their mirror image."""
    for samples in ([2.0, -3.0, 2.5], [-2.0, 3.0, -2.5]):
        F = [mpmath.ncdf(v) for v in sorted(samples)]
        exact = max(max(mpmath.mpf(i + 1) / 3 - f, f - mpmath.mpf(i) / 3)
                    for i, f in enumerate(F))
        statistic = statistics.ks_statistic(numpy.array(samples),
                                            lambda x: statistics.normal_cdf(x, 0.0, 1.0))
        assert statistic == pytest.approx(float(exact), abs=1e-15)


def test_pinned_examples_run_on_every_run_before_the_drawn_ones():
    """A pinned example (hypothesis's @example) runs whatever is drawn: here the only value on
    which the statement fails, which its strategy never draws."""
    seen = []

    def body(check, x):
        """x != 7 (false at 7 alone)."""
        seen.append(x)
        check.holds(x != 7, "x = 7")
    given = st.fixed_dictionaries({"x": st.integers(0, 5)})
    assert Statement("s", body, (), given).run(max_examples=5).status == "pass"
    pinned = Statement("s", body, (), given, examples=({"x": 7},))
    for derandomize in (False, True):
        seen.clear()
        outcome = pinned.run(max_examples=5, shrink=False, derandomize=derandomize)
        assert outcome.status == "FAIL" and outcome.message.endswith("x = 7")
        assert seen == [7]  # first, and the failure ends the run


def test_a_statement_failing_in_two_ways_names_the_first_failure_not_a_group():
    """Two pinned examples failing in distinct ways (a check, a crash) made hypothesis raise
    an ExceptionGroup, and the outcome said only 'Hypothesis found 2 distinct failures in
    explicit examples. (2 sub-exceptions)', not what failed. The first is the first given:
    hypothesis ran the pinned examples last first."""
    def body(check, x):
        """1 / (x - 8) is defined and x != 7."""
        check.holds(1 / (x - 8) and x != 7, "x = 7")
    given = st.fixed_dictionaries({"x": st.integers(0, 5)})
    for derandomize in (False, True):
        outcome = Statement("s", body, (), given, examples=({"x": 7}, {"x": 8})).run(
            max_examples=5, shrink=False, derandomize=derandomize)
        assert (outcome.status, outcome.message) == ("FAIL", "StatementFailed: x = 7")


def _stand_ins(outcomes, mutants, caught):
    """runner's select, MUTANTS and run_mutant for stand-in statements whose runs give
    ``outcomes``, and mutants whose runs fail exactly the statements named in ``caught``."""
    from proofs.framework import Outcome

    class Ran:
        def __init__(self, outcome):
            self.name, self.run = outcome.name, lambda: outcome
    return {"select": lambda name: [Ran(o) for o in outcomes],
            "MUTANTS": {m.name: m for m in mutants},
            "run_mutant": lambda m: {n: Outcome(n, "", status="FAIL" if (m.name, n) in caught
                                                else "pass") for n in m.caught_by}}


def _runner_on(monkeypatch, outcomes, mutants=(), caught=()):
    """runner.main over stand-ins (``_stand_ins``): its exit status and its output."""
    for name, value in _stand_ins(outcomes, mutants, caught).items():
        monkeypatch.setattr(runner, name, value)
    out = io.StringIO()
    if mutants:
        return runner.main("any", mutants=True, out=out), out.getvalue()
    return runner.main("any", out=out), out.getvalue()  # statements alone by default


def test_runner_stops_after_the_statement_that_lost_a_ctrl_c(monkeypatch):
    """A Ctrl-C in hypothesis's garbage collector callback is one Python cannot raise there
    (``minilean.interrupts``): the proofs ran on to the last statement. The runner raises it
    after the statement it landed in."""
    from minilean.interrupts import catch_lost_interrupts
    from proofs.framework import Outcome

    class CtrlCLandsInDel:
        def __del__(self):
            raise KeyboardInterrupt
    ran = []

    def statement(name):
        def run():
            ran.append(name)
            if name == "first":
                CtrlCLandsInDel()  # made and deleted at once
            return Outcome(name, "")
        return type("Ran", (), {"name": name, "run": staticmethod(run)})
    monkeypatch.setattr(runner, "select", lambda name: [statement("first"), statement("second")])
    with catch_lost_interrupts(), pytest.raises(KeyboardInterrupt):
        runner.main("any", out=io.StringIO())
    assert ran == ["first"]


def _broken(original):
    """The broken implementation, in one line.

    More that the table leaves out."""


def test_runner_table_shortens_summaries_and_says_what_each_statement_found(monkeypatch):
    """One row per statement, columns as wide as their widest cell, a summary past 72
    characters cut to 72 (one of 72 kept whole), no error / bound where no example ran (a
    missing function, or a strategy that failed before its first example), the failure's
    message after FAIL."""
    from proofs.framework import Outcome
    long = "d/dx logsumexp(x)_i = softmax(x)_i for every x of at most six elements, ties included"
    outcomes = [Outcome("first", long, examples=20, worst_error=1.234e-7, worst_bound=2.5e-7),
                Outcome("second_statement", "x = y" + " " * 63 + "(72)", examples=3,
                        worst_error=0.5, worst_bound=0.25, status="FAIL",
                        message="StatementFailed: error > bound"),
                Outcome("third", "f(x) = 0", status="missing", message="m.f does not exist yet"),
                Outcome("fourth", "g(x) = 1", status="FAIL", message="InvalidArgument: strategy")]
    code, text = _runner_on(monkeypatch, outcomes)
    assert code == 1
    assert text == (
        "theorem          | statement                                                           "
        "     | examples tried | worst error / bound | result\n"
        "-----------------+---------------------------------------------------------------------"
        "-----+----------------+---------------------+-------------------------------------\n"
        "first            | d/dx logsumexp(x)_i = softmax(x)_i for every x of at most six elem"
        "ent... | 20             | 1.2e-07 / 2.5e-07   | pass\n"
        "second_statement | x = y                                                               "
        "(72) | 3              | 0.5 / 0.25          | FAIL: StatementFailed: error > bound\n"
        "third            | f(x) = 0                                                            "
        "     | 0              | -                   | missing: m.f does not exist yet\n"
        "fourth           | g(x) = 1                                                            "
        "     | 0              | -                   | FAIL: InvalidArgument: strategy\n"
        "\n4 statements: 1 pass, 2 fail, 1 missing (function not implemented yet)\n")


def test_runner_mutation_table_fails_the_run_on_a_missed_mutant(monkeypatch):
    """Each mutant whose catching statements match is run; one that a named statement passes
    is MISSED and makes the exit status 1, though every statement passed (and, with a failed
    statement besides, 1 all the same)."""
    from proofs.framework import Outcome
    from proofs.mutation import Mutant
    outcomes = [Outcome("first", "x = x", examples=1), Outcome("second", "y = y", examples=1)]
    mutants = [Mutant("caught one", "m.f", _broken, ("first", "second")),
               Mutant("missed one", "m.g", _broken, ("second",)),
               Mutant("not asked", "m.h", _broken, ("elsewhere",))]
    both = {("caught one", "first"), ("caught one", "second")}
    code, text = _runner_on(monkeypatch, outcomes, mutants, caught=both)
    assert code == 1
    assert text.endswith(
        "\n2 statements: 2 pass, 0 fail, 0 missing (function not implemented yet)\n\n"
        "mutant     | broken implementation                   | result | caught by\n"
        "-----------+-----------------------------------------+--------+--------------\n"
        "caught one | The broken implementation, in one line. | caught | first, second\n"
        "missed one | The broken implementation, in one line. | MISSED | -\n")
    code, _ = _runner_on(monkeypatch, outcomes, mutants[:1], caught=both)
    assert code == 0
    failing = [Outcome("first", "x = x", examples=1, status="FAIL", message="x != x")]
    missed = Mutant("missed one", "m.g", _broken, ("first",))
    code, _ = _runner_on(monkeypatch, failing, [missed], caught=())
    assert code == 1  # a failed statement and a missed mutant: still a failure


def test_python_m_proofs_runner_runs_the_named_statements_and_mutants(monkeypatch, capsys):
    """``python -m proofs.runner [X]``: the statements whose name contains X and their
    mutants, exit status 1 on a missed mutant; an X that none contains is a one-line error."""
    import runpy

    from proofs import framework, mutation
    from proofs.framework import Outcome
    from proofs.mutation import Mutant
    stand_ins = _stand_ins([Outcome("first", "x = x", examples=1)],
                           [Mutant("missed one", "m.g", _broken, ("first",))], caught=())
    monkeypatch.setattr(framework, "select", stand_ins["select"])
    for name in ("MUTANTS", "run_mutant"):
        monkeypatch.setattr(mutation, name, stand_ins[name])
    monkeypatch.delitem(sys.modules, "proofs.runner")  # run afresh, as python -m does
    monkeypatch.setattr(sys, "argv", ["runner.py", "first"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("proofs.runner", run_name="__main__")
    assert exit_info.value.code == 1
    assert "\nmissed one | The broken implementation, in one line. | MISSED | -\n" in (
        capsys.readouterr().out)
    asked = []
    monkeypatch.setattr(framework, "select", lambda name: asked.append(name) or [])
    monkeypatch.setattr(sys, "argv", ["runner.py", "no such theorem"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("proofs.runner", run_name="__main__")
    assert exit_info.value.code == 2 and capsys.readouterr().err == (
        "python -m proofs.runner: error: no statement name contains 'no such theorem'\n")
    monkeypatch.setattr(sys, "argv", ["runner.py"])  # no X: every statement
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("proofs.runner", run_name="__main__")
    assert asked == ["no such theorem", None]
    # --help is help, not a name; a second word was dropped without a word
    for argv, code in ((["--help"], 0), (["first", "second"], 2)):
        monkeypatch.setattr(sys, "argv", ["runner.py", *argv])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module("proofs.runner", run_name="__main__")
        assert exit_info.value.code == code
    assert asked == ["no such theorem", None]
    assert "usage: python -m proofs.runner [-h] [name]" in capsys.readouterr().out


def test_a_failure_is_reported_on_its_simplest_example_and_counterexample_may_find_none():
    """run() shrinks a failing example to the simplest one hypothesis finds (the table shows
    that one); counterexample() of a relaxed strategy on which the conclusion still holds
    finds none."""
    def body(check, x):
        """x < 10 (false from 10 on)."""
        check.holds(x < 10, f"x = {x}")
    given = st.fixed_dictionaries({"x": st.integers(0, 1000)})
    assert Statement("s", body, (), given).run().message == "StatementFailed: x = 10"
    holding = Statement("s", body, (), given, st.fixed_dictionaries({"x": st.integers(-5, 9)}))
    with pytest.raises(NoSuchExample):
        holding.counterexample(max_examples=20)


def test_a_failures_error_and_bound_are_those_of_the_example_its_message_names():
    """The column showed the worst ratio over every example tried, shrinking's included
    (0.0014 / 1.1e-18 beside a message saying error 0.026 > bound 6.91e-17)."""
    def body(check, x):
        """x / 1000 is within 1e-9 of 0 (false from 1 on; the largest x, the worst ratio)."""
        check.close(x / 1000, mpmath.mpf(0), 1e-9, f"x = {x}")
    # derandomized: these draws meet x = 162 before shrinking ends (not always at x = 1)
    outcome = _statement(body, {"x": st.integers(0, 1000)}).run(max_examples=50,
                                                                 derandomize=True)
    x = int(re.match(r"StatementFailed: x = (\d+): ", outcome.message).group(1))
    assert 1 <= x < 162 and outcome.message.endswith(f"error {x / 1000:.3g} > bound 1e-09")
    assert (outcome.worst_error, outcome.worst_bound) == (x / 1000, 1e-9)


def test_a_failure_no_comparison_made_shows_no_error_and_bound():
    """A condition that does not hold (or a crash) after comparisons that passed: the column
    showed the worst passing one (0 / 0.001 | FAIL: ...), which reads as the failure's."""
    from proofs.runner import _error_column

    def body(check, x):
        """x is within a thousandth of itself, and below 10."""
        check.close(x, mpmath.mpf(x), 1e-3, "x itself")
        check.holds(x < 10, f"x = {x}")
    outcome = _statement(body, {"x": st.integers(0, 1000)}).run(max_examples=50,
                                                                 derandomize=True)
    assert outcome.status == "FAIL" and outcome.message.startswith("StatementFailed: x = ")
    assert (outcome.worst_error, outcome.worst_bound) == (None, None)
    assert _error_column(outcome) == "-"


def test_a_run_draws_new_examples_unless_derandomized(fresh_draws):
    """Outside CI's derandomized profile every run draws new examples (a local run tries new
    inputs), but derandomize=True (the mutation suite's verdicts) the same ones every run."""
    seen = []

    def body(check, x):
        """x = x."""
        seen.append(x)
    statement = _statement(body, {"x": st.integers(0, 2 ** 60)})
    runs = []
    for options in ({"derandomize": True}, {"derandomize": True}, {}, {}):
        seen.clear()
        statement.run(max_examples=5, **options)
        runs.append(list(seen))
    assert runs[0] == runs[1] and runs[2] != runs[3]


def test_a_gradient_is_checked_for_its_dtype_shape_and_values():
    """check_gradient fails a missing gradient, one of another dtype or shape than its tensor
    (a backward that returns float64 for float32, or forgets to unbroadcast), and one off by
    more than its bound; check_against_replay fails the replay itself (values not the
    reference's, a bound infinite) as a check of the reference, then the gradient against the
    replay's bounds."""
    from minilean.autograd.tensor import Tensor
    from proofs.gradients import check_against_replay, check_gradient
    from proofs.running_error import Carried
    x = Tensor(numpy.zeros(2, dtype=numpy.float32), requires_grad=True)
    ones = [mpmath.mpf(1)] * 2
    with pytest.raises(StatementFailed, match="^x: no gradient$"):
        check_gradient(Check(), x, ones, 0, "x")
    for grad, wrong in ((numpy.ones(2), r"float64 \(2,\)"),
                        (numpy.ones((1, 2), dtype=numpy.float32), r"float32 \(1, 2\)")):
        x._grad = Tensor(grad)
        with pytest.raises(StatementFailed, match=f"^x: gradient is {wrong}, input is float32"):
            check_gradient(Check(), x, ones, 0, "x")
    x._grad = Tensor(numpy.asarray([1.0, 1.5], dtype=numpy.float32))
    check_gradient(Check(), x, ones, [0, 0.5], "x")
    with pytest.raises(StatementFailed, match="^x: computed 1.5"):
        check_gradient(Check(), x, ones, [0, 0.25], "x")

    def replay(values, errors):
        return [Carried(mpmath.mpf(v), mpmath.mpf(e), numpy.float32)
                for v, e in zip(values, errors)]
    with mpmath.workdps(DIGITS):
        # the replay rounds its 50 digits in proportion to its bound over u (2^24 0.5 here)
        near = [1, 1 + mpmath.mpf(10) ** -40]
        check_against_replay(Check(), x, ones, replay(near, [0, 0.5]), numpy.float32, "x")
        for replayed, failure in ((replay([1, 1.25], [0, 0.5]), "replay at 50 digits"),
                                  (replay([1, 1], [0, mpmath.inf]), "infinite bound")):
            with pytest.raises(ReferenceFailed, match=f"^reference: x: {failure}"):
                check_against_replay(Check(), x, ones, replayed, numpy.float32, "x")
        with pytest.raises(StatementFailed, match="^x: computed 1.5"):
            check_against_replay(Check(), x, ones, replay([1, 1], [0, 0.25]), numpy.float32,
                                 "x")
