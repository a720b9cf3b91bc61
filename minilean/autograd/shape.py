"""Shape ops: reshape, permute, expand, indexing, cat/stack, pad, split, device/dtype moves.

These move values rather than compute them (only a cast to a narrower dtype rounds them, and
padding adds constants), so each backward puts the gradient back where the values came from:
reshape it back, permute it back, scatter it back into zeros, cut the padding off.
Views are returned wherever NumPy/CuPy give them, so most of these cost no copy.
"""
import math
import numbers

import numpy

from minilean import backend
from minilean.autograd import grad_mode
from minilean.autograd.elementwise import as_dtype
from minilean.autograd.function import Function, devices_differ, tensor_input
from minilean.autograd.tensor import Tensor, dims_arg, is_int, number_dtype
from minilean.backend import array_module


class Reshape(Function):
    """y = x laid out in a new shape;  dx = dy laid out in x's shape."""
    @staticmethod
    def forward(ctx, x, shape=()):
        if ctx.recording:
            ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Permute(Function):
    """y = x with axes reordered, y.shape[i] = x.shape[dims[i]];  dx = dy with the inverse order."""
    @staticmethod
    def forward(ctx, x, dims=()):
        if ctx.recording:
            ctx.inverse = tuple(int(axis) for axis in numpy.argsort(dims))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(ctx.inverse)


class Expand(Function):
    """y = x broadcast to ``shape`` (a view);  dx = dy summed over the stretched axes,
    which the graph walk's ``unbroadcast`` does."""
    @staticmethod
    def forward(ctx, x, shape=()):
        return array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _may_repeat(index):
    """True when ``index`` holds an integer array, which can pick one element several times.

    Ints, slices, None, Ellipsis and boolean masks never pick an element twice.
    """
    parts = index if isinstance(index, tuple) else (index,)
    return any(getattr(part, "ndim", 0) > 0 and part.dtype.kind in "iu" for part in parts)


class GetItem(Function):
    """y = x[index];  dx = zeros like x with dy added at the indexed places.

    Integer-array indices may pick an element several times; its gradient is then the sum
    over every pick, which ``add.at`` does (plain ``dx[index] = dy`` would keep only the last).
    Basic slicing and boolean masks never repeat, so they take the fast path: one assignment.
    """
    @staticmethod
    def forward(ctx, x, index=()):
        if ctx.recording:
            ctx.shape, ctx.index, ctx.repeats = x.shape, index, _may_repeat(index)
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        grad_x = xp.zeros(ctx.shape, dtype=grad.dtype)
        if ctx.repeats:
            xp.add.at(grad_x, ctx.index, grad)
        else:
            grad_x[ctx.index] = grad
        return grad_x


class Cat(Function):
    """y = [x_1, x_2, ...] joined along ``axis``;  dx_k = the slice of dy that x_k filled."""
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        if ctx.recording:
            ctx.axis = axis
            ctx.offsets = numpy.cumsum([array.shape[axis] for array in arrays])[:-1].tolist()
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        pieces = array_module(grad).split(grad, ctx.offsets, axis=ctx.axis)
        return tuple(piece if needed else None
                     for piece, needed in zip(pieces, ctx.needs_input_grad))


class Stack(Function):
    """y = x_1, x_2, ... stacked along a new ``axis``;  dx_k = dy taken at position k."""
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        if ctx.recording:
            ctx.axis = axis
        return array_module(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        before = (slice(None),) * ctx.axis
        return tuple(grad[before + (position,)] if needed else None
                     for position, needed in enumerate(ctx.needs_input_grad))


class Pad(Function):
    """y = x surrounded by ``value``, widths (before, after) per axis;
    dx = the inner part of dy."""
    @staticmethod
    def forward(ctx, x, widths=(), value=0.0):
        shape = tuple(size + before + after for size, (before, after) in zip(x.shape, widths))
        inner = tuple(slice(before, before + size) for size, (before, _) in zip(x.shape, widths))
        out = array_module(x).full(shape, value, dtype=x.dtype)
        out[inner] = x
        if ctx.recording:
            ctx.inner = inner
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.inner]


