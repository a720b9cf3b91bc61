"""LSGAN: a generator G from latent noise to data, a discriminator D scoring data, trained in
alternation with least-squares objectives (Mao et al. 2017), as TorchLean's spec states them:

    discriminator_loss = mse(D(x), 1) + mse(D(G(z)), 0)      real scored 1, fake scored 0
    generator_loss     = mse(D(G(z)), 1)                      G tries to be scored as real

Both are written through the objective algebra (``weighted_three_term`` and
``weighted_two_term`` with a zero regulariser), which is exactly how TorchLean's theorems
``discriminatorLoss_eq_weightedThreeTerm`` and ``generatorLoss_eq_weightedTwoTerm`` view them.
D ends in a plain linear score (no sigmoid): the least-squares loss needs none.
"""
import math

import numpy

from minilean import nn
from minilean.autograd.creation import full
from minilean.data.streams import Purpose, stream
from minilean.models.autoencoder import mlp
from minilean.models.objectives import weighted_three_term, weighted_two_term
from minilean.nn import functional as F

REAL_TARGET = 1.0
FAKE_TARGET = 0.0
NO_REGULARIZER = 0.0  # the spec's objective terms carry a zero regulariser; any weight works


def mse_to_target(scores, target):
    """mean_i (scores_i - target)^2 for a constant target."""
    return F.mse_loss(scores, full(scores.shape, target, dtype=scores.dtype, device=scores.device))


def discriminator_loss(real_scores, fake_scores):
    """mse(D(x), 1) + mse(D(G(z)), 0): zero exactly when D scores reals 1 and fakes 0."""
    return weighted_three_term(mse_to_target(real_scores, REAL_TARGET),
                               mse_to_target(fake_scores, FAKE_TARGET), NO_REGULARIZER, 1.0)


def generator_loss(fake_scores):
    """mse(D(G(z)), 1): zero exactly when every fake is scored as real."""
    return weighted_two_term(mse_to_target(fake_scores, REAL_TARGET), NO_REGULARIZER, 1.0)


class Generator(nn.Module):
    """z (N, latent) -> data: an MLP with a tanh output for images in [-1, 1] (shape
    ``data_shape``), or a linear output for points (``bounded=False``)."""

    def __init__(self, latent, data_shape, hidden=256, bounded=True):
        super().__init__()
        self.latent, self.data_shape, self.bounded = latent, tuple(data_shape), bounded
        self.net = mlp([latent, hidden, hidden, int(numpy.prod(data_shape))])

    def forward(self, z):
        out = self.net(z).reshape((z.shape[0],) + self.data_shape)  # (N, P) -> (N, *data_shape)
        return out.tanh() if self.bounded else out


class Discriminator(nn.Module):
    """data (N, *data_shape) -> one real-valued score per example (N,): an MLP with leaky ReLU
    (whose gradient never vanishes, so G always gets a signal through D)."""

    def __init__(self, data_shape, hidden=256):
        super().__init__()
        self.data_shape, size = tuple(data_shape), int(numpy.prod(data_shape))
        self.hidden1, self.hidden2 = nn.Linear(size, hidden), nn.Linear(hidden, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, x):
        # flatten(1) takes any shape of the right size: channels-last images (N, H, W, C)
        # were scored as if they were (N, C, H, W), without an error
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"Discriminator scores data of shape (N, "
                             f"{', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        h = F.leaky_relu(self.hidden1(x.flatten(1)), 0.2)  # (N, *data_shape) -> (N, P)
        h = F.leaky_relu(self.hidden2(h), 0.2)
        return self.score(h).reshape(x.shape[0])  # (N, 1) -> (N,)


def ring8_coverage(points, modes, std):
    """Mode coverage of 2-D samples against a ring of Gaussian modes: (number of modes that have
    at least one sample within 3 std, share of samples within 3 std of their nearest mode)."""
    points = numpy.asarray(points, numpy.float64)
    distances = numpy.linalg.norm(points[:, None, :] - modes[None], axis=2)  # (n, modes)
    nearest = distances.argmin(1)
    close = distances[numpy.arange(len(points)), nearest] <= 3 * std
    return int(numpy.unique(nearest[close]).size), float(close.mean())


def independent_pixel_samples(images, count, seed, rows=None):
    """The trivial generator the GAN must beat: every pixel drawn on its own from its training
    marginal (the value of a random training image at that pixel), so each pixel's distribution
    is exact and every dependence between pixels is lost. (count, *row shape), host arrays.

    ``rows``: the indices of the training images among ``images`` (default: all of them, in
    order); only the drawn pixels are read, so a memory-mapped file is never copied whole."""
    rows = numpy.arange(len(images)) if rows is None else numpy.asarray(rows)
    shape = images.shape[1:]
    pixels = math.prod(shape)
    donors = stream(seed, Purpose.PIXEL_BASELINE).integers(0, len(rows), (count, pixels))
    # pixel k of a row is at (c, h, w) = unravel(k); (count, C * H * W) -> (count, C, H, W)
    where = numpy.unravel_index(numpy.arange(pixels), shape)
    return numpy.asarray(images[(rows[donors],) + where]).reshape((count,) + shape)
