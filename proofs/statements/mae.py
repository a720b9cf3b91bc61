"""Masked-autoencoder statements (TorchLean ``SelfSupervised/{Masking,MAE}.lean``), stated over
the real-valued masked MSE minilean trains, ``masked_mse(p, t, m) = sum_i m_i l_i / sum_i m_i``
with l_i the per-patch MSE (``patch_losses``), not over TorchLean's natural numbers.

The masked sum S(m) = sum_{i hidden} l_i is TorchLean's maskedLoss / maeLoss over the hidden
index list; here S(m) is read off the engine as masked_mse * (number hidden). Identities are
checked against mpmath within gamma_{P + N L + 4} sum_i m_i l_i (per-patch MSE: difference,
square, P - 1 additions, division; the masked sum: product by m, N L - 1 additions over the
batch of N; the final division, and for S the product back). In the sum and permutation laws
each side is checked against mpmath, where the two sides agree exactly, so the engine's two
sides agree within the sum of their bounds (a comparison of the two would add nothing). Zero
statements are exact.
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, host, mp, reals, underflow

MAE = "minilean.models.mae"


@st.composite
def _patches(draw, hidden_equal=False):
    """prediction, target (N, L, P), N = 1..3 (masked_mse is one mean over the whole batch,
    which a batch of one cannot tell from a sum of per-image means), and a 0/1 hidden mask
    (N, L) hiding at least one patch of every image."""
    batch, count, size = draw(st.integers(1, 3)), draw(st.integers(2, 6)), draw(st.integers(1, 4))
    cells = batch * count
    values = st.lists(reals(-2, 2), min_size=cells * size, max_size=cells * size)
    prediction = numpy.asarray(draw(values)).reshape(batch, count, size)
    target = numpy.asarray(draw(values)).reshape(batch, count, size)
    hidden = numpy.asarray(draw(st.lists(st.booleans(), min_size=cells, max_size=cells)))
    hidden = hidden.reshape(batch, count)
    for row in range(batch):
        hidden[row, draw(st.integers(0, count - 1))] = True
    if hidden_equal:
        prediction[hidden] = target[hidden]
    split = numpy.asarray(draw(st.lists(st.booleans(), min_size=cells, max_size=cells)))
    permutation = numpy.asarray(draw(st.permutations(range(count))))
    return {"prediction": prediction, "target": target, "hidden": hidden.astype(float),
            "split": split.reshape(batch, count), "permutation": permutation}


def _pinned_patches(hidden_equal=False):
    """The masked-MSE statements' pinned example: two images hiding 2 and 1 of 3 patches, patch
    losses 0.625, 2.03, 0.625 and 0.25, 2.5, 2.25 (target 0), so that the mean over the
    batch's hidden patches, a sum of per-image means, a mean over every patch, over the
    visible ones or a sum divided by every patch all part."""
    prediction = numpy.asarray([[[1.0, -0.5], [0.25, 2.0], [-1.0, 0.5]],
                                [[0.5, 0.5], [-2.0, 1.0], [1.5, -1.5]]])
    target, hidden = numpy.zeros_like(prediction), numpy.asarray([[1, 0, 1], [0, 1, 0]]) == 1
    if hidden_equal:
        prediction[hidden] = target[hidden]
    return {"prediction": prediction, "target": target, "hidden": hidden.astype(float),
            "split": numpy.asarray([[True, False, False], [False, True, True]]),
            "permutation": numpy.asarray([2, 0, 1])}


def _patch_losses_mp(prediction, target):
    """l_{n,i}, flattened in the order of hidden.reshape(-1)."""
    return [mpmath.fsum((a - b) ** 2 for a, b in zip(mp(p), mp(t))) / len(p)
            for p, t in zip(prediction.reshape(-1, prediction.shape[-1]),
                            target.reshape(-1, target.shape[-1]))]


def _masked_mse(dtype, prediction, target, hidden):
    from minilean.models import mae
    return float(host(mae.masked_mse(engine(prediction, dtype), engine(target, dtype),
                                     engine(hidden, dtype))))


def _check_masked_sum(check, prediction, target, hidden, what):
    """S(m) = sum_{i hidden} l_i on the engine (masked_mse * count) against mpmath; an empty m
    is not run (masked_mse of an empty mask is the nil statements' case)."""
    if not hidden.any():
        return
    losses = _patch_losses_mp(prediction, target)
    exact = mpmath.fsum(l for l, m in zip(losses, hidden.reshape(-1)) if m)
    count, size = prediction.shape[0] * prediction.shape[1], prediction.shape[2]
    for dtype in ENGINE_DTYPES:
        computed = _masked_mse(dtype, prediction, target, hidden) * hidden.sum()
        bound = gamma(size + count + 4, dtype) * exact + underflow(size + count + 4, dtype)
        check.close(computed, exact, bound, f"{what} ({dtype.__name__})")


def _additivity_checks(check, prediction, target, hidden, split):
    """S(xs ++ ys) = S(xs) + S(ys), the hidden set cut in two by ``split``: each sum against
    mpmath."""
    _check_masked_sum(check, prediction, target, hidden, "S(xs ++ ys)")
    for part in (hidden * split, hidden * (1 - split)):
        _check_masked_sum(check, prediction, target, part, "S(part)")


def _permutation_checks(check, prediction, target, hidden, permutation):
    """S is invariant under a joint permutation of the patches (the drawn one and the
    reversal): the original sum and each permuted one against mpmath."""
    _check_masked_sum(check, prediction, target, hidden, "S")
    for order in (permutation, numpy.arange(hidden.shape[1])[::-1]):
        _check_masked_sum(check, prediction[:, order], target[:, order], hidden[:, order],
                          "S(permuted)")


@statement("maskedLoss_cons", about=(f"{MAE}.masked_mse",), given=_patches(),
           examples=[_pinned_patches()])
def masked_loss_cons(check, prediction, target, hidden, split, permutation):
    """maskedLoss(i :: idxs) = l_i + maskedLoss(idxs): hiding one more patch adds its loss."""
    first = numpy.zeros(hidden.size)
    first[numpy.flatnonzero(hidden)[0]] = 1
    first = first.reshape(hidden.shape)
    _additivity_checks(check, prediction, target, hidden, first)


@statement("maskedLoss_append", about=(f"{MAE}.masked_mse",), given=_patches(),
           examples=[_pinned_patches()])
def masked_loss_append(check, prediction, target, hidden, split, permutation):
    """maskedLoss(xs ++ ys) = maskedLoss(xs) + maskedLoss(ys) for disjoint hidden sets."""
    _additivity_checks(check, prediction, target, hidden, split)


@statement("maskedLoss_reverse", about=(f"{MAE}.masked_mse",), given=_patches(),
           examples=[_pinned_patches()])
def masked_loss_permutation(check, prediction, target, hidden, split, permutation):
    """maskedLoss(reverse idxs) = maskedLoss(idxs); more generally masked_mse is invariant
    under any joint permutation of the patches (checked for a drawn one and the reversal)."""
    _permutation_checks(check, prediction, target, hidden, permutation)


@statement("maeLoss_eq_zero_of_patch_losses_zero", about=(f"{MAE}.masked_mse",),
           given=_patches(hidden_equal=True), relaxed=_patches(),
           examples=[_pinned_patches(hidden_equal=True)])
def mae_loss_zero(check, prediction, target, hidden, split, permutation):
    """prediction = target on every hidden patch (visible ones arbitrary)  =>  maeLoss = 0."""
    for dtype in ENGINE_DTYPES:
        check.close(_masked_mse(dtype, prediction, target, hidden), mp(0), 0, dtype.__name__)


@statement("mae_is_predictive_view_loss", about=(f"{MAE}.masked_mse",), given=_patches(),
           examples=[_pinned_patches()])
def mae_predictive_view(check, prediction, target, hidden, split, permutation):
    """masked_mse(p, t, m) = MSE of the hidden patches alone (the predictive-view loss with the
    identity target encoder): the mean over hidden i of l_i."""
    losses = _patch_losses_mp(prediction, target)
    chosen = [l for l, m in zip(losses, hidden.reshape(-1)) if m]
    exact = mpmath.fsum(chosen) / len(chosen)
    count, size = prediction.shape[0] * prediction.shape[1], prediction.shape[2]
    for dtype in ENGINE_DTYPES:
        check.close(_masked_mse(dtype, prediction, target, hidden), exact,
                    gamma(size + count + 3, dtype) * exact
                    + underflow(size + count + 3, dtype), dtype.__name__)


@statement("exactReconstruction_identity", about=(f"{MAE}.patchify", f"{MAE}.unpatchify"),
           given={"shape": st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3),
                                     st.integers(1, 3), st.integers(1, 3)),
                  "seed": st.integers(0, 2 ** 16)},
           # pinned: patches of 2 x 2 (a patch of one pixel, p = 1, has no rows and columns to
           # mix up), on 2 channels
           examples=[{"shape": (1, 2, 2, 3, 2), "seed": 0}])
