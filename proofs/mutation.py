"""The mutation suite: broken implementations swapped into minilean, each of which some
statement must catch. A check that no broken implementation can fail proves nothing.

``@mutant(name, target, caught_by)`` registers a factory ``original -> broken replacement``.
``target`` is "package.module.function" or "package.module.Class.method". While a mutant is
applied, every loaded minilean module that holds the original object (``from x import f``
copies included) sees the replacement instead, so losses built from the function are broken
too. ``run_mutant`` runs the ``caught_by`` statements against it; the mutant is caught when
every one of them fails. So ``caught_by`` is a claim about each statement it names (this
statement can fail, and does on this bug), and ``test_mutations.py`` asks that every statement
be named by some mutant.
"""
import importlib
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy

from proofs.framework import load_all

MUTANTS = {}


@dataclass
class Mutant:
    name: str
    target: str
    make_broken: object
    caught_by: tuple

    @property
    def description(self):
        return (self.make_broken.__doc__ or "").strip().splitlines()[0]


def mutant(name, target, caught_by):
    def register(make_broken):
        if name in MUTANTS:
            raise ValueError(f"mutant {name!r} is registered twice")
        MUTANTS[name] = Mutant(name, target, make_broken, tuple(caught_by))
        return make_broken
    return register


def _resolve(target):
    """(owner, attribute name) for a dotted target; owner is a module or a class."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(f"cannot import any module of {target}")


@contextmanager
def applied(mutant_):
    """Swap the broken implementation in for the duration of the block."""
    owner, attribute = _resolve(mutant_.target)
    raw = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    original = getattr(owner, attribute)
    broken = mutant_.make_broken(original)
    if broken is None:  # a factory without its return: the function None, "caught" by any call
        raise TypeError(f"mutant {mutant_.name!r} made no broken implementation (its factory "
                        f"returned None)")
    if isinstance(raw, staticmethod):
        broken = staticmethod(broken)
    holders = [owner] + [module for name, module in list(sys.modules.items())
                         if name.startswith("minilean") and module is not owner
                         and getattr(module, attribute, None) is original]
    for holder in holders:
        setattr(holder, attribute, broken)
    try:
        yield
    finally:
        setattr(owner, attribute, raw)
        for holder in holders[1:]:
            setattr(holder, attribute, original)


@contextmanager
def silenced():
    """No warnings: a broken implementation may well divide 0 by 0, or broadcast where
    mse_loss warns, and NumPy's warnings and the engine's would only interleave with the
    table and the test report (the statement's verdict is what counts)."""
    with numpy.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_mutant(mutant_, max_examples=10):
    """{statement name: Outcome} of the catching statements run against the mutant."""
    statements = load_all()
    outcomes = {}
    for name in mutant_.caught_by:
        if statements[name].missing():
            outcomes[name] = statements[name].run()
            continue
        with applied(mutant_), silenced():
            outcomes[name] = statements[name].run(max_examples=max_examples, shrink=False,
                                                  derandomize=True)
    return outcomes


def verdict(outcomes):
    """"caught" (every catching statement whose functions exist fails), "MISSED" (one of them
    passes) or "not run" (every catching statement's functions missing)."""
    statuses = {outcome.status for outcome in outcomes.values()} - {"missing"}
    if not statuses:
        return "not run"
    return "caught" if statuses == {"FAIL"} else "MISSED"
