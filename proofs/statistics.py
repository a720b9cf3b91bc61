"""Seeded statistical tests for distributional statements, within a false-alarm budget per run.

**The budget.** Under ``CI=true`` hypothesis is derandomized, so CI draws the same seeds on
every run; a local ``pytest proofs`` (or ``python -m minilean proofs``) draws new ones, and one
run makes many tests. ``TESTS`` lists every statement that makes statistical tests with its
worst case per run (its max_examples times its tests per example at the largest shape it
draws): TESTS_PER_RUN = 187 (a typical run makes about 125). Each test is given

    FALSE_ALARM = RUN_FALSE_ALARM / TESTS_PER_RUN = 1e-6 / 187 = 5.35e-9,

so by the union bound (no independence needed: a statement's mean, variance and KS tests share
their samples) a run of the proofs on true statements fails with probability at most
RUN_FALSE_ALARM = 1e-6. (At the former 1e-5 per test, forwardGaussian_isGaussian alone, 72
tests in the worst case, failed up to 7e-4 of runs.) `test_statements.py` checks that no
statement makes more tests than it is budgeted and that each budget uses its statement's
max_examples. Every constant below is derived from FALSE_ALARM in code:

* **Mean** of Gaussian samples of known sigma: |mean - m| <= Z sigma / sqrt(n), with Z the
  two-sided standard normal quantile (sqrt(2) erfinv(1 - FALSE_ALARM) = 5.836): exact.
* **Variance** of Gaussian samples: (n - 1) s^2 / sigma^2 is chi-square with n - 1 degrees of
  freedom. The band is sigma^2 times the larger distance from 1 of its two quantiles at
  FALSE_ALARM / 2 each (mpmath's regularized incomplete gamma), so it is exact on the heavier
  side and conservative on the other. The normal approximation z sigma^2 sqrt(2 / (n - 1))
  used before is not conservative (the right tail is heavier): at z = 4.4172 its true rate was
  1.16e-5 for n = 4000 and 1.63e-5 for n = 1000, and at z = 5.836 it would be 2.0 and 5.7 times
  FALSE_ALARM. The exact band is 4.3% (n = 4000) and 8.6% (n = 1000) wider than
  Z sqrt(2 / (n - 1)); its lower side, set by the upper quantile, is left with a rate of
  0.017 (n = 4000) and 0.0002 (n = 1000) times FALSE_ALARM / 2.
* **Kolmogorov-Smirnov**: sup |F_n - F| against sqrt(ln(2 / alpha) / (2 n)). This is the
  Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant (Massart 1990),
  P(sup_x |F_n(x) - F(x)| > eps) <= 2 exp(-2 n eps^2) for every n and continuous F, solved for
  eps: a finite-n bound, not only the first term of Kolmogorov's asymptotic series.
* **Monte Carlo means of non-Gaussian quantities** (likelihood.py: a mean log-likelihood with its
  exact variance, IW-bound means with standard errors estimated from 1000 replicates) rest on
  the central limit theorem, whose error grows in the far tail. They use Z_CLT, the normal
  quantile at FALSE_ALARM / CLT_SAFETY = FALSE_ALARM / 100 (6.561), which covers the two
  departures that can be computed: a standard error estimated from n = 1000 values (Student t
  with 999 degrees of freedom exceeds Z_CLT with probability 0.016 FALSE_ALARM; at Z itself it
  would be 1.35 FALSE_ALARM) and skewness: -log p(x | z) and IW_1 are quadratic forms of the
  Gaussian noise, whose skewness is at most chi-square(1)'s, 2 sqrt(2), and the mean of 1000
  chi-square(1) values leaves the Z_CLT band with probability 0.16 FALSE_ALARM (at Z it would
  be 6.0 FALSE_ALARM). That is the extreme case computed, not a bound for every quadratic
  form, and IW_K for K > 1 is a log-sum-exp, not a quadratic form: for these tests the rate is
  an approximation, with a factor 100 in hand. `test_framework.py` recomputes these tails.

A broken sampler (wrong scale, wrong mean, wrong shape of law) still fails the tests with
overwhelming probability at the sample sizes used (the mutants' margins: proofs/README.md).
"""
import functools
import math

import mpmath
import numpy

RUN_FALSE_ALARM = 1e-6  # a whole run of the proofs, on true statements
# statement -> (its max_examples, statistical tests per example at the largest shape drawn):
# mean, variance and KS per sample set (one set, up to 6 coordinates, up to 6 rows of
# timesteps, one chain); one mean test; IW: <= log p(x) per K, = ELBO, two nondecreasing steps
TESTS = {
    "scalar_reparameterization_law": (5, 3),
    "diagonal_reparameterization_coordinate_law": (3, 6 * 3),
    "forwardGaussian_isGaussian": (4, 6 * 3),
    "forward_multistep_law": (4, 3),
    "elbo_le_log_evidence_linear_gaussian": (10, 1),
    "iwBound_tightens_with_K_linear_gaussian": (4, 3 + 1 + 2),
}
TESTS_PER_RUN = sum(examples * per_example for examples, per_example in TESTS.values())
FALSE_ALARM = RUN_FALSE_ALARM / TESTS_PER_RUN  # per test
CLT_SAFETY = 100


