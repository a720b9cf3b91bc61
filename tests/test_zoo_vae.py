"""VAE: the named objects against their formulas, the likelihood's normalisation, gradients of
the whole loss in float64, and a few training steps."""
import math

import mpmath
import numpy
import pytest

import minilean
from minilean import optim
from minilean.autograd.gradcheck import gradcheck
from minilean.models import vae


def t64(values):
    return minilean.tensor(numpy.asarray(values, numpy.float64), dtype=numpy.float64)


def test_kl_matches_the_worked_example():
    # TorchLean's guide: mu = [0.5, -0.25], logvar = 0 -> per coordinate [0.125, 0.03125]
    mu, logvar = t64([0.5, -0.25]), t64([0.0, 0.0])
    numpy.testing.assert_allclose(vae.coordinate_kl_to_standard(mu, logvar).numpy(),
                                  [0.125, 0.03125])
    assert vae.diagonal_gaussian_kl_to_standard_sum(mu, logvar).item() == pytest.approx(0.15625)
    assert vae.diagonal_gaussian_kl_to_standard(mu, logvar).item() == pytest.approx(0.078125)


def test_batched_mean_form_is_sum_form_over_latent_size():
    rng = numpy.random.default_rng(0)
    mu, logvar = t64(rng.normal(size=(5, 7))), t64(rng.normal(size=(5, 7)))
    total = vae.diagonal_gaussian_kl_to_standard_sum(mu, logvar).item()
    assert vae.diagonal_gaussian_kl_to_standard(mu, logvar).item() == pytest.approx(total / 7)


def test_kl_agrees_with_torch():
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(1)
    mu, logvar = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(numpy.exp(logvar / 2)))
    p = torch.distributions.Normal(torch.zeros(4, 6, dtype=torch.float64), 1.0)
    expected = torch.distributions.kl_divergence(q, p).numpy()
    numpy.testing.assert_allclose(vae.coordinate_kl_to_standard(t64(mu), t64(logvar)).numpy(),
                                  expected, rtol=1e-12)


def test_reparameterize_and_elbo_terms():
    mu, logvar, eps = t64([1.0, -2.0]), t64([0.0, math.log(4.0)]), t64([0.5, 1.0])
    numpy.testing.assert_allclose(vae.reparameterize_diag(mu, logvar, eps).numpy(), [1.5, 0.0])
    assert vae.negative_elbo(2.0, 3.0) == 5.0
    assert vae.beta_negative_elbo(2.0, 3.0, 0.5) == 3.5


@pytest.mark.parametrize("mean, log_scale", [(0.3, -3.0), (0.0, -6.5), (1.0, -1.0), (0.5, 2.0)])
def test_discretized_logistic_is_a_distribution_over_256_values(mean, log_scale):
    pixels = t64(numpy.arange(256) / 255.0)
    log_p = vae.discretized_logistic_log_likelihood(
        pixels, t64(numpy.full(256, mean)), t64(numpy.full(256, log_scale)))
    # exact up to the bins below 1e-5 mass, which use density * width instead (a few 1e-6)
    assert numpy.exp(log_p.numpy()).sum() == pytest.approx(1.0, abs=1e-5)


def test_importance_weighted_bound_is_above_the_mean_log_weight():
    log_weights = t64(numpy.random.default_rng(2).normal(size=(8, 3)))
    bound = vae.importance_weighted_bound(log_weights).numpy()
    assert numpy.all(bound >= log_weights.numpy().mean(0))
    single = vae.importance_weighted_bound(log_weights[:1]).numpy()
    numpy.testing.assert_allclose(single, log_weights.numpy()[0])


def tiny_batch(count=3, size=4, seed=0):
    rng = numpy.random.default_rng(seed)
    return t64(rng.integers(0, 256, (count, 1, size, size)) / 255.0)


def test_whole_loss_gradcheck_float64():
    minilean.manual_seed(0)
    model = vae.VAE((1, 4, 4), arch="mlp", hidden=5, latent=2).to(dtype=numpy.float64)
    images = tiny_batch()
    eps = t64(numpy.random.default_rng(3).normal(size=(3, 2)))
    params = list(model.parameters())
    assert gradcheck(lambda *_: vae.vae_loss(model, images, 0.7, eps), params, atol=1e-5)


