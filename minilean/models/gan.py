"""LSGAN: a generator G from latent noise to data, a discriminator D scoring data, trained in
alternation with least-squares objectives (Mao et al. 2017), as TorchLean's spec states them:

    discriminator_loss = mse(D(x), 1) + mse(D(G(z)), 0)      real scored 1, fake scored 0
    generator_loss     = mse(D(G(z)), 1)                      G tries to be scored as real

Both are written through the objective algebra (``weighted_three_term`` and
``weighted_two_term`` with a zero regulariser), which is exactly how TorchLean's theorems
``discriminatorLoss_eq_weightedThreeTerm`` and ``generatorLoss_eq_weightedTwoTerm`` view them.
D ends in a plain linear score (no sigmoid): the least-squares loss needs none.
"""
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
        size = int(numpy.prod(data_shape))
        self.hidden1, self.hidden2 = nn.Linear(size, hidden), nn.Linear(hidden, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, x):
        h = F.leaky_relu(self.hidden1(x.flatten(1)), 0.2)
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


def independent_pixel_samples(train_rows, count, seed):
    """The trivial generator the GAN must beat: every pixel drawn on its own from its training
    marginal (the value of a random training image at that pixel), so each pixel's distribution
    is exact and every dependence between pixels is lost. (count, *row shape), host arrays."""
    rows = numpy.asarray(train_rows)
    flat = rows.reshape(len(rows), -1)  # (N, C, H, W) -> (N, C * H * W)
    donors = stream(seed, Purpose.PIXEL_BASELINE).integers(0, len(rows), (count, flat.shape[1]))
    # (count, C * H * W) -> (count, C, H, W)
    return flat[donors, numpy.arange(flat.shape[1])].reshape((count,) + rows.shape[1:])


# --- the command ----------------------------------------------------------------------------

LOCKED_FLAGS = ("dataset", "x", "y", "n_total", "image_size", "seed", "batch_size", "latent",
                "hidden", "d_steps")
# a training step's draws (sub-streams of its TRAINING_STEP stream): the D steps' noise
# D_NOISE, D_NOISE + 1, ...; the G step's G_NOISE
G_NOISE, D_NOISE = 0, 1


def scatter_svg(points, reference, size=400, extent=3.0):
    """A plain SVG scatter plot: generated ``points`` (blue) over ``reference`` (grey)."""
    def dot(point, colour, radius):
        x = (point[0] + extent) / (2 * extent) * size
        y = (extent - point[1]) / (2 * extent) * size
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}"/>'
    body = [dot(point, "#bbbbbb", 1.5) for point in reference] + [
        dot(point, "#4e79a7", 1.5) for point in points]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">'
            f'<rect width="{size}" height="{size}" fill="white"/>' + "".join(body) + "</svg>\n")


def run(config):
    """``python -m minilean gan``: alternating LSGAN training, sample grids, evaluation."""
    from minilean import atomic
    from minilean.autograd.grad_mode import no_grad
    from minilean.data.builtin import RING8_MODES, RING8_STD
    from minilean.models import zoo_run
    from minilean.models.classifier import check_fd_report, fd_report
    from minilean.optim import Adam

    def on_points(config):  # the ring8 points (a resumed run's too), not images
        return config.dataset == "ring8" and config.x is None

    session = zoo_run.start(config, LOCKED_FLAGS,
                            lambda config: None if on_points(config) else (-1.0, 1.0))
    config = session.config
    points = on_points(config)
    if not points:
        check_fd_report(config, session.dataset)
    data_shape = session.train_rows.shape[1:]
    generator = Generator(config.latent, data_shape, config.hidden, bounded=not points)
    discriminator = Discriminator(data_shape, config.hidden)
    generator.to(config.device), discriminator.to(config.device)
    # betas (0.5, 0.999): the usual GAN setting, less momentum chasing a moving opponent
    g_optimizer = Adam(generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    d_optimizer = Adam(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))

    def latent(count, step, draw):
        return session.normal((count, config.latent), Purpose.TRAINING_STEP, step, draw)

    fixed_latent = session.normal((config.n_samples, config.latent), Purpose.SAMPLING_START)

    def write_samples(name):
        with no_grad():
            samples = generator(fixed_latent).numpy()
        if points:
            path = session.run.file(f"{name}.svg")
            atomic.write_text(path, scatter_svg(samples, session.held_out_rows[:500]))
        else:
            session.save_grid(name, samples)
        return samples

    def step_fn(real, step):
        for d_step in range(config.d_steps):  # the same real batch, fresh noise each D step
            fake = generator(latent(real.shape[0], step, D_NOISE + d_step)).detach()
            d_loss = zoo_run.minimize(
                d_optimizer, discriminator_loss(discriminator(real), discriminator(fake)))
        fake = generator(latent(real.shape[0], step, G_NOISE))
        g_loss = zoo_run.minimize(g_optimizer, generator_loss(discriminator(fake)))
        if step % config.sample_every == 0:
            write_samples(f"samples_step{step:06d}")
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss}

    zoo_run.fit(session, {"generator": generator, "discriminator": discriminator},
                {"generator": g_optimizer, "discriminator": d_optimizer}, step_fn, "gan")
    samples = write_samples("samples")
    summary = {"samples": len(samples), "steps": config.steps}
    if points:
        modes, share = ring8_coverage(samples, RING8_MODES, RING8_STD)
        real_modes, real_share = ring8_coverage(session.held_out_rows[:len(samples)], RING8_MODES,
                                                RING8_STD)
        summary.update(modes_covered=modes, modes_total=len(RING8_MODES),
                       share_within_3std=share, real_data_modes=real_modes,
                       real_data_share_within_3std=real_share)
    else:
        from minilean.data.images import to_uint8
        samples = to_uint8(samples, (-1.0, 1.0))
        atomic.save_npy(session.run.file("samples.npy"), samples)  # for `minilean evaluate`
        if config.evaluate and session.dataset.y is not None:
            summary["fd_classifier"] = fd_report(config, session.dataset, samples)
            # the raw rows: uint8, or float in [0, 1] (--x), brought to uint8 as the samples are
            baseline = to_uint8(independent_pixel_samples(session.train_rows, len(samples),
                                                          config.seed), (0.0, 1.0))
            summary["baseline_independent_pixels_fd"] = fd_report(
                config, session.dataset, baseline)["fd_classifier"]
    session.finish("LSGAN", **summary)
