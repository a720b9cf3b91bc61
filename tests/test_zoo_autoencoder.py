"""Autoencoder: both architectures' shapes, gradients of the loss in float64, training steps."""
import numpy
import pytest

import minilean
from minilean import optim
from minilean.autograd.gradcheck import gradcheck
from minilean.models import autoencoder, vae


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


# --- the architectures against float64 NumPy forwards written from the docstrings -----------

def numpy_linear(x, layer):
    return x @ layer.weight.numpy().T + layer.bias.numpy()


def numpy_relu(x):
    return numpy.maximum(x, 0.0)


def numpy_conv2d(x, layer, stride, padding):
    """Cross-correlation of the zero-padded x:
    y[n, o, i, j] = b[o] + sum_{c, a, b} w[o, c, a, b] x_pad[n, c, s i + a, s j + b]."""
    weight = layer.weight.numpy()
    k = weight.shape[-1]
    x = numpy.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    rows, cols = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    y = numpy.empty((x.shape[0], weight.shape[0], rows, cols))
    for i in range(rows):
        for j in range(cols):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            y[:, :, i, j] = numpy.einsum("ncab,ocab->no", patch, weight)
    return y + layer.bias.numpy()[None, :, None, None]


def numpy_conv_transpose2d(x, layer, stride, padding):
    """The adjoint of a strided convolution: each input pixel adds x[n, c, i, j] w[c, o] onto the
    k x k block at (s i, s j) of the full output, whose ``padding`` border is then cut off."""
    weight = layer.weight.numpy()  # (in, out, k, k)
    k = weight.shape[-1]
    rows, cols = (x.shape[2] - 1) * stride + k, (x.shape[3] - 1) * stride + k
    y = numpy.zeros((x.shape[0], weight.shape[1], rows, cols))
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            y[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += numpy.einsum(
                "nc,coab->noab", x[:, :, i, j], weight)
    y = y[:, :, padding:rows - padding, padding:cols - padding]
    return y + layer.bias.numpy()[None, :, None, None]


def test_mlp_is_linear_relu_between_every_pair_of_linears():
    """mlp(widths): Linear-ReLU-...-Linear, a ReLU after every Linear but the last."""
    minilean.manual_seed(0)
    net = autoencoder.mlp([6, 5, 4, 3])
    assert [type(layer).__name__ for layer in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    net.to(dtype=numpy.float64)
    x = numpy.random.default_rng(2).normal(size=(7, 6))
    first, second, third = net[0], net[2], net[4]
    want = numpy_linear(numpy_relu(numpy_linear(numpy_relu(numpy_linear(x, first)), second)), third)
    got = net(minilean.tensor(x, dtype=numpy.float64)).numpy()
    numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv_autoencoder_is_the_documented_stack():
    """conv_encoder: 4x4 stride-2 conv, ReLU, 4x4 stride-2 conv, ReLU, 3x3 conv (padding 1);
    conv_decoder: 3x3 conv, ReLU, two 4x4 stride-2 transposed convs with a ReLU between; the
    Autoencoder's output is the sigmoid of the decoder's. Checked against a NumPy forward."""
    minilean.manual_seed(0)
    model = autoencoder.Autoencoder((2, 8, 8), arch="conv", hidden=3, latent=2)
    model.to(dtype=numpy.float64)
    encoder, decoder = model.encoder, model.decoder
    assert [type(layer).__name__ for layer in encoder] == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d"]
    assert [type(layer).__name__ for layer in decoder] == [
        "Conv2d", "ReLU", "ConvTranspose2d", "ReLU", "ConvTranspose2d"]
    assert [encoder[i].kernel_size for i in (0, 2, 4)] == [(4, 4), (4, 4), (3, 3)]
    assert [decoder[i].kernel_size for i in (0, 2, 4)] == [(3, 3), (4, 4), (4, 4)]
    x = numpy.random.default_rng(3).random((2, 2, 8, 8))
    code, want = numpy_conv_autoencoder(model, x)
    assert code.shape == (2, 2, 2, 2)  # latent channels at S/4
    got = model(minilean.tensor(x, dtype=numpy.float64)).numpy()
    numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def numpy_conv_autoencoder(model, x):
    """The conv Autoencoder's documented stack in float64 NumPy: (code, sigmoid(decoder))."""
    encoder, decoder = model.encoder, model.decoder
    code = numpy_relu(numpy_conv2d(x, encoder[0], 2, 1))
    code = numpy_relu(numpy_conv2d(code, encoder[2], 2, 1))
    code = numpy_conv2d(code, encoder[4], 1, 1)
    y = numpy_relu(numpy_conv2d(code, decoder[0], 1, 1))
    y = numpy_relu(numpy_conv_transpose2d(y, decoder[2], 2, 1))
    y = numpy_conv_transpose2d(y, decoder[4], 2, 1)
    return code, 1 / (1 + numpy.exp(-y))


def test_reconstruction_loss_is_the_mean_squared_error():
    """reconstruction_loss = mean over every pixel of (reconstruction - x)^2, the reconstruction
    from the NumPy forward above (the L1 error, or a sum, would differ)."""
    minilean.manual_seed(1)
    model = autoencoder.Autoencoder((2, 8, 8), arch="conv", hidden=3, latent=2)
    model.to(dtype=numpy.float64)
    x = numpy.random.default_rng(4).random((3, 2, 8, 8))
    _, reconstruction = numpy_conv_autoencoder(model, x)
    want = ((reconstruction - x) ** 2).mean()
    assert abs(want - numpy.abs(reconstruction - x).mean()) > 0.05  # L1 is told apart
    got = autoencoder.reconstruction_loss(model, minilean.tensor(x, dtype=numpy.float64)).item()
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_training_loss_and_gradients_agree_with_torch(rng, arch):
    """``reconstruction_loss``, the MSE of sigmoid(decoder(encoder(x))) against x, and every
    parameter's gradient, against PyTorch in float64 with the stacks the module docstring
    describes (on a non-square image)."""
    torch = pytest.importorskip("torch")
    from torch.nn import functional as TF
    from torch_twins import assert_same_loss_and_gradients, copied_into_torch, encoder_decoder

    image_shape = (2, 4, 8)

    class TorchAutoencoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = encoder_decoder(image_shape, arch, 5, 3, 3, 1)

        def forward(self, images):
            code = self.encoder(images.flatten(1) if arch == "mlp" else images)
            return self.decoder(code).reshape(images.shape).sigmoid()

    minilean.manual_seed(0)
    model = autoencoder.Autoencoder(image_shape, arch, hidden=5, latent=3)
    model.to(dtype=numpy.float64)
    twin = copied_into_torch(model, TorchAutoencoder())
    images = rng.uniform(0, 1, (3,) + image_shape)
    assert_same_loss_and_gradients(
        model, twin, lambda: autoencoder.reconstruction_loss(model, minilean.tensor(images)),
        lambda: TF.mse_loss(twin(torch.from_numpy(images)), torch.from_numpy(images)))



def test_mean_image_baseline_predicts_the_training_mean():
    """mean_image_mse = mean over test pixels of (x - mean training image)^2: the training set's
    mean, not the test set's (which would fit the held-out images it is scored on)."""
    train = numpy.array([[[[0.0, 1.0]]], [[[2.0, 1.0]]]])   # (2, 1, 1, 2): mean image [1, 1]
    test = numpy.array([[[[4.0, 1.0]]], [[[1.0, 3.0]]]])    # test mean would be [2.5, 2]
    want = ((4 - 1) ** 2 + (1 - 1) ** 2 + (1 - 1) ** 2 + (3 - 1) ** 2) / 4
    assert autoencoder.mean_image_mse(train, test) == want
    # a mean image whose pixels differ: the mean pixel (2.5) is not the mean image
    train = numpy.array([[[[0.0, 3.0]]], [[[2.0, 5.0]]]])   # mean image [1, 4]
    want = ((4 - 1) ** 2 + (1 - 4) ** 2 + (1 - 1) ** 2 + (3 - 4) ** 2) / 4
    assert autoencoder.mean_image_mse(train, test) == want


@pytest.mark.parametrize("make", [autoencoder.Autoencoder, vae.VAE])
def test_bad_arch_image_size_and_images_are_named(make):
    """A misspelt arch built the conv network; images of another size failed inside a
    reshape; 8-bit pixels gave a finite loss on the wrong scale."""
    with pytest.raises(ValueError, match="arch must be 'mlp' or 'conv', got 'cnn'"):
        make((3, 16, 16), arch="cnn")
    with pytest.raises(ValueError, match=r"multiples of 4, got image_shape \(3, 15, 15\)"):
        make((3, 15, 15), arch="conv")
    model = make((3, 16, 16), arch="conv")
    with pytest.raises(ValueError, match=r"images of shape \(N, 3, 16, 16\), got \(2, 3, 8, 8\)"):
        model.run_encoder(minilean.rand(2, 3, 8, 8))
    with pytest.raises(TypeError, match="float images in \\[0, 1\\], got uint8"):
        model.run_encoder(minilean.tensor(numpy.zeros((2, 3, 16, 16), numpy.uint8)))
    assert model.run_encoder(minilean.rand(2, 3, 16, 16)).shape[0] == 2
