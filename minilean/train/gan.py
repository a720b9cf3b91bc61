"""``python -m minilean gan``: train the LSGAN of ``minilean/models/gan.py`` (D and G steps in
turn), write sample grids, and score the samples (FD-classifier, or mode coverage on ring8)
next to the independent-pixel baseline."""
import os

from minilean import atomic
from minilean.autograd.grad_mode import no_grad
from minilean.data.builtin import RING8_MODES, RING8_STD
from minilean.data.images import to_uint8
from minilean.data.streams import Purpose
from minilean.models import classifier
from minilean.models.gan import (Discriminator, Generator, discriminator_loss, generator_loss,
                                 independent_pixel_samples, ring8_coverage)
from minilean.optim import Adam, minimize
from minilean.train import zoo_run
from minilean.train.loop import LOCKED_DATA_FLAGS, check_samples_finite, check_samples_fit

# What defines the model and its data: a resumed run must keep these.
LOCKED_FLAGS = LOCKED_DATA_FLAGS + ("latent", "hidden", "d_steps")
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
    def on_points(config):  # the ring8 points (a resumed run's too), not images
        return config.dataset == "ring8" and config.x is None

    with zoo_run.start(config, LOCKED_FLAGS,
                       lambda config: None if on_points(config) else (-1.0, 1.0)) as session:
        config = session.config
        points = on_points(config)
        if not points:
            classifier.check_fd_report(config, session.dataset)
        data_shape = session.dataset.x.shape[1:]
        check_samples_fit(config.n_samples, data_shape)  # they are made after the training
        generator = Generator(config.latent, data_shape, config.hidden, bounded=not points)
        discriminator = Discriminator(data_shape, config.hidden)
        generator.to(config.device), discriminator.to(config.device)
        # betas (0.5, 0.999): the usual GAN setting, less momentum chasing a moving opponent
        g_optimizer = Adam(generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
        d_optimizer = Adam(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))

        def latent(count, step, draw):
            return session.normal((count, config.latent), Purpose.TRAINING_STEP, step, draw)

        fixed_latent = session.normal((config.n_samples, config.latent), Purpose.SAMPLING_START)

        def write_samples(name, step):
            with no_grad():
                samples = check_samples_finite(generator(fixed_latent).numpy(),
                                               f"the generator at step {step}")
            if points:
                # in images/ with the grids: a run's pictures, which a new run will not replace
                path = os.path.join(session.run.images_dir, f"{name}.svg")
                atomic.write_text(path, scatter_svg(samples, session.held_out_rows[:500]))
            else:
                session.save_grid(name, samples)
            return samples

        def step_fn(real, step):
            for d_step in range(config.d_steps):  # the same real batch, fresh noise each D step
                fake = generator(latent(real.shape[0], step, D_NOISE + d_step)).detach()
                d_loss = minimize(
                    d_optimizer, discriminator_loss(discriminator(real), discriminator(fake)))
            fake = generator(latent(real.shape[0], step, G_NOISE))
            g_loss = minimize(g_optimizer, generator_loss(discriminator(fake)))
            if step % config.sample_every == 0:
                write_samples(f"samples_step{step:06d}", step)
            return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss}

        zoo_run.fit(session, {"generator": generator, "discriminator": discriminator},
                    {"generator": g_optimizer, "discriminator": d_optimizer}, step_fn, "gan")
        samples = write_samples("samples", config.steps)
        summary = {"samples": len(samples), "steps": config.steps}
        if points:
            modes, share = ring8_coverage(samples, RING8_MODES, RING8_STD)
            real_modes, real_share = ring8_coverage(session.held_out_rows[:len(samples)],
                                                    RING8_MODES, RING8_STD)
            summary.update(modes_covered=modes, modes_total=len(RING8_MODES),
                           share_within_3std=share, real_data_modes=real_modes,
                           real_data_share_within_3std=real_share)
        else:
            samples = to_uint8(samples, (-1.0, 1.0))
            atomic.save_npy(session.run.file("samples.npy"), samples)  # for `minilean evaluate`
            if config.evaluate and session.dataset.y is not None:
                summary["fd_classifier"] = classifier.fd_report(config, session.dataset, samples)
                # the raw rows: uint8, or float in [0, 1] (--x), brought to uint8 as the samples are
                baseline = to_uint8(independent_pixel_samples(
                    session.dataset.x, len(samples), config.seed, session.train_index),
                    (0.0, 1.0))
                summary["baseline_independent_pixels_fd"] = classifier.fd_report(
                    config, session.dataset, baseline)["fd_classifier"]
        session.finish("LSGAN", **summary)
