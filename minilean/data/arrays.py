"""Datasets by name or by path: one ``load_dataset`` for every model command's data flags.

Image datasets come back as a ``Dataset`` whose images are NCHW, either uint8 in [0, 255] or
float in [0, 1] (large ``.npy`` files stay memory-mapped; the Loader converts one batch at a
time). ``.npy`` arrays may be NCHW or NHWC: the layout is read from where the channel axis
(1 or 3) is, and a shape where both readings fit is reported rather than guessed.
"""
import dataclasses
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy

from minilean.data import builtin, cifar10
from minilean.data.paths import existing_problem
from minilean.data.streams import KEY_LIMIT
from minilean.errors import flag_error
from minilean.flags import Flag, flag_checked

DATASETS = ("builtin", "cifar10", "imagenet64", "digits", "ring8")
READ_FROM_DATA_ROOT = ("cifar10", "imagenet64")  # the datasets --data-root holds
DATASET_ALIASES = {"cifar": "cifar10", "imagenet": "imagenet64", "imagenette64": "imagenet64",
                   "shapes": "builtin"}
# The most bytes --n-total may ask builtin or ring8 to generate. They are made in memory at
# once, and a run holds its model, batches and evaluation besides (the training rows are
# never copied whole), so a size past any machine's memory is refused by
# name before allocating, not in NumPy's words mid-run. 4 GiB is 1.39 million 32x32 images
# (more than ImageNet-1k's 1.28 million), 349,297 at 64x64, 268 million ring8 points: several
# times the images any default run sees (vae: 1,200 steps of 64, 76,800), while they still
# fit a workstation's memory.
GENERATED_BYTES_CAP = 4 * 2**30
# The data flags of every model command (minilean/cli.py shows them; load_dataset takes them)
DATA_FLAGS = (
    Flag("dataset", "builtin", "training images: builtin (generated coloured shapes, no "
         "download), cifar10, imagenet64, digits or ring8 (2-D points)", choices=DATASETS,
         aliases=DATASET_ALIASES),
    Flag("x", None, "an .npy array of images to train on instead of --dataset "
         "(uint8 [0,255] or float [0,1], NCHW or NHWC)", kind=Path),
    Flag("y", None, "an .npy array of integer labels that goes with --x", kind=Path),
    Flag("n_total", None, "keep only the first N rows of the dataset (builtin and ring8: "
         f"generate N, at most {GENERATED_BYTES_CAP // 2**30} GiB of them)", kind=int, low=1),
    Flag("image_size", 32, "side of the builtin and digits images in pixels (digits: a "
         "multiple of 8)", low=builtin.MIN_IMAGE_SIZE, high=builtin.MAX_IMAGE_SIZE),
    Flag("data_root", "data/real", "folder of the datasets cifar10 (ROOT/cifar10/, where data "
         "download --root ROOT puts it) and imagenet64 (ROOT/imagenet64/imagenet64_train_X.npy "
         "and _y.npy); a run saves it as an absolute path, so --resume finds the data from any "
         "working folder", kind=Path),
)
NPY_MAGIC, ZIP_MAGIC = numpy.lib.format.MAGIC_PREFIX, b"PK\x03\x04"  # how .npy, .npz begin
DEFAULT_N_TOTAL = 10_000  # rows generated for the procedural datasets (builtin, ring8)
_RANGE_CHECK_ROWS = 1024  # rows of a float array range-checked at a time
# Labels are class indices 0..K-1: one class name is made per value and the FD classifier has
# one output per class, so a stray value (an ID, a -1 "unlabelled" mark, a bad cast: 4e9) would
# allocate without bound. 2**16 classes is far above any image dataset in use (ImageNet-21k has
# 21,841) and keeps those small (65,536 names; a 32 x 65,536 float32 head is 8 MiB).
MAX_LABEL = 2**16 - 1


