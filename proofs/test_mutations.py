"""The mutation suite: every broken implementation is caught by each statement that claims it,
and every statement is shown to catch one."""
import pytest

from proofs.framework import load_all
from proofs.mutation import MUTANTS, _resolve, applied, run_mutant, verdict

STATEMENTS = load_all()


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_by_each_statement_it_names(name):
    outcomes = run_mutant(MUTANTS[name])
    result = verdict(outcomes)
    if result == "not run":
        pytest.skip("; ".join(o.message for o in outcomes.values()))
    assert result == "caught", {n: o.status for n, o in outcomes.items()}


@pytest.mark.parametrize("name", [name for name, statement in STATEMENTS.items()
                                  if statement.examples])
def test_pinned_examples_alone_catch_every_mutant_naming_the_statement(name):
    """Pinned examples are there so that catching a slip does not rest on the draws of one
    hypothesis release: on its pinned examples alone, a statement fails under each mutant
    that names it."""
    statement = STATEMENTS[name]
    if statement.missing():
        pytest.skip(statement.missing())
    missed = []
    for mutant_ in (mutant_ for mutant_ in MUTANTS.values() if name in mutant_.caught_by):
        with applied(mutant_):
            outcome = statement.run(pinned_only=True)
        assert outcome.examples > 0
        if outcome.status != "FAIL":
            missed.append(mutant_.name)
    assert missed == []


def test_every_statement_is_shown_to_fail_on_a_broken_implementation():
    """A check that could not fail proves nothing: each statement is named by a mutant, and
    the test above makes it fail under that mutant."""
    named = {statement for mutant_ in MUTANTS.values() for statement in mutant_.caught_by}
    assert sorted(set(STATEMENTS) - named) == []
    assert sorted(named - set(STATEMENTS)) == []  # no mutant names a statement that is gone


def test_every_mutant_replaces_its_target_with_another_of_its_kind():
    """A function by another function, a constant by another value: a factory that returns
    None swaps in no slip (the statements would fail on a TypeError, not on a wrong value, and
    the mutant would count as caught), one that returns the original no change."""
    for name, mutant_ in MUTANTS.items():
        owner, attribute = _resolve(mutant_.target)
        original = getattr(owner, attribute)
        broken = mutant_.make_broken(original)
        assert broken is not None and callable(broken) == callable(original), name
        assert broken is not original and (callable(original) or broken != original), name


def test_verdict_asks_every_named_statement_to_fail():
    class Outcome:
        def __init__(self, status):
            self.status = status

    assert verdict({"a": Outcome("FAIL"), "b": Outcome("FAIL")}) == "caught"
    assert verdict({"a": Outcome("FAIL"), "b": Outcome("pass")}) == "MISSED"
    assert verdict({"a": Outcome("FAIL"), "b": Outcome("missing")}) == "caught"
    assert verdict({"a": Outcome("missing")}) == "not run"


def test_applied_mutant_is_undone():
    from minilean.models import objectives
    original = objectives.weighted_two_term
    with applied(MUTANTS["two-term weight on the base"]):
        assert objectives.weighted_two_term is not original
        assert objectives.weighted_two_term(1.0, 2.0, 0.0) == 2.0
    assert objectives.weighted_two_term is original
