"""Datasets generated in code: labelled coloured shapes (the default images) and ring8 (2-D).

``make_shapes`` draws one filled shape per image: a class from ``SHAPE_CLASSES``, one of a few
saturated colours, a random size and position, on a dark background with a gentle linear
gradient. Everything is computed for all images at once with NumPy broadcasting (no per-pixel
Python), so 10,000 32x32 images take a fraction of a second, and the same seed always gives the
same bytes.

``make_ring8`` samples the classic mode-collapse benchmark: an equal mixture of 8 isotropic
Gaussians whose means sit evenly on a circle. Its modes and spread are public
(``RING8_MODES``, ``RING8_STD``) so a GAN's mode coverage can be measured against them.
"""
import numpy

from minilean.data.streams import Purpose, stream

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "diamond")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 64

# Saturated foreground colours (RGB in [0, 1]); backgrounds stay darker than all of them.
PALETTE = numpy.array([[0.95, 0.15, 0.15], [0.15, 0.85, 0.2], [0.2, 0.4, 1.0],
                       [1.0, 0.9, 0.1], [0.95, 0.2, 0.95], [0.1, 0.9, 0.95]], numpy.float32)


# The farthest any shape reaches from its centre, in half-sizes: the diamond's tips (the others
# stay within 1).
SHAPE_REACH = 1.05


def _inside(shape_class, dx, dy):
    """Mask of pixels inside a shape of unit half-size centred at the origin.

    ``dx``, ``dy`` are pixel offsets from the centre divided by the half-size (y points down).
    """
    ax, ay = numpy.abs(dx), numpy.abs(dy)
    if shape_class == "circle":
        return dx * dx + dy * dy <= 1.0
    if shape_class == "square":
        return numpy.maximum(ax, ay) <= 0.8
    if shape_class == "triangle":  # apex up at dy = -1, flat base at dy = 0.8
        return (dy <= 0.8) & (ax <= 0.5 * (dy + 1.0))
    if shape_class == "cross":
        return ((ax <= 0.3) & (ay <= 0.95)) | ((ay <= 0.3) & (ax <= 0.95))
    if shape_class == "diamond":
        return ax + ay <= 1.05
    raise ValueError(f"unknown shape class {shape_class!r}; expected one of {SHAPE_CLASSES}")


def make_shapes(n, image_size=32, seed=0):
    """``n`` labelled shape images: (uint8 images (n, 3, S, S), int64 labels (n,)).

    Labels index ``SHAPE_CLASSES``; classes are drawn uniformly.
    """
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], "
                         f"got {image_size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = stream(seed, Purpose.BUILTIN_DATA)
    size = float(image_size)
    labels = rng.integers(0, len(SHAPE_CLASSES), n)
    half_size = rng.uniform(0.18, 0.36, n).astype(numpy.float32) * size
    # Centres keep the whole shape (plus a pixel) inside the image.
    margin = SHAPE_REACH * half_size + 1
    centre_x = rng.uniform(margin, size - margin).astype(numpy.float32)
    centre_y = rng.uniform(margin, size - margin).astype(numpy.float32)
    colour = (PALETTE[rng.integers(0, len(PALETTE), n)] * 255 + 0.5).astype(numpy.uint8)
    # Background level in [0.06, 0.3] plus two ramps of at most +-0.025 each stays inside
    # [0, 1], so the float -> uint8 cast needs no clipping; +0.5 makes the truncating cast round.
    background = rng.uniform(0.06 * 255, 0.3 * 255, (n, 3)).astype(numpy.float32) + 0.5
    slope = rng.uniform(-0.05 * 255, 0.05 * 255, (n, 2)).astype(numpy.float32)
    pixel = numpy.arange(image_size, dtype=numpy.float32) + 0.5
    ramp = pixel / size - 0.5                                             # (S,) in (-0.5, 0.5)

    images = numpy.empty((n, 3, image_size, image_size), numpy.uint8)
    # Chunks keep the float temporaries small and cache-resident (fresh 100 MB buffers cost
    # more in page faults than the arithmetic).
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        gradient = (slope[rows, 0, None, None] * ramp[None, None, :]
                    + slope[rows, 1, None, None] * ramp[None, :, None])     # (k, S, S)
        images[rows] = background[rows, :, None, None] + gradient[:, None]  # (k, 3, S, S)
        mask = _shape_masks(labels[rows], half_size[rows], centre_x[rows], centre_y[rows], pixel)
        numpy.copyto(images[rows], colour[rows, :, None, None], where=mask[:, None])
    return images, labels.astype(numpy.int64)


_CHUNK = 512


def _shape_masks(labels, half_size, centre_x, centre_y, pixel):
    """Boolean (k, S, S) masks of each image's shape, class by class."""
    mask = numpy.zeros((len(labels), len(pixel), len(pixel)), bool)
    for index, shape_class in enumerate(SHAPE_CLASSES):
        chosen = numpy.flatnonzero(labels == index)
        scale = half_size[chosen, None, None]
        dx = (pixel[None, None, :] - centre_x[chosen, None, None]) / scale  # (k, 1, S)
        dy = (pixel[None, :, None] - centre_y[chosen, None, None]) / scale  # (k, S, 1)
        mask[chosen] = _inside(shape_class, dx, dy)
    return mask


RING8_RADIUS = 2.0
RING8_STD = 0.05
_angles = numpy.arange(8) * (2.0 * numpy.pi / 8)
RING8_MODES = (RING8_RADIUS * numpy.stack([numpy.cos(_angles), numpy.sin(_angles)], axis=1)
               ).astype(numpy.float32)                                      # (8, 2)


def make_ring8(n, seed=0):
    """``n`` points of the 8-Gaussian ring: (float32 points (n, 2), int64 mode index (n,))."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = stream(seed, Purpose.BUILTIN_DATA)
    modes = rng.integers(0, len(RING8_MODES), n)
    points = RING8_MODES[modes] + RING8_STD * rng.standard_normal((n, 2)).astype(numpy.float32)
    return points.astype(numpy.float32), modes.astype(numpy.int64)


def nearest_ring8_mode(points):
    """For points (n, 2): (index of the nearest mode (n,), distance to it (n,))."""
    points = numpy.asarray(points, numpy.float64)
    distances = numpy.linalg.norm(points[:, None, :] - RING8_MODES[None], axis=2)  # (n, 8)
    nearest = distances.argmin(axis=1)
    return nearest, distances[numpy.arange(len(points)), nearest]
