"""Loader: batches of a dataset as minilean Tensors on the model's device.

Each epoch visits the rows in an order drawn from ``seed`` and the epoch number, so epoch e of
a run is the same whether or not the run was stopped and resumed; ``batches(start_step=k)``
continues an endless, step-based stream at step k exactly. Images are converted one batch at a
time (a memory-mapped uint8 file is never expanded to float as a whole): to float32, scaled to
the model's range, optionally flipped left-right at random, then copied to the device.
"""
import collections

import numpy

from minilean.autograd.creation import tensor
from minilean.autograd.tensor import is_int
from minilean.data.arrays import VALUE_RANGES, Dataset, float_images, read_rows
from minilean.data.streams import Purpose, stream


Batch = collections.namedtuple("Batch", ["x", "y"])


class Loader:
    """Batches of ``data`` (a Dataset, or an array of rows with optional ``labels``).

    ``value_range``: (-1, 1) or (0, 1) for images (uint8 is divided by 255 first); ``None``
    passes the rows through as float32 (ring8 points). ``hflip`` flips each image
    left-right with probability 1/2. Each batch is ``Batch(x, y)``: float32 Tensor and int64
    Tensor (or None when there are no labels), both on ``device``. ``rows``: the row indices
    to draw batches from (default: every row), so that rows held out of a memory-mapped file
    need no copy of the others. ``order_purpose``: the streams' purpose the epochs' orders
    are drawn from (a second model trained in the same run, the FD-classifier, has its own).
    """

    def __init__(self, data, batch_size, labels=None, shuffle=True, drop_last=True, seed=0,
                 hflip=False, value_range=(-1.0, 1.0), device="cpu", rows=None,
                 order_purpose=Purpose.DATA_ORDER):
        if isinstance(data, Dataset):
            data, labels = data.x, data.y
        if value_range is not None and tuple(value_range) not in VALUE_RANGES:
            raise ValueError(f"value_range must be one of {VALUE_RANGES} or None, "
                             f"got {value_range!r}")
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if hflip and data.ndim != 4:
            raise ValueError(f"hflip needs images (N, C, H, W), found shape {data.shape}")
        if value_range is not None and data.ndim != 4:
            raise ValueError(f"value_range scales images (N, C, H, W); pass value_range=None "
                             f"for rows of shape {data.shape[1:]}")
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"{len(labels)} labels for {len(data)} rows")
        self.rows = numpy.arange(len(data)) if rows is None else numpy.asarray(rows)
        # checked here, not when a batch first reaches a bad one (a bare IndexError), and
        # never as a mask: booleans would index as 0 and 1
        if rows is not None:
            _check_rows(self.rows, len(data))
        if not is_int(seed) or seed < 0:  # found only at the first batch's stream
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if drop_last and len(self.rows) < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the dataset "
                             f"({len(self.rows)} rows) and drop_last would leave no batch")
        if len(self.rows) == 0:
            raise ValueError("the dataset is empty")
        self.data, self.labels = data, labels
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.seed, self.hflip, self.device = seed, hflip, device
        self.order_purpose = order_purpose
        self.value_range = None if value_range is None else tuple(value_range)
        self.next_epoch = 0  # what a plain ``for batch in loader`` runs next
        self._order = (None, None)  # (epoch, its row order), cached between batches

    def __len__(self):
        """Batches per epoch."""
        full, rest = divmod(len(self.rows), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def epoch_order(self, epoch):
        """The row order of ``epoch`` (``rows`` in a permutation drawn from (seed, epoch), or
        as they are)."""
        if self._order[0] != epoch:
            order = (self.rows[stream(self.seed, self.order_purpose, epoch).permutation(
                len(self.rows))] if self.shuffle else self.rows)
            self._order = (epoch, order)
        return self._order[1]

    def batch_rows(self, epoch, index):
        """Row indices of batch ``index`` of ``epoch``."""
        return self.epoch_order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]

    def make_batch(self, rows, epoch, index):
        """Convert the rows to a Batch on the device."""
        x = float_images(read_rows(self.data, rows), self.value_range)
        if self.hflip:
            flip_rng = stream(self.seed, Purpose.FLIPS, epoch, index)
            flipped = flip_rng.random(len(rows)) < 0.5
            x[flipped] = x[flipped, :, :, ::-1]                     # reverse the W axis
        y = None if self.labels is None else tensor(
            numpy.asarray(self.labels[rows], numpy.int64), device=self.device)
        return Batch(tensor(numpy.ascontiguousarray(x), device=self.device), y)

    def __iter__(self):
        """The next epoch (0, 1, 2, ... on successive loops, each in its own order)."""
        self.next_epoch += 1
        return self.epoch(self.next_epoch - 1)

    def epoch(self, epoch):
        for index in range(len(self)):
            yield self.make_batch(self.batch_rows(epoch, index), epoch, index)

    def batches(self, start_step=0):
        """Endless batches for step-based training, starting at global step ``start_step``."""
        epoch, index = divmod(start_step, len(self))
        while True:
            for index in range(index, len(self)):
                yield self.make_batch(self.batch_rows(epoch, index), epoch, index)
            epoch, index = epoch + 1, 0


def _check_rows(rows, count):
    """``rows`` must be a 1-d array of integer indices into ``count`` rows."""
    whole = rows.ndim == 1 and rows.dtype.kind in "iu"
    if whole and (rows.size == 0 or (0 <= rows.min() and rows.max() < count)):
        return
    values = f" with values {rows.min()}..{rows.max()}" if whole else ""
    raise ValueError(f"rows must be integer indices of the data's {count} rows (0..{count - 1}), "
                     f"got {rows.dtype} of shape {rows.shape}{values}")
