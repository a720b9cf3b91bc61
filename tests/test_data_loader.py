"""Loader: seeded shuffle, drop_last, endless resumable stream, flips, scaling, Tensors out."""
import re

import numpy
import pytest

from minilean.autograd.tensor import Tensor
from minilean.data.arrays import Dataset, float_images
from minilean.data.loader import Loader
from minilean.data.streams import Purpose, stream


def numbered_images(count, width=3):
    """uint8 images (count, 1, 2, width) whose every pixel holds the row number."""
    return numpy.repeat(numpy.arange(count, dtype=numpy.uint8), 2 * width).reshape(
        count, 1, 2, width)                                    # (count*2*width,) -> NCHW


def rows_of(batch):
    """The dataset rows of a batch scaled to [0, 1]."""
    return numpy.rint(batch.x.numpy()[:, 0, 0, 0] * 255).astype(int).tolist()


def test_one_epoch_visits_every_row_once_in_a_seeded_order():
    loader = Loader(numbered_images(10), batch_size=3, labels=numpy.arange(10), drop_last=False,
                    value_range=(0, 1), seed=5)
    batches = list(loader)
    assert [len(batch.y) for batch in batches] == [3, 3, 3, 1] and len(loader) == 4
    order = sum((rows_of(batch) for batch in batches), [])
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert order == sum((batch.y.numpy().tolist() for batch in batches), [])  # labels follow
    again = sum((rows_of(batch) for batch in Loader(
        numbered_images(10), 3, drop_last=False, value_range=(0, 1), seed=5)), [])
    other = sum((rows_of(batch) for batch in Loader(
        numbered_images(10), 3, drop_last=False, value_range=(0, 1), seed=6)), [])
    assert again == order and other != order


def test_rows_limit_the_batches_to_those_rows_in_the_seeded_order_of_their_count():
    """``rows`` draw the permutation of their count that all rows of that count would, and
    map it onto themselves; labels follow; without shuffling they come as given."""
    rows = numpy.array([1, 4, 5, 8, 9])
    loader = Loader(numbered_images(10), batch_size=2, labels=numpy.arange(10), drop_last=False,
                    value_range=(0, 1), seed=5, rows=rows)
    batches = list(loader)
    assert len(loader) == 3 and [len(batch.y) for batch in batches] == [2, 2, 1]
    order = sum((rows_of(batch) for batch in batches), [])
    assert order == rows[stream(5, Purpose.DATA_ORDER, 0).permutation(5)].tolist()
    assert order == sum((batch.y.numpy().tolist() for batch in batches), [])
    unshuffled = Loader(numbered_images(10), 2, shuffle=False, drop_last=False,
                        value_range=(0, 1), rows=rows)
    assert sum((rows_of(batch) for batch in unshuffled), []) == rows.tolist()
    with pytest.raises(ValueError, match=r"batch_size 6 is larger than the dataset \(5 rows\)"):
        Loader(numbered_images(10), 6, value_range=(0, 1), rows=rows)


def test_drop_last_and_no_shuffle():
    loader = Loader(numbered_images(10), 4, shuffle=False, value_range=(0, 1))
    assert len(loader) == 2
    assert [rows_of(batch) for batch in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="batch_size 11 is larger than the dataset .10 rows."):
        Loader(numbered_images(10), 11)
    # without drop_last, fewer rows than a batch make one short batch
    short = Loader(numbered_images(3), 5, shuffle=False, drop_last=False, value_range=(0, 1))
    assert len(short) == 1 and [rows_of(batch) for batch in short] == [[0, 1, 2]]
    # and rows that fill whole batches make no empty last one
    whole = Loader(numbered_images(6), 3, shuffle=False, drop_last=False, value_range=(0, 1))
    assert len(whole) == 2 and [rows_of(batch) for batch in whole] == [[0, 1, 2], [3, 4, 5]]


