"""minilean vs PyTorch on the same work, in one run: training steps, micro-ops, sampling, memory.

    python benchmarks/bench_models.py                      # everything, 2 threads each
    python benchmarks/bench_models.py --cases unet16,micro --repeats 9 --threads 1

For each model case the same network is built in minilean and in PyTorch (CPU), minilean's
weights are copied across by parameter name, one loss and every gradient are compared, and
then the full training step (zero_grad, forward, backward, gradient clipping, Adam, EMA where
the CLI uses them; the GAN's is a discriminator step and then a generator step, each with its
own Adam) of both is timed in the same process: warm-up first, then the two
frameworks alternate, and the median of ``--repeats`` steps is reported with the ratio
minilean / PyTorch. Inputs (images, timesteps, noise, masks) are fixed host arrays, so both
frameworks do exactly the same arithmetic and input generation is not timed.

Threads: NumPy's BLAS (OpenBLAS) is limited through OPENBLAS_NUM_THREADS/OMP_NUM_THREADS,
set below *before* NumPy is imported, and PyTorch through torch.set_num_threads: both get
``--threads``. torch is a benchmark peer only (the ``bench`` extra); minilean never imports it.
"""
import argparse
import os
import sys

from arguments import at_least, description  # beside this script; imports nothing heavy

_parser = argparse.ArgumentParser(description=description(__doc__))
_parser.add_argument("--cases", default="unet16,unet32,residual,vae,vae_conv,vqvae,gan,"
                                          "autoencoder,mae,micro,ddim,memory",
                     help="comma-separated: unet16 (the CLI default size, hc 24), unet32, "
                          "unet4 (the default model on 2 images of 4x4: per-operation cost), "
                          "residual, vae (mlp), vae_conv (the CLI default VAE), vqvae, gan, "
                          "autoencoder, mae, micro, ddim, memory")
_parser.add_argument("--threads", type=at_least(1), default=2, help="BLAS / torch threads (both)")
_parser.add_argument("--repeats", type=at_least(1), default=7, help="timed steps per framework")
_parser.add_argument("--warmup", type=at_least(0), default=2,
                     help="untimed steps per framework first")
_parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                     help="wall: perf_counter; cpu: process CPU time (steadier on a busy "
                          "machine, meaningful with --threads 1)")
_parser.add_argument("--heap", choices=("kept", "glibc"), default="kept",
                     help="kept: freed memory stays in the process (minilean.heap, as the "
                          "command line sets it; PyTorch shares the process, so its arrays are "
                          "kept too); glibc: the C library's defaults")
# imported (by a test, for its torch peers), the defaults, and this process's threads as they are
ARGS = _parser.parse_args(None if __name__ == "__main__" else [])
if __name__ == "__main__":
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_name] = str(ARGS.threads)

import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from unittest import mock  # noqa: E402

import numpy  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import minilean  # noqa: E402
from minilean import backend, heap, nn  # noqa: E402
from minilean.autograd.grad_mode import no_grad  # noqa: E402
from minilean.models import diffusion as D  # noqa: E402
from minilean.optim import EMA, Adam, clip_grad_norm_  # noqa: E402
from torch_unet import TorchUNet  # noqa: E402

GRAD_CLIP, LR, EMA_DECAY = 1.0, 2e-3, 0.995  # a training step's settings (values do not change its cost)


# --- timing and comparison ------------------------------------------------------------------

# Seconds each framework's turn waits first, so that the other framework's idle worker threads
# are asleep: NumPy's OpenBLAS spins a worker for about 0.1 s after each product (2**28
# cycles), on one of the cores the step after it would use. Measured on 2 cores (unet16, 2
# threads each): PyTorch's step took 57 ms this way and 87-88 ms right after minilean's, which
# made the 2-thread ratios favour minilean (0.81-0.88x, against 1.49-1.52x).
SETTLE_SECONDS = 0.3


def alternate(minilean_step, torch_step, repeats=None, warmup=None):
    """Median seconds of each step, measured alternately after warm-up; every other repeat
    runs torch first, so that neither framework always follows the other (as
    ``bench_gpu.py``'s rounds reverse their order). Each turn waits ``SETTLE_SECONDS``, so
    that neither runs beside the other's spinning threads, then runs one untimed step, so that
    the timed one starts as a training loop's steps do, right after the one before."""
    repeats = repeats or ARGS.repeats
    for _ in range(ARGS.warmup if warmup is None else warmup):
        minilean_step()
        torch_step()
    clock = time.process_time if ARGS.clock == "cpu" else time.perf_counter
    times = {"minilean": [], "torch": []}
    for repeat in range(repeats):
        order = (("minilean", minilean_step), ("torch", torch_step))
        for name, step in order[::-1] if repeat % 2 else order:
            time.sleep(SETTLE_SECONDS)
            step()
            start = clock()
            step()
            times[name].append(clock() - start)
    return statistics.median(times["minilean"]), statistics.median(times["torch"])


