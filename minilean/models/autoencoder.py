"""Autoencoders: an encoder to a small code, a decoder back to the image, trained with MSE.

This file also owns the encoder/decoder stacks the latent models reuse (the VAE and VQ-VAE put
a different bottleneck between the same two halves):

    mlp(widths)                               Linear-ReLU-...-Linear over flattened vectors
    conv_encoder(C_in, width, C_out)          (N, C_in, S, S) -> (N, C_out, S/4, S/4)
    conv_decoder(C_in, width, C_out)          (N, C_in, S/4, S/4) -> (N, C_out, S, S)

Images are NCHW in [0, 1]; the autoencoder's output goes through a sigmoid so it lives there
too. The trivial baseline for held-out reconstruction error is the mean training image
(the best constant prediction under MSE).
"""
from minilean import nn


def mlp(widths):
    """Linear layers between consecutive ``widths`` with ReLU between them (none at the end)."""
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def conv_encoder(in_channels, width, out_channels):
    """Two stride-2 4x4 convolutions (S -> S/2 -> S/4) and a 3x3 convolution to the code."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(2 * width, out_channels, 3, padding=1))


def conv_decoder(in_channels, width, out_channels):
    """The mirror of ``conv_encoder``: a 3x3 convolution and two stride-2 transposed ones."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 2 * width, 3, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1))


def check_quarterable(owner, image_shape):
    """The two stride-2 convolutions of ``conv_encoder`` and the transposes of
    ``conv_decoder`` give back a side S only for S a multiple of 4 (a 15x15 image came back
    12x12): any other is refused, naming ``owner``."""
    height, width = image_shape[1:]
    if height % 4 or width % 4:
        raise ValueError(f"{owner} needs a height and width that are multiples of 4, got "
                         f"image_shape {tuple(image_shape)}")


def check_image_batch(model, images):
    """``images`` must be a batch (N, *model.image_shape) of floats: another size would fail
    deep inside a reshape, a product or an index, in words that name neither, and 8-bit pixels
    gave a finite loss on the wrong scale (22431.7 from the masked autoencoder)."""
    if images.ndim != 4 or tuple(images.shape[1:]) != model.image_shape:
        raise ValueError(f"{type(model).__name__} takes images of shape (N, "
                         f"{', '.join(map(str, model.image_shape))}), got {tuple(images.shape)}")
    if images.dtype.kind != "f":
        raise TypeError(f"{type(model).__name__} takes float images in [0, 1], got "
                        f"{images.dtype} (divide 8-bit pixels by 255)")


class EncoderDecoder(nn.Module):
    """An encoder to ``code`` numbers and a decoder from ``code_in`` numbers to
    ``outputs_per_pixel`` numbers per pixel, both MLPs or both convolutional.

    ``arch="mlp"``: flattened image -> hidden -> hidden -> code, and back the same way;
    ``arch="conv"``: ``conv_encoder`` to ``code`` channels at S/4 resolution, and back.
    ``latent_shape`` is the shape of one decoder input: (code_in,) or (code_in, S/4, S/4).
    """

    def __init__(self, image_shape, arch, hidden, code, code_in=None, outputs_per_pixel=1):
        super().__init__()
        channels, height, width = image_shape
        if arch not in ("mlp", "conv"):  # any other name silently built the conv network
            raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")
        if arch == "conv":
            check_quarterable("arch 'conv'", image_shape)
        code_in = code_in or code
        self.image_shape, self.arch, self.outputs_per_pixel = tuple(image_shape), arch, outputs_per_pixel
        if arch == "mlp":
            pixels = channels * height * width
            self.encoder = mlp([pixels, hidden, hidden, code])
            self.decoder = mlp([code_in, hidden, hidden, outputs_per_pixel * pixels])
            self.latent_shape = (code_in,)
        else:
            self.encoder = conv_encoder(channels, hidden, code)
            self.decoder = conv_decoder(code_in, hidden, outputs_per_pixel * channels)
            self.latent_shape = (code_in, height // 4, width // 4)

    def run_encoder(self, images):
        check_image_batch(self, images)
        # mlp: (N, C, H, W) -> (N, C * H * W); conv: the images as they are
        return self.encoder(images.flatten(1) if self.arch == "mlp" else images)

    def run_decoder(self, code):
        """(N, *latent_shape) -> (N, outputs_per_pixel, C, H, W)."""
        # the reshape below checks only the element count: a conv VAE's prior draw with h and w
        # swapped ((N, L, 4, 2) for latent_shape (L, 2, 4)) decoded to an image of the right
        # shape, its rows cut from the transposed grid, without an error
        if tuple(code.shape[1:]) != self.latent_shape:
            raise ValueError(f"{type(self).__name__} decodes latents of shape (N, "
                             f"{', '.join(map(str, self.latent_shape))}), got "
                             f"{tuple(code.shape)}")
        # (N, k * C * H * W) or (N, k * C, H, W) -> (N, k, C, H, W)
        return self.decoder(code).reshape((code.shape[0], self.outputs_per_pixel) + self.image_shape)


class Autoencoder(EncoderDecoder):
    """x -> code -> sigmoid(decoder(code)), ``latent`` numbers (mlp) or channels (conv)."""

    def __init__(self, image_shape, arch="mlp", hidden=256, latent=16):
        super().__init__(image_shape, arch, hidden, latent)

    def forward(self, images):
        return self.run_decoder(self.run_encoder(images))[:, 0].sigmoid()


def reconstruction_loss(model, images):
    """The autoencoder's training loss: mean squared error of the reconstruction."""
    return nn.functional.mse_loss(model(images), images)


# --- the trivial baseline: the mean image --------------------------------------------------


def mean_image_mse(train_images, test_images):
    """The trivial baseline: predict the mean training image for every test image (host).
    ``train_images`` may be that mean alone, (1, C, H, W): all the baseline needs of them."""
    return float(((test_images - train_images.mean(0, keepdims=True)) ** 2).mean())
