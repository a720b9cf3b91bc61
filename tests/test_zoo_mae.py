"""MAE: patchify round trip, masks, the masked loss, gradients in float64, training steps."""
import math
import pathlib
import re

import numpy
import pytest

import minilean
from minilean import optim
from minilean.autograd.gradcheck import gradcheck
from minilean.models import mae


def test_patchify_round_trip_and_layout():
    images = minilean.tensor(numpy.arange(2 * 3 * 4 * 4, dtype=numpy.float32).reshape(2, 3, 4, 4))
    patches = mae.patchify(images, 2)
    assert patches.shape == (2, 4, 12)
    # patch 1 is rows 0-1, columns 2-3; its first values are pixel (0, 2) in channels 0, 1, 2
    numpy.testing.assert_array_equal(patches.numpy()[0, 1, :3], images.numpy()[0, :, 0, 2])
    numpy.testing.assert_array_equal(mae.unpatchify(patches, 2, 3, 4, 4).numpy(), images.numpy())


def test_random_mask_hides_the_ratio_and_restore_inverts_the_order():
    minilean.manual_seed(0)
    mask = mae.random_mask(3, 16, 0.75)
    hidden = mask.hidden.numpy()
    assert hidden.sum(1).tolist() == [12, 12, 12]
    for row in range(3):
        assert not hidden[row, mask.keep[row]].any()
        order = numpy.concatenate([mask.keep[row], numpy.flatnonzero(hidden[row])])
        numpy.testing.assert_array_equal(order[mask.restore[row]], numpy.arange(16))



def test_random_mask_differs_per_image_and_repeats_from_the_same_generator():
    first = mae.random_mask(8, 20, 0.6, generator=numpy.random.default_rng(3)).hidden.numpy()
    again = mae.random_mask(8, 20, 0.6, generator=numpy.random.default_rng(3)).hidden.numpy()
    other = mae.random_mask(8, 20, 0.6, generator=numpy.random.default_rng(4)).hidden.numpy()
    assert first.sum(1).tolist() == [12] * 8
    assert len({row.tobytes() for row in first}) == 8
    numpy.testing.assert_array_equal(again, first)
    assert (other != first).any()


def test_patchify_round_trip_on_a_non_square_grid():
    images = numpy.random.default_rng(0).random((2, 3, 4, 6))
    patches = mae.patchify(minilean.tensor(images), 2)
    numpy.testing.assert_array_equal(patches.numpy(), numpy_patches(images, 2))
    numpy.testing.assert_array_equal(mae.unpatchify(patches, 2, 3, 4, 6).numpy(), images)


@pytest.mark.parametrize("patch_size, channels, height, width", [
    (4, 3, 8, 8),  # 2x2 patches read back as 4x4 ones: the same 192 values an image
    (2, 1, 8, 24),  # as a 1-channel image three times as wide
    (3, 3, 8, 8),  # a patch side that does not divide the image
])
def test_unpatchify_refuses_patches_of_another_patch_size_or_image(patch_size, channels,
                                                                   height, width):
    """The reshape checked only the element count: patches cut with p = 2 and read back with
    p = 4 came out as a scrambled image, without an error."""
    patches = mae.patchify(minilean.rand(2, 3, 8, 8), 2)
    with pytest.raises(ValueError, match=rf"^unpatchify: patches of shape \(2, 16, 12\) are not "
                                         rf"{patch_size}x{patch_size} patches of {channels}x"
                                         rf"{height}x{width} images; expected shape "):
        mae.unpatchify(patches, patch_size, channels, height, width)

def test_block_mask_is_torchleans_quadrant():
    mask = mae.block_mask(1, 4, 4, block=2)
    assert numpy.flatnonzero(mask.hidden.numpy()[0]).tolist() == [0, 1, 4, 5]
    with pytest.raises(ValueError, match="hides every patch"):
        mae.block_mask(1, 2, 2, block=2, period=1)


def test_block_mask_defaults_hide_one_2x2_block_of_every_four():
    # a 4x8 grid has 8 blocks of 2x2, 4 per row: blocks 0 and 4, the first two columns
    hidden = mae.block_mask(1, 4, 8).hidden.numpy()[0].reshape(4, 8)
    expected = numpy.zeros((4, 8))
    expected[:, :2] = 1
    numpy.testing.assert_array_equal(hidden, expected)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.5])