def relative_error(mine, theirs):
    """max |a - b| / max(|b|, tiny): one number per array pair."""
    theirs = numpy.asarray(theirs, dtype=numpy.float64)
    return float(numpy.max(numpy.abs(numpy.asarray(mine, dtype=numpy.float64) - theirs))
                 / max(float(numpy.max(numpy.abs(theirs))), 1e-12))


def copy_weights(minilean_model, torch_model):
    """minilean's parameters into the torch model, matched by name (the names must agree)."""
    ours = dict(minilean_model.named_parameters())
    theirs = dict(torch_model.named_parameters())
    if set(ours) != set(theirs):
        raise ValueError(f"parameter names differ: only minilean {sorted(set(ours) - set(theirs))}"
                         f", only torch {sorted(set(theirs) - set(ours))}")
    with torch.no_grad():
        for name, param in theirs.items():
            param.copy_(torch.from_numpy(ours[name].data.copy()))


def check_agreement(minilean_model, torch_model, minilean_loss, torch_loss):
    """Loss and gradient relative errors of one backward in each framework."""
    for param in minilean_model.parameters():
        param.grad = None
    torch_model.zero_grad(set_to_none=True)
    ours = minilean_loss()
    ours.backward()
    theirs = torch_loss()
    theirs.backward()
    torch_grads = dict(torch_model.named_parameters())
    grad_error = max(relative_error(param.grad.data, torch_grads[name].grad.numpy())
                     for name, param in minilean_model.named_parameters())
    return relative_error(ours.item(), theirs.item()), grad_error


class TorchEMA:
    """The same average as minilean.optim.EMA, avg <- avg + (1 - decay)(p - avg), written as
    PyTorch writes it (``torch.optim.swa_utils.get_ema_multi_avg_fn``, and ``bench_gpu.py``'s
    peer): one foreach lerp over all tensors, as its Adam here is foreach too. A Python loop
    of three ops per tensor cost torch 0.5 ms a step more for the U-Net (90 tensors)."""

    def __init__(self, model, decay):
        self.decay, self.params = decay, list(model.parameters())
        self.shadow = [param.detach().clone() for param in self.params]

    @torch.no_grad()
    def update(self):
        torch._foreach_lerp_(self.shadow, self.params, 1 - self.decay)


def minilean_training_step(model, loss, clip, ema):
    """minilean's full step (zero_grad, ``loss()``, backward, clipping, Adam, EMA) as a
    no-argument function."""
    optimizer = Adam(model.parameters(), lr=LR)
    average = EMA(model, EMA_DECAY) if ema else None

    def step():
        optimizer.zero_grad()
        loss().backward()
        if clip:
            clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        if average is not None:
            average.update(model)
    return step


def training_steps(minilean_model, torch_model, minilean_loss, torch_loss, clip, ema):
    """The full step of each framework as a no-argument function."""
    torch_optimizer = torch.optim.Adam(torch_model.parameters(), lr=LR, foreach=True)
    torch_average = TorchEMA(torch_model, EMA_DECAY) if ema else None

    def torch_step():
        torch_optimizer.zero_grad(set_to_none=True)
        torch_loss().backward()
        if clip:
            tnn.utils.clip_grad_norm_(torch_model.parameters(), GRAD_CLIP)
        torch_optimizer.step()
        if torch_average is not None:
            torch_average.update()

    return minilean_training_step(minilean_model, minilean_loss, clip, ema), torch_step


def in_turn(steps):
    """One no-argument function that calls ``steps`` in order."""
    def run():
        for step in steps:
            step()
    return run


def model_case(name, detail, *players, clip=False, ema=False):
    """A training step's row. Each player is (minilean model, torch model, minilean loss,
    torch loss) and takes its own optimizer step on its own loss, in the order given: one
    player for most models, the discriminator and then the generator for the GAN. The row's
    errors are the largest over the players."""
    for minilean_model, torch_model, _, _ in players:
        copy_weights(minilean_model, torch_model)
    loss_errors, grad_errors = zip(*(check_agreement(*player) for player in players))
    minilean_steps, torch_steps = zip(*(training_steps(*player, clip, ema) for player in players))
    ours, theirs = alternate(in_turn(minilean_steps), in_turn(torch_steps))
    parameters = sum(param.numel() for minilean_model, _, _, _ in players
                     for param in minilean_model.parameters())
    return dict(case=name, detail=f"{detail}, {parameters} params", minilean=ours, torch=theirs,
                loss_error=max(loss_errors), grad_error=max(grad_errors))


# --- diffusion denoisers in PyTorch (same attribute names as minilean's) -----------

class TorchResidualBlock(tnn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = tnn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = tnn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.conv1(x).relu())


