"""Variational autoencoder: encoder to q(z|x) = N(mu, diag exp(logvar)), a reparameterised
latent sample, a decoder to a discretised logistic per pixel, and the (beta-)negative ELBO.

The named functions below are the mathematical objects of TorchLean's VAE spec; ``proofs/``
checks its theorems against them, and the training loss is built from them:

    z            = reparameterize_diag(mu, logvar, eps)        = mu + exp(logvar / 2) * eps
    KL_i         = coordinate_kl_to_standard(mu_i, logvar_i)   = (mu_i^2 + e^logvar_i - 1 - logvar_i) / 2
    KL (mean)    = diagonal_gaussian_kl_to_standard(mu, logvar)     = mean_i KL_i   (TorchLean's spec)
    KL (sum)     = diagonal_gaussian_kl_to_standard_sum(mu, logvar) = sum_i  KL_i   (nats)
    loss         = beta_negative_elbo(reconstruction, KL, beta)     = reconstruction + beta * KL

The coordinates are the last axis; leading axes are a batch and are averaged, so the mean form
equals the sum form divided by the latent size, exactly as for one example. The model trains
on the sum form (a negative ELBO in nats per image); ``proofs/`` checks that the two agree.

Pixels are 8-bit values k/255, each modelled by a logistic (mean, e^log_scale) integrated over
its bin (``discretized_logistic_log_likelihood``, as PixelCNN++), so the reconstruction term is
-log p(x|z) in nats per image: a true likelihood of the discrete pixels, comparable across
models.
"""
import math

from minilean.autograd.creation import randn_like
from minilean.autograd.elementwise import softplus, where
from minilean.autograd.grad_mode import no_grad
from minilean.autograd.shape import stack
from minilean.autograd.tensor import is_int
from minilean.models.autoencoder import EncoderDecoder
from minilean.models.objectives import weighted_two_term

LOG_2PI = math.log(2 * math.pi)


# --- the named objects ---------------------------------------------------------------------

def reparameterize_diag(mu, logvar, eps):
    """z = mu + exp(logvar / 2) * eps: a sample of N(mu, diag e^logvar) when eps ~ N(0, I).

    Written as a deterministic function of eps, so gradients reach mu and logvar
    (dz/dmu = 1, dz/dlogvar = exp(logvar / 2) eps / 2)."""
    return mu + (0.5 * logvar).exp() * eps


def coordinate_kl_to_standard(mu, logvar):
    """KL(N(mu, e^logvar) || N(0, 1)) per coordinate = (mu^2 + e^logvar - 1 - logvar) / 2 >= 0,
    zero exactly when mu = 0 and logvar = 0 (because e^l >= 1 + l)."""
    return 0.5 * (mu * mu + logvar.exp() - 1 - logvar)


def diagonal_gaussian_kl_to_standard_sum(mu, logvar):
    """KL(q || N(0, I)) = sum over the latent coordinates (last axis) of the coordinate KLs,
    averaged over any leading batch axes: the KL in nats per example."""
    per_example = coordinate_kl_to_standard(mu, logvar).sum(-1)
    return per_example if per_example.ndim == 0 else per_example.mean()


def diagonal_gaussian_kl_to_standard(mu, logvar):
    """TorchLean's ``diagonalGaussianKlToStandard``: the MEAN of the coordinate KLs over the
    latent coordinates (and over any batch) = the sum form / latent size."""
    return coordinate_kl_to_standard(mu, logvar).mean()


def negative_elbo(reconstruction, kl):
    """-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), the beta = 1 case."""
    return beta_negative_elbo(reconstruction, kl, 1.0)


def beta_negative_elbo(reconstruction, kl, beta):
    """reconstruction + beta * KL (a beta-VAE; beta = 1 is the negative ELBO)."""
    return weighted_two_term(reconstruction, kl, beta)


# --- the likelihood of 8-bit pixels ---------------------------------------------------------

HALF_BIN = 0.5 / 255  # pixels are k / 255; each owns the interval k/255 +- HALF_BIN