def test_conv_variant_shapes():
    minilean.manual_seed(0)
    model = vae.VAE((3, 16, 16), arch="conv", hidden=4, latent=2)
    mu, logvar = model.encode(minilean.rand(2, 3, 16, 16))
    assert mu.shape == logvar.shape == (2, 2, 4, 4)
    assert model.sample_prior(3).shape == (3, 3, 16, 16)


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    minilean.manual_seed(0)
    model = vae.VAE((1, 8, 8), arch="mlp", hidden=32, latent=4)
    images = minilean.tensor(numpy.random.default_rng(4).integers(0, 2, (8, 1, 8, 8)) * 1.0)
    eps = minilean.randn(8, 4)
    before = vae.vae_loss(model, images, 1.0, eps).item()
    optimizer = optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        optimizer.zero_grad()
        vae.vae_loss(model, images, 1.0).backward()
        optimizer.step()
    assert vae.vae_loss(model, images, 1.0, eps).item() < 0.8 * before


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_decoder_starts_at_the_initial_log_scale(arch):
    # with the last layer's weights zeroed the decoder outputs its bias: the log-scale half
    # must be exactly INITIAL_LOG_SCALE at every pixel, and the mean half must not be
    minilean.manual_seed(0)
    model = vae.VAE((3, 8, 8), arch, hidden=4, latent=2)
    model.decoder[-1].weight.data[...] = 0
    mean, log_scale = model.decode(minilean.randn(2, *model.latent_shape))
    assert log_scale.shape == mean.shape == (2, 3, 8, 8)
    numpy.testing.assert_array_equal(log_scale.numpy(), vae.INITIAL_LOG_SCALE)
    assert not numpy.any(mean.numpy() == vae.INITIAL_LOG_SCALE)


# --- the likelihood and the IW bound against mpmath statements of the formulas ---------------

def mp_sigmoid(u):
    """1 / (1 + e^-u) in mpmath."""
    return 1 / (1 + mpmath.exp(-u))


def mp_bin_mass(pixel, mean, log_scale):
    """sigmoid((x + h - mean)/s) - sigmoid((x - h - mean)/s), h = 0.5/255, in 60-digit mpmath;
    taken as sigmoid(-lower) - sigmoid(-upper) (the same number) right of the mean, so that
    neither form cancels catastrophically."""
    with mpmath.workdps(60):
        x, m, s = mpmath.mpf(pixel), mpmath.mpf(mean), mpmath.exp(mpmath.mpf(log_scale))
        h = mpmath.mpf(1) / 510
        upper, lower = (x + h - m) / s, (x - h - m) / s
        if lower > 0:
            return mp_sigmoid(-lower) - mp_sigmoid(-upper)
        return mp_sigmoid(upper) - mp_sigmoid(lower)


def reference_discretized_logistic(pixel, mean, log_scale):
    """log P(x) for x = k/255 under logistic(mean, s = e^log_scale), in 60-digit mpmath.

    PixelCNN++ (Salimans et al. 2017, eq. 2) on this module's bins: pixels live on [0, 1], not
    [-1, 1], so bins are 1/255 wide, k/255 +- h with h = 0.5/255, and
        k = 0:          P = sigmoid((h - mean) / s)                (all mass below 0.5/255)
        k = 255:        P = 1 - sigmoid((1 - h - mean) / s)        (all mass above 1 - 0.5/255)
        0 < k < 255:    P = sigmoid((x + h - mean) / s) - sigmoid((x - h - mean) / s).
    Interior bins with P <= 1e-5 use the module's documented stand-in, the density at the centre
    times the bin width: log P ~ log pdf(x) - log 255, pdf(x) = e^-u / (s (1 + e^-u)^2),
    u = (x - mean) / s.
    """
    with mpmath.workdps(60):
        x, m, s = mpmath.mpf(pixel), mpmath.mpf(mean), mpmath.exp(mpmath.mpf(log_scale))
        h = mpmath.mpf(1) / 510
        if pixel == 0.0:
            return float(mpmath.log(mp_sigmoid((x + h - m) / s)))
        if pixel == 1.0:
            return float(mpmath.log(mp_sigmoid(-(x - h - m) / s)))  # 1 - sigmoid(v) = sigmoid(-v)
        mass = mp_bin_mass(pixel, mean, log_scale)
        if mass > mpmath.mpf("1e-5"):
            return float(mpmath.log(mass))
        u = (x - m) / s
        return float(-u - mpmath.log(s) - 2 * mpmath.log1p(mpmath.exp(-u)) - mpmath.log(255))


