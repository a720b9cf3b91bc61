"""The elementwise ops' forward values agree with mpmath: y = f(x) to a stated rounding bound.

autograd.py checks each op's gradient against mpmath.diff of its definition, but not the
value the op returns. Most backwards recompute from the input (gelu, silu, softplus, leaky_relu,
sin, log, ...) or give an output-free selection, so a slip in the forward alone passed every
statement there: ``Gelu.forward`` scaled by 0.5 would train the MAE on another function, and
sigmoid written as sigma(-x) keeps the backward's s (1 - s) right. Here each op's value, in
float64 and float32, is compared with its 50-digit mpmath value, elementwise, within

    bound = gamma_K * M + underflow(K) * (1 + |x|),

where K counts the roundings on the longest path of the op's forward formula and M is the
first-order magnitude they scale (the value itself where the formula has no cancellation,
written next to each op). Library calls count ``library_roundings(dtype)`` = L (NumPy's
own ulp tolerances for exp, log, tanh, sin, cos, pow: 4 ulp in float32, 2 in float64,
``numerics.py``); log1p, which NumPy's accuracy tests do not list, counts one L like log
(measured worst 2.7 u in float32, 1.05 u in float64, NumPy 2.4); erfc, SciPy's, counts
``erfc_roundings`` (below). The output must also keep the input's dtype and shape.

Every example runs each op on 1-6 elements drawn from its whole range (|x| up to 100 for the
activations: sigmoid, softplus and tanh past e^x's float32 range, 88.7, where a textbook
formula overflows), from [-1, 1] (near 0, where a sum such as e^x - e^-x cancels) and from a
few points of each op's regimes (0, its kinks, the tails), so the draws reach them often; each
op also pins an example of those regimes. The selections (abs, neg, relu, maximum, minimum,
where, clamp) are exact: bound 0, bit for bit.
"""
from dataclasses import dataclass

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, library_roundings, mp, reals, underflow

ELEMENTWISE = "minilean.autograd.elementwise"
FUNCTIONAL = "minilean.nn.functional"

# SciPy's erfc (the gelu gate's, backend.erfc), which NumPy's accuracy tests do not cover:
# Cephes documents a peak relative error of 5.7e-14 over [0, 26.6] (its far tail, beyond
# gelu's arguments |x| / sqrt 2 <= 8.5); measured over 100,000 float32 arguments in [-9, 9]
# (SciPy 1.17) its float64 worst is 13.2 u, so 16 ulp = 32 roundings are assumed in float64;
# in float32 SciPy evaluates in float64 and rounds once (measured 0.99 u), counted as L.
ERFC_ULPS = {numpy.dtype(numpy.float32): 4, numpy.dtype(numpy.float64): 16}


def erfc_roundings(dtype):
    return 2 * ERFC_ULPS[numpy.dtype(dtype)]


@dataclass
class ForwardCase:
    """One op's forward: how to call it, its value in mpmath, where to draw it, its bound.

    ``definition(*values, **extra)`` and ``bound(*values, dtype, **extra)`` take one element of
    each input (mpf); ``bound`` gives (K, M): the value is within gamma_K M + underflow(K)
    (1 + max |input|) of the definition."""
    name: str
    about: str
    call: object
    definition: object
    inputs: object      # strategy of a tuple of float64 arrays of one length
    bound: object
    formula: str
    pinned: tuple = ()
    parameter: object = None


def _pin(*inputs, parameter=None):
    return {"inputs": tuple(numpy.asarray(x, dtype=numpy.float64) for x in inputs),
            "parameter": parameter}


def _elements(low, high, regimes=()):
    """One element: anywhere in [low, high], in [-1, 1] (within the range), or one of the
    ``regimes`` points."""
    choices = [reals(low, high), reals(max(low, -1.0), min(high, 1.0))]
    if regimes:
        choices.append(st.sampled_from([float(numpy.float32(p)) for p in regimes]))
    return st.one_of(*choices)


def _unary_inputs(low, high, regimes=()):
    return st.lists(_elements(low, high, regimes), min_size=1, max_size=6).map(
        lambda xs: (numpy.asarray(xs),))