@dataclasses.dataclass
class Dataset:
    """``x``: images (N, C, H, W) uint8 or float in [0, 1] (ring8: points (N, 2) float32);
    ``y``: int64 labels (N,) or None; ``class_names``: names of the label values."""
    x: numpy.ndarray
    y: object
    class_names: tuple
    name: str

    def __len__(self):
        return len(self.x)

    @property
    def is_image(self):
        return self.x.ndim == 4

    @property
    def image_shape(self):
        """(C, H, W) of the images."""
        return tuple(self.x.shape[1:])

    def images_float(self, indices=slice(None)):
        """Rows of ``x`` as float32 in [0, 1] (uint8 is divided by 255)."""
        return float_images(self.x[indices])

    def spread_rows(self, rows):
        """Indices of ``rows`` rows spread evenly over the data, the first and the last among
        them (all rows where there are no more than ``rows``): what a digest of a few rows of
        a memory-mapped file of any size reads."""
        return numpy.unique(numpy.linspace(0, len(self) - 1, min(rows, len(self))).astype(int))

    def fingerprint(self, rows=64):
        """What identifies these data to a resumed run: their shape and dtype, and a digest of
        ``rows`` rows spread over them (``spread_rows``) and of every label. A few rows keep it
        cheap for a memory-mapped file of any size (a change between them goes unseen); the
        labels cost 8 bytes a row."""
        digest = hashlib.sha256(numpy.ascontiguousarray(self.x[self.spread_rows(rows)]).tobytes())
        if self.y is not None:
            digest.update(numpy.ascontiguousarray(self.y, numpy.int64).tobytes())
        return {"shape": list(self.x.shape), "dtype": str(self.x.dtype),
                "digest": digest.hexdigest()[:16]}


VALUE_RANGES = ((-1.0, 1.0), (0.0, 1.0))  # what ``float_images`` maps images to


def float_images(rows, value_range=(0.0, 1.0)):
    """Rows as float32: uint8 divided by 255, floats as they are (taken to be in [0, 1]), then
    mapped to [-1, 1] when ``value_range`` is (-1, 1); None keeps [0, 1] (and points as
    they are)."""
    rows = numpy.asarray(rows)
    if rows.dtype != numpy.uint8 and rows.dtype.kind != "f":  # an int64 255 came out as 255.0
        raise TypeError(f"expected uint8 images or floats in [0, 1], found {rows.dtype}")
    if value_range is not None and tuple(value_range) not in VALUE_RANGES:
        raise ValueError(f"value_range must be (0, 1), (-1, 1) or None, got {value_range}")
    rows = rows.astype(numpy.float32) / numpy.float32(255.0) if rows.dtype == numpy.uint8 \
        else rows.astype(numpy.float32, copy=False)
    if tuple(value_range or ()) == (-1.0, 1.0):
        rows = rows * numpy.float32(2.0) - numpy.float32(1.0)
    return rows


def read_rows(rows, indices):
    """``rows[indices]`` as an array in the order of ``indices``, read in file order: much
    faster from a memory map."""
    sorting = numpy.argsort(indices)
    return numpy.asarray(rows[indices[sorting]])[numpy.argsort(sorting)]


