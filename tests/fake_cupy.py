"""A stand-in for CuPy that runs on the CPU, so the "cuda" code paths run in CI without a GPU.

It is a test double, not a GPU: it computes with NumPy, and its ``RawModule`` runs minilean's
CUDA kernels compiled for the CPU (tests/cuda_on_cpu.py); it says nothing about speed, nor
about how CUDA's own compiler and hardware treat the kernels (tests/test_cuda_gpu.py covers
those on a real card). What it reproduces are the ways CuPy differs from NumPy that
device-generic code can get wrong:

* its arrays (``ndarray``, a wrapper around a NumPy array) refuse implicit conversion to NumPy:
  ``numpy.asarray(device_array)`` raises ``TypeError`` as CuPy does;
* a NumPy array mixed into an operation on device arrays raises ``TypeError`` ("Unsupported
  type"), so a host array that slipped into device code is caught; so does a list given to a
  ufunc or an operator (``a < [1, 2]``), or as the condition of ``where``, which NumPy takes;
* reductions and integer indexing return 0-d device arrays, never host scalars;
* an integer index array reaching past an axis wraps around (in indexing and ``ufunc.at``),
  where NumPy raises IndexError;
* ``cupy.random.Generator`` has only the methods CuPy's has (no ``normal``, no ``choice``), an
  array's ``flags`` only CuPy's three, ``ufunc.reduce`` and ``accumulate`` only for ``add``
  and ``multiply`` (``reduceat`` for ``add``), and ``ndarray.set`` takes only a NumPy array
  of the array's dtype and shape.

Live device arrays are tracked (``bytes_in_use``), standing in for CuPy's memory pool. Every
copy between host and device is counted in ``transfers``: ``to_host`` for ``.get()``,
``asnumpy``, ``.item()``, ``.tolist()``, ``float()``, ``int()``, ``bool()``, ``str()``,
``repr()`` and ``format()`` (f-strings), and whatever CuPy sizes by reading a value back: the
functions and methods of SIZED_BY_VALUES (``bincount``, ``nonzero``...), reached as ``cupy.*``,
as ``numpy.*`` on a device array or as a method, ``where`` with only a condition, and reading
or writing through a boolean mask (``a[mask]``); ``to_device`` for ``asarray`` of host data and
host values written into a device array.
An ``add.at`` that adds two values into one element is counted in ``scatters``: CuPy's
atomic additions make its sums differ in the last bits from run to run.
``install(monkeypatch)`` makes ``minilean.backend`` use this module for ``device="cuda"``.

Stream capture (CUDA graphs) is emulated as CUDA defines it: while a ``Stream`` captures, each
operation issued on it is recorded with the arrays it read and wrote, and ``Graph.launch``
replays the record on those same arrays, with the Python numbers and random draws baked in as
they were at capture. A host-device copy or a cuBLAS call (``matmul``, ``dot``, ``@``...) while
capturing raises, as CuPy 14.2 does; as there, an error caught inside the captured code leaves
the capture usable.
"""
import ctypes
import math
import sys
import time
import types
import weakref

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin


class Transfers:
    """Counts of host-device copies since the last ``reset``."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.to_host = 0
        self.to_device = 0

    def count(self, direction, copies=1):
        """Count ``copies`` copies in ``direction``; while a stream captures, refuse them as
        CUDA does (a copy to the host waits for the GPU, which capture forbids, and a host
        value uploaded into a graph would be baked in)."""
        if copies and _capture.stream is not None:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted "
                               f"when stream is capturing (a copy {direction.replace('_', ' ')})")
        setattr(self, direction, getattr(self, direction) + copies)


transfers = Transfers()


class Scatters:
    """How many ``ufunc.at`` calls since the last ``reset`` put two or more values into one
    element (``repeated``). CuPy adds those with atomic operations, in an order that varies
    from run to run, so what depends on them is not repeated bit for bit on a GPU."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.repeated = 0


