"""``python -m minilean mae``: train the masked autoencoder of ``minilean/models/mae.py``, then
its held-out masked-patch MSE next to the mean-patch baseline, and the rows original / masked /
reconstruction."""
import math
import sys

import numpy

from minilean.autograd.grad_mode import no_grad
from minilean.data.streams import Purpose
from minilean.models.mae import (MaskedAutoencoder, decoder_heads, hidden_count, mae_loss,
                                 masked_mse, mean_patch_mse, patchify, predicted_pixels,
                                 unpatchify)
from minilean.optim import Adam, minimize
from minilean.train import zoo_run
from minilean.train.loop import LOCKED_DATA_FLAGS

# What defines the model, its objective and its data: a resumed run must keep these. The mask
# is the objective's (the loss covers the patches it hides) and the summary names it: changed
# mid-run, the summary would describe a training that did not happen.
LOCKED_FLAGS = LOCKED_DATA_FLAGS + ("patch_size", "width", "depth", "heads", "decoder_width",
                                    "decoder_depth", "per_patch_norm", "mask", "mask_ratio")


def run(config):
    """``python -m minilean mae``: train, then held-out masked-patch MSE next to the mean patch."""
    with zoo_run.start(config, LOCKED_FLAGS, (0.0, 1.0)) as session:
        config = session.config
        image_shape = zoo_run.image_shape(session)
        height, width = image_shape[1:]
        if height % config.patch_size or width % config.patch_size:
            raise ValueError(f"--patch-size {config.patch_size} must divide the image size "
                             f"{height}x{width}")
        if config.patch_size == height == width:  # one patch: no mask can hide one and show one
            raise ValueError(f"--patch-size {config.patch_size} must be smaller than the image "
                             f"size {height}x{width} (the image is cut into patches; at least one "
                             f"is hidden and one seen)")
        model = MaskedAutoencoder(image_shape, config.patch_size, config.width, config.depth,
                                  config.heads, config.decoder_width, config.decoder_depth,
                                  decoder_heads=decoder_heads(config.heads)).to(config.device)
        _say_a_rounded_mask_ratio(config, model.grid[0] * model.grid[1])
        optimizer = Adam(model.parameters(), lr=config.lr)

        def make_mask(count, generator):
            if config.mask == "block":
                return model.block_mask(count, config.device)
            return model.random_mask(count, config.mask_ratio, config.device, generator=generator)

        def step_fn(images, step):
            mask = make_mask(images.shape[0], session.stream(Purpose.TRAINING_STEP, step))
            loss = mae_loss(model, images, mask, config.per_patch_norm)
            return {"loss": minimize(optimizer, loss)}

        zoo_run.fit(session, {"model": model}, {"optimizer": optimizer}, step_fn, "mae")
        held_out = session.held_out(config.n_eval)
        mask = make_mask(held_out.shape[0], session.stream(Purpose.EVALUATION))
        with no_grad():
            prediction = predicted_pixels(model, held_out, mask, config.per_patch_norm)
            pixel_error = float(masked_mse(prediction, patchify(held_out, config.patch_size),
                                           mask.hidden).item())
        baseline = mean_patch_mse(session.mean_training_image(), held_out.numpy(),
                                  mask.hidden.numpy(), config.patch_size)
        rows = _comparison_rows(held_out, prediction, mask, config.patch_size)
        session.save_grid("original_masked_reconstruction", rows, nrow=len(rows) // 3)
        session.finish("MAE", held_out_images=len(held_out), mask=config.mask,
                       hidden_share=float(mask.hidden.numpy().mean()),
                       held_out_masked_patch_mse=pixel_error, baseline_mean_patch_mse=baseline,
                       steps=config.steps)


def _say_a_rounded_mask_ratio(config, num_patches):
    """A --mask-ratio typed that the patches cannot hide exactly is said in one line, as a flag
    typed to no effect is: the mask hides a whole number of patches, rounded, at least one and
    at most all but one (0.99 of 4 patches hid 3, a share of 0.75, reported only in the
    summary). Known only here: the number of patches is the data's (an --x array's size)."""
    if config.mask != "random" or "mask_ratio" not in config.given_flags:
        return
    hidden = hidden_count(num_patches, config.mask_ratio)
    if not math.isclose(hidden, config.mask_ratio * num_patches):
        print(f"minilean mae: --mask-ratio {config.mask_ratio:g} hides {hidden} of the "
              f"{num_patches} patches of each image (a share of {hidden / num_patches:g})",
              file=sys.stderr)


def _comparison_rows(images, prediction, mask, patch_size, count=8):
    """Three rows of ``count`` images (or of all, where there are fewer): original, masked
    (hidden patches grey), and the reconstruction (visible patches pasted back, hidden ones
    predicted in pixels)."""
    images, prediction = images[:count], prediction[:count]
    hidden = mask.hidden[:count].unsqueeze(-1)  # (n, L) -> (n, L, 1)
    patches = patchify(images, patch_size)
    masked = patches * (1 - hidden) + 0.5 * hidden
    filled = patches * (1 - hidden) + prediction.clamp(0.0, 1.0) * hidden
    return numpy.concatenate([unpatchify(part, patch_size, *images.shape[1:]).numpy()
                              for part in (patches, masked, filled)])