def test_random_mask_refuses_a_ratio_outside_0_1(ratio):
    with pytest.raises(ValueError, match=rf"mask ratio must be in \(0, 1\), got {ratio}"):
        mae.random_mask(2, 16, ratio)


def test_the_mask_is_data_backward_leaves_it_no_gradient():
    model = tiny_model()
    mask = model.random_mask(2, 0.5)
    mae.mae_loss(model, minilean.rand(2, 1, 4, 4), mask).backward()
    assert mask.hidden.grad is None and model.position.grad is not None


def test_positional_embeddings_start_as_normal_with_std_0_02():
    """ViT's init of the learned positional embeddings: small next to the embedded patches."""
    minilean.manual_seed(0)
    model = mae.MaskedAutoencoder((1, 32, 32), patch_size=4, width=16, decoder_width=16)
    for param in (model.position, model.decoder_position):  # 64 x 16 values each
        assert param.numpy().std() == pytest.approx(0.02, rel=0.15)
        assert abs(param.numpy().mean()) < 0.005


def test_decoder_heads_are_half_the_encoders_and_at_least_one():
    assert [mae.decoder_heads(heads) for heads in (1, 2, 3, 4, 7)] == [1, 1, 1, 2, 3]


def test_masked_mse_counts_hidden_patches_only():
    prediction = minilean.tensor([[[1.0, 1.0], [5.0, 5.0], [3.0, 1.0]]])
    target = minilean.zeros(1, 3, 2)
    hidden = minilean.tensor([[1.0, 0.0, 1.0]])
    assert mae.masked_mse(prediction, target, hidden).item() == pytest.approx((1 + 5) / 2)


def test_normalized_targets_have_zero_mean_unit_variance():
    patches = minilean.tensor(numpy.random.default_rng(0).random((2, 3, 8)))
    normalized = mae.normalize_patches(patches).numpy()
    numpy.testing.assert_allclose(normalized.mean(-1), 0, atol=1e-6)
    numpy.testing.assert_allclose(normalized.std(-1), 1, atol=1e-3)


def tiny_model():
    minilean.manual_seed(0)
    return mae.MaskedAutoencoder((1, 4, 4), patch_size=2, width=4, depth=1, heads=2,
                                 decoder_width=4, decoder_depth=1, decoder_heads=1)


def test_visible_statistics_ignore_the_hidden_patches():
    """The statistics that turn normalised predictions back into pixels for the held-out score
    are the visible pixels' (pooled per image): changing a hidden patch changes nothing."""
    rng = numpy.random.default_rng(3)
    patches = rng.normal(size=(2, 4, 6))
    hidden = numpy.array([[1, 0, 1, 0], [0, 0, 1, 1]], dtype=numpy.float64)
    mean, std = mae.visible_statistics(minilean.tensor(patches), minilean.tensor(hidden), eps=0)
    for image in range(2):
        visible = patches[image][hidden[image] == 0]
        numpy.testing.assert_allclose(mean.numpy()[image, 0, 0], visible.mean(), rtol=1e-12)
        numpy.testing.assert_allclose(std.numpy()[image, 0, 0], visible.std(), rtol=1e-12)
    changed = patches.copy()
    changed[hidden == 1] = 100.0
    again = mae.visible_statistics(minilean.tensor(changed), minilean.tensor(hidden), eps=0)
    numpy.testing.assert_allclose(again[0].numpy(), mean.numpy(), rtol=1e-12)
    numpy.testing.assert_allclose(again[1].numpy(), std.numpy(), rtol=1e-12)


