"""``python -m minilean vae``: train the VAE of ``minilean/models/vae.py`` on the run's images,
then its held-out bounds (-ELBO and the importance-weighted bound) next to the independent-pixel
baseline, reconstructions and prior samples."""
import numpy

from minilean.autograd.grad_mode import no_grad
from minilean.data.streams import Purpose
from minilean.models.vae import VAE, evaluate_bounds, independent_pixel_nats, vae_loss
from minilean.optim import Adam, minimize
from minilean.train import zoo_run
from minilean.train.loop import LOCKED_DATA_FLAGS

# What defines the model, its objective and its data: a resumed run must keep these (its
# logged loss would change meaning mid-run, and config.json would say every step had the new
# --beta).
LOCKED_FLAGS = LOCKED_DATA_FLAGS + ("arch", "hidden", "latent", "beta")
EVAL_CHUNK = 100  # held-out images per forward pass while evaluating


def run(config):
    """``python -m minilean vae``: train, then held-out bounds, reconstructions, prior samples."""
    with zoo_run.start(config, LOCKED_FLAGS, (0.0, 1.0)) as session:
        config = session.config
        image_shape = zoo_run.image_shape(session,
                                          "--arch conv" if config.arch == "conv" else None)
        model = VAE(image_shape, config.arch, config.hidden, config.latent).to(config.device)
        optimizer = Adam(model.parameters(), lr=config.lr)

        def step_fn(images, step):
            eps = session.normal((images.shape[0], *model.latent_shape), Purpose.TRAINING_STEP,
                                 step)
            return {"loss": minimize(optimizer, vae_loss(model, images, config.beta, eps))}

        zoo_run.fit(session, {"model": model}, {"optimizer": optimizer}, step_fn, "vae")
        held_out = session.held_out_rows[:config.n_eval]

        def chunk_bounds(chunk, index):
            """The chunk's mean bounds, eps of each draw the run's (seed, EVALUATION, index,
            draw)."""
            return evaluate_bounds(model, session.tensor(chunk), config.iw_samples,
                                   lambda shape, draw: session.normal(shape, Purpose.EVALUATION,
                                                                      index, draw))

        negative_elbo_nats, negative_iw_nats = zoo_run.mean_over_chunks(chunk_bounds, held_out,
                                                                        EVAL_CHUNK)
        baseline = independent_pixel_nats(session.training_chunks(), held_out)
        nats_to_bits_per_dim = 1.0 / (numpy.log(2) * int(numpy.prod(image_shape)))
        originals = session.held_out(16)
        with no_grad():
            mean, _ = model.decode(model.encode(originals)[0])
        session.save_reconstructions(originals, mean.clamp(0.0, 1.0))
        prior_draws = session.normal((64, *model.latent_shape), Purpose.SAMPLING_START)
        session.save_grid("prior_samples", model.sample_prior(prior_draws))
        session.finish("VAE", held_out_images=len(held_out),
                       negative_elbo_nats=float(negative_elbo_nats),
                       negative_elbo_bits_per_dim=float(negative_elbo_nats * nats_to_bits_per_dim),
                       iw_bound_nats=float(negative_iw_nats), iw_samples=config.iw_samples,
                       iw_bound_bits_per_dim=float(negative_iw_nats * nats_to_bits_per_dim),
                       baseline_independent_pixels_nats=baseline,
                       baseline_independent_pixels_bits_per_dim=baseline * nats_to_bits_per_dim,
                       steps=config.steps)
