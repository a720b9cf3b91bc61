"""``python -m minilean vqvae``: train the VQ-VAE of ``minilean/models/vqvae.py``, then its
held-out reconstruction, codebook usage and perplexity next to the mean-image baseline."""

from minilean.autograd.grad_mode import no_grad
from minilean.data.streams import Purpose
from minilean.models.autoencoder import mean_image_mse
from minilean.models.vqvae import VQVAE, code_counts, code_statistics, vqvae_loss
from minilean.optim import Adam, minimize
from minilean.train import zoo_run
from minilean.train.loop import LOCKED_DATA_FLAGS

# What defines the model, how its codebook learns (EMA decay, restarts of dead codes), the
# commitment weight of its objective and its data: a resumed run must keep these (config.json,
# which the resume rewrites, would say the whole run trained with the new value).
LOCKED_FLAGS = LOCKED_DATA_FLAGS + ("codes", "code_dim", "hidden", "ema_codebook", "decay",
                                    "restart_every", "beta")


def run(config):
    """``python -m minilean vqvae``: train, then held-out reconstruction, usage, perplexity."""
    with zoo_run.start(config, LOCKED_FLAGS, (0.0, 1.0)) as session:
        config = session.config
        model = VQVAE(zoo_run.image_shape(session, "the VQ-VAE"), config.codes, config.code_dim,
                      config.hidden, ema=config.ema_codebook, decay=config.decay).to(config.device)
        optimizer = Adam(model.parameters(), lr=config.lr)
        usage = model.code_usage.data  # on the device: counting must not copy the codes back

        def step_fn(images, step):
            reconstruction, encoded, quantized, indices = model(images)
            loss = vqvae_loss(images, reconstruction, encoded, quantized, config.beta)
            minimize(optimizer, loss.total)
            if config.ema_codebook:
                model.ema_update(encoded, indices)
            usage[:] += code_counts(indices.data, config.codes)
            restarted = 0
            if config.restart_every and step % config.restart_every == 0:
                picks = session.stream(Purpose.TRAINING_STEP, step)
                restarted = model.restart_dead_codes(encoded, usage, threshold=1, generator=picks)
                usage[:] = 0
            return {"loss": loss.total, "reconstruction": loss.reconstruction,
                    "codebook": loss.codebook, "commitment": loss.commitment,
                    "restarted": float(restarted)}

        zoo_run.fit(session, {"model": model}, {"optimizer": optimizer}, step_fn, "vqvae")
        held_out = session.held_out(config.n_eval)
        with no_grad():
            reconstruction, encoded, quantized, indices = model(held_out)
            terms = vqvae_loss(held_out, reconstruction, encoded, quantized, config.beta)
        counts = code_counts(indices.numpy(), config.codes)
        used, perplexity = code_statistics(counts)
        baseline = mean_image_mse(session.mean_training_image(), held_out.numpy())
        session.save_reconstructions(held_out, reconstruction)
        session.finish("VQ-VAE", held_out_images=len(held_out),
                       held_out_reconstruction_mse=float(terms.reconstruction.item()),
                       held_out_commitment=float(terms.commitment.item()),
                       baseline_mean_image_mse=baseline, codebook_usage=used,
                       codes_used=int((counts > 0).sum()), codes=config.codes,
                       perplexity=perplexity, steps=config.steps)