class TorchResidualEpsNet(tnn.Module):
    def __init__(self, channels, hidden_c=16):
        super().__init__()
        self.stem = tnn.Conv2d(channels + 1, hidden_c, 3, padding=1)
        self.block1, self.block2 = TorchResidualBlock(hidden_c), TorchResidualBlock(hidden_c)
        self.out = tnn.Conv2d(hidden_c, channels, 3, padding=1)

    def forward(self, x, time_plane):
        h = self.stem(torch.cat([x, time_plane], dim=1)).relu()
        h = self.block2(self.block1(h).relu()).relu()
        return self.out(h)


def diffusion_inputs(batch, size, T=200, seed=0):
    """Fixed x0 in [-1, 1], timesteps and noise, and the cosine schedule's alpha_bar."""
    rng = numpy.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (batch, 3, size, size)).astype(numpy.float32)
    t = rng.integers(0, T, batch)
    eps = rng.standard_normal((batch, 3, size, size)).astype(numpy.float32)
    return x0, t, eps, D.alpha_bars(D.make_betas("cosine", T))


def torch_noised(alpha_bar, x0, t, eps):
    """q_sample in torch with the same float32 coefficients as minilean's ``_per_example``."""
    signal = numpy.sqrt(alpha_bar)[t].astype(numpy.float32).reshape(-1, 1, 1, 1)
    noise = numpy.sqrt(1.0 - alpha_bar)[t].astype(numpy.float32).reshape(-1, 1, 1, 1)
    return torch.from_numpy(signal) * x0 + torch.from_numpy(noise) * eps


def diffusion_case(name, arch, batch, size, hidden_c):
    from minilean.models.residual import ResidualEpsNet
    from minilean.models.unet import UNet, sinusoidal_embedding

    x0, t, eps, alpha_bar = diffusion_inputs(batch, size)
    ml_x0, ml_eps = minilean.tensor(x0), minilean.tensor(eps)
    tx0, teps = torch.from_numpy(x0), torch.from_numpy(eps)
    backend.manual_seed(0)
    if arch == "unet":
        model, torch_model = UNet(3, hidden_c), TorchUNet(3, hidden_c)
    else:
        model, torch_model = ResidualEpsNet(3, 200, hidden_c), TorchResidualEpsNet(3, hidden_c)

    def condition():
        """The time input from t, on the host as minilean's forward makes it: made in each
        step on both sides, so that each times the same work."""
        if arch == "unet":
            return torch.from_numpy(sinusoidal_embedding(t, hidden_c, batch, ml_x0).data)
        return torch.from_numpy(model.time_channel(t, ml_x0).data)

    def minilean_loss():
        # the eps loss on both sides (the CLI's default, v, adds one elementwise target)
        return D.eps_prediction_loss(model, alpha_bar, ml_x0, t, ml_eps)

    def torch_loss():
        return TF.mse_loss(torch_model(torch_noised(alpha_bar, tx0, t, teps), condition()), teps)

    return model_case(name, f"{arch} hc={hidden_c}, batch {batch}, 3x{size}x{size}",
                      (model, torch_model, minilean_loss, torch_loss), clip=True, ema=True)


# --- the zoo's encoder/decoder models (autoencoder.py, vae.py, vqvae.py) in PyTorch ---------

def eight_bit_images(seed, batch, size):
    """Fixed images (batch, 3, size, size) of 8-bit pixels k / 255, as the zoo trains on."""
    levels = numpy.random.default_rng(seed).integers(0, 256, (batch, 3, size, size))
    return (levels / 255.0).astype(numpy.float32)


def on_both(array):
    """One host array as a minilean tensor and as a torch tensor: the same input to each."""
    return minilean.tensor(array), torch.from_numpy(array)


def torch_sequential(layers):
    """A minilean Sequential of Linear, Conv2d, ConvTranspose2d and ReLU layers as torch.nn
    layers of the same sizes, strides and paddings, under the same names (fresh weights, which
    copy_weights replaces). Read off minilean's stack, so the two cannot differ in shape; what
    each layer computes is torch's own."""
    def peer(layer):
        if isinstance(layer, nn.ReLU):
            return tnn.ReLU()
        if isinstance(layer, nn.Linear):
            return tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            torch_class = tnn.Conv2d if isinstance(layer, nn.Conv2d) else tnn.ConvTranspose2d
            return torch_class(layer.in_channels, layer.out_channels, layer.kernel_size,
                               groups=layer.groups, bias=layer.bias is not None, **layer.options)
        raise TypeError(f"no torch peer for {type(layer).__name__}")
    return tnn.Sequential(*map(peer, layers))


