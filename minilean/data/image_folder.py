"""Convert a folder of images into one uint8 NCHW array (plus labels and a manifest) with Pillow.

Files are taken in sorted order (so the same folder always gives the same array, whichever
file system holds it: names are compared in Unicode's composed form, ``sort_key``), rotated
upright by their EXIF orientation, converted to RGB, and resized: ``crop="center"`` scales the
image to cover height x width and cuts the centre (no distortion), ``crop="stretch"`` resizes
to height x width ignoring the aspect ratio. With ``labels_from_dirs`` the label of a file is
the index of its top-level sub-directory among the sorted sub-directory names; deeper nesting
stays in that class. 16-bit grey images are rescaled from 0..65535. Unreadable files (and
decompression bombs: a header claiming more pixels than Pillow's limit,
``Image.MAX_IMAGE_PIXELS``) are skipped with a warning that names them, and so are images whose
pixels have no range to scale to 0..255: 32-bit float ones (Pillow's mode F, e.g. a float
TIFF, whose values may be 0..1 or anything) and 32-bit integer ones outside 0..65535;
what Pillow itself says about a file it reads (warnings such as corrupt EXIF data, log messages)
is passed on as one line that names the file.

The outputs (images, labels, manifest) are checked before any image is read, so that a bad
path cannot fail the conversion half-way through its writes; they are then written together
(``atomic.write_together``): a full disk or Ctrl-C while writing leaves the old set whole.
"""
import contextlib
import logging
import os
import sys
import unicodedata
import warnings

import numpy

from minilean import atomic
from minilean.autograd.tensor import is_int
from minilean.data.arrays import manifest_path, read_manifest
from minilean.data.images import rescale_to_uint8
from minilean.data.paths import creatable_problem, existing_problem
from minilean.errors import flag_error

CROPS = ("center", "stretch")
DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # TorchLean's set


def extension_names(extensions):
    """``extensions`` (".png" or ".png,.jpg" as ``--ext`` gives them, or any iterable of such
    names) as a tuple of its names, read once: a text split at its commas (a bare ".png" taken
    as a sequence was its characters, so every name ending in "." "p", "n" or "g" matched)."""
    if isinstance(extensions, str):
        return tuple(extensions.split(","))
    try:
        return tuple(extensions)
    except TypeError:  # not iterable (None, a number): one name, which no check takes
        return (extensions,)


def extensions_problem(extensions):
    """Why ``extensions`` (as ``extension_names`` reads them) names no extensions, as the text
    after "expected"; None when each is one."""
    parts = extension_names(extensions)
    if not parts or not all(isinstance(part, str) and part.startswith(".") and len(part) > 1
                            for part in parts):
        return 'file extensions starting with ".", e.g. .png,.jpg'
    return None


def as_extensions(extensions):
    """``extensions`` (as ``extension_names`` reads them) as a tuple of lower-case names."""
    return tuple(part.lower() for part in extension_names(extensions))


def sort_key(name):
    """What names are sorted by: the name in Unicode's composed form (NFC), then the name
    itself. macOS's HFS+ stores an accented name decomposed (NFD: "e" and a combining accent)
    where Linux keeps it as written, mostly composed, and the two sort apart ("cafe\u0301" before
    "cafz", "caf\u00e9" after it): the same folder, copied, gave its classes other labels."""
    return unicodedata.normalize("NFC", name), name


def list_images(input_dir, extensions=DEFAULT_EXTENSIONS):
    """Sorted relative paths of files under ``input_dir`` whose extension is listed
    (``as_extensions``: a text such as ".png,.jpg" or a sequence of names).

    Links to folders are followed (a class folder may be a link to images kept elsewhere),
    every one (two class folders linking to one folder are two classes of the same images),
    except a link to a folder the walk is already inside, which would loop."""
    extensions = as_extensions(extensions)
    found, chains = [], {}  # chains: folder to walk -> the real paths of the folders above it
    # any walk order: the result is sorted
    for directory, subdirectories, files in os.walk(input_dir, followlinks=True):
        chain = chains.pop(directory, frozenset()) | {os.path.realpath(directory)}
        subdirectories[:] = [name for name in subdirectories
                             if os.path.realpath(os.path.join(directory, name)) not in chain]
        chains.update((os.path.join(directory, name), chain) for name in subdirectories)
        found += [os.path.relpath(os.path.join(directory, name), input_dir)
                  for name in files if name.lower().endswith(extensions)]
    return sorted(found, key=sort_key)


