"""Images out (and back in): netpbm PPM/PGM, PNG through Pillow, and tiled sample grids.

Netpbm needs no dependency: a short ASCII header, then the pixels. ``P6`` (colour) and ``P5``
(grey) store raw bytes; ``P3`` and ``P2`` store the same numbers as ASCII text for tools that
want it. ``read_pnm`` reads all four back, so writes can be checked byte for byte, and files
of other tools too: a maxval other than 255 (1..65535; above 255 a binary sample is two bytes,
most significant first) is rescaled to 0..255, value * 255 / maxval rounded half up. Every
file is written atomically.
"""
import io
import os
import re

import numpy

from minilean import atomic
from minilean.autograd.tensor import is_int
from minilean.data.paths import output_file

IMAGE_EXTENSIONS = (".png", ".ppm", ".pgm")  # what save_image writes, chosen by the extension
# magic number -> (channels, binary?)
_PNM_FORMATS = {b"P6": (3, True), b"P5": (1, True), b"P3": (3, False), b"P2": (1, False)}
_PNM_MAGIC = {format: magic for magic, format in _PNM_FORMATS.items()}  # the way back


def to_uint8(images, value_range=(0.0, 1.0)):
    """Map float images in ``value_range`` (clipped) or uint8 images to uint8 [0, 255].

    A nan or infinite value is an error: no pixel stands for it (NumPy's cast makes it 0, so
    samples of a diverged sampler would be saved as plausible black images)."""
    images = numpy.asarray(images)
    if images.dtype == numpy.uint8:
        return images
    if images.dtype.kind != "f":  # int64 255 read as a float in [0, 1] came out white
        raise TypeError(f"expected float images (in {value_range}) or uint8 ones, found "
                        f"{images.dtype}")
    low, high = value_range
    if not low < high:  # (0, 0) made every pixel white, (1, 0) inverted the image
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    finite = numpy.isfinite(images)
    if not finite.all():
        raise ValueError(f"images hold {finite.size - finite.sum()} nan or infinite values "
                         f"of {finite.size}; expected finite values (no pixel stands for them)")
    scaled = (images.astype(numpy.float32) - low) / (high - low)
    return (numpy.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(numpy.uint8)


def _as_hwc(image):
    """A uint8 image as (H, W, C) with C in {1, 3}, from (H, W) or (H, W, C)."""
    image = numpy.asarray(image)
    if image.dtype != numpy.uint8:
        raise ValueError(f"expected a uint8 image, found {image.dtype} (use to_uint8 first)")
    if image.ndim == 2:
        image = image[:, :, None]                                 # (H, W) -> (H, W, 1)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"expected an image (H, W), (H, W, 1) or (H, W, 3), "
                         f"found shape {image.shape}")
    return image


def encode_pnm(image, ascii=False):
    """The bytes of a PPM (3 channels) or PGM (1 channel) file for a uint8 HWC/HW image."""
    image = _as_hwc(image)
    height, width, channels = image.shape
    magic = _PNM_MAGIC[(channels, not ascii)]
    header = b"%s\n%d %d\n255\n" % (magic, width, height)
    if not ascii:
        return header + numpy.ascontiguousarray(image).tobytes()
    rows = image.reshape(height, width * channels)                # (H, W, C) -> (H, W*C)
    return header + b"".join(b" ".join(b"%d" % value for value in row) + b"\n" for row in rows)


def write_pnm(path, image, ascii=False):
    """Write a PPM/PGM file atomically (binary P6/P5, or ASCII P3/P2 when ``ascii``)."""
    atomic.write_bytes(path, encode_pnm(image, ascii))


_COMMENT = re.compile(rb"#[^\r\n]*")  # a header comment runs to the end of its line (LF or CR)


def _header_tokens(data, count, position):
    """Read ``count`` whitespace-separated header tokens from ``position`` on (skipping #
    comments); return them and the offset just after the single whitespace byte that ends the
    last one."""
    tokens = []
    while len(tokens) < count:
        while position < len(data) and data[position:position + 1].isspace():
            position += 1
        if data[position:position + 1] == b"#":
            position = _COMMENT.match(data, position).end()
            continue
        start = position
        while position < len(data) and not data[position:position + 1].isspace():
            position += 1
        if start == position:
            break
        tokens.append(data[start:position])
    if len(tokens) < count:
        raise ValueError(f"truncated netpbm header: the file ends after {len(tokens)} of its "
                         f"{count} fields; expected width, height and maxval after the magic "
                         f"number")
    return tokens, position + 1


