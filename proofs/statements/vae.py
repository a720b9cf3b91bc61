"""VAE statements (TorchLean ``Latent/VAE.lean``) on ``minilean.models.vae``.

The KL statements are checked in mpmath at 50 digits (e^l - 1 - l through ``expm1`` so that
tiny l keeps its l^2/2) and on the engine within gamma_K * sum |terms|: a coordinate KL
0.5 (mu^2 + e^l - 1 - l) has terms mu^2, e^l, 1, |l| and at most 6 roundings (exp counts 3,
the square 1, three additions; the 0.5 is exact); the sum form adds n - 1 additions and the
mean form a division by n. The reparameterisation laws are statistical (seeded engine normals,
moments and KS at the false-alarm rate and with the power of proofs/statistics.py, LAW_SAMPLES
draws per coordinate) after the analytic pushforward check in mpmath (quadrature of the mean and
variance of mu + sigma eps under N(0, 1)).
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, host, library_roundings, mp, reals,
                             underflow)
from proofs.statistics import LAW_SAMPLES, engine_noise, gaussian_law_checks, pushforward_moments

VAE = "minilean.models.vae"


def _mp_coordinate_kl(mu, logvar):
    return (mu * mu + mpmath.expm1(logvar) - logvar) / 2


def _kl_magnitude(mu, logvar):
    return (mu * mu + mpmath.exp(logvar) + 1 + abs(logvar)) / 2


def _latents(low=-4.0, high=4.0):
    """(mu, logvar) vectors of the same length 1-6, with exact zeros drawn often."""
    element = st.one_of(st.just(0.0), reals(low, high))
    return st.integers(1, 6).flatmap(lambda n: st.tuples(
        st.lists(element, min_size=n, max_size=n), st.lists(element, min_size=n, max_size=n)))


def _engine_kl(function_name, mu, logvar, dtype):
    from minilean.models import vae
    return host(getattr(vae, function_name)(engine(mu, dtype), engine(logvar, dtype)))


@statement("coordinateKlToStandard_nonneg", about=(f"{VAE}.coordinate_kl_to_standard",),
           given={"latent": _latents()})
def coordinate_kl_nonneg(check, latent):
    """0 <= coordinateKlToStandard(mu, l) = (e^l + mu^2 - 1 - l) / 2, for all real mu, l."""
    mu, logvar = (numpy.asarray(v) for v in latent)
    exact = [_mp_coordinate_kl(m, l) for m, l in zip(mp(mu), mp(logvar))]
    check.holds(all(value >= 0 for value in exact), "mpmath: a coordinate KL is negative")
    for dtype in ENGINE_DTYPES:
        bounds = [gamma(6, dtype) * _kl_magnitude(m, l) for m, l in zip(mp(mu), mp(logvar))]
        # with every exact value >= 0 this also gives the engine's non-negativity, which
        # survives rounding only up to the rounding bound itself: computed >= -bound
        check.close(_engine_kl("coordinate_kl_to_standard", mu, logvar, dtype), exact, bounds,
                    f"value ({dtype.__name__})")


MARGIN = 2.0 ** -6  # nonzero inputs of the zero-iff statement are at least this far from 0


def _separated_latents():
    """(mu, logvar) as _latents, with each nonzero value at least MARGIN from 0."""
    element = st.one_of(st.just(0.0), reals(-4, 4).filter(lambda v: abs(v) >= MARGIN))
    return st.integers(1, 6).flatmap(lambda n: st.tuples(
        st.lists(element, min_size=n, max_size=n), st.lists(element, min_size=n, max_size=n)))


@statement("coordinateKlToStandard_eq_zero_iff", about=(f"{VAE}.coordinate_kl_to_standard",),
           given={"latent": _separated_latents()},
           # pinned: (0, 0), where the KL is 0 (its -1 cancels e^0), beside (1.5, 0), where the
           # mean's term alone keeps it from 0
           examples=[{"latent": ([0.0, 1.5], [0.0, 0.0])}])
def coordinate_kl_zero_iff(check, latent):
    """coordinateKlToStandard(mu, l) = 0  <=>  mu = 0 and l = 0. On the engine: KL(0, 0) is 0
    exactly, and (mu, l) != (0, 0) gives a KL above its rounding bound (nonzero values drawn at
    least 2^-6 from 0, where the exact KL, >= mu^2 / 2 + e^-4 l^2 / 4, exceeds twice that
    bound, so the computed one cannot round down to it)."""
    for m, l in zip(*latent):
        exact = _mp_coordinate_kl(mp(m), mp(l))
        check.holds((exact == 0) == (m == 0 and l == 0), f"mpmath: KL({m}, {l}) = {exact}")
        for dtype in ENGINE_DTYPES:
            computed = _engine_kl("coordinate_kl_to_standard", [m], [l], dtype)[0]
            if m == 0 and l == 0:
                check.close(computed, mp(0), 0, f"engine KL(0, 0) ({dtype.__name__})")
                continue
            bound = gamma(6, dtype) * _kl_magnitude(mp(m), mp(l))
            check.holds(exact > 2 * bound, f"KL({m}, {l}) = {exact} is not decidable in "
                                           f"{dtype.__name__} (bound {bound})")
            check.holds(computed > bound, f"{dtype.__name__}: KL({m}, {l}) computed {computed} "
                                          f"<= its rounding bound {bound}")


def _sum_form_checks(check, latent, function_name, divide):
    mu, logvar = (numpy.asarray(v) for v in latent)
    n = len(mu)
    exact = mpmath.fsum(_mp_coordinate_kl(m, l) for m, l in zip(mp(mu), mp(logvar))) / divide
    magnitude = mpmath.fsum(_kl_magnitude(m, l) for m, l in zip(mp(mu), mp(logvar))) / divide
    for dtype in ENGINE_DTYPES:
        # 6 roundings per coordinate, n - 1 additions, and for the mean one division
        bound = gamma(6 + n + 1, dtype) * magnitude
        check.close(_engine_kl(function_name, mu, logvar, dtype), exact, bound,
                    f"{function_name} ({dtype.__name__})")
    return exact


@statement("diagonalGaussianKlToStandardReal_nonneg",
           about=(f"{VAE}.diagonal_gaussian_kl_to_standard_sum",), given={"latent": _latents()})
def diagonal_kl_nonneg(check, latent):
    """0 <= sum_i coordinateKlToStandard(mu_i, l_i)  (the KL of N(mu, diag e^l) to N(0, I))."""
    exact = _sum_form_checks(check, latent, "diagonal_gaussian_kl_to_standard_sum", 1)
    check.holds(exact >= 0, "mpmath: negative KL")


@statement("diagonalGaussianKlToStandardReal_eq_zero_iff",
           about=(f"{VAE}.diagonal_gaussian_kl_to_standard_sum",), given={"latent": _latents()})
def diagonal_kl_zero_iff(check, latent):
    """sum_i coordinateKlToStandard(mu_i, l_i) = 0  <=>  mu = 0 and l = 0 (every i)."""
    exact = _sum_form_checks(check, latent, "diagonal_gaussian_kl_to_standard_sum", 1)
    all_zero = not any(latent[0]) and not any(latent[1])
    check.holds((exact == 0) == all_zero, f"mpmath: sum KL = {exact}, all zero: {all_zero}")
    if all_zero:
        for dtype in ENGINE_DTYPES:
            check.close(_engine_kl("diagonal_gaussian_kl_to_standard_sum", *latent, dtype),
                        mp(0), 0, f"engine ({dtype.__name__})")


@statement("diagonalGaussianKl_mean_eq_sum_div_latent_size",
           about=(f"{VAE}.diagonal_gaussian_kl_to_standard",
                  f"{VAE}.diagonal_gaussian_kl_to_standard_sum"), given={"latent": _latents()})
def kl_mean_form(check, latent):
    """diagonalGaussianKlToStandard (TorchLean's mean form) = sum form / n, n the latent size,
    so the sum-form theorems (non-negativity, zero iff standard) transfer to it; vae_loss
    trains the sum form. Both against mpmath, each within its bound, so the engine's mean form
    times n is its sum form within the two bounds' sum."""
    _sum_form_checks(check, latent, "diagonal_gaussian_kl_to_standard", len(latent[0]))
    _sum_form_checks(check, latent, "diagonal_gaussian_kl_to_standard_sum", 1)


def _batched_latents():
    """(mu, logvar) batches of shape (B, n), B 2-4 and n 1-5, with exact zeros drawn often."""
    element = st.one_of(st.just(0.0), reals(-4, 4))
    return st.tuples(st.integers(2, 4), st.integers(1, 5)).flatmap(lambda shape: st.tuples(
        *[st.lists(element, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]).map(
            lambda v, shape=shape: numpy.asarray(v).reshape(shape)) for _ in range(2)]))


