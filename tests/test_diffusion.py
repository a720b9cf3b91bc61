"""Diffusion maths: schedules, forward noising, posterior, and the samplers against an oracle.

For Gaussian data N(mu, s^2) the ideal noise predictor is known in closed form:
x_t ~ N(sqrt(a) mu, a s^2 + 1 - a) with a = alpha_bar_t, and
E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a).
With it every sampler must reproduce the data's mean and variance, without any training.
"""
import math
import re

import numpy
import pytest
from hypothesis import given, strategies as st

import minilean as ml
from minilean.models import diffusion as D

MU, STD = 0.3, 0.5
N_POINTS = 20000


def oracle_eps(betas):
    """eps*(x, t) for data N(MU, STD^2), at integer or fractional timesteps."""
    schedule = D.ContinuousSchedule(betas)

    def eps(x, t):
        a = schedule.alpha_bar((t + 1) / len(betas))
        return math.sqrt(1 - a) * (x - math.sqrt(a) * MU) / (a * STD ** 2 + 1 - a)
    return eps


@pytest.fixture(scope="module")
def start():
    """x_T for the sampler tests (each test draws its own noise, so none depends on another)."""
    return numpy.random.default_rng(0).standard_normal((N_POINTS, 1))


# --- schedules --------------------------------------------------------------------------

def test_linear_schedule_matches_the_formula_and_torchlean_example():
    betas = D.linear_beta_schedule(5, 0.1, 0.5)
    numpy.testing.assert_allclose(betas, [0.1, 0.2, 0.3, 0.4, 0.5])
    # the [guide] worked example: linearAlphaBars 5 0.1 0.5
    numpy.testing.assert_allclose(D.alpha_bars(betas), [0.9, 0.72, 0.504, 0.3024, 0.1512])
    assert D.linear_beta_schedule(1, 0.2, 0.5).tolist() == [0.2]
    # by default, DDPM's (Ho et al. 2020): 1e-4 to 0.02
    numpy.testing.assert_allclose(D.make_betas("linear", 1000), numpy.linspace(1e-4, 0.02, 1000),
                                  rtol=1e-15)


def test_cosine_schedule_alpha_bar_is_the_cosine_curve():
    T = 50
    u = numpy.arange(1, T + 1) / T
    f = numpy.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    alpha_bar = D.alpha_bars(D.cosine_beta_schedule(T))
    numpy.testing.assert_allclose(alpha_bar[:-1], f[:-1], rtol=1e-12)  # the cap binds at T-1
    assert D.cosine_beta_schedule(T).max() <= 0.999


@given(st.lists(st.floats(0, 0.99), min_size=1, max_size=20))
def test_alpha_bars_is_the_running_product(betas):
    expected = numpy.cumprod([1 - b for b in betas])
    numpy.testing.assert_allclose(D.alpha_bars(betas), expected, rtol=1e-12)
    assert numpy.all(numpy.diff(D.alpha_bars(betas)) <= 0)


@pytest.mark.parametrize("call, message", [
    (lambda: D.linear_beta_schedule(0, 1e-4, 0.02), "T (number of timesteps) must be an integer >= 1"),
    (lambda: D.linear_beta_schedule(2.5, 1e-4, 0.02), "must be an integer >= 1, got 2.5"),
    (lambda: D.linear_beta_schedule(10, -0.1, 0.02), "beta_start must be finite and in [0, 1)"),
    (lambda: D.linear_beta_schedule(10, 1e-4, 1.0), "beta_end must be finite and in [0, 1)"),
    (lambda: D.linear_beta_schedule(10, float("nan"), 0.1), "beta_start must be finite"),
    (lambda: D.alpha_bars([0.1, 1.5]), "beta[1] = 1.5"),
    (lambda: D.alpha_bars([]), "betas must be a non-empty 1-D array, got shape (0,)"),
    (lambda: D.alpha_bars([[0.1, 0.2]]), "betas must be a non-empty 1-D array, got shape (1, 2)"),
    (lambda: D.make_betas("quadratic", 10), "schedule must be 'linear' or 'cosine'"),
])
def test_schedule_validation_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


# --- forward process, x0, posterior -----------------------------------------------------

