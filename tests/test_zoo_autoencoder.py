"""Autoencoder: both architectures' shapes, gradients of the loss in float64, training steps."""
import numpy

import minilean
from minilean import optim
from minilean.autograd.gradcheck import gradcheck
from minilean.models import autoencoder


def test_shapes_of_both_architectures():
    minilean.manual_seed(0)
    images = minilean.rand(2, 3, 16, 16)
    for arch in ("mlp", "conv"):
        model = autoencoder.Autoencoder((3, 16, 16), arch=arch, hidden=4, latent=3)
        output = model(images).numpy()
        assert output.shape == (2, 3, 16, 16) and 0 <= output.min() and output.max() <= 1


def test_whole_loss_gradcheck_float64():
    minilean.manual_seed(0)
    images = minilean.tensor(numpy.random.default_rng(0).random((2, 1, 8, 8)), dtype=numpy.float64)
    for arch in ("mlp", "conv"):
        model = autoencoder.Autoencoder((1, 8, 8), arch=arch, hidden=2, latent=2)
        model.to(dtype=numpy.float64)
        assert gradcheck(lambda *_: autoencoder.reconstruction_loss(model, images),
                         list(model.parameters()))


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    minilean.manual_seed(0)
    model = autoencoder.Autoencoder((1, 8, 8), arch="mlp", hidden=32, latent=4)
    images = minilean.tensor(numpy.random.default_rng(1).random((4, 1, 8, 8)).astype(numpy.float32))
    before = autoencoder.reconstruction_loss(model, images).item()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        autoencoder.reconstruction_loss(model, images).backward()
        optimizer.step()
    assert autoencoder.reconstruction_loss(model, images).item() < 0.7 * before