def _binary_inputs(first, second):
    """Two inputs of one length 1-6, elements from the strategies ``first`` and ``second``."""
    return st.lists(st.tuples(first, second), min_size=1, max_size=6).map(
        lambda rows: (numpy.asarray([a for a, _ in rows]), numpy.asarray([b for _, b in rows])))


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _phi(x):
    return mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)


def _normal_cdf(x):
    return mpmath.erfc(-x / mpmath.sqrt(2)) / 2


GELU_TANH_C = mpmath.mpf(0.044715)


def _gelu_tanh_argument(x):
    """w = 2 sqrt(2/pi) (x + a x^3): the engine's s = sigma(w) = (1 + tanh(w / 2)) / 2."""
    return 2 * mpmath.sqrt(2 / mpmath.pi) * (x + GELU_TANH_C * x ** 3)


L = library_roundings

# (name, about, engine call, mpmath value, element strategy, bound(dtype, x, y) -> (K, M),
#  formula, pinned inputs)
UNARY = [
    ("exp", f"{ELEMENTWISE}.exp", lambda m, x: m.exp(x), mpmath.exp,
     _elements(-80, 80, (-80, -50, 0, 20, 50, 80)), lambda dtype, x, y: (L(dtype), y),
     "one exp (L) relative to e^x; |x| <= 80 keeps e^x a normal float32",
     [-80.0, -0.5, 0.0, 50.0, 80.0]),
    ("log", f"{ELEMENTWISE}.log", lambda m, x: m.log(x), mpmath.log,
     _elements(1e-30, 1e30, (1e-30, 1e-6, 0.5, 1, 1 + 2 ** -23, 2, 1e30)),
     lambda dtype, x, y: (L(dtype), abs(y)),
     "one log (L) relative to log x, also next to x = 1 (NumPy's log holds its ulp there)",
     [1e-6, 0.5, 1.0, 1.0 + 2 ** -23, 1e30]),
    ("sqrt", f"{ELEMENTWISE}.sqrt", lambda m, x: m.sqrt(x), mpmath.sqrt,
     _elements(0, 1e30, (0, 1e-30, 2, 1e30)), lambda dtype, x, y: (1, y),
     "sqrt, correctly rounded (1)", [0.0, 1e-30, 0.25, 2.0]),
    ("rsqrt", f"{ELEMENTWISE}.rsqrt", lambda m, x: m.rsqrt(x), lambda x: 1 / mpmath.sqrt(x),
     _elements(1e-30, 1e30, (1e-30, 1e-20, 2, 1e30)), lambda dtype, x, y: (2, y),
     "1 / sqrt x: sqrt (1), the division (1)", [1e-20, 0.25, 2.0, 1e30]),
    ("abs", f"{ELEMENTWISE}.abs", lambda m, x: m.abs(x), abs, _elements(-100, 100, (0,)),
     lambda dtype, x, y: (0, 0), "exact", [-1.5, 0.0, 2.0]),
    ("neg", f"{ELEMENTWISE}.neg", lambda m, x: -x, lambda x: -x, _elements(-100, 100, (0,)),
     lambda dtype, x, y: (0, 0), "exact", [-1.5, 0.0, 2.0]),
    ("relu", f"{ELEMENTWISE}.relu", lambda m, x: m.relu(x), lambda x: max(x, 0),
     _elements(-100, 100, (0, 6, 8)), lambda dtype, x, y: (0, 0), "exact", [-1.5, 0.0, 2.0, 8.0]),
    ("sin", f"{ELEMENTWISE}.sin", lambda m, x: m.sin(x), mpmath.sin,
     _elements(-100, 100, (0, numpy.pi, -numpy.pi / 2, 20 * numpy.pi, 100)),
     lambda dtype, x, y: (L(dtype), abs(y)),
     "one sin (L) relative to sin x, at its zeros too (x a float32 next to k pi: NumPy's "
     "argument reduction is exact there, measured 1.8 u in float32)",
     [-2.5, 0.0, float(numpy.float32(numpy.pi)), 1.0, 50.0]),
    ("cos", f"{ELEMENTWISE}.cos", lambda m, x: m.cos(x), mpmath.cos,
     _elements(-100, 100, (0, numpy.pi / 2, -numpy.pi, 20.5 * numpy.pi, 100)),
     lambda dtype, x, y: (L(dtype), abs(y)), "one cos (L) relative to cos x, as sin",
     [-2.5, 0.0, float(numpy.float32(numpy.pi / 2)), 1.0, 50.0]),
    ("tanh", f"{ELEMENTWISE}.tanh", lambda m, x: m.tanh(x), mpmath.tanh,
     _elements(-100, 100, (-95, -20, -1e-3, 0, 1e-3, 20, 95)),
     lambda dtype, x, y: (L(dtype), abs(y)),
     "one tanh (L) relative to tanh x: near 0 too (no 1 - ... cancels), and saturating to "
     "+-1 at |x| = 95 without overflow", [-95.0, -1e-3, 0.5, 95.0]),
    ("sigmoid", f"{ELEMENTWISE}.sigmoid", lambda m, x: m.sigmoid(x), _sigmoid,
     _elements(-100, 100, (-95, -20, -9, 0, 9, 95)),
     lambda dtype, x, y: (2 * L(dtype) + 2, y),
     "e^min(x,0) / (1 + e^-|x|): two exps (2 L), the sum and quotient (2), relative to sigma "
     "in both tails (nothing cancels); sigma(-95) ~ 6e-42 is subnormal in float32, which the "
     "underflow term covers", [-95.0, -9.0, -5.0, 0.0, 2.0, 95.0]),
    ("softplus", f"{FUNCTIONAL}.softplus", lambda m, x: m.nn.functional.softplus(x),
     # log1p: at 50 digits, 1 + e^-95 keeps only 8 digits of e^-95 ~ 5.5e-42
     lambda x: mpmath.log1p(mpmath.exp(x)),
     _elements(-100, 100, (-95, -20, -3, 0, 20, 95)),
     lambda dtype, x, y: (2 * L(dtype) + 1, y),
     "max(x, 0) + log1p(e^-|x|): exp (L), whose relative error reaches log1p(e) at most "
     "scaled by e / ((1 + e) log1p(e)) <= 1; log1p (L); the sum of two terms >= 0 (1); "
     "relative to softplus(x)", [-95.0, -20.0, -3.0, 0.0, 2.0, 95.0]),
    ("silu", f"{FUNCTIONAL}.silu", lambda m, x: m.nn.functional.silu(x),
     lambda x: x * _sigmoid(x), _elements(-100, 100, (-95, -20, -9, 0, 9, 95)),
     lambda dtype, x, y: (2 * L(dtype) + 3, abs(y)),
     "x sigma(x): sigma within gamma_{2L+2} sigma, times x (1); relative to |x sigma(x)|",
     [-95.0, -9.0, -5.0, 0.5, 2.0, 95.0]),
    ("gelu", f"{FUNCTIONAL}.gelu", lambda m, x: m.nn.functional.gelu(x),
     lambda x: x * _normal_cdf(x), _elements(-12, 100, (-12, -5, -2.5, 0, 2, 100)),
     lambda dtype, x, y: (erfc_roundings(dtype) + 2,
                          abs(x) * (_normal_cdf(x) + abs(x) * _phi(x))),
     "x Phi(x), the exact (erf) form the engine computes by default, Phi = erfc(-x / sqrt 2) "
     "/ 2: the argument's constant and product (2) move Phi by phi(x) |x| gamma_2; erfc "
     "(E = erfc_roundings), the halving exact, times x (1): gamma_{E+2} |x| (Phi + |x| phi); "
     "relative to Phi in the left tail (x Phi(-12) ~ -2e-32 is still a normal float32)",
     [-12.0, -5.0, -2.5, 0.0, 2.0, 100.0]),
    ("gelu_tanh", f"{FUNCTIONAL}.gelu", lambda m, x: m.nn.functional.gelu(x, approximate="tanh"),
     lambda x: x * _sigmoid(_gelu_tanh_argument(x)),
     _elements(-9.5, 100, (-9.5, -5, -2.5, 0, 2, 100)),
     lambda dtype, x, y: (2 * L(dtype) + 6, abs(x) * _sigmoid(_gelu_tanh_argument(x)) * (
         1 + (1 - _sigmoid(_gelu_tanh_argument(x))) * abs(_gelu_tanh_argument(x)))),
     "x s, s = sigma(w) = (1 + tanh(w/2)) / 2 (the tanh approximation), w = 2 sqrt(2/pi) "
     "(x + 0.044715 x^3): w within gamma_{L+5} |w| (pow (L), the constants rounded and "
     "their products, the sum of two terms of x's sign), moving s by s (1 - s) |w| times that; "
     "s within gamma_{2L+2} s; times x (1): gamma_{2L+6} |x| s (1 + (1 - s) |w|). From "
     "x = -9.5, where s ~ 1e-33 is still a normal float32",
     [-9.5, -5.0, -2.5, 0.0, 2.0, 100.0]),
]


