"""VQ-VAE: an encoder to continuous vectors z_e, a learned codebook e_1..e_K, nearest-code
quantisation, a straight-through gradient, and a decoder.

The named functions are the objects of TorchLean's VQ-VAE spec (``proofs/`` checks them):

    squared_l2(x, y)          = sum_k (x_k - y_k)^2                 (over the last axis)
    nearest_code(z, codebook) = argmin_j squared_l2(z, e_j)          (first index on ties)
    quantize(codebook, idx)   = e_idx                                 (a codebook lookup)
    vqvae_loss                = reconstruction + codebook + beta * commitment
        reconstruction = mse(decoder(straight_through(z_e, e_idx)), x)
        codebook       = mse(e_idx, stop_grad(z_e))     moves the codes toward the encodings
        commitment     = mse(z_e, stop_grad(e_idx))     keeps the encoder near its codes

The argmin has no gradient, so the decoder's gradient is copied onto z_e unchanged
(``straight_through``): forward value e_idx, backward identity. With ``--ema-codebook`` the
codebook is not trained by the codebook term but set to exponential moving averages of the
encodings assigned to each code (van den Oord et al. 2017, appendix). In both modes, codes no
encoding chose for a while (``--restart-every`` steps) are restarted at random encodings of
the current batch.
"""
from collections import namedtuple

import numpy

from minilean import backend, nn
from minilean.autograd import writes
from minilean.autograd.creation import ones, zeros
from minilean.autograd.grad_mode import no_grad
from minilean.autograd.shape import cat
from minilean.autograd.tensor import Tensor
from minilean.models.autoencoder import (check_image_batch, check_quarterable, conv_decoder,
                                         conv_encoder)
from minilean.models.objectives import weighted_three_term
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.module import check_sizes
from minilean.optim.ema import EMA

VQVAELoss = namedtuple("VQVAELoss", "total reconstruction codebook commitment")


def squared_l2(x, y):
    """sum_k (x_k - y_k)^2 over the last axis, broadcasting the others (>= 0, = 0 iff x = y)."""
    difference = x - y
    return (difference * difference).sum(-1)


DISTANCE_ELEMENTS = 1 << 22  # differences nearest_code holds at once (16 MiB in float32)