def test_q_sample_and_x0_from_eps_invert_each_other_per_example():
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(10, 0.01, 0.3))
    rng = numpy.random.default_rng(1)
    x0 = ml.tensor(rng.standard_normal((4, 2, 3, 3)))
    eps = ml.tensor(rng.standard_normal((4, 2, 3, 3)))
    t = numpy.array([0, 3, 7, 9])
    x_t = D.q_sample(alpha_bar, x0, t, eps)
    for row, step in enumerate(t):
        expected = math.sqrt(alpha_bar[step]) * x0.numpy()[row] + \
            math.sqrt(1 - alpha_bar[step]) * eps.numpy()[row]
        numpy.testing.assert_allclose(x_t.numpy()[row], expected, rtol=1e-5, atol=1e-6)
    numpy.testing.assert_allclose(D.x0_from_eps(alpha_bar, x_t, t, eps).numpy(), x0.numpy(),
                                  rtol=1e-4, atol=1e-5)
    numpy.testing.assert_array_equal(D.q_sample(alpha_bar, x0, ml.tensor(t), eps).numpy(),
                                     x_t.numpy())  # timesteps in a tensor: the same lookup
    # the TorchLean [guide] numbers: alpha_bar = 0.504, x0 = [0.5, -0.25], eps = [1, -1]
    guide = D.alpha_bars(D.linear_beta_schedule(5, 0.1, 0.5))
    numpy.testing.assert_allclose(
        D.q_sample(guide, numpy.array([0.5, -0.25]), 2, numpy.array([1.0, -1.0])),
        [1.059237, -0.881755], atol=1e-6)


@pytest.mark.parametrize("t", [numpy.array([0, 4, 9]), 6], ids=["per-example", "one"])
def test_q_sample_gradients_match_finite_differences(t):
    """QSample's backward in float64; eps of shape (1, 2) is broadcast over the batch."""
    from minilean.autograd.gradcheck import gradcheck
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(10, 0.01, 0.3))
    rng = numpy.random.default_rng(2)
    x0 = ml.tensor(rng.standard_normal((3, 2)), dtype="float64", requires_grad=True)
    eps = ml.tensor(rng.standard_normal((1, 2)), dtype="float64", requires_grad=True)
    assert gradcheck(lambda a, b: D.q_sample(alpha_bar, a, t, b), [x0, eps])


def test_v_target_and_eps_model_from_v_recover_eps_and_x0():
    alpha_bar = D.alpha_bars(D.cosine_beta_schedule(20))
    rng = numpy.random.default_rng(2)
    x0, eps = rng.uniform(-1, 1, (3, 4)), rng.standard_normal((3, 4))
    t = numpy.array([0, 10, 19])
    x_t, v = D.q_sample(alpha_bar, x0, t, eps), D.v_target(alpha_bar, x0, t, eps)
    for row, step in enumerate(t):
        a = alpha_bar[step]
        numpy.testing.assert_allclose(v[row], math.sqrt(a) * eps[row] - math.sqrt(1 - a) * x0[row])
        eps_model = D.eps_model_from_v(lambda x, s: v[row], alpha_bar)
        eps_hat = eps_model(x_t[row], int(step))
        numpy.testing.assert_allclose(eps_hat, eps[row], atol=1e-12)
        # at the last cosine step (alpha_bar ~ 6e-8) x0_from_eps divides by ~4e-4: an eps
        # recovered from v still gives x0 to about 1e-12 / 2.5e-4
        numpy.testing.assert_allclose(D.x0_from_eps(alpha_bar, x_t[row], int(step), eps_hat),
                                      x0[row], atol=1e-7)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_v_model_samplers_take_x0_from_v_where_float32_cannot_divide_by_sqrt_alpha_bar(sampler):
    """--schedule linear --T 4000 (the default --beta-end 0.1) ends at alpha_bar ~ 1e-90: in
    float32 eps_hat = sqrt(1 - a) x_t + sqrt(a) v is x_t to the last bit and 1 / sqrt(a) is
    inf, so x0_from_eps(eps_hat) was 0 * inf = nan and every sample NaN. The x0 of a v-model
    is sqrt(a) x_t - sqrt(1 - a) v, here -v whatever x_t."""
    betas = D.linear_beta_schedule(4000, 1e-4, 0.1)
    alpha_bar, last = D.alpha_bars(betas), len(betas) - 1
    assert 1.0 / math.sqrt(alpha_bar[last]) > float(numpy.finfo(numpy.float32).max)
    rng = numpy.random.default_rng(0)
    x_T = ml.tensor(rng.standard_normal((2, 3)).astype(numpy.float32))
    v = ml.tensor(rng.uniform(-0.9, 0.9, (2, 3)).astype(numpy.float32))
    seen = []  # the x each network call is given: the second is the first step's result

    def v_model(x, t):
        seen.append(x.numpy().astype(numpy.float64))
        return v

    eps_model = D.eps_model_from_v(v_model, alpha_bar)
    if sampler == "ddim":  # one step from the last timestep to the clean state: x0_hat itself
        sample = D.ddim_sample(eps_model, alpha_bar, x_T, [last], clip=True)
        numpy.testing.assert_allclose(sample.numpy(), -v.numpy(), atol=1e-6)
        return
    noise = ml.tensor(rng.standard_normal((2, 3)).astype(numpy.float32))
    sample = D.ddpm_sample(eps_model, betas, x_T, lambda t: noise, clip=True)
    assert numpy.isfinite(sample.numpy()).all()
    a = alpha_bar[last]
    x0 = numpy.clip(math.sqrt(a) * seen[0] - math.sqrt(1 - a) * v.numpy(), -1, 1)
    mean, variance = D.posterior_mean_variance(betas, x0, seen[0], last)
    numpy.testing.assert_allclose(seen[1], mean + math.sqrt(variance) * noise.numpy(),
                                  rtol=1e-5, atol=1e-6)


