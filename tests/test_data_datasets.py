"""The built-in datasets and load_dataset: determinism, labels, layouts and one-line errors."""
import json

import numpy
import pytest

from minilean.data import arrays, builtin
from minilean.data.arrays import load_dataset
from minilean.errors import FlagError


def test_shapes_are_deterministic_for_a_seed_and_differ_across_seeds():
    first, labels = builtin.make_shapes(64, 24, seed=3)
    again, labels_again = builtin.make_shapes(64, 24, seed=3)
    other, _ = builtin.make_shapes(64, 24, seed=4)
    assert first.shape == (64, 3, 24, 24) and first.dtype == numpy.uint8
    assert first.tobytes() == again.tobytes() and numpy.array_equal(labels, labels_again)
    assert not numpy.array_equal(first, other)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_each_image_has_one_saturated_shape_of_a_plausible_area(size):
    images, labels = builtin.make_shapes(200, size, seed=0)
    assert set(labels.tolist()) == set(range(len(builtin.SHAPE_CLASSES)))
    palette = numpy.round(builtin.PALETTE * 255).astype(int)
    pixels = images.transpose(0, 2, 3, 1).astype(int)                   # NCHW -> NHWC
    # Foreground pixels are exactly a palette colour; the dark background never is.
    is_palette = (numpy.abs(pixels[:, :, :, None, :] - palette).max(-1) <= 1).any(-1)
    area = is_palette.mean(axis=(1, 2))
    assert area.min() > 0.02 and area.max() < 0.6
    assert pixels[~is_palette].max() < 0.4 * 255  # background stays dark
    # Every image's foreground is one colour.
    for image, mask in zip(pixels[:20], is_palette[:20]):
        assert len(numpy.unique(image[mask], axis=0)) == 1


def test_shape_classes_differ_in_how_much_of_their_box_they_fill():
    images, labels = builtin.make_shapes(2000, 32, seed=1)
    foreground = (images.max(axis=1).astype(int) - images.min(axis=1) > 100)    # (N, H, W)
    rows, cols = foreground.any(axis=2), foreground.any(axis=1)
    box = rows.sum(1) * cols.sum(1)
    fill = foreground.sum(axis=(1, 2)) / box
    by_class = {name: fill[labels == index].mean()
                for index, name in enumerate(builtin.SHAPE_CLASSES)}
    # Square fills its box, circle pi/4, triangle and diamond about half, cross less.
    assert by_class["square"] > 0.95
    assert 0.7 < by_class["circle"] < 0.85
    assert by_class["cross"] < 0.6 and 0.4 < by_class["triangle"] < 0.62
    assert 0.45 < by_class["diamond"] < 0.62


def foreground_and_boxes(images):
    """Foreground masks (N, H, W) (palette colours are bright, backgrounds dark) and each
    image's bounding box of it: centres (x, y) and sizes (width, height)."""
    foreground = images.max(axis=1) > 150
    size = images.shape[-1]
    boxes = []
    for along in (1, 2):  # columns (x), then rows (y)
        occupied = foreground.any(axis=along)                              # (N, S)
        first, last = occupied.argmax(1), size - 1 - occupied[:, ::-1].argmax(1)
        boxes.append(((first + last) / 2, last - first + 1))
    (centre_x, width), (centre_y, height) = boxes
    return foreground, centre_x, centre_y, width, height


def test_foreground_is_exactly_a_rounded_palette_colour_and_never_on_the_border():
    for size in (16, 32, 48, 64):
        images, _ = builtin.make_shapes(2000, size, seed=5)
        foreground, *_ = foreground_and_boxes(images)
        assert foreground.any(axis=(1, 2)).all()
        # 0.85 * 255 = 216.75 is 217 and 0.1 * 255 = 25.5 is 26, not truncated to 216 or 25
        palette = {tuple(colour) for colour in numpy.round(builtin.PALETTE * 255).astype(int)}
        assert (217 in {g for _, g, _ in palette}) and (26 in {r for r, _, _ in palette})
        pixels = images.transpose(0, 2, 3, 1)[foreground]                  # (count, 3)
        assert {tuple(colour) for colour in numpy.unique(pixels, axis=0).tolist()} <= palette
        # a margin of at least a pixel: the outermost rows and columns are always background
        border = foreground.copy()
        border[:, 1:-1, 1:-1] = False
        assert not border.any(), size


