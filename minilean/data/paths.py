"""What is, or is not, at a path that a flag names: the words of its one-line error.

A path that cannot serve is reported by what is in its way (a directory where a file should
be, a file where a folder should be, a folder that is not writable), not as simply "not
found", so the message points at the real obstacle. Used by the flag checks (``cli``) and the
data commands alike (``output_file`` and ``output_folder`` are such checks); nothing here
writes.
"""
import os

from minilean import atomic


def nearest_existing(path):
    """``path`` made absolute when it exists, else its nearest ancestor that does."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


# A file is written under a longer name first (atomic_open): "." + its name + ".XXXXXXXX.tmp"
TEMPORARY_EXTRA_BYTES = len("..XXXXXXXX" + atomic.TEMPORARY_SUFFIX)


def creatable_problem(path, file=False):
    """Why a file or folder cannot be created at ``path`` (the missing folders above it are
    created too), as the text after "expected"; None when it can. The nearest existing path
    above it must be a writable folder, and each name to make must fit its file system (a
    ``file``'s own name with room for the temporary name it is first written under). A link
    on the way is followed, as the writes follow it, to where it leads (which may not exist
    yet: a link that leads nowhere is no folder in the way)."""
    path = os.path.realpath(path)
    folder = nearest_existing(os.path.dirname(path))
    if not os.path.isdir(folder):
        return f"a path inside a folder; {folder} is a file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"a path in a writable folder; {folder} is not writable"
    # a longer name (the limit is 255 bytes on most file systems) fails only when it is made,
    # after the run
    limit = _name_limit(folder)
    sizes = [len(os.fsencode(name)) for name in os.path.relpath(path, folder).split(os.sep)]
    sizes[-1] += TEMPORARY_EXTRA_BYTES if file else 0
    if max(sizes) > limit:
        mark = f", {limit - TEMPORARY_EXTRA_BYTES} for the file's own" if file else ""
        return f"names of at most {limit} bytes (the file system's limit{mark})"
    return None


def _name_limit(folder):
    """The longest file name, in bytes, the file system of ``folder`` takes (255 where it does
    not say: Windows, or a file system that answers no pathconf)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        return 255


def existing_problem(path, want_folder=False):
    """None when ``path`` is an existing file (a folder when ``want_folder``); else
    ``(kind, words)``: the ``OSError`` subclass to raise and what is wrong, to follow the path
    in a message: "is a directory", "is a device, pipe or socket, not a regular file", "is not
    a directory", "cannot exist (X is a file, not a directory)" or "not found" (only this last
    one is cured by making the file)."""
    if os.path.isdir(path) if want_folder else os.path.isfile(path):
        return None
    if os.path.exists(path):
        if want_folder:
            return NotADirectoryError, "is not a directory"
        if os.path.isdir(path):
            return IsADirectoryError, "is a directory"
        return OSError, "is a device, pipe or socket, not a regular file"
    above = nearest_existing(path)
    if not os.path.isdir(above):
        return NotADirectoryError, f"cannot exist ({above} is a file, not a directory)"
    return FileNotFoundError, "not found"


def output_file(*extensions):
    """A flag's ``check`` for the path of a file a run writes at its end: not a directory,
    nor a special file (``--log /dev/null``: the write's rename would put a regular file in
    the device's place, or fail after the whole run where /dev refuses it), ending in one of
    ``extensions`` (any ending, when none are given), and inside a writable folder
    (``creatable_problem``: the nearest existing path above it is one). Found out here, such
    a mistake costs nothing; found out when the file is written, it costs the whole run."""
    def problem(path):
        if os.path.isdir(path):
            return "the path of a file (this is a directory)"
        # --log=logs/ names a folder, existing or not: the run's absolute path drops the
        # trailing / (or /.), and the file would be written at the folder's name instead
        if path.endswith(os.sep) or os.path.basename(path) in (".", ".."):
            return f"the path of a file ({path} names a directory)"
        if atomic.is_special_file(path):
            return "the path of a regular file (this is a device, pipe or socket)"
        if extensions and os.path.splitext(path)[1].lower() not in extensions:
            return "a path ending in " + ", ".join(extensions)
        return creatable_problem(path, file=True)
    return problem


def output_folder(what):
    """A flag's ``check`` for a folder a command writes ``what`` into (created when missing):
    not a file, and creatable where it is missing (``creatable_problem``)."""
    def problem(path):
        if os.path.isdir(path):
            return None
        if os.path.exists(path):
            return f"a directory for {what} (this is a file)"
        return creatable_problem(path)
    return problem
