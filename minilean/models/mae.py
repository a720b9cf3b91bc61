"""Masked autoencoder (He et al. 2021): cut an image into patches, hide most of them, encode
only the visible patches with a small ViT, let a lightweight decoder fill mask tokens in, and
score the prediction on the hidden patches only.

The named functions (``proofs/`` checks the masking algebra against them):

    patchify(images, p)          (N, C, H, W) -> (N, L, p*p*C),  L = (H/p)(W/p), row-major patches
    unpatchify(patches, p, C, H, W)  the inverse
    random_mask(N, L, ratio)     a fresh random subset of round(ratio * L) hidden patches per image
    block_mask(N, h, w, ...)     TorchLean's deterministic block mask over the patch grid
    patch_losses(pred, target)   per-patch mean squared error, (N, L)
    masked_mse(pred, target, m)  sum_i m_i loss_i / sum_i m_i: the mean patch loss over hidden
                                 patches (0 when nothing is hidden; m_i = 1 hidden, 0 visible)
                                 -- TorchLean's maeLoss over the hidden index list, divided by
                                 its length, over the reals
"""
from collections import namedtuple

import numpy

from minilean import backend, nn
from minilean.autograd.creation import zeros
from minilean.autograd.shape import cat
from minilean.autograd.tensor import Tensor, is_int
from minilean.models.autoencoder import check_image_batch
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.module import check_sizes

PatchMask = namedtuple("PatchMask", "keep restore hidden")
PatchMask.__doc__ = """Which patches an encoder sees.

keep: (N, L_visible) int64 array: the indices of the visible patches, in increasing order;
restore: (N, L) int64 array: the position of each patch in [visible..., hidden...] order, so that
    gathering the concatenation [encoded visible, mask tokens] by ``restore`` puts every token
    back at its patch position;
hidden: (N, L) float Tensor, 1 for a hidden patch and 0 for a visible one."""


def patchify(images, patch_size):
    """(N, C, H, W) -> (N, L, p*p*C): patch l = row-major patch (l // (W/p), l % (W/p)),
    flattened as (row in patch, column in patch, channel)."""
    count, channels, height, width = images.shape
    check_sizes(patch_size=patch_size)  # 0 divided by zero below
    if height % patch_size or width % patch_size:
        raise ValueError(f"patch size {patch_size} must divide the image size {height}x{width}")
    rows, cols = height // patch_size, width // patch_size
    # (N, C, H, W) -> (N, C, rows, p, cols, p)
    grid = images.reshape(count, channels, rows, patch_size, cols, patch_size)
    # (N, C, rows, p, cols, p) -> (N, rows, cols, p, p, C)
    grid = grid.permute(0, 2, 4, 3, 5, 1)
    # (N, rows, cols, p, p, C) -> (N, rows * cols, p * p * C)
    return grid.reshape(count, rows * cols, patch_size * patch_size * channels)


def unpatchify(patches, patch_size, channels, height, width):
    """(N, L, p*p*C) -> (N, C, H, W), the inverse of ``patchify``."""
    count = patches.shape[0]
    rows, cols = height // patch_size, width // patch_size
    expected = (count, rows * cols, patch_size * patch_size * channels)
    # the reshape below checks only the element count: patches cut with p = 2 read back with
    # p = 4 (64 values an image either way) came out as a scrambled image, without an error
    if height % patch_size or width % patch_size or tuple(patches.shape) != expected:
        raise ValueError(f"unpatchify: patches of shape {tuple(patches.shape)} are not "
                         f"{patch_size}x{patch_size} patches of {channels}x{height}x{width} "
                         f"images; expected shape {expected}")
    # (N, rows * cols, p * p * C) -> (N, rows, cols, p, p, C)
    grid = patches.reshape(count, rows, cols, patch_size, patch_size, channels)
    # (N, rows, cols, p, p, C) -> (N, C, rows, p, cols, p)
    grid = grid.permute(0, 5, 1, 3, 2, 4)
    # (N, C, rows, p, cols, p) -> (N, C, H, W)
    return grid.reshape(count, channels, height, width)


