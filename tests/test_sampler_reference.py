"""The diffusion samplers against independent statements of the published formulas.

Each reference below is written from the paper in plain float64 Python/NumPy, without calling
``minilean.models.diffusion`` for anything but the function under test. Both sides get the
same inputs, the same noise arrays and the same deterministic epsilon model, so the comparisons
are exact up to rounding (rtol 1e-10), step by step and over whole trajectories.

Conventions (those the module documents): timesteps t = 0 .. T-1 (the papers' t = 1 .. T
shifted down by one), ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` and ``alpha_bar_{-1} = 1``
(the clean state); the last reverse step (t = 0) adds no noise.
"""
import math
from fractions import Fraction

import numpy
import pytest

from minilean.models import diffusion as D

T = 12
TOL = dict(rtol=1e-10, atol=1e-12)


def reference_betas():
    """A linear schedule with deliberately large betas, so that neighbouring alpha_bars differ."""
    return numpy.array([0.02 + 0.3 * t / (T - 1) for t in range(T)], dtype=numpy.float64)


def reference_alpha_bar(betas):
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), as an explicit running product."""
    out, running = [], 1.0
    for beta in betas:
        running *= 1.0 - float(beta)
        out.append(running)
    return numpy.array(out)


def eps_model(x, t):
    """A deterministic stand-in for a network: affine in x with coefficients that change with t
    (so that asking for the wrong timestep changes the answer)."""
    return (0.3 + 0.05 * t) * x + 0.1 * math.cos(1.7 * t) - 0.02 * t


def noise_table(shape, seed=0):
    """One fixed standard normal array per timestep, served as ``noise(t)``."""
    rng = numpy.random.default_rng(seed)
    table = {t: rng.standard_normal(shape) for t in range(T)}
    return table.__getitem__


# --- DDPM: Ho et al. 2020 -------------------------------------------------------------------

def ho_ddpm_step(betas, x_t, t, eps_hat, z):
    """Ho et al. eq. 11 / Algorithm 2 line 4 (t shifted to 0-based):

        x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) + sigma_t z,

    with sigma_t^2 = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (eq. 7) and
    z = 0 on the last step (t = 0, where beta_tilde = 0 anyway).
    """
    alpha_bar = reference_alpha_bar(betas)
    beta, a = float(betas[t]), float(alpha_bar[t])
    a_prev = 1.0 if t == 0 else float(alpha_bar[t - 1])
    mean = (x_t - beta / math.sqrt(1.0 - a) * eps_hat) / math.sqrt(1.0 - beta)
    if t == 0:
        return mean
    return mean + math.sqrt((1.0 - a_prev) / (1.0 - a) * beta) * z


def ho_posterior_step_clipped(betas, x_t, t, eps_hat, z):
    """Ho et al. eq. 6-7 with x0 predicted from eps (eq. 4 inverted) and clipped to [-1, 1]:

        x0_hat = clip((x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t), -1, 1)
        mu_tilde = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0_hat
                 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    """
    alpha_bar = reference_alpha_bar(betas)
    beta, a = float(betas[t]), float(alpha_bar[t])
    a_prev = 1.0 if t == 0 else float(alpha_bar[t - 1])
    x0_hat = numpy.clip((x_t - math.sqrt(1.0 - a) * eps_hat) / math.sqrt(a), -1.0, 1.0)
    mean = (math.sqrt(a_prev) * beta / (1.0 - a) * x0_hat
            + math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a) * x_t)
    if t == 0:
        return mean
    return mean + math.sqrt((1.0 - a_prev) / (1.0 - a) * beta) * z


def test_ddpm_step_matches_ho_eq_11_at_every_timestep():
    """ddpm_step == Ho et al. eq. 11 with sigma_t^2 = beta_tilde_t (eq. 7), t = 0 .. T-1."""
    betas = reference_betas()
    rng = numpy.random.default_rng(1)
    for t in range(T):
        x_t, eps_hat, z = rng.standard_normal((3, 6))
        got = D.ddpm_step(betas, x_t, t, eps_hat, z if t > 0 else None)
        numpy.testing.assert_allclose(got, ho_ddpm_step(betas, x_t, t, eps_hat, z), **TOL)


def test_ddpm_step_with_clipping_matches_the_posterior_mean_eq_7():
    """ddpm_step(clip=True) == eq. 7's posterior mean at the clipped x0 prediction + sigma z."""
    betas = reference_betas()
    rng = numpy.random.default_rng(2)
    for t in range(T):
        x_t, eps_hat, z = 1.5 * rng.standard_normal((3, 8))
        got = D.ddpm_step(betas, x_t, t, eps_hat, z if t > 0 else None, clip=True)
        want = ho_posterior_step_clipped(betas, x_t, t, eps_hat, z)
        numpy.testing.assert_allclose(got, want, **TOL)