scatters = Scatters()
live_arrays = {}  # id -> weak reference of every device array not yet freed: the pool in use


def bytes_in_use():
    """Bytes held by live device arrays (views of one buffer count once)."""
    buffers = {}
    for reference in list(live_arrays.values()):
        device_array = reference()
        if device_array is None:
            continue
        base = device_array._array
        while base.base is not None and isinstance(base.base, numpy.ndarray):
            base = base.base
        buffers[id(base)] = base.nbytes
    return sum(buffers.values())


def get_default_memory_pool():
    """CuPy's pool, as far as minilean's tests ask: the bytes in use."""
    return types.SimpleNamespace(used_bytes=bytes_in_use)


def _unwrap(value):
    """The NumPy view of a device array (recursively in lists and tuples); host arrays are
    refused as CuPy refuses them."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, numpy.ndarray):
        raise TypeError(f"Unsupported type {type(value)}")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(item) for item in value)
    return value


def _wrap(value):
    """NumPy results as device arrays; a NumPy scalar becomes a 0-d array, as in CuPy."""
    if isinstance(value, numpy.ndarray):
        return ndarray(value)
    if isinstance(value, numpy.generic):
        return ndarray(numpy.asarray(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(item) for item in value)
    return value


CUBLAS_FUNCTIONS = ("matmul", "dot", "tensordot", "einsum", "inner", "vdot")  # CuPy: cuBLAS


def _refuse_cublas_while_capturing(name):
    """CuPy computes these with cuBLAS, which it refuses to call during stream capture."""
    if name in CUBLAS_FUNCTIONS and _capture.stream is not None:
        raise NotImplementedError("calling cuBLAS API during stream capture is currently "
                                  f"unsupported ({name})")


def _device_function(function, baked=False):
    """``function`` taking and returning device arrays, recorded while a stream captures
    (``baked``: replays give the captured result again, as a random draw captured by CUDA)."""
    def on_device(*args, **kwargs):
        _refuse_cublas_while_capturing(getattr(function, "__name__", ""))
        result = _run(function, _unwrap(args), {k: _unwrap(v) for k, v in kwargs.items()},
                      baked)
        # as CuPy: a result that is an argument's own memory (written into ``out``, or the
        # ascontiguousarray of a contiguous array) is that very array
        for given in (kwargs.get("out"), *args):
            if isinstance(given, ndarray) and isinstance(result, ndarray) and \
                    result._array is given._array:
                return given
        return result
    on_device.__name__ = getattr(function, "__name__", "function")
    return on_device


ALLOCATIONS = ("empty", "empty_like")  # memory from the pool: no operation of a graph


def _run(function, args, kwargs=None, baked=False):
    """``function`` on NumPy arrays, its result as device arrays; while capturing, recorded
    (but for an allocation, which a replay must not touch: what was written into the memory
    after the capture, such as a table of addresses, stays)."""
    kwargs = kwargs or {}
    # while capturing, kernels' outputs hold garbage (they ran nothing): no warnings about it
    with numpy.errstate(all="ignore" if _capturing_here() else None):
        result = _wrap(function(*args, **kwargs))
    if getattr(function, "__name__", "") in ALLOCATIONS:
        return result
    if baked:
        saved = _unwrap(_wrap_copy(result))
        _capture.record(lambda: _refill(result, saved))
    else:
        _capture.record(lambda: _refill(result, function(*args, **kwargs)))
    return result


def _wrap_copy(value):
    if isinstance(value, ndarray):
        return ndarray(value._array.copy())
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap_copy(item) for item in value)
    return value


def _refill(target, fresh):
    """Write a replayed result ``fresh`` into the device array(s) ``target`` of the capture
    (read-only views share memory that another operation refills)."""
    if isinstance(target, ndarray):
        if target._array.flags.writeable:
            numpy.copyto(target._array, fresh)
    elif isinstance(target, (list, tuple)):
        for target_item, fresh_item in zip(target, fresh):
            _refill(target_item, fresh_item)


def _axes_taken(part):
    """How many axes of the indexed array one part of an index consumes (NumPy's rule)."""
    if part is None or part is Ellipsis or isinstance(part, bool):
        return 0
    if isinstance(part, (list, numpy.ndarray)) and numpy.asarray(part).dtype == bool:
        return numpy.ndim(part)
    return 1


def _wrapped_around(index, shape):
    """``index`` (NumPy arrays in it) with each integer index array taken modulo the size of
    the axis it indexes: CuPy wraps an out-of-bounds index array around, in indexing and in
    ``ufunc.at``, where NumPy raises IndexError. A plain int out of bounds is an IndexError in
    both."""
    parts = index if isinstance(index, tuple) else (index,)
    taken = [_axes_taken(part) for part in parts]
    wrapped, axis = [], 0
    for position, part in enumerate(parts):
        if part is Ellipsis:
            axis = len(shape) - sum(taken[position + 1:])
        elif isinstance(part, (list, numpy.ndarray)) and axis < len(shape) and shape[axis]:
            array = numpy.asarray(part)
            if array.dtype.kind in "iu":
                part = array % shape[axis]
        wrapped.append(part)
        axis += taken[position]
    return tuple(wrapped) if isinstance(index, tuple) else wrapped[0]


def _wrapping(method):
    """An array's ``__getitem__`` or ``__setitem__``, wrapping the index around as CuPy does
    at every call (a replayed graph reads its index arrays as they are then)."""
    def indexed(index, *value):
        return method(_wrapped_around(index, method.__self__.shape), *value)
    indexed.__name__, indexed.__self__ = method.__name__, method.__self__
    return indexed


class ndarray(NDArrayOperatorsMixin):  # noqa: N801  CuPy's name
    """A device array: every operator, method and attribute of the NumPy array it holds, with
    CuPy's refusals and the transfer counts."""

    __slots__ = ("_array", "__weakref__")
    __array_priority__ = 100

    def __init__(self, array):
        self._array = array
        key = id(self)
        live_arrays[key] = weakref.ref(self, lambda _: live_arrays.pop(key, None))

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_cublas_while_capturing(ufunc.__name__)  # ``a @ b``
        _check_ufunc_operands(inputs)
        computed = _cupy_loop(ufunc) if method == "__call__" else getattr(ufunc, method)
        if out is not None:  # in place (``x += y``): write into the device arrays given
            _device_function(computed)(*inputs, out=out, **kwargs)
            return out[0] if len(out) == 1 else out
        return _device_function(computed)(*inputs, **kwargs)

    def __array_function__(self, function, types_, args, kwargs):
        # CuPy hands ``numpy.f(device_array)`` to its own ``cupy.f``: the same copies
        return _counting_sizes(function.__name__, _device_function(function))(*args, **kwargs)

    def __getattr__(self, name):
        # no dunders: NumPy would find ``__array_interface__`` and read the memory directly;
        # ``_array`` is unset while copy and pickle build the object
        if name.startswith("__") or name == "_array":
            raise AttributeError(name)
        attribute = getattr(self._array, name)
        if not callable(attribute):
            return _wrap(attribute)
        return _counting_sizes(name, _device_function(attribute))

    def __getitem__(self, key):
        return _run(_wrapping(self._array.__getitem__), (self._index(key),))

    def __setitem__(self, key, value):
        if isinstance(value, numpy.ndarray):
            transfers.count("to_device")
        else:
            value = _unwrap(value)
        _run(_wrapping(self._array.__setitem__), (self._index(key), value))

    @staticmethod
    def _index(key):
        """Device index arrays as they are; host index arrays are uploaded (CuPy accepts
        them, at the price of a copy). A boolean mask costs a copy back: CuPy sizes what it
        reads or writes by the count of Trues, which it reads to the host; and it takes a
        mask only as the one array of an index."""
        parts = key if isinstance(key, tuple) else (key,)
        arrays = [part._array if isinstance(part, ndarray) else numpy.asarray(part)
                  for part in parts if isinstance(part, (ndarray, numpy.ndarray, list))]
        masks = [array for array in arrays if array.dtype == bool]
        if masks and len(arrays) > 1:
            raise ValueError("currently, CuPy only supports slices that consist of one "
                             "boolean array.")
        uploads = sum(isinstance(part, (numpy.ndarray, list)) for part in parts)
        transfers.count("to_device", uploads)
        transfers.count("to_host", sum(mask.size > 0 for mask in masks))
        unwrapped = tuple(part._array if isinstance(part, ndarray) else part for part in parts)
        return unwrapped if isinstance(key, tuple) else unwrapped[0]

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (_wrap(row) for row in self._array)

    __hash__ = None

    @property
    def data(self):
        """The memory, as CuPy's ``MemoryPointer`` shows it: ``.ptr`` is its address."""
        address = self._array.ctypes.data

        def copy_from_device(source, size):
            def copy():
                ctypes.memmove(address, source.ptr, size)
            copy()
            _capture.record(copy)
        return types.SimpleNamespace(ptr=address, copy_from_device=copy_from_device)

    def set(self, host_array, stream=None):
        """Copy a host array into this one (CuPy's upload into existing memory): a NumPy array
        of this array's dtype and shape, nothing that NumPy would convert or broadcast."""
        if not isinstance(host_array, numpy.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if host_array.dtype != self.dtype:
            raise TypeError(f"{host_array.dtype} array cannot be set to {self.dtype} array")
        if host_array.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: "
                             f"{host_array.shape}")
        transfers.count("to_device")
        self._array[...] = host_array

    @property
    def flags(self):
        """CuPy's flags: c_contiguous, f_contiguous and owndata, no more (every CuPy array is
        writeable, and none is told aligned)."""
        flags = self._array.flags
        return types.SimpleNamespace(c_contiguous=flags.c_contiguous,
                                     f_contiguous=flags.f_contiguous, owndata=flags.owndata)

    # --- explicit copies to the host (CuPy's ``repr``, ``str`` and ``format`` print ``.get()``) --
    def __repr__(self):
        transfers.count("to_host")
        return f"fake_cupy.{self._array!r}"

    def __str__(self):
        transfers.count("to_host")
        return str(self._array)

    def __format__(self, format_spec):
        transfers.count("to_host")
        return format(self._array[()] if self._array.ndim == 0 else self._array, format_spec)

    def get(self, stream=None):
        transfers.count("to_host")
        return self._array.copy()

    def item(self, *args):
        transfers.count("to_host")
        return self._array.item(*args)

    def tolist(self):
        transfers.count("to_host")
        return self._array.tolist()

    def __float__(self):
        transfers.count("to_host")
        return float(self._array)

    def __int__(self):
        transfers.count("to_host")
        return int(self._array)

    def __bool__(self):
        transfers.count("to_host")
        return bool(self._array)

    # no __index__, as CuPy's ndarray has none (cupy/_core/core.pyx converts with __int__,
    # __float__, __complex__ only): range(a), items[a] and a slice bound refuse a 0-d array


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    transfers.count("to_device")
    return ndarray(numpy.array(a, dtype=dtype, order=order))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        return _device_function(numpy.array)(a, dtype=dtype, copy=copy, order=order,
                                             ndmin=ndmin)
    transfers.count("to_device")
    return ndarray(numpy.array(a, dtype=dtype, order=order, ndmin=ndmin))


def asnumpy(a, stream=None):
    return a.get() if isinstance(a, ndarray) else numpy.asarray(a)


def _check_ufunc_operands(operands):
    """CuPy's ufuncs (and so its operators) take device arrays and scalars, nothing else: a
    list is "Unsupported type" there (``_preprocess_arg`` in cupy/_core/_kernel.pyx), where
    NumPy would make an array of it."""
    for operand in operands:
        if not isinstance(operand, (ndarray, int, float, complex, numpy.generic)):
            raise TypeError(f"Unsupported type {type(operand)}")


def _integral_power(base, exponent, out=None, **kwargs):
    """CuPy's ``power``: NumPy's, except that an integer to a negative integer power is
    1 / base^n truncated toward zero (1 for base 1, +-1 for base -1, else 0), where NumPy
    raises ValueError ("Integers to negative integer powers are not allowed"): its kernel's
    ``integral_power`` in cupy/_core/_routines_math.pyx."""
    if numpy.result_type(base, exponent).kind not in "iu" or not numpy.any(
            numpy.asarray(exponent) < 0):
        return numpy.power(base, exponent, out=out, **kwargs)
    negative = numpy.asarray(exponent) < 0
    result = numpy.power(base, numpy.where(negative, 0, exponent), **kwargs)
    reciprocal = numpy.where(numpy.asarray(base) == -1, 1 - 2 * (numpy.asarray(exponent) & 1),
                             numpy.asarray(base) == 1)
    result = numpy.where(negative, reciprocal, result).astype(result.dtype)
    if out is None:
        return result
    numpy.copyto(out[0] if isinstance(out, tuple) else out, result, casting="same_kind")
    return out[0] if isinstance(out, tuple) else out


def _sign(x, out=None, **kwargs):
    """CuPy's ``sign``: NumPy's, except that a float's is (x > 0) - (x < 0), so 0 at nan
    where NumPy's is nan (cupy/_math/misc.py)."""
    result = numpy.sign(x, **kwargs)
    if result.dtype.kind == "f":
        result = numpy.where(numpy.isnan(result), result.dtype.type(0), result)
    if out is None:
        return result
    numpy.copyto(out[0] if isinstance(out, tuple) else out, result, casting="same_kind")
    return out[0] if isinstance(out, tuple) else out


CUPY_LOOPS = {numpy.power: _integral_power, numpy.sign: _sign}  # where CuPy's kernels differ


def _cupy_loop(ufunc):
    """What calling ``ufunc`` computes on CuPy: NumPy's ufunc, but where CuPy's kernel differs."""
    return CUPY_LOOPS.get(ufunc, ufunc)


# The ufunc methods CuPy has beside ``at`` and ``outer``, and the only ufuncs that have them
# (the others raise NotImplementedError)
UFUNC_METHODS = {"reduce": ("add", "multiply"), "accumulate": ("add", "multiply"),
                 "reduceat": ("add",)}


class _Ufunc:
    """A NumPy ufunc on device arrays, with CuPy's methods (``add.at``, ``add.reduce``)."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        _check_ufunc_operands(args)
        return _device_function(_cupy_loop(self._ufunc))(*args, **kwargs)

    def __getattr__(self, name):
        if self.__name__ not in UFUNC_METHODS.get(name, (self.__name__,)):
            raise NotImplementedError(f"`cupy_{self.__name__}.{name}` is not supported yet")
        attribute = getattr(self._ufunc, name)
        if name == "at":  # CuPy's scatter wraps its indices around, as its indexing does
            def at(a, indices, b=None):
                indices = _wrapped_around(indices, a.shape)
                places = numpy.arange(a.size).reshape(a.shape)[indices]
                scatters.repeated += numpy.unique(places).size < places.size
                return attribute(a, indices, b)
            return lambda a, indices, b=None: _run(at, _unwrap((a, indices, b)))
        return _device_function(attribute) if callable(attribute) else attribute


# Functions (and the methods of these names) whose output's size depends on the values in their
# input: CuPy reads a number back to the host to allocate the output (bincount its input's
# largest value, the others how many elements they find), a copy that makes the host wait for
# the GPU as ``.get()`` does
SIZED_BY_VALUES = ("argwhere", "bincount", "compress", "extract", "flatnonzero", "nonzero",
                   "unique")


def __getattr__(name):
    """Every other name: NumPy's, with functions taking and returning device arrays; types
    (``float32``) and constants (``inf``) as NumPy has them, as CuPy does."""
    attribute = getattr(numpy, name)
    if isinstance(attribute, numpy.ufunc):
        return _Ufunc(attribute)
    if isinstance(attribute, type) or not callable(attribute):
        return attribute
    return _counting_sizes(name, _device_function(attribute))


def _pool_memory(allocate):
    """NumPy's ``allocate`` (``empty``, ``empty_like``), whose new array holds garbage, as memory
    from CuPy's pool holds what its last user wrote: NaN in floats, the largest value in
    integers, so that a kernel reading what nothing wrote shows (NumPy's fresh memory is
    often zeros, or the same values a freed array of the same size held)."""
    def allocate_garbage(*args, **kwargs):
        array = allocate(*args, **kwargs)
        if array.dtype.kind == "f":
            array.fill(numpy.nan)
        elif array.dtype.kind in "iu":
            array.fill(numpy.iinfo(array.dtype).max)
        return array
    allocate_garbage.__name__ = allocate.__name__
    return allocate_garbage


empty = _device_function(_pool_memory(numpy.empty))
empty_like = _device_function(_pool_memory(numpy.empty_like))


def _clip(a, a_min=None, a_max=None, out=None, **kwargs):
    """CuPy's ``clip``: NumPy's, except that a nan bound is passed over where NumPy's gives nan
    (cupy/cupy#9031: its kernel, ``a_min > a_max ? a_max : (x < a_min ? a_min : (x > a_max ?
    a_max : x))`` in cupy/_core/_routines_math.pyx, compares with the bound and takes x)."""
    bounds = []
    for bound, passed_over in ((a_min, -numpy.inf), (a_max, numpy.inf)):
        if isinstance(bound, float) and math.isnan(bound):
            bound = passed_over
        elif bound is not None and numpy.asarray(bound).dtype.kind == "f":
            bound = numpy.where(numpy.isnan(bound), passed_over, bound)
        bounds.append(bound)
    return numpy.clip(a, *bounds, out=out, **kwargs)


_clip.__name__ = "clip"
clip = _device_function(_clip)


def where(condition, *values):
    """CuPy's ``where``: given values, it first calls ``condition.astype('?')``, which a list
    (NumPy takes one) does not have."""
    if values and not hasattr(condition, "astype"):
        raise AttributeError(f"{type(condition).__name__!r} object has no attribute 'astype'")
    return __getattr__("where")(condition, *values)


def _counting_sizes(name, function):
    """``function`` (CuPy's ``name``), counting the copy to the host of a call whose output
    CuPy sizes by the values: a SIZED_BY_VALUES function, or ``where`` given only a condition
    (CuPy's is then ``nonzero``)."""
    if name not in SIZED_BY_VALUES + ("where",):
        return function

    def reads_a_size_back(*args, **kwargs):
        if name != "where" or len(args) + len(kwargs) == 1:
            transfers.count("to_host")
        return function(*args, **kwargs)
    reads_a_size_back.__name__ = name
    return reads_a_size_back


# --- random numbers: CuPy's Generator has fewer methods than NumPy's ---------------------------

CUPY_GENERATOR_METHODS = ("beta", "binomial", "chisquare", "dirichlet", "exponential", "f",
                          "gamma", "geometric", "hypergeometric", "integers", "logseries",
                          "poisson", "power", "random", "standard_exponential",
                          "standard_gamma", "standard_normal", "uniform")


class Generator:
    def __init__(self, seed=None):
        self._generator = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        if name not in CUPY_GENERATOR_METHODS:
            raise AttributeError(f"'cupy.random.Generator' object has no attribute '{name}'")
        return _device_function(getattr(self._generator, name), baked=True)


random = types.SimpleNamespace(
    default_rng=Generator, Generator=Generator,
    standard_normal=_device_function(
        lambda size=None, dtype=float: numpy.random.default_rng().standard_normal(
            size, dtype=dtype), baked=True))
lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
    as_strided=_device_function(numpy.lib.stride_tricks.as_strided)))


