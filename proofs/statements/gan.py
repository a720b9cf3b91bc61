"""LSGAN statements (TorchLean ``Latent/GAN.lean``) on ``minilean.models.gan``.

Scores are vectors of discriminator outputs. MSE to a constant target is checked against
mpmath within gamma_{n+3} sum_i (s_i - target)^2 / n (difference, square, n - 1 additions,
division); the objective-algebra forms must agree bit for bit, and perfect scores give exactly
0 ((1 - 1)^2 = 0 and 0^2 = 0 in floating point).
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, host, mp, reals, underflow

GAN = "minilean.models.gan"


def _scores(fixed=None):
    element = reals(-3, 3) if fixed is None else st.just(fixed)
    return st.lists(element, min_size=1, max_size=6).map(numpy.asarray)


def _mse_to(scores, target):
    return mpmath.fsum((s - target) ** 2 for s in mp(scores)) / len(scores)


def _gan(name, dtype, *scores):
    from minilean.models import gan
    return float(host(getattr(gan, name)(*(engine(s, dtype) for s in scores))))


@statement("generatorLoss_eq_mse_fake_real", about=(f"{GAN}.generator_loss",),
           given={"fake": _scores()})
def generator_loss_is_mse(check, fake):
    """generatorLoss(z) = MSE(D(G z), 1) = mean_i (D(G z)_i - 1)^2."""
    exact = _mse_to(fake, 1)
    for dtype in ENGINE_DTYPES:
        check.close(_gan("generator_loss", dtype, fake), exact,
                    gamma(len(fake) + 3, dtype) * exact + underflow(len(fake) + 3, dtype),
                    dtype.__name__)


@statement("discriminatorLoss_eq_real_fake_terms", about=(f"{GAN}.discriminator_loss",),
           given={"real": _scores(), "fake": _scores()})
def discriminator_loss_terms(check, real, fake):
    """discriminatorLoss(x, z) = MSE(D x, 1) + MSE(D(G z), 0)."""
    exact = _mse_to(real, 1) + _mse_to(fake, 0)
    n = max(len(real), len(fake))
    for dtype in ENGINE_DTYPES:
        check.close(_gan("discriminator_loss", dtype, real, fake), exact,
                    gamma(n + 5, dtype) * exact + underflow(n + 5, dtype), dtype.__name__)


@statement("generatorLoss_eq_weightedTwoTerm",
           about=(f"{GAN}.generator_loss", "minilean.models.objectives.weighted_two_term"),
           given={"fake": _scores(), "weight": reals(-10, 10)})
def generator_loss_weighted(check, fake, weight):
    """for every weight w: generatorLoss = weightedTwoTerm(w, {generatorLoss, 0})."""
    from minilean.models import gan, objectives
    for dtype in ENGINE_DTYPES:
        base = gan.mse_to_target(engine(fake, dtype), gan.REAL_TARGET)
        expected = float(host(objectives.weighted_two_term(base, 0.0, weight)))
        check.close(_gan("generator_loss", dtype, fake), mp(expected), 0, dtype.__name__)


@statement("discriminatorLoss_eq_weightedThreeTerm",
           about=(f"{GAN}.discriminator_loss", "minilean.models.objectives.weighted_three_term"),
           given={"real": _scores(), "fake": _scores(), "weight": reals(-10, 10)})
def discriminator_loss_weighted(check, real, fake, weight):
    """for every w: discriminatorLoss = weightedThreeTerm(w, {MSE(D x, 1), MSE(D G z, 0), 0})."""
    from minilean.models import gan, objectives
    for dtype in ENGINE_DTYPES:
        expected = objectives.weighted_three_term(
            gan.mse_to_target(engine(real, dtype), gan.REAL_TARGET),
            gan.mse_to_target(engine(fake, dtype), gan.FAKE_TARGET), 0.0, weight)
        check.close(_gan("discriminator_loss", dtype, real, fake), mp(float(host(expected))), 0,
                    dtype.__name__)


@statement("generatorLoss_zero_of_fake_score_real", about=(f"{GAN}.generator_loss",),
           given={"fake": _scores(1.0)}, relaxed={"fake": _scores()})
def generator_loss_zero(check, fake):
    """fakeScore z = realTarget (every D(G z)_i = 1)  =>  generatorLoss = 0."""
    for dtype in ENGINE_DTYPES:
        check.close(_gan("generator_loss", dtype, fake), mp(0), 0, dtype.__name__)


@statement("discriminatorLoss_zero_of_perfect_scores", about=(f"{GAN}.discriminator_loss",),
           given={"real": _scores(1.0), "fake": _scores(0.0)},
           relaxed={"real": _scores(1.0), "fake": _scores()})
def discriminator_loss_zero(check, real, fake):
    """realScore x = 1 and fakeScore z = 0  =>  discriminatorLoss = 0."""
    for dtype in ENGINE_DTYPES:
        check.close(_gan("discriminator_loss", dtype, real, fake), mp(0), 0, dtype.__name__)


@mutant("generator aims at the fake target", f"{GAN}.generator_loss",
        caught_by=["generatorLoss_eq_mse_fake_real", "generatorLoss_zero_of_fake_score_real",
                   "generatorLoss_eq_weightedTwoTerm",
                   "fakeScore_is_discriminator_after_generator"])
def generator_wrong_target(original):
    """generator_loss = MSE(D(G z), 0): the generator tries to look fake."""
    from minilean.models import gan
    return lambda fake: gan.mse_to_target(fake, gan.FAKE_TARGET)


@mutant("discriminator targets swapped", f"{GAN}.discriminator_loss",
        caught_by=["discriminatorLoss_eq_real_fake_terms",
                   "discriminatorLoss_zero_of_perfect_scores",
                   "discriminatorLoss_eq_weightedThreeTerm"])
def discriminator_swapped(original):
    """discriminator_loss = MSE(D x, 0) + MSE(D(G z), 1)."""
    return lambda real, fake: original(fake, real)


@mutant("discriminator loss halved", f"{GAN}.discriminator_loss",
        caught_by=["discriminatorLoss_eq_real_fake_terms", "discriminatorLoss_eq_weightedThreeTerm"])
def discriminator_halved(original):
    """discriminator_loss = (MSE(D x, 1) + MSE(D(G z), 0)) / 2 (Mao et al.'s 1/2 factors)."""
    return lambda real, fake: 0.5 * original(real, fake)


@mutant("discriminator's real target smoothed to 0.9", f"{GAN}.discriminator_loss",
        caught_by=["discriminatorLoss_eq_real_fake_terms",
                   "discriminatorLoss_zero_of_perfect_scores",
                   "discriminatorLoss_eq_weightedThreeTerm"])
def discriminator_smoothed_target(original):
    """discriminator_loss = MSE(D x, 0.9) + MSE(D(G z), 0): one-sided label smoothing (Salimans
    et al. 2016) where the spec scores reals 1; off by 0.2 mean(D x) - 0.19, under 1 for scores
    in [-3, 3] (a comparison with a slack of 1 would pass it)."""
    from minilean.models import gan, objectives
    return lambda real, fake: objectives.weighted_three_term(
        gan.mse_to_target(real, 0.9), gan.mse_to_target(fake, gan.FAKE_TARGET),
        gan.NO_REGULARIZER, 1.0)


@mutant("generator aims at the smoothed target 0.9", f"{GAN}.generator_loss",
        caught_by=["generatorLoss_eq_mse_fake_real", "generatorLoss_zero_of_fake_score_real",
                   "generatorLoss_eq_weightedTwoTerm",
                   "fakeScore_is_discriminator_after_generator"])
def generator_smoothed_target(original):
    """generator_loss = MSE(D(G z), 0.9): the real target's label smoothing applied to the
    generator too (Salimans et al. smooth the discriminator's only); off by under 1 for scores
    in [-3, 3], like the discriminator's."""
    from minilean.models import gan
    return lambda fake: gan.mse_to_target(fake, 0.9)