def test_shape_centres_are_drawn_independently_in_x_and_y():
    images, _ = builtin.make_shapes(2000, 32, seed=1)
    _, centre_x, centre_y, _, _ = foreground_and_boxes(images)
    assert abs(numpy.corrcoef(centre_x, centre_y)[0, 1]) < 0.3
    assert centre_x.std() > 2 and centre_y.std() > 2


def test_triangles_are_as_wide_as_tall_with_the_apex_up():
    images, labels = builtin.make_shapes(2000, 32, seed=2)
    foreground, _, _, width, height = foreground_and_boxes(images)
    triangle = labels == builtin.SHAPE_CLASSES.index("triangle")
    # base 2 * 0.5 * 1.8 half-sizes wide, 1.8 half-sizes tall: about square, as a square is
    for index in (builtin.SHAPE_CLASSES.index("square"), builtin.SHAPE_CLASSES.index("triangle")):
        ratio = (width / height)[labels == index]
        assert 0.95 < ratio.mean() < 1.05 and ratio.min() > 0.8 and ratio.max() < 1.25
    widths = foreground[triangle].sum(axis=2)                              # (k, S) per row
    rows = [numpy.flatnonzero(row) for row in widths]
    assert all(row[-1] - row[0] > 2 for row in rows)
    assert all(widths_[row[0]] < widths_[row[-1]] for widths_, row in zip(widths, rows))


def test_the_background_slopes_along_both_axes():
    images, _ = builtin.make_shapes(1000, 16, seed=3)
    corners = images[:, :, [0, 0, -1], [0, -1, 0]].astype(int)            # (N, 3, 3 corners)
    # top-left against top-right (along x) and against bottom-left (along y)
    along_x = numpy.abs(corners[:, :, 0] - corners[:, :, 1]).max(axis=1)
    along_y = numpy.abs(corners[:, :, 0] - corners[:, :, 2]).max(axis=1)
    for change in (along_x, along_y):
        assert (change > 0).mean() > 0.8 and change.max() <= 13  # slopes of at most 0.05 * 255
    # either way, as often up as down, and drawn independently along x and y
    signed = corners[:, 0, 0] - corners[:, 0, 1], corners[:, 0, 0] - corners[:, 0, 2]
    for change in signed:
        assert (change > 0).mean() > 0.35 and (change < 0).mean() > 0.35
    assert abs(numpy.corrcoef(*signed)[0, 1]) < 0.2


def test_every_palette_colour_is_drawn_about_equally_often():
    images, _ = builtin.make_shapes(3000, 16, seed=4)
    palette = numpy.round(builtin.PALETTE * 255).astype(int)
    pixels = images.transpose(0, 2, 3, 1).reshape(len(images), -1, 1, 3).astype(int)
    used = (pixels == palette).all(-1).any(1)                       # (N, colours): in the image
    assert (used.sum(1) == 1).all()
    numpy.testing.assert_allclose(used.mean(0), 1 / len(palette), atol=0.03)


@pytest.mark.parametrize("make", [lambda n: builtin.make_shapes(n, 16), builtin.make_ring8])
def test_generators_make_no_rows_for_zero_and_refuse_a_negative_count(make):
    rows, labels = make(0)
    assert len(rows) == 0 and labels.shape == (0,) and labels.dtype == numpy.int64
    with pytest.raises(ValueError, match=r"^n must be >= 0, got -1$"):
        make(-1)


def test_shapes_are_made_from_the_smallest_to_the_largest_image_size_and_no_further():
    low, high = builtin.MIN_IMAGE_SIZE, builtin.MAX_IMAGE_SIZE
    for size in (low, high):
        assert builtin.make_shapes(2, size)[0].shape == (2, 3, size, size)
    for size in (low - 1, high + 1, 0):
        with pytest.raises(ValueError, match=rf"^image_size must be in \[{low}, {high}\], "
                                             rf"got {size}$"):
            builtin.make_shapes(2, size)


@pytest.mark.parametrize("dataset", ["builtin", "ring8"])
def test_generated_data_are_deterministic_for_a_seed_and_differ_across_seeds(dataset):
    """--seed draws the generated rows: the same seed, the same rows and labels; another
    seed, others (ring8 drew the same points whatever the seed went unnoticed)."""
    first, again, other = (load_dataset(dataset, n_total=64, image_size=16, seed=seed)
                           for seed in (3, 3, 4))
    assert numpy.array_equal(first.x, again.x) and numpy.array_equal(first.y, again.y)
    assert not numpy.array_equal(first.x, other.x) and not numpy.array_equal(first.y, other.y)


