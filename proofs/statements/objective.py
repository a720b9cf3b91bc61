"""Objective algebra (TorchLean ``Latent/Objective.lean``) on ``minilean.models.objectives``.

weightedTwoTerm(w, {base, reg}) = base + w reg and weightedThreeTerm(w, {base, middle, reg}) =
base + middle + w reg. Each statement is checked in mpmath (exact: these are identities and an
order fact over the reals) and on the engine in three ways: Python floats, float64 tensors and
float32 tensors. Zero terms are exact in floating point too (w * 0 = +-0 and x + (+-0) = x), so
those checks use bound 0; monotonicity in w is exact as well because rounding is monotone
(a <= b implies fl(a) <= fl(b)), so fl(w1 r) <= fl(w2 r) and fl(base + .) keeps the order.
Values are compared with mpmath within gamma_2 * (|base| + |middle| + |w reg|): every term
passes through at most two roundings (the product, then one or two additions), plus two
smallest subnormals where w reg underflows.
"""
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, host, mp, reals, underflow

ABOUT_TWO = ("minilean.models.objectives.weighted_two_term",)
ABOUT_THREE = ("minilean.models.objectives.weighted_three_term",)


def _evaluations(function_name, terms, weight):
    """(label, dtype, value) of the objective on Python floats and on tensors of each dtype."""
    from minilean.models import objectives
    function = getattr(objectives, function_name)
    yield "python float", None, float(function(*terms, weight))
    for dtype in ENGINE_DTYPES:
        tensors = [engine([term], dtype) for term in terms]
        yield dtype.__name__, dtype, float(host(function(*tensors, weight))[0])


def _exact_value(check, function_name, terms, weight, expected, what):
    for label, _, value in _evaluations(function_name, terms, weight):
        check.close(value, mp(expected), 0, f"{what} ({label})")


def _value_within_rounding(check, function_name, terms, weight):
    """The engine value against base + ... + w reg in mpmath, within gamma_2 sum |terms| plus
    the product's underflow (w reg can fall below the smallest normal: Higham's additive
    term, one smallest subnormal per rounding)."""
    *unweighted, regularizer = mp(list(terms))
    exact = sum(unweighted) + mp(weight) * regularizer
    magnitude = sum(abs(t) for t in unweighted) + abs(mp(weight) * regularizer)
    for label, dtype, value in _evaluations(function_name, terms, weight):
        bound = gamma(2, dtype or float) * magnitude + underflow(2, dtype or numpy.float64)
        check.close(value, exact, bound, f"value ({label})")


def _equals_base_plus_middle(check, base, middle, weight, regularizer):
    """weightedThreeTerm = base + middle: exactly in mpmath; on the engine base + middle
    rounds once and adding w * reg = +-0 then changes nothing, so the bound is gamma_1."""
    exact_sum = mp(base) + mp(middle)
    check.close(exact_sum + mp(weight) * mp(regularizer), exact_sum, 0, "mpmath")
    for label, dtype, value in _evaluations("weighted_three_term", (base, middle, regularizer),
                                            weight):
        check.close(value, exact_sum, gamma(1, dtype or float) * abs(exact_sum),
                    f"engine ({label})")


@statement("weightedTwoTerm_zero_regularizer", about=ABOUT_TWO,
           given={"base": reals(), "weight": reals(), "regularizer": st.just(0.0)},
           relaxed={"base": reals(), "weight": reals(), "regularizer": reals()})
def weighted_two_term_zero_regularizer(check, base, weight, regularizer):
    """reg = 0  =>  weightedTwoTerm(w, {base, reg}) = base, for every weight w."""
    check.close(mp(base) + mp(weight) * mp(regularizer), mp(base), 0, "mpmath")
    _exact_value(check, "weighted_two_term", (base, regularizer), weight, base, "engine")


@statement("weightedTwoTerm_zero_weight", about=ABOUT_TWO,
           given={"base": reals(), "weight": st.just(0.0), "regularizer": reals()},
           relaxed={"base": reals(), "weight": reals(), "regularizer": reals()},
           # pinned: terms that differ, neither 0 (equal terms hide which one w weighs)
           examples=[{"base": 1.5, "weight": 0.0, "regularizer": -2.0}])