class TorchEncoderDecoder(tnn.Module):
    """minilean's EncoderDecoder ``model`` (an Autoencoder or a VAE, mlp or conv) in torch."""

    def __init__(self, model):
        super().__init__()
        self.encoder = torch_sequential(model.encoder)
        self.decoder = torch_sequential(model.decoder)
        self.image_shape, self.outputs_per_pixel = model.image_shape, model.outputs_per_pixel
        self.flat = model.arch == "mlp"

    def run_encoder(self, images):
        return self.encoder(images.flatten(1) if self.flat else images)

    def run_decoder(self, code):
        """(N, *latent shape) -> (N, outputs_per_pixel, C, H, W)."""
        return self.decoder(code).reshape((code.shape[0], self.outputs_per_pixel)
                                          + self.image_shape)


def autoencoder_case(batch=64, size=16, arch="mlp", hidden=256, latent=16):
    """The CLI's default autoencoder: MSE of sigmoid(decoder(encoder(x))) against x."""
    from minilean.models.autoencoder import Autoencoder, reconstruction_loss

    ml_images, t_images = on_both(eight_bit_images(5, batch, size))
    backend.manual_seed(0)
    model = Autoencoder((3, size, size), arch, hidden, latent)
    torch_model = TorchEncoderDecoder(model)

    def torch_loss():
        reconstruction = torch_model.run_decoder(torch_model.run_encoder(t_images))[:, 0]
        return TF.mse_loss(reconstruction.sigmoid(), t_images)

    return model_case("autoencoder", f"{arch} hidden {hidden}, latent {latent}, batch {batch}, "
                      f"3x{size}x{size}",
                      (model, torch_model, lambda: reconstruction_loss(model, ml_images),
                       torch_loss))


def torch_vae_loss(model, images, eps):
    """minilean.models.vae.vae_loss with beta = 1, in torch (same formulas, same order)."""
    from minilean.models.vae import HALF_BIN, MIN_LOG_SCALE

    mu, logvar = model.run_encoder(images).chunk(2, 1)
    z = mu + (0.5 * logvar).exp() * eps
    outputs = model.run_decoder(z)
    mean, log_scale = outputs[:, 0], outputs[:, 1].clamp(min=MIN_LOG_SCALE)
    centred = images - mean
    inverse_scale = (-log_scale).exp()
    upper, lower = inverse_scale * (centred + HALF_BIN), inverse_scale * (centred - HALF_BIN)
    softplus = torch.nn.functional.softplus  # minilean's is one op with slope sigmoid(x) too
    log_cdf_upper, log_survival_lower = -softplus(-upper), -softplus(lower)
    bin_mass = torch.where(lower > 0, (-lower).sigmoid() - (-upper).sigmoid(),
                           upper.sigmoid() - lower.sigmoid())
    middle = inverse_scale * centred
    log_density_centre = middle - log_scale - 2 * softplus(middle)
    interior = torch.where(bin_mass.detach() > 1e-5, bin_mass.clamp(min=1e-12).log(),
                           log_density_centre - math.log(255))
    top = torch.where(images > 1 - HALF_BIN, log_survival_lower, interior)
    log_p = torch.where(images < HALF_BIN, log_cdf_upper, top).flatten(1).sum(1)
    # (N, *latent shape) -> (N, latent size): the KL summed over every latent coordinate
    kl = (0.5 * (mu * mu + logvar.exp() - 1 - logvar)).flatten(1).sum(-1).mean()
    return -log_p.mean() + kl


def vae_case(name, arch, hidden, latent, batch=64, size=16):
    """``vae --arch mlp --hidden 256 --latent 16`` or the CLI default (conv, 32, 8): the
    negative ELBO with one fixed draw of eps."""
    from minilean.models.vae import VAE, vae_loss

    ml_images, t_images = on_both(eight_bit_images(1, batch, size))
    backend.manual_seed(0)
    model = VAE((3, size, size), arch, hidden, latent)
    torch_model = TorchEncoderDecoder(model)
    ml_eps, t_eps = on_both(numpy.random.default_rng(8).standard_normal(
        (batch,) + model.latent_shape).astype(numpy.float32))
    return model_case(name, f"{arch} hidden {hidden}, latent {latent}, batch {batch}, "
                      f"3x{size}x{size}",
                      (model, torch_model, lambda: vae_loss(model, ml_images, 1.0, ml_eps),
                       lambda: torch_vae_loss(torch_model, t_images, t_eps)))