def _cut_short(path):
    """What a ``.npy`` file whose data end before its header says they do is missing, in words
    (NumPy's own: "mmap length is greater than file size"), or that it holds Python objects;
    None for any other fault."""
    with open(path, "rb") as file:
        try:
            version = numpy.lib.format.read_magic(file)
            # 1.0 counts its header's length in 2 bytes; 2.0 and 3.0 in 4
            read_header = (numpy.lib.format.read_array_header_1_0 if version == (1, 0)
                           else numpy.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(file)
        except (ValueError, EOFError):
            return None
        if dtype.hasobject:  # its objects are pickled after the header: no size to promise
            return (f"it holds Python objects ({dtype}), which are never unpickled; expected a "
                    f"numeric array")
        promised = file.tell() + math.prod(shape) * dtype.itemsize
    size = os.path.getsize(path)
    if size >= promised:
        return None
    return (f"the file is cut short: it holds {size} bytes, and its header promises {promised} "
            f"(shape {shape}, {dtype}); copy or save it again")


def load_npy(path, where, missing):
    """Memory-map a ``.npy`` file; a missing file's error ends with ``missing`` (the command
    that makes it, "make it with: ...", or what it should hold, "expected ...").

    ``where`` names the file in errors (e.g. "--x x.npy"). A path that is a directory, or lies
    below a file, is an ``OSError`` saying so; an empty file, an ``.npz`` archive or anything
    else that is not one array is a ``ValueError``.
    """
    problem = existing_problem(path)
    if problem:
        kind, words = problem  # making the file cures only a missing one
        hint = missing if kind is FileNotFoundError else "expected a .npy array file"
        raise kind(f"{where} {words}; {hint}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{where}: the file is empty; expected a .npy array file (numpy.save)")
    with open(path, "rb") as file:
        head = file.read(len(NPY_MAGIC))
    if head.startswith(ZIP_MAGIC):
        # refused by its magic bytes, unopened: numpy.load would open it as an .npz archive,
        # and one cut short (a partial copy) raised zipfile's BadZipFile, a traceback
        raise ValueError(f"{where}: the file is an .npz archive; expected a .npy array file "
                         "(numpy.save, not numpy.savez)")
    if head != NPY_MAGIC:
        # numpy.load would try any other file as a pickle, and say it holds pickled data
        raise ValueError(f"{where}: the file is not in the .npy format (it does not begin with "
                         f"its magic bytes); expected a .npy array file (numpy.save)")
    try:
        return numpy.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as error:  # EOFError: a header cut short
        fault = _cut_short(path) or f"cannot read it as a .npy array file: {error}"
        raise ValueError(f"{where}: {fault}") from None


def check_pixel_values(images, where):
    """Images must be uint8 in [0, 255] or finite floats in [0, 1]. Every row of a float array
    is checked, ``_RANGE_CHECK_ROWS`` at a time (a memory-mapped file is read once, never held
    whole): a bad row late in a file would otherwise surface as a nan loss mid-training, or not
    at all. The error names the first bad row, and the range found where all are finite."""
    if images.dtype != numpy.uint8 and images.dtype.kind != "f":
        raise ValueError(f"{where}: expected dtype uint8 in [0, 255] or float in [0, 1], "
                         f"found {images.dtype}")
    if images.dtype.kind != "f" or images.size == 0:
        return
    low, high, first_outside = numpy.inf, -numpy.inf, None
    for start in range(0, len(images), _RANGE_CHECK_ROWS):
        rows = numpy.asarray(images[start:start + _RANGE_CHECK_ROWS])
        rows = rows.reshape(len(rows), -1)
        finite = numpy.isfinite(rows)
        if not finite.all():
            row = int(numpy.argmin(finite.all(axis=1)))
            raise ValueError(f"{where}: expected float images in [0, 1], found "
                             f"{rows[row][~finite[row]][0]} at row {start + row}")
        low, high = min(low, rows.min()), max(high, rows.max())
        outside = ((rows < 0) | (rows > 1)).any(axis=1)
        if first_outside is None and outside.any():
            first_outside = start + int(numpy.argmax(outside))
    if first_outside is not None:
        raise ValueError(f"{where}: expected float images in [0, 1], found values in "
                         f"[{low}, {high}] (from row {first_outside} on)")


def as_nchw(images, path, layout=None):
    """Check images and return them NCHW (a view; no copy of a memory-mapped file).

    Accepts (N, H, W) grey, NCHW or NHWC with 1 or 3 channels, dtype uint8 or float in [0, 1],
    N >= 1. ``layout`` ("NCHW" or "NHWC", a manifest's) settles a shape that could be either
    (N, 3, 8, 3): images 3 pixels wide, or 8 wide and 3 high.
    ``path`` starts every error message (a path, or "--x PATH").
    """
    if images.ndim not in (3, 4):  # first: the pixel check reads rows, which rank 0 has none of
        raise ValueError(f"{path}: expected images of rank 4 (N, C, H, W) or (N, H, W, C), "
                         f"found rank {images.ndim} with shape {images.shape}")
    check_pixel_values(images, path)
    shape = images.shape
    if images.ndim == 3:  # grey: no channel axis to find, whatever the width
        images = images[:, None]                                   # (N, H, W) -> (N, 1, H, W)
    else:
        channels_first, channels_last = shape[1] in (1, 3), shape[3] in (1, 3)
        if channels_first and channels_last and layout:
            channels_first = layout == "NCHW"
            channels_last = not channels_first
        if channels_first and channels_last:
            raise ValueError(f"{path}: shape {shape} is ambiguous (could be NCHW or NHWC); "
                             "save it as NCHW with a non-1/3 width")
        if not (channels_first or channels_last):
            raise ValueError(f"{path}: expected 1 or 3 channels on axis 1 (NCHW) or 3 (NHWC), "
                             f"found shape {shape}")
        if channels_last:
            images = images.transpose(0, 3, 1, 2)                  # NHWC -> NCHW
    if not len(images):  # else refused later, in words of the rows or of --batch-size
        raise ValueError(f"{path}: expected at least one image, found shape {shape}")
    if 0 in images.shape[2:]:
        raise ValueError(f"{path}: expected images of at least 1x1 pixels, found shape {shape}")
    return images


def as_labels(labels, count, path):
    """Check labels: ``count`` integers, each a class index in [0, MAX_LABEL]; as int64.

    Floats that are all whole numbers count as integers: TorchLean's CIFAR-10 download writes
    its labels as float32, to the path minilean reads. ``path`` starts every error message (a
    path, or "--y PATH").
    """
    if labels.ndim == 1 and labels.dtype.kind == "f":
        fractional = numpy.flatnonzero(labels != numpy.floor(labels))  # nan too; not inf
        if fractional.size:
            row = int(fractional[0])
            raise ValueError(f"{path}: expected integer labels (whole numbers), found "
                             f"{labels[row]} at row {row}")
    elif labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: expected integer labels of rank 1 (whole numbers), found "
                         f"{labels.dtype} with shape {labels.shape}")
    if len(labels) != count:
        raise ValueError(f"{path}: expected {count} labels (one per image), found {len(labels)}")
    # Checked before the int64 cast, which would wrap a uint64 above 2**63 to a negative.
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        row = int(numpy.flatnonzero((labels < 0) | (labels > MAX_LABEL))[0])
        raise ValueError(f"{path}: expected labels that are class indices in [0, {MAX_LABEL}], "
                         f"found {labels[row]} at row {row}")
    return numpy.asarray(labels, numpy.int64)