def test_generators_default_to_seed_0_and_shapes_to_32_pixels():
    images, labels = builtin.make_shapes(4)
    again, labels_again = builtin.make_shapes(4, 32, 0)
    assert images.shape == (4, 3, 32, 32)
    assert numpy.array_equal(images, again) and numpy.array_equal(labels, labels_again)
    assert all(numpy.array_equal(a, b) for a, b in zip(builtin.make_ring8(4),
                                                       builtin.make_ring8(4, 0)))


def test_nearest_ring8_mode_takes_a_list_of_points():
    nearest, distance = builtin.nearest_ring8_mode([[2.0, 0.0], [0.0, -1.9]])
    assert nearest.tolist() == [0, 6]
    numpy.testing.assert_allclose(distance, [0.0, 0.1], atol=1e-6)


def test_ring8_modes_sit_evenly_around_the_origin():
    modes = builtin.RING8_MODES.astype(numpy.float64)
    numpy.testing.assert_allclose(modes.mean(axis=0), [0.0, 0.0], atol=1e-6)
    numpy.testing.assert_allclose(modes[0], [builtin.RING8_RADIUS, 0.0], atol=1e-6)
    gaps = numpy.linalg.norm(modes - numpy.roll(modes, -1, axis=0), axis=1)  # 0->1, ..., 7->0
    numpy.testing.assert_allclose(gaps, 2 * builtin.RING8_RADIUS * numpy.sin(numpy.pi / 8),
                                  rtol=1e-6)


def test_ring8_samples_sit_near_their_modes():
    points, modes = builtin.make_ring8(4000, seed=0)
    assert points.shape == (4000, 2) and points.dtype == numpy.float32
    nearest, distance = builtin.nearest_ring8_mode(points)
    assert numpy.array_equal(nearest, modes)
    assert numpy.all(distance < 6 * builtin.RING8_STD)
    numpy.testing.assert_allclose(numpy.linalg.norm(builtin.RING8_MODES, axis=1),
                                  builtin.RING8_RADIUS, rtol=1e-6)
    counts = numpy.bincount(modes, minlength=8)
    assert counts.min() > 400  # every mode is used (expected 500 each)


def test_load_dataset_builtin_and_n_total():
    data = load_dataset(n_total=50, image_size=16, seed=2)
    assert data.x.shape == (50, 3, 16, 16) and data.y.shape == (50,)
    assert data.class_names == builtin.SHAPE_CLASSES and data.name == "builtin"
    floats = data.images_float(slice(0, 5))
    assert floats.dtype == numpy.float32 and 0 <= floats.min() and floats.max() <= 1
    assert numpy.array_equal(load_dataset(n_total=50, image_size=16, seed=2).x, data.x)


def test_load_dataset_ring8_names_one_class_per_mode():
    data = load_dataset("ring8", n_total=100, seed=1)
    points, modes = builtin.make_ring8(100, seed=1)
    assert numpy.array_equal(data.x, points) and numpy.array_equal(data.y, modes)
    assert data.class_names == tuple(f"mode{index}" for index in range(len(builtin.RING8_MODES)))
    assert data.name == "ring8" and not data.is_image


def save(tmp_path, name, array):
    path = tmp_path / name
    numpy.save(path, array)
    return str(path)


def test_arrays_in_nhwc_nchw_and_grey_load_as_nchw(tmp_path):
    nchw = numpy.random.default_rng(0).integers(0, 256, (6, 3, 5, 7), dtype=numpy.uint8)
    from_nhwc = load_dataset(x=save(tmp_path, "nhwc.npy", nchw.transpose(0, 2, 3, 1)))
    from_nchw = load_dataset(x=save(tmp_path, "nchw.npy", nchw), n_total=4)
    assert numpy.array_equal(from_nhwc.x, nchw) and numpy.array_equal(from_nchw.x, nchw[:4])
    assert from_nhwc.y is None
    grey = load_dataset(x=save(tmp_path, "grey.npy", numpy.zeros((2, 5, 5), numpy.float32)))
    assert grey.x.shape == (2, 1, 5, 5)
    for width in (1, 3):  # (N, H, W) is grey whatever its width: no layout to guess
        narrow = load_dataset(x=save(tmp_path, "narrow.npy", numpy.zeros((2, 5, width), "u1")))
        assert narrow.x.shape == (2, 1, 5, width)
    assert isinstance(from_nchw.x.base, numpy.memmap) or isinstance(from_nchw.x, numpy.memmap)
    one_channel = nchw[:, :1]  # grey with its channel axis, first or last
    for array in (one_channel, one_channel.transpose(0, 2, 3, 1)):
        loaded = load_dataset(x=save(tmp_path, "one.npy", numpy.ascontiguousarray(array))).x
        assert numpy.array_equal(loaded, one_channel)


