"""``python -m minilean autoencoder``: train the autoencoder of ``minilean/models/autoencoder.py``,
then its held-out reconstruction MSE next to the mean-image baseline."""
from minilean.autograd.grad_mode import no_grad
from minilean.models.autoencoder import Autoencoder, mean_image_mse, reconstruction_loss
from minilean.nn import functional as F
from minilean.optim import Adam, minimize
from minilean.train import zoo_run
from minilean.train.loop import LOCKED_DATA_FLAGS

# What defines the model and its data: a resumed run must keep these.
LOCKED_FLAGS = LOCKED_DATA_FLAGS + ("arch", "hidden", "latent")


def run(config):
    """``python -m minilean autoencoder``: train, then held-out MSE next to the mean image."""
    with zoo_run.start(config, LOCKED_FLAGS, (0.0, 1.0)) as session:
        config = session.config
        shape = zoo_run.image_shape(session, "--arch conv" if config.arch == "conv" else None)
        model = Autoencoder(shape, config.arch, config.hidden, config.latent).to(config.device)
        optimizer = Adam(model.parameters(), lr=config.lr)

        def step_fn(images, step):
            loss = reconstruction_loss(model, images)
            return {"loss": minimize(optimizer, loss)}

        zoo_run.fit(session, {"model": model}, {"optimizer": optimizer}, step_fn, "autoencoder")
        held_out = session.held_out(config.n_eval)
        with no_grad():
            reconstructions = model(held_out)
            error = float(F.mse_loss(reconstructions, held_out).item())
        baseline = mean_image_mse(session.mean_training_image(), held_out.numpy())
        session.save_reconstructions(held_out, reconstructions)
        session.finish("Autoencoder", held_out_images=len(held_out), held_out_mse=error,
                       baseline_mean_image_mse=baseline, steps=config.steps)