def discretized_logistic_log_likelihood(images, mean, log_scale):
    """log P(x) per pixel for 8-bit pixels x = k/255 under a logistic(mean, e^log_scale)
    discretised to the 256 bins (PixelCNN++'s likelihood, one component):

        P(x) = sigmoid((x + h - mean) / s) - sigmoid((x - h - mean) / s),   h = 0.5 / 255,
        with the edge bins taking all the mass below 0 (x = 0) and above 1 (x = 1).

    A probability of a discrete value, so -sum log P is a code length in nats. Where an
    interior bin's mass is below 1e-5 (PixelCNN++'s switch, well before the difference of
    sigmoids loses its digits), the density at the bin centre times the bin width
    (log pdf - log 255) stands in for it; that stand-in is not the mass: at the narrowest
    scale (MIN_LOG_SCALE) it charges such a rare pixel up to 0.68 nats more (mpmath, all bins).
    """
    centred = images - mean
    inverse_scale = (-log_scale).exp()
    upper = inverse_scale * (centred + HALF_BIN)
    lower = inverse_scale * (centred - HALF_BIN)
    # log sigmoid(upper), the x = 0 bin, as -softplus(-upper), mirroring the x = 1 bin: the
    # same number as upper - softplus(upper), which for a mean well below 0 (upper large)
    # subtracts two numbers near upper and lost log P ~ -e^-upper (0 in float32 from ~15)
    log_cdf_upper = -softplus(-upper)
    log_survival_lower = -softplus(lower)              # log(1 - sigmoid(lower)): the x = 1 bin
    # a bin wholly right of the mean has both sigmoids near 1, and their difference cancels (in
    # float32 a mass of 1e-5 kept two digits): there the same mass is taken from the mirror's
    # left tails, sigmoid(-lower) - sigmoid(-upper), where each sigmoid is accurate
    bin_mass = where(lower.data > 0, (-lower).sigmoid() - (-upper).sigmoid(),
                     upper.sigmoid() - lower.sigmoid())
    middle = inverse_scale * centred
    log_density_centre = middle - log_scale - 2 * softplus(middle)
    interior = where(bin_mass.data > 1e-5, bin_mass.clamp(min=1e-12).log(),
                     log_density_centre - math.log(255))
    top = where(images.data > 1 - HALF_BIN, log_survival_lower, interior)
    return where(images.data < HALF_BIN, log_cdf_upper, top)


# --- the network --------------------------------------------------------------------------

MIN_LOG_SCALE = -7.0  # a bin is 1/255 wide; narrower logistics only sharpen an exact guess
# The decoder starts with logistics of scale e^-3 ~ 0.05 (about 13 grey levels), not the
# default bias's e^0 = 1, which spreads every pixel over the whole range: the likelihood's
# gradient toward the right mean scales like 1/scale, so a wide start learns slowly
# (measured 2026-11-27, `vae --arch mlp --steps 300`: held-out -ELBO 6.46 bits/dim from e^0,
# 6.27 from e^-3; with --hidden 256 --latent 16, 6.53 and 6.04).
INITIAL_LOG_SCALE = -3.0


class VAE(EncoderDecoder):
    """q(z|x) = N(mu(x), diag e^logvar(x)), p(z) = N(0, I), p(x|z) = discretised logistic.

    ``arch="mlp"``: ``latent`` coordinates; ``arch="conv"``: ``latent`` channels at S/4
    resolution, so latent * (S/4)^2 coordinates. The encoder gives (mu, logvar) per latent
    coordinate, the decoder a mean and a log-scale per pixel. The defaults are those of
    ``python -m minilean vae``.
    """

    def __init__(self, image_shape, arch="conv", hidden=32, latent=8):
        super().__init__(image_shape, arch, hidden, 2 * latent, code_in=latent, outputs_per_pixel=2)
        output_bias = self.decoder[-1].bias.data
        # (2 * C * H * W,) or (2 * C,) -> (2, C * H * W) or (2, C): row 1 is the log-scales
        output_bias.reshape(2, -1)[1] = INITIAL_LOG_SCALE

    def encode(self, images):
        """(mu, logvar), each (N, *latent_shape)."""
        return self.run_encoder(images).chunk(2, 1)  # (N, 2 * latent[, h, w]) -> two halves

    def decode(self, latent):
        """(mean, log_scale) of p(x|z), each (N, C, H, W)."""
        outputs = self.run_decoder(latent)
        return outputs[:, 0], outputs[:, 1].clamp(min=MIN_LOG_SCALE)

    def sample_prior(self, latent):
        """Images decoded from ``latent``, draws of z ~ N(0, I) of shape (N, *latent_shape):
        the mean of p(x|z), clipped to [0, 1]. The caller draws z (the command line from the
        run's host stream, so that both devices decode the same draws)."""
        with no_grad():
            mean, _ = self.decode(latent)
            return mean.clamp(0.0, 1.0)


def flat_sum(x):
    """Sum over every axis but the first: (N, ...) -> (N,)."""
    return x.flatten(1).sum(1)


def draw_terms(model, images, mu, logvar, eps):
    """One reparameterised draw z = mu + sigma eps: (log p(x|z) per image (N,), z)."""
    z = reparameterize_diag(mu, logvar, eps)
    mean, log_scale = model.decode(z)
    return flat_sum(discretized_logistic_log_likelihood(images, mean, log_scale)), z