# --- the bits of cupy.cuda and cupyx that minilean touches --------------------------------------

class _Capture:
    """What a capturing stream has recorded: one replayable step per device operation."""

    def __init__(self):
        self.stream, self.steps, self.before = None, [], []

    def record(self, step):
        if _capturing_here():
            self.steps.append(step)

    def begin(self, stream):
        """Start recording on ``stream``, remembering the contents of every device array."""
        self.__init__()
        self.stream = stream
        self.before = [(array, array._array.copy()) for array in _live()
                       if array._array.flags.writeable]

    def undo_effects(self):
        """What CUDA leaves after a capture, which executes nothing: arrays made while
        capturing hold garbage (NaN here), older ones what they held before."""
        older = {id(array) for array, _ in self.before}
        for array in _live():
            if id(array) not in older and array._array.flags.writeable and \
                    array.dtype.kind == "f":
                array._array.fill(numpy.nan)
        for array, contents in self.before:
            array._array[...] = contents


def _capturing_here():
    """Whether operations issued now are captured (the current stream is capturing)."""
    return _capture.stream is not None and _current_stream() is _capture.stream


def _live():
    return [array for array in (reference() for reference in list(live_arrays.values()))
            if array is not None]


_capture = _Capture()
_streams = []  # the streams entered with ``with``, innermost last