def numpy_patches(images, size):
    """(N, C, H, W) -> (N, L, P): patches in row-major grid order, each flattened row by row
    with the channels innermost (patch_size^2 C values), as test_patchify_round_trip_and_layout
    pins down."""
    count, channels, height, width = images.shape
    grid = images.reshape(count, channels, height // size, size, width // size, size)
    return grid.transpose(0, 2, 4, 3, 5, 1).reshape(count, -1, size * size * channels)


def test_mae_loss_normalises_each_target_patch_when_asked():
    """With normalize_targets each target patch is (x - mean) / sqrt(var + 1e-6) over its own
    P values (population variance, eps as patch_statistics documents); without, the raw
    pixels. The loss is the mean over hidden patches of the per-patch MSE, in NumPy."""
    model = tiny_model().to(dtype=numpy.float64)
    images = numpy.random.default_rng(4).random((2, 1, 4, 4))
    mask = model.random_mask(2, 0.5)
    prediction = model(minilean.tensor(images, dtype=numpy.float64), mask).numpy()
    hidden = mask.hidden.numpy()
    patches = numpy_patches(images, 2)
    normalised = (patches - patches.mean(-1, keepdims=True)) \
        / numpy.sqrt(patches.var(-1, keepdims=True) + 1e-6)

    def hidden_mse(target):
        return (((prediction - target) ** 2).mean(-1) * hidden).sum() / hidden.sum()

    assert abs(hidden_mse(normalised) - hidden_mse(patches)) > 0.1  # the two are told apart
    for normalize, target in ((True, normalised), (False, patches)):
        got = mae.mae_loss(model, minilean.tensor(images, dtype=numpy.float64), mask,
                           normalize_targets=normalize).item()
        assert got == pytest.approx(hidden_mse(target), rel=1e-12)


def test_whole_loss_gradcheck_float64():
    model = tiny_model().to(dtype=numpy.float64)
    images = minilean.tensor(numpy.random.default_rng(1).random((2, 1, 4, 4)), dtype=numpy.float64)
    mask = model.random_mask(2, 0.5)
    params = list(model.parameters())
    assert gradcheck(lambda *_: mae.mae_loss(model, images, mask, normalize_targets=True), params,
                     atol=1e-5)


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    model = tiny_model()
    images = minilean.tensor(numpy.random.default_rng(2).random((4, 1, 4, 4)).astype(numpy.float32))
    mask = model.random_mask(4, 0.5)
    before = mae.mae_loss(model, images, mask).item()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        mae.mae_loss(model, images, mask).backward()
        optimizer.step()
    assert mae.mae_loss(model, images, mask).item() < 0.7 * before


# --- the masking arithmetic against the docstrings --------------------------------------------

def test_hidden_count_rounds_to_nearest():
    """round(ratio * L), not its floor: 0.75 * 49 = 36.75 hides 37 patches, 0.6 * 16 = 9.6 hides
    10; nor its ceiling (He et al.'s count): 0.22 * 10 = 2.2 and 0.25 * 10 = 2.5 hide 2 (the
    docstring's example); the clamp keeps at least one patch hidden and one seen."""
    assert mae.hidden_count(49, 0.75) == 37
    assert mae.hidden_count(16, 0.6) == 10
    assert mae.hidden_count(10, 0.22) == 2
    assert mae.hidden_count(10, 0.25) == 2
    assert mae.hidden_count(16, 0.01) == 1
    assert mae.hidden_count(16, 0.99) == 15
    minilean.manual_seed(0)
    assert mae.random_mask(2, 49, 0.75).hidden.numpy().sum(1).tolist() == [37, 37]


@pytest.mark.parametrize("rows, cols, block, period, offset", [
    (7, 7, 3, 4, 0),   # a ragged last block column: ceil(7 / 3) = 3 blocks per row, not 2
    (7, 7, 3, 4, 3),
    (2, 4, 1, 4, 1),   # non-square: the block index is row-major, not column-major
    (3, 5, 2, 3, 1),
])
def test_block_mask_matches_the_docstring_formula(rows, cols, block, period, offset):
    expected = numpy.zeros(rows * cols, dtype=bool)
    for r in range(rows):
        for c in range(cols):
            index = (r // block) * math.ceil(cols / block) + (c // block)
            expected[r * cols + c] = index % period == offset
    mask = mae.block_mask(2, rows, cols, block=block, period=period, offset=offset)
    numpy.testing.assert_array_equal(mask.hidden.numpy(), numpy.stack([expected, expected]))
    numpy.testing.assert_array_equal(mask.keep[0], numpy.flatnonzero(~expected))


def test_patch_statistics_add_eps_to_the_variance_inside_the_root():
    """A nearly flat patch (variance 1e-8, far below eps = 1e-6) is scaled by
    1 / sqrt(var + eps), as the docstring says, not by 1 / (sqrt(var) + eps)."""
    patch = 1e-4 * numpy.array([1.0, -1.0, 1.0, -1.0]) + 0.3  # mean 0.3, population variance 1e-8
    mean, variance = patch.mean(), ((patch - patch.mean()) ** 2).mean()
    assert variance == pytest.approx(1e-8)
    patches = minilean.tensor(patch.reshape(1, 1, 4), dtype=numpy.float64)
    got_mean, got_std = mae.patch_statistics(patches)
    assert got_mean.numpy().item() == pytest.approx(mean, rel=1e-12)
    assert got_std.numpy().item() == pytest.approx(math.sqrt(variance + 1e-6), rel=1e-10)
    numpy.testing.assert_allclose(mae.normalize_patches(patches).numpy().reshape(-1),
                                  (patch - mean) / math.sqrt(variance + 1e-6), rtol=1e-9)


def test_mean_patch_baseline_matches_a_loop_over_hidden_patches():
    """The baseline: each hidden test patch against the training images' mean patch at that
    position, per-pixel squared error averaged within a patch, then over the hidden patches."""
    rng = numpy.random.default_rng(4)
    train, test = rng.random((3, 2, 4, 4)), rng.random((2, 2, 4, 4))
    hidden = numpy.array([[1, 0, 0, 1], [0, 1, 1, 1]], dtype=numpy.float64)
    total, count = 0.0, 0
    for n in range(2):
        for l in range(4):
            if not hidden[n, l]:
                continue
            r, c = 2 * (l // 2), 2 * (l % 2)  # patch l of a 2 x 2 grid of 2 x 2 patches
            mean_patch = train[:, :, r:r + 2, c:c + 2].mean(0)
            total += ((test[n, :, r:r + 2, c:c + 2] - mean_patch) ** 2).mean()
            count += 1
    assert mae.mean_patch_mse(train, test, hidden, 2) == pytest.approx(total / count, rel=1e-12)


def test_denormalize_inverts_normalising_with_the_same_statistics():
    """A prediction equal to the normalised target, turned back into pixels with the visible
    statistics it was normalised by, is the target (the held-out score's de-normalisation)."""
    rng = numpy.random.default_rng(5)
    target = rng.normal(2.0, 3.0, size=(2, 4, 6))
    hidden = minilean.tensor(numpy.array([[1.0, 0, 1, 0], [0, 1, 1, 1]]))
    mean, std = mae.visible_statistics(minilean.tensor(target), hidden)
    normalised = (target - mean.numpy()) / std.numpy()
    back = mae.denormalize(minilean.tensor(normalised), mean, std)
    numpy.testing.assert_allclose(back.numpy(), target, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("normalized_targets", [False, True])
def test_predicted_pixels_turn_a_perfect_normalised_prediction_back_into_the_image(
        normalized_targets):
    """A model predicting each patch exactly as it was trained to (pixels, or pixels normalised
    by the visible patches' statistics) gets the image's patches back in pixels."""
    rng = numpy.random.default_rng(6)
    images = minilean.tensor(rng.uniform(0.0, 1.0, size=(2, 1, 4, 4)))
    mask = mae.random_mask(2, 4, 0.5, generator=numpy.random.default_rng(0))
    patches = mae.patchify(images, 2).numpy()
    mean, std = mae.visible_statistics(mae.patchify(images, 2), mask.hidden)
    trained_on = (patches - mean.numpy()) / std.numpy() if normalized_targets else patches

    class Perfect:
        patch_size = 2

        def __call__(self, seen_images, seen_mask):
            assert seen_images is images and seen_mask is mask
            return minilean.tensor(trained_on)

    back = mae.predicted_pixels(Perfect(), images, mask, normalized_targets)
    numpy.testing.assert_allclose(back.numpy(), patches, rtol=1e-12, atol=1e-12)


# --- the network against a float64 NumPy re-implementation -------------------------------------

def _randomize(module, seed):
    """Every parameter away from its init (LayerNorm weights off 1, biases off 0), float64."""
    rng = numpy.random.default_rng(seed)
    module = module.to(dtype=numpy.float64)
    for param in module.parameters():
        param.data[...] = 0.5 * rng.standard_normal(param.shape)
    return module


def _layer_norm(x, norm, eps=1e-5):
    centred = x - x.mean(-1, keepdims=True)
    return (centred / numpy.sqrt((centred ** 2).mean(-1, keepdims=True) + eps)
            * norm.weight.numpy() + norm.bias.numpy())


def _linear(x, layer):
    return x @ layer.weight.numpy().T + layer.bias.numpy()


def _self_attention(x, attention):
    """softmax(q k^T / sqrt(d)) v per head, heads concatenated, then out_proj (PyTorch's MHA)."""
    count, length, width = x.shape
    heads = attention.num_heads
    size = width // heads
    weight, bias = attention.in_proj_weight.numpy(), attention.in_proj_bias.numpy()
    q, k, v = (x @ weight[i * width:(i + 1) * width].T + bias[i * width:(i + 1) * width]
               for i in range(3))
    split = [t.reshape(count, length, heads, size).transpose(0, 2, 1, 3) for t in (q, k, v)]
    scores = split[0] @ split[1].transpose(0, 1, 3, 2) / math.sqrt(size)  # (N, H, L, L)
    scores = numpy.exp(scores - scores.max(-1, keepdims=True))
    out = (scores / scores.sum(-1, keepdims=True)) @ split[2]  # (N, H, L, d)
    return _linear(out.transpose(0, 2, 1, 3).reshape(count, length, width), attention.out_proj)


def _gelu(x):
    return 0.5 * x * (1 + numpy.vectorize(math.erf)(x / math.sqrt(2)))


def _block(x, block):
    """Pre-norm: x + attention(norm1 x), then x + MLP(norm2 x)."""
    x = x + _self_attention(_layer_norm(x, block.norm1), block.attention)
    return x + _linear(_gelu(_linear(_layer_norm(x, block.norm2), block.hidden)), block.project)


def test_block_matches_a_float64_pre_norm_reference():
    block = _randomize(mae.Block(6, 2), 6)
    x = numpy.random.default_rng(7).standard_normal((2, 5, 6))
    numpy.testing.assert_allclose(block(minilean.tensor(x)).numpy(), _block(x, block),
                                  rtol=1e-10, atol=1e-10)


def _reference_mae(model, patches, hidden):
    """The class docstring, token by token: embed + position for every patch, encode the visible
    ones in patch order; the decoder puts each encoded token back at its own patch and the mask
    token at every hidden one, adds its positions, and maps every token to pixels."""
    count, length, _ = patches.shape
    tokens = _linear(patches, model.embed) + model.position.numpy()
    decoder_tokens = numpy.empty((count, length, model.mask_token.shape[-1]))
    for n in range(count):
        visible = numpy.flatnonzero(hidden[n] == 0)
        encoded = tokens[n:n + 1, visible]
        for block in model.encoder_blocks:
            encoded = _block(encoded, block)
        encoded = _linear(_layer_norm(encoded, model.encoder_norm), model.to_decoder)
        decoder_tokens[n, visible] = encoded[0]
        decoder_tokens[n, hidden[n] == 1] = model.mask_token.numpy()[0, 0]
    decoded = decoder_tokens + model.decoder_position.numpy()
    for block in model.decoder_blocks:
        decoded = _block(decoded, block)
    return _linear(_layer_norm(decoded, model.decoder_norm), model.to_pixels)


def test_masked_autoencoder_matches_a_float64_reference():
    minilean.manual_seed(8)
    model = _randomize(mae.MaskedAutoencoder((2, 4, 6), patch_size=2, width=6, depth=2, heads=2,
                                             decoder_width=4, decoder_depth=1, decoder_heads=2), 9)
    images = numpy.random.default_rng(10).standard_normal((3, 2, 4, 6))
    mask = model.random_mask(3, 0.5)  # 6 patches: 3 hidden, at different places per image
    patches = mae.patchify(minilean.tensor(images), 2)
    expected = _reference_mae(model, patches.numpy(), mask.hidden.numpy())
    numpy.testing.assert_allclose(model(minilean.tensor(images), mask).numpy(), expected,
                                  rtol=1e-10, atol=1e-10)


def torch_mae(torch, TorchBlock, image_shape, patch_size, width, depth, heads, decoder_width,
              decoder_depth, decoder_heads):
    """The class docstring in PyTorch, with ``TorchBlock`` (``bench_models.py``'s pre-norm
    block around torch.nn.MultiheadAttention) and He et al.'s patchify ("nchpwq->nhwpqc");
    each image's visible patches are encoded on their own, and the decoder's tokens put in
    place by index (no keep/restore arrays)."""
    nn = torch.nn
    channels, height, image_width = image_shape
    patches = (height // patch_size) * (image_width // patch_size)
    patch_pixels = patch_size * patch_size * channels

    class TorchMAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(patch_pixels, width)
            self.position = nn.Parameter(torch.zeros(1, patches, width))
            self.encoder_blocks = nn.Sequential(*[TorchBlock(width, heads) for _ in range(depth)])
            self.encoder_norm = nn.LayerNorm(width)
            self.to_decoder = nn.Linear(width, decoder_width)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
            self.decoder_position = nn.Parameter(torch.zeros(1, patches, decoder_width))
            self.decoder_blocks = nn.Sequential(*[TorchBlock(decoder_width, decoder_heads)
                                                  for _ in range(decoder_depth)])
            self.decoder_norm = nn.LayerNorm(decoder_width)
            self.to_pixels = nn.Linear(decoder_width, patch_pixels)

        @staticmethod
        def patchify(images):
            p = patch_size
            grid = images.reshape(images.shape[0], channels, height // p, p, image_width // p, p)
            return torch.einsum("nchpwq->nhwpqc", grid).reshape(images.shape[0], patches, -1)

        def forward(self, images, hidden):
            tokens = self.embed(self.patchify(images)) + self.position
            decoder_tokens = []
            for image, hides in zip(tokens, hidden):
                visible = torch.nonzero(~hides).reshape(-1)
                encoded = self.encoder_norm(self.encoder_blocks(image[visible][None]))
                filled = torch.where(hides[:, None], self.mask_token[0, 0], 0.0)
                decoder_tokens.append(filled.index_put((visible,), self.to_decoder(encoded)[0]))
            decoded = self.decoder_blocks(torch.stack(decoder_tokens) + self.decoder_position)
            return self.to_pixels(self.decoder_norm(decoded))

    return TorchMAE()


@pytest.mark.parametrize("sizes", [
    dict(image_shape=(2, 4, 6), patch_size=2, width=8, depth=2, heads=4, decoder_width=6,
         decoder_depth=2, decoder_heads=2),
    dict(image_shape=(3, 8, 8), patch_size=4, width=8, depth=1, heads=2, decoder_width=4,
         decoder_depth=0, decoder_heads=1),
    dict(image_shape=(1, 6, 6), patch_size=2, width=4, depth=0, heads=1, decoder_width=4,
         decoder_depth=1, decoder_heads=1)])
@pytest.mark.parametrize("mask_kind", ["random", "block"])
@pytest.mark.parametrize("per_patch_norm", [False, True])
def test_training_loss_and_held_out_pixels_agree_with_torch(rng, sizes, mask_kind,
                                                            per_patch_norm, monkeypatch):
    """``mae_loss`` as a training step takes it (random or block mask, targets optionally
    normalised per patch: population variance + 1e-6, as ``patch_statistics`` says), and every
    parameter's gradient, against the PyTorch twin in float64; with --per-patch-norm also the
    held-out pixels, the prediction scaled back by the visible patches' pooled statistics."""
    torch = pytest.importorskip("torch")
    from torch_twins import assert_close, assert_same_loss_and_gradients, copied_into_torch
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parent.parent / "benchmarks"))
    from bench_models import TorchBlock

    minilean.manual_seed(1)
    model = _randomize(mae.MaskedAutoencoder(**sizes).to(dtype=numpy.float64),
                       int(rng.integers(1 << 30)))
    twin = copied_into_torch(model, torch_mae(torch, TorchBlock, **sizes))
    images = rng.uniform(0, 1, (3,) + sizes["image_shape"])
    mask = model.random_mask(3, 0.6) if mask_kind == "random" else model.block_mask(3)
    hidden = torch.from_numpy(mask.hidden.numpy() > 0.5)
    t_images = torch.from_numpy(images)

    def torch_loss():
        target = twin.patchify(t_images)
        if per_patch_norm:
            target = (target - target.mean(-1, keepdim=True)) / \
                (target.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
        patch_losses = ((twin(t_images, hidden) - target) ** 2).mean(-1)
        return (patch_losses * hidden).sum() / hidden.sum()

    assert_same_loss_and_gradients(
        model, twin, lambda: mae.mae_loss(model, minilean.tensor(images), mask, per_patch_norm),
        torch_loss)
    with minilean.no_grad(), torch.no_grad():
        pixels = mae.predicted_pixels(model, minilean.tensor(images), mask, per_patch_norm)
        expected, patches = twin(t_images, hidden), twin.patchify(t_images)
        if per_patch_norm:
            visible = (~hidden)[..., None].double()
            count = visible.sum((1, 2), keepdim=True) * patches.shape[-1]
            mean = (patches * visible).sum((1, 2), keepdim=True) / count
            variance = (((patches - mean) * visible) ** 2).sum((1, 2), keepdim=True) / count
            expected = expected * (variance + 1e-6).sqrt() + mean
    assert_close(pixels.numpy(), expected.numpy(), 1e-12)



def test_without_decoder_blocks_each_token_stays_at_its_patch():
    """With no decoder blocks a token sees only itself: a visible patch's prediction does not
    depend on the mask token, a hidden patch's depends on the mask token and not on the image."""
    minilean.manual_seed(11)
    model = _randomize(mae.MaskedAutoencoder((1, 4, 4), patch_size=1, width=4, depth=1, heads=2,
                                             decoder_width=4, decoder_depth=0), 12)
    rng = numpy.random.default_rng(13)
    images = minilean.tensor(rng.standard_normal((2, 1, 4, 4)))
    mask = model.random_mask(2, 0.75)  # 12 of 16 hidden: more hidden than visible
    hidden = mask.hidden.numpy() == 1
    before = model(images, mask).numpy()
    model.mask_token.data[...] += rng.standard_normal(4)  # not a constant: LayerNorm removes those
    after = model(images, mask).numpy()
    numpy.testing.assert_array_equal(after[~hidden], before[~hidden])
    assert (numpy.abs(after[hidden] - before[hidden]).max(-1) > 1e-6).all()
    other = model(minilean.tensor(rng.standard_normal((2, 1, 4, 4))), mask).numpy()
    numpy.testing.assert_array_equal(other[hidden], after[hidden])
    assert (numpy.abs(other[~hidden] - after[~hidden]).max(-1) > 1e-6).all()


@pytest.mark.parametrize("grid", [2, 3, 4, 5, 7])
def test_model_block_mask_hides_the_top_left_quadrant_on_any_grid(grid):
    # --mask block is documented as TorchLean's quadrant; on an odd grid (--image-size 20
    # --patch-size 4 gives 5x5 patches) blocks of half the grid rounded down hid the diagonal
    model = mae.MaskedAutoencoder((3, 4 * grid, 4 * grid), patch_size=4, width=8, depth=1,
                                  heads=2, decoder_width=4)
    hidden = model.block_mask(1).hidden.numpy()[0].reshape(grid, grid)
    side = -(-grid // 2)
    expected = numpy.zeros((grid, grid))
    expected[:side, :side] = 1
    numpy.testing.assert_array_equal(hidden, expected)


@pytest.mark.parametrize("grid", [(2, 4), (4, 2), (3, 5), (4, 8)])
def test_model_block_mask_hides_the_top_left_quadrant_on_a_non_square_grid(grid):
    # --x images need not be square; blocks of half the grid's height on both axes hid a strip
    # of columns (2x4 patches: the first column) instead of the quadrant
    rows, cols = grid
    model = mae.MaskedAutoencoder((3, 4 * rows, 4 * cols), patch_size=4, width=8, depth=1,
                                  heads=2, decoder_width=4)
    hidden = model.block_mask(1).hidden.numpy()[0].reshape(rows, cols)
    expected = numpy.zeros((rows, cols))
    expected[:-(-rows // 2), :-(-cols // 2)] = 1
    numpy.testing.assert_array_equal(hidden, expected)


def test_block_mask_with_rectangular_blocks_uses_each_axis_side():
    # blocks (1, 2) on a 2x4 grid: 2 blocks per row, block index r * 2 + c // 2
    hidden = mae.block_mask(1, 2, 4, block=(1, 2), period=4).hidden.numpy()[0]
    numpy.testing.assert_array_equal(hidden.reshape(2, 4), [[1, 1, 0, 0], [0, 0, 0, 0]])


def test_wrong_images_masks_and_patch_sizes_are_named():
    """A patch size not dividing the image silently dropped its last rows; images of another
    size or count than the model's and the mask's failed inside NumPy, naming neither."""
    with pytest.raises(ValueError, match="patch size 4 must divide the image size 18x18"):
        mae.MaskedAutoencoder((3, 18, 18), patch_size=4)
    for height, width in ((16, 18), (18, 16)):  # either side alone
        with pytest.raises(ValueError, match=f"patch size 4 must divide the image size "
                                             f"{height}x{width}"):
            mae.MaskedAutoencoder((3, height, width), patch_size=4)
        with pytest.raises(ValueError, match=f"patch size 4 must divide the image size "
                                             f"{height}x{width}"):
            mae.patchify(minilean.rand(1, 3, height, width), 4)
    model = mae.MaskedAutoencoder((1, 4, 4), patch_size=2, width=4, depth=1, heads=2,
                                  decoder_width=4, decoder_depth=1, decoder_heads=2)
    mask = model.random_mask(2, 0.5)
    with pytest.raises(ValueError, match=r"images of shape \(N, 1, 4, 4\), got \(2, 1, 8, 8\)"):
        model(minilean.rand(2, 1, 8, 8), mask)
    with pytest.raises(ValueError, match="the mask is for 2 images, got 3"):
        model(minilean.rand(3, 1, 4, 4), mask)
    for patches in (2, 9):  # fewer failed in a broadcast, more in an index
        with pytest.raises(ValueError, match=f"the mask is for {patches} patches, the model "
                                             "cuts 4"):
            model(minilean.rand(2, 1, 4, 4), mae.random_mask(2, patches, 0.5))
    assert model(minilean.rand(2, 1, 4, 4), mask).shape == (2, 4, 4)



@pytest.mark.parametrize("name, value, message", [
    ("patch_size", 0, "patch_size must be an int >= 1, got 0"),  # was a ZeroDivisionError
    ("patch_size", -2, "patch_size must be an int >= 1, got -2"),  # built on a (-4, -4) grid
    ("patch_size", True, "patch_size must be an int >= 1, got True"),
    ("width", 0, "width must be an int >= 1, got 0"),
    ("decoder_width", 2.0, "decoder_width must be an int >= 1, got 2.0"),
    ("heads", 0, "heads must be an int >= 1, got 0"),
    ("decoder_heads", -1, "decoder_heads must be an int >= 1, got -1"),
    ("depth", -1, "depth must be an int >= 0, got -1"),  # built no encoder blocks
    ("decoder_depth", 1.5, "decoder_depth must be an int >= 0, got 1.5"),
])
def test_sizes_that_are_no_sizes_are_refused_where_the_model_is_built(name, value, message):
    """patch_size 0 divided by zero, -2 built a model on a (-4, -4) grid that failed at its
    first forward, and a negative depth silently built no blocks."""
    sizes = dict(patch_size=2, width=4, depth=1, heads=2, decoder_width=4, decoder_depth=1,
                 decoder_heads=2)
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
        mae.MaskedAutoencoder((1, 8, 8), **{**sizes, name: value})
    if name == "patch_size":
        with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
            mae.patchify(minilean.rand(1, 1, 8, 8), value)
    assert mae.MaskedAutoencoder((1, 8, 8), **{**sizes, "depth": 0}).grid == (4, 4)

def test_8_bit_images_are_refused_as_the_autoencoders_refuse_them():
    """A uint8 batch gave a finite loss on the wrong scale (22431.7)."""
    model = tiny_model()
    pixels = minilean.tensor(numpy.full((2, 1, 4, 4), 200, numpy.uint8))
    with pytest.raises(TypeError, match=r"^MaskedAutoencoder takes float images in \[0, 1\], "
                                        r"got uint8 \(divide 8-bit pixels by 255\)$"):
        mae.mae_loss(model, pixels, model.random_mask(2, 0.5))


@pytest.mark.parametrize("patches", [0, 1])
def test_a_mask_over_fewer_than_two_patches_is_refused(patches):
    """hidden_count(1, 0.5) was 0, outside the 1..L-1 of its docstring: one patch cannot be
    both hidden and seen, and a mask hiding nothing asks nothing of the model."""
    with pytest.raises(ValueError, match=f"^a mask needs at least 2 patches, one hidden and one "
                                         f"seen, got {patches}$"):
        mae.hidden_count(patches, 0.5)
    with pytest.raises(ValueError, match="at least 2 patches"):
        mae.random_mask(3, patches, 0.5)
    assert mae.hidden_count(2, 0.5) == 1 and mae.hidden_count(2, 0.99) == 1