def load_image(path, height, width, crop="center"):
    """One image file as uint8 (3, height, width); Pillow's errors pass through. A 16-bit grey
    image (a PGM of maxval above 255, a 16-bit PNG: Pillow's modes I and I;16) is rescaled
    from 0..65535, where Pillow's own conversion would clip every value above 255. Float pixels
    (mode F) and integer ones outside 0..65535 raise a ValueError: Pillow's conversion would
    clip them to 0..255 too (a float image in 0..1 came out black). An image over Pillow's
    pixel limit raises ``Image.DecompressionBombWarning`` (Pillow would only warn below twice
    the limit, and decode it)."""
    from PIL import Image, ImageOps
    with warnings.catch_warnings():  # the decoding too: a GIF checks each frame as it loads
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode == "F":
                raise ValueError("32-bit float pixels (Pillow's mode F) have no known range to "
                                 "scale to 0..255; expected 8- or 16-bit samples")
            if image.mode.startswith("I"):
                grey = numpy.asarray(image)
                if grey.min() < 0 or grey.max() > 65535:  # mode I holds 32-bit ints
                    raise ValueError(f"integer pixels from {grey.min()} to {grey.max()} are "
                                     f"outside 0..65535; expected 8- or 16-bit samples")
                image = Image.fromarray(rescale_to_uint8(grey, 65535))
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # Pillow warns on P straight to RGB; same colours
            # alpha dropped, not blended: a transparent pixel keeps its stored colour, as in
            # TorchLean's converter (the README says so)
            image = image.convert("RGB")
            if crop == "center":
                image = ImageOps.fit(image, (width, height), method=Image.Resampling.BICUBIC)
            else:
                image = image.resize((width, height), Image.Resampling.BICUBIC)
            return numpy.asarray(image, numpy.uint8).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


class _Collect(logging.Handler):
    """A logging handler that keeps each record's message (at WARNING or above) in a list."""

    def __init__(self, messages):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _pillow_messages():
    """Collect, as a list of one-line texts, what Pillow says while the block runs: its Python
    warnings and its log records (which Python prints, unnamed, when no logging is set up)."""
    messages, pillow_log = [], logging.getLogger("PIL")
    handler = _Collect(messages)
    pillow_log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # hidden, as Python hides them by default: a file object freed unclosed says
            # nothing of the image (Ctrl-C in Image.open drops the file it opened), and it may
            # be any object the garbage collector frees while the image is read
            warnings.simplefilter("ignore", ResourceWarning)
            yield messages
    finally:
        pillow_log.removeHandler(handler)
        messages += [str(warning.message) for warning in caught]
        messages[:] = dict.fromkeys(" ".join(message.split()) for message in messages)


def _same_file(first, second):
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)  # hard links, case-insensitive file systems
    except OSError:
        return False


def _check_writable(flag, value, path, expected):
    """``path`` (from ``--flag value``) can be created or replaced as a file: it is not a
    directory (else ``expected`` says what should be), and the nearest existing folder above it
    is a writable folder (the missing ones are created)."""
    if not os.path.basename(path) or os.path.isdir(path):
        raise flag_error(flag, value, expected)
    problem = creatable_problem(path, file=True)
    if problem:
        raise flag_error(flag, value, problem)


def check_outputs(x_output, y_output=None):
    """Check, before anything is read or written, that the images, the labels and the manifest
    (``manifest_path(x_output)``, beside the images) are three different files that can be
    written; a bad one is a ``FlagError`` naming its flag. Returns the manifest's path."""
    manifest = manifest_path(x_output)
    if _same_file(x_output, manifest):
        raise flag_error("x_output", x_output, f"a path other than {manifest}, where the manifest "
                         "is written (the images' path with .json); give it an .npy name")
    if y_output is not None and _same_file(y_output, x_output):
        raise flag_error("y_output", y_output, f"a path other than --x-output {x_output}")
    if y_output is not None and _same_file(y_output, manifest):
        raise flag_error("y_output", y_output, f"a path other than {manifest}, the manifest "
                         f"written beside --x-output {x_output}")
    _check_writable("x_output", x_output, x_output, "a file for the images, not a directory")
    _check_writable("x_output", x_output, manifest,
                    f"a path whose manifest {manifest} is not a directory")
    if os.path.isfile(manifest):
        try:
            read_manifest(manifest)
        except ValueError:
            raise flag_error("x_output", x_output, f"a path whose {manifest} beside it is a "
                             "manifest or free: that file is something else, which the "
                             "manifest would replace; move or rename it") from None
    if y_output is not None:
        _check_writable("y_output", y_output, y_output, "a file for the labels, not a directory")
    return manifest