@statement("diagonalGaussianKlToStandardSum_batch_mean",
           about=(f"{VAE}.diagonal_gaussian_kl_to_standard_sum",),
           given={"latent": _batched_latents()})
def kl_sum_batch_mean(check, latent):
    """KL_sum over a batch (B, n) = (1/B) sum_b sum_i coordinateKlToStandard(mu_bi, l_bi): the
    KL in nats per example, averaged (not summed) over the batch, as vae_loss trains it; a batch
    of B copies of one row has that row's KL."""
    mu, logvar = latent
    count, n = mu.shape
    rows = [[_mp_coordinate_kl(m, l) for m, l in zip(mp(mu[b]), mp(logvar[b]))]
            for b in range(count)]
    exact = mpmath.fsum(mpmath.fsum(row) for row in rows) / count
    magnitude = mpmath.fsum(_kl_magnitude(m, l) for m, l in zip(mp(mu), mp(logvar))) / count
    first = mpmath.fsum(rows[0])
    first_magnitude = mpmath.fsum(_kl_magnitude(m, l) for m, l in zip(mp(mu[0]), mp(logvar[0])))
    copies = numpy.repeat(mu[:1], count, 0), numpy.repeat(logvar[:1], count, 0)
    for dtype in ENGINE_DTYPES:
        # 6 roundings per coordinate, n - 1 additions per row, B - 1 additions and a division
        bound = gamma(6 + n + count, dtype)
        check.close(_engine_kl("diagonal_gaussian_kl_to_standard_sum", mu, logvar, dtype), exact,
                    bound * magnitude, f"batch mean ({dtype.__name__})")
        check.close(_engine_kl("diagonal_gaussian_kl_to_standard_sum", *copies, dtype), first,
                    bound * first_magnitude, f"{count} copies of one row ({dtype.__name__})")
        check.close(_engine_kl("diagonal_gaussian_kl_to_standard_sum", mu[0], logvar[0], dtype),
                    first, gamma(6 + n, dtype) * first_magnitude, f"one row ({dtype.__name__})")


