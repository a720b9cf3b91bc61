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
    latent = minilean.randn(3, *model.latent_shape)
    samples = model.sample_prior(latent)
    assert samples.shape == (3, 3, 16, 16)
    numpy.testing.assert_array_equal(samples.numpy(),
                                     numpy.clip(model.decode(latent)[0].numpy(), 0.0, 1.0))


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


def float32_likelihood_and_gradients(pixels, means, log_scales):
    """(log P, d log P / d mean, d log P / d log-scale) per pixel, computed in float32."""
    mean = minilean.tensor(numpy.asarray(means, numpy.float32), requires_grad=True)
    log_scale = minilean.tensor(numpy.asarray(log_scales, numpy.float32), requires_grad=True)
    images = minilean.tensor(numpy.asarray(pixels, numpy.float32))
    log_p = vae.discretized_logistic_log_likelihood(images, mean, log_scale)
    log_p.sum().backward()
    return log_p.numpy(), mean.grad.numpy(), log_scale.grad.numpy()


def test_discretized_logistic_x0_bin_keeps_its_digits_in_float32():
    """The x = 0 bin, log sigmoid(U) with U = (h - mean)/s, when the mean lies well below 0 (a
    confident dark pixel): log P ~ -e^-U is small and must keep its relative digits in float32,
    as the mirrored x = 1 bin does. U - softplus(U) subtracted two numbers near U: log P was 0
    from U ~ 15 and 3% off at U ~ 12, and its gradients 19% off."""
    log_scales = numpy.float32([-5.0, -5.0, -3.0, -3.0, -3.0])
    means = numpy.float32(-numpy.array([9.0, 15.0, 9.0, 12.0, 15.0]) * numpy.exp(log_scales))
    got, grad_mean, grad_log_scale = float32_likelihood_and_gradients(
        numpy.zeros(5), means, log_scales)
    with mpmath.workdps(60):
        for value, d_mean, d_log_scale, m, ls in zip(got, grad_mean, grad_log_scale, means,
                                                     log_scales):
            s = mpmath.exp(mpmath.mpf(float(ls)))
            upper = (mpmath.mpf(1) / 510 - mpmath.mpf(float(m))) / s
            tail = mp_sigmoid(-upper)  # d log sigmoid(U) / dU
            assert value == pytest.approx(float(mpmath.log(mp_sigmoid(upper))), rel=1e-5)
            assert d_mean == pytest.approx(float(-tail / s), rel=1e-4)  # dU/dmean = -1/s
            assert d_log_scale == pytest.approx(float(-upper * tail), rel=1e-4)  # dU/dl = -U


def test_discretized_logistic_bins_right_of_the_mean_keep_their_digits_in_float32():
    """An interior bin wholly right of the mean, of mass 1.6e-5 to 2e-4 (above the 1e-5 switch):
    both sigmoids are near 1 and their difference cancels, so its mass is taken from the
    mirror's left tails, and log P and its gradients keep float32's digits, as in the bins left
    of the mean. The plain difference was 3.3e-4 off in log P and in d/d log-scale."""
    log_scales = numpy.float32([-5.0, -5.0, -5.0, -3.0, -3.0])
    k = numpy.array([8.0, 10.0, 10.5, 6.0, 8.0])  # the mean k scales below the pixel
    pixels = numpy.full(5, numpy.float32(100 / 255))
    means = numpy.float32(pixels - k * numpy.exp(log_scales))
    got, grad_mean, grad_log_scale = float32_likelihood_and_gradients(pixels, means, log_scales)
    with mpmath.workdps(60):
        for value, d_mean, d_log_scale, x, m, ls in zip(got, grad_mean, grad_log_scale, pixels,
                                                        means, log_scales):
            x, m, ls = (mpmath.mpf(float(v)) for v in (x, m, ls))
            s, h = mpmath.exp(ls), mpmath.mpf(1) / 510
            upper, lower = (x + h - m) / s, (x - h - m) / s
            mass = mp_bin_mass(x, m, ls)
            assert mpmath.mpf("1.5e-5") < mass < mpmath.mpf("2e-4")  # the exact branch
            slope_upper, slope_lower = (mp_sigmoid(u) * mp_sigmoid(-u) for u in (upper, lower))
            assert value == pytest.approx(float(mpmath.log(mass)), rel=1e-6)
            # dU/dmean = dL/dmean = -1/s;  dU/dl = -U, dL/dl = -L
            assert d_mean == pytest.approx(float(-(slope_upper - slope_lower) / s / mass),
                                           rel=1e-5)
            assert d_log_scale == pytest.approx(
                float(-(upper * slope_upper - lower * slope_lower) / mass), rel=1e-5)