def weighted_two_term_zero_weight(check, base, weight, regularizer):
    """w = 0  =>  weightedTwoTerm(w, {base, reg}) = base, for every regulariser reg."""
    check.close(mp(base) + mp(weight) * mp(regularizer), mp(base), 0, "mpmath")
    _exact_value(check, "weighted_two_term", (base, regularizer), weight, base, "engine")


def _ordered_pair(low, high):
    return st.tuples(reals(low, high), reals(low, high)).map(sorted)


@statement("weightedTwoTerm_mono_weight", about=ABOUT_TWO,
           given={"base": reals(), "weights": _ordered_pair(-10, 10),
                  "regularizer": reals(0.0, 100.0)},
           relaxed={"base": reals(), "weights": _ordered_pair(-10, 10),
                    "regularizer": reals()},
           # pinned: a negative weight below a positive one, a regulariser above 0
           examples=[{"base": 1.0, "weights": [-2.0, 1.0], "regularizer": 3.0}])
def weighted_two_term_mono_weight(check, base, weights, regularizer):
    """w1 <= w2 and 0 <= reg  =>  weightedTwoTerm(w1, t) <= weightedTwoTerm(w2, t)."""
    low, high = weights
    check.holds(mp(base) + mp(low) * mp(regularizer) <= mp(base) + mp(high) * mp(regularizer),
                "mpmath: value(w1) > value(w2)")
    for weight in weights:
        _value_within_rounding(check, "weighted_two_term", (base, regularizer), weight)
    for (label, _, at_low), (_, _, at_high) in zip(
            _evaluations("weighted_two_term", (base, regularizer), low),
            _evaluations("weighted_two_term", (base, regularizer), high)):
        check.holds(at_low <= at_high, f"{label}: value(w1) = {at_low} > value(w2) = {at_high}")


@statement("weightedThreeTerm_zero_regularizer", about=ABOUT_THREE,
           given={"base": reals(), "middle": reals(), "weight": reals(),
                  "regularizer": st.just(0.0)},
           relaxed={"base": reals(), "middle": reals(), "weight": reals(),
                    "regularizer": reals()})
def weighted_three_term_zero_regularizer(check, base, middle, weight, regularizer):
    """reg = 0  =>  weightedThreeTerm(w, {base, middle, reg}) = base + middle, for every w."""
    _equals_base_plus_middle(check, base, middle, weight, regularizer)


@statement("weightedThreeTerm_zero_middle_zero_regularizer", about=ABOUT_THREE,
           given={"base": reals(), "middle": st.just(0.0), "weight": reals(),
                  "regularizer": st.just(0.0)},
           relaxed={"base": reals(), "middle": reals(), "weight": reals(),
                    "regularizer": st.just(0.0)})
def weighted_three_term_zero_middle_zero_regularizer(check, base, middle, weight, regularizer):
    """middle = 0 and reg = 0  =>  weightedThreeTerm(w, {base, middle, reg}) = base."""
    check.close(mp(base) + mp(middle) + mp(weight) * mp(regularizer), mp(base), 0, "mpmath")
    _exact_value(check, "weighted_three_term", (base, middle, regularizer), weight, base,
                 "engine")


@statement("weightedThreeTerm_zero_weight", about=ABOUT_THREE,
           given={"base": reals(), "middle": reals(), "weight": st.just(0.0),
                  "regularizer": reals()},
           relaxed={"base": reals(), "middle": reals(), "weight": reals(),
                    "regularizer": reals()},
           # pinned: terms that differ, none 0 (equal terms hide which one w weighs)
           examples=[{"base": 1.5, "middle": 0.5, "weight": 0.0, "regularizer": -2.0}])
def weighted_three_term_zero_weight(check, base, middle, weight, regularizer):
    """w = 0  =>  weightedThreeTerm(w, {base, middle, reg}) = base + middle."""
    _equals_base_plus_middle(check, base, middle, weight, regularizer)


@statement("weightedThreeTerm_mono_weight", about=ABOUT_THREE,
           given={"base": reals(), "middle": reals(), "weights": _ordered_pair(-10, 10),
                  "regularizer": reals(0.0, 100.0)},
           relaxed={"base": reals(), "middle": reals(), "weights": _ordered_pair(-10, 10),
                    "regularizer": reals()},
           # pinned: a negative weight below a positive one, a regulariser above 0
           examples=[{"base": 1.0, "middle": 0.5, "weights": [-2.0, 1.0], "regularizer": 3.0}])
