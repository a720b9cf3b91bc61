"""Elementwise ops: arithmetic with broadcasting, and the pointwise math functions.

Each class is one op, forward beside backward, its derivative in the docstring. Gradients
are returned in the broadcast output shape; the graph walk reduces them to each input's shape.
"""
import itertools
import numbers

import numpy

from minilean import backend
from minilean.autograd.function import Function, devices_differ, tensor_input
from minilean.autograd.tensor import DEFAULT_DTYPE, DEFAULT_INT_DTYPE, Tensor
from minilean.backend import array_module


def scalar_dtype(value, tensor_dtype):
    """The dtype of a Python (or NumPy) scalar ``value`` used with a tensor of ``tensor_dtype``,
    which is also their result's dtype (PyTorch's rule): the tensor's, except that a float with
    an integer or bool tensor gives the default float dtype (float32), and an int with a bool
    tensor gives int64. So ``arange(4) * 0.5`` is [0, 0.5, 1, 1.5], not four zeros.
    """
    if isinstance(value, bool):
        return tensor_dtype
    if isinstance(value, numbers.Integral):
        return DEFAULT_INT_DTYPE if tensor_dtype.kind == "b" else tensor_dtype
    return DEFAULT_DTYPE if tensor_dtype.kind in "biu" else tensor_dtype


def numbers_array(value, xp, operand="an operand"):
    """``value`` (a list, an array, not a Tensor) as an array of ``xp``, which must hold numbers
    or booleans, else a TypeError naming ``operand``: NumPy would make text or objects of it,
    and its ufuncs' errors name only the dtypes of their loops."""
    if value is None or isinstance(value, (str, bytes)):  # CuPy would refuse them its own way
        raise TypeError(f"{operand} must be a Tensor, an array or a number, got "
                        f"{type(value).__name__}")
    array = xp.asarray(value)
    if array.dtype.kind not in "biuf":
        held = "" if array.ndim == 0 else f" of {array.dtype}"
        raise TypeError(f"{operand} must be a Tensor, an array or a number, got "
                        f"{type(value).__name__}{held}")
    return array