def test_endless_stream_reshuffles_each_epoch_and_resumes_at_a_step():
    loader = Loader(numbered_images(6), 2, value_range=(0, 1), seed=1)
    stream = loader.batches()
    steps = [rows_of(next(stream)) for _ in range(9)]  # three epochs of three batches
    epochs = [sum(steps[i:i + 3], []) for i in (0, 3, 6)]
    assert all(sorted(epoch) == list(range(6)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 3
    resumed = loader.batches(start_step=4)
    assert [rows_of(next(resumed)) for _ in range(5)] == steps[4:]


def test_scaling_to_minus_one_one_and_float_input():
    x = numpy.array([0, 255], numpy.uint8).reshape(2, 1, 1, 1)
    batch = next(iter(Loader(x, 2, shuffle=False)))
    assert batch.x.dtype == numpy.float32 and batch.x.numpy().ravel().tolist() == [-1.0, 1.0]
    assert batch.y is None and isinstance(batch.x, Tensor) and batch.x.device == "cpu"
    floats = numpy.array([0.25, 0.5], numpy.float32).reshape(2, 1, 1, 1)
    assert next(iter(Loader(floats, 2, shuffle=False, value_range=(0, 1)))).x.numpy().ravel(
        ).tolist() == [0.25, 0.5]
    # float64 rows (an .npy saved from float64 arrays) come out float32 too, as uint8 ones do
    wide = next(iter(Loader(floats.astype(numpy.float64), 2, shuffle=False))).x
    assert wide.dtype == numpy.float32 and wide.numpy().ravel().tolist() == [-0.5, 0.0]
    with pytest.raises(ValueError, match=r"value_range must be one of"):
        Loader(x, 2, value_range=(0, 255))


def test_flips_mirror_about_half_of_the_images_deterministically():
    x = numpy.tile(numpy.arange(4, dtype=numpy.uint8), (200, 1, 1, 1))      # (200, 1, 1, 4)
    loader = Loader(x, 200, shuffle=False, hflip=True, value_range=(0, 1), seed=3)
    out = numpy.rint(next(iter(loader)).x.numpy()[:, 0, 0] * 255)
    flipped = (out == [3, 2, 1, 0]).all(axis=1)
    assert ((out == [0, 1, 2, 3]).all(axis=1) | flipped).all()
    assert 60 < flipped.sum() < 140
    same_seed = Loader(x, 200, shuffle=False, hflip=True, value_range=(0, 1), seed=3)
    assert numpy.array_equal(out, numpy.rint(next(iter(same_seed)).x.numpy()[:, 0, 0] * 255))
    next_epoch = numpy.rint(next(iter(loader)).x.numpy()[:, 0, 0] * 255)
    assert not numpy.array_equal(out, next_epoch)  # the second loop draws new flips


def test_batch_b_of_epoch_e_flips_as_its_own_stream_says():
    """Each batch's flips are drawn from (seed, FLIPS, epoch, batch), so no two batches of a
    run share them (a key without the batch, or with the two swapped, repeats them)."""
    x = numpy.tile(numpy.arange(4, dtype=numpy.uint8), (24, 1, 1, 1))      # (24, 1, 1, 4)
    loader = Loader(x, 8, shuffle=False, hflip=True, value_range=(0, 1), seed=3)
    for epoch in range(3):
        for index, batch in enumerate(loader.epoch(epoch)):
            flipped = numpy.rint(batch.x.numpy()[:, 0, 0, 0] * 255) == 3
            expected = stream(3, Purpose.FLIPS, epoch, index).random(8) < 0.5
            numpy.testing.assert_array_equal(flipped, expected, f"epoch {epoch} batch {index}")


def test_dataset_and_points_pass_through():
    points = numpy.arange(8, dtype=numpy.float32).reshape(4, 2) - 3.0
    data = Dataset(points, numpy.arange(4), ("a", "b", "c", "d"), "toy")
    batch = next(iter(Loader(data, 4, shuffle=False, value_range=None)))
    numpy.testing.assert_array_equal(batch.x.numpy(), points)
    assert batch.y.dtype == numpy.int64
    with pytest.raises(ValueError, match=r"hflip needs images \(N, C, H, W\)"):
        Loader(data, 2, hflip=True, value_range=None)
    with pytest.raises(ValueError, match=r"pass value_range=None for rows of shape \(2,\)"):
        Loader(data, 2)


def test_labels_must_match_the_rows_one_for_one():
    with pytest.raises(ValueError, match="^3 labels for 4 rows$"):
        Loader(numbered_images(4), 2, labels=numpy.arange(3))
    with pytest.raises(ValueError, match="^5 labels for 4 rows$"):
        Loader(numbered_images(4), 2, labels=numpy.arange(5))


def test_batch_size_is_any_integer_but_a_boolean():
    """A NumPy integer (a size computed from an array's shape) is an integer too."""
    assert len(Loader(numbered_images(8), numpy.int64(4))) == 2
    with pytest.raises(ValueError, match="^batch_size must be a positive integer, got True$"):
        Loader(numbered_images(8), True)
    assert len(Loader(numbered_images(3), 1)) == 3  # the smallest batch
    with pytest.raises(ValueError, match="^batch_size must be a positive integer, got 0$"):
        Loader(numbered_images(8), 0)


def test_an_empty_dataset_is_refused_and_one_row_is_a_dataset():
    """Without drop_last an empty dataset would pass the batch-size check (0 full batches are
    allowed there); it is refused by name. One row is one (short) batch."""
    with pytest.raises(ValueError, match="^the dataset is empty$"):
        Loader(numbered_images(0), 2, drop_last=False)
    one = Loader(numbered_images(1), 2, drop_last=False, value_range=(0, 1))
    assert [rows_of(batch) for batch in one] == [[0]]


def test_the_default_seed_is_zero():
    """A Loader made without a seed shuffles as seed 0 says, the same in every process."""
    loader = Loader(numbered_images(10), 10, value_range=(0, 1))
    expected = stream(0, Purpose.DATA_ORDER, 0).permutation(10).tolist()
    assert rows_of(next(iter(loader))) == expected


def test_order_purpose_draws_the_epochs_orders_from_that_purpose():
    """A second model of the run (the FD-classifier) shuffles from its own streams: its
    epochs are not the model's epochs in the model's order."""
    loader = Loader(numbered_images(10), 10, value_range=(0, 1), seed=4,
                    order_purpose=Purpose.FD_CLASSIFIER_ORDER)
    for epoch in range(2):
        expected = stream(4, Purpose.FD_CLASSIFIER_ORDER, epoch).permutation(10).tolist()
        assert expected != stream(4, Purpose.DATA_ORDER, epoch).permutation(10).tolist()
        assert [rows_of(batch) for batch in loader.epoch(epoch)] == [expected]


def test_successive_loops_are_successive_epochs():
    loader = Loader(numbered_images(8), 4, value_range=(0, 1), seed=0)
    first, second = ([rows_of(batch) for batch in loader] for _ in range(2))
    assert first != second
    assert first == [rows_of(batch) for batch in loader.epoch(0)]
    assert second == [rows_of(batch) for batch in loader.epoch(1)]


def test_memory_mapped_rows_come_back_in_the_drawn_order(tmp_path):
    numpy.save(tmp_path / "x.npy", numbered_images(50))
    mapped = numpy.load(tmp_path / "x.npy", mmap_mode="r")
    in_memory = Loader(numbered_images(50), 7, value_range=(0, 1), seed=2)
    from_disk = Loader(mapped, 7, value_range=(0, 1), seed=2)
    assert [rows_of(a) for a in in_memory] == [rows_of(b) for b in from_disk]


@pytest.mark.parametrize("rows, value_range, error, message", [
    # only uint8 is divided by 255: an int64 255 came out as 509 in [-1, 1]
    (numpy.full((2, 1, 1, 1), 255, numpy.int64), (-1.0, 1.0), TypeError,
     "expected uint8 images or floats in [0, 1], found int64"),
    (numpy.zeros((2, 1, 1, 1), numpy.float32), (-1, 2), ValueError,
     "value_range must be (0, 1), (-1, 1) or None, got (-1, 2)"),
])
def test_images_of_another_kind_or_range_are_refused(rows, value_range, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        float_images(rows, value_range)


def test_a_value_range_given_as_a_list_is_the_same_range():
    """[-1, 1] (a list) was compared with the tuple (-1.0, 1.0) and kept [0, 1]."""
    rows = numpy.array([[0, 255]], numpy.uint8)
    numpy.testing.assert_array_equal(float_images(rows, [-1, 1]), [[-1.0, 1.0]])



@pytest.mark.parametrize("rows, message", [
    ([0, 7], "got int64 of shape (2,) with values 0..7"),
    ([0, 5], "got int64 of shape (2,) with values 0..5"),  # one past the last row
    ([-1, 2], "got int64 of shape (2,) with values -1..2"),
    # a mask indexed as rows 0 and 1, not as the rows it marks
    (numpy.array([True, False, True, True, True]), "got bool of shape (5,)"),
    ([[0, 1]], "got int64 of shape (1, 2)"),
])
def test_rows_that_are_not_indices_of_the_data_are_refused_when_the_loader_is_made(rows,
                                                                                   message):
    """They failed at the first batch that reached them, as a bare IndexError."""
    images = numpy.zeros((5, 1, 2, 2), numpy.uint8)
    with pytest.raises(ValueError, match=re.escape(
            f"rows must be integer indices of the data's 5 rows (0..4), {message}") + "$"):
        Loader(images, 2, rows=rows)
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0, got -1$"):
        Loader(images, 2, seed=-1)