def normal_quantile(alpha):
    """z with P(|N(0, 1)| > z) = alpha."""
    with mpmath.workdps(30):
        return float(mpmath.sqrt(2) * mpmath.erfinv(1 - mpmath.mpf(alpha)))


Z = normal_quantile(FALSE_ALARM)
Z_CLT = normal_quantile(FALSE_ALARM / CLT_SAFETY)


def chi_square_tail(dof, x, upper=True):
    """P(X > x) (or P(X < x)) for X chi-square with ``dof`` degrees of freedom, in mpmath."""
    half = mpmath.mpf(dof) / 2
    if upper:
        return mpmath.gammainc(half, mpmath.mpf(x) / 2, mpmath.inf, regularized=True)
    return mpmath.gammainc(half, 0, mpmath.mpf(x) / 2, regularized=True)


@functools.lru_cache(maxsize=None)
def variance_band(n, alpha=FALSE_ALARM):
    """Half-width, in units of sigma^2, of the band around sigma^2 that the sample variance
    (ddof=1) of n Gaussian samples leaves with probability at most ``alpha``: the larger
    distance from 1 of the chi-square quantiles at alpha / 2 on each side, divided by n - 1."""
    dof = n - 1
    target = mpmath.log(mpmath.mpf(alpha) / 2)
    with mpmath.workdps(30):
        spread = 40 * mpmath.sqrt(2 * dof)
        upper = mpmath.findroot(lambda x: mpmath.log(chi_square_tail(dof, x)) - target,
                                (dof, dof + spread), solver="illinois")
        lower = mpmath.findroot(
            lambda x: mpmath.log(chi_square_tail(dof, x, upper=False)) - target,
            (mpmath.mpf(dof) / 1000, dof), solver="illinois")
        return float(max(upper - dof, dof - lower) / dof)


def normal_cdf(x, mean, std):
    """The N(mean, std^2) CDF of each element of the float64 array ``x``, through the engine's
    erf (SciPy's, or without SciPy the standard library's one element at a time): within
    1e-15 of mpmath's (test_framework.py), far below any KS critical distance."""
    from minilean import backend
    return 0.5 * (1 + backend.erf((x - mean) / (std * math.sqrt(2))))


def ks_statistic(samples, cdf):
    """sup |empirical CDF - cdf| for 1-D samples; ``cdf`` maps the sorted samples (a float64
    array) to their model CDF values at once."""
    values = numpy.sort(numpy.asarray(samples, dtype=numpy.float64).reshape(-1))
    n = values.size
    model = cdf(values)
    above = numpy.arange(1, n + 1) / n - model
    below = model - numpy.arange(n) / n
    return float(max(above.max(), below.max()))


def ks_critical(n, alpha=FALSE_ALARM):
    """eps with 2 exp(-2 n eps^2) = alpha (Dvoretzky-Kiefer-Wolfowitz-Massart)."""
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def gaussian_law_checks(check, samples, mean, std, what):
    """Moments and KS of ``samples`` against N(mean, std^2), recorded on ``check``: three
    statistical tests."""
    samples = numpy.asarray(samples, dtype=numpy.float64).reshape(-1)
    n = samples.size
    check.statistical_tests += 3
    check.close(samples.mean(), mpmath.mpf(mean), Z * std / math.sqrt(n), f"{what}: mean")
    check.close(samples.var(ddof=1), mpmath.mpf(std) ** 2, std ** 2 * variance_band(n),
                f"{what}: variance")
    statistic = ks_statistic(samples, lambda x: normal_cdf(x, mean, std))
    check.close(statistic, mpmath.mpf(0), ks_critical(n), f"{what}: Kolmogorov-Smirnov")


def monte_carlo_mean_check(check, estimate, expected, standard_error, what, slack=0.0):
    """One CLT test, recorded on ``check``: |estimate - expected| <= Z_CLT standard_error +
    slack (``slack`` for the float64 rounding of the estimate). A one-sided test passes
    max(estimate - expected, 0) and 0."""
    check.statistical_tests += 1
    check.close(estimate, mpmath.mpf(expected), Z_CLT * standard_error + slack, what)


def pushforward_moments(mu, sigma):
    """Mean and variance of mu + sigma eps for eps ~ N(0, 1), by quadrature at 50 digits."""
    density = lambda e: mpmath.exp(-e * e / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
    mean = mpmath.quad(lambda e: (mu + sigma * e) * density(e), [-mpmath.inf, mpmath.inf])
    variance = mpmath.quad(lambda e: (mu + sigma * e - mean) ** 2 * density(e),
                           [-mpmath.inf, mpmath.inf])
    return mean, variance


def engine_noise(law, shape, seed):
    """Engine standard normals (the law the theorem assumes) or, to show the hypothesis
    matters, uniform noise with the same mean 0 and variance 1."""
    import minilean
    minilean.manual_seed(seed)
    if law == "normal":
        return minilean.randn(*shape, dtype=numpy.float64)
    return (minilean.rand(*shape, dtype=numpy.float64) - 0.5) * float(numpy.sqrt(12))