def test_unclipped_eps_model_steps_do_not_divide_by_sqrt_alpha_bar_in_float32():
    """The same schedule with an eps model and --noclip: DDPM and DDIM took x0_hat =
    (x_t - sqrt(1 - a) eps_hat) / sqrt(a) with 1 / sqrt(a) = inf in float32, and its coefficient
    sqrt(a_prev) made it 0 * inf: every sample NaN, with the ideal eps too. Their steps are
    finite: DDPM's mean is (x_t - beta / sqrt(1 - a) eps_hat) / sqrt(1 - beta), DDIM's
    x_prev = sqrt(a_prev / a) (x_t - sqrt(1 - a) eps_hat) + sqrt(1 - a_prev) eps_hat."""
    betas = D.linear_beta_schedule(4000, 1e-4, 0.1)
    alpha_bar, last = D.alpha_bars(betas), len(betas) - 1
    assert 1.0 / math.sqrt(alpha_bar[last]) > float(numpy.finfo(numpy.float32).max)
    rng = numpy.random.default_rng(0)
    x_T = rng.standard_normal((4000, 1)).astype(numpy.float32)
    eps = oracle_eps(betas)
    draws = rng.standard_normal((len(betas), 4000, 1)).astype(numpy.float32)
    x = D.ddpm_sample(eps, betas, ml.tensor(x_T), lambda t: ml.tensor(draws[t])).numpy()
    assert x.dtype == numpy.float32 and numpy.isfinite(x).all()
    assert abs(x.mean() - MU) < 0.03 and abs(x.var() - STD ** 2) < 0.03
    step = D.ddim_step(alpha_bar, ml.tensor(x_T), last, last - 1, ml.tensor(eps(x_T, last)))
    a, a_prev, x_64 = alpha_bar[last], alpha_bar[last - 1], x_T.astype(numpy.float64)
    eps_64 = eps(x_64, last)
    expected = math.sqrt(a_prev / a) * (x_64 - math.sqrt(1 - a) * eps_64) + math.sqrt(
        1 - a_prev) * eps_64
    numpy.testing.assert_allclose(step.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_unclipped_eps_model_steps_stay_finite_where_x0_hat_alone_overflows_float32():
    """Where 1 / sqrt(a) is just below float32's largest number (1.4e38 at a = 5e-77), x0_hat =
    (x_t - sqrt(1 - a) eps_hat) / sqrt(a) still overflows once x_t - sqrt(1 - a) eps_hat passes
    about 2.4: the steps of such timesteps were +-inf, and most samples of --T 4000 --noclip
    were NaN. They take the ratio of the coefficients there too."""
    betas = D.linear_beta_schedule(4000, 1e-4, 0.1)
    alpha_bar = D.alpha_bars(betas)
    t = int(numpy.argmin(abs(numpy.log(alpha_bar) - math.log(5e-77))))
    assert 1.0 / math.sqrt(alpha_bar[t]) < float(numpy.finfo(numpy.float32).max)
    x_t = numpy.array([5.0, -4.0, 1.0], numpy.float32)
    eps_hat = numpy.zeros(3, numpy.float32)
    a, a_prev, beta = alpha_bar[t], alpha_bar[t - 1], betas[t]
    ddpm = D.ddpm_step(betas, ml.tensor(x_t), t, ml.tensor(eps_hat), ml.tensor(eps_hat)).numpy()
    numpy.testing.assert_allclose(ddpm, x_t / math.sqrt(1 - beta), rtol=1e-6)
    ddim = D.ddim_step(alpha_bar, ml.tensor(x_t), t, t - 1, ml.tensor(eps_hat)).numpy()
    numpy.testing.assert_allclose(ddim, math.sqrt(a_prev / a) * x_t, rtol=1e-6)


def test_alpha_bar_at_fractional_timesteps_is_the_continuous_schedule():
    betas = D.cosine_beta_schedule(20)
    alpha_bar, continuous = D.alpha_bars(betas), D.ContinuousSchedule(betas)
    assert D.alpha_bar_at(alpha_bar, 7) == alpha_bar[7]
    assert D.alpha_bar_at(alpha_bar, 7.5) == pytest.approx(math.sqrt(alpha_bar[7] * alpha_bar[8]))
    for time in (0.3, 0.55, 0.97):
        assert D.alpha_bar_at(alpha_bar, continuous.timestep(time)) == pytest.approx(
            continuous.alpha_bar(time))


def test_training_timesteps_are_uniform_over_all_T_steps():
    """50000 draws with T = 5 take every value of {0, ..., 4} and no other, each about as
    often as the others: Pearson's chi-square against uniform stays below 18.47, the 0.999
    quantile of chi-square with 4 degrees of freedom."""
    T, n = 5, 50000
    t = D.sample_timesteps(n, T, numpy.random.default_rng(0))
    assert t.shape == (n,) and numpy.issubdtype(t.dtype, numpy.integer)
    assert sorted(set(t.tolist())) == list(range(T))
    counts = numpy.bincount(t, minlength=T)
    chi_square = ((counts - n / T) ** 2 / (n / T)).sum()
    assert chi_square < 18.47


def test_eps_prediction_loss_asks_the_model_at_the_timestep_it_noised_with():
    """The eps model receives x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps and that same t, and the
    loss is the mean squared error of its output to eps."""
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(10, 0.01, 0.3))
    rng = numpy.random.default_rng(4)
    x0, eps = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    t = numpy.array([0, 3, 8, 9])
    calls = []

    def eps_model(x_t, step):
        calls.append((x_t.numpy().copy(), numpy.array(step)))
        return 0.5 * x_t

    loss = D.eps_prediction_loss(eps_model, alpha_bar, ml.tensor(x0), t, ml.tensor(eps))
    (x_t, step), = calls
    numpy.testing.assert_array_equal(step, t)
    a = alpha_bar[step][:, None]
    expected_x_t = numpy.sqrt(a) * x0 + numpy.sqrt(1 - a) * eps
    numpy.testing.assert_allclose(x_t, expected_x_t, rtol=1e-5, atol=1e-6)
    assert loss.item() == pytest.approx(((0.5 * expected_x_t - eps) ** 2).mean(), rel=1e-5)