def test_importance_weighted_bound_is_log_mean_exp():
    """importance_weighted_bound == log (1/K) sum_k w_k (Burda et al. 2016 eq. 8) per example,
    in mpmath, including log-weights near -1000 and +700 where exp over/underflows in float64."""
    rng = numpy.random.default_rng(12)
    log_weights = rng.normal(scale=3.0, size=(5, 4))
    log_weights[:, 2] -= 1000.0
    log_weights[:, 3] += 700.0
    with mpmath.workdps(30):  # 30 digits whatever precision the process was left at
        want = [float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(w)) for w in column) / 5))
                for column in log_weights.T]
    got = vae.importance_weighted_bound(t64(log_weights)).numpy()
    numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


# --- the decoder's log-scale floor ----------------------------------------------------------

@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_decoder_log_scale_is_floored_at_min_log_scale(arch):
    """log_scale = max(decoder output, MIN_LOG_SCALE): a log-scale bias of -20 comes out as the
    floor -7 at every pixel, one of -5 (above the floor) as itself; the mean half is untouched."""
    minilean.manual_seed(0)
    model = vae.VAE((2, 8, 8), arch, hidden=4, latent=2)
    model.decoder[-1].weight.data[...] = 0
    bias = model.decoder[-1].bias.data.reshape(2, -1)  # row 0 the means, row 1 the log-scales
    bias[0], bias[1] = 0.25, -20.0
    latent = minilean.randn(2, *model.latent_shape)
    mean, log_scale = model.decode(latent)
    assert vae.MIN_LOG_SCALE == -7.0
    numpy.testing.assert_array_equal(log_scale.numpy(), -7.0)
    numpy.testing.assert_array_equal(mean.numpy(), 0.25)
    bias[1] = -5.0
    numpy.testing.assert_array_equal(model.decode(latent)[1].numpy(), -5.0)


# --- the held-out bounds against float64 formulas -------------------------------------------

def fixed_noise(draws):
    """evaluate_bounds' ``draw_normal`` handing out ``draws`` (NumPy arrays, each kept in its
    dtype): draw k's eps is draws[k]."""
    def draw_normal(shape, draw):
        assert shape == draws[draw].shape
        return minilean.tensor(draws[draw], dtype=draws[draw].dtype)
    return draw_normal


def reference_log_weight(model, images, mu, logvar, eps):
    """log w = log p(x|z) + log N(z; 0, I) - log N(z; mu, diag e^logvar) per image, at
    z = mu + e^(logvar/2) eps, with both Gaussians written out in terms of z and
    p(x|z) from the mpmath discretised logistic above (float64 numpy in, numpy out)."""
    sigma = numpy.exp(logvar / 2)
    z = mu + sigma * eps
    mean, log_scale = (part.numpy() for part in model.decode(t64(z)))
    pixels = images.numpy()
    log_likelihood = numpy.array([
        sum(reference_discretized_logistic(*values)
            for values in zip(pixels[n].ravel(), mean[n].ravel(), log_scale[n].ravel()))
        for n in range(len(pixels))])
    log_prior = (-0.5 * (math.log(2 * math.pi) + z ** 2)).sum(1)
    log_posterior = (-0.5 * math.log(2 * math.pi) - numpy.log(sigma)
                     - 0.5 * ((z - mu) / sigma) ** 2).sum(1)
    return log_likelihood, log_likelihood + log_prior - log_posterior


def small_vae(seed=0):
    minilean.manual_seed(seed)
    return vae.VAE((1, 4, 4), arch="mlp", hidden=5, latent=3).to(dtype=numpy.float64)


