"""var and std, with and without Bessel's correction: their backward against an mpmath
vector-Jacobian product, and std's gradient where the standard deviation is 0.

    var(x) = sum_i (x_i - m)^2 / (n - c),  m = mean(x),  c = 1 (unbiased, the default) or 0;
    d var / dx_j = (2 / (n - c)) sum_i (x_i - m) (delta_ij - 1/n),
    d std / dx_j = (d var / dx_j) / (2 std),

the chain rule through the mean written out entry by entry (the engine's backward drops the
mean's terms, which sum to zero). Hypothesis draws x (R, n), R = 2..3, n = 2..6, reduced over
all of it, over each row or over each column, keepdim or not, and a seed for the upstream
gradient g; every example runs both corrections, and also reduces over each column without
keepdim: a reduced axis that is not the last, which the backward must put back in its own
place (the one reduction where dy's shape does not tell it). The engine's gradients, in
float64 and float32, must come back in x's dtype and shape and lie within a running error
bound (``proofs.running_error``) carried through the engine's own steps: the mean, x - m,
(g (2 / (n - c))) (x - m) for var; for std also the sum of squares, its root s and g / (2 s)
first. x - m carries ~ u |x| however small it is, so std's 1 / s magnifies it: std's
statement asks each reduced slice to spread over at least 2^-10 (max - min), which keeps s
clear of its own error (the check asks the bound to be finite). The replay's exact value must
equal the reference at 50 digits.

Where s = 0 the root has a kink. The engine's ``Std.backward`` defines the gradient there as 0
(PyTorch's choice), and takes that branch where its *computed* s is 0. Every x_i equal gives
that exactly: ``Var`` centres each slice about its first element, (x_i - x_1) - mean(x - x_1),
all exact zeros. (Centred about its mean, as it was before, a slice of equal float32 values
of 24 bits was not: the mean of n of them can round, n = 3 needing 26 bits, and then x - m
was +-u |x|, s ~ u |x| > 0 and the gradient g sign(x - m) / sqrt(n (n - c)) on every element,
not even a subgradient.) The statement draws any float32 values in [-4, 4]; its relaxed
strategy drops the equality, moving one element of each row by 2^-10, and finds a nonzero
gradient. For n = 1 with Bessel's correction the variance is 0/0: the engine's std is nan (as
NumPy's with ddof=1), and so is the gradient it returns, which the statement checks.
"""
import math

import mpmath
import numpy
from hypothesis import assume
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.gradients import backward_name, check_against_replay, upstream
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, mp_array, real_array, reals
from proofs.running_error import Carried

REDUCE = "minilean.autograd.reduce"
LEAST_SPREAD = 2.0 ** -10  # std's hypothesis: each reduced slice spreads at least this far


@st.composite
def _spread_inputs(draw, least_spread=0.0):
    """x (R, n) in [-4, 4], R = 2..3 (a column of one has no variance), n = 2..6, reduced over
    all (dim None), each row (dim -1) or each column (dim 0), keepdim or not; each slice of
    the drawn reduction and of the columns' spreading over at least ``least_spread``."""
    dim = draw(st.sampled_from([None, -1, 0]))
    x = real_array(draw, (draw(st.integers(2, 3)), draw(st.integers(2, 6))), -4, 4)
    assume(all(numpy.ptp(row) >= least_spread for axis in {dim, 0} for row in _slices(x, axis)))
    return {"x": x, "dim": dim, "keepdim": draw(st.booleans()),
            "seed": draw(st.integers(0, 2 ** 16))}


def _slices(values, dim):
    """The reduced slices of x (R, n) as rows, in the order of the output's elements."""
    if dim is None:
        return values.reshape(1, -1)
    return values.T if dim == 0 else values  # dim 0: (R, n) -> (n, R), a column per row


def _in_x_order(per_slice, x, dim):
    """Values listed slice by slice (``_slices``' order) as a flat list in x's element order."""
    values = numpy.asarray(per_slice, dtype=object)
    if dim == 0:  # (n slices, R) -> (R, n)
        return list(values.reshape(x.shape[::-1]).T.reshape(-1))
    return list(values)


def _output_shape(x, dim, keepdim):
    if dim is None:
        return (1, 1) if keepdim else ()
    if dim == 0:
        return (1, x.shape[1]) if keepdim else (x.shape[1],)
    return (x.shape[0], 1) if keepdim else (x.shape[0],)