def _current_stream():
    return _streams[-1] if _streams else Stream.null


class Graph:
    """A captured graph: ``launch`` replays each recorded operation, in order, on the arrays
    of the capture (its Python numbers and random draws as they were then)."""

    def __init__(self, steps):
        self._steps = steps

    def launch(self, stream=None):
        for step in self._steps:
            step()


class Stream:
    """A stream: the current one inside ``with``; it can capture unless it is ``null``.

    While it captures, operations issued on it are recorded. CuPy's operations also run, so
    that Python sees results with shapes, but ``end_capture`` undoes their effects, as CUDA
    (which runs nothing while capturing) would have: the arrays made while capturing hold NaN
    until a replay writes them, and the older arrays get their contents back. Raw kernels are
    only recorded, as on a GPU: one may read a table of addresses that is filled only once the
    capture has ended (``minilean.cuda.graph.upload``), which run now would be garbage.
    """
    null = None

    def __init__(self, null=False, non_blocking=False):
        self.is_null = null

    def __enter__(self):
        _streams.append(self)
        return self

    def __exit__(self, *exc_info):
        _streams.pop()

    def synchronize(self):
        """Nothing is ever in flight on the CPU; CUDA refuses to wait on a capture."""
        if _capture.stream is self:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: cannot synchronize a "
                               "capturing stream")

    def begin_capture(self, mode=None):
        if self.is_null:
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if _capture.stream is not None:
            raise RuntimeError("cudaErrorIllegalState: a stream is capturing already")
        _capture.begin(self)

    def end_capture(self):
        if _capture.stream is not self:
            raise RuntimeError("cudaErrorIllegalState: the stream is not capturing")
        steps = _capture.steps
        _capture.undo_effects()
        _capture.__init__()
        return Graph(steps)