# What a missing --x or --y file should be made as (the real datasets name their command).
IMAGES_HINT = "a .npy array of images (N, C, H, W) or (N, H, W, C)"
LABELS_HINT = "a .npy array of integer labels (N,), one per image"


def manifest_path(x_path):
    """The JSON manifest written beside an image array (``X.npy`` -> ``X.json``)."""
    return os.path.splitext(x_path)[0] + ".json"


# The keys of the manifest `data convert image-folder` writes beside its images
# (image_folder.convert_image_folder); a JSON file there with other keys is not ours.
MANIFEST_KEYS = ("shape", "dtype", "layout", "source", "count", "crop", "skipped",
                 "class_names", "labels")


# what json.load returns -> the JSON name of the value (for errors that describe a file)
_JSON_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def read_manifest(path):
    """The manifest at ``path``, a dict whose class names (``class_names``) are a list of texts
    or None, and whose ``layout``, where given, is NCHW or NHWC.

    Any ``X.json`` beside an ``X.npy`` is taken for its manifest, so a file there that is not
    one (unreadable, not JSON, none of the manifest's keys, class names that are not a list of
    texts, another layout) is a one-line ``ValueError`` naming it, rather than being half-read
    or ignored. Other keys missing or added pass: a manifest of another version still serves.
    """
    expected = ("expected the manifest that `python -m minilean data convert image-folder` "
                "writes beside its images (or no file of that name)")
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise ValueError(f"{path}: cannot read it as JSON ({error}); {expected}") from None
    keys = set(manifest) if isinstance(manifest, dict) else set()
    if not keys & set(MANIFEST_KEYS):
        found = f"an object with keys {sorted(keys)}" if isinstance(manifest, dict) else \
            f"a JSON {_JSON_NAMES[type(manifest)]}"
        raise ValueError(f"{path}: not a minilean manifest (it holds {found}); {expected}: "
                         f"move or rename it")
    names = manifest.get("class_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(name, str) for name in names)):
        raise ValueError(f"{path}: a malformed manifest (class_names is {names!r}); expected "
                         f"a list of texts or null there")
    if manifest.get("layout", "NCHW") not in ("NCHW", "NHWC"):
        raise ValueError(f"{path}: a malformed manifest (layout is {manifest['layout']!r}); "
                         f"expected NCHW or NHWC there")
    return manifest


def load_arrays(x, y=None, name=None, make_command=None, class_names=None, from_flags=False):
    """A Dataset from an image array file and an optional label file.

    ``make_command``: what makes both files (a missing one's error names it; default: what
    each file should hold). ``from_flags``: the paths came as --x and --y, and errors name
    those flags.
    """
    x_where, y_where = (f"--x {x}", f"--y {y}") if from_flags else (x, y)
    made_by = make_command and f"make it with: {make_command}"
    # the converted image folders' manifest: their class names, and their layout
    manifest = read_manifest(manifest_path(x)) if class_names is None and \
        os.path.exists(manifest_path(x)) else {}
    images = as_nchw(load_npy(x, x_where, made_by or f"expected {IMAGES_HINT}"),
                     x_where, manifest.get("layout"))
    labels = None if y is None else as_labels(
        load_npy(y, y_where, made_by or f"expected {LABELS_HINT}"), len(images),
        y_where)
    if class_names is None:
        class_names = manifest.get("class_names")
    if not class_names and labels is not None:
        class_names = tuple(str(value) for value in range(int(labels.max()) + 1))
    return Dataset(images, labels, tuple(class_names or ()), name or os.path.basename(x))


def _digits(image_size):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("--dataset digits needs scikit-learn (pip install scikit-learn)") from None
    digits = load_digits()
    images = (digits.images / 16.0).astype(numpy.float32)[:, None]  # (N, 8, 8) -> (N, 1, 8, 8)
    factor = image_size // 8
    # Nearest upsampling to image_size, so models sized for the shared flag take digits as is.
    images = images.repeat(factor, axis=2).repeat(factor, axis=3)
    return Dataset(images, digits.target.astype(numpy.int64),
                   tuple(str(value) for value in range(10)), "digits")


def _real_dataset(name, root):
    if name == "cifar10":
        command = f"python -m minilean data download --cifar10 --root {root}"
        path = cifar10.output_paths(root)
        return load_arrays(path["train_X"], path["train_y"], "cifar10", command, cifar10.CLASSES)
    folder = os.path.join(root, "imagenet64")
    x, y = (os.path.join(folder, f"imagenet64_train_{part}.npy") for part in ("X", "y"))
    command = (f"python -m minilean data convert image-folder --input IMAGE_DIR --x-output {x} "
               f"--y-output {y} --labels-from-dirs")
    return load_arrays(x, y if os.path.exists(y) else None, "imagenet64", command)


def generated_rows(dataset, n_total, image_size):
    """How many rows builtin or ring8 generates: ``n_total`` (default ``DEFAULT_N_TOTAL``),
    refused (a FlagError) when its arrays would pass ``GENERATED_BYTES_CAP``."""
    if n_total is None:
        return DEFAULT_N_TOTAL
    # uint8 (3, S, S) images and int64 labels; ring8: two float32 coordinates and an int64 mode
    row_bytes = 3 * image_size**2 + 8 if dataset == "builtin" else 2 * 4 + 8
    named = f"{dataset} at {image_size}x{image_size}" if dataset == "builtin" else dataset
    check_within_cap("n_total", n_total, row_bytes, f"--dataset {named}", "generated", " rows")
    return n_total


def check_within_cap(flag, count, row_bytes, what, made, unit=""):
    """Refuse (a FlagError naming ``flag``) ``count`` rows of ``row_bytes`` each, ``made``
    ("generated", "sampled") in memory at once, when together they would pass
    ``GENERATED_BYTES_CAP``; ``what`` says what the rows are."""
    most = GENERATED_BYTES_CAP // row_bytes
    if count > most:
        raise flag_error(flag, count, f"at most {most} for {what} ({made} in memory at once: "
                         f"{count}{unit} would take {count * row_bytes / 2**30:,.1f} GiB, above "
                         f"the cap of {GENERATED_BYTES_CAP / 2**30:g} GiB)")


def check_labels_come_with_images(x, y):
    """``--y`` names the labels of the images in ``--x``: alone it is refused (a FlagError)."""
    if y is not None and x is None:
        raise flag_error("y", y, "to come with --x (labels for an image array)")


@flag_checked(*DATA_FLAGS, Flag("seed", 0, "seed of the generated datasets", low=0,
                                high=KEY_LIMIT - 1))
def load_dataset(dataset="builtin", x=None, y=None, n_total=None, image_size=32, seed=0,
                 data_root="data/real"):
    """The dataset named by the shared data flags (``--dataset``, ``--x``, ``--y``, ...).

    ``x`` (a ``.npy`` path) overrides ``dataset``; ``y`` adds labels to it. ``n_total`` keeps the
    first N rows (for builtin/ring8 it is how many are generated; default 10,000).
    ``image_size`` applies to builtin (16..64) and digits (a multiple of 8). Bad flag values
    (checked by ``DATA_FLAGS``, as Python values: ``image_size='32'`` is refused) raise
    ``FlagError``; missing or malformed files ``FileNotFoundError`` / ``ValueError``.
    """
    check_labels_come_with_images(x, y)
    if x is not None:
        data = load_arrays(x, y, from_flags=True)
    elif dataset == "builtin":
        images, labels = builtin.make_shapes(generated_rows(dataset, n_total, image_size),
                                             image_size, seed)
        data = Dataset(images, labels, builtin.SHAPE_CLASSES, "builtin")
    elif dataset == "ring8":
        points, modes = builtin.make_ring8(generated_rows(dataset, n_total, image_size), seed)
        data = Dataset(points, modes, tuple(f"mode{index}" for index in range(8)), "ring8")
    elif dataset == "digits":
        if image_size % 8:
            raise flag_error("image_size", image_size, "a multiple of 8 for --dataset digits")
        data = _digits(image_size)
    else:
        data = _real_dataset(dataset, data_root)
    if n_total is not None:
        if n_total > len(data):  # only a file or a downloaded set can hold fewer rows
            raise flag_error("n_total", n_total, f"at most {len(data)}, the rows of {data.name}")
        warn_of_classes_left_out(data, n_total)
        data.x = data.x[:n_total]
        data.y = None if data.y is None else data.y[:n_total]
    return data


def warn_of_classes_left_out(data, n_total):
    """Say on stderr when the first ``n_total`` rows, all that --n-total keeps, hold fewer
    classes than the labels of all rows do.

    A converted image folder lists its images class by class, so its first rows are its first
    classes: a model trained on them, and the FD-classifier scoring it, would see part of the
    data without a word. The rows kept stay the first (the README's numbers rest on them); only
    the labels of all rows are read, 8 bytes a row, never the images.
    """
    if data.y is None or n_total >= len(data):  # builtin and ring8 make exactly n_total rows
        return
    kept, total = len(numpy.unique(data.y[:n_total])), len(numpy.unique(data.y))
    if kept < total:
        print(f"minilean: warning: --n-total {n_total} keeps the first {n_total} rows of "
              f"{data.name}, which hold {kept} of its {total} classes; shuffle the rows first "
              f"(a converted image folder lists its images class by class) or keep more",
              file=sys.stderr)