def _reference(x, g, dim, correction, root):
    """J^T g of var (or std, ``root``) over each slice, entry by entry (module docstring)."""
    dx = []
    for row, grad in zip(_slices(mp_array(x), dim), mp_array(g).reshape(-1)):
        n = len(row)
        mean = mpmath.fsum(row) / n
        scale = 2 * grad / (n - correction)
        if root:
            scale /= 2 * mpmath.sqrt(mpmath.fsum((v - mean) ** 2 for v in row) / (n - correction))
        dx += [scale * mpmath.fsum((v - mean) * ((i == j) - mpmath.mpf(1) / n)
                                   for i, v in enumerate(row)) for j in range(n)]
    return _in_x_order(dx, x, dim)


def _replay(x, g, dim, correction, root, dtype):
    """The engine's steps on each slice: c = x - m as (x - x_1) - mean(x - x_1) (a sum, then
    / n); for std the root s = sqrt(sum c^2 / (n - c)) and g / (2 s) in g's place; then
    (g (2 / (n - c))) c, with 2 / (n - c) a Python float rounded to the dtype."""
    dx = []
    for row, grad in zip(_slices(Carried.array(x, dtype), dim),
                         Carried.array(g, dtype).reshape(-1)):
        divisor = len(row) - correction
        centered = Carried.centered(list(row))
        if root:
            grad = grad / (2 * (Carried.total([c * c for c in centered]) / divisor).sqrt())
        scale = grad * Carried.constant(mpmath.mpf(2) / divisor, dtype)
        dx += [scale * c for c in centered]
    return _in_x_order(dx, x, dim)


def _check_spread_backward(check, x, dim, keepdim, seed, root):
    # the drawn reduction, and over each column without keepdim on every example (module
    # docstring)
    for dim, keepdim in dict.fromkeys([(dim, keepdim), (0, False)]):
        g = upstream(seed, _output_shape(x, dim, keepdim))
        for unbiased, dtype in ((u, d) for u in (True, False) for d in ENGINE_DTYPES):
            tensor = engine(x, dtype, requires_grad=True)
            spread = tensor.std if root else tensor.var
            spread(dim, keepdim=keepdim, unbiased=unbiased).backward(engine(g, dtype))
            check_against_replay(check, tensor, _reference(x, g, dim, int(unbiased), root),
                                 _replay(x, g, dim, int(unbiased), root, dtype), dtype,
                                 f"{'std' if root else 'var'} dim {dim} keepdim {keepdim} "
                                 f"unbiased {unbiased} ({dtype.__name__})")


@statement(backward_name("var"), about=(f"{REDUCE}.var",), given=_spread_inputs())
def var_backward_matches_vjp(check, x, dim, keepdim, seed):
    """var's backward, unbiased and not: dx_j = (2 / (n - c)) sum_i g (x_i - m)
    (delta_ij - 1/n), over the drawn axes and over each column; bound: the engine's steps
    carried (running error)."""
    _check_spread_backward(check, x, dim, keepdim, seed, root=False)


@statement(backward_name("std"), about=(f"{REDUCE}.std",),
           given=_spread_inputs(least_spread=LEAST_SPREAD))
def std_backward_matches_vjp(check, x, dim, keepdim, seed):
    """std's backward, unbiased and not, each slice spreading over >= 2^-10: dx_j = (d var /
    dx_j) / (2 std), over the drawn axes and over each column; bound: the engine's steps
    carried (running error)."""
    _check_spread_backward(check, x, dim, keepdim, seed, root=True)


@st.composite
def _constant_rows(draw, moved=0.0):
    """x (R, n), R = 1..3 rows each of one float32 value in [-4, 4], n = 1..8 (2..8 where
    ``moved``: the last element of each row then moved by that much), reduced over each row,
    keepdim or not."""
    rows, width = draw(st.integers(1, 3)), draw(st.integers(2 if moved else 1, 8))
    row_values = draw(st.lists(reals(-4, 4), min_size=rows, max_size=rows))
    x = numpy.repeat(numpy.asarray(row_values, dtype=numpy.float64)[:, None], width, axis=1)
    x[:, -1] += moved
    return {"x": x, "keepdim": draw(st.booleans()), "seed": draw(st.integers(0, 2 ** 16))}


@statement(backward_name("std_zero_variance"), about=(f"{REDUCE}.std",),
           given=_constant_rows(), relaxed=_constant_rows(moved=2.0 ** -10),
           # pinned: rows of one element, 0/0 unbiased and a std of 0 without; three equal
           # float32 values whose float32 mean rounds
           examples=[{"x": numpy.asarray([[1.5], [-2.0]]), "keepdim": False, "seed": 1},
                     {"x": numpy.full((1, 3), float(numpy.float32(2.9054313))),
                      "keepdim": False, "seed": 1}])