def _mask_from_hidden(hidden, device):
    """Build a PatchMask from a boolean (N, L) host array with the same count hidden per row."""
    # a stable sort puts visible patches (False) first, each group in increasing patch order
    order = numpy.argsort(hidden, axis=1, kind="stable")
    visible_count = int((~hidden[0]).sum())
    restore = numpy.argsort(order, axis=1, kind="stable")
    xp = backend.xp_for(device)
    return PatchMask(keep=xp.asarray(order[:, :visible_count]), restore=xp.asarray(restore),
                     hidden=Tensor._wrap(xp.asarray(hidden, dtype=xp.float32), False))


def hidden_count(num_patches, mask_ratio):
    """round(ratio * L), kept within 1..L-1 so something is hidden and something is seen.

    He et al.'s code keeps int(L (1 - ratio)) patches, so it hides ceil(ratio L): one more
    than here wherever the rounding here goes down (L = 10, ratio 0.25: 3 hidden, here 2;
    ratio 0.27: 3 in both). Rounding hides the count nearest the ratio asked for; at the
    defaults (16 patches, 0.75) both hide 12.
    Fewer than 2 patches are refused: a single patch cannot be both hidden and seen (L = 1
    gave 0 hidden, a mask that asks nothing of the model)."""
    if num_patches < 2:
        raise ValueError(f"a mask needs at least 2 patches, one hidden and one seen, got "
                         f"{num_patches}")
    return min(max(int(round(mask_ratio * num_patches)), 1), num_patches - 1)


def random_mask(count, num_patches, mask_ratio, device="cpu", generator=None):
    """Hide a uniformly random subset of ``hidden_count(L, ratio)`` patches of each image, drawn
    on the host (so runs repeat on either device) from ``generator``, a NumPy Generator
    (training passes its step's stream), by default the seeded CPU generator."""
    if not 0 < mask_ratio < 1:
        raise ValueError(f"mask ratio must be in (0, 1), got {mask_ratio!r}")
    noise = (generator or backend.generator("cpu")).random((count, num_patches))
    ranks = numpy.argsort(numpy.argsort(noise, axis=1), axis=1)
    return _mask_from_hidden(ranks < hidden_count(num_patches, mask_ratio), device)


