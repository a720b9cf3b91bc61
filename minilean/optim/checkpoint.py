"""Checkpoints: named state dicts, arrays and JSON metadata in one ``.npz`` file.

    save_checkpoint("run/ckpt.npz", model=model.state_dict(), optimizer=opt.state_dict(),
                    ema=ema.state_dict(), step=1200, config={"lr": 2e-4})
    state = load_checkpoint("run/ckpt.npz")
    model.load_state_dict(state["model"]); opt.load_state_dict(state["optimizer"])

Every array anywhere in the (nested dict/list) values is stored as its own ``.npy`` member,
named by its path (``model/conv1.weight``, ``optimizer/state/exp_avg/3``), so ``numpy.load``
shows what is inside. Everything else must be JSON-able; the structure, with each array
replaced by ``{"__array__": member name}``, is one JSON string in the member ``__tree__``.
No pickle anywhere: loading uses ``allow_pickle=False``, so a checkpoint cannot run code.

The file is written to a temporary file in the same directory and then renamed over the
target (``os.replace`` is atomic), so a crash mid-write leaves the old checkpoint intact.
"""
import json
import os
import zipfile

import numpy

from minilean import backend
from minilean.atomic import atomic_open
from minilean.autograd.tensor import Tensor

TREE_KEY = "__tree__"
ARRAY_KEY = "__array__"  # {ARRAY_KEY: member name} stands for an array in the tree
ZIP_MAGIC = b"PK\x03\x04"  # how every .npz (a zip archive) begins


def _is_array(value):
    """A Tensor, NumPy array or CuPy array (NumPy scalars are stored as plain JSON numbers)."""
    return isinstance(value, Tensor) or (hasattr(value, "shape") and hasattr(value, "dtype")
                                         and not isinstance(value, numpy.generic))


def _split(value, path, arrays):
    """The JSON-able tree of ``value``, moving each array into ``arrays[path]``."""
    if _is_array(value):
        if path in arrays:
            raise ValueError(f"checkpoint entry {path!r} is named twice")
        data = value.data if isinstance(value, Tensor) else value
        if data.dtype.hasobject:  # numpy.savez would pickle it, and loading refuses pickles
            raise TypeError(f"checkpoint entry {path!r} is an array of Python objects, which "
                            f"only pickle could store")
        arrays[path] = backend.to_device(data, "cpu")
        return {ARRAY_KEY: path}
    if isinstance(value, numpy.generic):
        return value.item()
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"checkpoint entry {path!r} has a non-string key {key!r}")
        if set(value) == {ARRAY_KEY}:  # would read back as a reference to an array
            raise ValueError(f"checkpoint entry {path!r} is a dict whose only key is "
                             f"{ARRAY_KEY!r}, which checkpoints reserve for arrays")
        return {key: _split(item, f"{path}/{key}", arrays) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(item, f"{path}/{index}", arrays) for index, item in enumerate(value)]
    try:
        json.dumps(value, allow_nan=True)
    except TypeError:
        raise TypeError(f"checkpoint entry {path!r} is a {type(value).__name__}, "
                        f"which is neither an array nor JSON-able") from None
    return value


def _join(tree, arrays):
    if isinstance(tree, dict):
        if set(tree) == {ARRAY_KEY}:
            if tree[ARRAY_KEY] not in arrays:
                raise ValueError(f"its {TREE_KEY!r} names an array {tree[ARRAY_KEY]!r} that "
                                 f"the file does not hold")
            return arrays[tree[ARRAY_KEY]]
        return {key: _join(item, arrays) for key, item in tree.items()}
    if isinstance(tree, list):
        return [_join(item, arrays) for item in tree]
    return tree


def save_checkpoint(path, **entries):
    """Write ``entries`` (state dicts, arrays, JSON-able values) to ``path`` atomically."""
    write_checkpoint(path, checkpoint_members(**entries))


def checkpoint_members(**entries):
    """The members ``save_checkpoint`` writes for ``entries``, by name: each array copied to
    the host under its path (``model/conv1.weight``), and the JSON tree under ``__tree__``."""
    arrays = {}
    tree = {name: _split(value, name, arrays) for name, value in entries.items()}
    if TREE_KEY in arrays:
        raise ValueError(f"{TREE_KEY!r} is reserved in checkpoints")
    arrays[TREE_KEY] = numpy.array(json.dumps(tree))
    return arrays


def write_checkpoint(path, members):
    """Write ``members`` (from ``checkpoint_members``) to ``path`` atomically."""
    with atomic_open(path, "wb") as file:
        numpy.savez(file, **members)


def load_checkpoint(path):
    """The entries saved by ``save_checkpoint``, arrays as NumPy arrays (on the host)."""
    if os.path.isdir(path):  # a run's directory given for its checkpoint is not "missing"
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder, not a checkpoint file "
                                f"(a run keeps its checkpoint in checkpoints/last.npz)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    with open(path, "rb") as probe:
        head = probe.read(len(ZIP_MAGIC))
    # numpy.load would read any other file (a pickle, text, noise) as a pickle, refuse it and
    # advise loading it unsafely; a .npy array and an empty file are refused here too
    if head != ZIP_MAGIC:
        raise ValueError(f"{str(path)!r} is not a readable minilean checkpoint (not an .npz "
                         f"archive: it does not begin with the zip magic bytes)")
    try:
        with numpy.load(path, allow_pickle=False) as file:
            # numpy.savez stores the array named "w" as the member "w.npy", and numpy.load
            # answers to a member's name with or without ".npy": file["w.npy"] would be the
            # array "w", not the array "w.npy" (the member "w.npy.npy"), so each array is read
            # by its member's full name
            arrays = {name: file[f"{name}.npy"] for name in file.files}
        if TREE_KEY not in arrays:
            raise ValueError(f"no {TREE_KEY!r} entry")
        return _join(json.loads(str(arrays.pop(TREE_KEY))), arrays)
    # a truncated archive, one whose members are no arrays (or pickled objects) or not named
    # as numpy.savez names them, or whose tree names a member it does not have
    except (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{str(path)!r} is not a readable minilean checkpoint "
                         f"({' '.join(str(error).split()) or type(error).__name__})") from error
