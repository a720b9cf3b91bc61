"""Autograd agrees with mpmath: for each differentiable op, backward(g) = J^T g.

One statement per op. Hypothesis draws the op's inputs (float32-representable, in a domain away
from the op's kinks and poles) and a seed for the upstream gradient g. The reference gradient
of L(x) = sum_j g_j f_j(x) is ``mpmath.diff`` of the op's mathematical definition at 50
digits, coordinate by coordinate -- independent of the derivative formula the op's backward
uses. The engine's backward, in float64 and in float32, must match it within
gamma_K * M elementwise, where K counts the roundings on the longest path through the op's
forward-and-backward formula (each library call, exp, log, sin, tanh, pow, erf, counts
L = ``numerics.library_roundings(dtype)``: 8 in float32, 4 in float64, from NumPy's own ulp
tolerances; K is written a L + b, and "(L)" in a formula is one library call) and M is the first-order magnitude
of the formula's terms (Higham's sum |terms|), written next to each op below. The gradient
must also come back in the input's dtype and shape. Each rounding may also add the smallest
subnormal through gradual underflow (products of small inputs), so K of those are added.
"""
from dataclasses import dataclass

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.gradients import check_gradient, upstream
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, library_roundings, mp, real_array,
                             reals, underflow)

ELEMENTWISE = "minilean.autograd.elementwise"
REDUCE = "minilean.autograd.reduce"


@dataclass
class OpCase:
    """One differentiable op: how to call it, what it is mathematically, where to test it,
    and its rounding bound (magnitudes(xs, g) -> one list of M per input; roundings(n, dtype)
    -> K)."""
    name: str
    about: str
    call: object
    definition: object   # lists of mpf (one per input) -> list of mpf outputs
    inputs: object       # strategy of a tuple of float64 arrays
    magnitudes: object
    roundings: object
    formula: str
    parameter: object = None  # a strategy for an extra argument (leaky_relu's slope), or None
    pinned: tuple = ()        # pinned examples (``_pin``): inputs the drawn ones reach rarely
    relaxed: object = None    # the inputs' strategy landing on the kinks the op assumes off
    broadcasts: bool = False  # an input may be broadcast: its gradient sums its copies'


def _pin(*inputs, parameter=None):
    """A pinned example of an op's statement: its inputs as float64 arrays, g from seed 1."""
    return {"inputs": tuple(numpy.asarray(x, dtype=numpy.float64) for x in inputs), "seed": 1,
            "parameter": parameter}


# a negative and a positive input: where sign(x), a mask or a slope must act on one side only
BOTH_SIDES = (_pin([-1.5, 2.0]),)
# and 0, where abs's backward must give sign(0) = 0
BOTH_SIDES_AND_ZERO = (_pin([-1.5, 0.0, 2.0]),)
# a tie (the first elements), a win of b and a win of a, for maximum and minimum
TIE_AND_WINS = (_pin([1.5, -2.0, 0.5], [1.5, 3.0, -1.0]),)
# several elements: a reduction over one is the identity, whatever scale its backward takes
SEVERAL = (_pin([1.0, -2.0, 0.5]),)
# the left tail, where a sigmoid taken as (1 + tanh(x/2)) / 2 keeps only an absolute precision
LEFT_TAIL = (_pin([-9.0, -5.0, 2.0]),)


# At a kink the reference, mpmath.diff's central difference, is the symmetric derivative: the
# mean of the two one-sided slopes. abs (sign(0) = 0) and maximum/minimum (g split half and
# half on a tie) take it there too, so their strategies also draw the kink exactly. relu,
# leaky_relu and clamp take one side, as PyTorch does (relu's slope 0 at 0, clamp's 1 at a
# bound), so their statements assume their inputs off the kink, and each relaxed strategy,
# which lands on it, shows that hypothesis needed. Every strategy keeps the values off a kink
# at least 1/64 from it: one within mpmath.diff's step would have its difference straddle it.

def _unary_inputs(low, high, kinks=(), on_kinks=False):
    """One vector of 1-5 elements in [low, high], each at least 1/64 from every point of
    ``kinks`` or, with ``on_kinks``, exactly on one."""
    element = reals(low, high).filter(lambda x: all(abs(x - p) >= 1 / 64 for p in kinks))
    if on_kinks:
        element = st.one_of(element, st.sampled_from([float(p) for p in kinks]))
    return st.lists(element, min_size=1, max_size=5).map(lambda xs: (numpy.asarray(xs),))


def _binary_inputs(low_a, high_a, low_b, high_b, ties=False):
    """Pairs of 1-4 elements each; with ``ties`` (maximum and minimum, whose kink is a = b),
    each pair of elements at least 1/64 apart or exactly equal."""
    def build(n):
        pair = st.tuples(reals(low_a, high_a), reals(low_b, high_b))
        if ties:
            pair = st.one_of(pair.filter(lambda ab: abs(ab[0] - ab[1]) >= 1 / 64),
                             reals(max(low_a, low_b), min(high_a, high_b)).map(
                                 lambda v: (v, v)))
        return st.lists(pair, min_size=n, max_size=n).map(
            lambda rows: (numpy.asarray([a for a, _ in rows]), numpy.asarray([b for _, b in rows])))
    return st.integers(1, 4).flatmap(build)


def _pointwise(function, magnitude):
    """definition/magnitudes of an op applied elementwise to one input."""
    def definition(x):
        return [function(value) for value in x]

    def magnitudes(xs, g):
        return [[abs(gj) * magnitude(value) for value, gj in zip(xs[0], g)]]
    return definition, magnitudes


def _erf_gelu(x):
    return x * (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2


GELU_TANH_C = mpmath.mpf(0.044715)


def _tanh_gelu(x):
    return x * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi) * (x + GELU_TANH_C * x ** 3))) / 2


def _phi(x):
    return mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)


def _normal_cdf(x):
    """Phi(x), which the engine also takes as erfc(-x / sqrt 2) / 2."""
    return mpmath.erfc(-x / mpmath.sqrt(2)) / 2


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


# The engine's s = sigma(x) is e^min(x,0) / (1 + e^-|x|) (``tail_accurate_sigmoid``): the
# numerator's exp (L), the denominator's exp (L, its share of 1 + e at most 1) and sum (1), the
# quotient (1). So s is within gamma_{2L+2} s *relatively*, in both tails: an absolute bound,
# such as the tanh form's (1 + tanh(x/2)) / 2 earns, would let the left tail's gradients, ~e^x,
# be wrong in every digit. (2, 2) is a L + b, as K is written below.
SIGMOID_ROUNDINGS = (2, 2)


def _plus(k, extra):
    """(a, b) + extra roundings."""
    return (k[0], k[1] + extra)


def _gelu_tanh_magnitude(x):
    """M for gelu_tanh's gradient G = s + x s (1 - s) w', s = sigma(w), w = 2c (x + a x^3),
    w' = 2c (1 + 3 a x^2), c = sqrt(2/pi), a = 0.044715. The engine's s carries, relatively,
    gamma_{2L+2} of its own (``tail_accurate_sigmoid``) plus s (1 - s) |w| times w's relative
    error, since ds/dw = s (1 - s): w is a sum of two terms of x's sign (no cancellation)
    through pow (L), a rounded to the dtype (1), a product (1), the sum (1) and 2c (constant 1,
    product 1), gamma_{L+5}. So s's error is within gamma s (1 + (1 - s)|w|), and it reaches G
    through the slope dG/ds = 1 + x w' (1 - 2s), |.| <= 1 + |x| w'. Then the formula's own
    roundings: w' (3a rounded twice, x^2, product, 1 +, 2c rounded and a product: 7), 1 - s,
    three products, the sum and g: 13 more on the term x s (1 - s) w', 2 on s; all with
    gamma_{2L+14} (the largest count) over M = (1 + |x| w') s (1 + (1 - s)|w|) + s
    + |x| s (1 - s) w'. Relative to s, like sigmoid's and silu's rows: the tanh form's s, with
    only the absolute precision of 1 + tanh, is orders of magnitude outside it in the left
    tail (x < -3). The domain stops at -9.5, where s = sigma(w) ~ 1e-33 is still a normal
    float32 (a subnormal s would carry absolute, not relative, error)."""
    c = mpmath.sqrt(2 / mpmath.pi)
    w = 2 * c * (x + GELU_TANH_C * x ** 3)
    slope = 2 * c * (1 + 3 * GELU_TANH_C * x * x)
    sig = _sigmoid(w)
    return ((1 + abs(x) * slope) * sig * (1 + (1 - sig) * abs(w)) + sig
            + abs(x) * sig * (1 - sig) * slope)


