"""PyTorch twins of the zoo's networks for the float64 oracle tests in ``test_zoo_*.py``,
``test_classifier.py`` and ``test_diffusion_models.py``.

Each twin is written from minilean's docstrings (the stacks of ``models/autoencoder.py``, the
classifier's layers, ...), not read off minilean's layers: it has the same parameter names, so
minilean's weights copy across, and a twin that disagrees shows a wiring that is not the one
documented. Only this module and the tests that import it (after
``pytest.importorskip("torch")``) need PyTorch."""
import numpy
import torch
from torch import nn as tnn


def mlp(widths):
    """``autoencoder.mlp``: Linear layers between consecutive widths, ReLU between them."""
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        if index:
            layers.append(tnn.ReLU())
        layers.append(tnn.Linear(fan_in, fan_out))
    return tnn.Sequential(*layers)


def conv_encoder(in_channels, width, out_channels):
    """Two stride-2 4x4 convolutions (S -> S/2 -> S/4) and a 3x3 convolution to the code."""
    return tnn.Sequential(
        tnn.Conv2d(in_channels, width, 4, stride=2, padding=1), tnn.ReLU(),
        tnn.Conv2d(width, 2 * width, 4, stride=2, padding=1), tnn.ReLU(),
        tnn.Conv2d(2 * width, out_channels, 3, padding=1))


def conv_decoder(in_channels, width, out_channels):
    """A 3x3 convolution and two stride-2 4x4 transposed ones (S/4 -> S/2 -> S)."""
    return tnn.Sequential(
        tnn.Conv2d(in_channels, 2 * width, 3, padding=1), tnn.ReLU(),
        tnn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), tnn.ReLU(),
        tnn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1))


def encoder_decoder(image_shape, arch, hidden, code, code_in, outputs_per_pixel):
    """The (encoder, decoder) pair of ``autoencoder.EncoderDecoder``."""
    channels, height, width = image_shape
    if arch == "mlp":
        pixels = channels * height * width
        return (mlp([pixels, hidden, hidden, code]),
                mlp([code_in, hidden, hidden, outputs_per_pixel * pixels]))
    return (conv_encoder(channels, hidden, code),
            conv_decoder(code_in, hidden, outputs_per_pixel * channels))


def softplus(x):
    """log(1 + e^x) to the last bit: ``torch.nn.functional.softplus`` returns x itself above
    its threshold 20, off by log1p(e^-x) (2e-9 at 20), which is no float64 oracle."""
    return torch.logaddexp(x, torch.zeros_like(x))


def copied_into_torch(model, torch_model):
    """``torch_model`` in float64 holding ``model``'s parameters, matched by name; the two
    must have the same names and shapes."""
    ours, theirs = dict(model.named_parameters()), dict(torch_model.double().named_parameters())
    assert sorted(ours) == sorted(theirs)
    with torch.no_grad():
        for name, param in theirs.items():
            assert tuple(param.shape) == ours[name].shape, name
            param.copy_(torch.from_numpy(numpy.asarray(ours[name].data, numpy.float64)))
    return torch_model


def assert_close(mine, theirs, rtol=1e-10, name=""):
    """max |mine - theirs| <= rtol max |theirs|: relative to the array's scale, so an element
    that is a rounding away from 0 is not held to a relative error of its own."""
    mine, theirs = numpy.asarray(mine, numpy.float64), numpy.asarray(theirs, numpy.float64)
    assert mine.shape == theirs.shape, name
    error = numpy.max(numpy.abs(mine - theirs), initial=0.0)
    assert error <= rtol * numpy.max(numpy.abs(theirs), initial=0.0), (name, error)


def assert_same_gradients(model, torch_model, rtol=1e-10):
    """Every parameter of ``model`` has a gradient, equal to its twin's in ``torch_model``."""
    theirs = dict(torch_model.named_parameters())
    for name, param in model.named_parameters():
        assert param.grad is not None and theirs[name].grad is not None, name
        assert_close(param.grad.data, theirs[name].grad.numpy(), rtol, name)


def assert_same_loss_and_gradients(model, torch_model, loss, torch_loss, rtol=1e-10):
    """``loss()`` (a minilean scalar) and ``torch_loss()`` agree, and so do the gradients that
    one backward of each leaves in every parameter."""
    for param in model.parameters():
        param.grad = None
    torch_model.zero_grad(set_to_none=True)
    ours, theirs = loss(), torch_loss()
    ours.backward()
    theirs.backward()
    assert_close(ours.item(), theirs.item(), 1e-12, "loss")
    assert_same_gradients(model, torch_model, rtol)