def test_v_prediction_loss_is_the_mse_to_the_v_target():
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(10, 0.01, 0.3))
    rng = numpy.random.default_rng(3)
    x0, eps = ml.tensor(rng.standard_normal((4, 2))), ml.tensor(rng.standard_normal((4, 2)))
    t = numpy.array([1, 4, 8, 9])
    model = lambda x, s: 0.5 * x  # noqa: E731
    expected = ((0.5 * D.q_sample(alpha_bar, x0, t, eps).numpy()
                 - D.v_target(alpha_bar, x0, t, eps).numpy()) ** 2).mean()
    assert D.v_prediction_loss(model, alpha_bar, x0, t, eps).item() == pytest.approx(expected)


def test_posterior_mean_is_the_eps_form_and_variance_is_beta_tilde():
    betas = D.linear_beta_schedule(8, 0.05, 0.4)
    alpha_bar = D.alpha_bars(betas)
    rng = numpy.random.default_rng(2)
    x_t, eps = rng.standard_normal(5), rng.standard_normal(5)
    for t in range(8):
        x0 = D.x0_from_eps(alpha_bar, x_t, t, eps)
        mean, variance = D.posterior_mean_variance(betas, x0, x_t, t)
        eps_form = (x_t - betas[t] / math.sqrt(1 - alpha_bar[t]) * eps) / math.sqrt(1 - betas[t])
        numpy.testing.assert_allclose(mean, eps_form, rtol=1e-10)
        previous = 1.0 if t == 0 else alpha_bar[t - 1]
        assert variance == pytest.approx(betas[t] * (1 - previous) / (1 - alpha_bar[t]))
        assert variance <= betas[t]
    assert D.posterior_mean_variance(betas, x0, x_t, 0)[1] == 0.0
    # beta_0 = 0 leaves alpha_bar_0 = 1: x_t is x0 itself, the posterior a point there (the
    # formula's 1 - alpha_bar_t in the denominator is 0)
    mean, variance = D.posterior_mean_variance([0.0, 0.1], x0, x_t, 0)
    assert mean is x_t and variance == 0.0


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("as_tensors", [False, True])
def test_per_example_coefficients_keep_the_images_dtype(dtype, as_tensors):
    """The schedule is float64; a batch of timesteps picks coefficients in the images' dtype, so
    float32 images noise, denoise and give v targets in float32 (not silently in float64), with
    the values of the float64 formulas."""
    alpha_bar = D.alpha_bars(D.linear_beta_schedule(10, 1e-4, 0.2))
    rng = numpy.random.default_rng(8)
    x0, eps = (rng.standard_normal((3, 2, 2)).astype(dtype) for _ in range(2))
    t = numpy.array([0, 4, 9])
    signal, noise = (numpy.sqrt(a)[t].reshape(3, 1, 1) for a in (alpha_bar, 1 - alpha_bar))
    wrap = (lambda array: ml.tensor(array, dtype=dtype)) if as_tensors else (lambda array: array)
    expected = {"q_sample": (D.q_sample, signal * x0 + noise * eps),
                "x0_from_eps": (D.x0_from_eps, (x0 - noise * eps) / signal),
                "v_target": (D.v_target, signal * eps - noise * x0)}
    for name, (function, value) in expected.items():
        result = function(alpha_bar, wrap(x0), wrap(t), wrap(eps))
        assert (name, isinstance(result, ml.Tensor), result.dtype) == (name, as_tensors, dtype)
        numpy.testing.assert_allclose(numpy.asarray(result.numpy() if as_tensors else result),
                                      value, rtol=1e-5 if dtype == numpy.float32 else 1e-12)