class To(Function):
    """y = x moved to ``device`` and/or cast to ``dtype``;  dx = dy moved and cast back."""
    @staticmethod
    def forward(ctx, x, device="cpu", dtype=None):
        if ctx.recording:
            ctx.device, ctx.dtype = backend.device_of(x), x.dtype
        out = backend.to_device(x, device)
        return out if dtype is None else out.astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        return backend.to_device(grad, ctx.device).astype(ctx.dtype, copy=False)


class Clone(Function):
    """y = a copy of x;  dx = dy."""
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


# --- the functional forms (PyTorch's names) -----------------------------------------------

def _axis(dim, ndim, name="dim"):
    """``dim`` as a non-negative axis of a tensor with ``ndim`` axes."""
    if not is_int(dim):
        raise TypeError(f"{name} must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name} {dim} is out of range for a tensor with {ndim} dimensions")
    return int(dim) % ndim


def _unchanged(x):
    """The result of a shape op that leaves ``x``'s shape as it is: a new tensor on the same
    array (a view), with a node while recording, as PyTorch's view. ``x`` itself was shared
    with the caller: ``fixed.reshape(2, 3).requires_grad_()`` on a (2, 3) batch made the batch
    itself require grad, so each step's ``.grad`` added to the one before (2, 4, 6 where
    PyTorch gives 2, 2, 2), and ``requires_grad_(False)`` on the result froze ``x``; under
    ``no_grad``, a gradient went through a block meant to stop it."""
    return Reshape.apply(x, shape=x.shape)


def reshape(x, shape):
    x = tensor_input(x, "reshape")
    shape = tuple(shape)
    if shape == x.shape:
        if not all(map(is_int, shape)):  # (2.0, 3) equals (2, 3); NumPy refuses it elsewhere
            raise _not_a_shape(shape)
        return _unchanged(x)
    try:
        # NumPy reads any negative size as -1: (3, -3) of 6 elements gave (3, 2)
        negative = min(shape, default=0) < -1
    except TypeError:  # a size that is no number
        raise _not_a_shape(shape) from None
    if negative:
        axis = next(axis for axis, size in enumerate(shape) if size < -1)
        raise ValueError(f"cannot reshape a tensor of shape {x.shape} to {shape}: sizes must be "
                         f">= 0, or -1 for the rest, got {shape[axis]} at axis {axis}")
    try:
        return Reshape.apply(x, shape=shape)
    except TypeError:  # a float or a bool among the sizes, in NumPy's words
        raise _not_a_shape(shape) from None
    except ValueError:  # NumPy's words name a -1 "newaxis"
        raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({x.data.size} elements) "
                         f"to {shape}: the sizes must multiply to {x.data.size}, with at most "
                         f"one -1 for the rest") from None


def _not_a_shape(shape):
    return TypeError(f"shape must be a tuple of ints, got {shape!r}")