def test_one_sample_bounds_match_their_float64_formulas():
    """With one draw eps: -ELBO = mean_n [-log p(x|z) + KL(q || N(0, I))] (closed-form KL) and
    the IW bound is the single log weight, -mean_n [log p(x|z) + log p(z) - log q(z|x)]; the
    -ELBO is also vae_loss's with that eps."""
    model, images = small_vae(), tiny_batch()
    eps = numpy.random.default_rng(5).normal(size=(3, 3))
    mu, logvar = (part.numpy() for part in model.encode(images))
    log_likelihood, log_weight = reference_log_weight(model, images, mu, logvar, eps)
    kl = (0.5 * (mu ** 2 + numpy.exp(logvar) - 1 - logvar)).sum(1)
    negative_elbo, negative_iw = vae.evaluate_bounds(model, images, 1, fixed_noise([eps]))
    assert negative_elbo == pytest.approx((kl - log_likelihood).mean(), rel=1e-9)
    assert negative_iw == pytest.approx(-log_weight.mean(), rel=1e-9)
    assert negative_elbo == pytest.approx(vae.vae_loss(model, images, 1.0, t64(eps)).item(),
                                          rel=1e-12)


@pytest.mark.parametrize("samples", [0, -1, 2.0])
def test_bounds_from_no_samples_are_refused_before_encoding(samples):
    """samples=0 encoded the images, then failed in ``stack`` ("at least one tensor")."""
    model = small_vae()
    with pytest.raises(ValueError, match=rf"^evaluate_bounds needs samples >= 1 \(draws of z "
                                         rf"per image\), got {samples}$"):
        vae.evaluate_bounds(model, tiny_batch(), samples)


def test_vae_loss_weighs_the_kl_by_beta():
    """vae_loss(beta) = mean_n -log p(x|z) + beta mean_n KL(q || N(0, I)), both terms from the
    float64/mpmath references: at beta = 0.7 and 0 it is not the beta = 1 loss."""
    model, images = small_vae(2), tiny_batch(seed=2)
    eps = numpy.random.default_rng(9).normal(size=(3, 3))
    mu, logvar = (part.numpy() for part in model.encode(images))
    log_likelihood, _ = reference_log_weight(model, images, mu, logvar, eps)
    kl = (0.5 * (mu ** 2 + numpy.exp(logvar) - 1 - logvar)).sum(1)
    assert kl.mean() > 0.01  # a KL term that beta visibly scales
    for beta in (0.7, 0.0, 1.0):
        want = -log_likelihood.mean() + beta * kl.mean()
        assert vae.vae_loss(model, images, beta, t64(eps)).item() == pytest.approx(want, rel=1e-9)


def test_k_sample_iw_bound_is_the_log_mean_of_the_reference_weights():
    """-IW_K = -mean_n log (1/K) sum_k w_k over K draws, each weight as in the formula; the
    -ELBO still uses the first draw."""
    model, images = small_vae(1), tiny_batch(seed=1)
    draws = numpy.random.default_rng(6).normal(size=(4, 3, 3))
    mu, logvar = (part.numpy() for part in model.encode(images))
    log_weights = numpy.array([reference_log_weight(model, images, mu, logvar, eps)[1]
                               for eps in draws])  # (K, N)
    with mpmath.workdps(30):  # 30 digits whatever precision the process was left at
        want = -numpy.mean([float(mpmath.log(mpmath.fsum(mpmath.exp(w) for w in column) / 4))
                            for column in log_weights.T])
    negative_elbo, negative_iw = vae.evaluate_bounds(model, images, 4, fixed_noise(draws))
    assert negative_iw == pytest.approx(want, rel=1e-9)
    assert negative_elbo == pytest.approx(vae.vae_loss(model, images, 1.0, t64(draws[0])).item(),
                                          rel=1e-12)


@pytest.mark.parametrize("arch, side", [("mlp", 4), ("conv", 8)])
def test_held_out_elbo_is_vae_loss_and_iw_bound_is_tighter_at_64_samples(arch, side):
    """The held-out -ELBO is the training loss at beta = 1 (float32, same eps), and the 64-draw
    IW bound lies below it (Burda et al.: log p(x) >= IW_K >= ELBO in expectation; 0.5 nats of
    slack for the single-draw ELBO estimate). The conv VAE's latent is a (C, h, w) grid, whose
    KL the loss must sum over all of it (a KL over its last axis alone passed every check)."""
    minilean.manual_seed(0)
    model = vae.VAE((1, side, side), arch=arch, hidden=5, latent=3)
    assert arch == "mlp" or model.latent_shape[1:] == (2, 2)
    images = minilean.tensor((numpy.random.default_rng(7).integers(0, 256, (8, 1, side, side))
                              / 255.0).astype(numpy.float32))
    rng = numpy.random.default_rng(8)
    draws = [rng.normal(size=(8, *model.latent_shape)).astype(numpy.float32) for _ in range(64)]
    negative_elbo, negative_iw = vae.evaluate_bounds(model, images, 64, fixed_noise(draws))
    loss = vae.vae_loss(model, images, 1.0, minilean.tensor(draws[0])).item()
    assert negative_elbo == pytest.approx(loss, rel=1e-5)
    assert negative_iw <= negative_elbo + 0.5