def test_labels_are_checked_and_cast(tmp_path):
    x = save(tmp_path, "x.npy", numpy.zeros((3, 3, 4, 4), numpy.uint8))
    data = load_dataset(x=x, y=save(tmp_path, "y.npy", numpy.array([0, 2, 1], numpy.int32)))
    assert data.y.dtype == numpy.int64 and data.class_names == ("0", "1", "2")
    with pytest.raises(ValueError, match=r"expected 3 labels \(one per image\), found 2"):
        load_dataset(x=x, y=save(tmp_path, "short.npy", numpy.array([0, 1])))


def test_n_total_cuts_labels_with_the_images_and_extra_labels_are_refused(tmp_path):
    x = save(tmp_path, "x.npy", numpy.arange(5 * 3 * 4 * 4, dtype=numpy.uint8).reshape(5, 3, 4, 4))
    y = save(tmp_path, "y.npy", numpy.array([4, 3, 2, 1, 0]))
    data = load_dataset(x=x, y=y, n_total=3)
    assert data.x.shape == (3, 3, 4, 4) and data.y.tolist() == [4, 3, 2]
    with pytest.raises(ValueError, match=r"expected 5 labels \(one per image\), found 6"):
        load_dataset(x=x, y=save(tmp_path, "long.npy", numpy.arange(6)))


def test_n_total_that_keeps_only_the_first_classes_of_sorted_data_says_so(tmp_path, capsys):
    """A converted image folder lists its images class by class: --n-total keeps its first rows
    all the same (the README's numbers rest on them), and says which part of the classes they
    hold; rows in mixed order, or enough of them, say nothing."""
    x = save(tmp_path, "x.npy", numpy.zeros((9, 3, 4, 4), numpy.uint8))
    y = save(tmp_path, "sorted.npy", numpy.repeat([0, 1, 2], 3))         # 0 0 0 1 1 1 2 2 2
    data = load_dataset(x=x, y=y, n_total=5)
    assert data.y.tolist() == [0, 0, 0, 1, 1]
    assert capsys.readouterr().err == (
        "minilean: warning: --n-total 5 keeps the first 5 rows of x.npy, which hold 2 of its 3 "
        "classes; shuffle the rows first (a converted image folder lists its images class by "
        "class) or keep more\n")
    load_dataset(x=x, y=y, n_total=7)  # reaches the last class
    load_dataset(x=x, y=save(tmp_path, "mixed.npy", numpy.tile([0, 1, 2], 3)), n_total=3)
    load_dataset(x=x, y=y)
    assert capsys.readouterr().err == ""


def test_n_total_beyond_the_rows_of_a_file_is_a_flag_error(tmp_path):
    """Asking for more rows than the file holds is refused, not quietly cut to what is there
    (a generated set, builtin or ring8, is made as large as asked)."""
    x = save(tmp_path, "x.npy", numpy.zeros((5, 3, 4, 4), numpy.uint8))
    assert len(load_dataset(x=x, n_total=5)) == 5
    with pytest.raises(FlagError, match=r"^--n-total: got 6; expected at most 5, the rows of "
                                        r"x\.npy$"):
        load_dataset(x=x, n_total=6)
    assert len(load_dataset(n_total=20_000, image_size=16)) == 20_000


def test_a_generated_set_has_10000_rows_without_n_total():
    """The README's builtin default: 10,000 32x32 images (and ring8 as many points)."""
    assert load_dataset().x.shape == (10_000, 3, 32, 32)
    assert load_dataset(dataset="ring8").x.shape == (10_000, 2)


@pytest.mark.parametrize("kwargs, most, what, size", [
    ({"image_size": 32}, 1394469, "builtin at 32x32", "286,847.4 GiB"),  # 3 * 32 * 32 + 8 B a row
    ({"image_size": 64}, 349297, "builtin at 64x64", "1,145,154.2 GiB"),
    ({"dataset": "ring8"}, 268435456, "ring8", "1,490.1 GiB"),  # 2 float32 + 1 int64 a row
])
def test_n_total_of_a_generated_set_above_the_cap_is_a_flag_error_before_allocating(
        kwargs, most, what, size):
    """--n-total=100000000000 on builtin was NumPy's "Unable to allocate ... GiB" mid-run."""
    with pytest.raises(FlagError) as error:
        load_dataset(n_total=10**11, **kwargs)
    assert str(error.value) == (f"--n-total: got 100000000000; expected at most {most} for "
                                f"--dataset {what} (generated in memory at once: 100000000000 "
                                f"rows would take {size}, above the cap of 4 GiB)")