def _unary_case(name, about, call, function, element, bound, formula, pinned):
    return ForwardCase(name, about, call, function,
                       st.lists(element, min_size=1, max_size=6).map(
                           lambda xs: (numpy.asarray(xs),)),
                       lambda x, dtype, bound=bound, function=function: bound(dtype, x,
                                                                              function(x)),
                       formula, pinned=(_pin(pinned),))


# leaky_relu with its slope drawn (the GAN's 0.2, PyTorch's default 0.01, or in (0, 1]):
# x where x > 0, else s x: the slope rounded to the dtype (1, exact in float64) times x (1)
LEAKY_RELU = ForwardCase(
    "leaky_relu", f"{FUNCTIONAL}.leaky_relu",
    lambda m, x, parameter: m.nn.functional.leaky_relu(x, parameter),
    lambda x, parameter: x if x > 0 else mpmath.mpf(parameter) * x,
    _unary_inputs(-100, 100, (0,)),
    lambda x, dtype, parameter: (0, 0) if x > 0 else (2, abs(mpmath.mpf(parameter) * x)),
    "x above 0 (exact), s x at or below: s rounded to the dtype (1), the product (1)",
    pinned=(_pin([-1.5, 0.0, 2.0], parameter=0.2),),  # the GAN's slope, on both sides
    parameter=st.one_of(st.sampled_from([0.2, 0.01]), reals(1 / 64, 1)))


