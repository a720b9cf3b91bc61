"""Likelihood bounds beyond TorchLean: ELBO <= log p(x), and the importance-weighted bound
tightening with K, on a linear-Gaussian model where log p(x) is exact.

The model: p(z) = N(0, I_d), p(x | z) = N(W z + b, s^2 I_D), so p(x) = N(b, W W^T + s^2 I)
in closed form and the posterior p(z | x) = N(m, P) with P = (I + W^T W / s^2)^-1,
m = P W^T (x - b) / s^2. The approximate posterior q(z | x) = N(mu, diag e^logvar) is any drawn
diagonal Gaussian; the VAE's own functions compute its side: ``reparameterize_diag`` draws z,
``diagonal_gaussian_kl_to_standard_sum`` is KL(q || p(z)), ``negative_elbo`` adds them,
``log_importance_weight`` (of ``log_standard_normal`` and ``log_posterior``) and
``importance_weighted_bound`` form the IW bound, as the held-out evaluation does.

The expected reconstruction term is closed form too:
R = E_q[-log p(x | z)] = D/2 log(2 pi s^2) + (||x - W mu - b||^2 + sum_j ||W_:j||^2 e^logvar_j)
/ (2 s^2), so -ELBO = R + KL is exact in mpmath, and log p(x) - ELBO = KL(q || p(z | x)) >= 0
is checked as an identity at 50 digits (the gap is the KL to the true posterior).
"""
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, host, library_roundings, mp, reals
from proofs.statistics import engine_noise, monte_carlo_mean_check

VAE = "minilean.models.vae"
SAMPLES = 2000


@st.composite
def _linear_gaussian(draw, law="normal"):
    d, D = draw(st.integers(1, 2)), draw(st.integers(1, 3))

    def vector(n, low, high):
        return numpy.asarray(draw(st.lists(reals(low, high), min_size=n, max_size=n)))
    return {"W": vector(D * d, -2, 2).reshape(D, d), "b": vector(D, -1, 1),
            "s": draw(reals(0.3, 2)), "x": vector(D, -3, 3), "mu": vector(d, -2, 2),
            "logvar": vector(d, -3, 1), "seed": draw(st.integers(0, 99)), "law": law}


class _Exact:
    """The model's exact quantities in mpmath."""

    def __init__(self, W, b, s, x, mu, logvar):
        D, d = W.shape
        self.W = mpmath.matrix([mp(row) for row in W])
        s2 = mp(s) ** 2
        centred = mpmath.matrix(mp(x)) - mpmath.matrix(mp(b))
        covariance = self.W * self.W.T + s2 * mpmath.eye(D)
        self.log_evidence = -(D * mpmath.log(2 * mpmath.pi) + mpmath.log(mpmath.det(covariance))
                              + (centred.T * mpmath.inverse(covariance) * centred)[0]) / 2
        self.mu, self.var = mpmath.matrix(mp(mu)), [mpmath.exp(l) for l in mp(logvar)]
        self.residual = centred - self.W * self.mu
        self.column_norms = [mpmath.fsum(self.W[i, j] ** 2 for i in range(D)) for j in range(d)]
        self.constant = D * mpmath.log(2 * mpmath.pi * s2) / 2
        quadratic = (mpmath.fsum(r ** 2 for r in self.residual)
                     + mpmath.fsum(c * v for c, v in zip(self.column_norms, self.var)))
        self.reconstruction = self.constant + quadratic / (2 * s2)
        self.kl = mpmath.fsum((m ** 2 + mpmath.expm1(l) - l) / 2
                              for m, l in zip(mp(mu), mp(logvar)))
        self.negative_elbo = self.reconstruction + self.kl
        precision = mpmath.eye(d) + self.W.T * self.W / s2
        posterior = mpmath.inverse(precision)
        gap = self.mu - posterior * self.W.T * centred / s2
        self.kl_to_posterior = ((mpmath.fsum(precision[j, j] * self.var[j] for j in range(d))
                                 + (gap.T * precision * gap)[0] - d - mpmath.log(mpmath.det(
                                     precision)) - mpmath.fsum(mp(logvar))) / 2)
        # variance of -log p(x | z) under q: ||y||^2 / (2 s^2), y ~ N(residual, A),
        # A = W diag(var) W^T, has variance (2 tr A^2 + 4 r^T A r) / (4 s^4)
        A = self.W * mpmath.diag(self.var) * self.W.T
        self.nll_variance = (2 * mpmath.fsum((A * A)[i, i] for i in range(D))
                             + 4 * (self.residual.T * A * self.residual)[0]) / (4 * s2 ** 2)