def test_n_total_up_to_the_cap_of_a_generated_set_is_made(monkeypatch):
    monkeypatch.setattr(arrays, "GENERATED_BYTES_CAP", 10 * (3 * 16 * 16 + 8))  # 10 rows
    assert len(load_dataset(n_total=10, image_size=16)) == 10
    with pytest.raises(FlagError, match=r"^--n-total: got 11; expected at most 10 for --dataset "
                                        r"builtin at 16x16 \(generated in memory at once"):
        load_dataset(n_total=11, image_size=16)
    assert len(load_dataset(n_total=20, image_size=32, dataset="ring8")) == 20


@pytest.mark.parametrize("array, message", [
    (numpy.zeros((2, 3, 4, 4), numpy.uint16), "expected dtype uint8 in .0, 255. or float in "
                                              r"\[0, 1\], found uint16"),
    (numpy.zeros((2, 3, 4, 4), numpy.int16), "expected dtype uint8 in .0, 255. or float in "
                                             r"\[0, 1\], found int16"),
    (numpy.zeros((2, 3, 4), numpy.uint8)[None, None], "expected images of rank 4 .* found rank 5"),
    (numpy.zeros((2, 2, 4, 4), numpy.uint8), r"expected 1 or 3 channels on axis 1 \(NCHW\) or 3 "
                                             r"\(NHWC\), found shape \(2, 2, 4, 4\)"),
    (numpy.zeros((2, 3, 4, 3), numpy.uint8), r"shape \(2, 3, 4, 3\) is ambiguous"),
    (numpy.zeros((2, 3, 0, 4), numpy.uint8), r"expected images of at least 1x1 pixels, "
                                             r"found shape \(2, 3, 0, 4\)"),
    (numpy.zeros((2, 3, 4, 0), numpy.float32), r"expected images of at least 1x1 pixels, "
                                               r"found shape \(2, 3, 4, 0\)"),
    (numpy.full((2, 3, 4, 4), 2.0, numpy.float32), r"expected float images in \[0, 1\], "
                                                   r"found values in \[2.0, 2.0\]"),
    (numpy.full((2, 3, 4, 4), numpy.nan, numpy.float32), r"expected float images in \[0, 1\], "
                                                         r"found nan at row 0$"),
    (numpy.full((2, 3, 4, 4), numpy.inf, numpy.float32), r"expected float images in \[0, 1\], "
                                                         r"found inf at row 0$"),
])
def test_malformed_arrays_say_expected_and_found(tmp_path, array, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(x=save(tmp_path, "bad.npy", array))


@pytest.mark.parametrize("value, found", [(numpy.nan, "nan at row 1500"),
                                          (-numpy.inf, "-inf at row 1500"),
                                          (7.0, r"values in \[0.5, 7.0\] \(from row 1500 on\)")])
def test_every_row_of_float_images_is_checked_not_only_the_first(tmp_path, value, found):
    """Past the first 1024 rows too (they are read a chunk at a time): a NaN there trained
    until the loss became nan, blamed on the training, and a 7.0 trained unnoticed."""
    images = numpy.full((2000, 1, 2, 2), 0.5, numpy.float32)
    images[1500, 0, 1, 0] = value
    with pytest.raises(ValueError, match=f"expected float images in \\[0, 1\\], found {found}$"):
        load_dataset(x=save(tmp_path, "late.npy", images))


def test_missing_real_dataset_names_the_file_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10_train_X.npy not found; make it with: "
                                                r"python -m minilean data download --cifar10"):
        load_dataset("cifar10", data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="imagenet64_train_X.npy not found; make it with: "
                                                "python -m minilean data convert image-folder"):
        load_dataset("imagenet64", data_root=str(tmp_path))


def test_cifar10_arrays_load_with_class_names(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    numpy.save(folder / "cifar10_train_X.npy", numpy.zeros((4, 3, 32, 32), numpy.uint8))
    numpy.save(folder / "cifar10_train_y.npy", numpy.arange(4))
    data = load_dataset("cifar10", data_root=str(tmp_path))
    assert data.class_names[0] == "airplane" and data.y.tolist() == [0, 1, 2, 3]


def test_digits_needs_scikit_learn_or_loads_it():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="--dataset digits needs scikit-learn"):
            load_dataset("digits")
    else:
        data = load_dataset("digits", image_size=16)
        assert data.x.shape == (1797, 1, 16, 16) and data.x.max() <= 1.0