UNARY = [
    # (name, engine call, math, domain, magnitude M(x) per unit |g|, K as (a, b): a L + b, with
    # L = library_roundings(dtype), formula)
    ("exp", lambda m, x: m.exp(x), mpmath.exp, (-8, 8, ()), mpmath.exp, (1, 1),
     "g e^x: e^x (L) times g (1)"),
    ("log", lambda m, x: m.log(x), mpmath.log, (1 / 64, 64, ()), lambda x: 1 / x, (0, 1),
     "g / x: one division"),
    ("sqrt", lambda m, x: m.sqrt(x), mpmath.sqrt, (1 / 64, 64, ()),
     lambda x: 1 / (2 * mpmath.sqrt(x)), (0, 2), "g / (2 sqrt x): sqrt (1), division (1)"),
    ("rsqrt", lambda m, x: m.rsqrt(x), lambda x: 1 / mpmath.sqrt(x), (1 / 64, 64, ()),
     lambda x: x ** mpmath.mpf(-1.5) / 2, (1, 7),
     "-g y^3 / 2, y = 1/sqrt x: y (2), y**3 by pow (3 x 2 + L), times g (1)"),
    ("abs", lambda m, x: m.abs(x), abs, (-8, 8, (0,)), lambda x: 1, (0, 0),
     "g sign(x), 0 at 0: exact"),
    # -x as the losses write it (the VAE's -log p(x|z), cross_entropy's -log softmax)
    ("neg", lambda m, x: -x, lambda x: -x, (-8, 8, ()), lambda x: 1, (0, 0), "-g: exact"),
    ("sin", lambda m, x: m.sin(x), mpmath.sin, (-6, 6, ()), lambda x: abs(mpmath.cos(x)), (1, 1),
     "g cos x: cos (L), times g (1)"),
    ("cos", lambda m, x: m.cos(x), mpmath.cos, (-6, 6, ()), lambda x: abs(mpmath.sin(x)), (1, 1),
     "-g sin x: sin (L), times g (1)"),
    ("tanh", lambda m, x: m.tanh(x), mpmath.tanh, (-6, 6, ()),
     lambda x: mpmath.tanh(x) ** 2 + abs(1 - mpmath.tanh(x) ** 2), (2, 3),
     "g (1 - y^2): y (L), y^2 (2 x L + 1), 1 - (1), times g (1): 2 L + 3; terms 1 and y^2"),
    ("sigmoid", lambda m, x: m.sigmoid(x), _sigmoid, (-10, 10, ()),
     lambda x: _sigmoid(x) + _sigmoid(x) * (1 - _sigmoid(x)), _plus(SIGMOID_ROUNDINGS, 3),
     "g s (1 - s): s within gamma_{2L+2} s (times |1 - 2s| <= 1), then 3 roundings of "
     "s (1 - s)"),
    ("relu", lambda m, x: m.relu(x), lambda x: max(x, 0), (-8, 8, (0,)), lambda x: 1, (0, 0),
     "g [x > 0]: exact"),
    ("softplus", lambda m, x: m.nn.functional.softplus(x),
     lambda x: mpmath.log(1 + mpmath.exp(x)), (-10, 100, ()), _sigmoid, _plus(SIGMOID_ROUNDINGS, 1),
     "g sigma(x): sigma within gamma_{2L+2} sigma (the engine's tail-accurate sigmoid), times "
     "g (1); relative to sigma, so the left tail, where the slope is ~e^x, is held too; x up "
     "to 100, past e^x's float32 range (88.7), as the VAE's likelihood takes softplus of "
     "(x - mean) / scale up to ~1600"),
    ("silu", lambda m, x: m.nn.functional.silu(x), lambda x: x * _sigmoid(x), (-10, 10, ()),
     lambda x: _sigmoid(x) * (1 + abs(x)) + _sigmoid(x) * (1 + abs(x) * (1 - _sigmoid(x))),
     _plus(SIGMOID_ROUNDINGS, 5),
     "g s (1 + x (1 - s)): s within gamma_{2L+2} s, times the slope in s, |1 + x (1 - 2s)| "
     "<= 1 + |x|; then five roundings of terms bounded by s and |x| s (1 - s)"),
    ("gelu", lambda m, x: m.nn.functional.gelu(x), _erf_gelu, (-6, 6, ()),
     lambda x: _normal_cdf(x) + abs(x) * _phi(x) * (1 + x * x), (1, 5),
     "g (Phi(x) + x phi(x)): Phi as erfc (L) of a rounded -x/sqrt2 (2), within gamma_L Phi "
     "plus phi(x) |x| gamma_2 (dPhi/dx = phi); exp of a rounded -x^2/2 (x^2/2 u relative), "
     "constants rounded to the dtype; terms bounded by Phi(x), relatively (the engine's erfc "
     "keeps the left tail, where 1 + erf cancels), and |x| phi(x) (1 + x^2)"),
    ("gelu_tanh", lambda m, x: m.nn.functional.gelu(x, approximate="tanh"), _tanh_gelu,
     (-9.5, 9.5, ()), _gelu_tanh_magnitude, (2, 14),
     "g (s + x s (1 - s) w'), s = sigma(w), w = 2 sqrt(2/pi) (x + a x^3): s within "
     "gamma_{2L+2} s plus s (1 - s)|w| times w's relative error (gamma_{L+5}), times the slope "
     "in s, <= 1 + |x| w'; 13 more roundings of the formula (_gelu_tanh_magnitude)"),
]


UNARY_PINNED = {"abs": BOTH_SIDES_AND_ZERO, "relu": BOTH_SIDES, "sigmoid": LEFT_TAIL,
                "silu": LEFT_TAIL, "gelu_tanh": LEFT_TAIL,
                # -5: where 1 + erf(x / sqrt 2) keeps a tenth of Phi in float32
                "gelu": (_pin([-5.0, -2.5, 2.0]),),
                # past e^x's float32 range (88.7), where e^x / (1 + e^x) is inf / inf
                "softplus": (_pin([95.0, -3.0]),)}


def _unary_case(name, call, function, domain, magnitude, roundings, formula):
    definition, magnitudes = _pointwise(function, magnitude)
    low, high, kinks = domain
    about = f"{ELEMENTWISE}.{name}" if name not in ("silu", "gelu", "gelu_tanh") \
        else f"minilean.nn.functional.{name.replace('_tanh', '')}"
    library, plain = roundings
    # at its kink abs takes the symmetric derivative, relu one side (the comment on kinks)
    symmetric, one_sided = name == "abs", name == "relu"
    return OpCase(name, about, call, definition,
                  _unary_inputs(low, high, kinks, on_kinks=symmetric), magnitudes,
                  lambda n, dtype: library * library_roundings(dtype) + plain, formula,
                  pinned=UNARY_PINNED.get(name, ()),
                  relaxed=_unary_inputs(low, high, kinks, on_kinks=True) if one_sided else None)


