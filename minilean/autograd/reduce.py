"""Reductions: sum, mean, var, std, amax, amin, max and min (PyTorch's: over one dim, the values
and their indices), logsumexp, softmax, log_softmax, argmax, argmin.

A reduction over ``dim`` (an int, a tuple of ints, or ``None`` for every axis) sends each
output gradient back to all the inputs it summarised, so each reduction's backward starts by
giving the gradient its size-1 axes back (``_keepdim_grad``) and broadcasting it over the
reduced axes (softmax and log_softmax keep their input's shape and need neither).
"""
import builtins
import collections
import math

from minilean.autograd.elementwise import as_dtype, floating, masked_gradient, maximum, minimum
from minilean.autograd.function import Function, tensor_input
from minilean.autograd.tensor import DEFAULT_INT_DTYPE, Tensor, dims_arg, is_int
from minilean.backend import array_module


def normalize_dims(dim, ndim):
    """``dim`` as a sorted tuple of non-negative axes (every axis for ``None``).

    A 0-d tensor accepts dim 0 or -1 and reduces nothing, as in PyTorch.
    """
    if dim is None:
        return tuple(range(ndim))
    dims = dims_arg(dim)
    if not dims:  # PyTorch reduces every axis there, NumPy none: either would be a surprise
        raise ValueError(f"dim {dim!r} names no axis; expected dim=None to reduce every axis, "
                         f"or the axes to reduce")
    rank = builtins.max(ndim, 1)
    for axis in dims:
        if not -rank <= axis < rank:
            raise ValueError(f"dim {axis} is out of range for a tensor with {ndim} dimensions")
    axes = sorted({axis % rank for axis in dims})
    if len(axes) != len(dims):
        raise ValueError(f"dim {dim} names the same axis twice")
    return tuple(axes) if ndim else ()


def _keepdim_grad(grad, axes, keepdim):
    """The output gradient with the reduced axes put back as size 1 (a view, no copy)."""
    if keepdim:
        return grad
    return array_module(grad).expand_dims(grad, axes)


def _count(shape, axes):
    """How many input elements each output element summarises."""
    count = 1
    for axis in axes:
        count *= shape[axis]
    return count


def widened(array):
    """``array`` in the dtype its sums accumulate in: float32 for float16 (a copy), as in
    PyTorch; any other array itself. In float16 a running total rounds small terms away, and
    a sum or a count of elements past 65,504 is inf: the mean of 70,000 values of 0.001 was
    70 / inf = 0, and that of 100,000 ones inf / inf = nan."""
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        return array.astype(array_module(array).float32)
    return array


def narrowed(array, dtype):
    """``array``, computed from ``widened`` arrays, back in ``dtype`` where ``widened`` would
    have changed that (float16); else itself, so float32 and float64 results stay as they
    were."""
    if dtype.kind == "f" and dtype.itemsize < 4:
        return array.astype(dtype)
    return array


def _spread(grad, ctx):
    """The output gradient broadcast back over the reduced axes to the input's shape (a view)."""
    grad = _keepdim_grad(grad, ctx.axes, ctx.keepdim)
    return array_module(grad).broadcast_to(grad, ctx.shape)