def std_zero_variance_gradient_is_zero(check, x, keepdim, seed):
    """std where every x_i is equal: its gradient is 0 exactly (the engine's branch,
    PyTorch's choice), unbiased and not; n = 1 unbiased: nan (0/0)."""
    g = upstream(seed, _output_shape(x, -1, keepdim))
    for unbiased, dtype in ((u, d) for u in (True, False) for d in ENGINE_DTYPES):
        tensor = engine(x, dtype, requires_grad=True)
        with numpy.errstate(invalid="ignore", divide="ignore"):  # n = 1 unbiased: 0/0
            tensor.std(-1, keepdim=keepdim, unbiased=unbiased).backward(engine(g, dtype))
        what = f"std of equal values, unbiased {unbiased} ({dtype.__name__})"
        if unbiased and x.shape[1] == 1:
            check.holds(numpy.isnan(tensor.grad.numpy()).all(), f"{what}: n = 1 is not nan")
        else:
            check.close(tensor.grad, [0] * x.size, 0, what)


# --- mutants: broken backwards of var and std -----------------------------------------------

@mutant("var backward dividing by n whatever unbiased", f"{REDUCE}.Var.backward",
        caught_by=[backward_name("var"), backward_name("std")])
def var_backward_population_always(original):
    """Var.backward gives 2 (x_i - m) / n also for Bessel's variance (unbiased=True, the
    default), the correction kept in the forward and forgotten in the backward."""
    def backward(ctx, grad):
        count = ctx.centered.size // numpy.size(grad)  # the elements each variance summarises
        return original(ctx, grad) * (ctx.divisor / count)
    return backward


@mutant("var backward restoring the reduced axis as the last", f"{REDUCE}.Var.backward",
        caught_by=[backward_name("var"), backward_name("std")])
def var_backward_reduced_axis_last(original):
    """Var.backward gives dy its reduced axis back as the last one (dy[..., None]): right for a
    reduction over all axes or the last, but over the columns it pairs a column's dy with the
    row of the same number (or cannot broadcast). Std.backward goes through it too."""
    def backward(ctx, grad):
        scale = 2 / ctx.divisor if ctx.divisor else math.inf
        return (grad if ctx.keepdim else grad[..., None]) * scale * ctx.centered
    return backward


@mutant("var backward 0 for one element, unbiased", f"{REDUCE}.Var.backward",
        caught_by=[backward_name("std_zero_variance")])
def var_backward_zero_without_divisor(original):
    """Var.backward guards 2 / (n - c) at n - c = 0 with 0: one element, unbiased, gets
    gradient 0 where its variance and std are 0/0 (nan, as NumPy's with ddof=1)."""
    def backward(ctx, grad):
        return original(ctx, grad) if ctx.divisor else 0 * ctx.centered
    return backward


@mutant("var centred about its mean", f"{REDUCE}.Var.forward",
        caught_by=[backward_name("std_zero_variance")])
def var_centred_about_the_mean(original):
    """Var centres x about its mean, x - mean(x), not about its first element (the engine's
    former form): equal float32 values whose mean rounds give x - m = +-u |x|, a std ~u |x|
    and a gradient g sign(x - m) / sqrt(n (n - c)) at equal values, not 0."""
    def forward(ctx, x, axes=(), keepdim=False, correction=1):
        from minilean.autograd.reduce import _count
        centered = x - x.mean(axis=axes, keepdims=True)
        divisor = max(_count(x.shape, axes) - correction, 0)
        if ctx.recording:
            ctx.centered, ctx.axes, ctx.keepdim, ctx.divisor = centered, axes, keepdim, divisor
        return (centered * centered).sum(axis=axes, keepdims=keepdim) / divisor
    return forward


@mutant("std backward without sqrt's 1/2", f"{REDUCE}.Std.backward",
        caught_by=[backward_name("std")])
def std_backward_without_half(original):
    """Std.backward takes d sqrt(v) / dv as 1 / sqrt(v), not 1 / (2 sqrt(v)): twice the
    gradient."""
    return lambda ctx, grad: original(ctx, 2 * grad)


@mutant("std backward without its zero branch", f"{REDUCE}.Std.backward",
        caught_by=[backward_name("std_zero_variance")])
def std_backward_unguarded(original):
    """Std.backward divides by 2 std also where std = 0: g / 0 times x - m = 0 is nan, where
    the engine (and PyTorch) define the gradient as 0."""
    def backward(ctx, grad):
        from minilean.autograd.reduce import Var
        with numpy.errstate(invalid="ignore", divide="ignore"):
            return Var.backward(ctx, grad / (2 * ctx.out))
    return backward