# leaky_relu with its slope drawn (the GAN's discriminator uses 0.2, PyTorch's default is 0.01):
# y = x or s x, dy/dx = 1 or s; the slope rounded to the dtype (1), times g (1)
LEAKY_RELU = OpCase(
    "leaky_relu", "minilean.nn.functional.leaky_relu",
    lambda m, x, parameter: m.nn.functional.leaky_relu(x, parameter),
    lambda x, parameter: [v if v > 0 else mpmath.mpf(parameter) * v for v in x],
    _unary_inputs(-8, 8, (0,)),
    lambda xs, g, parameter: [[abs(gj) * (1 if v > 0 else mpmath.mpf(parameter))
                               for v, gj in zip(xs[0], g)]],
    lambda n, dtype: 2, "g or g s: the slope s (0.2, 0.01 or drawn in (0, 1]) rounded to the "
    "dtype (1), times g (1)",
    parameter=st.one_of(st.sampled_from([0.2, 0.01]), reals(1 / 64, 1)),
    pinned=(_pin([-1.5, 2.0], parameter=0.2),),  # the GAN's slope, on both sides
    relaxed=_unary_inputs(-8, 8, (0,), on_kinks=True))


def _elementwise_binary(function):
    return lambda a, b: [function(x, y) for x, y in zip(a, b)]


def _broadcast(a, b):
    """a and b as lists of one length: one of length 1 repeated to the other's, as NumPy
    broadcasts (1,) against (n,)."""
    n = max(len(a), len(b))
    return (a * n if len(a) < n else a), (b * n if len(b) < n else b)


def _per_input(terms, length):
    """M for an input of ``length`` elements from the terms of its gradient, one per output:
    the terms themselves, or their sum for an input broadcast from one element."""
    return terms if len(terms) == length else [mpmath.fsum(terms)]


def _quotient_inputs():
    """a in [-8, 8] over b in [-8, -1/4] or [1/4, 8] (|b| away from the pole at 0, of either
    sign), of one length 1-4, or one of them of length 1, broadcast to the other's."""
    divisor = reals(-8, 8).filter(lambda y: abs(y) >= 1 / 4)

    def build(n, lengths):
        a_length, b_length = lengths(n)
        return st.tuples(st.lists(reals(-8, 8), min_size=a_length, max_size=a_length),
                         st.lists(divisor, min_size=b_length, max_size=b_length)).map(
            lambda ab: (numpy.asarray(ab[0]), numpy.asarray(ab[1])))
    shapes = st.sampled_from([lambda n: (n, n), lambda n: (1, n), lambda n: (n, 1)])
    return st.tuples(st.integers(1, 4), shapes).flatmap(lambda drawn: build(*drawn))


def _quotient_magnitudes(xs, g):
    """|g / b| for a and |g a / b^2| for b, per output, each summed over a broadcast input's
    copies."""
    a, b = _broadcast(*xs)
    return [_per_input([abs(gj / y) for y, gj in zip(b, g)], len(xs[0])),
            _per_input([abs(gj * x / (y * y)) for x, y, gj in zip(a, b, g)], len(xs[1]))]


BINARY = [
    OpCase("mul", f"{ELEMENTWISE}.mul", lambda m, a, b: a * b, _elementwise_binary(
        lambda x, y: x * y), _binary_inputs(-8, 8, -8, 8),
        lambda xs, g: [[abs(gj * y) for y, gj in zip(xs[1], g)],
                       [abs(gj * x) for x, gj in zip(xs[0], g)]],
        lambda n, dtype: 1, "g b and g a: one product each",
        pinned=(_pin([1.5, -2.0], [0.5, 3.0]),)),  # factors that differ
    OpCase("div", f"{ELEMENTWISE}.div", lambda m, a, b: a / b,
           lambda a, b: [x / y for x, y in zip(*_broadcast(a, b))], _quotient_inputs(),
           _quotient_magnitudes, lambda n, dtype: 3,
           "g / b (1) and -(g / b)(a / b): two quotients and a product; for an input broadcast "
           "to n copies their sum, n - 1 more",
           # pinned: a negative divisor broadcast to three
           pinned=(_pin([1.5, -2.0, 0.5], [-0.5]),), broadcasts=True),
    OpCase("pow", f"{ELEMENTWISE}.pow", lambda m, a, b: a ** b, _elementwise_binary(
        lambda x, y: x ** y), _binary_inputs(1 / 4, 4, -3, 3),
        lambda xs, g: [[abs(gj * y * x ** (y - 1)) * (1 + abs(mpmath.log(x) * (y - 1)))
                        for x, y, gj in zip(xs[0], xs[1], g)],
                       [abs(gj * x ** y * mpmath.log(x)) for x, y, gj in zip(xs[0], xs[1], g)]],
        lambda n, dtype: 2 * library_roundings(dtype) + 2,
        "g b a^(b-1): b - 1 rounded (its error scaled by |log a (b - 1)|), pow (L), two "
        "products; g a^b log a: pow (L), log (L), two products: 2 L + 2"),
    OpCase("maximum", f"{ELEMENTWISE}.maximum", lambda m, a, b: m.maximum(a, b),
           _elementwise_binary(max), _binary_inputs(-8, 8, -8, 8, ties=True),
           lambda xs, g: [[abs(gj) for gj in g]] * 2, lambda n, dtype: 0,
           "g, 0, or g / 2 on a tie: exact", pinned=TIE_AND_WINS),
    OpCase("minimum", f"{ELEMENTWISE}.minimum", lambda m, a, b: m.minimum(a, b),
           _elementwise_binary(min), _binary_inputs(-8, 8, -8, 8, ties=True),
           lambda xs, g: [[abs(gj) for gj in g]] * 2, lambda n, dtype: 0,
           "g, 0, or g / 2 on a tie: exact", pinned=TIE_AND_WINS),
    OpCase("add_broadcast", f"{ELEMENTWISE}.add", lambda m, a, b: a + b,
           lambda a, b: [x + b[0] for x in a],
           st.tuples(_unary_inputs(-8, 8), reals(-8, 8)).map(
               lambda t: (t[0][0], numpy.asarray([t[1]]))),
           lambda xs, g: [[0] * len(g), [sum(abs(gj) for gj in g)]],
           lambda n, dtype: max(n - 1, 0),
           "g for a (exact); sum_j g_j for the broadcast b: n - 1 additions (gamma_{n-1})",
           pinned=(_pin([1.0, -2.0, 0.5], [0.25]),)),  # b broadcast to three
    OpCase("sub", f"{ELEMENTWISE}.sub", lambda m, a, b: a - b,
           _elementwise_binary(lambda x, y: x - y), _binary_inputs(-8, 8, -8, 8),
           lambda xs, g: [[0] * len(g)] * 2, lambda n, dtype: 0, "g and -g: exact"),
]


def _copied(values, source, target):
    """``values`` with the one at ``target`` replaced by the one at ``source``."""
    return tuple(values[source] if k == target else v for k, v in enumerate(values))


def _clamp_inputs(ties=False):
    """x with its bounds as tensors of x's shape: the lower one alone (``clamp(min=...)``, the
    VAE's log-scale floor) or both, in either order (y = high where high < low), every two of
    x, low and high at least 1/64 apart, away from the kinks; with ``ties``, two of each triple
    may be made equal (x on a bound, or low = high), landing on a kink."""
    def build(n, both):
        triple = st.tuples(reals(-8, 8), reals(-8, 8), reals(-8, 8)).filter(
            lambda t: min(abs(t[0] - t[1]), abs(t[0] - t[2]), abs(t[1] - t[2])) >= 1 / 64)
        if ties:
            triple = st.tuples(triple, st.sampled_from([None, (0, 1), (0, 2), (1, 2)])).map(
                lambda drawn: drawn[0] if drawn[1] is None else _copied(drawn[0], *drawn[1]))
        return st.lists(triple, min_size=n, max_size=n).map(
            lambda rows: tuple(numpy.asarray(column) for column in zip(*rows))[:3 if both else 2])
    return st.tuples(st.integers(1, 4), st.booleans()).flatmap(lambda drawn: build(*drawn))


def _clamped(x, low, high=None):
    """min(max(x, low), high): high wherever high < low, as PyTorch."""
    return max(x, low) if high is None else min(max(x, low), high)


