"""Atomic file writes: a crash or an error mid-write never leaves a half-written file.

Everything is written to a temporary file in the destination's own directory (so the final
``os.replace`` is a rename on one file system, which POSIX and Windows make atomic) and only
renamed over the destination once it is complete and flushed to disk. On failure the temporary
file is removed and any previous file at the destination is left untouched. A process killed
mid-write (SIGKILL, a power cut) cannot remove it: ``remove_leftovers`` does, later.
"""
import contextlib
import errno
import json
import os
import random
import re
import stat

import numpy


def is_special_file(path):
    """Whether ``path`` (through links) is a device, pipe or socket: no file to write atomically,
    as the rename would put a regular file in its place (as root: in /dev/null's)."""
    return os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path))


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """Open a temporary file beside ``path``; on clean exit it replaces ``path``.

    ``mode`` is "wb" or "w" (text, UTF-8). An exception inside the block removes the temporary
    file and re-raises; the old contents of ``path`` (if any) stay as they were. A system error
    of the write itself (a full disk) is raised as ``OSError("cannot write PATH: reason")``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open mode must be 'wb' or 'w', got {mode!r}")
    # Through a symbolic link, as open() writes: the file it points to is replaced and the
    # link stays (a rename over the link itself would put a new file in the link's place)
    destination = os.path.realpath(path)
    if is_special_file(destination):
        raise OSError(f"cannot write {path}: {destination} is a device, pipe or socket, not a "
                      "regular file")
    directory = os.path.dirname(destination)
    # A file that is there keeps its mode, and one its owner made read-only is refused, as
    # open() refuses it: the rename would replace it whatever its mode, and a private (0600)
    # file would come back readable by all
    existing = os.path.isfile(destination)
    if existing and not os.access(destination, os.W_OK):
        raise OSError(f"cannot write {path}: {os.strerror(errno.EACCES)}")
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = _new_temporary(destination)
    except OSError as error:  # named by the file asked for, not the temporary one
        blocking = _file_in_the_way(directory)
        reason = f"{blocking} is a file, not a folder" if blocking else error.strerror or error
        raise OSError(f"cannot write {path}: {reason}") from error
    try:
        if existing:
            os.chmod(temporary, stat.S_IMODE(os.stat(destination).st_mode))
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, destination)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        # a system error of this write (a full disk while writing, ``path`` a directory at
        # the rename) is named by the file asked for: "[Errno 28] No space left on device"
        # alone, or the temporary's name, would not say which file failed
        if isinstance(error, OSError) and error.errno and error.filename in (None, temporary):
            raise OSError(f"cannot write {path}: {error.strerror or error}") from error
        raise


TEMPORARY_SUFFIX = ".tmp"
NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_NAMES = random.SystemRandom()  # not the random module's own: a user's random.seed stays theirs
# The names atomic_open's temporary files get: "." + the destination's name + "." + 8 random
# NAME_CHARACTERS + TEMPORARY_SUFFIX (its group 1: the destination's name).
TEMPORARY_NAME = re.compile(r"\.(.+)\.[a-z0-9_]{8}" + re.escape(TEMPORARY_SUFFIX))


def remove_leftovers(directory, name=None):
    """Remove the temporary files of writes into ``directory`` whose process was killed before
    it could: regular files named as ``atomic_open`` names them (with ``name``: only those of
    writes to the file of that name), nothing else. Only for a directory no live process is
    writing into (a write in progress would lose its file), or with ``name``, for a file no
    live process is writing."""
    for entry in os.scandir(directory):
        found = TEMPORARY_NAME.fullmatch(entry.name)
        if found and name in (None, found[1]) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)


def remove_leftovers_of(path):
    """``remove_leftovers`` of the writes to ``path`` alone (its folder may be one that other
    writers share), where they were made: beside the file a link at ``path`` points to."""
    directory, name = os.path.split(os.path.realpath(path))
    if os.path.isdir(directory):
        remove_leftovers(directory, name)


def _file_in_the_way(directory):
    """The nearest of ``directory`` and the folders above it that exists, where it is no
    folder (makedirs says only "File exists" of it), else None."""
    while not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
    return None if os.path.isdir(directory) else directory


def _new_temporary(destination):
    """(handle, path) of a new, empty temporary file beside ``destination``, named as
    ``TEMPORARY_NAME`` says. Made as open() makes a file, 0666 less the user's umask (usually
    0644), so that a run's new files read like any other file's. (mkstemp's are private, 0600,
    and reading the umask means setting it, which a thread making a file at that moment
    would see.)"""
    prefix = os.path.join(os.path.dirname(destination), f".{os.path.basename(destination)}.")
    for _ in range(100):
        temporary = prefix + "".join(_NAMES.choices(NAME_CHARACTERS, k=8)) + TEMPORARY_SUFFIX
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                           getattr(os, "O_BINARY", 0), 0o666), temporary
        except FileExistsError:
            continue
        except BaseException as error:
            # Ctrl-C (or a stop signal) is raised as os.open returns, when Python checks for
            # signals: the file is made, its handle lost, and no caller knows its name. An
            # OSError is open()'s own failure, which made no file (one there is EEXIST).
            if not isinstance(error, OSError):
                with contextlib.suppress(OSError):
                    os.remove(temporary)
            raise
    raise FileExistsError(errno.EEXIST, f"no unused temporary name {prefix}*{TEMPORARY_SUFFIX}")


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_open(path, "wb") as file:
        file.write(data)


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as file:
        file.write(text)


def json_text(value):
    """``value`` as indented JSON; NaN and infinity are refused (they are not JSON)."""
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path, value):
    """Write ``value`` as ``json_text`` atomically."""
    write_text(path, json_text(value))


def _write(file, data):
    """``data``, bytes or an array, into an open binary file; an array as ``.npy``, straight
    from its memory (never pickled: object arrays are refused). Saving to bytes first held a
    second copy of it: 45 GB of memory to write a 15.7 GB ImageNet-64 array."""
    if isinstance(data, numpy.ndarray):
        try:
            numpy.save(file, data, allow_pickle=False)
        except OSError as error:
            if error.errno:
                raise
            # NumPy's own short-write error ("N requested and M written") has no errno:
            # given one, atomic_open names the file (a full disk or a file size limit)
            raise OSError(errno.EIO, f"the array was cut short ({error}): the disk is full, or "
                                     f"the file is past a size limit") from error
    else:
        file.write(data)


def save_npy(path, array):
    """Save one array as ``.npy`` atomically."""
    with atomic_open(path, "wb") as file:
        _write(file, numpy.asanyarray(array))


def write_together(contents):
    """Write files that belong together (``contents``: {path: bytes, or an array to save as
    ``.npy``}) as a set: each is written and synced to disk in its temporary file before the
    first is renamed, so that a failure while writing (a full disk, Ctrl-C) leaves all the old
    files, never new ones beside old ones. Only the renames, one after the other in the order
    of ``contents``, are not one step: put last the file that describes the others (a
    manifest). The temporaries an earlier write of these files left when killed are removed
    first."""
    for path in contents:
        remove_leftovers_of(path)
    with contextlib.ExitStack() as renames:  # on leaving: renamed last opened first
        for path, data in reversed(contents.items()):
            file = renames.enter_context(atomic_open(path, "wb"))
            _write(file, data)
            file.flush()
            os.fsync(file.fileno())