@statement("exp_minus_one_minus_nonneg", about=(f"{VAE}.coordinate_kl_to_standard",),
           given={"x": reals(-20, 20)})
def exp_minus_one_minus_nonneg(check, x):
    """0 <= e^x - 1 - x for every real x (= 2 coordinateKlToStandard(0, x))."""
    check.holds(mpmath.expm1(mp(x)) - mp(x) >= 0, "mpmath: e^x - 1 - x < 0")
    _sum_form_checks(check, ([0.0], [x]), "coordinate_kl_to_standard", 1)


@statement("exp_minus_one_minus_pos", about=(f"{VAE}.coordinate_kl_to_standard",),
           given={"x": reals(-20, 20).filter(lambda x: x != 0)}, relaxed={"x": st.just(0.0)})
def exp_minus_one_minus_pos(check, x):
    """x != 0  =>  0 < e^x - 1 - x."""
    check.holds(mpmath.expm1(mp(x)) - mp(x) > 0, f"mpmath: e^x - 1 - x <= 0 at x = {x}")
    _sum_form_checks(check, ([0.0], [x]), "coordinate_kl_to_standard", 1)


@statement("reparameterizeDiag_value", about=(f"{VAE}.reparameterize_diag",),
           given={"latent": _latents(), "seed": st.integers(0, 2 ** 16)})
