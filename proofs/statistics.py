"""Seeded statistical tests for distributional statements, within a false-alarm budget per run.

**The budget.** Under ``CI=true`` hypothesis is derandomized, so CI draws the same seeds on
every run; a local ``pytest proofs`` (or ``python -m minilean proofs``) draws new ones, and one
run makes many tests. ``TESTS`` lists every statement that makes statistical tests with its
worst case per run (its max_examples times its tests per example at the largest shape it
draws): TESTS_PER_RUN = 191 (a typical run makes about 129). Each test is given

    FALSE_ALARM = RUN_FALSE_ALARM / TESTS_PER_RUN = 1e-6 / 191 = 5.24e-9,

so by the union bound (no independence needed: a statement's mean, variance and KS tests share
their samples) a run of the proofs on true statements fails with probability at most
RUN_FALSE_ALARM = 1e-6. (At the former 1e-5 per test, forwardGaussian_isGaussian alone, 72
tests in the worst case, failed up to 7e-4 of runs.) `test_statements.py` checks that no
statement makes more tests than it is budgeted and that each budget uses its statement's
max_examples. Every constant below is derived from FALSE_ALARM in code:

* **Mean** of Gaussian samples of known sigma: |mean - m| <= Z sigma / sqrt(n), with Z the
  two-sided standard normal quantile (sqrt(2) erfinv(1 - FALSE_ALARM) = 5.840): exact.
* **Variance** of Gaussian samples: (n - 1) s^2 / sigma^2 is chi-square with n - 1 degrees of
  freedom. The band is sigma^2 times the larger distance from 1 of its two quantiles at
  FALSE_ALARM / 2 each (mpmath's regularized incomplete gamma), so it is exact on the heavier
  side and conservative on the other. The normal approximation z sigma^2 sqrt(2 / (n - 1))
  used before is not conservative (the right tail is heavier): at z = 4.4172 its true rate was
  1.16e-5 for n = 4000 and 1.63e-5 for n = 1000, and at z = 5.840 it would be 2.0 and 6.0 times
  FALSE_ALARM. At n = LAW_SAMPLES (below) the exact band is 1.2% wider than
  Z sqrt(2 / (n - 1)) (4.3% at the former n = 4000); its lower side, set by the upper
  quantile, is left with a rate of 0.41 FALSE_ALARM / 2.
* **Kolmogorov-Smirnov**: sup |F_n - F| against sqrt(ln(2 / alpha) / (2 n)). This is the
  Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant (Massart 1990),
  P(sup_x |F_n(x) - F(x)| > eps) <= 2 exp(-2 n eps^2) for every n and continuous F, solved for
  eps: a finite-n bound, not only the first term of Kolmogorov's asymptotic series. It holds
  for a law on the integers too (the timesteps training draws, ``uniform_integers_check``):
  X = F^-1(U) of a uniform U has F_n(x) = G_n(F(x)), G_n the empirical CDF of the U, so
  sup_x |F_n(x) - F(x)| <= sup_u |G_n(u) - u|, the continuous case's statistic.
* **Monte Carlo means of non-Gaussian quantities** (likelihood.py: a mean log-likelihood with its
  exact variance, IW-bound means with standard errors estimated from 1000 replicates) rest on
  the central limit theorem, whose error grows in the far tail. They use Z_CLT, the normal
  quantile at FALSE_ALARM / CLT_SAFETY = FALSE_ALARM / 100 (6.564), which covers the two
  departures that can be computed: a standard error estimated from n = 1000 values (Student t
  with 999 degrees of freedom exceeds Z_CLT with probability 0.016 FALSE_ALARM; at Z itself it
  would be 1.35 FALSE_ALARM) and skewness: -log p(x | z) and IW_1 are quadratic forms of the
  Gaussian noise, whose skewness is at most chi-square(1)'s, 2 sqrt(2), and the mean of 1000
  chi-square(1) values leaves the Z_CLT band with probability 0.16 FALSE_ALARM (at Z it would
  be 6.0 FALSE_ALARM). That is the extreme case computed, not a bound for every quadratic
  form, and IW_K for K > 1 is a log-sum-exp, not a quadratic form: for these tests the rate is
  an approximation, with a factor 100 in hand. `test_framework.py` recomputes these tails.

**The power.** A false-alarm rate says nothing of what the tests catch. At the former 4000
draws per sample set (1000 per coordinate in the diagonal law) the variance band was +-13.6%
(+-28%) and the KS distance 0.050 (0.099): normals 4% too wide passed one sample set's tests
with probability 0.987 (0.99996), normals off by 0.05 sigma with 0.996 (0.99999), and the
mutants below went unnoticed in nearly every run. The sample size is now derived from the power
asked. The smallest slips of the engine's normal generator that the Gaussian law statements
(GAUSSIAN_LAWS) must catch are a scale DETECTED_SCALE = 1.04 and a shift DETECTED_SHIFT = 0.05
standard deviations, and either may pass a whole run with probability at most RUN_MISS = 1e-6.
A slip is caught when each of the four statements fails, so each may miss it with
MISS = RUN_MISS / 4 = 2.5e-7 (union bound). A statement fails when any test of any of its sample
sets does, so its miss is at most that of one test on one sample set, computed exactly:

* the shift makes the standardised sample mean N(0.05 sqrt(n), 1), which the mean test passes
  with probability Phi(Z - 0.05 sqrt(n)) - Phi(-Z - 0.05 sqrt(n)) (``mean_test_miss``);
* the scale makes (n - 1) s^2 / sigma^2 1.04^2 times a chi-square(n - 1), which the variance
  test passes with the chi-square probability of (n - 1) (1 +- band) / 1.04^2
  (``variance_test_miss``).

LAW_SAMPLES is the smallest n at which both are at most MISS: 47227, set by the shift (the
scale alone needs 38307). There a statement misses the shift with probability 2.50e-7 and the
scale with 2.7e-10, so a run misses them with at most 1e-6 and 1.1e-9; the variance band is
+-3.8% and the KS distance 0.0145. A larger slip moves the statistic further and is missed
less. forward_multistep_law's chain of one-step noisings scales its variance by exactly 1.04^2
and shifts its mean by 0.05 sum_s c_s >= 0.05 sigma, c_s = sqrt(beta_s prod_{r>s} (1 - beta_r))
>= 0 (sigma^2 = sum_s c_s^2). `test_framework.py` recomputes both misses. Broken samplers of
other kinds (a wrong coefficient, the variance for the standard deviation, a non-Gaussian law)
fail with the margins in proofs/README.md.
"""
import functools
import math