def test_timesteps_for_batch_takes_one_for_all_or_one_each():
    numpy.testing.assert_array_equal(D.timesteps_for_batch(3, 2), [3.0, 3.0])
    numpy.testing.assert_array_equal(D.timesteps_for_batch(ml.tensor([1, 4]), 2), [1.0, 4.0])
    with pytest.raises(ValueError, match=r"^expected one timestep or 3 of them, got shape \(2,\)$"):
        D.timesteps_for_batch([1, 4], 3)


def test_timesteps_for_batch_takes_a_0d_array_or_tensor_as_one_for_all():
    """numpy.asarray(t) and ml.tensor(t) hold one timestep: it failed as "got shape (1,)"."""
    from minilean.models.unet import UNet

    for one in (numpy.asarray(3), ml.tensor(3), ml.tensor(3.5)):
        numpy.testing.assert_array_equal(D.timesteps_for_batch(one, 2), [float(one)] * 2)
    network = UNet(1, 4)
    images = ml.randn(2, 1, 4, 4)
    numpy.testing.assert_array_equal(network(images, ml.tensor(3)).numpy(),
                                     network(images, 3).numpy())
    with pytest.raises(ValueError, match=r"^expected one timestep or 3 of them, got shape \(1, 2\)$"):
        D.timesteps_for_batch(numpy.ones((1, 2)), 3)


def test_ddim_with_eta_one_on_consecutive_steps_has_the_ddpm_variance():
    betas = D.linear_beta_schedule(10, 0.05, 0.3)
    alpha_bar = D.alpha_bars(betas)
    x = numpy.zeros(1)
    for t in range(1, 10):
        # with x0_hat = 0 and eps_hat = 0 the step is pure noise: x_prev = sigma * z
        step = D.ddim_step(alpha_bar, x, t, t - 1, numpy.zeros(1), eta=1.0, noise=numpy.ones(1))
        assert step[0] ** 2 == pytest.approx(D.posterior_mean_variance(betas, x, x, t)[1])


def test_ddim_above_eta_one_drops_the_direction_once_the_noise_takes_all_its_variance():
    """Past sigma^2 = 1 - a' the direction's coefficient is 0 (not a root of a negative): the
    step is sqrt(a') x0_hat + sigma noise; below it, sqrt(1 - a' - sigma^2) eps_hat is added."""
    alpha_bar = numpy.array([0.9, 0.5])
    x_t, eps_hat, noise = numpy.array([0.3]), numpy.array([0.7]), numpy.array([-1.1])
    x0_hat = (x_t - math.sqrt(0.5) * eps_hat) / math.sqrt(0.5)
    for eta in (1.05, 3.0):
        sigma = eta * math.sqrt(0.1 / 0.5) * math.sqrt(1 - 0.5 / 0.9)
        step = D.ddim_step(alpha_bar, x_t, 1, 0, eps_hat, eta=eta, noise=noise)
        direction = math.sqrt(max(0.1 - sigma * sigma, 0.0))
        assert (eta, direction > 0) in ((1.05, True), (3.0, False))
        numpy.testing.assert_allclose(
            step, math.sqrt(0.9) * x0_hat + direction * eps_hat + sigma * noise, rtol=1e-12)


def test_respaced_timesteps_come_from_the_list_and_cover_both_ends():
    assert D.respaced_timesteps(10, 20) == list(range(9, -1, -1))
    steps = D.respaced_timesteps(1000, 7)
    assert steps[0] == 999 and steps[-1] == 0 and len(steps) == 7
    assert steps == sorted(set(steps), reverse=True)
    assert D.respaced_timesteps(5, 1) == [4]
    # evenly spaced: the integers nearest to the grid from T - 1 to 0 in steps - 1 equal gaps.
    # T = 11, 4 steps: gap 10/3 -> 10, 6.67, 3.33, 0 -> 10, 7, 3, 0 (not 10, 6, 3, 0 by
    # truncation); T = 20, 6 steps: gap 3.8 -> 19, 15.2, 11.4, 7.6, 3.8, 0 -> 19, 15, 11, 8, 4,
    # 0 (not t - T // steps: 19, 16, 13, ...)
    assert D.respaced_timesteps(11, 4) == [10, 7, 3, 0]
    assert D.respaced_timesteps(20, 6) == [19, 15, 11, 8, 4, 0]