def convert_image_folder(input_dir, x_output, y_output=None, height=64, width=64,
                         labels_from_dirs=False, limit=None, extensions=DEFAULT_EXTENSIONS,
                         crop="center", warn=None):
    """Write ``x_output`` (uint8 (N, 3, height, width)), optionally ``y_output`` (int64 (N,))
    and a JSON manifest beside ``x_output``; return the manifest dict.

    ``warn(message)`` reports skipped files (default: a line on stderr). ``extensions`` is a
    sequence of names or ``--ext``'s text (".png,.jpg"). The sizes, the extensions, the labels'
    flags and the three outputs (``check_outputs``) are checked before any work, as
    ``FlagError``s: the command line (``data convert image-folder``) reports them from here too.
    """
    sizes = {"height": height, "width": width, **({} if limit is None else {"limit": limit})}
    for name, size in sizes.items():  # a 0 read every image, then kept none of them
        if not is_int(size) or size < 1:
            raise flag_error(name, size, "an integer >= 1")
    names = extension_names(extensions)  # read once: an iterator is used up by the check
    if extensions_problem(names):
        raise flag_error("ext", extensions, extensions_problem(names))
    extensions = as_extensions(names)
    if y_output is not None and not labels_from_dirs:
        raise flag_error("y_output", y_output, "to come with --labels-from-dirs")
    if labels_from_dirs and y_output is None:  # the labels would be made, then written nowhere
        raise flag_error("labels_from_dirs", labels_from_dirs, "to come with --y-output (the "
                                                               "file the labels are written to)")
    manifest_file = check_outputs(x_output, y_output)
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("converting an image folder needs Pillow (pip install Pillow)") from None
    warn = warn or (lambda message: print(message, file=sys.stderr))
    problem = existing_problem(input_dir, want_folder=True)
    if problem:
        kind, words = problem
        raise kind(f"--input {input_dir} {words}; expected a folder of images")
    files = list_images(input_dir, extensions)
    class_names = sorted({path.split(os.sep)[0] for path in files if os.sep in path},
                         key=sort_key)
    if labels_from_dirs:
        loose = [path for path in files if os.sep not in path]
        if loose and len(loose) == len(files):  # else "no files ... under DIR", which it holds
            raise ValueError(
                f"--labels-from-dirs needs one sub-folder per class under {input_dir}; found "
                f"{len(loose)} image file{'s' if len(loose) > 1 else ''} directly in it and "
                "none in a sub-folder")
        for path in loose:
            warn(f"warning: skipping {os.path.join(input_dir, path)}: not inside a class "
                 "sub-directory (--labels-from-dirs)")
        files = [path for path in files if os.sep in path]
        for name in sorted(set(next(os.walk(input_dir))[1]) - set(class_names), key=sort_key):
            renumbered = any(sort_key(class_name) > sort_key(name) for class_name in class_names)
            warn(f"warning: {os.path.join(input_dir, name)} holds no {', '.join(extensions)} "
                 f"files: it is no class"
                 + (", and the classes after it are numbered one lower than where it has "
                    "images" if renumbered else ""))
    if not files:
        raise ValueError(f"no files ending in {', '.join(extensions)} under {input_dir}")

    capacity = len(files) if limit is None else min(limit, len(files))
    images = numpy.empty((capacity, 3, height, width), numpy.uint8)
    labels, count, skipped = [], 0, []
    for path in files:
        if count == capacity:
            break
        full_path = os.path.join(input_dir, path)
        if os.path.exists(full_path) and not os.path.isfile(full_path):
            # a named pipe would block the read forever, a device never end
            warn(f"warning: skipping {full_path}: not a regular file")
            skipped.append(full_path)
            continue
        try:
            with _pillow_messages() as messages:
                images[count] = load_image(full_path, height, width, crop)
        except (OSError, ValueError, SyntaxError, TypeError, NotImplementedError,
                Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            # Pillow reports truncated and corrupt files with any of these (its
            # UnidentifiedImageError is an OSError; a TIFF whose strip offsets are floats is a
            # TypeError, a DDS of unknown pixel format flags a NotImplementedError); a header
            # claiming more than Image.MAX_IMAGE_PIXELS pixels is refused before decoding, as
            # a bomb.
            warn(f"warning: skipping unreadable image {full_path}: {error}")
            skipped.append(full_path)
            continue
        finally:  # one line each, named (Python's own print a warning as two, unnamed)
            for message in messages:
                warn(f"warning: {full_path}: {message}")
        labels.append(class_names.index(path.split(os.sep)[0]) if labels_from_dirs else -1)
        count += 1
    if count == 0:
        raise ValueError(f"none of the {len(files)} image files under {input_dir} could be read")
    if labels_from_dirs and len(set(labels)) < len(class_names):
        why = (f"--limit {limit} keeps the first files in sorted order" if count == limit
               else "no image of the others could be read")
        warn(f"warning: the {count} images kept are of {len(set(labels))} of the "
             f"{len(class_names)} classes ({why})")

    images = images[:count]
    manifest = {"shape": list(images.shape), "dtype": "uint8", "layout": "NCHW",
                "source": os.path.abspath(input_dir), "count": count, "crop": crop,
                "skipped": skipped, "class_names": class_names if labels_from_dirs else None,
                "labels": None if y_output is None else os.path.abspath(y_output)}
    outputs = {x_output: images}
    if y_output is not None:
        outputs[y_output] = numpy.array(labels, numpy.int64)
    outputs[manifest_file] = atomic.json_text(manifest).encode("utf-8")
    atomic.write_together(outputs)
    return manifest
