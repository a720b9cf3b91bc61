"""CIFAR-10: download the official python tarball, verify it, extract it safely, and convert it.

The archive holds Python pickles, and unpickling can run arbitrary code, so nothing from it is
trusted: the archive's MD5 is checked before use, members that would land outside the target
directory (absolute paths, ``..``, links, devices) are refused, and the batches are read by
``RestrictedUnpickler``, which can build only dicts, lists, bytes, numbers and NumPy arrays.
The result is ``cifar10_{train,test}_{X,y}.npy``: images uint8 NCHW (N, 3, 32, 32), labels int64.
"""
import contextlib
import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import urllib.request
import zlib

import numpy

from minilean import atomic
from minilean.data.paths import existing_problem
from minilean.data.progress import Progress

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCHES = ("test_batch",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
_CHUNK_BYTES = 1 << 20


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, destination, expected_md5, opener=None, progress=True):
    """Fetch ``url`` into ``destination`` and check its MD5 before it appears there.

    The bytes stream into a temporary file beside ``destination``; a failed, short or corrupt
    download is removed and raised as ``OSError`` / ``ValueError`` with a one-line message.
    """
    try:
        response = (opener or urllib.request.urlopen)(url)
    except (OSError, ValueError) as error:  # urllib's URLError is an OSError
        raise OSError(f"could not download {url}: {getattr(error, 'reason', error)}") from None
    digest, received = hashlib.md5(), 0

    def chunks():  # a failed read is the download's; a failed write, the file's (atomic_open)
        try:
            yield from iter(lambda: response.read(_CHUNK_BYTES), b"")
        except OSError as error:
            raise OSError(f"download of {url} failed after {received} bytes ({error}); "
                          "the partial file was removed") from None

    with response, atomic.atomic_open(destination, "wb") as file:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = Progress(total, unit="B", enabled=progress, description="download")
        try:
            for chunk in chunks():
                file.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(received)
        finally:
            bar.close()
        if total is not None and received != total:
            raise OSError(f"download of {url} stopped after {received} of {total} bytes; "
                          "the partial file was removed")
        if digest.hexdigest() != expected_md5:
            raise ValueError(f"download of {url} has MD5 {digest.hexdigest()}, expected "
                             f"{expected_md5}; the corrupt file was removed")
    return destination


# What a damaged gzip tarball raises as it is read: tarfile's own error (a bad header, data cut
# short in the tar), gzip's (a stream cut short: EOFError; a bad gzip header) or zlib's (garbled
# compressed data, which tarfile wraps only in a member's header)
DAMAGED_ARCHIVE_ERRORS = (tarfile.ReadError, EOFError, gzip.BadGzipFile, zlib.error)