def _log_likelihood(W, b, s, x, z):
    """log p(x | z) for engine latents z (M, d) -> (M,), on the engine."""
    D, d = W.shape
    dtype = z.dtype
    # z (M, d) -> (M, 1, d) against W (D, d): the mean W z of each sample, (M, D)
    mean = (z.reshape(z.shape[0], 1, d) * engine(W, dtype)).sum(-1) + engine(b, dtype)
    residual = engine(x, dtype) - mean
    return -(residual * residual).sum(-1) * (0.5 / (s * s)) - D * math.log(
        2 * math.pi * s * s) / 2


@statement("elbo_le_log_evidence_linear_gaussian",
           about=(f"{VAE}.negative_elbo", f"{VAE}.diagonal_gaussian_kl_to_standard_sum",
                  f"{VAE}.reparameterize_diag"),
           given=_linear_gaussian(), max_examples=10)
def elbo_bound(check, W, b, s, x, mu, logvar, seed, law):
    """ELBO(q) = E_q[log p(x|z)] - KL(q || p(z)) <= log p(x), with log p(x) - ELBO =
    KL(q || p(z|x)) (exact in mpmath; linear-Gaussian p, any diagonal Gaussian q). On the
    engine: negative_elbo(R, KL_sum) within its rounding bound of the exact -ELBO, so above
    -log p(x) up to that bound; R estimated by reparameterize_diag samples (mean test)."""
    from minilean.models import vae
    exact = _Exact(W, b, s, x, mu, logvar)
    check.close(exact.log_evidence + exact.negative_elbo, exact.kl_to_posterior,
                mpmath.mpf(10) ** -40 * (1 + abs(exact.log_evidence)), "mpmath: gap = KL to posterior")
    check.holds(exact.kl_to_posterior >= 0, "mpmath: ELBO above log p(x)")
    D, d = W.shape
    for dtype in ENGINE_DTYPES:
        mu_t, logvar_t = engine(mu, dtype), engine(logvar, dtype)
        residual = engine(x, dtype) - (engine(W, dtype) * mu_t).sum(-1) - engine(b, dtype)
        variances = ((engine(W, dtype) ** 2).sum(0) * logvar_t.exp()).sum()
        reconstruction = ((residual * residual).sum() + variances) * (0.5 / (s * s)) + (
            D * math.log(2 * math.pi * s * s) / 2)
        kl = vae.diagonal_gaussian_kl_to_standard_sum(mu_t, logvar_t)
        computed = float(host(vae.negative_elbo(reconstruction, kl)))
        # the residual's coordinates carry gamma_{d+2} (|x| + |W||mu| + |b|) each, squared
        # into 2|r| delta + delta^2; every other term rounds at most D + d + 8 times (exp 3,
        # squares, the sums, the 1/(2 s^2) and log constants, the final sums); the KL's bound
        # is gamma_{6+d} sum (mu^2 + e^l + 1 + |l|) / 2 (see statements/vae.py)
        delta = [gamma(d + 2, dtype) * (abs(xi) + mpmath.fsum(abs(w * m) for w, m in zip(
            row, mp(mu))) + abs(bi)) for xi, row, bi in zip(mp(x), [mp(r) for r in W], mp(b))]
        squares = mpmath.fsum((2 * abs(r) + e) * e for r, e in zip(exact.residual, delta))
        magnitude = abs(exact.constant) + exact.reconstruction - exact.constant + exact.kl
        kl_magnitude = mpmath.fsum((m * m + mpmath.exp(l) + 1 + abs(l)) / 2
                                   for m, l in zip(mp(mu), mp(logvar)))
        bound = (squares / (2 * mp(s) ** 2) + gamma(D + d + 8, dtype) * magnitude
                 + gamma(6 + d, dtype) * kl_magnitude)
        # with the gap -ELBO - (-log p(x)) >= 0 checked above, this also puts the engine's
        # -ELBO above -log p(x) up to the bound
        check.close(computed, exact.negative_elbo, bound, f"engine -ELBO ({dtype.__name__})")
    z = vae.reparameterize_diag(engine(mu, numpy.float64), engine(logvar, numpy.float64),
                                engine_noise(law, (SAMPLES, d), seed))
    nll = -host(_log_likelihood(W, b, s, x, z))
    monte_carlo_mean_check(check, nll.mean(), exact.reconstruction,
                           math.sqrt(float(exact.nll_variance) / SAMPLES),
                           "reparameterised samples: mean reconstruction term",
                           slack=_float64_slack(numpy.abs(nll).max()))