def torch_pixelcnnpp_log_likelihood(torch, images, mean, log_scale):
    """log P(x) per pixel as PixelCNN++'s ``discretized_mix_logistic_loss`` writes it for one
    component (x in [0, 1] here: half-bin 0.5 / 255, interior fallback log pdf - log 255),
    with an exact softplus."""
    from torch_twins import softplus

    centred, inverse_scale = images - mean, torch.exp(-log_scale)
    plus, minus = inverse_scale * (centred + 0.5 / 255), inverse_scale * (centred - 0.5 / 255)
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    middle = inverse_scale * centred
    log_pdf_middle = middle - log_scale - 2 * softplus(middle)
    interior = torch.where(cdf_delta > 1e-5, torch.log(torch.clamp(cdf_delta, min=1e-12)),
                           log_pdf_middle - math.log(255))
    return torch.where(images < 0.5 / 255, plus - softplus(plus),
                       torch.where(images > 1 - 0.5 / 255, -softplus(minus), interior))


def torch_vae(torch, image_shape, arch, hidden, latent):
    """The VAE of the class docstring in PyTorch: the encoder to (mu, logvar) halves, the
    decoder to a mean and a log-scale (floored at MIN_LOG_SCALE) per pixel."""
    from torch_twins import encoder_decoder

    class TorchVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = encoder_decoder(image_shape, arch, hidden, 2 * latent,
                                                         latent, 2)

        def encode(self, images):
            return self.encoder(images.flatten(1) if arch == "mlp" else images).chunk(2, 1)

        def decode(self, z):
            outputs = self.decoder(z).reshape((z.shape[0], 2) + image_shape)
            return outputs[:, 0], outputs[:, 1].clamp(min=vae.MIN_LOG_SCALE)

        def log_likelihood(self, images, z):
            mean, log_scale = self.decode(z)
            return torch_pixelcnnpp_log_likelihood(torch, images, mean, log_scale).flatten(1).sum(1)

    return TorchVAE()


@pytest.mark.parametrize("arch, beta", [("mlp", 1.0), ("conv", 1.0), ("conv", 0.3)])
def test_training_loss_bounds_and_gradients_agree_with_torch(rng, arch, beta):
    """The training loss -log p(x|z) + beta KL (nats per image, batch mean, one given draw of
    eps), its gradient in every parameter, and the held-out -ELBO and 3-draw IW bound, against
    PyTorch in float64: the network written from the docstrings, PixelCNN++'s likelihood, and
    torch.distributions' KL and log-densities for the bounds. Pixels 0 and 255 are in the
    batch (the edge bins) and the log-scales lie around the floor, some clamped."""
    torch = pytest.importorskip("torch")
    from torch_twins import assert_close, assert_same_loss_and_gradients, copied_into_torch

    image_shape = (2, 8, 4)
    minilean.manual_seed(1)
    model = vae.VAE(image_shape, arch, hidden=5, latent=3).to(dtype="float64")
    model.decoder[-1].bias.data.reshape(2, -1)[1] = vae.MIN_LOG_SCALE + 0.5
    twin = copied_into_torch(model, torch_vae(torch, image_shape, arch, 5, 3))
    levels = rng.integers(0, 256, (3,) + image_shape)
    levels[0, 0, :2], levels[1, 1, :2] = 0, 255
    images = levels / 255.0
    eps = [rng.standard_normal((3,) + model.latent_shape) for _ in range(3)]
    t_images = torch.from_numpy(images)

    def torch_loss():
        mu, logvar = twin.encode(t_images)
        z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps[0])
        kl = (0.5 * (mu * mu + logvar.exp() - 1 - logvar)).flatten(1).sum(1).mean()
        return -twin.log_likelihood(t_images, z).mean() + beta * kl

    assert_same_loss_and_gradients(
        model, twin, lambda: vae.vae_loss(model, t64(images), beta, t64(eps[0])), torch_loss)

    negative_elbo, negative_iw = vae.evaluate_bounds(model, t64(images), 3,
                                                     lambda shape, draw: t64(eps[draw]))
    with torch.no_grad():
        mu, logvar = twin.encode(t_images)
        posterior, prior = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), \
            torch.distributions.Normal(0.0, 1.0)
        kl = torch.distributions.kl_divergence(posterior, prior).flatten(1).sum(1)
        log_weights = []
        for draw in eps:
            z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(draw)
            log_likelihood = twin.log_likelihood(t_images, z)
            log_weights.append(log_likelihood + prior.log_prob(z).flatten(1).sum(1)
                               - posterior.log_prob(z).flatten(1).sum(1))
        first_log_likelihood = twin.log_likelihood(
            t_images, mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps[0]))
    assert_close(negative_elbo, (kl - first_log_likelihood).mean().item(), 1e-12)
    assert_close(negative_iw, -(torch.logsumexp(torch.stack(log_weights), 0)
                                - math.log(3)).mean().item(), 1e-12)