class TorchVQVAE(tnn.Module):
    """minilean's VQVAE ``model`` (a trained codebook, not the EMA one) in torch."""

    def __init__(self, model):
        super().__init__()
        self.encoder = torch_sequential(model.encoder)
        self.decoder = torch_sequential(model.decoder)
        self.codebook = tnn.Parameter(torch.empty(model.codebook.shape))  # copy_weights fills it

    def loss(self, images, beta):
        """reconstruction + codebook + beta * commitment, each a mean squared error, with
        nearest-code quantisation and the straight-through gradient."""
        encoded = self.encoder(images).permute(0, 2, 3, 1)  # (N, D, h, w) -> (N, h, w, D)
        with torch.no_grad():  # squared L2 written out, as nearest_code computes it
            difference = encoded.unsqueeze(-2) - self.codebook  # (N, h, w, K, D)
            indices = (difference * difference).sum(-1).argmin(-1)
        quantized = TF.embedding(indices, self.codebook)
        straight_through = encoded + (quantized - encoded).detach()
        # (N, h, w, D) -> (N, D, h, w)
        reconstruction = self.decoder(straight_through.permute(0, 3, 1, 2)).sigmoid()
        return (TF.mse_loss(reconstruction, images) + TF.mse_loss(quantized, encoded.detach())
                + beta * TF.mse_loss(encoded, quantized.detach()))


def vqvae_case(batch=64, size=16, codes=64, code_dim=16, hidden=32, beta=0.25):
    """The CLI's default VQ-VAE step. Counting code usage and restarting dead codes (every 100
    steps) are bookkeeping beside the optimizer step, left out of both frameworks."""
    from minilean.models.vqvae import VQVAE, vqvae_loss

    ml_images, t_images = on_both(eight_bit_images(6, batch, size))
    backend.manual_seed(0)
    model = VQVAE((3, size, size), codes, code_dim, hidden)
    torch_model = TorchVQVAE(model)

    def minilean_loss():
        reconstruction, encoded, quantized, _ = model(ml_images)
        return vqvae_loss(ml_images, reconstruction, encoded, quantized, beta).total

    return model_case("vqvae", f"conv hidden {hidden}, {codes} codes of {code_dim}, beta {beta}, "
                      f"batch {batch}, 3x{size}x{size}",
                      (model, torch_model, minilean_loss, lambda: torch_model.loss(t_images, beta)))


# --- the LSGAN (gan: MLPs, latent 32, hidden 256, batch 64, 3x16x16) ------------------------

class TorchGenerator(tnn.Module):
    """minilean's image Generator ``generator`` (tanh output) in torch."""

    def __init__(self, generator):
        super().__init__()
        self.data_shape, self.net = generator.data_shape, torch_sequential(generator.net)

    def forward(self, z):
        return self.net(z).reshape((z.shape[0],) + self.data_shape).tanh()  # (N, P) -> images


class TorchDiscriminator(tnn.Module):
    """minilean's Discriminator in torch: two leaky-ReLU layers and a linear score."""

    def __init__(self, data_shape, hidden):
        super().__init__()
        self.hidden1 = tnn.Linear(math.prod(data_shape), hidden)
        self.hidden2, self.score = tnn.Linear(hidden, hidden), tnn.Linear(hidden, 1)

    def forward(self, x):
        h = TF.leaky_relu(self.hidden1(x.flatten(1)), 0.2)
        h = TF.leaky_relu(self.hidden2(h), 0.2)
        return self.score(h).reshape(x.shape[0])  # (N, 1) -> (N,)


def gan_case(batch=64, size=16, latent=32, hidden=256):
    """One D step then one G step, each with its own Adam, as ``minilean.train.gan`` takes them
    (--d-steps 1). The CLI's lr 5e-4 and betas (0.5, 0.999) change values, not cost: both
    frameworks use the module's LR and Adam's default betas."""
    from minilean.models.gan import Discriminator, Generator, discriminator_loss, generator_loss

    ml_real, t_real = on_both(2 * eight_bit_images(7, batch, size) - 1)  # the GAN's range [-1, 1]
    # the D step's latent noise and the G step's
    d_noise, g_noise = numpy.random.default_rng(9).standard_normal(
        (2, batch, latent)).astype(numpy.float32)
    (ml_d_noise, t_d_noise), (ml_g_noise, t_g_noise) = on_both(d_noise), on_both(g_noise)
    data_shape = (3, size, size)
    backend.manual_seed(0)
    generator = Generator(latent, data_shape, hidden)
    discriminator = Discriminator(data_shape, hidden)
    torch_generator = TorchGenerator(generator)
    torch_discriminator = TorchDiscriminator(data_shape, hidden)

    def minilean_d_loss():
        fake = generator(ml_d_noise).detach()
        return discriminator_loss(discriminator(ml_real), discriminator(fake))

    def torch_d_loss():
        real_scores = torch_discriminator(t_real)
        fake_scores = torch_discriminator(torch_generator(t_d_noise).detach())
        return (TF.mse_loss(real_scores, torch.ones_like(real_scores))
                + TF.mse_loss(fake_scores, torch.zeros_like(fake_scores)))

    def torch_g_loss():
        fake_scores = torch_discriminator(torch_generator(t_g_noise))
        return TF.mse_loss(fake_scores, torch.ones_like(fake_scores))

    return model_case(
        "gan (D step + G step)", f"mlp hidden {hidden}, latent {latent}, batch {batch}, "
        f"3x{size}x{size}",
        (discriminator, torch_discriminator, minilean_d_loss, torch_d_loss),
        (generator, torch_generator, lambda: generator_loss(discriminator(generator(ml_g_noise))),
         torch_g_loss))