def rescale_to_uint8(samples, maxval):
    """Whole samples in 0..maxval as uint8 in 0..255: value * 255 / maxval rounded half up."""
    samples = numpy.asarray(samples, numpy.int64)
    if maxval == 255:
        return samples.astype(numpy.uint8)
    return ((samples * 510 + maxval) // (2 * maxval)).astype(numpy.uint8)  # in integers


def _whole_number(token, what):
    """A header field or an ASCII sample as an int; a ValueError naming it otherwise."""
    if not token.isdigit():
        raise ValueError(f"netpbm {what} {token.decode(errors='replace')!r} is not a whole "
                         f"number >= 0")
    return int(token)


def decode_pnm(data):
    """A uint8 image (H, W, 3) or (H, W) from the bytes of a P2/P3/P5/P6 file, its samples
    rescaled from 0..maxval to 0..255 (see the module docstring); a ValueError says what is
    wrong with the bytes (``read_pnm`` adds the file's name)."""
    if data[:2] not in _PNM_FORMATS:
        raise ValueError(f"not a PPM/PGM file: starts with {data[:2]!r}, expected P2, P3, P5 or P6")
    channels, binary = _PNM_FORMATS[data[:2]]
    fields, offset = _header_tokens(data, 3, position=2)  # after the magic number
    width, height, maxval = (_whole_number(field, name) for field, name in
                             zip(fields, ("width", "height", "maxval")))
    if not (width and height):
        raise ValueError(f"netpbm image of {width}x{height} pixels; expected at least 1x1")
    if not 0 < maxval < 65536:
        raise ValueError(f"netpbm maxval must be in 1..65535, found {maxval}")
    count = width * height * channels
    if binary:  # maxval above 255: two bytes a sample, most significant first
        sample = numpy.dtype(">u2" if maxval > 255 else numpy.uint8)
        pixels = numpy.frombuffer(data, sample, count, offset) if len(
            data) >= offset + count * sample.itemsize else None
    else:  # Python ints until checked: a text sample may be past any array's range
        values = data[offset:].split()
        pixels = [_whole_number(value, "value") for value in values[:count]] if len(
            values) >= count else None
    if pixels is None:
        raise ValueError(f"netpbm file holds fewer than the {count} values its header promises")
    largest = max(pixels, default=0) if isinstance(pixels, list) else int(pixels.max(initial=0))
    if largest > maxval:
        raise ValueError(f"netpbm value {largest} is above the maxval {maxval} its header gives")
    image = rescale_to_uint8(pixels, maxval).reshape(height, width, channels)  # (H*W*C,) -> HWC
    return image if channels == 3 else image[:, :, 0]


def read_pnm(path):
    """``decode_pnm`` of the file at ``path``; its ValueError names the file."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        return decode_pnm(data)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None


def pillow_installed():
    """Whether Pillow can be imported: .png files are written with it, .ppm and .pgm need
    nothing (Pillow is the optional ``data`` extra)."""
    try:
        import PIL  # noqa: F401  only asking whether it is there
    except ImportError:
        return False
    return True


def output_image(path):
    """A flag's ``check`` for the path of an image a run writes at its end: ``output_file``'s,
    for one of ``IMAGE_EXTENSIONS``, and a .png only where Pillow is installed (found out when
    the file is written, a missing Pillow costs the whole run)."""
    problem = output_file(*IMAGE_EXTENSIONS)(path)
    if problem is None and os.path.splitext(path)[1].lower() == ".png" and not pillow_installed():
        return "a path ending in .ppm or .pgm (writing .png needs Pillow: pip install Pillow)"
    return problem


def write_png(path, image):
    """Write a PNG with Pillow (atomically); a one-line error when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError:
        raise ValueError(f"writing {path} needs Pillow (pip install Pillow); "
                         "write .ppm or .pgm instead") from None
    image = _as_hwc(image)
    buffer = io.BytesIO()
    Image.fromarray(image if image.shape[2] == 3 else image[:, :, 0]).save(buffer, format="PNG")
    atomic.write_bytes(path, buffer.getvalue())


def make_grid(images, nrow=None, padding=2, pad_value=0):
    """Tile uint8 images (N, C, H, W) into one (H', W', C) image, ``nrow`` images per row.

    ``nrow`` defaults to ceil(sqrt(N)); fewer than ``nrow`` images make one row of N (no empty
    columns); ``padding`` pixels of ``pad_value`` separate the tiles and frame the grid (as
    torchvision's make_grid does).
    """
    images = numpy.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.dtype != numpy.uint8:
        raise ValueError(f"make_grid expects uint8 images (N, C, H, W) with C in 1 or 3, found "
                         f"{images.dtype} {images.shape}")
    count, channels, height, width = images.shape
    if count == 0:
        raise ValueError("make_grid expects at least one image, found 0")
    if nrow is None:
        nrow = int(numpy.ceil(numpy.sqrt(count)))
    elif not is_int(nrow) or nrow < 1:
        raise ValueError(f"make_grid expects nrow None or an integer >= 1, found {nrow!r}")
    nrow = min(int(nrow), count)
    grid_rows = -(-count // nrow)
    cell_h, cell_w = height + padding, width + padding
    grid = numpy.full((grid_rows * cell_h + padding, nrow * cell_w + padding, channels),
                      pad_value, numpy.uint8)
    for index in range(count):
        top, left = (index // nrow) * cell_h + padding, (index % nrow) * cell_w + padding
        grid[top:top + height, left:left + width] = images[index].transpose(1, 2, 0)  # CHW->HWC
    return grid


def save_image(path, image):
    """Save a uint8 HWC/HW image as .ppm, .pgm or .png (chosen by the extension)."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    image = _as_hwc(image)
    if extension == ".png":
        write_png(path, image)
    elif extension in (".ppm", ".pgm"):
        wanted = 3 if extension == ".ppm" else 1
        if image.shape[2] != wanted:  # PPM is colour, PGM grey: repeat or average channels
            image = (numpy.repeat(image, 3, axis=2) if wanted == 3 else
                     (image.mean(axis=2, keepdims=True) + 0.5).astype(numpy.uint8))
        write_pnm(path, image)
    else:
        raise ValueError(f"cannot save image {path}: expected extension "
                         f"{', '.join(IMAGE_EXTENSIONS)}")


def save_grid(path, images, nrow=None, padding=2, value_range=(0.0, 1.0)):
    """Tile images (N, C, H, W) (float in ``value_range`` or uint8) and save the grid."""
    save_image(path, make_grid(to_uint8(images, value_range), nrow=nrow, padding=padding))


def save_grid_everywhere(stem, images, nrow=None, value_range=(0.0, 1.0)):
    """The grid as ``stem.ppm`` (needs nothing) and ``stem.png`` where Pillow is installed;
    returns the paths written."""
    extensions = (".ppm", ".png") if pillow_installed() else (".ppm",)
    paths = [stem + extension for extension in extensions]
    for path in paths:
        save_grid(path, images, nrow=nrow, value_range=value_range)
    return paths
