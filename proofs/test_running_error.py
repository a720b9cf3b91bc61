"""The rules of running_error.py, each checked against the engine's own float32 arithmetic.

Every operand is taken at its exact value and at both ends of its carried error, and the
engine's operation is done on those values. Each check asserts two things:

- sound: no error reached exceeds the carried bound (a bound that is too small would fail the
  correct engine, as a false alarm);
- tight: some error reached comes close to the bound (its share is asserted, case by case). A
  bound that has grown loose lets a statement pass a broken engine.

The statements only ever see these rules through whole layers, where the bounds have room to
spare, so a rule off by a term or a factor goes unnoticed there.
"""
import functools
import itertools
import operator

import mpmath
import numpy
import pytest

from minilean.autograd.elementwise import tail_accurate_sigmoid
from proofs.framework import DIGITS
from proofs.running_error import Carried

F32 = numpy.float32
TINY_PRODUCT = 2.0 ** -75  # two operands of this size multiply into float32's subnormals


def carried(value, error=0.0):
    return Carried(mpmath.mpf(value), mpmath.mpf(error), F32)


def engine_operands(operand):
    """The float32 values the engine may hold for ``operand``: its exact value and the two
    ends of its error (each exactly a float32, so the engine's value is the one meant)."""
    values = []
    for sign in (-1, 0, 1):
        exact = operand.value + sign * operand.error
        assert mpmath.mpf(float(F32(float(exact)))) == exact, f"{exact} is not a float32"
        values.append(F32(float(exact)))
    return values


def reached(exact, computed):
    return abs(mpmath.mpf(float(computed)) - exact)


def largest_share(cases):
    """``cases``: (bound, [(exact, engine's value), ...]) pairs. Asserts that every error is
    within its bound; returns the largest share of a bound that an error reaches."""
    share = 0
    for bound, outcomes in cases:
        for exact, computed in outcomes:
            error = reached(exact, computed)
            assert error <= bound.error, f"{computed} is {error} from {exact}, bound {bound.error}"
            if 0 < bound.error < mpmath.inf:
                share = max(share, error / bound.error)
    return share


# op: (the engine's float32 operation, the same operator on Carried values)
BINARY = {"+": (numpy.add, operator.add), "-": (numpy.subtract, operator.sub),
          "*": (numpy.multiply, operator.mul), "/": (numpy.divide, operator.truediv)}

# Operand pairs (value, error) whose ends are float32s: errors larger than the rounding, a
# divisor whose error reaches it (it may be 0: no bound), mixed signs
WITH_ERRORS = [((1.0, 0.25), (1.0, 0.25)), ((3.0, 0.5), (-1.5, 0.125)),
               ((-2.0, 0.0), (0.75, 0.25)), ((1.0, 0.5), (0.5, 0.5))]


def exact_pairs(seed=0, count=400):
    """Exact float32 pairs, in two groups: of ordinary size (the rounding is relative) and of a
    size whose products fall in the subnormals (the rounding is absolute)."""
    rng = numpy.random.default_rng(seed)
    ordinary = rng.uniform(-4, 4, size=(count, 2))
    tiny = ordinary * TINY_PRODUCT
    return [[((float(a), 0.0), (float(b), 0.0)) for a, b in pairs.astype(F32)]
            for pairs in (ordinary, tiny)]


@pytest.mark.parametrize("op", BINARY)
def test_one_operation_bounds_the_error_of_its_operands_and_its_rounding(op):
    """Each group tight on its own: the operands' errors, a relative rounding (up to u |x|), an
    absolute one (round to nearest reaches half the least subnormal, the bound's whole one)."""
    engine, exact_op = BINARY[op]
    with mpmath.workdps(DIGITS):
        for group, reaches in zip([WITH_ERRORS, *exact_pairs()], (0.9, 0.9, 0.4)):
            cases = []
            for a, b in group:
                a, b = carried(*a), carried(*b)
                bound = exact_op(a, b)
                with numpy.errstate(divide="ignore"):
                    outcomes = [(bound.value, engine(x, y)) for x, y in
                                itertools.product(engine_operands(a), engine_operands(b))]
                cases.append((bound, outcomes))
            assert largest_share(cases) >= reaches


def test_a_plain_number_is_an_exact_operand():
    """On either side (the formulas write 1 - x, 2 * x, 1 / x; none writes a number + x)."""
    with mpmath.workdps(DIGITS):
        for op, (_, exact_op) in BINARY.items():
            pairs = [(carried(3.0, 0.5), 1.5)] + ([(1.5, carried(3.0, 0.5))] if op != "+" else [])
            for left, right in pairs:
                as_number = exact_op(left, right)
                lifted = exact_op(*(carried(x) if isinstance(x, float) else x
                                    for x in (left, right)))
                assert (as_number.value, as_number.error) == (lifted.value, lifted.error), op


# (q, error): q well above its error (e / sqrt q is the bound), below 1, and below its error
# (sqrt e is), then exact squares and non-squares
SQUARES = [(4.0, 2.0 ** -10), (0.25, 2.0 ** -12), (2.0 ** -20, 2.0 ** -10), (2.0, 0.0),
           (0.5625, 0.0), (3.0, 0.0), (2.0 ** -140, 0.0)]