# Selections: each gradient is g or 0, copied, never computed (bound 0).
SELECTIONS = [
    OpCase("clamp", f"{ELEMENTWISE}.clamp", lambda m, x, *bounds: m.clamp(x, *bounds),
           lambda x, *bounds: [_clamped(*values) for values in zip(x, *bounds)],
           _clamp_inputs(), lambda xs, g: [[0] * len(g)] * len(xs), lambda n, dtype: 0,
           "g where low < x < high (and 0 where clipped) for x; g where y is low for low, "
           "where y is high for high: exact", relaxed=_clamp_inputs(ties=True)),
    # the condition is the drawn parameter, one flag per element (the first len(a) of four)
    OpCase("where", f"{ELEMENTWISE}.where",
           lambda m, a, b, parameter: m.where(numpy.asarray(parameter[:a.shape[0]]), a, b),
           lambda a, b, parameter: [x if c else y for x, y, c in zip(a, b, parameter)],
           _binary_inputs(-8, 8, -8, 8), lambda xs, g, parameter: [[0] * len(g)] * 2,
           lambda n, dtype: 0, "g where the condition holds (else 0) for a, the rest for b: "
           "exact", parameter=st.lists(st.booleans(), min_size=4, max_size=4)),
]


def _softmax(x):
    peak = max(x)
    exps = [mpmath.exp(v - peak) for v in x]
    total = mpmath.fsum(exps)
    return [e / total for e in exps]


def _logsumexp(x):
    return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))


def _spread(x):
    return [abs(v - max(x)) for v in x]


REDUCTIONS = [
    OpCase("sum", f"{REDUCE}.sum", lambda m, x: x.sum(), lambda x: [mpmath.fsum(x)],
           _unary_inputs(-8, 8), lambda xs, g: [[abs(g[0])] * len(xs[0])], lambda n, dtype: 0,
           "g broadcast to every input: exact", pinned=SEVERAL),
    OpCase("mean", f"{REDUCE}.mean", lambda m, x: x.mean(), lambda x: [mpmath.fsum(x) / len(x)],
           _unary_inputs(-8, 8), lambda xs, g: [[abs(g[0]) / len(xs[0])] * len(xs[0])],
           lambda n, dtype: 2, "g / n: 1/n or g/n rounded, at most two roundings",
           pinned=SEVERAL),
    OpCase("logsumexp", f"{REDUCE}.logsumexp", lambda m, x: x.logsumexp(0),
           lambda x: [_logsumexp(x)], _unary_inputs(-8, 8),
           lambda xs, g: [[abs(g[0]) * s * (1 + abs(v) + 2 * abs(_logsumexp(xs[0])))
                           for v, s in zip(xs[0], _softmax(xs[0]))]],
           lambda n, dtype: n + 2 + 2 * library_roundings(dtype),
           "g exp(x_i - y): y through n - 1 additions, log (L), exp (L); the difference x_i - y carries absolute error ~ u (|x_i| + 2|y|)"),
    OpCase("softmax", f"{REDUCE}.softmax", lambda m, x: x.softmax(0), _softmax,
           _unary_inputs(-8, 8),
           lambda xs, g: [[s * (abs(gj) + mpmath.fsum(abs(gi) * si for gi, si in
                                                      zip(g, _softmax(xs[0]))))
                           * (1 + d + max(_spread(xs[0])))
                           for s, gj, d in zip(_softmax(xs[0]), g, _spread(xs[0]))]],
           lambda n, dtype: n + 2 + 2 * library_roundings(dtype),
           "s (g - sum g s): s through exp of a shifted input (relative "
           "error ~ u (1 + |x_i - max x|)), n - 1 additions and a division"),
    OpCase("log_softmax", f"{REDUCE}.log_softmax", lambda m, x: x.log_softmax(0),
           lambda x: [v - _logsumexp(x) for v in x], _unary_inputs(-8, 8),
           lambda xs, g: [[abs(gj) + s * mpmath.fsum(abs(gi) for gi in g)
                           * (1 + abs(v) + 2 * abs(_logsumexp(xs[0])))
                           for v, s, gj in zip(xs[0], _softmax(xs[0]), g)]],
           lambda n, dtype: n + 2 + 2 * library_roundings(dtype),
           "g - exp(y) sum g: like logsumexp's bound plus the sum of g", pinned=SEVERAL),
]


@st.composite
def _matmul_inputs(draw):
    rows, inner, cols = (draw(st.integers(1, 3)) for _ in range(3))
    a = draw(st.lists(reals(-4, 4), min_size=rows * inner, max_size=rows * inner))
    b = draw(st.lists(reals(-4, 4), min_size=inner * cols, max_size=inner * cols))
    return (numpy.asarray(a).reshape(rows, inner), numpy.asarray(b).reshape(inner, cols))


def _matmul_definition(a, b, shape_a, shape_b):
    rows, inner = shape_a
    cols = shape_b[1]
    return [mpmath.fsum(a[i * inner + k] * b[k * cols + j] for k in range(inner))
            for i in range(rows) for j in range(cols)]


def _matmul_magnitudes(xs, g, shape_a, shape_b):
    """|G| |B|^T for dA and |A|^T |G| for dB: the dot-product bound gamma_n |x|^T |y|."""
    rows, inner = shape_a
    cols = shape_b[1]
    a, b = xs
    grad_a = [mpmath.fsum(abs(g[i * cols + j] * b[k * cols + j]) for j in range(cols))
              for i in range(rows) for k in range(inner)]
    grad_b = [mpmath.fsum(abs(a[i * inner + k] * g[i * cols + j]) for i in range(rows))
              for k in range(inner) for j in range(cols)]
    return [grad_a, grad_b]


MATMUL = OpCase("matmul", "minilean.autograd.linalg.matmul", lambda m, a, b: a @ b, None,
                _matmul_inputs(), None, lambda n, dtype: 3,
                "G B^T and A^T G: dot products of length <= 3 (gamma_3 |G| |B|^T)",
                # pinned: (2, 3) @ (3, 2), where a reshape of B is no transpose
                pinned=(_pin([[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]],
                             [[0.5, 2.0], [-1.0, 1.5], [0.25, -3.0]]),))


@st.composite
def _linear_inputs(draw):
    """x (..., in), W (out, in), b (out,): x with one or two leading axes (the MLPs' (batch,
    in) and the MAE's (batch, tokens, width)), up to 4 rows, in and out 1-3."""
    lead = draw(st.sampled_from([(1,), (2,), (3,), (2, 2)]))
    inner, out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (real_array(draw, lead + (inner,), -4, 4), real_array(draw, (out, inner), -4, 4),
            real_array(draw, (out,), -4, 4))


def _linear_sizes(x, w, b):
    """(rows, in, out) of flat x, W, b."""
    out = len(b)
    inner = len(w) // out
    return len(x) // inner, inner, out


def _linear_definition(x, w, b):
    rows, inner, out = _linear_sizes(x, w, b)
    return [mpmath.fsum(x[r * inner + i] * w[o * inner + i] for i in range(inner)) + b[o]
            for r in range(rows) for o in range(out)]


def _linear_magnitudes(xs, g):
    """|G| |W| for dx, |G|^T |x| for dW and the sum of |G| over the rows for db."""
    x, w, b = xs
    rows, inner, out = _linear_sizes(x, w, b)
    grad_x = [mpmath.fsum(abs(g[r * out + o] * w[o * inner + i]) for o in range(out))
              for r in range(rows) for i in range(inner)]
    grad_w = [mpmath.fsum(abs(g[r * out + o] * x[r * inner + i]) for r in range(rows))
              for o in range(out) for i in range(inner)]
    grad_b = [mpmath.fsum(abs(g[r * out + o]) for r in range(rows)) for o in range(out)]
    return [grad_x, grad_w, grad_b]