# --- the independent-pixel baseline ---------------------------------------------------------

def test_pixel_levels_round_floats_to_the_nearest_of_256():
    """Floats in [0, 1] become round(255 x) (clipped first); uint8 rows are kept as they are."""
    numpy.testing.assert_array_equal(vae.as_pixel_levels([[0.999, 0.5]]), [[255, 128]])
    numpy.testing.assert_array_equal(vae.as_pixel_levels([[-0.1, 1.2, 0.31]]), [[0, 255, 79]])
    levels = numpy.arange(256)
    for dtype in (numpy.float32, numpy.float64):  # k/255 may land a hair below k after * 255
        numpy.testing.assert_array_equal(vae.as_pixel_levels((levels / 255.0).astype(dtype)),
                                         levels)
    raw = numpy.array([[3, 250]], numpy.uint8)
    assert vae.as_pixel_levels(raw) is raw


def test_independent_pixel_nats_is_add_one_smoothed_counts():
    """p(level) = (1 + count in training) / (256 + training images), per pixel; the result is
    -sum_pixels log p averaged over test images."""
    one_pixel = vae.independent_pixel_nats(numpy.array([[0], [0], [255]], numpy.uint8),
                                           numpy.array([[0]], numpy.uint8))
    assert one_pixel == pytest.approx(-math.log(3 / 259), rel=1e-12)
    train = numpy.array([[0, 10], [0, 10], [255, 10]], numpy.uint8)
    test = numpy.array([[0, 10], [255, 3]], numpy.uint8)
    first = -math.log(3 / 259) - math.log(4 / 259)   # pixel 0 at 0 (2 + 1), pixel 1 at 10 (3 + 1)
    second = -math.log(2 / 259) - math.log(1 / 259)  # pixel 0 at 255 (1 + 1), pixel 1 at 3 (0 + 1)
    assert vae.independent_pixel_nats(train, test) == pytest.approx((first + second) / 2, rel=1e-12)
    # the same images as floats k/255, with a channel axis: the same nats
    assert vae.independent_pixel_nats(train[:, None] / 255.0, test[:, None] / 255.0) == (
        pytest.approx((first + second) / 2, rel=1e-12))


def test_independent_pixel_nats_counts_every_row_of_every_chunk():
    """Counted 256 rows at a time and chunk by chunk: 600 rows (three blocks, the last one
    short), whole or in uneven chunks, give the counts of a plain loop over every row."""
    rng = numpy.random.default_rng(0)
    train = rng.integers(0, 256, (600, 1, 2, 1), numpy.uint8)
    test = rng.integers(0, 256, (5, 1, 2, 1), numpy.uint8)
    counts = numpy.ones((2, 256))
    for row in train.reshape(600, 2):
        counts[[0, 1], row] += 1
    expected = -numpy.log(counts / (256 + 600))[[0, 1], test.reshape(5, 2)].sum(1).mean()
    assert vae.independent_pixel_nats(train, test) == pytest.approx(expected, rel=1e-12)
    chunks = iter([train[:300], train[300:301], train[301:]])
    assert vae.independent_pixel_nats(chunks, test) == pytest.approx(expected, rel=1e-12)