import mpmath
import numpy

from proofs.mutation import mutant

RUN_FALSE_ALARM = 1e-6  # a whole run of the proofs, on true statements
# statement -> (its max_examples, statistical tests per example at the largest shape drawn):
# mean, variance and KS per sample set (one set, up to 6 coordinates, up to 6 rows of
# timesteps, one chain); one mean test; IW: <= log p(x) per K, = ELBO, two nondecreasing steps;
# one KS test of the timesteps' law
TESTS = {
    "scalar_reparameterization_law": (5, 3),
    "diagonal_reparameterization_coordinate_law": (3, 6 * 3),
    "forwardGaussian_isGaussian": (4, 6 * 3),
    "forward_multistep_law": (4, 3),
    "elbo_le_log_evidence_linear_gaussian": (10, 1),
    "iwBound_tightens_with_K_linear_gaussian": (4, 3 + 1 + 2),
    "sampleTimesteps_uniform": (4, 1),
}
TESTS_PER_RUN = sum(examples * per_example for examples, per_example in TESTS.values())
FALSE_ALARM = RUN_FALSE_ALARM / TESTS_PER_RUN  # per test
CLT_SAFETY = 100
# The power of the Gaussian law tests (see above): the smallest slips of the engine's normal
# generator that they must catch (the mutants below) and the rate at which either may pass a
# whole run; each statement of GAUSSIAN_LAWS may miss one with MISS (union bound)
DETECTED_SCALE = 1.04
DETECTED_SHIFT = 0.05
RUN_MISS = 1e-6
GAUSSIAN_LAWS = ("scalar_reparameterization_law", "diagonal_reparameterization_coordinate_law",
                 "forwardGaussian_isGaussian", "forward_multistep_law")
MISS = RUN_MISS / len(GAUSSIAN_LAWS)


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