# the linear layer's own op (nn.Linear, every MLP and attention projection of the zoo), whose
# backward is its own, not matmul's: y = x W^T + b, dx = G W, dW = G^T x, db = sum of G's rows
LINEAR = OpCase("linear", "minilean.autograd.linalg.linear",
                lambda m, x, w, b: m.nn.functional.linear(x, w, b), _linear_definition,
                _linear_inputs(), _linear_magnitudes, lambda n, dtype: 4,
                "G W, G^T x and the sum of G's rows: dot products and sums of length <= 4 "
                "(gamma_4 |G| |W| and so on)",
                # pinned: x of (2, 2, 3), four rows (one row hides a weight gradient taken
                # from the first row alone, and a bias gradient averaged over the rows)
                pinned=(_pin([[[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]],
                              [[-0.5, 1.5, 2.0], [0.75, -1.0, -3.0]]],
                             [[0.5, 2.0, -1.0], [-1.5, 0.25, 1.0]], [0.5, -2.0]),))


@st.composite
def _loss_inputs(draw):
    """input and target of one shape (rows, cols), 1-3 x 1-4: a loss over two axes, so that a
    scale taken from one axis (not the element count) shows; each input at least 1/64 from
    its target (a zero residual hides any scale)."""
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    pair = st.tuples(reals(-8, 8), reals(-8, 8)).filter(lambda ab: abs(ab[0] - ab[1]) >= 1 / 64)
    a, b = zip(*draw(st.lists(pair, min_size=rows * cols, max_size=rows * cols)))
    return numpy.asarray(a).reshape(rows, cols), numpy.asarray(b).reshape(rows, cols)


def _mse_scale(n, reduction):
    return mpmath.mpf(1) / n if reduction == "mean" else mpmath.mpf(1)


# mse_loss (the autoencoder's, VQ-VAE's and GAN's losses, and the diffusion losses'), mean or
# sum over every element: dL/da = 2 s (a - b) g = -dL/db, s = 1/n or 1
MSE_LOSS = OpCase(
    "mse_loss", "minilean.autograd.loss.mse_loss",
    lambda m, a, b, parameter: m.nn.functional.mse_loss(a, b, reduction=parameter),
    lambda a, b, parameter: [mpmath.fsum((x - y) ** 2 for x, y in zip(a, b))
                             * _mse_scale(len(a), parameter)],
    _loss_inputs(),
    lambda xs, g, parameter: [[2 * abs(g[0] * (x - y)) * _mse_scale(len(xs[0]), parameter)
                               for x, y in zip(*xs)]] * 2,
    lambda n, dtype: 4, "2 s (a - b) g and its negation: a - b (1), 2 s rounded to the dtype "
    "(1), its product with g (1) and with a - b (1)",
    parameter=st.sampled_from(["mean", "sum"]),
    # pinned: the mean over a (2, 3) pair, whose count is no length of either axis
    pinned=(_pin([[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]], [[0.5, 2.0, -1.0], [1.5, 0.0, 1.0]],
                 parameter="mean"),))

CASES = ([_unary_case(*row) for row in UNARY] + [LEAKY_RELU] + BINARY + SELECTIONS + REDUCTIONS
         + [MATMUL, LINEAR, MSE_LOSS])


def _reference_gradients(case, xs, g, shapes, extra):
    """d/dx_i of L = sum_j g_j f_j(x), by mpmath.diff of the op's definition, per element."""
    definition = (lambda *a: case.definition(*a, **extra)) if case.definition else \
        (lambda a, b: _matmul_definition(a, b, *shapes))
    gradients = []
    for which, x in enumerate(xs):
        row = []
        for index in range(len(x)):
            def loss(t, which=which, index=index):
                nudged = [list(v) for v in xs]
                nudged[which][index] = t
                return mpmath.fsum(gj * fj for gj, fj in zip(g, definition(*nudged)))
            row.append(mpmath.diff(loss, x[index]))
        gradients.append(row)
    return gradients


def _register(case):
    given = {"inputs": case.inputs, "seed": st.integers(0, 2 ** 16),
             "parameter": st.none() if case.parameter is None else case.parameter}

    @statement(f"autograd_backward_eq_mpmath_derivative[{case.name}]", about=(case.about,),
               given=given, examples=case.pinned,
               relaxed=None if case.relaxed is None else {**given, "inputs": case.relaxed})
    def backward_matches_mpmath(check, inputs, seed, parameter=None):
        import minilean
        extra = {} if case.parameter is None else {"parameter": parameter}
        for dtype in ENGINE_DTYPES:
            tensors = [engine(x, dtype, requires_grad=True) for x in inputs]
            output = case.call(minilean, *tensors, **extra)
            g_values = upstream(seed, output.shape)
            output.backward(engine(g_values, dtype))
            xs, g = [mp(x) for x in inputs], mp(numpy.atleast_1d(g_values))
            shapes = [x.shape for x in inputs]
            references = _reference_gradients(case, xs, g, shapes, extra)
            magnitudes = (case.magnitudes(xs, g, **extra) if case.magnitudes else
                          _matmul_magnitudes(xs, g, *shapes))
            roundings = case.roundings(len(xs[0]), dtype)
            for position, tensor in enumerate(tensors):
                # the gradient of an input broadcast to c copies is their sum (the graph
                # walk's unbroadcast): c - 1 more roundings
                summed = roundings + (len(g) // len(xs[position]) - 1 if case.broadcasts else 0)
                bound_factor, floor = gamma(summed, dtype), underflow(summed, dtype)
                check_gradient(check, tensor, references[position],
                               [bound_factor * m + floor for m in magnitudes[position]],
                               f"{case.name} d/dinput{position} ({dtype.__name__})")
    backward_matches_mpmath.__doc__ = (
        f"backward of {case.name} at x, applied to g, equals sum_j g_j d f_j/dx (mpmath.diff); "
        f"bound gamma_K * M with {case.formula}.")


for _case in CASES:
    _register(_case)


# The reductions' statements above reduce one vector, where any sum in the backward is over
# its only axis. The models reduce one axis of many: attention's softmax over the keys of
# (N, H, L, S) scores, cross_entropy's log_softmax over the classes of (N, C) logits, the IW
# bound's logsumexp over the draws of (K, N) log-weights. There a backward that sums over
# every axis, or over the right axis without keeping it (which broadcasts silently where
# the two axes are equal: the U-Net's self-attention of one image, (1, HW, HW)), is wrong,
# and right on one vector. So each is checked again over each axis of a matrix, slice by
# slice, against the one-vector case's definition, with its bound (the slice's n, its g,
# its magnitudes: no slice's rounding sees another's).
AXIS_REDUCTIONS = {case.name: case for case in REDUCTIONS
                   if case.name in ("logsumexp", "softmax", "log_softmax")}
AXIS_CALLS = {"logsumexp": lambda x, axis: x.logsumexp(axis),
              "softmax": lambda x, axis: x.softmax(axis),
              "log_softmax": lambda x, axis: x.log_softmax(axis)}


@st.composite
def _matrix_and_axis(draw):
    """x (r, c), r and c in 2..3 (square or not), entries in [-8, 8], and an axis 0, 1 or -1."""
    rows, cols = draw(st.integers(2, 3)), draw(st.integers(2, 3))
    return {"x": real_array(draw, (rows, cols), -8, 8), "axis": draw(st.sampled_from([0, 1, -1])),
            "seed": draw(st.integers(0, 2 ** 16))}


def _slices(shape, axis):
    """The index of each slice along ``axis`` of a matrix of ``shape``, and of its place in a
    reduced output (None where the op keeps the shape)."""
    axis = axis % 2
    return [((slice(None), j) if axis == 0 else (j, slice(None)), j)
            for j in range(shape[1 - axis])]


@statement("autograd_backward_eq_mpmath_derivative[reductions_over_an_axis]",
           about=(f"{REDUCE}.logsumexp", f"{REDUCE}.softmax", f"{REDUCE}.log_softmax"),
           given=_matrix_and_axis(), max_examples=10,
           # pinned: a square matrix (a sum not kept as an axis broadcasts along the other
           # one there, and gives wrong values, not a shape error), over each axis
           examples=[{"x": numpy.asarray([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0],
                                          [-0.5, 2.0, 1.5]]), "axis": axis, "seed": 1}
                     for axis in (0, -1)])
