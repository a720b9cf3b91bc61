"""The statement object: one theorem, its hypotheses as hypothesis strategies, its checks.

A statement is registered with ``@statement(name, about=..., given=..., relaxed=...,
examples=...)`` on a function ``body(check, **example)``. The function's docstring is the
statement in plain math. ``body`` runs once per example that hypothesis draws from ``given``
(and once per pinned example) and raises
``StatementFailed`` (through ``check``) when the conclusion does not hold:

* ``check.close(computed, reference, bound, what)`` compares numbers (a float, an array, or an
  mpmath value / list of them) with a reference within a stated bound and remembers the worst
  error-to-bound ratio for the table;
* ``check.holds(condition, what)`` checks a fact that must hold exactly;
* ``with check.reference():`` marks the checks inside as checks of the 50-digit reference
  itself, not of the conclusion (two routes to one reference value, a replay against its
  formula): they fail the statement like any other, labelled "reference: ...".

``examples`` (optional) are pinned examples, dicts like the strategy's, run in their order
before the drawn ones on every run (hypothesis's ``@example``): a configuration that shows a
slip which the drawn examples show only now and then, so that catching it does not rest on
the draws of one hypothesis release (which draws other derandomized examples than the next).

``relaxed`` (optional) is the same strategy with one hypothesis dropped; ``counterexample()``
asks hypothesis to find an example there where the conclusion fails, which shows the
hypothesis is needed. An example on which a check of the reference fails is not one: it shows
the reference fragile there, not the hypothesis needed. ``about`` names the minilean functions
the statement is about, as "module.function"; when one of them cannot be imported the
statement is reported as missing and skipped instead of run.
"""
import contextlib
import importlib
import math
from dataclasses import dataclass

import mpmath
import numpy
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import example as explicit_example
from hypothesis import strategies as st
from hypothesis.errors import UnsatisfiedAssumption

DIGITS = 50  # mpmath working precision (decimal digits) of every reference value
REGISTRY = {}


class StatementFailed(AssertionError):
    """The conclusion of a statement did not hold on an example."""


class ReferenceFailed(StatementFailed):
    """A check of the reference itself failed (``Check.reference``): the statement fails, but
    the example is no counterexample to its conclusion."""


@dataclass
class Outcome:
    """What a run of one statement found: the row of the runner's table."""
    name: str
    summary: str
    examples: int = 0
    worst_error: float = 0.0      # None on a FAIL that no comparison made (a condition that
    worst_bound: float = 0.0      # did not hold, or a crash): no error / bound to show
    status: str = "pass"          # "pass", "FAIL" or "missing"
    message: str = ""
    statistical_tests: int = 0    # made by proofs.statistics, within its budget per run
    gaussian_law_tests: int = 0   # of them, tests of a Gaussian law (GAUSSIAN_LAWS lists who)


class Check:
    """Collects the comparisons of one statement across all its examples."""

    def __init__(self):
        self.worst_ratio, self.worst_error, self.worst_bound = -1.0, 0.0, 0.0
        self.failure = None  # (error, bound) of the comparison that failed the example last run
        self.statistical_tests = 0  # counted by proofs.statistics (each can be a false alarm)
        self.gaussian_law_tests = 0  # of them, those of gaussian_law_checks

    def close(self, computed, reference, bound, what):
        """Assert |computed - reference| <= bound elementwise (bound 0 means exactly equal).
        An infinite bound fails: it would let any value through, NaN included."""
        computed, reference = _flat(computed), _flat(reference)
        bounds = _flat(bound) if numpy.ndim(bound) or isinstance(bound, list) else [bound] * len(
            computed)
        if not len(computed) == len(reference) == len(bounds):
            raise StatementFailed(f"{what}: {len(computed)} computed values for "
                                  f"{len(reference)} reference values")
        for value, ref, limit in zip(computed, reference, bounds):
            finite = not (mpmath.isnan(value) or mpmath.isinf(value))
            error = float(abs(mpmath.mpf(value) - ref)) if finite else numpy.inf
            limit = float(limit)
            if not math.isfinite(limit):
                raise StatementFailed(f"{what}: bound {limit} is not finite (a check no value "
                                      f"could fail)")
            ratio = error / limit if limit > 0 else (0.0 if error == 0 else numpy.inf)
            if ratio > self.worst_ratio:
                self.worst_ratio, self.worst_error, self.worst_bound = ratio, error, limit
            if not error <= limit:
                self.failure = (error, limit)
                raise StatementFailed(f"{what}: computed {value!r}, reference "
                                      f"{mpmath.nstr(ref, 17)}, error {error:.3g} > bound "
                                      f"{limit:.3g}")

    def holds(self, condition, what):
        if not bool(condition):
            raise StatementFailed(what)

    @contextlib.contextmanager
    def reference(self):
        """The checks inside are of the reference, not of the conclusion: a failure there
        raises ReferenceFailed, its message prefixed "reference: "."""
        try:
            yield
        except ReferenceFailed:
            raise
        except StatementFailed as error:
            raise ReferenceFailed(f"reference: {error}") from None


def _flat(values):
    """A flat list of numbers from a float, an mpf, a list of them, an array or a Tensor."""
    if hasattr(values, "numpy"):
        values = values.numpy()
    if isinstance(values, (list, tuple)):
        return [item for value in values for item in _flat(value)]
    if isinstance(values, mpmath.mpf):
        return [values]
    return [float(v) if not isinstance(v, mpmath.mpf) else v
            for v in numpy.asarray(values, dtype=object).reshape(-1)]