def block_mask(count, rows, cols, block=2, period=4, offset=0, device="cpu"):
    """TorchLean's deterministic block mask on a rows x cols patch grid: patch (r, c) lies in
    block b = (r // block) * ceil(cols / block) + (c // block) and is hidden iff
    b mod period == offset. The defaults hide one block of every four (with 2x2 blocks on a
    4x4 grid: the top-left quadrant). ``block`` is a side, or (height, width) of rectangular
    blocks (TorchLean's per-axis block policy): then r // height and c // width, with
    ceil(cols / width) blocks per row. The same mask for every image."""
    block_rows, block_cols = (block, block) if numpy.ndim(block) == 0 else block
    blocks_per_row = -(-cols // block_cols)
    r, c = numpy.meshgrid(numpy.arange(rows), numpy.arange(cols), indexing="ij")
    block_index = (r // block_rows) * blocks_per_row + (c // block_cols)
    hidden = (block_index % period == offset).reshape(-1)  # (rows, cols) -> (rows * cols,)
    if hidden.all() or not hidden.any():
        raise ValueError(f"block mask (block={block}, period={period}, offset={offset}) on a "
                         f"{rows}x{cols} patch grid hides {'every' if hidden.all() else 'no'} patch")
    return _mask_from_hidden(numpy.broadcast_to(hidden, (count, rows * cols)).copy(), device)


def patch_statistics(patches, eps=1e-6):
    """Each patch's mean and standard deviation (``eps`` added to the variance): (N, L, 1).

    The variance is the population one (divided by P). MAE's code divides by P - 1: its
    targets are smaller by sqrt((P - 1) / P), and a patch of one value (patch size 1 on a
    single channel) would have no variance at all."""
    mean = patches.mean(-1, keepdim=True)
    return mean, (patches.var(-1, keepdim=True, unbiased=False) + eps).sqrt()


def visible_statistics(patches, hidden, eps=1e-6):
    """The mean and standard deviation of each image's visible pixels, all its visible patches
    pooled (``eps`` added to the variance): (N, 1, 1) each, from patches (N, L, P) and
    ``hidden`` (N, L), 1 where a patch is hidden. What a model trained on normalised patches
    can be given to turn its predictions back into pixels without seeing the hidden patches
    (their own statistics would hand the score each one's mean and spread)."""
    visible = (1 - hidden).unsqueeze(-1)  # (N, L, 1)
    count = visible.sum((1, 2), keepdim=True) * patches.shape[-1]  # visible pixels per image
    mean = (patches * visible).sum((1, 2), keepdim=True) / count
    centred = (patches - mean) * visible
    return mean, ((centred * centred).sum((1, 2), keepdim=True) / count + eps).sqrt()


def normalize_patches(patches, eps=1e-6):
    """Each patch minus its mean, over its standard deviation (MAE's normalised targets)."""
    mean, std = patch_statistics(patches, eps)
    return (patches - mean) / std


def denormalize(prediction, mean, std):
    """Normalised values back to pixels: ``prediction * std + mean``, the inverse of
    ``(pixels - mean) / std`` (the held-out score's way back from normalised predictions)."""
    return prediction * std + mean


def predicted_pixels(model, images, mask, normalized_targets=False):
    """The model's patches for ``images`` under ``mask``, in pixels: (N, L, P).

    A model trained on normalised targets predicts ``(pixels - mean) / std``; its way back
    uses the statistics of each image's visible patches (``visible_statistics``), all a
    reader of the masked image has."""
    prediction = model(images, mask)
    if not normalized_targets:
        return prediction
    mean, std = visible_statistics(patchify(images, model.patch_size), mask.hidden)
    return denormalize(prediction, mean, std)


def patch_losses(prediction, target):
    """Mean squared error of each patch: (N, L, P) x (N, L, P) -> (N, L)."""
    difference = prediction - target
    return (difference * difference).mean(-1)


def masked_mse(prediction, target, hidden):
    """sum_i hidden_i * patch_loss_i / max(sum_i hidden_i, 1): the mean loss over hidden patches.

    A mask that hides nothing scores 0, not 0/0: nothing was asked of the model (TorchLean's
    maeLoss over the empty index list is 0). For a 0/1 mask hiding at least one patch the
    count is >= 1 and the clamp changes nothing."""
    return (patch_losses(prediction, target) * hidden).sum() / hidden.sum().clamp(min=1.0)


# --- the network --------------------------------------------------------------------------

class Block(nn.Module):
    """A pre-norm transformer block: x + attention(norm x), then x + MLP(norm x) (GELU, 4x)."""

    def __init__(self, width, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.hidden, self.project = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, tokens):
        normed = self.norm1(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        return tokens + self.project(F.gelu(self.hidden(self.norm2(tokens))))


def gather_tokens(tokens, indices):
    """tokens (N, L, W), indices (N, K) -> (N, K, W): row n takes tokens[n, indices[n]]."""
    rows = tokens.xp.arange(tokens.shape[0])[:, None]  # (N, 1) broadcasts against (N, K)
    return tokens[rows, indices]


class MaskedAutoencoder(nn.Module):
    """ViT encoder over the visible patches only, a lighter decoder that sees every position.

    Encoder: linear patch embedding + learned positional embedding, keep the visible tokens,
    ``depth`` blocks, LayerNorm. Decoder: project to ``decoder_width``, append one shared
    learned mask token per hidden patch, put every token back at its position (``restore``),
    add the decoder's positional embedding, ``decoder_depth`` blocks, LayerNorm, and a linear
    map to the patch's pixels.
    """

    def __init__(self, image_shape, patch_size=4, width=64, depth=2, heads=4, decoder_width=32,
                 decoder_depth=1, decoder_heads=2):
        super().__init__()
        channels, height, image_width = image_shape
        # checked before the grid is cut: patch_size 0 divided by zero, and -2 built a model
        # on a (-4, -4) grid that failed at its first forward; a negative depth built no blocks
        check_sizes(patch_size=patch_size, width=width, heads=heads,
                    decoder_width=decoder_width, decoder_heads=decoder_heads)
        for name, value in (("depth", depth), ("decoder_depth", decoder_depth)):
            if not is_int(value) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if height % patch_size or image_width % patch_size:  # the grid would drop the rest
            raise ValueError(f"patch size {patch_size} must divide the image size "
                             f"{height}x{image_width}")
        self.image_shape, self.patch_size = tuple(image_shape), patch_size
        self.grid = (height // patch_size, image_width // patch_size)
        patches, patch_pixels = self.grid[0] * self.grid[1], patch_size * patch_size * channels
        self.embed = nn.Linear(patch_pixels, width)
        self.position = nn.Parameter(init.normal_(zeros(1, patches, width), std=0.02))
        self.encoder_blocks = nn.Sequential(*[Block(width, heads) for _ in range(depth)])
        self.encoder_norm = nn.LayerNorm(width)
        self.to_decoder = nn.Linear(width, decoder_width)
        self.mask_token = nn.Parameter(init.normal_(zeros(1, 1, decoder_width), std=0.02))
        self.decoder_position = nn.Parameter(init.normal_(zeros(1, patches, decoder_width),
                                                          std=0.02))
        self.decoder_blocks = nn.Sequential(*[Block(decoder_width, decoder_heads)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_width)
        self.to_pixels = nn.Linear(decoder_width, patch_pixels)

    def encode(self, patches, mask):
        """All patches (N, L, P) -> the visible ones (``mask.keep``) encoded: (N, L_visible,
        width)."""
        tokens = self.embed(patches) + self.position
        return self.encoder_norm(self.encoder_blocks(gather_tokens(tokens, mask.keep)))

    def decode(self, encoded, mask):
        """Encoded visible tokens -> predicted pixels of every patch (N, L, P)."""
        visible = self.to_decoder(encoded)
        count, visible_count, width = visible.shape
        hidden_count = mask.restore.shape[1] - visible_count
        fill = self.mask_token.expand(count, hidden_count, width)
        # [visible..., mask tokens...] (N, L, D) -> patch order by ``restore``
        tokens = gather_tokens(cat([visible, fill], 1), mask.restore) + self.decoder_position
        return self.to_pixels(self.decoder_norm(self.decoder_blocks(tokens)))

    def forward(self, images, mask):
        """Predicted patches (N, L, P) for images (N, C, H, W) under ``mask``."""
        check_image_batch(self, images)
        if mask.keep.shape[0] != images.shape[0]:
            raise ValueError(f"the mask is for {mask.keep.shape[0]} images, got "
                             f"{images.shape[0]}")
        patches = self.grid[0] * self.grid[1]
        if mask.restore.shape[1] != patches:  # failed in a broadcast or an index, naming neither
            raise ValueError(f"the mask is for {mask.restore.shape[1]} patches, the model cuts "
                             f"{patches}")
        return self.decode(self.encode(patchify(images, self.patch_size), mask), mask)

    def random_mask(self, count, mask_ratio, device="cpu", generator=None):
        return random_mask(count, self.grid[0] * self.grid[1], mask_ratio, device, generator)

    def block_mask(self, count, device="cpu"):
        """TorchLean's mask on this grid: blocks of half the grid on each axis, one of four
        hidden, which is the top-left quadrant (on a non-square grid too: blocks of half the
        height on both axes would hide a strip). On an odd grid the blocks are half rounded up:
        with half rounded down a 5x5 grid would have a 3x3 grid of 2x2 blocks and hide blocks
        0, 4 and 8 (two diagonal 2x2 blocks and the bottom-right corner patch), not a
        quadrant."""
        rows, cols = self.grid
        return block_mask(count, rows, cols, block=(-(-rows // 2), -(-cols // 2)), device=device)


def mae_loss(model, images, mask, normalize_targets=False):
    """Masked-patch MSE of the reconstruction (targets optionally normalised per patch)."""
    target = patchify(images, model.patch_size)
    if normalize_targets:
        target = normalize_patches(target)
    return masked_mse(model(images, mask), target, mask.hidden)


# --- the trivial baseline and the decoder's heads -------------------------------------------


def mean_patch_mse(train_images, test_images, hidden, patch_size):
    """The trivial baseline on hidden patches: predict each hidden patch as the mean training
    patch at that position (host arrays; hidden (N, L) 0/1). ``train_images`` may be their
    mean image alone, (1, C, H, W): the mean patches are its patches."""
    def patches(images):
        return patchify(Tensor._wrap(images, False), patch_size).numpy()
    mean_patches = patches(train_images).mean(0, keepdims=True)       # (1, L, P)
    per_patch = ((patches(test_images) - mean_patches) ** 2).mean(-1)  # (N, L)
    return float((per_patch * hidden).sum() / hidden.sum())


def decoder_heads(heads):
    """The light decoder's attention heads: half the encoder's, at least one."""
    return max(1, heads // 2)