def reductions_over_an_axis(check, x, axis, seed):
    """logsumexp, softmax and log_softmax over one axis of a matrix: the backward of each
    slice along the axis is that slice's own, sum_j g_j d f_j/dx (mpmath.diff of the
    one-vector definition) within the one-vector statement's bound on the slice; the other
    slices' g do not enter."""
    import minilean
    for (name, case), dtype in ((item, dtype) for item in AXIS_REDUCTIONS.items()
                                for dtype in ENGINE_DTYPES):
        tensor = engine(x, dtype, requires_grad=True)
        output = AXIS_CALLS[name](tensor, axis)
        g_values = upstream(seed, output.shape)
        output.backward(engine(g_values, dtype))
        what = f"{name} over axis {axis} of {x.shape} ({dtype.__name__})"
        check.holds(tensor.grad is not None and tensor.grad.dtype == tensor.dtype
                    and tensor.grad.shape == tensor.shape, f"{what}: gradient is "
                    f"{getattr(tensor.grad, 'dtype', None)} {getattr(tensor.grad, 'shape', None)}")
        grad = tensor.grad.numpy()
        for index, place in _slices(x.shape, axis):
            xs = [mp(x[index])]
            g = mp(numpy.atleast_1d(g_values[place] if name == "logsumexp" else g_values[index]))
            reference = _reference_gradients(case, xs, g, [x[index].shape], {})[0]
            roundings = case.roundings(len(xs[0]), dtype)
            bounds = [gamma(roundings, dtype) * m + underflow(roundings, dtype)
                      for m in case.magnitudes(xs, g)[0]]
            check.close(grad[index], reference, bounds, f"{what}, slice {place}")


# --- mutants: broken backward (and forward) formulas -----------------------------------------
# One or more per statement above, each a slip a person writing that op could make. Under every
# mutant, each statement in its caught_by fails on the derandomized examples with a wrong
# gradient, none by a crash (test_mutations.py checks that); the gradients are finite except
# the naive softplus's nan in float32, which is its slip.

def _caught_by(*names):
    return [f"autograd_backward_eq_mpmath_derivative[{name}]" for name in names]


def _with_gradients_changed(original, first=None, second=None):
    """A binary op's backward with its first and/or second gradient passed through
    ``change(ctx, gradient)`` (a gradient that is None stays None)."""
    def backward(ctx, grad):
        return tuple(gradient if change is None or gradient is None else change(ctx, gradient)
                     for gradient, change in zip(original(ctx, grad), (first, second)))
    return backward


def _with_broadcast_gradient_averaged(original):
    """The binary op ``original`` (a Function class) giving b the mean of its gradient over the
    copies broadcasting made of b: its gradient divided by their number before the graph walk
    sums it over them."""
    class Averaging(original):
        @staticmethod
        def forward(ctx, a, b):
            out = original.forward(ctx, a, b)
            ctx.copies_of_b = out.size // max(b.size, 1)
            return out

        @staticmethod
        def backward(ctx, grad):
            grad_a, grad_b = original.backward(ctx, grad)
            return grad_a, (None if grad_b is None else grad_b / ctx.copies_of_b)
    return Averaging


def _with_gradients_swapped(original):
    """A binary op's backward returning its two gradients in the wrong order."""
    return lambda ctx, grad: tuple(reversed(original(ctx, grad)))


@mutant("exp backward squared", f"{ELEMENTWISE}.Exp.backward", caught_by=_caught_by("exp"))
def exp_backward_squared(original):
    """Exp.backward returns g e^(2x) instead of g e^x (the saved output used twice)."""
    return lambda ctx, grad: grad * ctx.out * ctx.out


@mutant("log backward multiplying", f"{ELEMENTWISE}.Log.backward", caught_by=_caught_by("log"))
def log_backward_multiplying(original):
    """Log.backward returns g x instead of g / x."""
    return lambda ctx, grad: grad * ctx.x


@mutant("sqrt backward without the 1/2", f"{ELEMENTWISE}.Sqrt.backward",
        caught_by=_caught_by("sqrt"))
def sqrt_backward_without_half(original):
    """Sqrt.backward returns g / sqrt(x) instead of g / (2 sqrt(x))."""
    return lambda ctx, grad: grad / ctx.out


@mutant("rsqrt backward exponent not lowered", f"{ELEMENTWISE}.Rsqrt.backward",
        caught_by=_caught_by("rsqrt"))
def rsqrt_backward_exponent_kept(original):
    """Rsqrt.backward returns -g y / 2 instead of -g y^3 / 2 (x^(-1/2) kept, not x^(-3/2))."""
    return lambda ctx, grad: grad * (-0.5) * ctx.out


@mutant("abs backward without the sign", f"{ELEMENTWISE}.Abs.backward",
        caught_by=_caught_by("abs"))
def abs_backward_unsigned(original):
    """Abs.backward returns g instead of g sign(x) (slope 1 on the negative side too)."""
    return lambda ctx, grad: grad


@mutant("abs backward with sign(0) = 1", f"{ELEMENTWISE}.Abs.backward",
        caught_by=_caught_by("abs"))
def abs_backward_sign_of_zero(original):
    """Abs.backward with sign(x) written as 1 where x >= 0, else -1: slope 1 at 0, where the
    symmetric derivative of |x| (and PyTorch's) is 0."""
    return lambda ctx, grad: numpy.where(ctx.x >= 0, grad, -grad)


@mutant("sin backward sign", f"{ELEMENTWISE}.Sin.backward", caught_by=_caught_by("sin"))
def sin_backward_sign(original):
    """Sin.backward returns -g cos x instead of g cos x (cos's minus sign copied over)."""
    return lambda ctx, grad: -original(ctx, grad)


@mutant("cos backward sign", f"{ELEMENTWISE}.Cos.backward", caught_by=_caught_by("cos"))
def cos_backward_sign(original):
    """Cos.backward returns g sin x instead of -g sin x."""
    return lambda ctx, grad: -original(ctx, grad)


@mutant("tanh backward sign", f"{ELEMENTWISE}.Tanh.backward", caught_by=_caught_by("tanh"))
def tanh_backward_plus(original):
    """Tanh.backward returns g (1 + y^2) instead of g (1 - y^2)."""
    return lambda ctx, grad: grad * (1 + ctx.out * ctx.out)


@mutant("sigmoid backward without (1 - s)", f"{ELEMENTWISE}.Sigmoid.backward",
        caught_by=_caught_by("sigmoid"))
def sigmoid_backward_output(original):
    """Sigmoid.backward returns g s instead of g s (1 - s)."""
    return lambda ctx, grad: grad * ctx.out


@mutant("relu backward without the mask", f"{ELEMENTWISE}.Relu.backward",
        caught_by=_caught_by("relu"))
def relu_backward_unmasked(original):
    """Relu.backward returns g everywhere instead of g [x > 0] (gradient passed at x < 0)."""
    return lambda ctx, grad: grad


@mutant("leaky_relu backward without the slope", f"{ELEMENTWISE}.LeakyRelu.backward",
        caught_by=_caught_by("leaky_relu"))
def leaky_relu_backward_as_relu(original):
    """LeakyRelu.backward returns g [x > 0], ReLU's, instead of g s for x < 0 (slope forgotten)."""
    return lambda ctx, grad: grad * ctx.positive


@mutant("silu backward without x sigma'(x)", f"{ELEMENTWISE}.silu_backward",
        caught_by=_caught_by("silu"))
def silu_backward_sigma_only(original):
    """silu_backward returns g sigma(x) instead of g sigma (1 + x (1 - sigma)) (product rule
    half done)."""
    return lambda x, sigma, grad: grad * sigma


@mutant("sigmoid in the tanh form", f"{ELEMENTWISE}.tail_accurate_sigmoid",
        caught_by=_caught_by("sigmoid", "silu", "gelu_tanh"))