def test_ddpm_sample_is_ho_algorithm_2():
    """ddpm_sample == Ho et al. Algorithm 2: for t = T-1 .. 0, eps_theta(x_t, t) then eq. 11."""
    betas = reference_betas()
    x_T = numpy.random.default_rng(3).standard_normal(5)
    noise = noise_table(5)
    x = x_T.copy()
    for t in range(T - 1, -1, -1):
        x = ho_ddpm_step(betas, x, t, eps_model(x, t), noise(t))
    numpy.testing.assert_allclose(D.ddpm_sample(eps_model, betas, x_T, noise), x, **TOL)


# --- DDIM: Song et al. 2021 -----------------------------------------------------------------

def song_ddim_step(alpha_bar, x_t, t, t_prev, eps_hat, eta, z):
    """Song et al. eq. 12 with sigma_t(eta) of eq. 16 (t_prev = -1 means alpha_bar = 1):

        x_prev = sqrt(a') (x_t - sqrt(1 - a) eps_hat) / sqrt(a)
               + sqrt(1 - a' - sigma^2) eps_hat + sigma z,
        sigma  = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a').
    """
    a = float(alpha_bar[t])
    a_prev = 1.0 if t_prev == -1 else float(alpha_bar[t_prev])
    sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a)) * math.sqrt(1.0 - a / a_prev)
    predicted_x0 = (x_t - math.sqrt(1.0 - a) * eps_hat) / math.sqrt(a)
    return (math.sqrt(a_prev) * predicted_x0 + math.sqrt(1.0 - a_prev - sigma ** 2) * eps_hat
            + sigma * z)


# a respaced schedule written out by hand: uneven gaps, both ends, then the clean state (-1)
RESPACED = [11, 9, 6, 4, 1, 0]


@pytest.mark.parametrize("eta", [0.0, 0.35, 0.8, 1.0])
def test_ddim_step_matches_song_eq_12_and_16(eta):
    """ddim_step == Song et al. eq. 12 with sigma_t(eta) of eq. 16, for eta in {0, 0.35, 0.8, 1},
    on consecutive steps, skipping steps, and the last step to the clean state."""
    alpha_bar = reference_alpha_bar(reference_betas())
    rng = numpy.random.default_rng(4)
    pairs = [(t, t - 1) for t in range(T)] + [(11, 6), (9, 1), (6, 0), (4, -1)]
    for t, t_prev in pairs:
        x_t, eps_hat, z = rng.standard_normal((3, 7))
        got = D.ddim_step(alpha_bar, x_t, t, t_prev, eps_hat, eta=eta,
                          noise=z if eta > 0 else None)
        want = song_ddim_step(alpha_bar, x_t, t, t_prev, eps_hat, eta, z)
        numpy.testing.assert_allclose(got, want, **TOL, err_msg=f"t={t} t_prev={t_prev}")


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("timesteps", [list(range(T - 1, -1, -1)), RESPACED])
def test_ddim_sample_is_eq_12_along_the_timestep_list(eta, timesteps):
    """ddim_sample == eq. 12 applied along the list, eps_theta(x, t) at each listed t, the step
    after the last listed t going to the clean state; full and respaced schedules."""
    alpha_bar = reference_alpha_bar(reference_betas())
    x_T = numpy.random.default_rng(5).standard_normal(4)
    noise = noise_table(4, seed=6)
    x = x_T.copy()
    for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
        x = song_ddim_step(alpha_bar, x, t, t_prev, eps_model(x, t), eta, noise(t))
    got = D.ddim_sample(eps_model, alpha_bar, x_T, timesteps, eta=eta, noise=noise)
    numpy.testing.assert_allclose(got, x, **TOL)


