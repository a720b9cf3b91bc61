"""Tensor: an array on a device, plus what reverse-mode autograd needs to differentiate it.

A tensor holds ``data`` (a NumPy or CuPy array), ``requires_grad``, ``grad`` (filled by
``backward``; one set by hand must have the tensor's shape, dtype and device) and ``grad_fn``
(the graph node of the op that made it, ``None`` for leaves).
The math lives in the op files (elementwise, reduce, shape, linalg, conv); the methods here
only forward to them, with PyTorch's names.
"""
import operator

import numpy

from minilean import backend
from minilean.autograd import graph

DEFAULT_DTYPE = numpy.float32
DEFAULT_INT_DTYPE = numpy.int64  # what a Python int becomes, as in PyTorch
_FLOAT_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64),
                 numpy.dtype(numpy.float16))


class ToShorthands:
    """PyTorch's shorthands for ``to``, of a Tensor and of a Module alike (a Module's keeps
    its integer and boolean buffers' dtypes, as its ``to`` does)."""

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=numpy.float32)

    def double(self):
        return self.to(dtype=numpy.float64)

    def half(self):
        return self.to(dtype=numpy.float16)


class Tensor(ToShorthands):
    __array_priority__ = 1000  # so numpy_scalar * tensor calls Tensor.__rmul__

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        is_array = hasattr(data, "shape")
        device = device or (backend.device_of(data) if is_array else "cpu")
        if dtype is None and not is_array:
            dtype = default_dtype(data)
        xp = backend.xp_for(device)
        self._data = xp.asarray(backend.to_device(data, device) if is_array else data,
                                dtype=dtype)
        if self._data.dtype.kind not in "biuf":  # text or objects: no op computes with them
            raise TypeError(f"a tensor holds numbers or booleans, got {type(data).__name__} "
                            f"data of dtype {self.data.dtype}")
        self._grad = None
        self.grad_fn = None
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, requires_grad):
        """Make a tensor around an existing array with no checks (the ops' fast path)."""
        tensor = cls.__new__(cls)
        # the flag's own slot, not the checking property: this runs for every op's result
        tensor._data, tensor._grad, tensor.grad_fn = array, None, None
        tensor._requires_grad = requires_grad
        return tensor

    def _set_data(self, data):
        """``tensor.data = array`` puts another array in the tensor (the graph keeps the old
        one). A Tensor given gives its array: in ``w.data -= lr * w.grad``, PyTorch's way of a
        hand-written step, the right side is a Tensor, NumPy hands the subtraction to it, and
        the Tensor it returns became .data, which every op then read as an array."""
        if isinstance(data, Tensor):
            data = data._data
        elif not hasattr(data, "dtype") or not hasattr(data, "shape"):
            raise TypeError(f"tensor.data must be an array (or a Tensor, for its array), got "
                            f"{type(data).__name__}")
        self._data = data

    # read through a C-level getter: every op reads the arrays of its inputs
    data = property(operator.attrgetter("_data"), _set_data)

    # --- facts about the array ------------------------------------------------------------
    # the array's, read through C-level getters: the ops and the graph walk read them of
    # their inputs several hundred times a step
    shape = property(operator.attrgetter("_data.shape"))
    ndim = property(operator.attrgetter("_data.ndim"))
    dtype = property(operator.attrgetter("_data.dtype"))

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(self.data.size)

    def dim(self):
        return self.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        """The sub-tensors along dim 0. Without this, Python would iterate by indexing until an
        IndexError, which a 0-d tensor raises at once with NumPy's "too many indices"."""
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[index] for index in range(len(self)))

    def __contains__(self, value):
        """``value in x``: whether any element equals it, as in PyTorch. (Python's fallback,
        iteration, compared whole rows and asked each comparison's truth value.) Only numbers
        are looked for: ``None in x`` failed on the plain False of ``x == None``."""
        if not holds_numbers(value):
            raise TypeError(f"'in' looks for a number (or a tensor or array of them) in a "
                            f"tensor, got {type(value).__name__}")
        return bool((self == value).data.any())

    def __repr__(self):
        grad = f", grad_fn={self.grad_fn!r}" if self.grad_fn is not None else (
            ", requires_grad=True" if self.requires_grad else "")
        # the values as NumPy prints them, continuation rows under the first (not "array(...)")
        values = numpy.array2string(numpy.asarray(self.numpy()), separator=", ",
                                    prefix="tensor(")
        # an empty tensor prints as [] whatever its shape: say the shape, as NumPy's repr does
        shape = f", shape={self.shape}" if self.data.size == 0 and self.ndim != 1 else ""
        return f"tensor({values}{shape}, dtype={self.dtype}, device={self.device!r}{grad})"

    # --- autograd controls ----------------------------------------------------------------
    def _set_grad(self, grad):
        """``tensor.grad = grad`` by hand: None, or a tensor of this tensor's shape, dtype and
        device, as PyTorch checks. Anything else failed far from here, or worse, broadcast in an
        optimizer's step (a (1,) gradient over a (3, 4) weight). The engine writes ``_grad``
        itself, unchecked: it makes its gradients to fit."""
        if grad is not None:
            if not isinstance(grad, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got "
                                f"{type(grad).__name__}")
            if (grad.shape, grad.dtype, grad.device) != (self.shape, self.dtype, self.device):
                raise ValueError(f"assigned grad has shape {grad.shape}, dtype {grad.dtype}, "
                                 f"device {grad.device!r}; expected the tensor's: shape "
                                 f"{self.shape}, dtype {self.dtype}, device {self.device!r}")
        self._grad = grad

    # read through a C-level getter: the engine reads .grad of every parameter at every step
    grad = property(operator.attrgetter("_grad"), _set_grad)

    def _set_requires_grad(self, requires_grad):
        """``tensor.requires_grad = flag`` (and ``requires_grad_``), checked as PyTorch checks
        it: only a float tensor can require gradients, and only a leaf's flag can be turned
        off. Turning off a tensor that an op made would cut only the gradient paths that pass
        through it later, not the graph already recorded through it: ``y = 2 x;
        z = 3 y + x; y.requires_grad = False`` then gave dz/dx = 1, not 7. The ops write
        ``_requires_grad`` themselves, unchecked. The flag must be a bool, as PyTorch's:
        ``model.requires_grad_(flags.finetune)`` with the text "false" kept every weight
        training (the text stored as the flag, and read as true)."""
        if not is_bool(requires_grad):
            raise TypeError(f"requires_grad must be a bool, got {requires_grad!r}")
        requires_grad = bool(requires_grad)
        if requires_grad and self.data.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad=False on a tensor made by an op (not a leaf): "
                               "only a leaf's flag can be turned off; use detach() for the same "
                               "data outside the graph")
        self._requires_grad = requires_grad

    # read through a C-level getter: every op reads it of each of its inputs
    requires_grad = property(operator.attrgetter("_requires_grad"), _set_requires_grad)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, False)

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d self / d leaf into every leaf's ``.grad``.

        ``gradient`` defaults to 1 for a single-element tensor; otherwise pass d loss / d self
        (a Tensor, an array or a list), which is taken on self's device and in its dtype: a
        ``numpy.ones(shape)`` seed (float64) would otherwise run a float32 graph's whole
        backward in float64.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad)")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a single-element tensor, "
                                   f"got shape {self.shape}")
            seed = self.xp.ones_like(self.data)
        else:
            given = gradient.data if isinstance(gradient, Tensor) else gradient
            seed = self.xp.asarray(backend.to_device(given, self.device), dtype=self.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"gradient shape {seed.shape} does not match tensor shape {self.shape}")
        graph.run_backward(self, seed, retain_graph=retain_graph)

    # --- conversion -----------------------------------------------------------------------
    @property
    def xp(self):
        return backend.array_module(self.data)

    def numpy(self):
        """The data as a NumPy array on the host (a copy from the GPU)."""
        return backend.to_device(self.data, "cpu")

    def __array__(self, dtype=None, copy=None):
        """``numpy.asarray(tensor)``: the host array, as ``numpy()`` gives it, under NumPy 2's
        protocol: ``copy=False`` refuses where a copy cannot be avoided (a "cuda" tensor, or a
        new dtype), ``copy=True`` always copies, ``None`` copies only when it must."""
        if copy is False and self.device != "cpu":
            raise ValueError(f"a {self.device} tensor cannot be a NumPy array without a copy "
                             f"to the host")
        return numpy.array(self.numpy(), dtype=dtype, copy=copy)

    def item(self):
        """The one value as a Python number (a copy to the host for a "cuda" tensor)."""
        return self._single_value("item()")

    def _single_value(self, asked_by):
        if self.data.size != 1:
            raise ValueError(f"{asked_by} needs a single-element tensor, got shape {self.shape}")
        return self.data.reshape(()).item()

    # Python's conversions read the one value, like item(). Without __bool__, Python would fall
    # back on __len__: bool(tensor([0.0])) would be True and `if a > b:` would test the length.
    def __bool__(self):
        if self.data.size == 0:
            raise ValueError(f"the truth value of a tensor with no elements is ambiguous, "
                             f"got shape {self.shape}")
        if self.data.size > 1:
            raise ValueError(f"the truth value of a tensor with more than one element is "
                             f"ambiguous, got shape {self.shape}: reduce it first (.max(), "
                             f".min())")
        return bool(self.item())

    def __float__(self):
        return float(self._single_value("float()"))

    def __int__(self):
        return int(self._single_value("int()"))

    def __index__(self):
        """A one-element integer tensor where Python wants an index (``items[t]``,
        ``range(t)``), as in PyTorch; a float one is refused, as a float is."""
        if self.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError(f"only a one-element integer tensor can be an index, got "
                            f"{self.dtype} of shape {self.shape}")
        return int(self.data.reshape(()).item())

    def __format__(self, format_spec):
        """``f"{loss:.4f}"``: a 0-d tensor formats as its value, as in PyTorch (one copy to the
        host from "cuda"); any other tensor only with an empty spec, as its repr."""
        if self.ndim == 0:
            return format(self.item(), format_spec)
        return super().__format__(format_spec)

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device=None, dtype=None):
        """This tensor on ``device`` and/or with ``dtype``: a copy where either changes, else
        the tensor itself (as PyTorch's ``to``); differentiable."""
        return _shape.to(self, *device_and_dtype(device, dtype))

    def long(self):
        """int64, the dtype of class labels (truncating toward zero, as in PyTorch)."""
        return self.to(dtype=DEFAULT_INT_DTYPE)

    def int(self):
        """int32 (truncating toward zero, as in PyTorch)."""
        return self.to(dtype=numpy.int32)

    def bool(self):
        """True where an element is nonzero (nan included, as in PyTorch)."""
        return self.to(dtype=numpy.bool_)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        """Zeros of ``size`` in this tensor's dtype and on its device, unless others are given."""
        return _creation.zeros(*size, dtype=self.dtype if dtype is None else dtype,
                               device=device or self.device, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        """Ones of ``size`` in this tensor's dtype and on its device, unless others are given."""
        return _creation.ones(*size, dtype=self.dtype if dtype is None else dtype,
                              device=device or self.device, requires_grad=requires_grad)

    def clone(self):
        return _shape.clone(self)

    # --- arithmetic -----------------------------------------------------------------------
    def __add__(self, other): return _ew.add(self, other)
    def __radd__(self, other): return _ew.add(other, self)
    def __sub__(self, other): return _ew.sub(self, other)
    def __rsub__(self, other): return _ew.sub(other, self)
    def __mul__(self, other): return _ew.mul(self, other)
    def __rmul__(self, other): return _ew.mul(other, self)
    def __truediv__(self, other): return _ew.div(self, other)
    def __rtruediv__(self, other): return _ew.div(other, self)
    def __pow__(self, other): return _ew.pow(self, other)
    def __rpow__(self, other): return _ew.pow(other, self)
    def __neg__(self): return _ew.neg(self)
    def __abs__(self): return _ew.abs(self)
    def __matmul__(self, other): return _linalg.matmul(self, other)
    def __rmatmul__(self, other): return _linalg.matmul(other, self)
    def __getitem__(self, index): return _shape.getitem(self, index)

    # No op writes into a tensor, so `x += y` makes the new tensor x + y and rebinds the name
    # (Python's fallback when __iadd__ answers NotImplemented). For a leaf that requires grad
    # that would leave the leaf behind: `w -= lr * w.grad` under no_grad would never update a
    # model's w. Refused in both grad modes: PyTorch refuses an in-place op on such a leaf
    # only outside no_grad, and writes into it under no_grad, which minilean's ops never do.
    def __iadd__(self, other): return self._not_in_place("+=")
    def __isub__(self, other): return self._not_in_place("-=")
    def __imul__(self, other): return self._not_in_place("*=")
    def __itruediv__(self, other): return self._not_in_place("/=")
    def __ipow__(self, other): return self._not_in_place("**=")
    def __imatmul__(self, other): return self._not_in_place("@=")

    def _not_in_place(self, operator):
        if self.requires_grad and self.grad_fn is None:
            raise RuntimeError(f"{operator} on a leaf tensor that requires grad would make a new "
                               f"tensor and leave the leaf unchanged (minilean has no in-place "
                               f"ops): update its .data, as the optimizers do")
        return NotImplemented

    # comparisons give plain boolean tensors (no gradient flows through them)
    def __lt__(self, other): return _ew.compare(self, other, "less")
    def __le__(self, other): return _ew.compare(self, other, "less_equal")
    def __gt__(self, other): return _ew.compare(self, other, "greater")
    def __ge__(self, other): return _ew.compare(self, other, "greater_equal")
    # ``t == other`` for an other that holds no numbers (None, text, a module) is a plain
    # False and ``!=`` True, as in PyTorch (both sides decline, and Python compares identity):
    # ``if t != None:`` asked the truth value of an elementwise answer, and ``t in items``,
    # ``items.index(t)`` and ``items.remove(t)`` compare t with each item, text among them
    def __eq__(self, other):
        return _ew.compare(self, other, "equal") if _ew.comparable(other) else NotImplemented

    def __ne__(self, other):
        return _ew.compare(self, other, "not_equal") if _ew.comparable(other) else NotImplemented
    __hash__ = object.__hash__

    # logic on bool (and integer) tensors, outside the graph as the comparisons are
    def __and__(self, other): return _ew.bitwise(self, other, "bitwise_and", "&")
    def __rand__(self, other): return _ew.bitwise(self, other, "bitwise_and", "&")
    def __or__(self, other): return _ew.bitwise(self, other, "bitwise_or", "|")
    def __ror__(self, other): return _ew.bitwise(self, other, "bitwise_or", "|")
    def __xor__(self, other): return _ew.bitwise(self, other, "bitwise_xor", "^")
    def __rxor__(self, other): return _ew.bitwise(self, other, "bitwise_xor", "^")
    def __invert__(self): return _ew.invert(self)

    def add(self, other): return _ew.add(self, other)
    def sub(self, other): return _ew.sub(self, other)
    def mul(self, other): return _ew.mul(self, other)
    def div(self, other): return _ew.div(self, other)
    def pow(self, exponent): return _ew.pow(self, exponent)
    def neg(self): return _ew.neg(self)
    def exp(self): return _ew.exp(self)
    def log(self): return _ew.log(self)
    def sqrt(self): return _ew.sqrt(self)
    def rsqrt(self): return _ew.rsqrt(self)
    def abs(self): return _ew.abs(self)
    def clamp(self, min=None, max=None): return _ew.clamp(self, min, max)
    clip = clamp
    def maximum(self, other): return _ew.maximum(self, other)
    def minimum(self, other): return _ew.minimum(self, other)
    def sin(self): return _ew.sin(self)
    def cos(self): return _ew.cos(self)
    def tanh(self): return _ew.tanh(self)
    def sigmoid(self): return _ew.sigmoid(self)
    def relu(self): return _ew.relu(self)
    def square(self): return _ew.mul(self, self)

    # --- reductions -----------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False): return _reduce.sum(self, dim, keepdim)
    def mean(self, dim=None, keepdim=False): return _reduce.mean(self, dim, keepdim)
    # keepdim and unbiased only by keyword: PyTorch's positional order is (dim, unbiased,
    # keepdim), so code ported with positional flags would silently swap them here
    def var(self, dim=None, *, keepdim=False, unbiased=True):
        return _reduce.var(self, _dim_not_flag(dim, "var"), keepdim=keepdim, unbiased=unbiased)
    def std(self, dim=None, *, keepdim=False, unbiased=True):
        return _reduce.std(self, _dim_not_flag(dim, "std"), keepdim=keepdim, unbiased=unbiased)
    def max(self, dim=None, keepdim=False): return _reduce.max(self, dim, keepdim)
    def min(self, dim=None, keepdim=False): return _reduce.min(self, dim, keepdim)
    def amax(self, dim=None, keepdim=False): return _reduce.amax(self, dim, keepdim)
    def amin(self, dim=None, keepdim=False): return _reduce.amin(self, dim, keepdim)
    def logsumexp(self, dim, keepdim=False): return _reduce.logsumexp(self, dim, keepdim)
    def softmax(self, dim): return _reduce.softmax(self, dim)
    def log_softmax(self, dim): return _reduce.log_softmax(self, dim)
    def argmax(self, dim=None, keepdim=False): return _reduce.argmax(self, dim, keepdim)
    def argmin(self, dim=None, keepdim=False): return _reduce.argmin(self, dim, keepdim)

    # --- shape ----------------------------------------------------------------------------
    def reshape(self, *shape): return _shape.reshape(self, shape_arg(shape))
    def view(self, *shape): return _shape.reshape(self, shape_arg(shape))
    def permute(self, *dims): return _shape.permute(self, shape_arg(dims))
    def transpose(self, dim0, dim1): return _shape.transpose(self, dim0, dim1)
    @property
    def T(self): return _shape.permute(self, tuple(reversed(range(self.ndim))))
    def squeeze(self, dim=None): return _shape.squeeze(self, dim)
    def unsqueeze(self, dim): return _shape.unsqueeze(self, dim)
    def expand(self, *shape): return _shape.expand(self, shape_arg(shape))
    def flatten(self, start_dim=0, end_dim=-1): return _shape.flatten(self, start_dim, end_dim)
    def chunk(self, chunks, dim=0): return _shape.chunk(self, chunks, dim)
    def split(self, split_size, dim=0): return _shape.split(self, split_size, dim)
    def matmul(self, other): return _linalg.matmul(self, other)


def _dim_not_flag(dim, name):
    """``dim``, refusing a bool: ``x.var(False)`` means unbiased=False in PyTorch, but a bool
    is an int in Python and would reduce over dim 0."""
    if isinstance(dim, bool):
        raise TypeError(f"{name}() takes dim first, got the bool {dim}: pass unbiased= and "
                        f"keepdim= by keyword")
    return dim


def device_and_dtype(device, dtype):
    """The arguments of a ``to`` (a tensor's, a module's) as (device, dtype): as in PyTorch, a
    dtype alone may come first, ``x.to(float64)``, and a tensor alone stands for its device
    and dtype, ``x.to(other)``. (A device is a string.)"""
    if isinstance(device, Tensor):
        if dtype is not None:  # PyTorch's to(other) takes no dtype either
            raise TypeError(f"to(other) takes other's device and dtype, got dtype={dtype} as "
                            f"well; pass other.device and the dtype")
        return device.device, device.dtype
    if dtype is None and device is not None and not isinstance(device, str):
        return None, device
    return device, dtype


def holds_numbers(value):
    """Whether ``value`` (a Tensor, an array, a number or a nested list) holds numbers or
    booleans, by its dtype or by the one NumPy reads it as (None and text read as objects)."""
    dtype = getattr(value, "dtype", None) or numpy.asarray(value).dtype
    return dtype.kind in "biuf"


def number_dtype(dtype, caller):
    """``dtype`` as a NumPy dtype, refused unless it holds numbers or booleans, as a tensor
    does: ``zeros(2, dtype=str)`` made a tensor of text, on which ``+ 1`` appended "1"."""
    dtype = numpy.dtype(dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"{caller} dtype must be a bool, integer or float dtype, got {dtype}")
    return dtype


def default_dtype(values):
    """PyTorch's dtype for Python numbers (or nested lists of them): DEFAULT_DTYPE when any is
    a float, DEFAULT_INT_DTYPE when all are ints (NumPy would pick float64, and a C long for
    ints), and NumPy's choice for the rest (bools). An int beyond int64 that NumPy would hold
    as uint64 or as a Python object is an error, as in PyTorch. (Beside smaller ints NumPy
    makes it a float64 first, and it becomes float32 here: finding it there would mean a
    Python walk over every list of floats.)"""
    kind = numpy.asarray(values).dtype.kind
    if kind in "uO":
        too_large = _int_beyond_int64(values)
        if too_large is not None:
            raise OverflowError(f"integer {too_large} does not fit int64, tensor()'s integer "
                                f"dtype; expected an int in [-2**63, 2**63), or a dtype "
                                f"given (float64, uint64)")
    return DEFAULT_DTYPE if kind == "f" else DEFAULT_INT_DTYPE if kind == "i" else None


def _int_beyond_int64(values):
    """The first Python int in ``values`` (nested lists and tuples) outside int64, or None."""
    if isinstance(values, (list, tuple)):
        return next((found for found in map(_int_beyond_int64, values) if found is not None),
                    None)
    if isinstance(values, int) and not -2**63 <= values < 2**63:
        return values
    return None


def is_int(value):
    """True for an integer, Python's or NumPy's (``isinstance(numpy.int64(0), int)`` is False),
    but not for a bool: where a dim or a size goes, a bool is a misplaced flag. (Two concrete
    types, not ``numbers.Integral``, whose abstract-class check, some 160 times a step, made the
    fast eager step's host time 3-5% longer: ``benchmarks/host_layer.py``.)"""
    return isinstance(value, (int, numpy.integer)) and not isinstance(value, bool)


def is_bool(value):
    """True for a bool, Python's or NumPy's: a flag given as text ("false", read from a
    command line) is truthy, so the flags of ``requires_grad``, ``train`` and the like take
    bools only."""
    return isinstance(value, (bool, numpy.bool_))


def dims_arg(dim):
    """One dim or a tuple (or list) of them, as a tuple of Python ints."""
    dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    if not all(is_int(axis) for axis in dims):
        raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
    return tuple(int(axis) for axis in dims)


def shape_arg(args):
    """Accept both ``x.reshape(2, 3)`` and ``x.reshape((2, 3))``."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


# The op modules import Tensor from here; importing them after the class is defined keeps
# that cycle harmless, and the methods above look them up when called.
from minilean.autograd import creation as _creation  # noqa: E402
from minilean.autograd import elementwise as _ew  # noqa: E402
from minilean.autograd import linalg as _linalg  # noqa: E402
from minilean.autograd import reduce as _reduce  # noqa: E402
from minilean.autograd import shape as _shape  # noqa: E402