def reparameterize_value(check, latent, seed):
    """reparameterizeDiag(mu, l, eps) = mu + exp(l / 2) eps, elementwise."""
    from minilean.models import vae
    mu, logvar = (numpy.asarray(v) for v in latent)
    eps = numpy.random.default_rng(seed).standard_normal(mu.shape).astype(numpy.float32)
    exact = [m + mpmath.exp(l / 2) * e for m, l, e in zip(mp(mu), mp(logvar), mp(eps))]
    magnitude = [abs(m) + mpmath.exp(l / 2) * abs(e) for m, l, e in zip(mp(mu), mp(logvar),
                                                                        mp(eps))]
    for dtype in ENGINE_DTYPES:
        # l/2 exact, exp (L = library_roundings), product (1), sum (1)
        computed = vae.reparameterize_diag(engine(mu, dtype), engine(logvar, dtype),
                                           engine(eps, dtype))
        rounding = gamma(library_roundings(dtype) + 2, dtype)
        check.close(host(computed), exact, [rounding * m for m in magnitude],
                    f"value ({dtype.__name__})")


@statement("scalar_reparameterization_law", about=(f"{VAE}.reparameterize_diag",),
           given={"mu": reals(-3, 3), "logvar": reals(-3, 3), "seed": st.integers(0, 99),
                  "law": st.just("normal")},
           relaxed={"mu": reals(-3, 3), "logvar": reals(-3, 3), "seed": st.integers(0, 99),
                    "law": st.just("uniform")}, max_examples=5)
def scalar_reparameterization_law(check, mu, logvar, seed, law):
    """eps ~ N(0, 1)  =>  mu + sigma eps ~ N(mu, sigma^2), sigma = exp(l / 2) (statistical)."""
    from minilean.models import vae
    sigma = mpmath.exp(mp(logvar) / 2)
    mean, variance = pushforward_moments(mp(mu), sigma)
    check.close(mean, mp(mu), 1e-40, "mpmath: pushforward mean")
    check.close(variance, sigma ** 2, 1e-40 * (1 + sigma ** 2), "mpmath: pushforward variance")
    eps = engine_noise(law, (LAW_SAMPLES,), seed)
    z = vae.reparameterize_diag(engine(numpy.full(LAW_SAMPLES, mu), numpy.float64),
                                engine(numpy.full(LAW_SAMPLES, logvar), numpy.float64), eps)
    gaussian_law_checks(check, host(z), mu, float(sigma), "engine samples")


@statement("diagonal_reparameterization_coordinate_law", about=(f"{VAE}.reparameterize_diag",),
           given={"latent": _latents(-2, 2), "seed": st.integers(0, 99)}, max_examples=3)
def diagonal_reparameterization_law(check, latent, seed):
    """eps_i ~ N(0, 1) for every i  =>  mu_i + sigma_i eps_i ~ N(mu_i, sigma_i^2) for every i."""
    from minilean.models import vae
    mu, logvar = (numpy.asarray(v) for v in latent)
    eps = engine_noise("normal", (LAW_SAMPLES, len(mu)), seed)
    z = host(vae.reparameterize_diag(engine(mu, numpy.float64), engine(logvar, numpy.float64),
                                     eps))
    for i, (m, l) in enumerate(zip(mu, logvar)):
        gaussian_law_checks(check, z[:, i], m, float(numpy.exp(l / 2)), f"coordinate {i}")


def _beta_loss_terms():
    return {"reconstruction": reals(0, 1000), "kl": reals(0, 100), "beta": reals(0, 10)}


# pinned for the beta-VAE loss statements: both terms positive and apart, beta neither 0 nor 1;
# the reconstruction float32's 0.1, so that its sum with the KL rounds in float32 (a loss
# added up in another order rounds otherwise)
PINNED_BETA_LOSS = {"reconstruction": float(numpy.float32(0.1)), "kl": 2.0, "beta": 0.25}


def _engine_beta_losses(reconstruction, kl, beta):
    """(label, dtype, value) of beta_negative_elbo on 0-d tensors of each dtype."""
    from minilean.models import vae
    for dtype in ENGINE_DTYPES:
        yield dtype.__name__, dtype, float(host(vae.beta_negative_elbo(
            engine(reconstruction, dtype), engine(kl, dtype), beta)))