Stream.null = Stream(null=True)


class MemoryPool:
    """A memory pool of its own (CuPy's ``MemoryPool``); ``malloc`` is its allocator."""

    def malloc(self, size):
        raise NotImplementedError("the stand-in allocates with NumPy, never through a pool")


class _Allocator:
    """``using_allocator(allocator)``: NumPy allocates here whatever the allocator."""

    def __init__(self, allocator=None):
        self.allocator = allocator

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


class _Event:
    """A timing event: the wall clock when recorded (nothing runs asynchronously here)."""

    def record(self, stream=None):
        self.seconds = time.perf_counter()

    def synchronize(self):
        """Recorded work is already done."""


__version__ = "stand-in"
cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 0, driverGetVersion=lambda: 0,
        memGetInfo=lambda: (1 << 30, 1 << 30),  # (free, total): 1 GiB, as a small card
        getDeviceProperties=lambda device: {"name": b"CPU stand-in for CuPy"}),
    Stream=Stream, Event=_Event, MemoryPool=MemoryPool, using_allocator=_Allocator,
    get_current_stream=_current_stream,
    get_elapsed_time=lambda start, end: 1e3 * (end.seconds - start.seconds))


def _special(function, x):
    """cupyx.scipy.special's ``function`` of ``x``: its loops are e->d, f->f, d->d, so a
    float16 array gives float64 (cupyx/scipy/special/_erf.py)."""
    dtype = numpy.float64 if x.dtype == numpy.float16 else x.dtype
    return _wrap(numpy.vectorize(function, otypes=[dtype])(_unwrap(x)))