def test_ddim_eta_one_consecutive_step_has_ddpm_variance_with_gaussian_data():
    """With the exact eps for N(0, 1) data, eta = 1 and one consecutive step, x_{t-1}'s variance
    (over z, given x_t) is beta_tilde_t, and x_{t-1}'s mean is eq. 11's: DDIM(eta=1) == DDPM."""
    betas = reference_betas()
    alpha_bar = reference_alpha_bar(betas)
    rng = numpy.random.default_rng(7)
    x_t = rng.standard_normal(3)
    for t in range(1, T):
        eps_hat = math.sqrt(1.0 - alpha_bar[t]) * x_t  # E[eps | x_t] for x0 ~ N(0, 1)
        zero = D.ddim_step(alpha_bar, x_t, t, t - 1, eps_hat, eta=1.0, noise=numpy.zeros(3))
        one = D.ddim_step(alpha_bar, x_t, t, t - 1, eps_hat, eta=1.0, noise=numpy.ones(3))
        beta_tilde = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * betas[t]
        numpy.testing.assert_allclose((one - zero) ** 2, beta_tilde, **TOL)
        numpy.testing.assert_allclose(zero, ho_ddpm_step(betas, x_t, t, eps_hat, 0.0), **TOL)


# --- the probability-flow ODE's continuous schedule -----------------------------------------

def knot_interval(t):
    """The interval k (0 .. T-1) with k < t T <= k + 1 (i.e. k/T < t <= (k+1)/T); t = 0
    belongs to interval 0. Found by scanning the knots, not by a ceiling. ``t`` is a float
    (a knot k/T whose t T rounds onto k stays below it) or an exact Fraction (the sampler's
    times 1 - i/n, which the module gets rounded and must still place on their knots)."""
    u = t * T
    for k in range(T):
        if u <= k + 1:
            return k
    return T - 1


def reference_continuous(betas, t):
    """The module's ContinuousSchedule, restated: log alpha_bar linear between knots k/T with
    alpha_bar(0) = 1 and alpha_bar((k+1)/T) = alpha_bar_k; on (k/T, (k+1)/T]
    beta(t) = -d log alpha_bar/dt = -T log(1 - beta_k); sigma(t) = sqrt(1 - alpha_bar(t));
    the model's timestep is t T - 1 clamped to [0, T-1]. Returns (alpha_bar, beta, sigma, step).
    """
    log_knots = [0.0] + list(numpy.log(reference_alpha_bar(betas)))
    k = knot_interval(t)
    t = float(t)
    fraction = t * T - k
    log_alpha_bar = (1 - fraction) * log_knots[k] + fraction * log_knots[k + 1]
    alpha_bar = math.exp(log_alpha_bar)
    beta = -T * math.log(1.0 - float(betas[k]))
    return alpha_bar, beta, math.sqrt(1.0 - alpha_bar), min(max(t * T - 1.0, 0.0), T - 1.0)


def test_continuous_schedule_matches_its_documented_definition():
    """ContinuousSchedule's alpha_bar, beta, sigma and timestep == the docstring's definitions,
    at knots (t = k/T, which belong to the interval below), inside intervals, t = 0 and t = 1."""
    betas = reference_betas()
    schedule = D.ContinuousSchedule(betas)
    times = sorted({k / T for k in range(T + 1)} | {(k + 0.3) / T for k in range(T)}
                   | {(k + 0.999) / T for k in range(T)})
    for t in times:
        got = (schedule.alpha_bar(t), schedule.beta(t), schedule.sigma(t), schedule.timestep(t))
        numpy.testing.assert_allclose(got, reference_continuous(betas, t), **TOL, err_msg=f"{t}")


def test_pf_ode_euler_trajectory_matches_the_reference_integration():
    """Euler on dx/dt = -1/2 beta(t) [x - eps(x, tT - 1) / sigma(t)] from t = 1 to 0 at
    t = 1, (n-1)/n, ..., 1/n (dt = -1/n), with n = 2T (two steps per interval) and n = 7."""
    betas = reference_betas()
    schedule = D.ContinuousSchedule(betas)
    x1 = numpy.random.default_rng(8).standard_normal(5)
    for steps in (2 * T, 7):
        x = x1.copy()
        for index in range(steps):
            _, beta, sigma, step = reference_continuous(betas, 1 - Fraction(index, steps))
            x = x + (-1.0 / steps) * (-0.5 * beta * (x - eps_model(x, step) / sigma))
        got = D.pf_ode_sample_euler(schedule.rhs(eps_model), x1, steps)
        numpy.testing.assert_allclose(got, x, **TOL)