def test_digits_scale_to_unit_range_and_upsample_by_repeating_pixels(monkeypatch):
    """scikit-learn's digits (values 0..16, 8x8; a stand-in module here, so the test runs
    without it) come as (N, 1, S, S) floats in [0, 1], each pixel an (S/8)x(S/8) block."""
    import sys
    import types
    pixels = numpy.random.default_rng(0).integers(0, 17, (3, 8, 8)).astype(numpy.float64)
    bunch = types.SimpleNamespace(images=pixels, target=numpy.array([0, 5, 9]))
    fake = types.ModuleType("sklearn.datasets")
    fake.load_digits = lambda: bunch
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", fake)
    data = load_dataset("digits", image_size=24)
    expected = numpy.kron(pixels / 16, numpy.ones((3, 3)))[:, None]  # (3, 1, 24, 24)
    assert data.x.dtype == numpy.float32 and data.x.shape == expected.shape
    numpy.testing.assert_allclose(data.x, expected, rtol=1e-6)
    assert data.y.dtype == numpy.int64 and data.y.tolist() == [0, 5, 9]
    assert data.class_names == tuple("0123456789") and data.name == "digits"


@pytest.mark.parametrize("image_size", [20, 30, 63])
def test_digits_at_a_size_that_is_not_a_multiple_of_8_is_a_flag_error_before_loading(
        monkeypatch, image_size):
    """The 8x8 digits grow by whole pixel blocks only: 20 would silently make 16x16 images.
    The flag is refused before scikit-learn (a stand-in here) is asked for the digits."""
    import sys
    import types
    fake = types.ModuleType("sklearn.datasets")
    fake.load_digits = lambda: pytest.fail("the digits were loaded")
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", fake)
    with pytest.raises(FlagError) as error:
        load_dataset("digits", image_size=image_size)
    assert str(error.value) == (f"--image-size: got {image_size}; expected a multiple of 8 for "
                                f"--dataset digits")


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "mnist"}, "--dataset: got 'mnist'; expected one of builtin, cifar10"),
    ({"n_total": 0}, r"--n-total: got 0; expected an integer >= 1 or none"),
    ({"image_size": 8}, r"--image-size: got 8; expected an integer >= 16 and <= 64$"),
    ({"image_size": "32"}, r"--image-size: got '32'; expected an integer"),
    ({"y": "y.npy"}, "--y: got 'y.npy'; expected to come with --x"),
])
def test_bad_flags_are_flag_errors(kwargs, message):
    with pytest.raises(FlagError, match=message):
        load_dataset(**kwargs)


def test_missing_x_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^--x .*nope.npy not found; expected a "
                                                r"\.npy array of images \(N, C, H, W\)"):
        load_dataset(x=str(tmp_path / "nope.npy"))


def test_a_missing_y_file_is_hinted_as_labels(tmp_path):
    x = save(tmp_path, "x.npy", numpy.zeros((2, 3, 4, 4), numpy.uint8))
    with pytest.raises(FileNotFoundError, match=r"^--y .*nope.npy not found; expected a "
                                                r"\.npy array of integer labels \(N,\)"):
        load_dataset(x=x, y=str(tmp_path / "nope.npy"))


@pytest.mark.parametrize("flag", ["x", "y"])
def test_a_data_path_of_the_wrong_kind_says_what_is_there(tmp_path, flag):
    files = {"x": save(tmp_path, "x.npy", numpy.zeros((2, 3, 4, 4), numpy.uint8)),
             "y": save(tmp_path, "y.npy", numpy.array([0, 1]))}
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match=rf"^--{flag} .*folder is a directory; expected "
                                                r"a \.npy array file$"):
        load_dataset(**{**files, flag: str(tmp_path / "folder")})
    below_a_file = str(tmp_path / "x.npy" / "z.npy")
    with pytest.raises(NotADirectoryError, match=rf"^--{flag} .*z.npy cannot exist \(.*x.npy is "
                                                 r"a file, not a directory\); expected a \.npy "
                                                 r"array file$"):
        load_dataset(**{**files, flag: below_a_file})