@statement("betaVae_loss_decomposition", about=(f"{VAE}.beta_negative_elbo",),
           given=_beta_loss_terms(), examples=[PINNED_BETA_LOSS])
def beta_vae_decomposition(check, reconstruction, kl, beta):
    """loss(beta) = reconstruction + beta KL (= weightedTwoTerm(beta, {recon, KL}))."""
    exact = mp(reconstruction) + mp(beta) * mp(kl)
    for label, dtype, value in _engine_beta_losses(reconstruction, kl, beta):
        # plus the underflow of a product below float32's range (beta KL ~ 1e-76 gives 0)
        check.close(value, exact, gamma(2, dtype) * (mp(reconstruction) + abs(mp(beta) * mp(kl)))
                    + underflow(2, dtype), f"engine ({label})")


@statement("betaVae_loss_eq_weightedTwoTerm",
           about=(f"{VAE}.beta_negative_elbo", "minilean.models.objectives.weighted_two_term"),
           given=_beta_loss_terms(), examples=[PINNED_BETA_LOSS])
def beta_vae_weighted(check, reconstruction, kl, beta):
    """loss(beta) = weightedTwoTerm(beta, {base = reconstruction, regularizer = KL}), bit for bit."""
    from minilean.models import objectives
    for label, dtype, value in _engine_beta_losses(reconstruction, kl, beta):
        expected = float(host(objectives.weighted_two_term(engine(reconstruction, dtype),
                                                           engine(kl, dtype), beta)))
        check.close(value, mp(expected), 0, f"engine ({label})")


@statement("betaVae_loss_zero_beta", about=(f"{VAE}.beta_negative_elbo",),
           given={**_beta_loss_terms(), "beta": st.just(0.0)}, relaxed=_beta_loss_terms(),
           examples=[dict(PINNED_BETA_LOSS, beta=0.0)])
def beta_vae_zero_beta(check, reconstruction, kl, beta):
    """beta = 0  =>  loss = reconstruction."""
    for label, _, value in _engine_beta_losses(reconstruction, kl, beta):
        check.close(value, mp(reconstruction), 0, f"engine ({label})")


@statement("betaVae_loss_eq_reconstruction_of_zero_kl", about=(f"{VAE}.beta_negative_elbo",),
           given={**_beta_loss_terms(), "kl": st.just(0.0)}, relaxed=_beta_loss_terms())
def beta_vae_zero_kl(check, reconstruction, kl, beta):
    """KL = 0  =>  loss(beta) = reconstruction for every beta."""
    for label, _, value in _engine_beta_losses(reconstruction, kl, beta):
        check.close(value, mp(reconstruction), 0, f"engine ({label})")


@statement("betaVae_loss_mono_beta_of_kl_nonneg", about=(f"{VAE}.beta_negative_elbo",),
           given={"reconstruction": reals(0, 1000), "kl": reals(0, 100),
                  "betas": st.tuples(reals(-10, 10), reals(-10, 10)).map(sorted)},
           relaxed={"reconstruction": reals(0, 1000), "kl": reals(-100, 100),
                    "betas": st.tuples(reals(-10, 10), reals(-10, 10)).map(sorted)},
           # pinned: a positive KL and two distinct betas (KL = 0 or beta1 = beta2 ties them),
           # both positive, and a negative one below a positive one (|beta| for beta is
           # monotone on beta >= 0 alone)
           examples=[{"reconstruction": 10.0, "kl": 2.0, "betas": [0.5, 4.0]},
                     {"reconstruction": 10.0, "kl": 2.0, "betas": [-2.0, 0.5]}])
def beta_vae_mono(check, reconstruction, kl, betas):
    """beta1 <= beta2 and 0 <= KL  =>  loss(beta1) <= loss(beta2), for all real betas as the
    theorem has them, negative ones included (the command line refuses beta < 0, but
    beta_negative_elbo takes any; exact in floating point too: rounding is monotone)."""
    low, high = betas
    check.holds(mp(low) * mp(kl) <= mp(high) * mp(kl), "mpmath")
    for (label, _, at_low), (_, _, at_high) in zip(_engine_beta_losses(reconstruction, kl, low),
                                                   _engine_beta_losses(reconstruction, kl, high)):
        check.holds(at_low <= at_high, f"{label}: loss(beta1) {at_low} > loss(beta2) {at_high}")