# --- samplers ---------------------------------------------------------------------------

def test_zero_steps_return_the_input():
    x = ml.randn(3, 2)
    never = lambda *args: pytest.fail("the model must not be called")  # noqa: E731
    assert D.ddpm_sample(never, numpy.zeros(0), x, never) is x
    assert D.ddim_sample(never, numpy.ones(4), x, []) is x
    assert D.pf_ode_sample_euler(never, x, 0) is x


@pytest.mark.parametrize("timesteps", [[7], [9, 4]])
def test_ddim_sample_ends_at_the_clean_state_whatever_its_last_timestep(timesteps):
    """A list that does not end at 0 (``--sample-steps 1`` walks [T-1]) takes its last step to
    the clean state, not to timestep 0, which would leave sqrt(1 - alpha_bar_0) of noise (a
    mutant that stopped there passed every check)."""
    alpha_bar = D.alpha_bars(D.make_betas("linear", 10))
    x = ml.tensor(numpy.random.default_rng(0).standard_normal((3, 2)))
    eps_model = lambda x_t, t: 0.5 * x_t  # noqa: E731  (any network)
    expected = x
    for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
        expected = D.ddim_step(alpha_bar, expected, t, t_prev, eps_model(expected, t))
    numpy.testing.assert_array_equal(D.ddim_sample(eps_model, alpha_bar, x, timesteps).numpy(),
                                     expected.numpy())


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_with_the_ideal_eps_reproduces_the_data_distribution(schedule, start):
    x_T, rng = start, numpy.random.default_rng(1)
    betas = D.make_betas(schedule, 1000, 1e-4, 0.02)
    x = D.ddpm_sample(oracle_eps(betas), betas, x_T, lambda t: rng.standard_normal(x_T.shape))
    assert abs(x.mean() - MU) < 0.02
    assert abs(x.var() - STD ** 2) < 0.02


def test_ddim_and_pf_euler_converge_as_sample_steps_grow(start):
    x_T = start
    betas = D.linear_beta_schedule(1000, 1e-4, 0.02)
    eps, alpha_bar = oracle_eps(betas), D.alpha_bars(betas)
    rhs = D.ContinuousSchedule(betas).rhs(eps)
    ddim_errors, euler_errors = [], []
    for steps in (10, 40, 160, 640):
        ddim = D.ddim_sample(eps, alpha_bar, x_T, D.respaced_timesteps(1000, steps))
        euler = D.pf_ode_sample_euler(rhs, x_T, steps)
        ddim_errors.append(abs(ddim.var() - STD ** 2))
        euler_errors.append(abs(euler.var() - STD ** 2))
        assert abs(ddim.mean() - MU) < 0.02 and abs(euler.mean() - MU) < 0.02
    # sampling error is common to all runs (same x_T); the discretisation error must shrink
    assert all(a > b for a, b in zip(ddim_errors, ddim_errors[1:])), ddim_errors
    assert all(a > b for a, b in zip(euler_errors, euler_errors[1:])), euler_errors
    assert ddim_errors[-1] < 0.01 and euler_errors[-1] < 0.01


def test_samplers_run_on_tensors_with_clipping(start):
    betas = D.cosine_beta_schedule(20)
    x_T = ml.tensor(start[:64].reshape(4, 1, 4, 4).astype(numpy.float32) * 3)
    noise = lambda t: ml.randn(*x_T.shape)  # noqa: E731
    eps = lambda x, t: x * 0.0  # noqa: E731  (x0_hat = x / sqrt(a), then clipped)
    for x in (D.ddpm_sample(eps, betas, x_T, noise, clip=True),
              D.ddim_sample(eps, D.alpha_bars(betas), x_T, D.respaced_timesteps(20, 5), 0.5,
                            noise, clip=True)):
        assert isinstance(x, ml.Tensor) and x.shape == x_T.shape and x.dtype == numpy.float32
        # the last step returns the clipped x0 estimate, noise or not (unclipped: ~2800)
        assert numpy.abs(x.numpy()).max() <= 1.0
    final = D.ddim_sample(eps, D.alpha_bars(betas), x_T, D.respaced_timesteps(20, 5), clip=True)
    assert final.numpy().max() <= 1.0 and final.numpy().min() >= -1.0
    # eta 0 and eps_hat 0: each step is x_prev = sqrt(a') clip(x_t / sqrt(a), -1, 1)
    alpha_bar, timesteps = D.alpha_bars(betas), D.respaced_timesteps(20, 5)
    expected = x_T.numpy().astype(numpy.float64)
    for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
        a_prev = 1.0 if t_prev < 0 else alpha_bar[t_prev]
        expected = numpy.sqrt(a_prev) * numpy.clip(expected / numpy.sqrt(alpha_bar[t]), -1, 1)
    assert expected.min() == -1.0 and expected.max() == 1.0  # both bounds are reached
    for x in (x_T, x_T.numpy()):  # the Tensor's clamp and the array's clip
        result = D.ddim_sample(eps, alpha_bar, x, timesteps, clip=True)
        numpy.testing.assert_allclose(numpy.asarray(result), expected, rtol=1e-6)


