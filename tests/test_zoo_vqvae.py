"""VQ-VAE: nearest codes by brute force, the three loss terms, the straight-through gradients
(TorchLean's ``trainingGradients``), EMA codebook and dead-code restarts, a few training steps."""
import numpy
import pytest

import minilean
from minilean import optim
from minilean.autograd.gradcheck import gradcheck
from minilean.models import vqvae


def t64(values, requires_grad=False):
    return minilean.tensor(numpy.asarray(values, numpy.float64), dtype=numpy.float64,
                           requires_grad=requires_grad)


def test_squared_l2_and_nearest_code_against_brute_force():
    rng = numpy.random.default_rng(0)
    z, book = rng.normal(size=(2, 5, 3)), rng.normal(size=(7, 3))
    numpy.testing.assert_allclose(vqvae.squared_l2(t64(z[0, 0]), t64(book[2])).item(),
                                  ((z[0, 0] - book[2]) ** 2).sum())
    expected = ((z[:, :, None, :] - book) ** 2).sum(-1).argmin(-1)
    numpy.testing.assert_array_equal(vqvae.nearest_code(t64(z), t64(book)).numpy(), expected)


def test_an_encoding_equal_to_a_code_selects_it_at_distance_zero():
    book = t64([[0.0, 0.0], [1.0, -0.5], [2.0, 2.0]])
    index = vqvae.nearest_code(t64([[1.0, -0.5]]), book).numpy()
    assert index.tolist() == [1]
    assert vqvae.squared_l2(vqvae.quantize(book, index)[0], t64([1.0, -0.5])).item() == 0.0


def test_loss_terms_and_straight_through_gradients():
    # identity encoder and decoder: TorchLean's trainingGradients with n coordinates
    x = t64([[1.0, -0.5]])
    encoded = t64([[0.8, -0.1]], requires_grad=True)
    book = t64([[0.0, 0.0], [1.0, 0.0], [3.0, 3.0]], requires_grad=True)
    beta, n = 0.25, 2
    quantized = vqvae.quantize(book, vqvae.nearest_code(encoded, book))
    reconstruction = vqvae.straight_through(encoded, quantized)
    loss = vqvae.vqvae_loss(x, reconstruction, encoded, quantized, beta)
    z, e = encoded.numpy(), numpy.array([[1.0, 0.0]])
    assert loss.reconstruction.item() == pytest.approx(((e - x.numpy()) ** 2).mean())
    assert loss.codebook.item() == pytest.approx(((e - z) ** 2).mean())
    assert loss.commitment.item() == loss.codebook.item()
    assert loss.total.item() == pytest.approx(
        loss.reconstruction.item() + loss.codebook.item() + beta * loss.commitment.item())
    loss.total.backward()
    reconstruction_grad = 2 / n * (e - x.numpy())  # d recon / d decoder input, copied onto z_e
    numpy.testing.assert_allclose(encoded.grad.numpy(),
                                  reconstruction_grad + beta * 2 / n * (z - e))
    numpy.testing.assert_allclose(book.grad.numpy()[1], (2 / n * (e - z))[0])
    assert not book.grad.numpy()[[0, 2]].any()  # codes nobody chose get nothing


def tiny_model(ema=False):
    minilean.manual_seed(0)
    return vqvae.VQVAE((1, 8, 8), codes=4, code_dim=2, hidden=2, ema=ema)


def test_whole_loss_gradcheck_float64():
    """The straight-through loss is, by design, not the derivative of its own forward value
    (the argmin and the stop-gradients). It IS the derivative of the surrogate in which the
    stopped quantities are constants; gradcheck that surrogate, and the loss's autograd
    against the surrogate's."""
    model = tiny_model().to(dtype=numpy.float64)
    images = t64(numpy.random.default_rng(1).random((2, 1, 8, 8)))
    with minilean.no_grad():
        _, frozen_encoded, frozen_quantized, indices = model(images)
    frozen_shift = frozen_quantized - frozen_encoded

    def surrogate(*_):
        encoded_now = model.encode(images)
        quantized_now = vqvae.quantize(model.codebook, indices)
        reconstruction = model.decode(encoded_now + frozen_shift)
        return vqvae.weighted_three_term(
            vqvae.F.mse_loss(reconstruction, images),
            vqvae.F.mse_loss(quantized_now, frozen_encoded),
            vqvae.F.mse_loss(encoded_now, frozen_quantized), 0.25)

    params = list(model.parameters())
    assert gradcheck(surrogate, params, atol=1e-6)
    model.zero_grad()
    reconstruction, encoded, quantized, _ = model(images)
    vqvae.vqvae_loss(images, reconstruction, encoded, quantized, 0.25).total.backward()
    engine = [p.grad.numpy().copy() for p in params]
    model.zero_grad()
    surrogate().backward()
    for got, expected in zip(engine, (p.grad.numpy() for p in params)):
        numpy.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_ema_update_moves_a_code_to_the_mean_of_its_encodings():
    model = tiny_model(ema=True)
    encoded = minilean.tensor(numpy.array([[[[1.0, 2.0], [3.0, 4.0]]]], numpy.float32))
    indices = minilean.tensor(numpy.array([[[0, 0]]]))
    model.decay = 0.0  # no memory: the code becomes exactly the mean of what chose it
    model.ema_update(encoded, indices)
    numpy.testing.assert_allclose(model.codebook.numpy()[0], [2.0, 3.0], rtol=1e-4)


def test_dead_codes_restart_on_encodings():
    model = tiny_model()
    encoded = minilean.tensor(numpy.full((1, 2, 2, 2), 5.0, numpy.float32))
    assert model.restart_dead_codes(encoded, numpy.array([3, 0, 1, 0]), threshold=1) == 2
    numpy.testing.assert_array_equal(model.codebook.numpy()[[1, 3]], 5.0)


def test_code_statistics():
    assert vqvae.code_statistics([5, 5, 0, 0]) == (0.5, pytest.approx(2.0))


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    model = tiny_model()
    images = minilean.tensor(numpy.random.default_rng(2).random((4, 1, 8, 8)).astype(numpy.float32))

    def total():
        reconstruction, encoded, quantized, _ = model(images)
        return vqvae.vqvae_loss(images, reconstruction, encoded, quantized, 0.25).total

    before = total().item()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        total().backward()
        optimizer.step()
    assert total().item() < 0.8 * before