def exact_reconstruction(check, shape, seed):
    """unpatchify(patchify(x)) = x exactly (patches are a relabelling of the pixels; which
    patch holds which pixels is patchify_layout's statement)."""
    from minilean.models import mae
    count, channels, rows, cols, p = shape
    images = numpy.random.default_rng(seed).standard_normal((count, channels, rows * p, cols * p))
    for dtype in ENGINE_DTYPES:
        patches = mae.patchify(engine(images, dtype), p)
        back = mae.unpatchify(patches, p, channels, rows * p, cols * p)
        check.close(host(back), mp(images.astype(dtype)), 0, f"round trip ({dtype.__name__})")


@statement("patchify_layout", about=(f"{MAE}.patchify",),
           given={"shape": st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3),
                                     st.integers(1, 3), st.integers(2, 3)),
                  "seed": st.integers(0, 2 ** 16)})
def patchify_layout(check, shape, seed):
    """patchify(x)[n, l, (i p + j) C + c] = x[n, c, r p + i, q p + j] with (r, q) = (l // cols,
    l % cols): the documented order (row in patch, column in patch, channel), which the round
    trip cannot tell from another order that unpatchify undoes alike (p >= 2 drawn)."""
    from minilean.models import mae
    count, channels, rows, cols, p = shape
    images = numpy.random.default_rng(seed).standard_normal((count, channels, rows * p, cols * p))
    expected = numpy.empty((count, rows * cols, p * p * channels))
    for r in range(rows):
        for q in range(cols):
            for i in range(p):
                for j in range(p):
                    for c in range(channels):
                        expected[:, r * cols + q, (i * p + j) * channels + c] = \
                            images[:, c, r * p + i, q * p + j]
    for dtype in ENGINE_DTYPES:
        patches = host(mae.patchify(engine(images, dtype), p))
        check.close(patches, mp(expected.astype(dtype)), 0, f"layout ({dtype.__name__})")