def test_log_prior_and_log_posterior_are_normalised_densities():
    """exp(log_standard_normal) integrates to 1 over z, and exp(log_posterior(eps, logvar))
    to 1 over z = mu + sigma eps (dz = sigma d eps). In the IW bound their log 2 pi terms
    cancel, so only a check on their own sees a wrong constant."""
    grid = numpy.linspace(-12.0, 12.0, 4801)
    step = grid[1] - grid[0]
    column = t64(grid[:, None])  # 4801 examples of one coordinate
    prior = numpy.exp(vae.log_standard_normal(column).numpy())
    assert prior.sum() * step == pytest.approx(1.0, rel=1e-9)
    logvar = 0.6
    posterior = numpy.exp(vae.log_posterior(column, t64(numpy.full((4801, 1), logvar))).numpy())
    assert posterior.sum() * step * numpy.exp(logvar / 2) == pytest.approx(1.0, rel=1e-9)


def test_independent_pixel_nats_average_over_test_images_not_pixels():
    """Three test images of two pixels: the nats are summed over pixels, averaged over images."""
    train = numpy.array([[0, 10], [0, 10], [255, 10]], numpy.uint8)
    test = numpy.array([[0, 10], [255, 3], [0, 3]], numpy.uint8)
    p_pixel0, p_pixel1 = {0: 3 / 259, 255: 2 / 259}, {10: 4 / 259, 3: 1 / 259}
    want = numpy.mean([-math.log(p_pixel0[a]) - math.log(p_pixel1[b]) for a, b in test])
    assert vae.independent_pixel_nats(train, test) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("mean_bias, level", [(5.0, 1.0), (-5.0, 0.0)])
def test_prior_samples_are_clipped_to_the_unit_interval(mean_bias, level):
    """Decoder means far outside [0, 1] (the output bias of the means' row set to +-5, weights
    zeroed) give images at the nearest end of the pixel range."""
    model = vae.VAE((1, 4, 4), arch="mlp", hidden=5, latent=3)
    last = model.decoder[-1]
    last.weight.data[...] = 0.0
    last.bias.data.reshape(2, -1)[0] = mean_bias  # row 0: the means, row 1: the log-scales
    samples = model.sample_prior(minilean.randn(2, 3))
    assert samples.shape == (2, 1, 4, 4) and (samples.numpy() == level).all()


@pytest.mark.parametrize("arch, latent", [("conv", (5, 2, 4, 2)), ("conv", (5, 2, 1, 8)),
                                          ("conv", (5, 2, 8)), ("mlp", (5, 2, 1))])
def test_a_latent_of_another_shape_is_refused(arch, latent):
    """The decoder's output was reshaped to the image by its element count alone: a conv
    VAE's prior draw with h and w swapped decoded to an image, without an error."""
    model = vae.VAE((3, 8, 16), arch=arch, hidden=4, latent=2)
    expected = ", ".join(map(str, model.latent_shape))
    with pytest.raises(ValueError, match=rf"^VAE decodes latents of shape \(N, {expected}\), "
                                         rf"got \({', '.join(map(str, latent))}\)$"):
        model.sample_prior(minilean.randn(*latent))
    assert model.sample_prior(minilean.randn(5, *model.latent_shape)).shape == (5, 3, 8, 16)


def test_each_training_step_draws_its_own_eps_from_the_runs_stream(tmp_path, monkeypatch):
    """Step k reparameterises with the run's (seed, TRAINING_STEP, k) draw: fresh every step
    (one eps reused by every step would train on a single point of each q(z|x)), and the same
    after --resume."""
    from minilean.cli import main
    from minilean.data.streams import Purpose, stream
    from minilean.train import vae as vae_command
    drawn, loss = [], vae_command.vae_loss
    monkeypatch.setattr(vae_command, "vae_loss", lambda model, images, beta, eps: drawn.append(
        eps.numpy().copy()) or loss(model, images, beta, eps))
    main(["vae", "--arch=mlp", "--hidden=4", "--latent=2", "--n-total=20", "--batch-size=4",
          "--n-eval=2", "--iw-samples=1", "--steps=3", "--seed=5", "--progress=false",
          f"--out={tmp_path}"])
    assert len(drawn) == 3 and drawn[0].shape == (4, 2)
    for step, eps in enumerate(drawn, 1):
        expected = stream(5, Purpose.TRAINING_STEP, step).standard_normal(eps.shape)
        numpy.testing.assert_array_equal(eps, expected.astype(numpy.float32))