def test_sqrt_bounds_the_error_of_its_operand_and_its_rounding():
    cases = []
    with mpmath.workdps(DIGITS):
        for q in SQUARES:
            q = carried(*q)
            bound = q.sqrt()
            cases.append((bound, [(bound.value, numpy.sqrt(x)) for x in engine_operands(q)
                                  if x >= 0]))  # the engine's squares are never negative
        largest_share(cases)
        # each regime's own bound is reached: e / sqrt(q) within a factor 2 (q' = q + e reaches
        # e / (sqrt q' + sqrt q)), with q above and below 1, then sqrt(e) for q below e
        assert [largest_share([case]) >= 0.4 for case in cases[:3]] == [True] * 3


def test_sigmoid_bounds_the_error_of_its_argument_and_its_library_calls():
    """The exact arguments reach more than 3u (exp's own error among them): counting fewer than
    the library's roundings would fail the correct engine."""
    drawn = numpy.random.default_rng(0).uniform(-30, 30, size=2000).astype(F32)
    cases = []
    with mpmath.workdps(DIGITS):
        for x in [(0.0, 2.0 ** -4), (3.0, 2.0 ** -6), (-20.0, 0.5), (-87.5, 0.0),
                  *((float(x), 0.0) for x in drawn)]:
            x = carried(*x)
            bound = x.sigmoid()
            cases.append((bound, [(bound.value, tail_accurate_sigmoid(numpy.asarray([value]))[0])
                                  for value in engine_operands(x)]))
        assert largest_share(cases) >= 0.9  # at 0, where sigma's slope is its greatest, 1/4


def test_tanh_bounds_the_error_of_its_argument_and_its_library_call():
    """Sound on arguments carrying an error (tanh's slope, 1 at 0, carries it whole) and on
    exact ones across the range, to float32's subnormals, where NumPy's tanh is its own
    rounding."""
    drawn = numpy.random.default_rng(0).uniform(-10, 10, size=2000).astype(F32)
    cases = []
    with mpmath.workdps(DIGITS):
        for x in [(0.0, 2.0 ** -4), (0.5, 2.0 ** -6), (-3.0, 0.25), (2.0 ** -140, 0.0),
                  *((float(x), 0.0) for x in drawn)]:
            x = carried(*x)
            bound = x.tanh()
            cases.append((bound, [(bound.value, numpy.tanh(value))
                                  for value in engine_operands(x)]))
        assert largest_share(cases) >= 0.9  # at 0, where tanh's slope is its greatest, 1


@pytest.mark.parametrize("order", ["pairwise", "left to right"])
def test_a_sum_bounds_its_terms_errors_and_its_roundings_in_any_order(order):
    rng = numpy.random.default_rng(0)
    cases = []
    with mpmath.workdps(DIGITS):
        # the last: terms of 0 give or take 1, whose errors are all of their magnitude
        for count, error, top in ((1, 0.25, 4), (2, 0.0, 4), (9, 0.0, 4), (200, 0.0, 4),
                                  (9, 2.0 ** -8, 4), (5, 1.0, 0)):
            values = rng.uniform(0, top, size=count).astype(F32)
            terms = [carried(float(value), error) for value in values]
            bound = Carried.total(terms)
            outcomes = []
            for sign in (-1, 0, 1):  # every term at the same end of its error
                shifted = values + F32(sign * error)
                computed = (numpy.sum(shifted) if order == "pairwise"
                            else functools.reduce(numpy.add, shifted, F32(0)))
                outcomes.append((bound.value, computed))
            cases.append((bound, outcomes))
            if count == 1:
                assert bound.error == terms[0].error  # one term: nothing is rounded
        assert largest_share(cases) >= 0.9  # the terms' errors, added up


def test_mean_and_centered_are_the_engines_sum_then_division_and_var_s_shift():
    values = numpy.asarray([1.5, -2.25, 3.0, 0.125], F32)
    with mpmath.workdps(DIGITS):
        terms = [carried(float(value), 2.0 ** -10) for value in values]
        mean = Carried.mean(terms)
        expected = Carried.total(terms) / len(terms)
        assert (mean.value, mean.error) == (expected.value, expected.error)
        centered = Carried.centered(terms)
        exact_mean = mpmath.fsum(mpmath.mpf(float(v)) for v in values) / len(values)
        for term, value in zip(centered, values):
            assert abs(term.value - (mpmath.mpf(float(value)) - exact_mean)) < mpmath.mpf(10) ** -40
        shifted = values - values[0]
        engine = shifted - numpy.sum(shifted) / F32(len(values))
        for term, computed in zip(centered, engine):
            assert reached(term.value, computed) <= term.error


def test_a_constant_carries_its_distance_from_the_dtypes_value():
    with mpmath.workdps(DIGITS):
        third = mpmath.mpf(1) / 3
        constant = Carried.constant(third, F32)
        assert constant.value == third
        assert constant.error == abs(mpmath.mpf(float(F32(1 / 3))) - third) > 0
        assert Carried.constant(mpmath.mpf(0.5), F32).error == 0