def sigmoid_tanh_form(original):
    """sigma(x) computed as (1 + tanh(x/2)) / 2, the faster form the engine once used: right
    to the last bit near 0, but its left tail keeps only the absolute precision of 1 + tanh,
    so sigma(-8) ~ 3e-4 is off in the fourth digit in float32 (and gelu-tanh's s = sigma(w),
    w ~ -12 at x = -5, by 30%)."""
    return lambda x: (1 + numpy.tanh(x / 2)) / 2

def _gelu_backward_broken_in(approximate, original, broken):
    """Gelu.backward, broken only for the form ``approximate`` (the other keeps its own)."""
    return lambda ctx, grad: (broken if ctx.approximate == approximate else original)(ctx, grad)


@mutant("leaky_relu backward with the default slope", f"{ELEMENTWISE}.LeakyRelu.backward",
        caught_by=_caught_by("leaky_relu"))
def leaky_relu_backward_default_slope(original):
    """LeakyRelu.backward multiplies by 0.01, PyTorch's default, instead of ctx.negative_slope
    (right only for the default; the GAN's 0.2 gets a twentieth of its gradient)."""
    def backward(ctx, grad):
        from minilean.backend import array_module
        return array_module(grad).where(ctx.positive, grad, grad * grad.dtype.type(0.01))
    return backward


@mutant("gelu backward without x phi(x)", f"{ELEMENTWISE}.Gelu.backward",
        caught_by=_caught_by("gelu"))
def gelu_backward_phi_only(original):
    """Gelu.backward (exact form) returns g Phi(x) instead of g (Phi(x) + x phi(x))."""
    return _gelu_backward_broken_in("none", original, lambda ctx, grad: grad * ctx.gate)


@mutant("gelu Phi as (1 + erf) / 2", f"{ELEMENTWISE}.Gelu.forward",
        caught_by=_caught_by("gelu"))
def gelu_phi_by_erf(original):
    """Gelu.forward (exact form) takes Phi(x) as (1 + erf(x / sqrt 2)) / 2, the textbook form,
    for the erfc(-x / sqrt 2) / 2 that keeps the left tail: 1 + erf cancels, and at x = -5 it
    keeps about a tenth of Phi ~ 3e-7 in float32 (backward reads the gate forward saved).
    Caught only since the statement holds Phi relatively: its bound was absolute, 1 where
    Phi(x) now stands, and let every x < -4 pass."""
    def forward(ctx, x, approximate="none"):
        if approximate != "none":
            return original(ctx, x, approximate)
        from minilean import backend
        gate = (1 + backend.erf(x * x.dtype.type(0.5 ** 0.5))) / 2
        if ctx.recording:
            ctx.x, ctx.gate, ctx.approximate = x, gate, approximate
        return x * gate
    return forward


@mutant("softplus backward with sigma(-x)", f"{ELEMENTWISE}.Softplus.backward",
        caught_by=_caught_by("softplus"))
def softplus_backward_mirrored(original):
    """Softplus.backward returns g sigma(-x) instead of g sigma(x): the slope of
    log(1 + e^-x), a sign slip in the exponent."""
    from minilean.autograd.elementwise import tail_accurate_sigmoid
    return lambda ctx, grad: grad * tail_accurate_sigmoid(-ctx.x)


@mutant("gelu tanh backward without the 3 of (x^3)'", f"{ELEMENTWISE}.Gelu.backward",
        caught_by=_caught_by("gelu_tanh"))
def gelu_tanh_backward_cubic_slope(original):
    """Gelu.backward (tanh form) differentiates 0.044715 x^3 as 0.044715 x^2 (the 3 dropped)."""
    def broken(ctx, grad):
        x, s = ctx.x, ctx.gate
        slope = 2 * (2 / numpy.pi) ** 0.5 * (1 + 0.044715 * x * x)
        return grad * (s + x * s * (1 - s) * slope)
    return _gelu_backward_broken_in("tanh", original, broken)


@mutant("mul backward own factor", f"{ELEMENTWISE}.Mul.backward", caught_by=_caught_by("mul"))
def mul_backward_own_factor(original):
    """Mul.backward returns (g a, g b) instead of (g b, g a): each input its own value."""
    return _with_gradients_swapped(original)


@mutant("div backward sign", f"{ELEMENTWISE}.Div.backward", caught_by=_caught_by("div"))
def div_backward_sign(original):
    """Div.backward gives +a/b^2 for the denominator instead of -a/b^2."""
    return _with_gradients_changed(original, second=lambda ctx, grad_b: -grad_b)


@mutant("div backward guarding the divisor by max(b, 1e-12)", f"{ELEMENTWISE}.Div.backward",
        caught_by=_caught_by("div"))
def div_backward_guarded(original):
    """Div.backward divides g by max(b, 1e-12), a guard against a zero divisor that holds only
    for positive ones: a negative b is taken as 1e-12 (the forward right)."""
    def backward(ctx, grad):
        from minilean.backend import array_module
        divisor = ctx.b
        ctx.b = array_module(divisor).maximum(divisor, 1e-12)
        try:
            return original(ctx, grad)
        finally:
            ctx.b = divisor
    return backward


@mutant("div averaging the broadcast divisor's gradient", f"{ELEMENTWISE}.Div",
        caught_by=_caught_by("div"))
def div_broadcast_averaged(original):
    """Div gives b the mean of its gradient over the copies broadcasting made of b, not their
    sum."""
    return _with_broadcast_gradient_averaged(original)


@mutant("pow backward exponent not lowered", f"{ELEMENTWISE}.Pow.backward",
        caught_by=_caught_by("pow"))
def pow_backward_exponent_kept(original):
    """Pow.backward gives the base g b a^b instead of g b a^(b-1)."""
    return _with_gradients_changed(original, first=lambda ctx, grad_a: grad_a * ctx.a)


@mutant("maximum/minimum backward to the loser", f"{ELEMENTWISE}.PairExtremum.backward",
        caught_by=_caught_by("maximum", "minimum"))
def extremum_backward_swapped(original):
    """PairExtremum.backward returns its two gradients swapped: the losing input gets g."""
    return _with_gradients_swapped(original)


@mutant("maximum/minimum backward giving a tie wholly to b",
        f"{ELEMENTWISE}.PairExtremum.backward", caught_by=_caught_by("maximum", "minimum"))
def extremum_backward_tie_to_b(original):
    """PairExtremum.backward without the tie's half: dz/da = [a wins], so on a tie b gets all
    of g, where the symmetric derivative (and PyTorch) splits it half and half."""
    def backward(ctx, grad):
        a_wins = ctx.a > ctx.b if ctx.largest else ctx.a < ctx.b
        return grad * a_wins, grad * ~a_wins
    return backward


@mutant("clamp backward passing the gradient where x is clipped",
        f"{ELEMENTWISE}.Clamp.backward", caught_by=_caught_by("clamp"))
def clamp_backward_unmasked(original):
    """Clamp.backward gives x the gradient g everywhere, also where y is a bound (the identity's
    slope; the bounds keep theirs, so where x is clipped g counts twice)."""
    return lambda ctx, grad: (grad,) + original(ctx, grad)[1:]


@mutant("where backward with the condition inverted", f"{ELEMENTWISE}.Where.backward",
        caught_by=_caught_by("where"))
def where_backward_inverted(original):
    """Where.backward sends g to b where the condition holds and to a elsewhere."""
    return _with_gradients_swapped(original)


@mutant("add averaging the broadcast gradient", f"{ELEMENTWISE}.Add",
        caught_by=_caught_by("add_broadcast"))
def add_broadcast_averaged(original):
    """Add gives b the mean of g over the copies broadcasting made of b, not their sum."""
    return _with_broadcast_gradient_averaged(original)


@mutant("sub backward sign", f"{ELEMENTWISE}.Sub.backward", caught_by=_caught_by("sub"))
def sub_backward_sign(original):
    """Sub.backward gives b the gradient +g instead of -g."""
    return _with_gradients_changed(original, second=lambda ctx, grad_b: -grad_b)


