"""VAE: the named objects against their formulas, the likelihood's normalisation, gradients of
the whole loss in float64, and a few training steps."""
import math

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