@dataclass
class Statement:
    name: str
    body: object
    about: tuple
    given: object
    relaxed: object = None
    max_examples: int = 20
    module: str = ""
    examples: tuple = ()  # pinned examples, run before the drawn ones on every run

    @property
    def doc(self):
        return (self.body.__doc__ or "").strip()

    @property
    def summary(self):
        """The first line of the docstring: the statement in one line of math."""
        return self.doc.splitlines()[0] if self.doc else ""

    def missing(self):
        """The first ``about`` function that cannot be imported, as a reason, or None."""
        for dotted in self.about:
            module_name, _, attribute = dotted.rpartition(".")
            try:
                target = importlib.import_module(module_name)
            except ImportError as error:
                return f"{dotted} not importable ({error})"
            for part in attribute.split(":"):
                if not hasattr(target, part):
                    return f"{dotted} does not exist yet"
                target = getattr(target, part)
        return None

    def _property(self, strategy, check, counter, max_examples, shrink, derandomize,
                  pinned_only=False):
        phases = ((Phase.explicit,) if pinned_only else tuple(Phase) if shrink
                  else (Phase.explicit, Phase.reuse, Phase.generate))
        fixed = {"derandomize": True, "database": None} if derandomize else {}

        # one failure reported, the first: several (pinned examples that fail in distinct
        # ways) come as an ExceptionGroup, whose message names none of them
        @settings(max_examples=max_examples, deadline=None, phases=phases, **fixed,
                  report_multiple_bugs=False,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(strategy)
        def run_example(example):
            counter[0] += 1
            check.failure = None
            worst = check.worst_ratio, check.worst_error, check.worst_bound
            try:
                with mpmath.workdps(DIGITS):
                    self.body(check, **example)
            except UnsatisfiedAssumption:
                # the statement's hypothesis, computed in the body (``assume``), does not hold:
                # no example of the statement, so not one tried, nor its comparisons the worst
                counter[0] -= 1
                check.worst_ratio, check.worst_error, check.worst_bound = worst
                raise
        for pinned in reversed(self.examples):  # hypothesis runs the last one applied first
            run_example = explicit_example(pinned)(run_example)
        return run_example

    def run(self, max_examples=None, shrink=True, derandomize=False, pinned_only=False):
        """Run the statement over hypothesis examples and return its Outcome (never raises
        for a failing statement: the Outcome says FAIL and why). ``derandomize``: the same
        examples on every run (for the mutation suite, whose verdict must not be luck);
        ``pinned_only``: the pinned examples alone, none drawn."""
        outcome = Outcome(self.name, self.summary)
        reason = self.missing()
        if reason:
            outcome.status, outcome.message = "missing", reason
            return outcome
        check, counter = Check(), [0]
        try:
            self._property(self.given, check, counter, max_examples or self.max_examples,
                           shrink, derandomize, pinned_only)()
        except Exception as error:  # a failed conclusion, or the code under test crashing
            outcome.status = "FAIL"
            outcome.message = f"{type(error).__name__}: {error}".splitlines()[0]
        outcome.examples = counter[0]
        # a failure is reported on the example hypothesis ran last (the shrunk one): the table
        # shows that example's failing comparison, as the message does, not one seen earlier;
        # a failure no comparison made has none (the worst passing one read as the failure's)
        outcome.worst_error, outcome.worst_bound = (
            (check.failure or (None, None)) if outcome.status == "FAIL"
            else (check.worst_error, check.worst_bound))
        outcome.statistical_tests = check.statistical_tests
        outcome.gaussian_law_tests = check.gaussian_law_tests
        return outcome

    def counterexample(self, max_examples=200):
        """An example of ``relaxed`` on which the conclusion fails (hypothesis ``find``); one on
        which a check of the reference fails first is passed over (the conclusion is then
        unchecked there)."""
        def fails(example):
            try:
                with mpmath.workdps(DIGITS):
                    self.body(Check(), **example)
            except ReferenceFailed:
                return False
            except StatementFailed:
                return True
            return False
        return find(self.relaxed, fails, settings=settings(
            max_examples=max_examples, deadline=None, database=None,
            phases=(Phase.generate,),  # the first counterexample will do: no shrinking
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


def _as_strategy(given_):
    if isinstance(given_, dict):
        return st.fixed_dictionaries(given_)
    return given_


def statement(name, about, given, relaxed=None, max_examples=20, examples=()):
    """Register ``body`` as the statement ``name`` (TorchLean's name where it has one), with
    ``examples`` pinned (module docstring)."""
    def register(body):
        if name in REGISTRY:
            raise ValueError(f"statement {name!r} is registered twice")
        REGISTRY[name] = Statement(name, body, tuple(about), _as_strategy(given),
                                   None if relaxed is None else _as_strategy(relaxed),
                                   max_examples, body.__module__, tuple(examples))
        return body
    return register


def load_all():
    """Import every statements module (registering them) and return the registry."""
    importlib.import_module("proofs.statements")
    return REGISTRY


def select(pattern=None):
    """The registered statements whose name contains ``pattern`` (all when None), in order."""
    statements = load_all().values()
    if pattern is None:
        return list(statements)
    return [s for s in statements if pattern.lower() in s.name.lower()]