@mutant("sum backward divided by the count", f"{REDUCE}.Sum.backward",
        caught_by=_caught_by("sum"))
def sum_backward_as_mean(original):
    """Sum.backward spreads g / n instead of g (Mean's backward)."""
    from minilean.autograd.reduce import Mean
    return Mean.backward


@mutant("mean backward not divided by the count", f"{REDUCE}.Mean.backward",
        caught_by=_caught_by("mean"))
def mean_backward_as_sum(original):
    """Mean.backward spreads g instead of g / n (Sum's backward)."""
    from minilean.autograd.reduce import Sum
    return Sum.backward


@mutant("logsumexp backward without the 1/sum", f"{REDUCE}.LogSumExp.backward",
        caught_by=_caught_by("logsumexp"))
def logsumexp_backward_unnormalised(original):
    """LogSumExp.backward returns g e^x instead of g e^(x - y) (the log's 1 / sum e^x dropped)."""
    from minilean.backend import array_module
    return lambda ctx, grad: original(ctx, grad) * array_module(grad).exp(ctx.out)


@mutant("softmax backward without the centring", f"{REDUCE}.Softmax.backward",
        caught_by=_caught_by("softmax"))
def softmax_backward_diagonal(original):
    """Softmax.backward returns s * g (the Jacobian's diagonal only)."""
    return lambda ctx, grad: ctx.out * grad


@mutant("log_softmax backward without the sum", f"{REDUCE}.LogSoftmax.backward",
        caught_by=_caught_by("log_softmax"))
def log_softmax_backward_diagonal(original):
    """LogSoftmax.backward returns g - softmax * g instead of g - softmax * sum g (the
    Jacobian's diagonal only)."""
    from minilean.backend import array_module
    return lambda ctx, grad: grad - array_module(grad).exp(ctx.out) * grad


@mutant("softmax backward's sum not kept as an axis", f"{REDUCE}.Softmax.backward",
        caught_by=_caught_by("reductions_over_an_axis"))
def softmax_backward_sum_not_kept(original):
    """Softmax.backward sums g s over the axis without keepdims: right for one vector, and
    for a square matrix (the U-Net's self-attention of one image, scores (1, HW, HW))
    broadcast along the other axis: wrong values, no shape error."""
    def backward(ctx, grad):
        return ctx.out * (grad - (grad * ctx.out).sum(axis=ctx.axis))
    return backward


@mutant("log_softmax backward summing g over every axis", f"{REDUCE}.LogSoftmax.backward",
        caught_by=_caught_by("reductions_over_an_axis"))
def log_softmax_backward_sum_of_all(original):
    """LogSoftmax.backward takes g - softmax * sum g with the sum over every element, not over
    the class axis: right for one vector (one example's logits), not for a batch."""
    from minilean.backend import array_module
    return lambda ctx, grad: grad - array_module(grad).exp(ctx.out) * grad.sum()


@mutant("logsumexp backward restoring the reduced axis as the last", f"{REDUCE}.LogSumExp.backward",
        caught_by=_caught_by("reductions_over_an_axis"))
def logsumexp_backward_last_axis(original):
    """LogSumExp.backward puts g's reduced axis back as the last (g[..., None]), not where
    it was: right over the last axis or one vector, not over the draws (axis 0) of the IW
    bound's (K, N) log-weights (for K = N broadcast, not a shape error)."""
    from minilean.backend import array_module

    def backward(ctx, grad):
        kept = grad if ctx.keepdim else grad[..., None]
        return kept * array_module(grad).exp(ctx.x - ctx.out)
    return backward


@mutant("matmul backward reshaping for the transpose", "minilean.autograd.linalg.Matmul.backward",
        caught_by=_caught_by("matmul"))
def matmul_backward_reshaped(original):
    """Matmul.backward forms B^T in dA = G B^T with a reshape to (m, k), not a transpose
    (matrices only)."""
    def backward(ctx, grad):
        _, grad_b = original(ctx, grad)
        b = ctx.b
        return grad @ b.reshape(b.shape[::-1]), grad_b
    return backward


@mutant("linear backward's weight gradient from the first row only",
        "minilean.autograd.linalg.Linear.backward", caught_by=_caught_by("linear"))
def linear_weight_gradient_first_row(original):
    """Linear.backward takes dW = G^T x from the first row of x alone (the batch's first
    example): right for a batch of one."""
    def backward(ctx, grad):
        grad_x, _, grad_bias = original(ctx, grad)
        grad_rows = grad.reshape(-1, grad.shape[-1])  # (..., out) -> (rows, out)
        return grad_x, grad_rows[:1].T @ ctx.rows[:1], grad_bias
    return backward


@mutant("linear backward's bias gradient averaged over the rows",
        "minilean.autograd.linalg.Linear.backward", caught_by=_caught_by("linear"))
def linear_bias_gradient_averaged(original):
    """Linear.backward gives b the mean of G's rows, not their sum (b is shared by every row,
    as a broadcast operand is: its gradient sums the copies)."""
    def backward(ctx, grad):
        grad_x, grad_weight, grad_bias = original(ctx, grad)
        return grad_x, grad_weight, grad_bias / (grad.size // grad.shape[-1])
    return backward


def _mse_backward_with_scale(scale_of, sum_scale=2):
    """MseLoss.backward with the mean's scale taken by ``scale_of(diff)`` and the sum's by
    ``sum_scale``."""
    def backward(ctx, grad):
        need_input, need_target = ctx.needs_input_grad
        scale = scale_of(ctx.diff) if ctx.reduction == "mean" else sum_scale
        grad_input = (grad * scale) * ctx.diff
        return (grad_input if need_input else None), (-grad_input if need_target else None)
    return backward


@mutant("mse_loss backward scaled by the first axis", "minilean.autograd.loss.MseLoss.backward",
        caught_by=_caught_by("mse_loss"))
def mse_backward_first_axis(original):
    """MseLoss.backward divides by len(diff) (the batch) instead of diff.size: the mean's
    gradient right for a vector only."""
    return _mse_backward_with_scale(lambda diff: 2 / max(diff.shape[0] if diff.ndim else 1, 1))


@mutant("mse_loss backward without the 2", "minilean.autograd.loss.MseLoss.backward",
        caught_by=_caught_by("mse_loss") + ["vqvae_trainingGradients"])
def mse_backward_without_two(original):
    """MseLoss.backward returns (a - b) / n: the square's 2 dropped."""
    return _mse_backward_with_scale(lambda diff: 1 / max(diff.size, 1), sum_scale=1)


@mutant("softplus backward as e^x / (1 + e^x)", f"{ELEMENTWISE}.Softplus.backward",
        caught_by=_caught_by("softplus"))
def softplus_backward_naive(original):
    """Softplus.backward takes its slope as e^x / (1 + e^x): sigma(x) in exact arithmetic, and
    on the engine in float64 up to x = 709, but inf / inf = nan in float32 from x = 88.7 (right
    on one dtype only)."""
    from minilean.backend import array_module

    def backward(ctx, grad):
        xp = array_module(ctx.x)
        with numpy.errstate(over="ignore", invalid="ignore"):
            e = xp.exp(ctx.x)
            return grad * (e / (1 + e))
    return backward


@mutant("neg backward passing g through", f"{ELEMENTWISE}.Neg.backward",
        caught_by=_caught_by("neg"))
def neg_backward_unsigned(original):
    """Neg.backward returns g instead of -g: every loss written as -(...) then climbs (the
    VAE's -log p(x|z) among them)."""
    return lambda ctx, grad: grad


@mutant("abs backward with the mask of relu", f"{ELEMENTWISE}.Abs.backward",
        caught_by=_caught_by("abs"))
def abs_backward_relu_mask(original):
    """Abs.backward written after Relu's: g [x > 0], slope 0 where x < 0 instead of -1 (right
    at 0 and above; only a negative input shows it, as the pinned -1.5 is)."""
    return lambda ctx, grad: grad * (ctx.x > 0)
