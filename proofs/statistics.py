"""Seeded statistical tests for distributional statements, at a stated false-alarm rate.

A true statement fails one of these tests with probability at most FALSE_ALARM for a random
seed; in CI hypothesis draws the same seeds every run (derandomized), so CI runs repeat
exactly. A broken sampler (wrong scale, wrong mean, wrong shape of law) fails them with
overwhelming probability at the sample sizes used.

* Kolmogorov-Smirnov: sup_x |F_n(x) - F(x)| against the asymptotic critical value
  sqrt(-ln(alpha / 2) / 2) / sqrt(n), which is conservative for every finite n (the exact
  critical values are smaller).
* Moments: a sample mean within z sigma / sqrt(n) of the mean, and a sample variance within
  z sigma^2 sqrt(2 / (n - 1)) of the variance (its standard deviation for Gaussian samples),
  with z the two-sided normal quantile of FALSE_ALARM.
"""
import math

import mpmath
import numpy

# Per test. A statement makes up to a few dozen of these tests in one run (a mean, a variance
# and a KS test per coordinate, for each example hypothesis draws), and outside CI hypothesis
# draws new seeds every run: at 1e-3 per test, `pytest proofs` failed about one local run in
# six, on true statements.
FALSE_ALARM = 1e-5
Z = 4.4172  # two-sided standard normal quantile at 1e-5


def normal_cdf(x, mean, std):
    return 0.5 * (1 + math.erf((x - mean) / (std * math.sqrt(2))))


def ks_statistic(samples, cdf):
    """sup |empirical CDF - cdf| for 1-D samples."""
    values = numpy.sort(numpy.asarray(samples, dtype=numpy.float64).reshape(-1))
    n = values.size
    model = numpy.array([cdf(v) for v in values])
    above = numpy.arange(1, n + 1) / n - model
    below = model - numpy.arange(n) / n
    return float(max(above.max(), below.max()))


def ks_critical(n, alpha=FALSE_ALARM):
    return math.sqrt(-math.log(alpha / 2) / 2) / math.sqrt(n)


def gaussian_law_checks(check, samples, mean, std, what):
    """Moments and KS of ``samples`` against N(mean, std^2), recorded on ``check``."""
    samples = numpy.asarray(samples, dtype=numpy.float64).reshape(-1)
    n = samples.size
    import mpmath
    check.close(samples.mean(), mpmath.mpf(mean), Z * std / math.sqrt(n), f"{what}: mean")
    check.close(samples.var(ddof=1), mpmath.mpf(std) ** 2,
                Z * std ** 2 * math.sqrt(2 / (n - 1)), f"{what}: variance")
    statistic = ks_statistic(samples, lambda x: normal_cdf(x, mean, std))
    check.close(statistic, mpmath.mpf(0), ks_critical(n), f"{what}: Kolmogorov-Smirnov")


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