def vae_loss(model, images, beta, eps=None):
    """The training loss in nats per image, averaged over the batch:
    beta_negative_elbo(-log p(x|z), KL_sum(q(z|x) || N(0, I)), beta) with one draw of z."""
    mu, logvar = model.encode(images)
    if eps is None:
        eps = randn_like(mu)
    log_likelihood, _ = draw_terms(model, images, mu, logvar, eps)
    # (N, *latent_shape) -> (N, latent size): the KL's coordinates on the last axis
    kl = diagonal_gaussian_kl_to_standard_sum(mu.flatten(1), logvar.flatten(1))
    return beta_negative_elbo(-log_likelihood.mean(), kl, beta)


def log_standard_normal(z):
    """log N(z; 0, I) per example: -sum (log 2 pi + z^2) / 2."""
    return -0.5 * flat_sum(z * z + LOG_2PI)


def log_posterior(eps, logvar):
    """log q(z|x) per example at z = mu + sigma eps: -sum (log 2 pi + logvar + eps^2) / 2."""
    return -0.5 * flat_sum(eps * eps + logvar + LOG_2PI)


def log_importance_weight(log_likelihood, z, eps, logvar):
    """log w = log p(x|z) + log p(z) - log q(z|x) per example, at z = mu + sigma eps: the
    log-weights ``importance_weighted_bound`` averages (one of them estimates the ELBO)."""
    return log_likelihood + log_standard_normal(z) - log_posterior(eps, logvar)


def importance_weighted_bound(log_weights):
    """log (1/K) sum_k w_k for log_weights (K, N): a lower bound on log p(x) that tightens
    with K (Burda et al. 2016) and is the ELBO's estimate for K = 1; max-shifted (logsumexp)."""
    return log_weights.logsumexp(0) - math.log(log_weights.shape[0])


def evaluate_bounds(model, images, samples, draw_normal=None):
    """Held-out bounds in nats per image, averaged: (negative ELBO, negative K-sample IW bound).

    The ELBO uses the closed-form KL and the first draw for the reconstruction term; the IW
    bound uses all ``samples`` draws, log w = log p(x|z) + log p(z) - log q(z|x).
    ``draw_normal(shape, k)`` gives draw k's eps (a standard normal tensor of ``shape``); by
    default it comes from the device's generator (``randn_like``)."""
    if not is_int(samples) or samples < 1:  # 0 failed in ``stack`` after encoding the images
        raise ValueError(f"evaluate_bounds needs samples >= 1 (draws of z per image), got "
                         f"{samples!r}")
    with no_grad():
        mu, logvar = model.encode(images)
        kl = flat_sum(coordinate_kl_to_standard(mu, logvar))
        log_weights = []
        for draw in range(samples):
            eps = randn_like(mu) if draw_normal is None else draw_normal(mu.shape, draw)
            log_likelihood, z = draw_terms(model, images, mu, logvar, eps)
            if draw == 0:
                negative_elbo_nats = negative_elbo(-log_likelihood, kl).mean()
            log_weights.append(log_importance_weight(log_likelihood, z, eps, logvar))
        negative_iw_nats = -importance_weighted_bound(stack(log_weights, 0)).mean()
        return float(negative_elbo_nats.item()), float(negative_iw_nats.item())


# --- the trivial baseline: independent pixels ----------------------------------------------


def as_pixel_levels(rows):
    """Images as integer levels 0..255 (uint8 as is, floats in [0, 1] rounded)."""
    import numpy
    rows = numpy.asarray(rows)
    return rows if rows.dtype == numpy.uint8 else numpy.rint(numpy.clip(rows, 0, 1) * 255).astype(
        numpy.uint8)


def independent_pixel_nats(train_rows, test_rows):
    """The trivial baseline: each pixel an independent categorical over 256 levels, fitted to
    the training images (add-one smoothing); returns -log p in nats per test image. The best
    any model can do that ignores how pixels depend on each other.

    ``train_rows``: an array of images, or an iterable of such arrays (chunks of the training
    images, counted one at a time: no copy of them all, nor of their levels, is made)."""
    import numpy
    test = as_pixel_levels(test_rows)
    dims = test[0].size
    test = test.reshape(len(test), dims)  # flatten CHW
    counts = numpy.ones((dims, 256))
    for train in [train_rows] if isinstance(train_rows, numpy.ndarray) else train_rows:
        train = as_pixel_levels(train)
        train = train.reshape(len(train), dims)  # flatten CHW
        # pixel d at level v counted in bin 256 d + v: bincount, not numpy.add.at, which took
        # about 0.4 us a pixel (7 minutes for a 1 GiB --x); 256 rows at a time, as the bins
        # take 8 bytes a pixel
        for start in range(0, len(train), 256):
            bins = numpy.arange(dims) * 256 + train[start:start + 256]
            counts += numpy.bincount(bins.reshape(-1), minlength=dims * 256).reshape(dims, 256)
    log_p = numpy.log(counts / counts.sum(1, keepdims=True))
    return float(-log_p[numpy.arange(dims), test].sum(1).mean())