def _float64_slack(size):
    """Rounding of a float64 sample statistic whose terms are at most ``size`` (at most 64
    roundings on any path: the log-density terms, the logsumexp, the mean), so that a
    deterministic case (zero sampling variance, e.g. W = 0 or q = p(z|x)) is not a failure."""
    return gamma(64, numpy.float64) * (1 + float(size))


IW_SIZES = (1, 4, 16)
IW_REPLICATES = 1000


def _wide_noise(law, shape, seed):
    """Standard normals, or (hypothesis dropped) normals of standard deviation 3."""
    noise = engine_noise("normal", shape, seed)
    return noise if law == "normal" else noise * 3.0


@statement("iwBound_tightens_with_K_linear_gaussian",
           about=(f"{VAE}.importance_weighted_bound", f"{VAE}.log_importance_weight",
                  f"{VAE}.log_standard_normal", f"{VAE}.log_posterior",
                  f"{VAE}.reparameterize_diag"),
           given=_linear_gaussian(), relaxed=_linear_gaussian("wide"), max_examples=4)
def iw_bound(check, W, b, s, x, mu, logvar, seed, law):
    """eps_k ~ N(0, I) iid  =>  IW_K = log (1/K) sum_k p(x, z_k) / q(z_k) has E[IW_1] = ELBO,
    E[IW_K] <= E[IW_K'] for K <= K', and E[IW_K] <= log p(x) (statistical: 1000 seeded
    replicates per K in (1, 4, 16), one-sided mean tests at the false-alarm rate of
    proofs/statistics.py, with Z_CLT for the estimated standard errors; a failure of the
    monotonicity needs a significant decrease)."""
    from minilean.models import vae
    exact = _Exact(W, b, s, x, mu, logvar)
    d = W.shape[1]
    means, errors, slacks = [], [], []
    for index, size in enumerate(IW_SIZES):
        eps = _wide_noise(law, (size * IW_REPLICATES, d), seed * 10 + index)
        z = vae.reparameterize_diag(engine(mu, numpy.float64), engine(logvar, numpy.float64), eps)
        log_weights = vae.log_importance_weight(_log_likelihood(W, b, s, x, z), z, eps,
                                                engine(logvar, numpy.float64))
        # (K * replicates,) -> (K, replicates): each column is one K-sample bound
        bounds = host(vae.importance_weighted_bound(log_weights.reshape(size, IW_REPLICATES)))
        means.append(bounds.mean())
        errors.append(bounds.std(ddof=1) / math.sqrt(IW_REPLICATES))
        slacks.append(_float64_slack(numpy.abs(host(log_weights)).max()))
        monte_carlo_mean_check(check, max(means[-1] - exact.log_evidence, 0), 0, errors[-1],
                               f"E[IW_{size}] <= log p(x)", slack=slacks[-1])
    monte_carlo_mean_check(check, means[0], -exact.negative_elbo, errors[0], "E[IW_1] = ELBO",
                           slack=slacks[0])
    for k in range(len(IW_SIZES) - 1):
        monte_carlo_mean_check(check, max(means[k] - means[k + 1], 0), 0,
                               math.hypot(errors[k], errors[k + 1]),
                               "E[IW_K] nondecreasing in K", slack=slacks[k] + slacks[k + 1])


@st.composite
def _log_weights(draw):
    """(K, N) log-weights, K <= 6, N <= 3: moderate entries and, often, large-magnitude ones
    (|lw| up to 3e4, far past exp's float32 and float64 range), so only the max shift keeps
    the bound finite."""
    K, N = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    entry = st.one_of(reals(-100, 100), reals(-3e4, 3e4))
    return {"log_weights": numpy.asarray(draw(st.lists(entry, min_size=K * N,
                                                       max_size=K * N))).reshape(K, N)}