def nearest_code(z, codebook):
    """The index of the code nearest to each vector of z in squared L2.

    z: (..., D), codebook: (K, D) -> int64 indices (...). Distances are computed with
    ``squared_l2`` itself (not the expanded |z|^2 - 2 z.e + |e|^2, which can round a distance
    below zero), so the returned code satisfies TorchLean's ``IsNearestCode`` exactly as computed.

    NaN is not looked for (that would copy the distances back from a GPU every step): NumPy's
    argmin takes the first NaN as the least, so an encoding with a NaN gets code 0 and a code
    with a NaN is nearest to every encoding. The loss is NaN then, which training's NaN guard
    reports.
    """
    # a (K, 1) codebook broadcast against (..., 5) encodings without a word, and another
    # width failed in ``sub`` naming neither the codebook nor the encodings
    if codebook.ndim != 2 or codebook.shape[1] != z.shape[-1]:
        raise ValueError(f"nearest_code needs a codebook (K, {z.shape[-1]}) for encodings of "
                         f"shape {tuple(z.shape)}, got codebook shape {tuple(codebook.shape)}")
    codes, dim = codebook.shape
    with no_grad():
        vectors = z.detach().reshape(-1, dim)  # (..., D) -> (M, D)
        # the differences are (rows, K, D) at once: a few rows a pass, as in ``code_counts``
        # (all M at once: about 8 GiB to evaluate 500 64x64 images with --codes 512)
        rows = max(1, DISTANCE_ELEMENTS // (codes * dim))
        # vectors (rows, D) -> (rows, 1, D) broadcast against codebook (K, D) -> (rows, K)
        nearest = [squared_l2(vectors[start:start + rows].unsqueeze(-2),
                              codebook.detach()).argmin(-1)
                   for start in range(0, max(vectors.shape[0], 1), rows)]
        return (nearest[0] if len(nearest) == 1 else cat(nearest)).reshape(z.shape[:-1])


def code_one_hot(indices, codes, dtype):
    """Integer ``indices`` (...) -> (..., K): row i is 1 at code indices[i] and 0 elsewhere, in
    ``dtype``, on the indices' device. Compared against the code numbers, not picked from
    ``eye(K)``: that identity takes K * K elements whatever the indices (1 GiB at --codes
    16384, 16 GiB at 65536) for rows of K each."""
    xp = backend.array_module(indices)
    # (...) -> (..., 1) == (K,) -> (..., K)
    return (indices[..., None] == xp.arange(codes)).astype(dtype)


def quantize(codebook, indices):
    """e_idx: the codebook rows named by ``indices`` (...) -> (..., D); differentiable in the
    codebook (each chosen row gets the gradients of the places that chose it, summed).

    Computed as the product one_hot(idx) @ e, not as a lookup. Each row of the product is
    1 * e_idx plus zeros: the lookup exactly, while the codes are finite (an infinite entry
    would make 0 * inf = nan in the rows of the other codes). The codebook's gradient is the
    product one_hot^T @ dL/de_idx, which a GPU sums in a fixed order. A lookup's gradient adds
    each row's gradient into its code with ``add.at``, which CuPy does with atomic additions in
    no fixed order, so two runs of one command on a card did not end alike.
    """
    indices = indices.data if isinstance(indices, Tensor) else indices
    codes, dim = codebook.shape
    F.check_indices(indices, codes, "quantize")
    # (N, ...) -> (M, K) @ (K, D) -> (M, D) -> (N, ..., D)
    one_hot = Tensor(code_one_hot(indices.reshape(-1), codes, codebook.dtype),
                     device=codebook.device)
    return (one_hot @ codebook).reshape(indices.shape + (dim,))


def straight_through(encoded, quantized):
    """Forward value ``quantized``, gradient passed to ``encoded`` unchanged:
    z_e + stop_grad(e_idx - z_e)."""
    return encoded + (quantized - encoded).detach()


def vqvae_loss(target, reconstruction, encoded, quantized, beta):
    """The three VQ-VAE terms and their total = reconstruction + codebook + beta * commitment.

    ``quantized`` is e_idx before the straight-through trick; ``reconstruction`` is the decoder
    output on ``straight_through(encoded, quantized)``. Each term is a mean squared error.
    """
    reconstruction_term = F.mse_loss(reconstruction, target)
    codebook_term = F.mse_loss(quantized, encoded.detach())
    commitment_term = F.mse_loss(encoded, quantized.detach())
    total = weighted_three_term(reconstruction_term, codebook_term, commitment_term, beta)
    return VQVAELoss(total, reconstruction_term, codebook_term, commitment_term)


class VQVAE(nn.Module):
    """conv_encoder -> z_e (N, D, S/4, S/4) -> nearest codes -> e_idx -> conv_decoder -> sigmoid.

    The codebook (K, D) is a Parameter trained by the codebook term, or with ``ema=True`` a
    buffer set by ``ema_update`` (then the codebook term is still reported but moves nothing).
    """

    def __init__(self, image_shape, codes=64, code_dim=16, hidden=32, ema=False, decay=0.99):
        super().__init__()
        channels = image_shape[0]
        check_quarterable("VQVAE", image_shape)
        check_sizes(codes=codes, code_dim=code_dim, hidden=hidden)  # codes=0 divided by zero
        if ema:  # optim.EMA's rule: outside [0, 1] d or 1 - d is negative, no average at all
            EMA.checked_decay(decay)
        self.image_shape, self.ema, self.decay = tuple(image_shape), ema, decay
        self.encoder = conv_encoder(channels, hidden, code_dim)
        self.decoder = conv_decoder(code_dim, hidden, channels)
        codebook = init.uniform_(zeros(codes, code_dim), -1.0 / codes, 1.0 / codes)
        if ema:
            self.register_buffer("codebook", codebook)
            # start as if each code had been chosen once, by an encoding equal to itself, so
            # that an unused code keeps its value (``ema_update`` says for how long) rather
            # than becoming 0 / (smoothed 0) = 0 at the first update
            self.register_buffer("cluster_size", ones(codes))
            self.register_buffer("cluster_sum", codebook.clone())
        else:
            self.codebook = nn.Parameter(codebook)
        # uses of each code since the last restart of dead codes: a buffer, so that a checkpoint
        # keeps it and a resumed run restarts the codes an uninterrupted one would
        self.register_buffer("code_usage", zeros(codes))

    def encode(self, images):
        """z_e as vectors: (N, D, h, w) -> (N, h, w, D)."""
        return self.encoder(images).permute(0, 2, 3, 1)

    def decode(self, vectors):
        """(N, h, w, D) -> (N, D, h, w) -> images in [0, 1]."""
        return self.decoder(vectors.permute(0, 3, 1, 2)).sigmoid()

    def forward(self, images):
        """(reconstruction, encoded z_e, quantized e_idx, indices (N, h, w))."""
        check_image_batch(self, images)
        encoded = self.encode(images)
        indices = nearest_code(encoded, self.codebook)
        quantized = quantize(self.codebook, indices)
        return self.decode(straight_through(encoded, quantized)), encoded, quantized, indices

    def ema_update(self, encoded, indices):
        """Move each code to the running mean of the encodings assigned to it:
        n_k <- d n_k + (1 - d) count_k,  s_k <- d s_k + (1 - d) sum of z_e assigned to k,
        e_k = s_k / n_k (Laplace-smoothed so an empty code never divides by zero). A code
        nobody chooses keeps its value while n_k = d^t stays well above the smoothing's 1e-5
        (n_k and s_k decay alike; their ratio stays), then shrinks toward 0: at d = 0.99 to
        0.81 of its norm after 1000 updates and ~0 after 2000. Training's restarts
        (--restart-every) put an unused code on an encoding long before."""
        if not self.ema:  # no cluster_size or cluster_sum to update
            raise ValueError("ema_update needs a VQVAE built with ema=True; this one's codebook "
                             "is a Parameter trained by the codebook term")
        codes = self.codebook.shape[0]
        vectors = encoded.data.reshape(-1, encoded.shape[-1])  # (N, h, w, D) -> (N h w, D)
        one_hot = code_one_hot(indices.data.reshape(-1), codes, vectors.dtype)  # (N h w, K)
        decay = self.decay
        self.cluster_size.data[...] = decay * self.cluster_size.data + (1 - decay) * one_hot.sum(0)
        # (K, N h w) @ (N h w, D) -> (K, D): the sum of the encodings assigned to each code
        assigned_sum = one_hot.T @ vectors
        self.cluster_sum.data[...] = decay * self.cluster_sum.data + (1 - decay) * assigned_sum
        total = self.cluster_size.data.sum()
        smoothed = (self.cluster_size.data + 1e-5) / (total + codes * 1e-5) * total
        self.codebook.data[...] = self.cluster_sum.data / smoothed[:, None]
        writes.wrote([self.codebook])

    def restart_dead_codes(self, encoded, usage, threshold, generator=None):
        """Put every code used fewer than ``threshold`` times (``usage``: (K,) counts since the
        last restart, on any device) onto a random encoding of the current batch, picked by
        ``generator`` (a NumPy Generator; training passes its step's stream; by default the
        seeded CPU generator); returns how many. Reading ``usage`` is a copy to the host, so
        training calls this only every few steps."""
        codes = self.codebook.shape[0]
        if numpy.shape(usage) != (codes,):  # a shorter one restarted codes by the wrong numbers
            raise ValueError(f"restart_dead_codes needs usage of shape ({codes},), one count per "
                             f"code, got shape {numpy.shape(usage)}")
        dead = numpy.flatnonzero(backend.to_device(usage, "cpu") < threshold)
        if dead.size == 0:
            return 0
        vectors = encoded.data.reshape(-1, encoded.shape[-1])  # (N, h, w, D) -> (N h w, D)
        picks = (generator or backend.generator("cpu")).integers(0, vectors.shape[0], dead.size)
        xp = self.codebook.xp
        dead_on_device, picks = xp.asarray(dead), xp.asarray(picks)
        self.codebook.data[dead_on_device] = vectors[picks]
        writes.wrote([self.codebook])
        if self.ema:
            self.cluster_size.data[dead_on_device] = 1.0
            self.cluster_sum.data[dead_on_device] = vectors[picks]
        return int(dead.size)


# comparisons of code_counts per pass: its (rows, K) booleans stay at most 4 MB however many
# indices it counts (a training batch takes one pass; a large held-out set several)
COUNT_COMPARISONS = 1 << 22


def code_counts(indices, codes):
    """How often each of the ``codes`` codes occurs in ``indices`` (any shape): a (K,) int64
    array on their device. Not ``bincount``: CuPy's reads the largest index back to the host to
    size its output, a copy that would make every training step wait for the GPU.

    Indices outside [0, K) are refused on the host (``check_indices``); on a GPU they are not
    read back, for the same reason, and would go uncounted."""
    F.check_indices(indices, codes, "code_counts")
    xp = backend.array_module(indices)
    every_code, flat = xp.arange(codes), indices.reshape(-1, 1)
    rows = max(1, COUNT_COMPARISONS // codes)
    counts = xp.zeros(codes, dtype=xp.int64)
    for start in range(0, flat.shape[0], rows):
        counts += (flat[start:start + rows] == every_code).sum(axis=0)  # (rows, K) -> (K,)
    return counts


def code_statistics(counts):
    """(usage, perplexity) of code counts (K,): the share of codes used at least once, and
    exp(entropy) of the empirical code distribution (1 = one code, K = all equally)."""
    counts = numpy.asarray(counts, numpy.float64)
    probabilities = counts / counts.sum()
    nonzero = probabilities[probabilities > 0]
    return float((counts > 0).mean()), float(numpy.exp(-(nonzero * numpy.log(nonzero)).sum()))