def test_in_batches_gives_the_network_at_most_a_batch_and_joins_its_rows_in_order():
    from minilean.models.unet import UNet
    ml.manual_seed(0)
    network = UNet(3, 4)
    network.eval()
    x = ml.tensor(numpy.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(numpy.float32))
    rows_seen = []

    def counted(x, t):
        rows_seen.append(x.shape[0])
        return network(x, t)

    with ml.no_grad():
        whole = network(x, 7).numpy()
        batched = D.in_batches(counted, 2)(x, 7)
    assert rows_seen == [2, 2, 1]
    assert isinstance(batched, ml.Tensor) and batched.dtype == numpy.float32
    # GroupNorm and attention look within an image, so each row is its own; the products'
    # shapes differ, hence close rather than equal
    numpy.testing.assert_allclose(batched.numpy(), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [0, 1, 2])
def test_in_batches_hands_at_most_one_batch_to_the_network_as_it_is(rows):
    """x of no more rows than a batch (none too) is one call on x itself, whose result is
    returned; with no rows, the loop made no result and returned Tensor(None), a TypeError."""
    calls = []

    def network(x, t):
        calls.append(x)
        return x * t
    x = ml.ones(rows, 3)
    result = D.in_batches(network, 2)(x, 4.0)
    assert len(calls) == 1 and calls[0] is x and result.shape == (rows, 3)
    numpy.testing.assert_array_equal(result.numpy(), numpy.full((rows, 3), 4.0))


def test_pf_ode_rhs_and_euler_step_formulas():
    x, eps = numpy.array([1.0, -2.0]), numpy.array([0.5, 0.25])
    numpy.testing.assert_allclose(D.pf_ode_rhs(x, eps, 0.4, 0.5), -0.2 * (x - eps / 0.5))
    numpy.testing.assert_allclose(D.euler_step(lambda y, t: y * t, x, 2.0, 0.1), x + 0.2 * x)


@pytest.mark.parametrize("T", [10, 20, 200])
def test_pf_ode_sampler_runs_where_the_schedule_starts_with_beta_zero(T):
    # --schedule linear --beta-start 0 --sampler pf-euler --sample-steps T: the last Euler
    # step is at t = 1/T, where alpha_bar(t) = 1, so sigma(t) = 0 and beta(t) = 0; the drift
    # there is 0, not a ZeroDivisionError. For T = 20 and 200 that t is 1 - 19/20 =
    # 0.050000000000000044 (1 - 199/200 alike), a hair above the knot 1/T
    import numpy as np
    from minilean.models import diffusion as D
    schedule = D.ContinuousSchedule(D.linear_beta_schedule(T, 0.0, 0.1))
    rhs = schedule.rhs(lambda x, t: 0 * x + 0.1)
    last = 1.0 - (T - 1) / T
    assert schedule.sigma(last) == 0.0 and schedule.beta(last) == 0.0
    np.testing.assert_array_equal(rhs(np.ones(2), last), np.zeros(2))
    out = D.pf_ode_sample_euler(rhs, np.ones(2), T)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("T, steps", [(10, 10), (20, 20), (200, 50), (1000, 50)])
def test_pf_ode_steps_take_beta_from_the_interval_they_cross(T, steps):
    # the Euler step from t = 1 - i/n to t - 1/n crosses the knot interval just below t; the
    # float t is rounded (1 - 7/10 = 0.30000000000000004), and t T a hair above knot k gave
    # the beta of interval k, above t, which the step never crosses
    from fractions import Fraction
    betas = D.linear_beta_schedule(T, 1e-4, 0.02)
    schedule = D.ContinuousSchedule(betas)
    for index in range(steps):
        crossed = math.ceil(Fraction(steps - index, steps) * T) - 1
        assert schedule.beta(1.0 - index / steps) == -T * math.log1p(-betas[crossed]), index


# --- timesteps a schedule has -----------------------------------------------------------