def unreadable(tmp_path, kind):
    """A file given as --x or --y that is not one .npy array."""
    path = tmp_path / f"{kind}.npy"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":  # numpy.load would take it for a pickle and say so
        path.write_text("a,b\n1,2\n")
    elif kind == "npz":  # an archive under an .npy name (numpy.savez adds .npz: renamed)
        numpy.savez(tmp_path / "archive.npz", x=numpy.zeros((2, 3, 4, 4), numpy.uint8))
        (tmp_path / "archive.npz").rename(path)
    elif kind == "npz_cut":  # an .npz archive cut short (a partial copy): no zip to open
        numpy.savez(tmp_path / "archive.npz", x=numpy.zeros((2, 3, 4, 4), numpy.uint8))
        path.write_bytes((tmp_path / "archive.npz").read_bytes()[:100])
    elif kind == "object":  # pickled objects: smaller than 8 bytes each, never "cut short"
        numpy.save(path, numpy.zeros((2, 3, 4, 4), object), allow_pickle=True)
    else:  # the header cut short
        numpy.save(path, numpy.zeros((2, 3, 4, 4), numpy.uint8))
        path.write_bytes(path.read_bytes()[:20])
    return str(path)


@pytest.mark.parametrize("kind, message", [
    ("empty", "the file is empty; expected a .npy array file"),
    ("npz", r"the file is an .npz archive; expected a .npy array file \(numpy.save, not "
            r"numpy.savez\)"),
    ("npz_cut", r"the file is an .npz archive; expected a .npy array file \(numpy.save, not "
                r"numpy.savez\)$"),
    ("cut", "cannot read it as a .npy array file: EOF"),
    ("object", r"it holds Python objects \(object\), which are never unpickled; expected a "
               r"numeric array$"),
    ("text", r"the file is not in the .npy format \(it does not begin with its magic bytes\); "
             r"expected a .npy array file \(numpy.save\)$"),
])
@pytest.mark.parametrize("flag", ["x", "y"])
def test_a_file_that_is_not_one_npy_array_is_a_one_line_error(tmp_path, kind, message, flag):
    files = {"x": save(tmp_path, "x.npy", numpy.zeros((2, 3, 4, 4), numpy.uint8)),
             "y": save(tmp_path, "y.npy", numpy.array([0, 1]))}
    files[flag] = unreadable(tmp_path, kind)
    with pytest.raises(ValueError, match=f"^--{flag} .*{kind}.npy: {message}"):
        load_dataset(**files)


def test_an_x_array_of_rank_0_is_a_one_line_error(tmp_path):
    x = save(tmp_path, "x.npy", numpy.float32(0.5))
    with pytest.raises(ValueError, match=r"^--x .*x.npy: expected images of rank 4 \(N, C, H, "
                                         r"W\) or \(N, H, W, C\), found rank 0 with shape \(\)$"):
        load_dataset(x=x)


def full_manifest(**changes):
    """A manifest with every key `data convert image-folder` writes, with ``changes``."""
    return {"shape": [2, 3, 4, 4], "dtype": "uint8", "layout": "NCHW", "source": "/in",
            "count": 2, "crop": "center", "skipped": [], "class_names": ["a", "b"],
            "labels": None, **changes}


@pytest.mark.parametrize("text, message", [
    ("null", r"not a minilean manifest \(it holds a JSON null\); expected the manifest"),
    ('"names"', r"not a minilean manifest \(it holds a JSON string\); expected the manifest"),
    ("[1, 2]", r"not a minilean manifest \(it holds a JSON array\); expected the manifest that "
               r"`python -m minilean data convert image-folder` writes beside its images \(or "
               r"no file of that name\): move or rename it$"),
    ('{"author": "me"}', r"not a minilean manifest \(it holds an object with keys \['author'\]"
                         r"\); expected the manifest"),
    ("{not json", r"cannot read it as JSON \(Expecting property name .*\); expected the manifest"),
    ('{"class_names": "abc"}', r"a malformed manifest \(class_names is 'abc'\); expected a "
                               r"list of texts or null"),
    (json.dumps(full_manifest(class_names=[1, 2])), r"a malformed manifest \(class_names is "
                                                    r"\[1, 2\]\); expected a list of texts"),
    (json.dumps(full_manifest(class_names=["a", 2])), r"a malformed manifest \(class_names "
                                                      r"is \['a', 2\]\); expected a list of texts"),
    (json.dumps(full_manifest(layout="CHW")), r"a malformed manifest \(layout is 'CHW'\); "
                                              r"expected NCHW or NHWC there$"),
])
def test_a_json_beside_the_images_must_be_our_manifest(tmp_path, text, message):
    x = save(tmp_path, "x.npy", numpy.zeros((2, 3, 4, 4), numpy.uint8))
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(ValueError, match=f"^{tmp_path / 'x.json'}: {message}"):
        load_dataset(x=x)