def _clamped(x, low, high=None):
    """min(max(x, low), high): high wherever high < low, as PyTorch."""
    return max(x, low) if high is None else min(max(x, low), high)


def _clamp_inputs():
    """x with its bounds as tensors of x's shape: the lower one alone or both, in either order
    (y = high where high < low), ties (x on a bound, low = high) included: the value is
    exact at the kinks too."""
    value = _elements(-8, 8, (0, 1))

    def build(n, both):
        row = st.tuples(value, value, value)
        return st.lists(row, min_size=n, max_size=n).map(
            lambda rows: tuple(numpy.asarray(column) for column in zip(*rows))[:3 if both else 2])
    return st.tuples(st.integers(1, 6), st.booleans()).flatmap(lambda drawn: build(*drawn))


def _nonzero(low, high, floor):
    return _elements(low, high, (-0.25, 0.5, 3)).filter(lambda y: abs(y) >= floor)


BINARY = [
    ForwardCase("pow", f"{ELEMENTWISE}.pow", lambda m, a, b: a ** b, lambda a, b: a ** b,
                _binary_inputs(_elements(1 / 4, 4, (0.25, 1, 2)), _elements(-3, 3, (0, 1, 2))),
                lambda a, b, dtype: (L(dtype), abs(a ** b)),
                "a^b by pow (L), relative to it",
                pinned=(_pin([0.5, 2.0, 3.0], [-3.0, 0.5, 2.5]),)),
    ForwardCase("div", f"{ELEMENTWISE}.div", lambda m, a, b: a / b, lambda a, b: a / b,
                _binary_inputs(_elements(-100, 100, (0,)), _nonzero(-100, 100, 2 ** -10)),
                lambda a, b, dtype: (1, abs(a / b)), "one correctly rounded quotient (1)",
                pinned=(_pin([1.5, -2.0, 0.5], [4.0, 3.0, -0.25]),)),
    ForwardCase("sub", f"{ELEMENTWISE}.sub", lambda m, a, b: a - b, lambda a, b: a - b,
                _binary_inputs(_elements(-100, 100, (0,)), _elements(-100, 100, (0,))),
                lambda a, b, dtype: (1, abs(a - b)), "one correctly rounded difference (1)",
                pinned=(_pin([1.5, -2.0], [0.25, 3.0]),)),
    ForwardCase("maximum", f"{ELEMENTWISE}.maximum", lambda m, a, b: m.maximum(a, b),
                max, _binary_inputs(_elements(-8, 8, (0, 1)), _elements(-8, 8, (0, 1))),
                lambda a, b, dtype: (0, 0), "exact (a tie either way)",
                pinned=(_pin([1.5, -2.0, 0.5], [1.5, 3.0, -1.0]),)),
    ForwardCase("minimum", f"{ELEMENTWISE}.minimum", lambda m, a, b: m.minimum(a, b),
                min, _binary_inputs(_elements(-8, 8, (0, 1)), _elements(-8, 8, (0, 1))),
                lambda a, b, dtype: (0, 0), "exact (a tie either way)",
                pinned=(_pin([1.5, -2.0, 0.5], [1.5, 3.0, -1.0]),)),
    # the condition is the drawn parameter, one flag per element (the first len(a) of six)
    ForwardCase("where", f"{ELEMENTWISE}.where",
                lambda m, a, b, parameter: m.where(numpy.asarray(parameter[:a.shape[0]]), a, b),
                lambda a, b, c: a if c else b,
                _binary_inputs(_elements(-8, 8), _elements(-8, 8)),
                lambda a, b, c, dtype: (0, 0), "exact",
                pinned=(_pin([1.5, -2.0], [0.25, 3.0],
                             parameter=[True, False] + [True] * 4),),
                parameter=st.lists(st.booleans(), min_size=6, max_size=6)),
    ForwardCase("clamp", f"{ELEMENTWISE}.clamp", lambda m, x, *bounds: m.clamp(x, *bounds),
                _clamped, _clamp_inputs(), lambda *values, dtype: (0, 0),
                "exact: min(max(x, low), high), high where high < low (PyTorch's order)",
                # a row with high < low, where the order of max and min decides
                pinned=(_pin([0.5, -3.0, 3.0], [2.0, -1.0, -1.0], [1.0, 1.0, 1.0]),)),
]