def mean_test_miss(n, shift):
    """P(the mean test passes) on n Gaussian samples whose mean is off by ``shift`` standard
    deviations: the standardised sample mean is N(shift sqrt(n), 1), inside +-Z."""
    with mpmath.workdps(30):
        offset = mpmath.mpf(shift) * mpmath.sqrt(n)
        return float(mpmath.ncdf(Z - offset) - mpmath.ncdf(-Z - offset))


def variance_test_miss(n, scale):
    """P(the variance test passes) on n Gaussian samples whose standard deviation is ``scale``
    times the stated one: (n - 1) s^2 / sigma^2 is scale^2 chi-square(n - 1), inside
    (n - 1) (1 +- variance_band(n))."""
    band, dof = variance_band(n), n - 1
    with mpmath.workdps(30):
        below = [chi_square_tail(dof, dof * (1 + side * band) / mpmath.mpf(scale) ** 2,
                                 upper=False) for side in (-1, 1)]
        return float(below[1] - below[0])


def smallest_sample(miss, target, start=1000):
    """The smallest n >= ``start`` with miss(n) <= target, for a miss decreasing in n:
    doubling, then bisection."""
    low, high = start, start
    while miss(high) > target:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if miss(middle) <= target else (middle, high)
    return high


# Draws per sample set of a Gaussian law test: the fewest at which each slip passes its test
# (the mean test the shift, the variance test the scale) with probability at most MISS. The
# variance search starts from the mean's n (the larger here), so that it costs one
# variance_band (a root search in mpmath, up to 0.4 s) instead of some twenty.
LAW_SAMPLES = smallest_sample(lambda n: variance_test_miss(n, DETECTED_SCALE), MISS,
                              start=smallest_sample(lambda n: mean_test_miss(n, DETECTED_SHIFT),
                                                    MISS))


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
    check.gaussian_law_tests += 3
    check.close(samples.mean(), mpmath.mpf(mean), Z * std / math.sqrt(n), f"{what}: mean")
    check.close(samples.var(ddof=1), mpmath.mpf(std) ** 2, std ** 2 * variance_band(n),
                f"{what}: variance")
    statistic = ks_statistic(samples, lambda x: normal_cdf(x, mean, std))
    check.close(statistic, mpmath.mpf(0), ks_critical(n), f"{what}: Kolmogorov-Smirnov")


def uniform_integers_check(check, draws, T, what):
    """Kolmogorov-Smirnov of the integers ``draws`` against the uniform law on {0, ..., T-1},
    recorded on ``check``: one statistical test. Both CDFs are steps at the integers, so the
    sup is taken at k = 0..T-1, where F(k) = (k + 1) / T (a draw outside 0..T-1 is for the
    caller to refuse, exactly); the critical value is the continuous case's (module
    docstring)."""
    draws = numpy.asarray(draws).reshape(-1)
    check.statistical_tests += 1
    below = numpy.searchsorted(numpy.sort(draws), numpy.arange(T), side="right")  # #{t <= k}
    statistic = float(numpy.abs(below / draws.size - numpy.arange(1, T + 1) / T).max())
    check.close(statistic, mpmath.mpf(0), ks_critical(draws.size), f"{what}: Kolmogorov-Smirnov")


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


# --- mutants -------------------------------------------------------------------------------
# minilean.randn is the engine's normal generator: engine_noise draws through it and the VAE's
# randn_like (its sampling noise) calls it.

@mutant("engine normals 4% too wide", "minilean.autograd.creation.randn",
        caught_by=GAUSSIAN_LAWS)
def normals_too_wide(original):
    """randn draws N(0, 1.04^2) (DETECTED_SCALE): each normal times 1.04."""
    def broken(*size, requires_grad=False, **options):
        return (original(*size, **options) * DETECTED_SCALE).requires_grad_(requires_grad)
    return broken


@mutant("engine normals off by 0.05", "minilean.autograd.creation.randn",
        caught_by=GAUSSIAN_LAWS)
def normals_shifted(original):
    """randn draws N(0.05, 1) (DETECTED_SHIFT): each normal plus 0.05."""
    def broken(*size, requires_grad=False, **options):
        return (original(*size, **options) + DETECTED_SHIFT).requires_grad_(requires_grad)
    return broken