@statement("iwBound_value", about=(f"{VAE}.importance_weighted_bound",), given=_log_weights(),
           # pinned: K = 3 unequal log-weights per column (K = 1, or equal ones, give the mean)
           examples=[{"log_weights": numpy.asarray([[0.5, -1.0], [2.0, 0.25], [-3.0, 1.0]])}])
def iw_bound_value(check, log_weights):
    """importance_weighted_bound(lw) = log (1/K) sum_k exp(lw_k) over axis 0, for (K, N) arrays
    of log-weights (mpmath at 50 digits against the engine, both dtypes, entries up to 3e4 in
    magnitude)."""
    from minilean.models import vae
    K = log_weights.shape[0]
    for dtype in ENGINE_DTYPES:
        computed = host(vae.importance_weighted_bound(engine(log_weights, dtype)))
        for column, value in enumerate(numpy.atleast_1d(computed)):
            lw = mp(log_weights[:, column])
            peak = max(lw)
            shifted = sum(mpmath.exp(w - peak) for w in lw)  # in [1, K]
            exact = mpmath.log(shifted) + peak - mpmath.log(K)
            # the engine: lw_k - m (1 rounding: |lw_k - m| u in the exponent), exp (L =
            # library_roundings), K - 1 additions: the sum within gamma_{K+L} + u max|lw_k - m|
            # relative, which log moves by as much absolutely; then log (L) on log S, + m (1),
            # log K in float64 and cast (2) and the subtraction (1) on |m| + log S + log K
            library = library_roundings(dtype)
            spread = max(abs(w - peak) for w in lw)
            bound = (gamma(K + library, dtype) * (1 + spread)
                     + gamma(library + 4, dtype) * (abs(peak) + mpmath.log(shifted)
                                                    + mpmath.log(K)))
            check.close(value, exact, bound, f"column {column}, K = {K} ({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

@mutant("IW bound as the mean log-weight", f"{VAE}.importance_weighted_bound",
        caught_by=["iwBound_value"])
def iw_mean_log_weight(original):
    """importance_weighted_bound = mean_k lw_k: the average ELBO, not log of the average weight."""
    return lambda log_weights: log_weights.mean(0)


@mutant("negative ELBO drops the KL", f"{VAE}.negative_elbo",
        caught_by=["elbo_le_log_evidence_linear_gaussian", "betaVae_loss_matches_named_elbo_terms"])
def elbo_without_kl(original):
    """negative_elbo = the reconstruction term alone."""
    return lambda reconstruction, kl: reconstruction


@mutant("IW bound without the 1/K", f"{VAE}.importance_weighted_bound",
        caught_by=["iwBound_tightens_with_K_linear_gaussian", "iwBound_value"])
def iw_without_mean(original):
    """importance_weighted_bound = log sum_k w_k (no - log K)."""
    return lambda log_weights: log_weights.logsumexp(0)


@mutant("log q(z) with log sigma^2 for log sigma", f"{VAE}.log_posterior",
        caught_by=["iwBound_tightens_with_K_linear_gaussian"])
def log_posterior_full_logvar(original):
    """log_posterior = -sum (log 2 pi + 2 logvar + eps^2) / 2: log sigma^2 = logvar taken for
    log sigma in the normalising constant, which shifts every log-weight by sum(logvar) / 2."""
    from minilean.models import vae
    return lambda eps, logvar: -0.5 * vae.flat_sum(eps * eps + 2 * logvar + vae.LOG_2PI)


@mutant("log-weight adding log q(z)", f"{VAE}.log_importance_weight",
        caught_by=["iwBound_tightens_with_K_linear_gaussian"])
def log_weight_adding_posterior(original):
    """log_importance_weight = log p(x|z) + log p(z) + log q(z|x): the proposal's density
    multiplied in where the weight divides by it."""
    from minilean.models import vae
    return lambda log_likelihood, z, eps, logvar: (
        log_likelihood + vae.log_standard_normal(z) + vae.log_posterior(eps, logvar))


@mutant("IW bound with its 1/K applied twice", f"{VAE}.importance_weighted_bound",
        caught_by=["iwBound_tightens_with_K_linear_gaussian", "iwBound_value"])
def iw_mean_twice(original):
    """importance_weighted_bound = logsumexp(lw - log K) - log K: the mean taken inside the
    logsumexp and again outside, so the bound drops by log K and shrinks as K grows."""
    return lambda log_weights: ((log_weights - math.log(log_weights.shape[0])).logsumexp(0)
                                - math.log(log_weights.shape[0]))