def test_discretized_logistic_matches_pixelcnnpp_bins_elementwise():
    """discretized_logistic_log_likelihood == Salimans et al. 2017 eq. 2 on [0, 1] with bins
    k/255 +- 0.5/255, elementwise on random pixels, means and log-scales, including the edge
    bins k = 0 and k = 255, their neighbours 1 and 254, and means outside [0, 1]."""
    rng = numpy.random.default_rng(11)
    shape = (2, 3, 6, 6)
    levels = rng.integers(0, 256, size=shape)
    levels.reshape(-1)[:16] = [0, 0, 0, 0, 255, 255, 255, 255, 1, 1, 254, 254, 0, 255, 128, 3]
    pixels = levels / 255.0
    means = rng.uniform(-0.2, 1.2, size=shape)
    log_scales = rng.uniform(-6.0, 0.5, size=shape)
    flat = pixels.reshape(-1), means.reshape(-1), log_scales.reshape(-1)  # views of the above
    # keep interior bins clear of the 1e-5 switch between the exact mass and its stand-in
    # (where the two forms differ slightly): move such a mean onto its pixel
    masses = numpy.array([float(mp_bin_mass(*values)) for values in zip(*flat)])
    interior = (flat[0] > 0) & (flat[0] < 1)
    near_switch = interior & (masses > 0.5e-5) & (masses < 2e-5)
    flat[1][near_switch] = flat[0][near_switch]
    masses[near_switch] = 1.0
    assert numpy.any(interior & (masses <= 1e-5)) and numpy.any(interior & (masses > 1e-5))
    want = numpy.array([reference_discretized_logistic(*values) for values in zip(*flat)])
    got = vae.discretized_logistic_log_likelihood(t64(pixels), t64(means), t64(log_scales))
    numpy.testing.assert_allclose(got.numpy().reshape(-1), want, rtol=1e-9, atol=1e-9)


def test_discretized_logistic_edge_bins_take_the_tails():
    """The first bin is P = sigmoid((0.5/255 - mean)/s) (all mass below), the last
    P = 1 - sigmoid((1 - 0.5/255 - mean)/s) (all mass above), even far into the tails."""
    means = numpy.array([0.0, 0.5, 1.0, -0.3, 1.3, 0.002, 0.998])
    log_scales = numpy.array([-2.0, -4.0, -1.0, -5.0, -3.0, -6.0, -6.0])
    for pixel in (0.0, 1.0):
        pixels = numpy.full(len(means), pixel)
        want = [reference_discretized_logistic(pixel, m, ls) for m, ls in zip(means, log_scales)]
        got = vae.discretized_logistic_log_likelihood(t64(pixels), t64(means), t64(log_scales))
        numpy.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)


def test_importance_weighted_bound_is_log_mean_exp():
    """importance_weighted_bound == log (1/K) sum_k w_k (Burda et al. 2016 eq. 8) per example,
    in mpmath, including log-weights near -1000 and +700 where exp over/underflows in float64."""
    rng = numpy.random.default_rng(12)
    log_weights = rng.normal(scale=3.0, size=(5, 4))
    log_weights[:, 2] -= 1000.0
    log_weights[:, 3] += 700.0
    want = [float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(w)) for w in column) / 5))
            for column in log_weights.T]
    got = vae.importance_weighted_bound(t64(log_weights)).numpy()
    numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)
