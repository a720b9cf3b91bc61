"""Tensor factories (PyTorch's names): constants, ranges and seeded random tensors."""
import math

import numpy

from minilean import backend
from minilean.autograd.tensor import (DEFAULT_DTYPE, Tensor, default_dtype, holds_numbers,
                                      is_int, number_dtype, shape_arg)


def _make(array, requires_grad):
    return Tensor._wrap(array, False).requires_grad_(requires_grad)


def _dtype(dtype, caller):
    """``dtype``, with None meaning the default float32, as in PyTorch (NumPy's is float64)."""
    return number_dtype(DEFAULT_DTYPE if dtype is None else dtype, caller)


def _size(size, caller):
    """``size`` (``zeros(2, 3)`` or ``zeros((2, 3))``) as a shape tuple: NumPy refused a
    negative size as "negative dimensions are not allowed" and a float as "'float' object
    cannot be interpreted as an integer", naming neither the call nor the size."""
    shape = shape_arg(size)
    if not all(map(is_int, shape)):
        raise TypeError(f"{caller} size must be a tuple of ints, got {shape!r}")
    if any(length < 0 for length in shape):
        raise ValueError(f"{caller} size must be a tuple of ints >= 0, got {shape!r}")
    return shape


def _random(draw, size, dtype, requires_grad, caller):
    """``draw(shape, dtype=...)`` from a device's generator, which draws float32 or float64
    only: float16 samples are drawn in float32 and rounded."""
    dtype = _dtype(dtype, caller)
    if dtype.kind != "f":
        raise TypeError(f"random samples are floating-point, got dtype {dtype}")
    drawn = draw(_size(size, caller), dtype=numpy.promote_types(dtype, numpy.float32))
    return _make(drawn.astype(dtype, copy=False), requires_grad)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A tensor from nested lists, a scalar or an array (floats default to float32).

    Like ``torch.tensor`` it copies, so later in-place updates (an optimizer step) never
    reach the caller's array; ``Tensor(array)`` shares the memory instead.
    """
    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "shape"):  # an array: NumPy's, CuPy's, or any NumPy reads (a memoryview)
        data = data.copy() if hasattr(data, "copy") else numpy.array(data)
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array):
    """A CPU tensor sharing ``array``'s memory, in its dtype (float64 stays float64), as
    ``torch.from_numpy``: the two see each other's changes. ``tensor`` copies instead."""
    if not isinstance(array, numpy.ndarray):
        raise TypeError(f"from_numpy takes a NumPy array, got {type(array).__name__}")
    return Tensor(array)


def zeros(*size, dtype=None, device="cpu", requires_grad=False):
    return _make(backend.xp_for(device).zeros(_size(size, "zeros"), dtype=_dtype(dtype, "zeros")),
                 requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False):
    return _make(backend.xp_for(device).ones(_size(size, "ones"), dtype=_dtype(dtype, "ones")),
                 requires_grad)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False):
    """``fill_value`` everywhere. Without ``dtype``, the fill value's as ``tensor`` picks it
    (PyTorch's rule): ``full((2,), 3)`` is int64, ``full((2,), 3.0)`` float32."""
    # NumPy would fill None in as nan or an object, and "2" as text or 2
    if not holds_numbers(fill_value):
        raise TypeError(f"full fill_value must be a number or a bool, got "
                        f"{type(fill_value).__name__}")
    dtype = default_dtype(fill_value) if dtype is None else number_dtype(dtype, "full")
    return _make(backend.xp_for(device).full(tuple(size), fill_value, dtype=dtype), requires_grad)


def arange(start, end=None, step=1, dtype=None, device="cpu"):
    """start, start + step, ... up to but not including ``end``. Without ``dtype``, float32
    when any of the three is a float and int64 when all are ints, as ``tensor`` picks."""
    start, end = (0, start) if end is None else (start, end)
    if step == 0:  # NumPy's error is a bare ZeroDivisionError, "division by zero"
        raise ValueError(f"arange step must be nonzero, got {step!r}")
    # no count of values; an int is finite at any size (isfinite would make 2**1100 a float
    # first, and fail as "int too large to convert to float")
    if not all(is_int(value) or math.isfinite(value) for value in (start, end, step)):
        raise ValueError(f"arange needs finite bounds and step, got start={start!r}, "
                         f"end={end!r}, step={step!r}")
    dtype = default_dtype((start, end, step)) if dtype is None else number_dtype(dtype, "arange")
    xp = backend.xp_for(device)
    if dtype is not None and numpy.dtype(dtype).kind in "iu":
        # float bounds or step with an integer dtype: each truncated toward zero first, as
        # PyTorch does; NumPy steps by the difference of its first two values cast to the
        # dtype, so arange(-0.5, 3, dtype=int64) was [0, 0, 0, 0], not [0, 1, 2]
        if int(step) == 0:
            raise ValueError(f"arange step must be nonzero once truncated to "
                             f"{numpy.dtype(dtype)}, got {step!r}")
        start, end, step = int(start), int(end), int(step)
    if dtype is not None and numpy.dtype(dtype).kind == "f":
        # start + k step in float64, rounded once, as PyTorch computes it: NumPy's arange
        # steps by the rounded difference of its first two values (float32: 5e-7 off at the
        # end of arange(-1, 1, 0.05))
        count = max(math.ceil((end - start) / step), 0)  # NumPy's length
        values = start + step * xp.arange(count, dtype=xp.float64)
        return Tensor._wrap(values.astype(dtype, copy=False), False)
    return Tensor._wrap(xp.arange(start, end, step, dtype=dtype), False)


def linspace(start, end, steps, dtype=None, device="cpu"):
    return Tensor._wrap(backend.xp_for(device).linspace(start, end, steps,
                                                        dtype=_dtype(dtype, "linspace")), False)


def randn(*size, dtype=None, device="cpu", requires_grad=False):
    """Standard normal samples from the device's seeded generator."""
    return _random(backend.generator(device).standard_normal, size, dtype, requires_grad,
                   "randn")


def rand(*size, dtype=None, device="cpu", requires_grad=False):
    """Uniform samples on [0, 1) from the device's seeded generator."""
    return _random(backend.generator(device).random, size, dtype, requires_grad, "rand")


def randint(low, high=None, size=None, device="cpu"):
    """Integers uniform on [low, high) (int64). As in PyTorch, ``low`` may be left out:
    ``randint(10, (5,))`` draws from [0, 10) (it failed with "missing 1 required positional
    argument: 'size'", naming the argument that had been given)."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:  # randint(high, size=size)
        low, high = 0, low
    if size is None:
        raise TypeError(f"randint needs a size, as randint({low}, {high}, (n,)) or "
                        f"randint({high}, (n,)), got none")
    return Tensor._wrap(backend.generator(device).integers(low, high, size=tuple(size)), False)


def zeros_like(other, dtype=None):
    """Zeros of ``other``'s shape, device and (unless ``dtype`` is given) dtype; the dtype is
    checked here, so that an error names the function called (as ``ones_like``'s and
    ``randn_like``'s)."""
    return zeros(other.shape, dtype=number_dtype(dtype or other.dtype, "zeros_like"),
                 device=other.device)


def ones_like(other, dtype=None):
    return ones(other.shape, dtype=number_dtype(dtype or other.dtype, "ones_like"),
                device=other.device)


def randn_like(other, dtype=None):
    return randn(other.shape, dtype=number_dtype(dtype or other.dtype, "randn_like"),
                 device=other.device)