BETAS = D.linear_beta_schedule(100, 1e-4, 0.02)
ALPHA_BAR = D.alpha_bars(BETAS)
ONES, ZEROS = numpy.ones(2), numpy.zeros(2)
OUTSIDE = "is outside the schedule's timesteps 0..99"


@pytest.mark.parametrize("call, t, message", [
    # read as indices: -1 noised to the last timestep (not the clean state ddim_step calls -1)
    (lambda t: D.q_sample(ALPHA_BAR, ONES, t, ZEROS), -1, f"timestep -1 {OUTSIDE}"),
    # and 0.29 * 100 = 28.999999999999996 was cut to 28
    (lambda t: D.q_sample(ALPHA_BAR, ONES, t, ZEROS), 0.29 * 100,
     "timestep 28.999999999999996 is not a whole number; expected an integer in 0..99 "
     "(alpha_bar_at reads fractional timesteps)"),
    (lambda t: D.q_sample(ALPHA_BAR, ml.tensor(ONES), t, ml.tensor(ZEROS)),
     numpy.array([3, 100]), f"timestep 100 {OUTSIDE}"),
    (lambda t: D.x0_from_eps(ALPHA_BAR, ONES, t, ZEROS), [5, -2], f"timestep -2 {OUTSIDE}"),
    (lambda t: D.v_target(ALPHA_BAR, ONES, t, ZEROS), numpy.array([1.5]),
     "timestep 1.5 is not a whole number; expected an integer in 0..99 (alpha_bar_at reads "
     "fractional timesteps)"),
    (lambda t: D.posterior_mean_variance(BETAS, ONES, ONES, t), -1, f"timestep -1 {OUTSIDE}"),
    (lambda t: D.alpha_bar_at(ALPHA_BAR, t), -1, f"timestep -1 {OUTSIDE}"),
    (lambda t: D.alpha_bar_at(ALPHA_BAR, t), -1.0, f"timestep -1.0 {OUTSIDE}"),
    (lambda t: D.alpha_bar_at(ALPHA_BAR, t), 99.5, f"timestep 99.5 {OUTSIDE}"),
])
def test_a_timestep_the_schedule_does_not_have_is_refused(call, t, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call(t)


def test_whole_timesteps_of_any_form_are_read_as_before():
    """Whole numbers as floats, in a list, a host array or a Tensor, and the ends 0 and T-1."""
    expected = math.sqrt(ALPHA_BAR[29])
    for t in (29, numpy.int64(29), 29.0, numpy.array([29, 29]), [29.0, 29.0], ml.tensor([29, 29])):
        numpy.testing.assert_allclose(D.q_sample(ALPHA_BAR, ONES, t, ZEROS), expected,
                                      rtol=1e-15)
    assert D.alpha_bar_at(ALPHA_BAR, 99) == ALPHA_BAR[99]
    assert D.alpha_bar_at(ALPHA_BAR, 0.0) == pytest.approx(ALPHA_BAR[0], rel=1e-15)


@pytest.mark.parametrize("call, message", [
    (lambda: D.ddim_step(ALPHA_BAR, ONES, 3, 5, ZEROS),
     "a DDIM step goes from a timestep t in 0..99 to an earlier t_prev (-1: the clean state), "
     "got t = 3, t_prev = 5"),
    (lambda: D.ddim_step(ALPHA_BAR, ONES, 100, 5, ZEROS),
     "a DDIM step goes from a timestep t in 0..99 to an earlier t_prev (-1: the clean state), "
     "got t = 100, t_prev = 5"),
    (lambda: D.ddim_step(ALPHA_BAR, ONES, 5, 3, ZEROS, eta=0.5),
     "DDIM with eta = 0.5 adds noise: expected a noise draw, got None"),
    # ascending, the list ran "backwards" without a word; a repeated timestep likewise
    (lambda: D.ddim_sample(lambda x, t: 0.1 * x, ALPHA_BAR, ONES, [0, 4, 9]),
     "DDIM walks its timesteps down: expected a strictly decreasing list, got [0, 4, 9]"),
    (lambda: D.ddim_sample(lambda x, t: 0.1 * x, ALPHA_BAR, ONES, [9, 4, 4, 0]),
     "DDIM walks its timesteps down: expected a strictly decreasing list, got [9, 4, 4, 0]"),
    (lambda: D.ddim_sample(lambda x, t: 0.1 * x, ALPHA_BAR, ONES, [9, 0], eta=1.0),
     "DDIM with eta = 1.0 adds noise: expected noise(t), got None"),
])
def test_ddim_refuses_steps_it_cannot_take(call, message):
    """A step to a later timestep took the root of a negative number at eta > 0 ("math
    domain error"), and eta > 0 without noise called None."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()