def permute(x, dims):
    x = tensor_input(x, "permute")
    dims = tuple(_axis(dim, x.ndim) for dim in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute dims {dims} must name each of the {x.ndim} axes once")
    return Permute.apply(x, dims=dims)


def transpose(x, dim0, dim1):
    x = tensor_input(x, "transpose")
    dims = list(range(x.ndim))
    dim0, dim1 = _axis(dim0, x.ndim), _axis(dim1, x.ndim)
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute.apply(x, dims=tuple(dims))


def squeeze(x, dim=None):
    """Drop size-1 axes: all of them, or only ``dim`` (an int or tuple) where its size is 1.
    A 0-d tensor takes dim 0 or -1, as in PyTorch, and stays as it is."""
    x = tensor_input(x, "squeeze")
    if dim is None:
        drop = {axis for axis, size in enumerate(x.shape) if size == 1}
    elif x.ndim == 0:
        for d in dims_arg(dim):
            if d not in (0, -1):
                raise ValueError(f"dim {d} is out of range for a 0-d tensor (0 or -1)")
        return _unchanged(x)
    else:
        drop = {axis for axis in (_axis(d, x.ndim) for d in dims_arg(dim)) if x.shape[axis] == 1}
    return reshape(x, tuple(size for axis, size in enumerate(x.shape) if axis not in drop))


def unsqueeze(x, dim):
    """Insert a size-1 axis so that it becomes axis ``dim`` of the result."""
    x = tensor_input(x, "unsqueeze")
    axis = _axis(dim, x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def expand(x, shape):
    """Broadcast to ``shape`` without copying; -1 keeps that axis's size."""
    x = tensor_input(x, "expand")
    shape = given = tuple(shape)
    extra = len(shape) - x.ndim
    if extra < 0:
        raise ValueError(f"expand to {shape} has fewer dimensions than the tensor's {x.shape}")
    if -1 in shape[:extra]:
        raise ValueError(f"expand to {shape}: -1 keeps an existing axis's size, and the new "
                         f"leading axis {shape.index(-1)} has none")
    shape = tuple(x.shape[axis - extra] if size == -1 else size for axis, size in enumerate(shape))
    for axis, size in enumerate(shape):
        # checked here in the op's words: NumPy's broadcast_to named neither axis nor size
        # ("operands could not be broadcast together with remapped shapes")
        if not is_int(size):
            raise TypeError(f"expand to {given}: sizes must be ints, got {size!r} at axis "
                            f"{axis}")
        if size < 0:
            raise ValueError(f"expand to {given}: sizes must be >= 0 (or -1 to keep an "
                             f"axis's size), got {size} at axis {axis}")
        existing = x.shape[axis - extra] if axis >= extra else 1
        if existing not in (1, size):
            raise ValueError(f"expand to {given}: axis {axis} has size {existing}, which "
                             f"cannot be expanded to {size} (only a size of 1 can); expected "
                             f"{existing} or -1 there")
    if shape == x.shape:
        return _unchanged(x)
    return Expand.apply(x, shape=shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes start_dim..end_dim into one."""
    x = tensor_input(x, "flatten")
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = _axis(start_dim, x.ndim, "start_dim"), _axis(end_dim, x.ndim, "end_dim")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    if start == end:  # nothing to merge: x itself, as PyTorch's (detached under no_grad)
        return x if grad_mode.is_grad_enabled() else x.detach()
    merged = 1
    for size in x.shape[start:end + 1]:
        merged *= size
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1:])


def _index_part(part, xp):
    """One part of an index as NumPy/CuPy understands it: tensors, lists and tuples become
    arrays. (A tuple inside the index, as ``zip`` makes them, is a list of picks to NumPy too:
    left a tuple, the repeated picks' gradient took the last one, not their sum.)"""
    if isinstance(part, Tensor):
        return _not_uint8(part.data)
    if isinstance(part, (list, tuple, numpy.ndarray)):
        array = _not_uint8(xp.asarray(part))
        # [] holds no number to take a dtype from, so NumPy makes it float64, which no index
        # may be; as an index it picks nothing (PyTorch: an empty selection)
        return array.astype(numpy.int64) if array.size == 0 and array.dtype.kind == "f" \
            else array
    return part


def _not_uint8(array):
    """``array``, unless it is uint8: PyTorch reads a uint8 index as a mask (with a
    deprecation warning), NumPy as positions, so ``x[mask.to(uint8)]`` of [10, 20, 30] by
    [1, 0, 1] is [10, 30] there and was [20, 10, 20] here."""
    if array.dtype == numpy.uint8:
        raise IndexError(f"a uint8 index of shape {array.shape} is a mask to PyTorch and "
                         f"positions to NumPy; expected .bool() for a mask or .long() for "
                         f"positions")
    return array


def _selects_one(part):
    """An int, or a 0-d integer array (from a tensor, say), which PyTorch also takes as an int."""
    return is_int(part) or (getattr(part, "ndim", None) == 0 and part.dtype.kind in "iu")


def _is_bool(part):
    """A bool, or a 0-d bool array: to PyTorch a new axis of size 1 (True) or 0 (False) in
    its place; to NumPy an index array, which an int beside it joins (``x[0, :, True]`` of
    a (2, 3, 4) x was (1, 3, 4), PyTorch's (3, 1, 4))."""
    return isinstance(part, bool) or (getattr(part, "ndim", None) == 0 and part.dtype == bool)


def _axes_selected(part):
    """How many axes of x one part of an index consumes: a boolean mask its own count, None
    and a bool (which add an axis) none, anything else one."""
    if part is None or isinstance(part, bool):
        return 0
    return part.ndim if getattr(part, "dtype", None) == bool else 1


def _read_as_tuple(index):
    """Whether PyTorch reads list ``index`` as a tuple of index parts: under 32 items, one of
    them a list, a tuple, an array, a tensor, a slice, None or Ellipsis. So ``x[[rows, cols]]``
    picks the pairs there, as ``x[rows, cols]``; read as one array (NumPy's way, and PyTorch's
    after its deprecation) it picked whole rows, another shape and other numbers without a
    word. Such an index is refused."""
    return isinstance(index, list) and len(index) < 32 and any(
        part is None or part is Ellipsis
        or isinstance(part, (slice, list, tuple, numpy.ndarray, Tensor)) for part in index)


def getitem(x, index):
    """``x[index]``: basic slicing, integer-array and boolean-mask indexing, as in PyTorch.

    That is NumPy's rule but for two cases: an int (or a 0-d integer tensor) beside index
    arrays selects first, as plain indexing. NumPy counts it among the arrays, and arrays
    split by a slice put their axes first: of a (2, 3, 4) x, ``x[0, :, [0, 1]]`` is (2, 3)
    in NumPy, (3, 2) in PyTorch. So such an index is taken in two steps, the ints (every
    other axis kept whole), then the rest; so is one with an int beside a bool, which NumPy
    takes for an index array too. And an Ellipsis that stands for no axis is dropped, so that
    it splits no arrays.
    """
    xp = x.xp
    if x.device == "cpu":
        _refuse_device_index(index if isinstance(index, tuple) else (index,))
    if _read_as_tuple(index):
        raise IndexError(f"index {index!r}: a list holding index parts (lists, arrays, "
                         f"tensors, slices, None, ...) is ambiguous (PyTorch reads it as a "
                         f"tuple, with a deprecation warning; NumPy as one array); expected "
                         f"x[tuple(index)] or x[tensor(index)]")
    if not isinstance(index, tuple):
        return GetItem.apply(x, index=_index_part(index, xp))
    index = tuple(_index_part(part, xp) for part in index)
    if any(part is Ellipsis for part in index) and sum(map(_axes_selected, index)) - 1 == x.ndim:
        # an Ellipsis that stands for no axis is dropped, as PyTorch does: NumPy counts it
        # between two index arrays as a separator, and their axes then come first (of a
        # (4, 3, 2) x, x[:, [0, 1], ..., [1, 0]] was (2, 4) where PyTorch's is (4, 2))
        index = tuple(part for part in index if part is not Ellipsis)
    if any(map(_selects_one, index)) and any(getattr(part, "ndim", 0) > 0 or _is_bool(part)
                                             for part in index):
        ints = []
        for part in index:
            ints += [part] if _selects_one(part) or part is Ellipsis else \
                [slice(None)] * _axes_selected(part)
        x = GetItem.apply(x, index=tuple(ints))
        index = tuple(part for part in index if not _selects_one(part))
    return GetItem.apply(x, index=index)


def _refuse_device_index(parts):
    """An index on "cuda" for a tensor on the CPU is refused as two inputs on two devices are
    (PyTorch refuses it too). NumPy asked CuPy to convert it, and CuPy's error named neither
    ("Implicit conversion to a NumPy array is not allowed"). An index on the host for a
    tensor on "cuda" is uploaded, as PyTorch takes CPU indices there."""
    for part in parts:
        data = part.data if isinstance(part, Tensor) else part
        if hasattr(data, "shape") and backend.device_of(data) == "cuda":
            raise devices_differ("index", "cpu", "cuda")


def _tensors_arg(tensors, name):
    """``cat``'s and ``stack``'s sequence of tensors as a tuple, every item a Tensor. An item
    that is none (a list, a number, None) failed inside with "'list' object has no attribute
    'ndim'"; one Tensor given for the sequence was iterated into its rows, so ``cat(x)`` gave
    x flattened by one axis and ``stack(x)`` x itself, where PyTorch refuses both."""
    if isinstance(tensors, Tensor):
        raise TypeError(f"{name} takes a sequence of tensors, got one Tensor of shape "
                        f"{tensors.shape}; expected a list, e.g. {name}([a, b])")
    return tuple(tensor_input(tensor, name, f"item {index} of the sequence")
                 for index, tensor in enumerate(tensors))


def _check_same_kind(tensors, name):
    if not tensors:
        raise ValueError(f"{name} needs at least one tensor")
    first = tensors[0]
    for other in tensors[1:]:
        if other.ndim != first.ndim:
            raise ValueError(f"{name}: tensors have different numbers of dimensions "
                             f"({first.shape} and {other.shape})")


def _floats_win(tensors):
    """``tensors``, the integer and bool ones converted to the floating dtype of the others
    where there are floating ones: PyTorch joins int64 with float32 in float32, NumPy in
    float64."""
    floats = [tensor.dtype for tensor in tensors if tensor.dtype.kind == "f"]
    if not floats or len(floats) == len(tensors):
        return tensors
    dtype = numpy.result_type(*floats)
    return tuple(tensor if tensor.dtype.kind == "f" else as_dtype(tensor, dtype)
                 for tensor in tensors)


def cat(tensors, dim=0):
    tensors = _tensors_arg(tensors, "cat")
    _check_same_kind(tensors, "cat")
    axis = _axis(dim, tensors[0].ndim)
    for other in tensors[1:]:  # in the op's words, the same on NumPy and CuPy
        if any(size != first_size for k, (size, first_size) in
               enumerate(zip(other.shape, tensors[0].shape)) if k != axis):
            raise ValueError(f"cat along dim {dim} needs tensors of equal sizes in every other "
                             f"dim, got {tensors[0].shape} and {other.shape}")
    return Cat.apply(*_floats_win(tensors), axis=axis)


def stack(tensors, dim=0):
    tensors = _tensors_arg(tensors, "stack")
    _check_same_kind(tensors, "stack")
    for other in tensors[1:]:
        if other.shape != tensors[0].shape:
            raise ValueError(f"stack needs tensors of equal shape, got {tensors[0].shape} "
                             f"and {other.shape}")
    return Stack.apply(*_floats_win(tensors), axis=_axis(dim, tensors[0].ndim + 1))


def pad(x, pad, *, value=0.0):
    """Constant padding with PyTorch's order: (last_before, last_after, 2nd_last_before, ...).
    ``value`` is keyword-only: PyTorch's third argument is ``mode`` ("constant", "reflect");
    None pads with 0, as in PyTorch."""
    x = tensor_input(x, "pad")
    pad = tuple(pad)
    if value is None:  # NumPy's constant None was NaN, and a TypeError for an integer tensor
        value = 0.0
    if not isinstance(value, numbers.Real):  # a string reached NumPy's float()
        raise TypeError(f"pad value must be a number, got {value!r}")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad {pad} must have an even length of at most 2 * {x.ndim}")
    if not all(map(is_int, pad)):  # a float reached NumPy's pad, failing in its words
        raise TypeError(f"pad widths must be ints, got {pad}")
    if any(width < 0 for width in pad):
        raise ValueError(f"pad widths must be non-negative, got {pad}")
    if any(pad) and x.dtype.kind in "iu" and not math.isfinite(value):  # NumPy: garbage
        raise ValueError(f"pad value {value} cannot be written into a tensor of {x.dtype}; "
                         f"expected a finite number")
    padded_axes = len(pad) // 2
    widths = [(0, 0)] * (x.ndim - padded_axes) + [
        (pad[2 * k], pad[2 * k + 1]) for k in reversed(range(padded_axes))]
    # no border, no value written: an infinite one cast to an integer dtype only warned
    return Pad.apply(x, widths=tuple(widths), value=value if any(pad) else 0)


def split(x, split_size_or_sections, dim=0):
    """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the listed sizes."""
    x = tensor_input(x, "split")
    axis = _axis(dim, x.ndim)
    length = x.shape[axis]
    if is_int(split_size_or_sections):
        if split_size_or_sections <= 0:
            raise ValueError(f"split_size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (length // split_size_or_sections)
        if length % split_size_or_sections:
            sizes.append(length % split_size_or_sections)
        if length == 0:
            sizes = [0]  # one empty piece, as in PyTorch
    else:
        try:
            sizes = list(split_size_or_sections)
        except TypeError:  # a float or None, in Python's words ("not iterable")
            raise TypeError(f"split_size_or_sections must be an int or a list of ints, got "
                            f"{split_size_or_sections!r}") from None
        if not all(map(is_int, sizes)):
            raise TypeError(f"split sizes must be ints, got {sizes}")
        if any(size < 0 for size in sizes):  # [4, -1] adds up, but no piece is -1 long
            raise ValueError(f"split sizes {sizes} must not be negative")
        if sum(sizes) != length:
            raise ValueError(f"split sizes {sizes} must add up to the size {length} of dim {dim}")
    before, pieces, start = (slice(None),) * axis, [], 0
    for size in sizes:
        pieces.append(getitem(x, before + (slice(start, start + size),)))
        start += size
    return tuple(pieces)


def chunk(x, chunks, dim=0):
    """At most ``chunks`` pieces of equal size ceil(n / chunks) along ``dim`` (the last smaller);
    of an empty axis, ``chunks`` empty pieces (as in PyTorch: ``a, b = batch.chunk(2)`` holds)."""
    x = tensor_input(x, "chunk")
    if not is_int(chunks):  # a float or None failed in Python's words, a bool ran as 0 or 1
        raise TypeError(f"chunks must be an int, got {chunks!r}")
    if chunks <= 0:
        raise ValueError(f"chunks must be positive, got {chunks}")
    length = x.shape[_axis(dim, x.ndim)]
    if length == 0:
        return split(x, [0] * chunks, dim)
    return split(x, -(-length // chunks), dim)


def to(x, device=None, dtype=None):
    """``x`` on ``device`` with ``dtype``; gradients flow back to the original device and dtype.

    Returns ``x`` itself when nothing changes; a cast to a non-float dtype leaves the graph.
    """
    x = tensor_input(x, "to")
    device = x.device if device is None else backend.check_device(device)
    dtype = x.dtype if dtype is None else number_dtype(dtype, "to")
    if device == x.device and dtype == x.dtype:
        return x
    if dtype.kind != "f":
        return Tensor._wrap(backend.to_device(x.data, device).astype(dtype, copy=False), False)
    return To.apply(x, device=device, dtype=dtype)


def clone(x):
    x = tensor_input(x, "clone")
    return Clone.apply(x)