def _erf(x):
    return _special(math.erf, x)


def _erfc(x):
    return _special(math.erfc, x)


def RawModule(code, options=(), name_expressions=()):  # noqa: N802  CuPy's name
    """The kernels of ``code``, compiled for and run on the CPU (tests/cuda_on_cpu.py)."""
    import cuda_on_cpu
    return _RecordedModule(cuda_on_cpu.RawModule(code, options, name_expressions))


class _RecordedModule:
    """A module whose kernel launches are recorded while a stream captures."""

    def __init__(self, module):
        self._module = module

    def get_function(self, name):
        kernel = self._module.get_function(name)

        def launch(grid, block, args, shared_mem=0):
            def run():
                kernel(grid, block, args, shared_mem)
            if not _capturing_here():  # as CUDA, which runs nothing it captures (see Stream)
                run()
            _capture.record(run)
        return launch


cupyx = types.ModuleType("cupyx")
cupyx.scipy = types.ModuleType("cupyx.scipy")
cupyx.scipy.special = types.ModuleType("cupyx.scipy.special")
cupyx.scipy.special.erf = _erf
cupyx.scipy.special.erfc = _erfc


def install(monkeypatch):
    """Make ``device="cuda"`` compute with this module, and ``import cupy`` find it, for the
    rest of the test; call ``forget_device_state`` when the test ends."""
    from minilean import backend
    forget_device_state()
    monkeypatch.setattr(backend, "_cupy", _module)
    monkeypatch.setattr(backend, "_cuda_problem", "")
    monkeypatch.setattr(backend, "_generators", {})
    for name, fake in (("cupy", _module), ("cupyx", cupyx), ("cupyx.scipy", cupyx.scipy),
                       ("cupyx.scipy.special", cupyx.scipy.special)):
        monkeypatch.setitem(sys.modules, name, fake)
    transfers.reset()
    scatters.reset()
    return _module


def forget_device_state():
    """Drop what minilean.cuda keeps between calls (compiled modules, cached device arrays),
    so nothing made by this stand-in outlives it, nor anything made by real CuPy leaks in."""
    from minilean import backend
    from minilean.cuda import compile, im2col, multi_tensor, use_fast_kernels
    use_fast_kernels(False)
    _capture.__init__()
    _streams.clear()
    for program in compile.PROGRAMS.values():
        program.forget()
    im2col._device_geometry.cache_clear()
    backend._constants.clear()
    multi_tensor._tables.clear()


_module = sys.modules[__name__]
# minilean picks CuPy-only code paths (cupyx's erf) by the module's name
_module.__name__ = "cupy"