CASES = [_unary_case(*row) for row in UNARY] + [LEAKY_RELU] + BINARY


def forward_name(op):
    return f"autograd_forward_eq_mpmath_value[{op}]"


def _register(case):
    given = {"inputs": case.inputs,
             "parameter": st.none() if case.parameter is None else case.parameter}

    @statement(forward_name(case.name), about=(case.about,), given=given, examples=case.pinned)
    def forward_matches_mpmath(check, inputs, parameter=None):
        import minilean
        extra = {} if case.parameter is None else {"parameter": parameter}
        values = [mp(x) for x in inputs]
        if case.name == "where":  # the condition, one flag per element, as a last "input"
            rows = [row + (flag,) for row, flag in zip(zip(*values), parameter)]
            extra_call, extra = extra, {}
        else:
            rows, extra_call = list(zip(*values)), extra
        reference = [case.definition(*row, **extra) for row in rows]
        for dtype in ENGINE_DTYPES:
            y = case.call(minilean, *(engine(x, dtype) for x in inputs), **extra_call)
            what = f"{case.name} value ({dtype.__name__})"
            check.holds(y.dtype == dtype and y.shape == inputs[0].shape,
                        f"{what}: output is {y.dtype} {y.shape}, input {dtype.__name__} "
                        f"{inputs[0].shape}")
            bounds = []
            for row in rows:
                roundings, magnitude = case.bound(*row, dtype=dtype, **extra)
                bounds.append(gamma(roundings, dtype) * magnitude
                              + underflow(roundings, dtype) * (1 + max(abs(v) for v in row
                                                                        if v is not True
                                                                        and v is not False)))
            check.close(y, reference, bounds, what)
    forward_matches_mpmath.__doc__ = (
        f"{case.name}(x) in float64 and float32 equals its 50-digit value within gamma_K M "
        f"(+ K subnormals): {case.formula}.")