def weighted_three_term_mono_weight(check, base, middle, weights, regularizer):
    """w1 <= w2 and 0 <= reg  =>  weightedThreeTerm(w1, t) <= weightedThreeTerm(w2, t)."""
    low, high = weights
    fixed = mp(base) + mp(middle)
    check.holds(fixed + mp(low) * mp(regularizer) <= fixed + mp(high) * mp(regularizer),
                "mpmath: value(w1) > value(w2)")
    terms = (base, middle, regularizer)
    for weight in weights:
        _value_within_rounding(check, "weighted_three_term", terms, weight)
    for (label, _, at_low), (_, _, at_high) in zip(
            _evaluations("weighted_three_term", terms, low),
            _evaluations("weighted_three_term", terms, high)):
        check.holds(at_low <= at_high, f"{label}: value(w1) = {at_low} > value(w2) = {at_high}")


# --- mutants: broken objectives that these statements must catch ---------------------------

@mutant("two-term weight on the base", "minilean.models.objectives.weighted_two_term",
        caught_by=["weightedTwoTerm_zero_regularizer", "weightedTwoTerm_zero_weight",
                   "generatorLoss_eq_weightedTwoTerm"])
def weight_on_base(original):
    """weighted_two_term(a, b, w) = w a + b (the weight multiplies the wrong term)."""
    return lambda a, b, weight: weight * a + b


@mutant("two-term weight squared", "minilean.models.objectives.weighted_two_term",
        caught_by=["weightedTwoTerm_mono_weight"])
def weight_squared(original):
    """weighted_two_term(a, b, w) = a + w^2 b (not monotone for negative weights)."""
    return lambda a, b, weight: a + (weight * weight) * b


@mutant("two-term weight forgotten", "minilean.models.objectives.weighted_two_term",
        caught_by=["weightedTwoTerm_zero_weight", "weightedTwoTerm_mono_weight"])
def weight_forgotten(original):
    """weighted_two_term(a, b, w) = a + b (beta never applied: monotone in w, by a wrong
    value)."""
    return lambda a, b, weight: a + b


@mutant("three-term weight on the middle", "minilean.models.objectives.weighted_three_term",
        caught_by=["weightedThreeTerm_zero_weight", "weightedThreeTerm_zero_regularizer",
                   "discriminatorLoss_eq_weightedThreeTerm"])
def weight_on_middle(original):
    """weighted_three_term(a, b, c, w) = a + w b + c (the commitment weight on the codebook)."""
    return lambda a, b, c, weight: a + weight * b + c


@mutant("three-term drops the middle", "minilean.models.objectives.weighted_three_term",
        caught_by=["weightedThreeTerm_zero_weight", "weightedThreeTerm_zero_regularizer"])
def drops_middle(original):
    """weighted_three_term(a, b, c, w) = a + w c (the middle term forgotten)."""
    return lambda a, b, c, weight: a + weight * c


@mutant("three-term weight on the base", "minilean.models.objectives.weighted_three_term",
        caught_by=["weightedThreeTerm_zero_middle_zero_regularizer",
                   "weightedThreeTerm_zero_weight", "weightedThreeTerm_zero_regularizer"])
def three_term_weight_on_base(original):
    """weighted_three_term(a, b, c, w) = w a + b + c (the weight multiplies the first term)."""
    return lambda a, b, c, weight: weight * a + b + c


@mutant("three-term weight squared", "minilean.models.objectives.weighted_three_term",
        caught_by=["weightedThreeTerm_mono_weight"])
def three_term_weight_squared(original):
    """weighted_three_term(a, b, c, w) = a + b + w^2 c (not monotone for negative weights)."""
    return lambda a, b, c, weight: a + b + (weight * weight) * c


@mutant("three-term weight forgotten", "minilean.models.objectives.weighted_three_term",
        caught_by=["weightedThreeTerm_zero_weight", "weightedThreeTerm_mono_weight"])
def three_term_weight_forgotten(original):
    """weighted_three_term(a, b, c, w) = a + b + c (the commitment weight never applied:
    monotone in w, by a wrong value)."""
    return lambda a, b, c, weight: a + b + c