@mutant("patch flattened (column, row, channel)", f"{MAE}.patchify",
        caught_by=["patchify_layout"])
def patchify_column_major(original):
    """patchify flattens each patch column by column (j, i, c) instead of row by row."""
    def broken(images, patch_size):
        count, channels, height, width = images.shape
        rows, cols = height // patch_size, width // patch_size
        # (N, C, rows, p, cols, p) -> (N, rows, cols, p(j), p(i), C)
        grid = images.reshape(count, channels, rows, patch_size, cols, patch_size)
        return grid.permute(0, 2, 4, 5, 3, 1).reshape(count, rows * cols,
                                                      patch_size * patch_size * channels)
    return broken


@mutant("patchify in float32", f"{MAE}.patchify",
        caught_by=["exactReconstruction_identity", "patchify_layout"])
def patchify_float32(original):
    """patchify casts its patches to float32 (a hard-coded dtype): float64 images keep their
    layout but lose their low bits, which only an exact comparison sees."""
    return lambda images, patch_size: original(images, patch_size).float()


@statement("complement_selected_iff", about=(f"{MAE}.random_mask", f"{MAE}.block_mask"),
           given={"count": st.integers(1, 3), "patches": st.integers(2, 12),
                  "ratio": st.floats(0.05, 0.95), "seed": st.integers(0, 99)},
           # pinned: four patches, whose block mask is the 2 x 2 grid's
           examples=[{"count": 2, "patches": 4, "ratio": 0.5, "seed": 0}])