for _case in CASES:
    _register(_case)


# --- mutants: broken forwards ------------------------------------------------------------------
# Each a slip in an op's forward value. Most wrap the engine's own forward, which saves what the
# backward reads (ctx.x, ctx.gate, ctx.sigma, ...), and return another value: the slip is then in
# the forward alone, and every gradient statement in autograd.py passes under it (sigmoid as
# sigma(-x) even keeps the backward's s (1 - s) whatever it saves). Each is caught here, on the
# pinned example alone too.

def _caught_by(*names):
    return [forward_name(name) for name in names]


def _returning(original, value):
    """A forward that runs ``original`` (saving the backward's context as the engine does) and
    returns ``value(*inputs, **params)`` instead of its result."""
    def forward(ctx, *inputs, **params):
        original(ctx, *inputs, **params)
        with numpy.errstate(all="ignore"):
            return value(*inputs, **params)
    return forward


def _keeping(value):
    """A forward that returns ``value(x)`` and keeps it as ``ctx.out``, as the forward of an op
    whose backward reads its output (exp, sqrt, rsqrt, tanh) does: the slip reaches the
    backward too."""
    def forward(ctx, x):
        with numpy.errstate(all="ignore"):
            out = value(x)
        if ctx.recording:
            ctx.out = out
        return out
    return forward


@mutant("sigmoid forward as sigma(-x)", f"{ELEMENTWISE}.Sigmoid.forward",
        caught_by=_caught_by("sigmoid"))
def sigmoid_forward_mirrored(original):
    """Sigmoid.forward returns e^-x / (1 + e^-x) = sigma(-x), a sign slip in the exponent: its
    backward's s (1 - s) is the same for s and 1 - s, so only the value shows it."""
    from minilean.autograd.elementwise import tail_accurate_sigmoid
    return _returning(original, lambda x: tail_accurate_sigmoid(-x))


@mutant("tanh forward by its textbook formula", f"{ELEMENTWISE}.Tanh.forward",
        caught_by=_caught_by("tanh"))
def tanh_forward_textbook(original):
    """Tanh.forward as (e^x - e^-x) / (e^x + e^-x): inf / inf = nan from |x| = 88.7 in float32
    (the backward statement draws |x| <= 6), and near 0 the difference cancels (1e-3 keeps
    about 4 digits in float32)."""
    return _keeping(lambda x: (numpy.exp(x) - numpy.exp(-x)) / (numpy.exp(x) + numpy.exp(-x)))


@mutant("softplus forward with log for log1p", f"{ELEMENTWISE}.Softplus.forward",
        caught_by=_caught_by("softplus"))
def softplus_forward_log(original):
    """Softplus.forward as max(x, 0) + log(1 + e^-|x|): 1 + e^-|x| rounds to 1 from x = -17 in
    float32 (-37 in float64), where softplus(x) ~ e^x is left 0 (its backward reads x)."""
    return _returning(original, lambda x: numpy.maximum(x, 0) + numpy.log(1 + numpy.exp(-abs(x))))


@mutant("softplus forward with x for max(x, 0)", f"{ELEMENTWISE}.Softplus.forward",
        caught_by=_caught_by("softplus"))
def softplus_forward_unrectified(original):
    """Softplus.forward as x + log1p(e^-|x|), the max(x, 0) written as x: right for x >= 0,
    softplus(x) + x below (negative from x = -0.7, where softplus is positive)."""
    return _returning(original, lambda x: x + numpy.log1p(numpy.exp(-abs(x))))


@mutant("silu forward without its x", f"{ELEMENTWISE}.silu_forward",
        caught_by=_caught_by("silu") + ["groupNorm_value"])