@statement("betaVae_loss_matches_named_elbo_terms",
           about=(f"{VAE}.beta_negative_elbo", f"{VAE}.negative_elbo"), given=_beta_loss_terms(),
           examples=[PINNED_BETA_LOSS])
def beta_vae_named_terms(check, reconstruction, kl, beta):
    """r + beta k = betaNegativeElbo(beta, {nll = r, kl = k}); negativeElbo = betaNegativeElbo(1)."""
    from minilean.models import vae
    for dtype in ENGINE_DTYPES:
        r, k = engine(reconstruction, dtype), engine(kl, dtype)
        check.close(float(host(vae.negative_elbo(r, k))),
                    mp(float(host(vae.beta_negative_elbo(r, k, 1.0)))), 0,
                    f"negative_elbo = beta_negative_elbo(1) ({dtype.__name__})")
        check.close(float(host(vae.beta_negative_elbo(r, k, beta))),
                    mp(float(host(r + beta * k))), 0, f"r + beta k ({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

@mutant("KL without the -1", f"{VAE}.coordinate_kl_to_standard",
        caught_by=["coordinateKlToStandard_eq_zero_iff", "coordinateKlToStandard_nonneg",
                   "diagonalGaussianKlToStandardReal_eq_zero_iff", "exp_minus_one_minus_nonneg",
                   "exp_minus_one_minus_pos"])
def kl_without_minus_one(original):
    """coordinate KL = (mu^2 + e^l - l) / 2 (the -1 dropped)."""
    return lambda mu, logvar: 0.5 * (mu * mu + logvar.exp() - logvar)


@mutant("KL without the mu^2 term", f"{VAE}.coordinate_kl_to_standard",
        caught_by=["coordinateKlToStandard_eq_zero_iff"])
def kl_without_mu_squared(original):
    """coordinate KL = (e^l - 1 - l) / 2 (the mean's mu^2 dropped)."""
    return lambda mu, logvar: 0.5 * (logvar.exp() - 1 - logvar)


@mutant("KL with the ELBO's sign", f"{VAE}.coordinate_kl_to_standard",
        caught_by=["coordinateKlToStandard_nonneg", "diagonalGaussianKlToStandardReal_nonneg",
                   "exp_minus_one_minus_nonneg", "exp_minus_one_minus_pos"])
def kl_with_elbo_sign(original):
    """coordinate KL = (1 + l - mu^2 - e^l) / 2: the ELBO's -KL term (Kingma and Welling's
    appendix B) taken for the KL, so it is negative wherever (mu, l) != (0, 0)."""
    return lambda mu, logvar: 0.5 * (1 + logvar - mu * mu - logvar.exp())


@mutant("mean-form KL is the sum", f"{VAE}.diagonal_gaussian_kl_to_standard",
        caught_by=["diagonalGaussianKl_mean_eq_sum_div_latent_size"])
def mean_kl_is_sum(original):
    """diagonal_gaussian_kl_to_standard sums the coordinate KLs instead of averaging them."""
    from minilean.models import vae
    return lambda mu, logvar: vae.coordinate_kl_to_standard(mu, logvar).sum()


@mutant("sum-form KL is the mean", f"{VAE}.diagonal_gaussian_kl_to_standard_sum",
        caught_by=["diagonalGaussianKlToStandardReal_nonneg",
                   "diagonalGaussianKlToStandardSum_batch_mean"])
def sum_kl_is_mean(original):
    """diagonal_gaussian_kl_to_standard_sum averages the coordinate KLs (TorchLean's mean form)
    instead of summing them: the KL shrinks by the latent size."""
    from minilean.models import vae
    return lambda mu, logvar: vae.coordinate_kl_to_standard(mu, logvar).mean()


@mutant("reparameterise with the variance", f"{VAE}.reparameterize_diag",
        caught_by=["reparameterizeDiag_value", "scalar_reparameterization_law",
                   "diagonal_reparameterization_coordinate_law",
                   "elbo_le_log_evidence_linear_gaussian", "sampleLatent_eq_reparameterize"])
def reparameterize_with_variance(original):
    """z = mu + exp(l) eps: the variance used where the standard deviation belongs."""
    return lambda mu, logvar, eps: mu + logvar.exp() * eps


@mutant("beta on the reconstruction", f"{VAE}.beta_negative_elbo",
        caught_by=["betaVae_loss_decomposition", "betaVae_loss_zero_beta",
                   "betaVae_loss_eq_weightedTwoTerm", "betaVae_loss_eq_reconstruction_of_zero_kl",
                   "betaVae_loss_matches_named_elbo_terms"])
def beta_on_reconstruction(original):
    """beta_negative_elbo = beta reconstruction + KL."""
    return lambda reconstruction, kl, beta: beta * reconstruction + kl


@mutant("KL subtracted in the beta-VAE loss", f"{VAE}.beta_negative_elbo",
        caught_by=["betaVae_loss_mono_beta_of_kl_nonneg", "betaVae_loss_decomposition",
                   "betaVae_loss_eq_weightedTwoTerm"])
def kl_subtracted(original):
    """beta_negative_elbo = reconstruction - beta KL: the ELBO's minus sign kept on the KL while
    the likelihood term was negated, so a larger beta lowers the loss."""
    return lambda reconstruction, kl, beta: reconstruction - beta * kl


@mutant("KL summed over the batch", f"{VAE}.diagonal_gaussian_kl_to_standard_sum",
        caught_by=["diagonalGaussianKlToStandardSum_batch_mean"])
def kl_sum_over_batch(original):
    """diagonal_gaussian_kl_to_standard_sum sums over the batch too (nats per batch, not per
    example)."""
    from minilean.models import vae
    return lambda mu, logvar: vae.coordinate_kl_to_standard(mu, logvar).sum()


@mutant("KL batch mean over the first axis", f"{VAE}.diagonal_gaussian_kl_to_standard_sum",
        caught_by=["diagonalGaussianKlToStandardSum_batch_mean",
                   "diagonalGaussianKlToStandardReal_nonneg",
                   "diagonalGaussianKlToStandardReal_eq_zero_iff",
                   "diagonalGaussianKl_mean_eq_sum_div_latent_size"])
def kl_mean_over_first_axis(original):
    """diagonal_gaussian_kl_to_standard_sum = the coordinate KLs' total / mu.shape[0]: the batch
    mean written for a batch alone, which divides one unbatched latent's KL by its size."""
    from minilean.models import vae
    return lambda mu, logvar: vae.coordinate_kl_to_standard(mu, logvar).sum() / mu.shape[0]


@mutant("beta-VAE loss weighted by |beta|", f"{VAE}.beta_negative_elbo",
        caught_by=["betaVae_loss_mono_beta_of_kl_nonneg"])
def beta_magnitude(original):
    """beta_negative_elbo = reconstruction + |beta| KL (a weight "made safe" by abs): the same
    loss for every beta >= 0, so only a negative beta below a positive one shows that it is not
    monotone in beta (the statement drew betas in [0, 10] alone and passed it)."""
    return lambda reconstruction, kl, beta: reconstruction + abs(beta) * kl


@mutant("beta-VAE loss as the negative ELBO plus (beta - 1) KL", f"{VAE}.beta_negative_elbo",
        caught_by=["betaVae_loss_decomposition", "betaVae_loss_eq_weightedTwoTerm",
                   "betaVae_loss_zero_beta", "betaVae_loss_matches_named_elbo_terms"])
def beta_as_extra_kl(original):
    """beta_negative_elbo = (reconstruction + KL) + (beta - 1) KL: right over the reals, but the
    KL added and then partly taken away rounds, so at beta = 0 the loss is not the
    reconstruction bit for bit, nor elsewhere reconstruction + beta KL."""
    return lambda reconstruction, kl, beta: (reconstruction + kl) + (beta - 1) * kl