def complement_selected(check, count, patches, ratio, seed):
    """A patch is visible (in keep) iff it is not hidden; random masks hide exactly
    hidden_count(L, ratio) = round(ratio L) clipped to 1..L-1 patches; restore inverts the
    [visible, hidden] order."""
    import minilean
    from minilean.models import mae
    minilean.manual_seed(seed)
    masks = [mae.random_mask(count, patches, ratio)]
    if patches % 2 == 0 and patches >= 4:
        masks.append(mae.block_mask(count, 2, patches // 2, block=1, period=2))
    for mask in masks:
        hidden = host(mask.hidden)
        keep = numpy.asarray(mask.keep)
        for row in range(count):
            visible = numpy.zeros(patches, dtype=bool)
            visible[keep[row]] = True
            check.holds((visible == (hidden[row] == 0)).all(), "keep is not the complement")
            order = numpy.concatenate([keep[row], numpy.flatnonzero(hidden[row])])
            check.holds((order[numpy.asarray(mask.restore)[row]] == numpy.arange(patches)).all(),
                        "restore does not undo the [visible, hidden] order")
    check.holds((host(masks[0].hidden).sum(1) == mae.hidden_count(patches, ratio)).all(),
                "random_mask hid the wrong number of patches")


def _block_mask_definition(rows, cols, block, period, offset):
    """The docstring's mask, patch by patch: (r, c) hidden iff ((r // block) ceil(cols / block)
    + c // block) mod period = offset, in row-major patch order."""
    blocks_per_row = (cols + block - 1) // block
    return numpy.asarray([((r // block) * blocks_per_row + c // block) % period == offset
                          for r in range(rows) for c in range(cols)])


@statement("blockMask_eq_definition", about=(f"{MAE}.block_mask",),
           given={"count": st.integers(1, 2), "rows": st.integers(1, 7),
                  "cols": st.integers(1, 7), "block": st.integers(1, 4),
                  "period": st.integers(1, 5)}, max_examples=30,
           # pinned: blocks of 2 across 3 columns, the last cut short, so that ceil(w / block)
           # = 2 blocks per row, floor 1, on a grid of two block rows and a period of 2, for a
           # batch of two; and a period of 1, whose offset 0 hides every patch (refused)
           examples=[{"count": 2, "rows": 4, "cols": 3, "block": 2, "period": 2},
                     {"count": 1, "rows": 2, "cols": 2, "block": 1, "period": 1}])
def block_mask_definition(check, count, rows, cols, block, period):
    """block_mask(N, h, w, block, period, offset) hides patch (r, c) of every image iff
    ((r // block) ceil(w / block) + c // block) mod period = offset (every offset drawn
    period allows), blocks not dividing the grid included, and refuses (ValueError) exactly
    the masks that would hide every patch or none."""
    from minilean.models import mae
    for offset in range(period):
        expected = _block_mask_definition(rows, cols, block, period, offset)
        degenerate = expected.all() or not expected.any()
        try:
            mask = mae.block_mask(count, rows, cols, block=block, period=period, offset=offset)
        except ValueError:
            mask = None
        check.holds((mask is None) == degenerate,
                    f"offset {offset}: refused {mask is None}, definition hides "
                    f"{int(expected.sum())} of {rows * cols} patches")
        if degenerate:
            continue
        hidden = host(mask.hidden)
        check.holds(hidden.shape == (count, rows * cols), f"offset {offset}: shape {hidden.shape}")
        for row in range(count):
            check.holds(((hidden[row] == 1) == expected).all() and set(hidden[row]) <= {0, 1},
                        f"offset {offset}, image {row}: hidden {hidden[row].astype(int)}, "
                        f"definition {expected.astype(int)}")


@mutant("block mask without its guard", f"{MAE}.block_mask",
        caught_by=["blockMask_eq_definition"])
def block_mask_unguarded(original):
    """block_mask returns the mask that hides every patch or none instead of refusing it (the
    encoder would get no token, or the loss nothing to score)."""
    from minilean.models import mae

    def broken(count, rows, cols, block=2, period=4, offset=0, device="cpu"):
        r, c = numpy.meshgrid(numpy.arange(rows), numpy.arange(cols), indexing="ij")
        blocks_per_row = -(-cols // block)
        hidden = (((r // block) * blocks_per_row + c // block) % period == offset).reshape(-1)
        return mae._mask_from_hidden(numpy.broadcast_to(hidden, (count, rows * cols)).copy(),
                                     device)
    return broken


@mutant("block mask of one image", f"{MAE}.block_mask", caught_by=["blockMask_eq_definition"])
def block_mask_one_row(original):
    """block_mask returns its mask for one image, (1, L), not broadcast to the batch's count."""
    return lambda count, rows, cols, block=2, period=4, offset=0, device="cpu": original(
        1, rows, cols, block, period, offset, device)


def _round_half_even(x):
    """The integer nearest the mpf x, ties to the even one (Python's round)."""
    floor = int(mpmath.floor(x))
    fraction = x - floor
    if fraction > mpmath.mpf(1) / 2 or (fraction == mpmath.mpf(1) / 2 and floor % 2):
        return floor + 1
    return floor


def _ratios():
    """Mask ratios in (0, 1): float32 reals, and dyadic k / 2^m, whose products with L often
    end in exactly .5 (the ties)."""
    dyadic = st.integers(1, 10).flatmap(lambda m: st.integers(1, 2 ** m - 1).map(
        lambda k: k / 2 ** m))
    return st.one_of(reals(0, 1).filter(lambda r: 0 < r < 1), dyadic)


@statement("hiddenCount_eq_round", about=(f"{MAE}.hidden_count",),
           given={"patches": st.one_of(st.integers(2, 64), st.integers(2, 2 ** 16)),
                  "ratio": _ratios()}, max_examples=50,
           # pinned: r L = 3.75, where rounding (4) and truncating (3) part, clamped by neither
           examples=[{"patches": 5, "ratio": 0.75}])
def hidden_count_round(check, patches, ratio):
    """hidden_count(L, r) = min(max(round(r L), 1), L - 1) for every L >= 2 and 0 < r < 1:
    r L rounded to the nearest integer (ties to even, as Python's round), in mpmath exactly
    (a float32 r times L < 2^17 is exact in float64, so no rounding precedes the round)."""
    from minilean.models import mae
    exact = mp(ratio) * patches
    check.holds(exact == mp(ratio * patches), f"r L = {ratio} * {patches} is not exact")
    expected = min(max(_round_half_even(exact), 1), patches - 1)
    computed = mae.hidden_count(patches, ratio)
    check.holds(computed == expected and isinstance(computed, int),
                f"hidden_count({patches}, {ratio!r}) = {computed!r}, round(r L) clamped = "
                f"{expected} (r L = {mpmath.nstr(exact, 20)})")


@mutant("masked MSE over every patch", f"{MAE}.masked_mse",
        caught_by=["maeLoss_eq_zero_of_patch_losses_zero", "mae_is_predictive_view_loss"])
def masked_mse_all_patches(original):
    """masked_mse averages the loss over all patches, ignoring the mask."""
    from minilean.models import mae
    return lambda prediction, target, hidden: mae.patch_losses(prediction, target).mean()


@mutant("masked MSE over the visible patches", f"{MAE}.masked_mse",
        caught_by=["maeLoss_eq_zero_of_patch_losses_zero", "mae_is_predictive_view_loss"])
def masked_mse_visible(original):
    """masked_mse scores the visible patches instead of the hidden ones."""
    return lambda prediction, target, hidden: original(prediction, target, 1 - hidden)


# --- the empty mask, and maeLoss over the model's own predictions -------------------------

@st.composite
def _empty_or_not(draw, empty):
    example = draw(_patches())
    if empty:
        example["hidden"] = numpy.zeros_like(example["hidden"])
    return example


@statement("maskedLoss_nil", about=(f"{MAE}.masked_mse",), given=_empty_or_not(True),
           relaxed=_empty_or_not(False))
def masked_loss_nil(check, prediction, target, hidden, split, permutation):
    """maskedLoss([]) = 0: a mask hiding no patch scores exactly 0 (masked_mse divides by
    max(count, 1), so the empty mean is 0 rather than 0/0, as TorchLean's empty sum)."""
    for dtype in ENGINE_DTYPES:
        check.close(_masked_mse(dtype, prediction, target, hidden), mp(0), 0, dtype.__name__)


MAE_IMAGE, MAE_PATCH = (1, 4, 4), 2  # a 2x2 grid of 2x2 patches


def _mae_model(seed):
    import minilean
    from minilean.models import mae
    minilean.manual_seed(seed)
    return mae.MaskedAutoencoder(MAE_IMAGE, MAE_PATCH, width=4, depth=1, heads=1,
                                 decoder_width=4, decoder_depth=1, decoder_heads=1)


@st.composite
def _mae_example(draw, empty=False):
    patches = (MAE_IMAGE[1] // MAE_PATCH) * (MAE_IMAGE[2] // MAE_PATCH)
    batch = draw(st.integers(1, 3))  # mae_loss is one mean over the batch: N = 1 cannot show it
    pixels = batch * 16
    image = numpy.asarray(draw(st.lists(reals(0, 1), min_size=pixels, max_size=pixels))).reshape(
        (batch,) + MAE_IMAGE)
    hidden = numpy.asarray(draw(st.lists(st.booleans(), min_size=patches, max_size=patches)))
    permutation = numpy.asarray(draw(st.permutations(range(patches))))
    # at least one patch hidden (none for the empty mask), and always one seen: the encoder
    # needs a visible token
    hidden[permutation[0]], hidden[permutation[1]] = not empty, False
    if empty:
        hidden[:] = False
    # every image hides as many patches (the model's masks do), each its own choice of them
    rows = [hidden[numpy.asarray(draw(st.permutations(range(patches))))] for _ in range(batch)]
    return {"image": image, "hidden": numpy.stack(rows), "seed": draw(st.integers(0, 2 ** 16)),
            "split": numpy.asarray(draw(st.lists(st.booleans(), min_size=batch * patches,
                                                 max_size=batch * patches))).reshape(
                                                     batch, patches),
            "permutation": permutation}


# pinned for the statements over the model's own predictions: a batch of two, each image
# hiding two of its four patches
PINNED_MAE_EXAMPLE = {"image": numpy.linspace(0, 1, 32).reshape((2,) + MAE_IMAGE),
                      "hidden": numpy.asarray([[True, False, False, True],
                                               [False, True, True, False]]),
                      "seed": 0, "split": numpy.asarray([[True, False, True, False],
                                                          [False, True, False, True]]),
                      "permutation": numpy.asarray([3, 1, 0, 2])}


def _mae_terms(check, image, hidden, seed):
    """The model's prediction and target patches (float32 host arrays) under the mask, after
    checking bit for bit that mae_loss is masked_mse of exactly these, and with
    normalize_targets (training's --per-patch-norm) masked_mse of the prediction and
    normalize_patches of these targets."""
    from minilean.models import mae
    model, images = _mae_model(seed), engine(image, numpy.float32)
    mask = mae._mask_from_hidden(hidden, "cpu")
    prediction, target = model(images, mask), mae.patchify(images, MAE_PATCH)
    check.close(host(mae.mae_loss(model, images, mask)),
                mp(host(mae.masked_mse(prediction, target, mask.hidden))), 0,
                "mae_loss = masked_mse(model(x, mask), patchify(x), hidden)")
    check.close(host(mae.mae_loss(model, images, mask, normalize_targets=True)),
                mp(host(mae.masked_mse(prediction, mae.normalize_patches(target), mask.hidden))),
                0, "mae_loss(normalize_targets) = masked_mse(model(x, mask), "
                   "normalize_patches(patchify(x)), hidden)")
    return host(prediction), host(target), host(mask.hidden)


@statement("maeLoss_nil", about=(f"{MAE}.mae_loss", f"{MAE}.masked_mse"),
           given={"example": _mae_example(empty=True)}, relaxed={"example": _mae_example()},
           max_examples=10)
def mae_loss_nil(check, example):
    """maeLoss([], target, pred) = 0: the MAE's training loss under a mask that hides no patch
    (the model still runs: it sees every patch and fills no mask token) is exactly 0."""
    prediction, target, hidden = _mae_terms(check, example["image"], example["hidden"],
                                            example["seed"])
    for dtype in ENGINE_DTYPES:
        check.close(_masked_mse(dtype, prediction, target, hidden), mp(0), 0, dtype.__name__)


@statement("maeLoss_append", about=(f"{MAE}.mae_loss", f"{MAE}.masked_mse"),
           given={"example": _mae_example()}, max_examples=10,
           examples=[{"example": PINNED_MAE_EXAMPLE}])
def mae_loss_append(check, example):
    """maeLoss(xs ++ ys) = maeLoss(xs) + maeLoss(ys) over the MAE's own predictions and
    patchified targets (prediction fixed by the mask xs ++ ys the model ran with), as sums
    S = masked_mse * count."""
    prediction, target, hidden = _mae_terms(check, example["image"], example["hidden"],
                                            example["seed"])
    _additivity_checks(check, prediction, target, hidden, example["split"])


@statement("maeLoss_reverse", about=(f"{MAE}.mae_loss", f"{MAE}.masked_mse"),
           given={"example": _mae_example()}, max_examples=10,
           examples=[{"example": PINNED_MAE_EXAMPLE}])
def mae_loss_reverse(check, example):
    """maeLoss(reverse idxs) = maeLoss(idxs) over the MAE's own predictions and targets: the
    hidden-patch sum is invariant under reversing (and any joint permutation of) the patches."""
    prediction, target, hidden = _mae_terms(check, example["image"], example["hidden"],
                                            example["seed"])
    _permutation_checks(check, prediction, target, hidden, example["permutation"])


def _hidden_pixels(hidden):
    """The pixels (N, 1, 4, 4) of the hidden patches (N, 4) of MAE_IMAGE's 2x2 grid."""
    grid = numpy.asarray(hidden, dtype=bool).reshape(-1, 2, 2)
    return grid.repeat(MAE_PATCH, 1).repeat(MAE_PATCH, 2)[:, None]


def _unseen_given(replaced):
    return {"example": _mae_example(), "fill": st.integers(0, 2 ** 16),
            "replaced": st.just(replaced)}


@statement("maeModel_hidden_pixels_unseen",
           about=(f"{MAE}.MaskedAutoencoder:forward", f"{MAE}.MaskedAutoencoder:encode"),
           given=_unseen_given("hidden"), relaxed=_unseen_given("every"), max_examples=10,
           examples=[{"example": PINNED_MAE_EXAMPLE, "fill": 0, "replaced": "hidden"}])
def mae_hidden_pixels_unseen(check, example, fill, replaced):
    """model(x', m) = model(x, m) bit for bit for every x' equal to x on the visible patches:
    the model sees a hidden patch's pixels nowhere (its encoder takes the visible tokens alone,
    mask.keep, and the decoder a mask token in each hidden place). The form here of TorchLean's
    mask certificates (imagePatchMask_hidden_pixel_eq_zero, BlockMask.hidden_scalar_eq_zero and
    their visible_*_eq_input): its masked input, hidden pixels 0 and visible ones as given, and
    hidden pixels of any other values give the prediction of x itself, in float32 and float64,
    for a batch whose images hide patches of their own."""
    import minilean
    from minilean.models import mae
    image, hidden = example["image"], example["hidden"]
    pixels = _hidden_pixels(hidden) if replaced == "hidden" else numpy.ones(image.shape, bool)
    others = numpy.random.default_rng(fill).uniform(-1, 2, image.shape)
    inputs = {"TorchLean's masked input (hidden pixels 0)": numpy.where(pixels, 0.0, image),
              "hidden pixels of other values": numpy.where(pixels, others, image)}
    for dtype in ENGINE_DTYPES:
        model = _mae_model(example["seed"]).to(dtype=dtype)
        mask = mae._mask_from_hidden(hidden, "cpu")
        with minilean.no_grad():
            expected = host(model(engine(image, dtype), mask))
            for label, changed in inputs.items():
                check.close(host(model(engine(changed, dtype), mask)), mp(expected), 0,
                            f"{label} ({dtype.__name__})")


@mutant("MAE encoder keeps the visible tokens after its blocks",
        f"{MAE}.MaskedAutoencoder.encode", caught_by=["maeModel_hidden_pixels_unseen"])
def encoder_gathers_after_blocks(original):
    """encode runs its blocks over every patch's token and keeps the visible ones after them
    (``gather_tokens`` one line too late): the shapes are those of the right encoder, but the
    visible tokens attend to the hidden patches, whose pixels the model then sees."""
    from minilean.models import mae

    def broken(self, patches, mask):
        tokens = self.embed(patches) + self.position
        return self.encoder_norm(mae.gather_tokens(self.encoder_blocks(tokens), mask.keep))
    return broken


@mutant("masked MSE of an empty mask is 0/0", f"{MAE}.masked_mse",
        caught_by=["maskedLoss_nil", "maeLoss_nil"])
def masked_mse_unguarded(original):
    """masked_mse = sum m_i l_i / sum m_i without the empty-mask case (NaN)."""
    from minilean.models import mae
    return lambda p, t, m: (mae.patch_losses(p, t) * m).sum() / m.sum()


@mutant("masked MSE of an empty mask is the plain MSE", f"{MAE}.masked_mse",
        caught_by=["maskedLoss_nil", "maeLoss_nil"])
def masked_mse_empty_scores_every_patch(original):
    """masked_mse falls back to the mean over every patch when the mask hides none (as if an
    empty mask asked for the whole image), not 0."""
    from minilean.models import mae

    def broken(prediction, target, hidden):
        if hidden.sum().item() == 0:
            return mae.patch_losses(prediction, target).mean()
        return original(prediction, target, hidden)
    return broken


@mutant("mae_loss scores the visible patches", f"{MAE}.mae_loss",
        caught_by=["maeLoss_append", "maeLoss_reverse"])
def mae_loss_visible(original):
    """mae_loss averages the patch losses over the visible patches instead."""
    from minilean.models import mae
    return lambda model, images, mask, normalize_targets=False: mae.masked_mse(
        model(images, mask), mae.patchify(images, model.patch_size), 1 - mask.hidden)


@mutant("block mask with floor blocks per row", f"{MAE}.block_mask",
        caught_by=["blockMask_eq_definition"])
def block_mask_floor(original):
    """block_mask counts cols // block blocks per row instead of ceil(cols / block)."""
    from minilean.models import mae

    def broken(count, rows, cols, block=2, period=4, offset=0, device="cpu"):
        r, c = numpy.meshgrid(numpy.arange(rows), numpy.arange(cols), indexing="ij")
        hidden = (((r // block) * (cols // block) + (c // block)) % period == offset).reshape(-1)
        if hidden.all() or not hidden.any():
            raise ValueError("block mask hides every patch or none")
        return mae._mask_from_hidden(numpy.broadcast_to(hidden, (count, rows * cols)).copy(),
                                     device)
    return broken


@mutant("hidden count truncates", f"{MAE}.hidden_count", caught_by=["hiddenCount_eq_round"])
def hidden_count_truncates(original):
    """hidden_count = int(ratio L) clamped to 1..L-1: truncated, not rounded."""
    return lambda num_patches, mask_ratio: min(max(int(mask_ratio * num_patches), 1),
                                               num_patches - 1)


@mutant("masked MSE summed over the batch", f"{MAE}.masked_mse",
        caught_by=["maskedLoss_cons", "maskedLoss_append", "maskedLoss_reverse",
                   "mae_is_predictive_view_loss", "maeLoss_append", "maeLoss_reverse"])
def masked_mse_batch_summed(original):
    """masked_mse = sum over the images of each one's masked mean: the batch summed, not
    averaged (the same for a batch of one)."""
    from minilean.models import mae

    def broken(prediction, target, hidden):
        per_image = (mae.patch_losses(prediction, target) * hidden).sum(-1)
        return (per_image / hidden.sum(-1).clamp(min=1.0)).sum()
    return broken


@mutant("masked MSE divides by every patch", f"{MAE}.masked_mse",
        caught_by=["maskedLoss_cons", "maskedLoss_append", "maskedLoss_reverse",
                   "mae_is_predictive_view_loss"])
def masked_mse_mean_over_all(original):
    """masked_mse = mean_i m_i l_i: the masked sum divided by L, not by the hidden count."""
    from minilean.models import mae
    return lambda prediction, target, hidden: (mae.patch_losses(prediction, target)
                                               * hidden).mean()


@mutant("unpatchify transposes each patch", f"{MAE}.unpatchify",
        caught_by=["exactReconstruction_identity"])
def unpatchify_transposed(original):
    """unpatchify puts a patch's rows where its columns belong (the two p axes swapped)."""
    def broken(patches, patch_size, channels, height, width):
        count = patches.shape[0]
        rows, cols = height // patch_size, width // patch_size
        # (N, rows * cols, p * p * C) -> (N, rows, cols, p(i), p(j), C)
        grid = patches.reshape(count, rows, cols, patch_size, patch_size, channels)
        # (N, rows, cols, p(i), p(j), C) -> (N, C, rows, p(j), cols, p(i))
        return grid.permute(0, 5, 1, 4, 2, 3).reshape(count, channels, height, width)
    return broken


@mutant("random mask hides one patch too many", f"{MAE}.random_mask",
        caught_by=["complement_selected_iff"])
def random_mask_off_by_one(original):
    """random_mask hides the patches of rank <= hidden_count(L, ratio): one more than asked."""
    from minilean import backend
    from minilean.models import mae

    def broken(count, num_patches, mask_ratio, device="cpu"):
        noise = backend.generator("cpu").random((count, num_patches))
        ranks = numpy.argsort(numpy.argsort(noise, axis=1), axis=1)
        return mae._mask_from_hidden(ranks <= mae.hidden_count(num_patches, mask_ratio), device)
    return broken


@mutant("mask restore is the sort order, not its inverse", f"{MAE}._mask_from_hidden",
        caught_by=["complement_selected_iff"])
def mask_restore_not_inverted(original):
    """restore = the [visible, hidden] order itself rather than its inverse permutation (the
    same for an order that is its own inverse): the decoder would put tokens back wrongly."""
    def broken(hidden, device):
        mask = original(hidden, device)
        return mask._replace(restore=numpy.argsort(numpy.asarray(mask.restore), axis=1))
    return broken


# --- the held-out score's way back to pixels ----------------------------------------------

@st.composite
def _visible_example(draw):
    """patches and a prediction (N, L, P), N = 1..2, L = 2..4, P = 1..3, values in [-2, 2],
    and a 0/1 hidden mask (N, L) leaving at least one patch of every image visible."""
    batch, count, size = draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
    cells = batch * count
    values = st.lists(reals(-2, 2), min_size=cells * size, max_size=cells * size)
    hidden = numpy.asarray(draw(st.lists(st.booleans(), min_size=cells, max_size=cells)))
    hidden = hidden.reshape(batch, count)
    for row in range(batch):
        hidden[row, draw(st.integers(0, count - 1))] = False
    return {"patches": numpy.asarray(draw(values)).reshape(batch, count, size),
            "prediction": numpy.asarray(draw(values)).reshape(batch, count, size),
            "hidden": hidden.astype(float)}


@statement("visibleStatistics_denormalize_value",
           about=(f"{MAE}.visible_statistics", f"{MAE}.denormalize"), given=_visible_example(),
           # pinned: patches of two pixels, one of three patches hidden
           examples=[{"patches": numpy.asarray([[[0.5, -1.0], [2.0, 0.25], [1.5, -0.5]]]),
                      "prediction": numpy.asarray([[[1.0, 0.5], [-1.5, 0.75], [0.25, 2.0]]]),
                      "hidden": numpy.asarray([[1.0, 0.0, 0.0]])}])
def visible_statistics_value(check, patches, prediction, hidden):
    """For image n with visible pixels V_n (every pixel of every patch with m_{n,i} = 0, |V_n|
    = (L - sum_i m_{n,i}) P): mu_n = sum_{V_n} x / |V_n|, sd_n = sqrt(sum_{V_n} (x - mu_n)^2
    / |V_n| + 1e-6) (the population variance of the visible pixels pooled, not the hidden
    ones', not per patch), and denormalize(p, mu, sd) = p sd + mu, the inverse of
    (x - mu) / sd, against mpmath in both dtypes. Rounding: mu through |V_n| - 1 additions of
    the masked products (exact) and a division, gamma_{k+1} sum |x| / k (k = N L P bounds the
    additions) plus k smallest subnormals (underflow); each centred value carries mu's error e
    and its own rounding; the variance 2 |c| d + d^2 per term and gamma_{k+3} of its sum; sd
    half its error over sd, and 3 roundings (eps, the sqrt)."""
    from minilean.models import mae
    eps = mpmath.mpf(numpy.float64(1e-6))
    k = patches.size
    for dtype in ENGINE_DTYPES:
        eps_here = mp(numpy.asarray(1e-6, dtype=dtype))
        mean, std = mae.visible_statistics(engine(patches, dtype), engine(hidden, dtype))
        back = host(mae.denormalize(engine(prediction, dtype), mean, std))
        mean, std = host(mean).reshape(-1), host(std).reshape(-1)
        for n in range(patches.shape[0]):
            pixels = [v for i, row in enumerate(patches[n]) if not hidden[n, i] for v in mp(row)]
            size = len(pixels)
            mu = mpmath.fsum(pixels) / size
            # plus the underflow of k roundings (pixels that nearly cancel: a subnormal mean)
            e_mu = gamma(k + 1, dtype) * mpmath.fsum(abs(v) for v in pixels) / size \
                + underflow(k, dtype)
            variance = mpmath.fsum((v - mu) ** 2 for v in pixels) / size
            d = [e_mu + gamma(1, dtype) * (abs(v) + abs(mu) + e_mu) for v in pixels]
            e_var = (mpmath.fsum(2 * abs(v - mu) * di + di * di for v, di in zip(pixels, d))
                     * (1 + gamma(k + 3, dtype)) + gamma(k + 3, dtype) * variance * size) / size
            sd = mpmath.sqrt(variance + eps_here)
            e_sd = e_var / (2 * sd) * (1 + gamma(3, dtype)) + gamma(3, dtype) * sd \
                + abs(eps_here - eps)
            check.close(mean[n], mu, e_mu, f"mean of image {n} ({dtype.__name__})")
            check.close(std[n], mpmath.sqrt(variance + eps), e_sd,
                        f"std of image {n} ({dtype.__name__})")
            exact = [p * sd + mu for p in mp(prediction[n])]
            # p sd of a tiny p (1e-38 sd ~ 1e-41) is subnormal in float32: 2 underflows more
            bounds = [abs(p) * e_sd + e_mu + gamma(2, dtype) * (abs(p) * sd + abs(mu))
                      + underflow(2, dtype) for p in mp(prediction[n])]
            check.close(back[n].reshape(-1), exact, bounds,
                        f"denormalize, image {n} ({dtype.__name__})")


@mutant("visible statistics counting patches, not pixels", f"{MAE}.visible_statistics",
        caught_by=["visibleStatistics_denormalize_value"])
def visible_statistics_patch_count(original):
    """visible_statistics divides the pooled sums by the number of visible patches, not of
    visible pixels (P times too large a mean and variance for P > 1)."""
    def broken(patches, hidden, eps=1e-6):
        visible = (1 - hidden).unsqueeze(-1)
        count = visible.sum((1, 2), keepdim=True)
        mean = (patches * visible).sum((1, 2), keepdim=True) / count
        centred = (patches - mean) * visible
        return mean, ((centred * centred).sum((1, 2), keepdim=True) / count + eps).sqrt()
    return broken


@mutant("visible statistics of the hidden patches", f"{MAE}.visible_statistics",
        caught_by=["visibleStatistics_denormalize_value"])
def visible_statistics_of_hidden(original):
    """visible_statistics pools the hidden patches (the mask read the other way round): the
    held-out score would be handed the very statistics it must not see."""
    return lambda patches, hidden, eps=1e-6: original(patches, 1 - hidden, eps)


@mutant("visible statistics adding eps to the deviation", f"{MAE}.visible_statistics",
        caught_by=["visibleStatistics_denormalize_value"])
def visible_statistics_eps_outside(original):
    """visible_statistics returns sqrt(variance) + eps instead of sqrt(variance + eps): about
    eps / 2 off for a unit variance, far above float64's rounding."""
    def broken(patches, hidden, eps=1e-6):
        mean, std = original(patches, hidden, 0.0)
        return mean, std + eps
    return broken


@mutant("denormalize adding the mean before scaling", f"{MAE}.denormalize",
        caught_by=["visibleStatistics_denormalize_value"])
def denormalize_mean_first(original):
    """denormalize = (p + mu) sd instead of p sd + mu."""
    return lambda prediction, mean, std: (prediction + mean) * std


@mutant("MAE loss ignores normalize_targets", f"{MAE}.mae_loss",
        caught_by=["maeLoss_append", "maeLoss_reverse"])
def mae_loss_ignores_normalize_targets(original):
    """mae_loss scores the raw pixel patches whatever normalize_targets says: training's
    --per-patch-norm accepted and ignored (the statements checked the loss without it alone;
    maeLoss_nil cannot see it, an empty mask scores 0 either way)."""
    return lambda model, images, mask, normalize_targets=False: original(model, images, mask)