def silu_forward_sigmoid_only(original):
    """silu_forward returns (sigma(x), sigma(x)) for (x sigma(x), sigma(x)): the factor x
    dropped from the value, the sigmoid the backward reuses right (so Silu's and group_norm's
    backwards pass; the U-Net's time MLP and fused GroupNorm-SiLU would train on sigma)."""
    def forward(x):
        _, sigma = original(x)
        return sigma.copy(), sigma
    return forward


@mutant("gelu forward in the tanh approximation", f"{ELEMENTWISE}.Gelu.forward",
        caught_by=_caught_by("gelu"))
def gelu_forward_tanh_form(original):
    """Gelu.forward returns the tanh approximation's x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    / 2 for the exact x Phi(x) (approximate="none", the MAE's): off by up to ~5e-4, while the
    gate saved for the backward is the exact Phi."""
    def forward(ctx, x, approximate="none"):
        out = original(ctx, x, approximate)
        if approximate != "none":
            return out
        inner = (2 / numpy.pi) ** 0.5 * (x + 0.044715 * x ** 3)
        return x * (1 + numpy.tanh(inner)) / 2
    return forward


@mutant("gelu tanh forward in the exact form", f"{ELEMENTWISE}.Gelu.forward",
        caught_by=_caught_by("gelu_tanh"))
def gelu_tanh_forward_exact_form(original):
    """Gelu.forward returns x Phi(x), the exact form, for approximate="tanh" (the forward not
    reading approximate, the backward reading it: the gate it saves is the tanh form's s)."""
    def forward(ctx, x, approximate="none"):
        out = original(ctx, x, approximate)
        if approximate != "tanh":
            return out
        from minilean import backend
        return x * (backend.erfc(x * -0.5 ** 0.5) / 2)
    return forward


@mutant("leaky_relu forward with the default slope", f"{ELEMENTWISE}.LeakyRelu.forward",
        caught_by=_caught_by("leaky_relu"))
def leaky_relu_forward_default_slope(original):
    """LeakyRelu.forward multiplies by 0.01, PyTorch's default, whatever negative_slope (the
    backward reads the slope it was given: the GAN's 0.2 trains a function with the slope
    0.01 and the gradient of one with 0.2)."""
    return _returning(original, lambda x, negative_slope=0.01: numpy.where(
        x > 0, x, x * x.dtype.type(0.01)))


@mutant("exp forward with its argument clipped to 20", f"{ELEMENTWISE}.Exp.forward",
        caught_by=_caught_by("exp"))
def exp_forward_clipped(original):
    """Exp.forward as e^min(x, 20), a guard against overflow: right up to 20, e^20 above."""
    return _keeping(lambda x: numpy.exp(numpy.minimum(x, 20)))


@mutant("log forward guarded by + 1e-8", f"{ELEMENTWISE}.Log.forward",
        caught_by=_caught_by("log"))
def log_forward_guarded(original):
    """Log.forward as log(x + 1e-8), a guard against log 0: off by 1% at x = 1e-6."""
    return _returning(original, lambda x: numpy.log(x + x.dtype.type(1e-8)))


@mutant("sqrt forward guarded by + 1e-12", f"{ELEMENTWISE}.Sqrt.forward",
        caught_by=_caught_by("sqrt"))
def sqrt_forward_guarded(original):
    """Sqrt.forward as sqrt(x + 1e-12), a guard against sqrt's infinite slope at 0: 1e-6 at
    x = 0."""
    return _keeping(lambda x: numpy.sqrt(x + x.dtype.type(1e-12)))


@mutant("rsqrt forward guarded by + 1e-8", f"{ELEMENTWISE}.Rsqrt.forward",
        caught_by=_caught_by("rsqrt"))
def rsqrt_forward_guarded(original):
    """Rsqrt.forward as 1 / (sqrt(x) + 1e-8), a guard against division by 0: 1e8 times too
    small at x = 1e-20, 1e-8 relative at x = 1."""
    return _keeping(lambda x: 1 / (numpy.sqrt(x) + x.dtype.type(1e-8)))


@mutant("abs forward as sqrt(x^2 + 1e-12)", f"{ELEMENTWISE}.Abs.forward",
        caught_by=_caught_by("abs"))