class Sum(Function):
    """y = sum_{i in axes} x_i;  dy/dx_i = 1: the gradient is broadcast back over the axes."""
    @staticmethod
    def forward(ctx, x, axes=(), keepdim=False):
        if ctx.recording:
            ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        return narrowed(widened(x).sum(axis=axes, keepdims=keepdim), x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return _spread(grad, ctx)


class Mean(Function):
    """y = (1/n) sum_{i in axes} x_i;  dy/dx_i = 1/n.  (float16 divided by n in float32:
    n itself may be past float16's largest number.)"""
    @staticmethod
    def forward(ctx, x, axes=(), keepdim=False):
        if ctx.recording:
            ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        total = widened(x).sum(axis=axes, keepdims=keepdim)
        return narrowed(total / _count(x.shape, axes), x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return _spread(narrowed(widened(grad) / _count(ctx.shape, ctx.axes), grad.dtype), ctx)


class Var(Function):
    """y = sum_i (x_i - m)^2 / (n - c),  m the mean, c = 1 if unbiased else 0;

    dy/dx_i = 2 (x_i - m) / (n - c)  (the terms through m sum to zero).

    Computed as x_i - m = (x_i - x_1) - mean(x - x_1), x_1 the first element of each reduced
    slice: the same number, but a slice of equal values gives exact zeros. Their mean itself
    can round (in float32, 3 x of a 24-bit x needs 26 bits), and x - m would then be +-u |x|,
    a variance of ~u^2 x^2, and a std whose gradient is g sign(x - m) / sqrt(n (n - c)) instead
    of 0. (Shifting by a sample also keeps the centring accurate for data far from 0.)
    float16 is computed in float32 (``widened``), and so is its gradient.
    """
    @staticmethod
    def forward(ctx, x, axes=(), keepdim=False, correction=1):
        wide = widened(x)
        first = tuple(slice(0, 1) if axis in axes else slice(None) for axis in range(x.ndim))
        shifted = wide - wide[first]
        centered = shifted - shifted.mean(axis=axes, keepdims=True)
        divisor = builtins.max(_count(x.shape, axes) - correction, 0)
        out = (centered * centered).sum(axis=axes, keepdims=keepdim) / divisor
        if ctx.recording:
            ctx.centered, ctx.axes, ctx.keepdim, ctx.divisor = centered, axes, keepdim, divisor
        return narrowed(out, x.dtype)

    @staticmethod
    def backward(ctx, grad):
        wide = widened(_keepdim_grad(grad, ctx.axes, ctx.keepdim))
        scale = 2 / ctx.divisor if ctx.divisor else math.inf  # one element, unbiased: nan
        return narrowed(wide * scale * ctx.centered, grad.dtype)


class Std(Function):
    """y = sqrt(v), v the variance (``Var``);  dy/dx_i = (dv/dx_i) / (2 y).

    Where y = 0 (every x_i equal) the root has a kink; its gradient there is taken as 0, as in
    PyTorch, instead of the nan that sqrt's infinite slope times dv/dx = 0 would give.
    float16 takes the root of the float32 variance, rounded once, and its gradient is computed
    in float32: a float16 variance is subnormal below 6.1e-5 (a std below 0.0078) and keeps
    few digits there (the std of 1e-4 * [1, -1, 2, -2] was 2.4e-4, not 1.8e-4).
    """
    keeps_output = True
    @staticmethod
    def forward(ctx, x, axes=(), keepdim=False, correction=1):
        wide_variance = Var.forward(ctx, widened(x), axes, keepdim, correction)
        out = array_module(x).sqrt(wide_variance)
        if ctx.recording:
            ctx.out = out
        return narrowed(out, x.dtype)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        positive, wide = ctx.out > 0, widened(grad)
        grad_variance = xp.where(positive, wide / (2 * xp.where(positive, ctx.out, 1)), 0)
        return narrowed(Var.backward(ctx, grad_variance), grad.dtype)


class Extremum(Function):
    """y = max_{i in axes} x_i (or min);  dy/dx_i = [x_i = y] / #{j : x_j = y}.

    Ties share the gradient equally (as ``torch.amax``), so the gradient still sums to one.
    A slice holding nan has y = nan, which no x_i equals: its gradient is 0/0 = nan throughout,
    as ``torch.amax`` (``torch.max`` without a dim sends it to the nans).
    For float16 the ties are counted in float32 (``widened``): from 2,049 they are not exact.
    An infinite or nan dy reaches only the x_i that share it: elsewhere the share is 0, and
    the gradient 0 (as PyTorch's ``max``; ``torch.amax`` multiplies, inf * 0 = nan there).
    """
    @staticmethod
    def forward(ctx, x, axes=(), keepdim=False, largest=True):
        out = (x.max if largest else x.min)(axis=axes, keepdims=True)
        if ctx.recording:
            hits = widened((x == out).astype(x.dtype))
            ctx.share = hits / hits.sum(axis=axes, keepdims=True)
            ctx.axes, ctx.keepdim = axes, keepdim
        return out if keepdim else out.squeeze(axis=axes)

    @staticmethod
    def backward(ctx, grad):
        # selected, not multiplied by the share: an infinite dy (sqrt's slope at 0 after the
        # max) made inf * 0 = nan at every element that is not the maximum
        kept = masked_gradient(_keepdim_grad(grad, ctx.axes, ctx.keepdim), ctx.share != 0)
        return narrowed(kept * ctx.share, grad.dtype)


def _shifted_exp(x, axis):
    """exp(x - max x) and the max, the shift that keeps exp from overflowing.

    softmax and logsumexp are unchanged by subtracting a constant along ``axis``; after the
    shift the largest exponent is 0, so nothing overflows and at least one term is 1.
    An all -inf slice has max -inf; shifting by 0 there keeps its logsumexp -inf instead of
    the nan of -inf - (-inf); its softmax and log_softmax are nan all the same (0/0, and
    -inf - log 0), as in PyTorch (attention masks such a row itself: ``attention_weights``).
    The shift is 0 also for a slice holding +inf: its softmax is then inf/inf = nan at the
    +infs and 0 elsewhere (the limit is 1 and 0), and log_softmax nan and -inf, its gradient
    finite off the +infs; PyTorch's x - max x is nan there, and its softmax and gradients nan
    throughout.
    Over an empty axis (attention with no keys) the max has no value and nothing can overflow:
    the shift is 0, so a softmax over no terms is empty and their logsumexp is -inf.
    """
    xp = array_module(x)
    if x.size == 0:
        peak = x.sum(axis=axis, keepdims=True)  # zeros in the shape max would have
    else:
        peak = x.max(axis=axis, keepdims=True)
        peak = xp.where(xp.isfinite(peak), peak, 0)
    return xp.exp(x - peak), peak


class LogSumExp(Function):
    """y = log sum_i e^{x_i};  dy/dx_i = e^{x_i - y} (the softmax).  (float16 in float32.)"""
    keeps_output = True
    @staticmethod
    def forward(ctx, x, axes=(), keepdim=False):
        dtype, x = x.dtype, widened(x)
        exps, peak = _shifted_exp(x, axes)
        out = array_module(x).log(exps.sum(axis=axes, keepdims=True)) + peak
        if ctx.recording:
            ctx.x, ctx.out, ctx.axes, ctx.keepdim = x, out, axes, keepdim
        return narrowed(out if keepdim else out.squeeze(axis=axes), dtype)

    @staticmethod
    def backward(ctx, grad):
        kept = _keepdim_grad(grad, ctx.axes, ctx.keepdim)
        return narrowed(kept * array_module(grad).exp(ctx.x - ctx.out), grad.dtype)


class Softmax(Function):
    """y_i = e^{x_i} / sum_j e^{x_j};  dy_i/dx_k = y_i ([i = k] - y_k),

    so the vector-Jacobian product is dx = y * (g - sum_j g_j y_j).
    float16 is computed in float32 (``widened``), and so is its gradient.
    """
    keeps_output = True
    @staticmethod
    def forward(ctx, x, axis=-1):
        exps, _ = _shifted_exp(widened(x), axis)
        out = exps / exps.sum(axis=axis, keepdims=True)
        if ctx.recording:
            ctx.out, ctx.axis = out, axis
        return narrowed(out, x.dtype)

    @staticmethod
    def backward(ctx, grad):
        out, wide = ctx.out, widened(grad)
        return narrowed(out * (wide - (wide * out).sum(axis=ctx.axis, keepdims=True)),
                        grad.dtype)


class LogSoftmax(Function):
    """y_i = x_i - log sum_j e^{x_j};  dy_i/dx_k = [i = k] - softmax_k,

    so the vector-Jacobian product is dx = g - softmax * sum_j g_j.
    float16 is computed in float32 (``widened``), and so is its gradient.
    """
    keeps_output = True
    @staticmethod
    def forward(ctx, x, axis=-1):
        dtype, x = x.dtype, widened(x)
        exps, peak = _shifted_exp(x, axis)
        # (x - peak) first: adding the log of the sum to a huge peak would round it away
        out = (x - peak) - array_module(x).log(exps.sum(axis=axis, keepdims=True))
        if ctx.recording:
            ctx.out, ctx.axis = out, axis
        return narrowed(out, dtype)

    @staticmethod
    def backward(ctx, grad):
        softmax, wide = array_module(grad).exp(ctx.out), widened(grad)
        return narrowed(wide - softmax * wide.sum(axis=ctx.axis, keepdims=True), grad.dtype)


# --- the functional forms (PyTorch's names) -----------------------------------------------

def sum(x, dim=None, keepdim=False):
    x = tensor_input(x, "sum")
    if x.dtype.kind == "u" and x.dtype.itemsize < 8:  # PyTorch's int64, not NumPy's uint64
        x = as_dtype(x, DEFAULT_INT_DTYPE)
    return Sum.apply(x, axes=normalize_dims(dim, x.ndim), keepdim=keepdim)


# mean, var, std, logsumexp, softmax and log_softmax of an integer or bool tensor are computed
# in float32, as PyTorch's logsumexp does (its others refuse such tensors), not in NumPy's
# float64: see ``floating``.
def mean(x, dim=None, keepdim=False):
    x = tensor_input(x, "mean")
    return Mean.apply(floating(x), axes=normalize_dims(dim, x.ndim), keepdim=keepdim)


def var(x, dim=None, *, keepdim=False, unbiased=True):
    """Variance with Bessel's correction (divide by n - 1) unless ``unbiased=False``.

    ``keepdim`` and ``unbiased`` only by keyword: PyTorch's positional order is (dim, unbiased,
    keepdim), so positional flags ported from it would silently mean the other one here."""
    x = tensor_input(x, "var")
    return Var.apply(floating(x), axes=normalize_dims(dim, x.ndim), keepdim=keepdim,
                     correction=int(bool(unbiased)))


def std(x, dim=None, *, keepdim=False, unbiased=True):
    """Standard deviation, the square root of ``var``."""
    x = tensor_input(x, "std")
    return Std.apply(floating(x), axes=normalize_dims(dim, x.ndim), keepdim=keepdim,
                     correction=int(bool(unbiased)))


def amax(x, dim=None, keepdim=False):
    """The largest values over ``dim`` (an int, a tuple of ints, or None for all), as
    ``torch.amax``: values only, the gradient shared among ties."""
    x = tensor_input(x, "amax")
    return _extreme_values(x, dim, keepdim, largest=True)


def amin(x, dim=None, keepdim=False):
    """The smallest values over ``dim``, as ``torch.amin`` (see ``amax``)."""
    x = tensor_input(x, "amin")
    return _extreme_values(x, dim, keepdim, largest=False)


def _extreme_values(x, dim, keepdim, largest):
    axes = normalize_dims(dim, x.ndim)
    empty = [axis for axis in axes if x.shape[axis] == 0]
    if empty:  # NumPy's words name neither the op nor the dim
        raise ValueError(f"{'max' if largest else 'min'} over dim {empty[0]}, which has size 0: "
                         f"an empty slice has no extreme value")
    return Extremum.apply(x, axes=axes, keepdim=keepdim, largest=largest)


# what max and min over one dim return, as PyTorch's torch.return_types.max
ValuesAndIndices = collections.namedtuple("ValuesAndIndices", ["values", "indices"])


def max(x, dim=None, keepdim=False):
    """As ``torch.max``: the largest value of all (no ``dim``); over one int ``dim``, the pair
    (values, indices) of the largest entries and where they are (the first among ties), so
    that ``_, predicted = logits.max(1)`` works; with a tensor, the elementwise ``maximum``.
    The values' gradient is shared among ties, as ``amax``'s (PyTorch's goes to the index)."""
    x = tensor_input(x, "max")
    return _extremum(x, dim, keepdim, largest=True)


def min(x, dim=None, keepdim=False):
    """As ``torch.min``: the mirror image of ``max``."""
    x = tensor_input(x, "min")
    return _extremum(x, dim, keepdim, largest=False)


def _extremum(x, dim, keepdim, largest):
    name = "max" if largest else "min"
    if isinstance(dim, Tensor):
        if keepdim:
            raise TypeError(f"{name} of two tensors is elementwise: it takes no keepdim")
        return (maximum if largest else minimum)(x, dim)
    if dim is None:
        return _extreme_values(x, None, keepdim, largest)
    if not is_int(dim):
        raise TypeError(f"{name} takes one int dim (as in PyTorch), got {dim!r}; a{name} "
                        f"reduces over several")
    values = _extreme_values(x, dim, keepdim, largest)
    return ValuesAndIndices(values, _arg_extremum(x, dim, keepdim, "arg" + name))


def logsumexp(x, dim, keepdim=False):
    x = tensor_input(x, "logsumexp")
    return LogSumExp.apply(floating(x), axes=normalize_dims(dim, x.ndim), keepdim=keepdim)


def _one_axis(dim, ndim):
    if not is_int(dim):
        raise TypeError(f"dim must be a single int here, got {dim!r}")
    axes = normalize_dims(dim, ndim)  # () for a 0-d tensor, after checking the range there too
    return axes[0] if axes else None


def softmax(x, dim):
    x = tensor_input(x, "softmax")
    return Softmax.apply(floating(x), axis=_one_axis(dim, x.ndim))


def log_softmax(x, dim):
    x = tensor_input(x, "log_softmax")
    return LogSoftmax.apply(floating(x), axis=_one_axis(dim, x.ndim))


def _arg_extremum(x, dim, keepdim, name):
    """Indices of the max/min (int64, outside the graph); over the flattened tensor for None.
    Over an empty dim (or of an empty tensor, for None) there is no position to give: refused
    naming it, as the values over one are (NumPy's "attempt to get argmax of an empty
    sequence" named neither the op's dim nor the shape)."""
    xp = x.xp
    if dim is None and x.data.size == 0:
        raise ValueError(f"{name} of an empty tensor of shape {x.shape}: no element has a "
                         f"position to give")
    if dim is None:
        index = getattr(xp, name)(x.data.reshape(-1))  # (...) -> (size,): one flat index
        shape = (1,) * x.ndim if keepdim else ()
        # () -> (1, ..., 1) with keepdim, else stays ()
        return Tensor._wrap(xp.asarray(index, dtype=xp.int64).reshape(shape), False)
    axis = _one_axis(dim, x.ndim)
    if axis is not None and x.shape[axis] == 0:
        raise ValueError(f"{name} over dim {dim}, which has size 0: an empty slice has no "
                         f"extreme position")
    index = getattr(xp, name)(x.data, axis=axis).astype(xp.int64, copy=False)
    if keepdim and axis is not None:
        index = xp.expand_dims(index, axis)
    return Tensor._wrap(index, False)


def argmax(x, dim=None, keepdim=False):
    x = tensor_input(x, "argmax")
    return _arg_extremum(x, dim, keepdim, "argmax")


def argmin(x, dim=None, keepdim=False):
    x = tensor_input(x, "argmin")
    return _arg_extremum(x, dim, keepdim, "argmin")