def safe_extract(archive, target):
    """Extract a gzip tar archive (CIFAR's format) into ``target``, refusing anything that
    would escape it.

    Only regular files and directories are accepted; a member with an absolute path, a ``..``
    that climbs out, or a link/device entry raises ``ValueError`` before anything is written.
    An archive that cannot be read to its end (cut short, garbled, not a gzip tarball) is a
    ``ValueError`` too, naming it; whatever was extracted before is left for the caller.
    """
    target = os.path.realpath(target)
    try:
        # gzip, not "r:*": where every method fails, "r:*" reports each on a line of its own
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()  # reads the archive to its end: most damage shows here
            for member in members:
                destination = os.path.realpath(os.path.join(target, member.name))
                if os.path.commonpath([target, destination]) != target:
                    raise ValueError(f"refusing archive member {member.name!r} of {archive}: "
                                     "it would be written outside the target directory")
                if not (member.isfile() or member.isdir()):
                    raise ValueError(f"refusing archive member {member.name!r} of {archive}: "
                                     "only regular files and directories are allowed")
            os.makedirs(target, exist_ok=True)
            # The checks above are the guard; Python's own "data" filter (3.12, backported to
            # 3.8.17+) is a second one where this Python has it.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(target, members=members, **extra)
    except DAMAGED_ARCHIVE_ERRORS as error:
        raise ValueError(f"{archive} is not a readable CIFAR-10 archive: {error}") from None


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for an object other than a NumPy array: a crafted file, not a damaged one."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild NumPy arrays (plus the plain containers pickle has).

    Pickle builds dicts, lists, tuples, bytes, strings and numbers with its own opcodes; every
    other object needs ``find_class``, so refusing all globals except NumPy's array
    reconstruction means a crafted file cannot call ``os.system`` or anything else.
    """
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise RefusedGlobal(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def load_pickle(path, name=None):
    """Unpickle a Python-2 style CIFAR file (bytes keys) with ``RestrictedUnpickler``;
    ``name``: what errors call the file (default: its path)."""
    name = name or path
    with open(path, "rb") as file:
        try:
            return RestrictedUnpickler(file, encoding="bytes").load()
        except RefusedGlobal as error:
            raise ValueError(f"refusing to read {name}: {error}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError) as error:  # damaged: truncated, garbled or not a batch
            raise ValueError(f"{name} is not a valid CIFAR pickle: {error}") from None


def read_batch(path, name=None):
    """One CIFAR batch file: (uint8 images (n, 3, 32, 32), int64 labels (n,)); ``name``: what
    errors call the file (default: its path)."""
    name = name or path
    batch = load_pickle(path, name)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{name} is not a CIFAR batch: expected a dict with b'data' and "
                         f"b'labels', found {type(batch).__name__}")
    data, labels = batch[b"data"], numpy.asarray(batch[b"labels"])
    if not (isinstance(data, numpy.ndarray) and data.dtype == numpy.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise ValueError(f"{name}: expected data uint8 (N, 3072), found "
                         f"{getattr(data, 'dtype', type(data).__name__)} "
                         f"{getattr(data, 'shape', '')}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected {len(data)} integer labels, found {labels.dtype} "
                         f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"{name}: expected labels 0 to {len(CLASSES) - 1} (CIFAR-10's "
                         f"classes), found {labels.min()} to {labels.max()}")
    # Rows hold the R plane, then G, then B, each 32x32 row-major: that is NCHW already.
    return data.reshape(-1, 3, 32, 32), labels.astype(numpy.int64)  # (N, 3072) -> (N, 3, 32, 32)


def read_split(batch_dir, names, limit=None, archive=None):
    """Concatenate the named batches, keeping the first ``limit`` rows. With ``archive``,
    errors name a batch as its member there, not as the folder it was extracted to (which is
    removed by then)."""
    images, labels = zip(*(read_batch(os.path.join(batch_dir, name),
                                      archive and f"{BATCH_DIR}/{name} in {archive}")
                           for name in names))
    images, labels = numpy.concatenate(images), numpy.concatenate(labels)
    return (images, labels) if limit is None else (images[:limit], labels[:limit])


def output_paths(root):
    """Where the converted arrays live: {"train_X": ..., "train_y": ..., "test_X": ..., ...}."""
    folder = os.path.join(root, "cifar10")
    return {f"{split}_{part}": os.path.join(folder, f"cifar10_{split}_{part}.npy")
            for split in ("train", "test") for part in ("X", "y")}


def prepare(root="data/real", limit_train=None, limit_test=None, url=None, expected_md5=None,
            opener=None, progress=True, log=print):
    """Download (or reuse) the archive under ``root``, verify, extract and write the arrays.

    A cached archive is reused when its MD5 matches; otherwise it is downloaded again, and
    replaced only once the new download's MD5 matches. ``url``, ``expected_md5`` and
    ``opener`` default to the module's ``URL``, ``ARCHIVE_MD5`` and ``urllib.request.urlopen``
    (looked up at call time). Returns the dict of written paths.
    """
    url, expected_md5 = url or URL, expected_md5 or ARCHIVE_MD5
    archive = os.path.join(root, ARCHIVE_NAME)
    paths = output_paths(root)
    problem = existing_problem(archive)
    if problem and problem[0] is not FileNotFoundError:  # only a missing archive is downloaded
        kind, words = problem
        raise kind(f"{archive} {words}; expected the CIFAR-10 archive there (a file), or nothing "
                   f"there to download it to")
    atomic.remove_leftovers_of(archive)  # of a download killed mid-way
    if os.path.exists(archive) and md5_of(archive) == expected_md5:
        log(f"reusing verified {archive}")
    else:
        if os.path.exists(archive):  # kept until a download that checks out replaces it
            log(f"replacing {archive}: its MD5 does not match {expected_md5}")
        log(f"downloading {url} -> {archive}")
        download(url, archive, expected_md5, opener=opener, progress=progress)
    scratch = os.path.join(root, "cifar10", ".extract")
    made_folder = not os.path.isdir(os.path.dirname(scratch))  # removed again if left empty
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        safe_extract(archive, scratch)
        batch_dir = os.path.join(scratch, BATCH_DIR)
        # a tar cut short at a member's end reads as a whole one, of fewer members
        missing = [f"{BATCH_DIR}/{name}" for name in TRAIN_BATCHES + TEST_BATCHES
                   if not os.path.isfile(os.path.join(batch_dir, name))]
        if missing:
            raise ValueError(f"{archive} is not a readable CIFAR-10 archive: it holds no "
                             f"{', '.join(missing)}")
        # Both splits are read before anything is written, and written together: a bad batch
        # or a full disk leaves the old arrays as a whole, never train arrays of this archive
        # (or limit) beside test arrays, or labels, of another.
        splits = {"train": read_split(batch_dir, TRAIN_BATCHES, limit_train, archive),
                  "test": read_split(batch_dir, TEST_BATCHES, limit_test, archive)}
        atomic.write_together({paths[f"{split}_{part}"]: array
                               for split, arrays in splits.items()
                               for part, array in zip("Xy", arrays)})
        for split, (images, labels) in splits.items():
            log(f"wrote {paths[f'{split}_X']} {images.shape} uint8 and labels")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if made_folder:
            with contextlib.suppress(OSError):  # holding the arrays, it stays
                os.rmdir(os.path.dirname(scratch))
    return paths