def abs_forward_smoothed(original):
    """Abs.forward as the smooth sqrt(x^2 + 1e-12): 1e-6 at 0, and a rounding off elsewhere."""
    return _returning(original, lambda x: numpy.sqrt(x * x + x.dtype.type(1e-12)))


@mutant("neg forward returning x", f"{ELEMENTWISE}.Neg.forward", caught_by=_caught_by("neg"))
def neg_forward_unsigned(original):
    """Neg.forward returns a instead of -a (the backward's -g right)."""
    return lambda ctx, a: a.copy()


@mutant("relu forward as ReLU6", f"{ELEMENTWISE}.Relu.forward", caught_by=_caught_by("relu"))
def relu_forward_capped(original):
    """Relu.forward as min(max(x, 0), 6), MobileNet's ReLU6: right below 6, 6 above."""
    return _returning(original, lambda x: numpy.clip(x, 0, 6))


@mutant("sin and cos swapped in sin's forward", f"{ELEMENTWISE}.Sin.forward",
        caught_by=_caught_by("sin"))
def sin_forward_as_cos(original):
    """Sin.forward returns cos x (the two forwards swapped; its backward's cos x right)."""
    return _returning(original, numpy.cos)


@mutant("sin and cos swapped in cos's forward", f"{ELEMENTWISE}.Cos.forward",
        caught_by=_caught_by("cos"))
def cos_forward_as_sin(original):
    """Cos.forward returns sin x (the two forwards swapped; its backward's -sin x right)."""
    return _returning(original, numpy.sin)


@mutant("pow forward with its operands swapped", f"{ELEMENTWISE}.Pow.forward",
        caught_by=_caught_by("pow"))
def pow_forward_swapped(original):
    """Pow.forward returns b ** a for a ** b (an __rpow__ slip), nan for a negative b."""
    def forward(ctx, a, b):
        with numpy.errstate(all="ignore"):
            out = b ** a
        if ctx.recording:
            ctx.a, ctx.b, ctx.out = a, b, out
        return out
    return forward


@mutant("div forward as floor division", f"{ELEMENTWISE}.Div.forward",
        caught_by=_caught_by("div"))
def div_forward_floor(original):
    """Div.forward as a // b, Python's floor division for its true division: right where b
    divides a."""
    def forward(ctx, a, b):
        out = a // b
        if ctx.recording:
            ctx.b, ctx.out = b, out
        return out
    return forward


@mutant("sub forward with its operands swapped", f"{ELEMENTWISE}.Sub.forward",
        caught_by=_caught_by("sub"))
def sub_forward_swapped(original):
    """Sub.forward returns b - a for a - b (an __rsub__ slip)."""
    return _returning(original, lambda a, b: b - a)


@mutant("maximum/minimum forward with largest inverted", f"{ELEMENTWISE}.PairExtremum.forward",
        caught_by=_caught_by("maximum", "minimum"))
def extremum_forward_inverted(original):
    """PairExtremum.forward takes numpy.minimum where largest and numpy.maximum otherwise (its
    backward reads largest right: the gradient goes to the input it did not return)."""
    return _returning(original, lambda a, b, largest=True: (numpy.minimum if largest
                                                            else numpy.maximum)(a, b))


@mutant("where forward with the condition inverted", f"{ELEMENTWISE}.Where.forward",
        caught_by=_caught_by("where"))
def where_forward_inverted(original):
    """Where.forward returns b where the condition holds and a elsewhere."""
    return _returning(original, lambda a, b, condition=None: numpy.where(condition, b, a))


@mutant("clamp forward applying max last", f"{ELEMENTWISE}.Clamp.forward",
        caught_by=_caught_by("clamp"))
def clamp_forward_max_last(original):
    """Clamp.forward as max(min(x, high), low): right where low <= high, low where high < low
    (PyTorch, and numpy.clip, give high there; its backward follows PyTorch)."""
    def value(x, *bounds, has_low=True, has_high=True):
        low = bounds[0] if has_low else None
        high = bounds[-1] if has_high else None
        out = x if high is None else numpy.minimum(x, high)
        return out if low is None else numpy.maximum(out, low)
    return _returning(original, value)
