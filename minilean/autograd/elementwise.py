"""Elementwise ops: arithmetic with broadcasting, and the pointwise math functions.

Each class is one op, forward beside backward, its derivative in the docstring. Gradients
are returned in the broadcast output shape; the graph walk reduces them to each input's shape.
"""
import numbers

from minilean.autograd.function import Function
from minilean.autograd.tensor import Tensor
from minilean.backend import array_module


def as_tensor(value, like):
    """Wrap a Python or NumPy scalar (or an array) as a constant tensor with ``like``'s dtype
    and device.

    A scalar is filled in on the device rather than copied there: no host-device copy per
    ``x * 0.5``, which also keeps such constants legal inside a captured CUDA graph.
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Number):
        return Tensor._wrap(like.xp.full((), value, dtype=like.dtype), False)
    return Tensor._wrap(like.xp.asarray(value, dtype=like.dtype), False)


def _binary(op, a, b):
    if not isinstance(a, Tensor):
        a = as_tensor(a, b)
    return op.apply(a, as_tensor(b, a))


# --- arithmetic ---------------------------------------------------------------------------

class Add(Function):
    """z = a + b;  dz/da = 1, dz/db = 1."""
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return grad, (-grad if ctx.needs_input_grad[1] else None)


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
    """z = a ** b;  dz/da = b a^(b-1),  dz/db = z log a  (taken as 0 where a <= 0)."""
    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        if ctx.recording:
            ctx.a, ctx.b, ctx.out = a, b, out
        return out

    @staticmethod
    def backward(ctx, grad):
        need_a, need_b = ctx.needs_input_grad
        a, b = ctx.a, ctx.b
        grad_a = grad * b * a ** (b - 1) if need_a else None
        grad_b = None
        if need_b:
            xp = array_module(a)
            grad_b = grad * ctx.out * xp.log(xp.where(a > 0, a, 1))
        return grad_a, grad_b


class Neg(Function):
    """z = -a;  dz/da = -1."""
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


def add(a, b): return _binary(Add, a, b)
def sub(a, b): return _binary(Sub, a, b)
def mul(a, b): return _binary(Mul, a, b)
def div(a, b): return _binary(Div, a, b)
def pow(a, b): return _binary(Pow, a, b)
def neg(a): return Neg.apply(a)


# --- pointwise functions ------------------------------------------------------------------

class Exp(Function):
    """y = e^x;  dy/dx = y."""
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
    """y = |x|;  dy/dx = sign(x) (0 at 0, as in PyTorch)."""
    @staticmethod
    def forward(ctx, x):
        if ctx.recording:
            ctx.x = x
        return array_module(x).abs(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * array_module(grad).sign(ctx.x)


class Clamp(Function):
    """y = min(max(x, low), high);  dy/dx = 1 where low <= x <= high, else 0 (PyTorch's choice)."""
    @staticmethod
    def forward(ctx, x, low=None, high=None):
        xp = array_module(x)
        out = xp.clip(x, low, high)
        if ctx.recording:
            ctx.inside = (out == x)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.inside


class Maximum(Function):
    """z = max(a, b);  the gradient goes to the larger input, split half/half on ties."""
    @staticmethod
    def forward(ctx, a, b):
        out = array_module(a).maximum(a, b)
        if ctx.recording:
            ctx.a, ctx.b = a, b
        return out

    @staticmethod
    def backward(ctx, grad):
        share_a = (ctx.a > ctx.b) + 0.5 * (ctx.a == ctx.b)
        return grad * share_a, grad * (1 - share_a)


class Minimum(Function):
    """z = min(a, b);  the gradient goes to the smaller input, split half/half on ties."""
    @staticmethod
    def forward(ctx, a, b):
        out = array_module(a).minimum(a, b)
        if ctx.recording:
            ctx.a, ctx.b = a, b
        return out

    @staticmethod
    def backward(ctx, grad):
        share_a = (ctx.a < ctx.b) + 0.5 * (ctx.a == ctx.b)
        return grad * share_a, grad * (1 - share_a)


class Where(Function):
    """z = a where cond else b;  dz/da = cond, dz/db = not cond (cond is not differentiable)."""
    @staticmethod
    def forward(ctx, a, b, condition=None):
        if ctx.recording:
            ctx.condition = condition
        return array_module(a).where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        zero = xp.zeros((), dtype=grad.dtype)
        return xp.where(ctx.condition, grad, zero), xp.where(ctx.condition, zero, grad)


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
    @staticmethod
    def forward(ctx, x):
        out = array_module(x).tanh(x)
        if ctx.recording:
            ctx.out = out
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * (1 - ctx.out * ctx.out)


def stable_sigmoid(x):
    """1 / (1 + e^-x) without overflow: written through tanh, sigma(x) = (1 + tanh(x/2)) / 2.

    Computed in place in one fresh array (one allocation instead of four)."""
    xp = array_module(x)
    out = xp.asarray(x * 0.5)  # asarray: NumPy gives a scalar, not an array, for 0-d x
    xp.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def tail_accurate_sigmoid(x):
    """sigma(x) to full relative precision in both tails: with e = e^-|x| (which cannot
    overflow), sigma = 1 / (1 + e) for x >= 0 and e / (1 + e) below. (``stable_sigmoid``'s
    tanh form is faster but rounds the left tail: 1 + tanh(x/2) cancels to 0 for x < -17 in
    float32, harmless for SiLU, not where the argument runs far out, as GELU's does.)"""
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y)."""
    @staticmethod
    def forward(ctx, x):
        out = stable_sigmoid(x)
        if ctx.recording:
            ctx.out = out
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.out * (1 - ctx.out)


class Relu(Function):
    """y = max(x, 0);  dy/dx = [x > 0]."""
    @staticmethod
    def forward(ctx, x):
        out = array_module(x).maximum(x, 0)
        if ctx.recording:
            ctx.positive = x > 0
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.positive


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
    sigma = stable_sigmoid(x)
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


def _erf(xp, x):
    """erf on either backend: CuPy ships it; on the CPU SciPy's when installed, else the
    standard library's, one element at a time (exact but slow, fine for small models)."""
    if xp.__name__ == "cupy":
        from cupyx.scipy.special import erf
        return erf(x)
    try:
        from scipy.special import erf
    except ImportError:
        from math import erf
        return xp.vectorize(erf, otypes=[x.dtype])(x)
    return erf(x)