def as_tensor(value, like):
    """Wrap a Python or NumPy scalar (or an array) as a constant tensor on ``like``'s device:
    a scalar in ``scalar_dtype(value, like.dtype)``, an array in ``like``'s dtype, or in its
    own where that is a wider kind of number (float beside integer or bool, integer beside
    bool: the op then promotes as it does two tensors).

    A scalar is filled in on the device rather than copied there: no host-device copy per
    ``x * 0.5``, which also keeps such constants legal inside a captured CUDA graph.
    Anything else that is not numbers (None, text) is a TypeError: converted straight to
    ``like``'s dtype, None became nan and ``'2'`` the number 2.
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Number):
        dtype = scalar_dtype(value, like.dtype)
        if dtype.kind in "iu" and not isinstance(value, bool):
            value = wrapped_integer(value, like.xp.iinfo(dtype))
        return Tensor._wrap(like.xp.full((), value, dtype=dtype), False)
    array = numbers_array(value, like.xp)
    if _KIND_RANKS[array.dtype.kind] > _KIND_RANKS[like.dtype.kind]:
        # floats beside an integer or bool tensor (or integers beside a bool one) keep their
        # dtype, and the op promotes as for two tensors: cast to like's, arange(4) * [0.5]
        # was [0, 0, 0, 0]
        return Tensor._wrap(array, False)
    return Tensor._wrap(array.astype(like.dtype, copy=False), False)


_KIND_RANKS = {"b": 0, "u": 1, "i": 1, "f": 2}


def wrapped_integer(value, info):
    """The integer ``value`` as an integer dtype of iinfo ``info`` stores it, modulo 2^bits,
    as PyTorch converts it (``uint8 + 300`` adds 44); NumPy refuses an out-of-range int.
    One that not even 64 bits hold (int64 or uint64) is refused, as PyTorch refuses it:
    wrapped, ``int64_tensor + 2**64`` added 0."""
    if info.min <= value <= info.max:
        return value
    if not -2**63 <= value < 2**64:
        raise OverflowError(f"integer {value} does not fit 64 bits, so it cannot be used with a "
                            f"tensor of {info.dtype}; expected an int in [-2**63, 2**64)")
    return (int(value) - info.min) % (info.max - info.min + 1) + info.min


def refuse_bool(name, *operands):
    """A TypeError naming op ``name`` where an operand is a bool tensor, as in PyTorch: NumPy
    would compute ``relu`` and ``1 - mask`` in int64 and ``mask @ mask`` as a logical or of
    ands."""
    for operand in operands:
        if isinstance(operand, Tensor) and operand.dtype.kind == "b":
            raise TypeError(f"{name} of a bool tensor is not supported (PyTorch refuses it "
                            f"too); convert it first, e.g. mask.to(dtype=minilean.float32), "
                            f"or use ~mask or ^ for logic")
    return operands


def as_dtype(tensor, dtype):
    """``tensor`` converted to ``dtype`` as a constant (only integer and bool tensors are ever
    converted here, and those never require gradients)."""
    if tensor.dtype == dtype:
        return tensor
    return Tensor._wrap(tensor.data.astype(dtype), False)


def promoted_for(tensor, value):
    """``tensor`` in the dtype of its result with ``value``: an integer or bool tensor used with
    a float scalar is converted to float32 itself, and with a float tensor to that tensor's
    dtype, since NumPy would compute int64 with float32 in float64 (PyTorch gives float32)."""
    if isinstance(value, numbers.Number):
        return as_dtype(tensor, scalar_dtype(value, tensor.dtype))
    if isinstance(value, Tensor) and tensor.dtype.kind in "biu" and value.dtype.kind == "f":
        return as_dtype(tensor, value.dtype)
    return tensor


def zero_dim_follows(a, b):
    """Two tensors, a 0-d one converted (differentiably) to the dtype of the other where that
    has dimensions and the same kind of number (both floats, or both integers): PyTorch
    ranks a 0-d tensor with the Python numbers there, so a float64 0-d tensor times a
    float32 tensor is float32 (NumPy: float64)."""
    for small, large in ((a, b), (b, a)):
        kind = _number_kind(small.dtype)
        if small.ndim == 0 and large.ndim and kind and kind == _number_kind(large.dtype):
            converted = small.to(dtype=large.dtype)
            return (converted, b) if small is a else (a, converted)
    return a, b


def _number_kind(dtype):
    """"float", "integer" (signed or not), or None for a bool."""
    return "float" if dtype.kind == "f" else "integer" if dtype.kind in "iu" else None


def as_tensors(a, b):
    """Both operands of a binary op as tensors, at least one of them already is one (two
    arrays, ``maximum(a, b)`` of NumPy batches, failed inside on an array's missing .xp)."""
    if not isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            raise TypeError(f"an operand must be a Tensor, got {type(a).__name__} and "
                            f"{type(b).__name__} (make one with ml.tensor(...))")
        b = promoted_for(b, a)
        return as_tensor(a, b), b
    if isinstance(b, Tensor):
        if a.data.dtype is b.data.dtype:  # the common case, decided without promotion rules
            return a, b
        a, b = zero_dim_follows(a, b)
        return promoted_for(a, b), promoted_for(b, a)
    a = promoted_for(a, b)
    return a, as_tensor(b, a)


def _binary(name, op, a, b, **params):
    """``op`` (the function ``name``) of ``a`` and ``b``, made tensors by ``as_tensors``."""
    # two tensors of one dtype (the common case) need no conversion, nor a look at float16
    if not (isinstance(a, Tensor) and isinstance(b, Tensor) and a.data.dtype is b.data.dtype):
        if _half_beside_a_number(a, b):
            return _binary(name, op, _float32(a), _float32(b), **params).to(dtype=HALF)
        a, b = as_tensors(a, b)
    return broadcasting(name, op, a, b, **params)


HALF = numpy.dtype(numpy.float16)


def _half_beside_a_number(a, b):
    """Whether one operand is a float16 tensor and the other a number, or a 0-d float tensor
    of another dtype, which PyTorch ranks with the numbers. PyTorch computes such an op in
    float32 and rounds the result to float16 once; the number rounded to float16 first gave
    ``half_x * 65536`` inf (65536 is past float16's largest, 65504) and ``half_x / 1e5``
    zeros (1e5 too), and a number such as 1e-5 lost digits (a subnormal in float16)."""
    if isinstance(a, Tensor) and a.data.dtype is HALF:
        half, other = a, b
    elif isinstance(b, Tensor) and b.data.dtype is HALF:
        half, other = b, a
    else:
        return False
    if isinstance(other, Tensor):
        return other.ndim == 0 and other.dtype.kind == "f" and other.dtype != HALF and half.ndim > 0
    return isinstance(other, numbers.Number) and not isinstance(other, bool)


def _float32(operand):
    """A float16 tensor converted (differentiably) to float32; anything else as it is."""
    if isinstance(operand, Tensor) and operand.dtype == HALF:
        return operand.to(dtype=numpy.float32)
    return operand


def broadcasting(name, op, a, b, *more_shapes, **params):
    """``op.apply(a, b, **params)``. Where the shapes of a and b (and ``more_shapes``, such as
    where's condition) do not broadcast together, NumPy's ValueError, which names neither the
    op nor the shapes, is replaced by one that does. Looked at only once the op has failed:
    the ``try`` costs nothing on the way through."""
    try:
        return op.apply(a, b, **params)
    except ValueError:
        check_broadcast(name, (a.shape, b.shape) + more_shapes)
        raise  # another ValueError: the op's own


def check_broadcast(name, shapes):
    """A ValueError naming op ``name`` and ``shapes`` where they do not broadcast together (an
    axis, counted from the last, with two sizes other than 1); called where NumPy's own error
    was raised, it takes that error's place."""
    for sizes in itertools.zip_longest(*(reversed(shape) for shape in shapes), fillvalue=1):
        if len(set(sizes) - {1}) > 1:
            listed = ", ".join(str(tuple(shape)) for shape in shapes)
            raise ValueError(f"{name}: shapes {listed} do not broadcast together (each axis, "
                             f"counted from the last, needs equal sizes or 1)") from None


# --- arithmetic ---------------------------------------------------------------------------

class Add(Function):
    """z = a + b;  dz/da = 1, dz/db = 1."""
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        return (grad if need_a else None), (grad if need_b else None)


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        return (grad if need_a else None), (-grad if need_b else None)


class Mul(Function):
    """z = a * b;  dz/da = b, dz/db = a."""
    @staticmethod
    def forward(ctx, a, b):
        if ctx.recording:
            ctx.a, ctx.b = a, b
        return a * b

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        return (grad * ctx.b if need_a else None), (grad * ctx.a if need_b else None)


class Div(Function):
    """z = a / b;  dz/da = 1/b, dz/db = -a/b^2 = -z/b."""
    keeps_output = True
    @staticmethod
    def forward(ctx, a, b):
        out = a / b
        if ctx.recording:
            ctx.b, ctx.out = b, out
        return out

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        grad_a = grad / ctx.b
        return (grad_a if need_a else None), (-grad_a * ctx.out if need_b else None)


class Pow(Function):
    """z = a ** b;  dz/da = b a^(b-1)  (0 where b = 0, since a^0 = 1: also at a = 0),
    dz/db = z log a  (log a taken as 0 where a is not > 0, nan included; so 0 there, but nan
    where z is inf or nan: a = 0 with b < 0, or a < 0 with a fractional b).

    a^(b-1) is the array library's pow, so x ** 0.5 has slope +inf at x = -0 and 0 at
    x = -inf (pow(-0, -0.5) = +inf, pow(-inf, -0.5) = 0), where PyTorch, computing a
    number exponent of +-0.5 through sqrt or rsqrt, gives -inf and nan (its pow with a
    tensor exponent gives minilean's)."""
    keeps_output = True
    @staticmethod
    def forward(ctx, a, b):
        out = integer_power(a, b) if b.dtype.kind == "i" and a.dtype.kind in "biu" else a ** b
        if ctx.recording:
            ctx.a, ctx.b, ctx.out = a, b, out
        return out

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        a, b = ctx.a, ctx.b
        xp = array_module(a)
        grad_a = grad_b = None
        if need_a:
            # where b = 0, a^(b-1) is taken as a^0 = 1, so the slope is b * 1 = 0 for every a
            # (a^-1 would be inf at a = 0, and 0 * inf = nan)
            grad_a = grad * b * a ** xp.where(b == 0, 0, b - 1)
        if need_b:
            grad_b = grad * ctx.out * xp.log(xp.where(a > 0, a, 1))
        return grad_a, grad_b


def integer_power(a, b):
    """a ** b of integer (or bool) ``a`` and signed integer ``b``, a negative exponent giving
    1 / a^n truncated toward zero: 1 for a = 1, +-1 for a = -1 (by n's parity), 0 otherwise,
    as PyTorch computes it and CuPy's power does on a GPU (its ``integral_power``). NumPy
    refuses every negative exponent ("Integers to negative integer powers are not allowed"),
    so ``tensor([2, 3]) ** tensor([-1, 2])`` gave [0, 9] on "cuda" and that error on the CPU."""
    xp = array_module(a)
    negative = b < 0
    out = a ** xp.where(negative, 0, b)  # a^0 = 1 at the negative exponents, replaced below
    reciprocal = xp.where(a == -1, 1 - 2 * (b & 1), a == 1)  # 1 / a^n truncated, n = -b
    return xp.where(negative, reciprocal, out).astype(out.dtype, copy=False)


class Neg(Function):
    """z = -a;  dz/da = -1."""
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


def add(a, b): return _binary("add", Add, a, b)
def sub(a, b): return _binary("sub", Sub, *refuse_bool("subtraction", a, b))
def mul(a, b): return _binary("mul", Mul, a, b)
def pow(a, b):
    if (isinstance(a, Tensor) and a.dtype.kind in "iu" and isinstance(b, numbers.Integral)
            and b < 0):  # not wrapped into the dtype as other integer scalars are
        raise ValueError(f"an integer tensor to the power {b}: integers to negative integer "
                         f"powers are not allowed (as in PyTorch); convert it to float first")
    if isinstance(a, Tensor) and a.dtype.kind == "b" and isinstance(b, bool):
        # PyTorch's bool: mask ** True is mask, mask ** False all True (x^1 = x, x^0 = 1)
        return Tensor._wrap(a.data.copy() if b else a.xp.ones_like(a.data), False)
    a, b = as_tensors(a, b)
    if a.dtype.kind == b.dtype.kind == "b":  # NumPy gives int8; one bool (mask ** 2) is fine
        refuse_bool("a bool exponent in the power", a)
    return broadcasting("pow", Pow, a, b)
def neg(a): return Neg.apply(a)


def div(a, b):
    """a / b; integer or bool operands are divided in float32, as in PyTorch (NumPy: float64)."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor) and a.data.dtype is b.data.dtype):
        # an integer or bool tensor beside a number goes to float32 before the number becomes
        # a tensor: made one in the tensor's dtype, it was wrapped first (uint8 / 256 divided
        # by 0)
        if isinstance(b, numbers.Number):
            a = floating(a)
        if isinstance(a, numbers.Number):
            b = floating(b)
        if _half_beside_a_number(a, b):
            return div(_float32(a), _float32(b)).to(dtype=HALF)
        a, b = as_tensors(a, b)
    if a.dtype.kind in "biu" and b.dtype.kind in "biu":
        a, b = as_dtype(a, DEFAULT_DTYPE), as_dtype(b, DEFAULT_DTYPE)
    return broadcasting("div", Div, a, b)


# --- pointwise functions ------------------------------------------------------------------

class Exp(Function):
    """y = e^x;  dy/dx = y."""
    keeps_output = True
    @staticmethod
    def forward(ctx, x):
        out = array_module(x).exp(x)
        if ctx.recording:
            ctx.out = out
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.out


class Log(Function):
    """y = ln x;  dy/dx = 1/x."""
    @staticmethod
    def forward(ctx, x):
        if ctx.recording:
            ctx.x = x
        return array_module(x).log(x)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.x


class Sqrt(Function):
    """y = sqrt(x);  dy/dx = 1 / (2 y)."""
    keeps_output = True
    @staticmethod
    def forward(ctx, x):
        out = array_module(x).sqrt(x)
        if ctx.recording:
            ctx.out = out
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad / (2 * ctx.out)


class Rsqrt(Function):
    """y = x^(-1/2);  dy/dx = -y^3 / 2."""
    keeps_output = True
    @staticmethod
    def forward(ctx, x):
        out = 1 / array_module(x).sqrt(x)
        if ctx.recording:
            ctx.out = out
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * (-0.5) * ctx.out ** 3


class Abs(Function):
    """y = |x|;  dy/dx = sign(x) (0 at 0, as in PyTorch; nan at nan, where PyTorch's sign is 0,
    so ``where(ok, abs(x), 0)`` with x nan outside ``ok`` gives a nan gradient there, as
    exp, log, sqrt and the rest do in both: mask the input, ``abs(where(ok, x, 0))``)."""
    @staticmethod
    def forward(ctx, x):
        if ctx.recording:
            ctx.x = x
        return array_module(x).abs(x)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        # sign(x) with nan at nan on both devices: CuPy's sign computes (x > 0) - (x < 0),
        # 0 at nan, where NumPy's is nan, so a GPU gave a 0 gradient where the CPU gave nan
        return grad * xp.where(xp.isnan(ctx.x), ctx.x, xp.sign(ctx.x))


class Clamp(Function):
    """y = min(max(x, low), high), either bound optional (y = high where low > high);
    dy/dx = [low <= x <= high] (1 at the bounds: PyTorch's choice). The bounds are inputs too
    (0-d constants when given as numbers), and each gets the gradient where y is that bound,
    as in PyTorch:  dy/dlow = [x < low < high],  dy/dhigh = [x > high or high < low].
    """
    @staticmethod
    def forward(ctx, x, *bounds, has_low=True, has_high=True):
        low = bounds[0] if has_low else None
        high = bounds[-1] if has_high else None
        if ctx.recording:
            ctx.x, ctx.low, ctx.high = x, low, high
        xp = array_module(x)
        # maximum and minimum, not clip: they carry a nan bound into the result on both
        # devices, as PyTorch's clamp does, where CuPy's clip kernel passes it over
        # (cupy/cupy#9031: clamp(x, min=nan) was x itself on a GPU)
        out = x if low is None else xp.maximum(x, low)
        return out if high is None else xp.minimum(out, high)

    @staticmethod
    def backward(ctx, grad):
        x, low, high = ctx.x, ctx.low, ctx.high
        needs = iter(ctx.needs_input_grad)  # x's, then low's and high's where given
        not_below = True if low is None else x >= low
        not_above = True if high is None else x <= high
        grads = [masked_gradient(grad, not_below & not_above) if next(needs) else None]
        if low is not None:
            below = x < low if high is None else (x < low) & (low < high)
            grads.append(masked_gradient(grad, below) if next(needs) else None)
        if high is not None:
            above = x > high if low is None else (x > high) | (high < low)
            grads.append(masked_gradient(grad, above) if next(needs) else None)
        return tuple(grads)


def masked_gradient(grad, mask):
    """``grad`` where ``mask`` holds, else 0: selected, not multiplied by the mask, so that an
    infinite ``grad`` where the mask is off gives 0, as in PyTorch, not inf * 0 = nan. (The
    common ``x.clamp(min=0).sqrt()`` or ``x.relu().sqrt()`` sends an inf from sqrt's slope at 0
    back to every clamped element, and a nan there reached every weight before it.)"""
    return backend.keep_where(mask, grad)


class PairExtremum(Function):
    """z = max(a, b) (or min(a, b) when not ``largest``);
    dz/da = [a wins] + [a = b] / 2,  dz/db = 1 - dz/da:
    the gradient goes to the winning input, split half/half on ties. Where a or b is nan, z is
    nan and a neither wins nor ties: b gets the gradient (PyTorch gives it whole to both)."""
    @staticmethod
    def forward(ctx, a, b, largest=True):
        xp = array_module(a)
        out = (xp.maximum if largest else xp.minimum)(a, b)
        if ctx.recording:
            ctx.a, ctx.b, ctx.largest = a, b, largest
        return out

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        a_wins = ctx.a > ctx.b if ctx.largest else ctx.a < ctx.b
        # 0.5 in grad's dtype: a Python 0.5 times a bool array is float64, and the gradient
        # of a float32 graph would go on in float64 from here
        share_a = a_wins + grad.dtype.type(0.5) * (ctx.a == ctx.b)
        share_b = 1 - share_a
        # a loser's 0 selected, not multiplied in: an infinite grad would make it nan
        return ((masked_gradient(grad, share_a != 0) * share_a if need_a else None),
                (masked_gradient(grad, share_b != 0) * share_b if need_b else None))


class Where(Function):
    """z = a where cond else b;  dz/da = cond, dz/db = not cond (cond is not differentiable)."""
    @staticmethod
    def forward(ctx, a, b, condition=None):
        if ctx.recording:
            ctx.condition = condition
        return array_module(a).where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        xp = array_module(grad)
        zero = xp.zeros((), dtype=grad.dtype)
        return ((xp.where(ctx.condition, grad, zero) if need_a else None),
                (xp.where(ctx.condition, zero, grad) if need_b else None))


class Sin(Function):
    """y = sin x;  dy/dx = cos x."""
    @staticmethod
    def forward(ctx, x):
        if ctx.recording:
            ctx.x = x
        return array_module(x).sin(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * array_module(grad).cos(ctx.x)


class Cos(Function):
    """y = cos x;  dy/dx = -sin x."""
    @staticmethod
    def forward(ctx, x):
        if ctx.recording:
            ctx.x = x
        return array_module(x).cos(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad * array_module(grad).sin(ctx.x)


class Tanh(Function):
    """y = tanh x;  dy/dx = 1 - y^2.  (NumPy's tanh saturates to +-1 without overflow.)"""
    keeps_output = True
    @staticmethod
    def forward(ctx, x):
        out = array_module(x).tanh(x)
        if ctx.recording:
            ctx.out = out
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * (1 - ctx.out * ctx.out)


def tail_accurate_sigmoid(x):
    """sigma(x) to full relative precision in both tails, without overflow:

        sigma(x) = e^min(x, 0) / (1 + e^-|x|),

    that is 1 / (1 + e) for x >= 0 and e / (1 + e) below, with e = e^-|x|. Both exponents are
    <= 0, so neither exponential overflows (+-inf give 1 and 0), and nothing cancels.
    The tanh form, (1 + tanh(x/2)) / 2, is faster (about 2x on NumPy) but rounds the left tail:
    1 + tanh(x/2) loses relative precision as x falls (44% off at x = -17 in float32) and
    cancels to 0 from x = -20 in float32 (-38 in float64), where sigma(x) ~ e^x is still far
    from 0: 100% off, and so is SiLU's x sigma(x); GELU's argument runs much further out.

    Written with one exp, e = e^-|x| <= 1: the numerator e^min(x, 0) is e where x <= 0 and 1
    where x > 0, that is max(e, [x > 0]) (NaN stays NaN). That is a third cheaper than a second
    exp of min(x, 0) (0.40 against 0.63 ms on (64, 16, 16, 24) float32, one thread), and much
    cheaper than NumPy's ``where`` on a mask of mixed signs. Computed in place in two fresh
    arrays. The CUDA kernels compute the same form, with a select (``tail_accurate_sigmoid``
    in minilean/cuda/activation_math.cuh)."""
    xp = array_module(x)
    denominator = xp.asarray(xp.abs(x))  # asarray: NumPy gives a scalar, not an array, for 0-d x
    xp.negative(denominator, out=denominator)
    xp.exp(denominator, out=denominator)
    # e^min(x, 0) = max(e, [x > 0]), the 0/1 of x > 0 made in x's dtype: a boolean operand
    # made NumPy's maximum cast it through a buffer, 2.2x the time of a float operand (0.40
    # against 0.18 ms on (64, 256, 72) float32)
    out = xp.greater(x, 0, out=xp.empty_like(denominator))
    xp.maximum(denominator, out, out=out)
    denominator += 1
    out /= denominator
    return out


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y)."""
    keeps_output = True
    @staticmethod
    def forward(ctx, x):
        out = tail_accurate_sigmoid(x)
        if ctx.recording:
            ctx.out = out
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.out * (1 - ctx.out)


class Softplus(Function):
    """y = log(1 + e^x);  dy/dx = sigma(x).

    Computed as max(x, 0) + log1p(e^-|x|): e^-|x| <= 1 cannot overflow, and log1p keeps the
    left tail, where y ~ e^x and log(1 + e^x) rounds to 0 from x = -17 in float32. The slope
    is sigma(x) itself, not the chain rule through the kinks of max and |x|, which gives 0
    instead of 1/2 at x = 0.
    """
    @staticmethod
    def forward(ctx, x):
        xp = array_module(x)
        out = xp.asarray(xp.abs(x))  # asarray: NumPy gives a scalar, not an array, for 0-d x
        xp.negative(out, out=out)
        xp.exp(out, out=out)
        xp.log1p(out, out=out)
        out += xp.maximum(x, 0)
        if ctx.recording:
            ctx.x = x
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * tail_accurate_sigmoid(ctx.x)


class Relu(Function):
    """y = max(x, 0);  dy/dx = [x > 0]: 0 at nan (y nan), as in the CUDA kernel; PyTorch passes
    the gradient through at nan. Where x <= 0 the gradient is 0 even if dy is infinite."""
    @staticmethod
    def forward(ctx, x):
        out = array_module(x).maximum(x, 0)
        if ctx.recording:
            ctx.positive = x > 0
        return out

    @staticmethod
    def backward(ctx, grad):
        return masked_gradient(grad, ctx.positive)


class LeakyRelu(Function):
    """y = x if x > 0 else s x;  dy/dx = 1 if x > 0 else s."""
    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        xp = array_module(x)
        positive = x > 0
        if ctx.recording:
            ctx.positive, ctx.negative_slope = positive, negative_slope
        return xp.where(positive, x, x * x.dtype.type(negative_slope))

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        return xp.where(ctx.positive, grad, grad * grad.dtype.type(ctx.negative_slope))


def silu_forward(x):
    """(x sigma(x), sigma(x)): SiLU, and the sigmoid its derivative reuses."""
    sigma = tail_accurate_sigmoid(x)
    return x * sigma, sigma


def silu_backward(x, sigma, grad):
    """grad * sigma (1 + x (1 - sigma)), built in place in one fresh array."""
    out = array_module(grad).asarray(1 - sigma)
    out *= x
    out += 1
    out *= sigma
    out *= grad
    return out


class Silu(Function):
    """y = x sigma(x);  dy/dx = sigma(x) (1 + x (1 - sigma(x)))."""
    @staticmethod
    def forward(ctx, x):
        out, sigma = silu_forward(x)
        if ctx.recording:
            ctx.x, ctx.sigma = x, sigma
        return out

    @staticmethod
    def backward(ctx, grad):
        return silu_backward(ctx.x, ctx.sigma, grad)


_SQRT_2_OVER_PI = 0.7978845608028654
_INV_SQRT_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


class Gelu(Function):
    """Exact:  y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2;  dy/dx = Phi(x) + x phi(x).
    Phi is computed as erfc(-x / sqrt 2) / 2: the sum 1 + erf cancels for x < 0 (1.4e-6 off
    relative at x = -3 in float32, 0 from x = -5.55, where x Phi(x) ~ -8e-8 is still a float32).

    Tanh approximation:  y = x (1 + tanh u) / 2 = x s,  s = sigma(2u),
    u = sqrt(2/pi) (x + 0.044715 x^3);  dy/dx = s + x s (1 - s) 2u',
    2u' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2). Computed through s, not 1 + tanh u: for x < -5
    that sum cancels in float32, and the gradient with it. In both forms y = x * gate, the
    gate being Phi(x) or s; forward keeps it for backward.
    """
    @staticmethod
    def forward(ctx, x, approximate="none"):
        if approximate == "tanh":
            gate = tail_accurate_sigmoid(2 * _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
        else:
            gate = backend.erfc(x * -_INV_SQRT_2)
            gate *= 0.5
        out = x * gate
        if ctx.recording:
            ctx.x, ctx.gate, ctx.approximate = x, gate, approximate
        return out

    @staticmethod
    def backward(ctx, grad):
        x, gate = ctx.x, ctx.gate
        if ctx.approximate == "tanh":
            slope = 2 * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return grad * (gate + x * gate * (1 - gate) * slope)
        density = _INV_SQRT_2PI * array_module(x).exp(-0.5 * x * x)
        return grad * (gate + x * density)


# --- the functional forms (PyTorch's names) -----------------------------------------------

def floating(x):
    """``x``, with an integer or bool tensor converted to the default float dtype (float32),
    for the ops whose values are real numbers (PyTorch's rule). Left to NumPy, ``exp`` of int64
    would be float64 and of bool float16, and the ops that write in place (sigmoid, silu,
    softplus) would fail with a casting error from inside NumPy."""
    if isinstance(x, Tensor) and x.dtype.kind in "biu":
        return as_dtype(x, DEFAULT_DTYPE)
    return x


def exp(x): return Exp.apply(floating(x))
def log(x): return Log.apply(floating(x))
def sqrt(x): return Sqrt.apply(floating(x))
def rsqrt(x): return Rsqrt.apply(floating(x))
def abs(x): return Abs.apply(*refuse_bool("abs", x))
def sin(x): return Sin.apply(floating(x))
def cos(x): return Cos.apply(floating(x))
def tanh(x): return Tanh.apply(floating(x))
def sigmoid(x): return Sigmoid.apply(floating(x))
def softplus(x): return Softplus.apply(floating(x))
def relu(x): return Relu.apply(*refuse_bool("relu", x))
def silu(x): return Silu.apply(floating(x))
def check_negative_slope(negative_slope):
    """leaky_relu's slope as a float: None became NumPy's float(None), NaN, and every negative
    input NaN without a word; a string was parsed ("0.1") or failed in NumPy's words."""
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"leaky_relu negative_slope must be a number, got {negative_slope!r}")
    return float(negative_slope)


def leaky_relu(x, negative_slope=0.01):
    # in float32 for integer and bool x: its slope in their dtype would be 0 (int(0.01))
    return LeakyRelu.apply(floating(x), negative_slope=check_negative_slope(negative_slope))


def check_gelu_approximate(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x, approximate="none"):
    check_gelu_approximate(approximate)
    return Gelu.apply(floating(x), approximate=approximate)


def clamp(x, min=None, max=None):
    """x limited to [min, max]; each bound a number or a tensor (broadcast with x), or None.
    The result's dtype is that of x with the bounds, as for a binary op (a float16 x with an
    int64 bound is float16). On an integer x, a number bound outside x's dtype is clipped to
    its range (``clamp(uint8, min=-1)`` leaves x as it is; PyTorch converts -1 to 255 there,
    and refuses ``max=300``)."""
    x = tensor_input(x, "clamp")
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    for bound in (min, max):  # first settle x's dtype: an integer x with a float bound is float
        x = as_tensors(x, bound)[0] if isinstance(bound, Tensor) else promoted_for(x, bound)
    bounds = [_clamp_bound(bound, x) for bound in (min, max) if bound is not None]
    return Clamp.apply(x, *bounds, has_low=min is not None, has_high=max is not None)


def _clamp_bound(bound, x):
    """A bound of ``clamp`` as a tensor in x's dtype's kind (see clamp)."""
    if isinstance(bound, Tensor):
        return as_tensors(x, bound)[1]
    if x.dtype.kind in "iu" and isinstance(bound, numbers.Integral) and not isinstance(bound,
                                                                                      bool):
        info = x.xp.iinfo(x.dtype)
        bound = min(max(int(bound), int(info.min)), int(info.max))
    return as_tensor(bound, x)


def maximum(a, b): return _binary("maximum", PairExtremum, a, b, largest=True)
def minimum(a, b): return _binary("minimum", PairExtremum, a, b, largest=False)


def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b``; differentiable in ``a`` and ``b``. Two
    numbers (``where(mask, 1.0, 0.0)``) take ``tensor``'s dtype for them, as in PyTorch, on
    the condition's device. A condition given as a list or a host array is put on the operands'
    device (CuPy's ``where`` takes only its own arrays); one on "cuda" with operands on the CPU
    is refused as two inputs on two devices are (NumPy's error would only say that a CuPy
    array cannot be converted)."""
    condition = condition.data if isinstance(condition, Tensor) else condition
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a, device=backend.device_of(condition))
    a, b = as_tensors(a, b)
    if a.device == "cpu" and backend.device_of(condition) == "cuda":
        raise devices_differ("where", a.device, "cuda")
    condition = a.xp.asarray(condition)
    if condition.dtype.kind != "b":  # as PyTorch: NumPy would take any nonzero as True
        raise TypeError(f"where's condition must be boolean, got {condition.dtype}; compare "
                        f"first, e.g. where(mask > 0, a, b)")
    return broadcasting("where", Where, a, b, condition.shape, condition=condition)


def comparable(value):
    """Whether ``==`` and ``!=`` compare a tensor with ``value`` elementwise: a Tensor, a
    number, an array, or a list or tuple (refused by ``compare`` unless it holds numbers); not
    None, text or any other object, which a tensor equals nowhere, as in PyTorch."""
    return not isinstance(value, (str, bytes)) and (
        isinstance(value, (Tensor, numbers.Number, list, tuple)) or hasattr(value, "dtype"))


def compare(a, b, name):
    """Elementwise comparison as a boolean tensor (outside the graph): ``name`` is NumPy's
    (less, equal, ...)."""
    return _unrecorded(a, b, name)


def bitwise(a, b, name, symbol):
    """``a & b``, ``a | b`` or ``a ^ b`` (``symbol``; ``name`` is NumPy's bitwise_and,
    bitwise_or or bitwise_xor) of bool or integer tensors, outside the graph as comparisons
    are: logic on masks, as in PyTorch. A float is refused, as PyTorch refuses it."""
    if not isinstance(b, (Tensor, numbers.Number)):
        b = Tensor._wrap(a.xp.asarray(b), False)
    if not (_is_logical(a) and _is_logical(b)):
        raise TypeError(f"{symbol} takes bool or integer operands, got {_kind_of(a)} and "
                        f"{_kind_of(b)}")
    return _unrecorded(a, b, name)


def invert(a):
    """``~a``: logical not of a bool tensor, bitwise not of an integer one (outside the
    graph, as in PyTorch)."""
    if not _is_logical(a):
        raise TypeError(f"~ takes a bool or integer tensor, got {a.dtype}")
    return Tensor._wrap(a.xp.invert(a.data), False)


def _is_logical(value):
    """Whether ``value`` (a tensor or a number) is bool or integer, the operands of logic."""
    if isinstance(value, Tensor):
        return value.dtype.kind in "biu"
    return isinstance(value, numbers.Integral)


def _kind_of(value):
    """A tensor's dtype, or a number's type, for an error message."""
    return value.dtype if isinstance(value, Tensor) else type(value).__name__


def _unrecorded(a, b, name):
    """NumPy's binary ufunc ``name`` of tensor ``a`` and ``b``, as a tensor outside the graph.
    Two tensors must be on one device, as for the other ops (CuPy's own error names neither
    device). A list or a host array is put on ``a``'s device first: CuPy's ufuncs take only
    its arrays and scalars, where NumPy would make an array of either."""
    if isinstance(b, Tensor):
        if b.device != a.device:
            raise devices_differ(name, a.device, b.device)
        b = b.data
    elif not isinstance(b, numbers.Number):
        b = numbers_array(b, a.xp, f"an operand of {name}")
    try:
        return Tensor._wrap(getattr(a.xp, name)(a.data, b), False)
    except ValueError:
        check_broadcast(name, (a.shape, getattr(b, "shape", ())))
        raise