@pytest.mark.parametrize("manifest", [
    full_manifest(class_names=["cat", "dog"]),
    {"layout": "NCHW", "class_names": ["cat", "dog"], "written_by": "a later version"}],
    ids=["as_written", "other_keys"])
def test_the_manifest_names_the_classes(tmp_path, manifest):
    x = save(tmp_path, "x.npy", numpy.zeros((2, 3, 4, 4), numpy.uint8))
    (tmp_path / "x.json").write_text(json.dumps(manifest))
    assert load_dataset(x=x, y=save(tmp_path, "y.npy", numpy.array([0, 1]))).class_names == (
        "cat", "dog")


@pytest.mark.parametrize("labels, found", [
    (numpy.array([0, -1, -2]), "-1 at row 1"),                  # the first bad row
    (numpy.array([65535, 1, 65536]), "65536 at row 2"),         # one past the bound, not it
    (numpy.array([2**63 + 5, 0, 1], numpy.uint64), f"{2**63 + 5} at row 0"),  # wraps in int64
])
def test_labels_must_be_class_indices_and_name_y(tmp_path, labels, found):
    x = save(tmp_path, "x.npy", numpy.zeros((3, 3, 4, 4), numpy.uint8))
    with pytest.raises(ValueError, match=r"^--y .*y.npy: expected labels that are class indices "
                                         rf"in \[0, 65535\], found {found}$"):
        load_dataset(x=x, y=save(tmp_path, "y.npy", labels))
    top = load_dataset(x=x, y=save(tmp_path, "top.npy", numpy.array([0, 65535, 1])))
    assert len(top.class_names) == 65536 and top.y.max() == 65535


def test_whole_float_labels_as_torchleans_download_writes_them_are_class_indices(tmp_path):
    """TorchLean's CIFAR-10 script writes float32 labels to the path minilean reads."""
    folder = tmp_path / "cifar10"
    folder.mkdir()
    numpy.save(folder / "cifar10_train_X.npy", numpy.zeros((3, 3, 32, 32), numpy.uint8))
    numpy.save(folder / "cifar10_train_y.npy", numpy.array([0.0, 9.0, 3.0], numpy.float32))
    data = load_dataset("cifar10", data_root=str(tmp_path))
    assert data.y.dtype == numpy.int64 and data.y.tolist() == [0, 9, 3]


@pytest.mark.parametrize("labels, message", [
    ([1.0, 0.5], r"expected integer labels \(whole numbers\), found 0.5 at row 1$"),
    ([float("nan"), 1.0], r"expected integer labels \(whole numbers\), found nan at row 0$"),
    ([float("inf"), 1.0], r"expected labels that are class indices in \[0, 65535\], found inf"),
])
def test_float_labels_that_are_no_class_indices_are_refused(tmp_path, labels, message):
    x = save(tmp_path, "x.npy", numpy.zeros((2, 3, 4, 4), numpy.uint8))
    with pytest.raises(ValueError, match=message):
        load_dataset(x=x, y=save(tmp_path, "y.npy", numpy.array(labels, numpy.float32)))


def test_the_fingerprint_reads_spread_rows_with_the_first_and_last_and_every_label():
    """What a resume compares: the shape, the dtype, a digest of a few rows spread over the
    data (its first and last among them) and of every label. A change in a row between them
    goes unseen, as documented; one in the last row or in any label does not."""
    images = numpy.arange(10 * 3, dtype=numpy.uint8).reshape(10, 3, 1, 1)
    data = arrays.Dataset(images, numpy.arange(10) % 3, (), "x.npy")
    assert data.spread_rows(3).tolist() == [0, 4, 9]
    assert data.spread_rows(64).tolist() == list(range(10))  # no more rows than there are
    fingerprint = data.fingerprint(rows=3)
    assert fingerprint["shape"] == [10, 3, 1, 1] and fingerprint["dtype"] == "uint8"

    def changed(row=None, label_row=None):
        x, y = images.copy(), data.y.copy()
        if row is not None:
            x[row] += 1
        if label_row is not None:
            y[label_row] += 1
        return arrays.Dataset(x, y, (), "x.npy").fingerprint(rows=3)

    assert changed(row=5) == fingerprint  # between the rows read
    assert changed(row=9)["digest"] != fingerprint["digest"]
    assert changed(label_row=5)["digest"] != fingerprint["digest"]