class Gelu(Function):
    """Exact:  y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2;  dy/dx = Phi(x) + x phi(x).

    Tanh approximation:  y = x (1 + tanh u) / 2 = x s,  s = sigma(2u),
    u = sqrt(2/pi) (x + 0.044715 x^3);  dy/dx = s + x s (1 - s) 2u',
    2u' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2). Computed through s, not 1 + tanh u: for x < -5
    that sum cancels in float32, and the gradient with it.
    """
    @staticmethod
    def forward(ctx, x, approximate="none"):
        xp = array_module(x)
        if approximate == "tanh":
            inner = tail_accurate_sigmoid(2 * _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            out = x * inner
        else:
            inner = 0.5 * (1 + _erf(xp, x * _INV_SQRT_2))
            out = x * inner
        if ctx.recording:
            ctx.x, ctx.inner, ctx.approximate = x, inner, approximate
        return out

    @staticmethod
    def backward(ctx, grad):
        x, inner = ctx.x, ctx.inner
        if ctx.approximate == "tanh":
            slope = 2 * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return grad * (inner + x * inner * (1 - inner) * slope)
        density = _INV_SQRT_2PI * array_module(x).exp(-0.5 * x * x)
        return grad * (inner + x * density)


# --- the functional forms (PyTorch's names) -----------------------------------------------

def exp(x): return Exp.apply(x)
def log(x): return Log.apply(x)
def sqrt(x): return Sqrt.apply(x)
def rsqrt(x): return Rsqrt.apply(x)
def abs(x): return Abs.apply(x)
def sin(x): return Sin.apply(x)
def cos(x): return Cos.apply(x)
def tanh(x): return Tanh.apply(x)
def sigmoid(x): return Sigmoid.apply(x)
def relu(x): return Relu.apply(x)
def silu(x): return Silu.apply(x)
def leaky_relu(x, negative_slope=0.01): return LeakyRelu.apply(x, negative_slope=negative_slope)


def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(x, approximate=approximate)


def clamp(x, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    return Clamp.apply(x, low=min, high=max)


def maximum(a, b): return _binary(Maximum, a, b)
def minimum(a, b): return _binary(Minimum, a, b)


def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b``; differentiable in ``a`` and ``b``."""
    like = a if isinstance(a, Tensor) else b
    condition = condition.data if isinstance(condition, Tensor) else condition
    return Where.apply(as_tensor(a, like), as_tensor(b, like), condition=condition)


def compare(a, b, name):
    """Elementwise comparison as a boolean tensor (outside the graph)."""
    b = b.data if isinstance(b, Tensor) else b
    return Tensor._wrap(getattr(a.xp, name)(a.data, b), False)