# --- the MAE (CLI default: patch 4, width 64, depth 2, heads 4, decoder 32x1, batch 64) -----

class TorchBlock(tnn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.norm1 = tnn.LayerNorm(width)
        self.attention = tnn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = tnn.LayerNorm(width)
        self.hidden, self.project = tnn.Linear(width, 4 * width), tnn.Linear(4 * width, width)

    def forward(self, tokens):
        normed = self.norm1(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        return tokens + self.project(TF.gelu(self.hidden(self.norm2(tokens))))


class TorchMAE(tnn.Module):
    def __init__(self, patches, patch_pixels, width=64, depth=2, heads=4, decoder_width=32):
        super().__init__()
        self.embed = tnn.Linear(patch_pixels, width)
        self.position = tnn.Parameter(torch.zeros(1, patches, width))
        self.encoder_blocks = tnn.Sequential(*[TorchBlock(width, heads) for _ in range(depth)])
        self.encoder_norm = tnn.LayerNorm(width)
        self.to_decoder = tnn.Linear(width, decoder_width)
        self.mask_token = tnn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_position = tnn.Parameter(torch.zeros(1, patches, decoder_width))
        self.decoder_blocks = tnn.Sequential(TorchBlock(decoder_width, 2))
        self.decoder_norm = tnn.LayerNorm(decoder_width)
        self.to_pixels = tnn.Linear(decoder_width, patch_pixels)

    def forward(self, patches, keep, restore):
        rows = torch.arange(patches.shape[0])[:, None]
        tokens = (self.embed(patches) + self.position)[rows, keep]
        encoded = self.encoder_norm(self.encoder_blocks(tokens))
        visible = self.to_decoder(encoded)
        fill = self.mask_token.expand(visible.shape[0], restore.shape[1] - visible.shape[1], -1)
        tokens = torch.cat([visible, fill], 1)[rows, restore] + self.decoder_position
        return self.to_pixels(self.decoder_norm(self.decoder_blocks(tokens)))


def mae_case(batch=64, size=16, patch=4):
    from minilean.models.mae import MaskedAutoencoder, mae_loss, patchify

    rng = numpy.random.default_rng(2)
    images = rng.uniform(0, 1, (batch, 3, size, size)).astype(numpy.float32)
    backend.manual_seed(0)
    model = MaskedAutoencoder((3, size, size), patch)
    mask = model.random_mask(batch, 0.75)
    patches = (size // patch) ** 2
    torch_model = TorchMAE(patches, patch * patch * 3)
    ml_images = minilean.tensor(images)
    keep, restore = torch.from_numpy(mask.keep), torch.from_numpy(mask.restore)
    hidden = torch.from_numpy(mask.hidden.data)

    def torch_loss():
        target = torch.from_numpy(patchify(ml_images, patch).data)  # host-side, as a constant
        difference = torch_model(target, keep, restore) - target
        return ((difference * difference).mean(-1) * hidden).sum() / hidden.sum()

    return model_case("mae", f"patch {patch}, width 64, depth 2, batch {batch}, 3x{size}x{size}",
                      (model, torch_model, lambda: mae_loss(model, ml_images, mask), torch_loss))


# --- micro-benchmarks ----------------------------------------------------------------------

def micro_cases():
    """Single ops at the U-Net's shapes (batch 32, 16x16 input): forward, and forward+backward."""
    rng = numpy.random.default_rng(3)

    def arrays(*shapes):
        return [rng.standard_normal(shape).astype(numpy.float32) for shape in shapes]

    import minilean.nn.functional as F
    specs = [
        ("conv2d 3x3 32->32 @16x16", lambda x, w: F.conv2d(x, w, padding=1),
         lambda x, w: TF.conv2d(x, w, padding=1), arrays((32, 32, 16, 16), (32, 32, 3, 3))),
        ("conv2d 3x3 64->64 @8x8", lambda x, w: F.conv2d(x, w, padding=1),
         lambda x, w: TF.conv2d(x, w, padding=1), arrays((32, 64, 8, 8), (64, 64, 3, 3))),
        ("conv2d 3x3 s2 32->32 @16x16", lambda x, w: F.conv2d(x, w, stride=2, padding=1),
         lambda x, w: TF.conv2d(x, w, stride=2, padding=1), arrays((32, 32, 16, 16),
                                                                   (32, 32, 3, 3))),
        ("matmul 2048x128 @ 128x384", lambda a, b: a @ b, lambda a, b: a @ b,
         arrays((2048, 128), (128, 384))),
        ("group_norm (32,64,16,16) G=8", lambda x: F.group_norm(x, 8),
         lambda x: TF.group_norm(x, 8), arrays((32, 64, 16, 16))),
        ("attention (32, 64 tok, 64)", lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
         TF.scaled_dot_product_attention, arrays(*[(32, 64, 64)] * 3)),
    ]
    results = []
    for name, ours, theirs, inputs in specs:
        ml_inputs = [minilean.tensor(a, requires_grad=True) for a in inputs]
        t_inputs = [torch.from_numpy(a).requires_grad_() for a in inputs]
        seed = rng.standard_normal(ours(*ml_inputs).shape).astype(numpy.float32)
        # each side's cotangent made once, outside the timed calls (minilean.tensor copies:
        # made in each call, it timed a copy of the output's size on minilean's side only)
        ml_seed, t_seed = minilean.tensor(seed), torch.from_numpy(seed)
        error = relative_error(ours(*ml_inputs).data, theirs(*t_inputs).detach().numpy())
        with no_grad(), torch.no_grad():  # neither records a graph
            forward = alternate(lambda: ours(*ml_inputs), lambda: theirs(*t_inputs),
                                repeats=ARGS.repeats * 3)

        def ml_both():
            ours(*ml_inputs).backward(ml_seed)

        def torch_both():
            theirs(*t_inputs).backward(t_seed)

        # every input's gradient compared once, as the model rows compare every parameter's
        # (the row's grad column was empty: a backward that broke the maths went unseen)
        ml_both()
        torch_both()
        grad_error = max(relative_error(ml_input.grad.data, t_input.grad.numpy())
                         for ml_input, t_input in zip(ml_inputs, t_inputs))
        for ml_input, t_input in zip(ml_inputs, t_inputs):
            ml_input.grad = t_input.grad = None
        both = alternate(ml_both, torch_both, repeats=ARGS.repeats * 3)
        results.append(dict(case=f"{name} fwd", detail="", minilean=forward[0], torch=forward[1],
                            loss_error=error, grad_error=None))
        results.append(dict(case=f"{name} fwd+bwd", detail="", minilean=both[0], torch=both[1],
                            loss_error=error, grad_error=grad_error))
    return results


# --- sampling throughput -------------------------------------------------------------------

def ddim_case(count=64, size=16, steps=50, hidden_c=24):
    """DDIM (eta = 0, x0 unclipped on both sides) with the default U-Net on ``count`` images:
    images per second."""
    from minilean.models.unet import UNet, sinusoidal_embedding

    backend.manual_seed(0)
    model, torch_model = UNet(3, hidden_c), TorchUNet(3, hidden_c)
    copy_weights(model, torch_model)
    model.eval()
    alpha_bar = D.alpha_bars(D.make_betas("cosine", 200))
    timesteps = D.respaced_timesteps(200, steps)
    x_T = numpy.random.default_rng(4).standard_normal((count, 3, size, size)).astype(numpy.float32)
    like = minilean.tensor(x_T)

    def torch_eps(x, t):  # the embedding made at each step, as minilean's forward makes it
        return torch_model(x, torch.from_numpy(sinusoidal_embedding(t, hidden_c, count, like).data))

    float32_like = numpy.empty(0, numpy.float32)
    overflows = D._x0_overflows

    def float32_overflows(a, x_t):
        return overflows(a, float32_like)

    # both unclipped: D._clip_unit clips minilean Tensors and arrays, not torch tensors
    def minilean_sample():
        with no_grad():
            return D.ddim_sample(model, alpha_bar, minilean.tensor(x_T), timesteps)

    def torch_sample():
        # ddim_step's overflow check reads x_t's dtype with numpy.finfo, which cannot read a
        # torch dtype: the peer's steps ask it about float32, the dtype both sides sample in
        with torch.no_grad(), mock.patch.object(D, "_x0_overflows", float32_overflows):
            return D.ddim_sample(torch_eps, alpha_bar, torch.from_numpy(x_T), timesteps)

    error = relative_error(minilean_sample().data, torch_sample().numpy())
    seconds = alternate(minilean_sample, torch_sample, repeats=3, warmup=0)
    return dict(case=f"DDIM {steps} steps, {count} images", detail="images/s below",
                minilean=seconds[0], torch=seconds[1], loss_error=error, grad_error=None,
                throughput=(count / seconds[0], count / seconds[1]))


# --- memory ---------------------------------------------------------------------------------

def memory_case(steps=80, batch=32, size=16):
    """tracemalloc over minilean steps of the default U-Net (NumPy reports its allocations)."""
    from minilean.models.unet import UNet

    x0, t, eps, alpha_bar = diffusion_inputs(batch, size)
    ml_x0, ml_eps = minilean.tensor(x0), minilean.tensor(eps)
    backend.manual_seed(0)
    model = UNet(3, 24)
    step = minilean_training_step(
        model, lambda: D.eps_prediction_loss(model, alpha_bar, ml_x0, t, ml_eps), True, True)
    tracemalloc.start()
    after_step = []
    for _ in range(steps):
        step()
        after_step.append(tracemalloc.get_traced_memory()[0])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, after_step


# --- report ---------------------------------------------------------------------------------

def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, numpy "
            f"{numpy.__version__}, torch {torch.__version__}; threads: BLAS {ARGS.threads}, "
            f"torch {torch.get_num_threads()}")


def print_row(row):
    def error(value):
        return "" if value is None else f"{value:.1e}"
    ratio = row["minilean"] / row["torch"]
    print(f"| {row['case']} | {row['detail']} | {row['minilean'] * 1e3:.1f} | "
          f"{row['torch'] * 1e3:.1f} | {ratio:.2f} | {error(row['loss_error'])} | "
          f"{error(row['grad_error'])} |", flush=True)


def main():
    try:
        blas_threads = minilean.get_num_threads()
    except backend.DeviceError:  # a BLAS library threadpoolctl cannot read: nothing to check
        blas_threads = ARGS.threads
    if blas_threads != ARGS.threads:
        # OpenBLAS takes at most one thread per core, whatever OPENBLAS_NUM_THREADS asks, while
        # torch.set_num_threads takes any count: on 2 cores, --threads 4 timed NumPy's 2
        # threads against torch's 4 under a header that said 4 and 4
        _parser.error(f"argument --threads: expected at most {blas_threads} (the threads "
                      f"NumPy's BLAS library runs on this machine), got {ARGS.threads}")
    torch.set_num_threads(ARGS.threads)
    cases = ARGS.cases.split(",")
    known = ("unet16", "unet32", "unet4", "residual", "vae", "vae_conv", "vqvae", "gan",
             "autoencoder", "mae", "micro", "ddim", "memory")
    unknown = [case for case in cases if case not in known]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; expected some of "
                         f"{','.join(known)}")
    if ARGS.heap == "kept":
        heap.keep_freed_memory()
    print(f"machine: {machine()}; heap: {ARGS.heap}")
    print(f"median of {ARGS.repeats} alternating steps after {ARGS.warmup} warm-up steps "
          f"(micro rows: {3 * ARGS.repeats} steps; DDIM: 3 runs, no warm-up); each turn after "
          f"{SETTLE_SECONDS} s and one untimed step (ratio: minilean's median time / torch's; "
          f"above 1, minilean is slower), "
          f"{ARGS.clock} clock; command: python benchmarks/bench_models.py "
          f"{' '.join(sys.argv[1:])}\n")
    print("| case | detail | minilean ms | torch ms | ratio | loss/output rel err | grad rel err |")
    print("|---|---|---|---|---|---|---|")
    builders = {
        "unet16": lambda: [diffusion_case("diffusion step (CLI default size)", "unet", 32, 16, 24)],
        "unet32": lambda: [diffusion_case("diffusion step", "unet", 32, 32, 32)],
        # the default model on 2 images of 4x4: almost no arithmetic, so the step's time is
        # each framework's own cost per operation (what also bounds a small model on a GPU)
        "unet4": lambda: [diffusion_case("diffusion step, host-bound size", "unet", 2, 4, 24)],
        "residual": lambda: [diffusion_case("diffusion step", "residual", 32, 32, 16)],
        "vae": lambda: [vae_case("vae", "mlp", 256, 16)],
        "vae_conv": lambda: [vae_case("vae_conv (CLI default)", "conv", 32, 8)],
        "vqvae": lambda: [vqvae_case()],
        "gan": lambda: [gan_case()],
        "autoencoder": lambda: [autoencoder_case()],
        "mae": lambda: [mae_case()],
        "micro": micro_cases,
        "ddim": lambda: [ddim_case()],
    }
    notes = []
    for case in cases:
        if case in builders:
            for row in builders[case]():
                print_row(row)
                if "throughput" in row:
                    notes.append(f"DDIM sampling: minilean {row['throughput'][0]:.1f} images/s, "
                                 f"torch {row['throughput'][1]:.1f} images/s")
    if "memory" in cases:
        peak, after_step = memory_case()
        notes.append(f"memory (tracemalloc, default U-Net step, batch 32, 16x16): peak "
                     f"{peak / 2**20:.1f} MiB; live after each step (MiB): "
                     + ", ".join(f"{value / 2**20:.3f} (step {step})" for step, value
                                 in enumerate(after_step, 1) if step in (1, 10, 40, 80)))
    for note in notes:
        print("\n" + note)


if __name__ == "__main__":
    main()
