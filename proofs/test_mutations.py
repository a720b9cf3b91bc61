"""The mutation suite: every broken implementation is caught by a statement."""
import pytest

from proofs.framework import load_all
from proofs.mutation import MUTANTS, applied, run_mutant, verdict

load_all()


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught(name):
    outcomes = run_mutant(MUTANTS[name])
    result = verdict(outcomes)
    if result == "not run":
        pytest.skip("; ".join(o.message for o in outcomes.values()))
    assert result == "caught", {n: o.status for n, o in outcomes.items()}


def test_applied_mutant_is_undone():
    from minilean.models import objectives
    original = objectives.weighted_two_term
    with applied(MUTANTS["two-term weight on the base"]):
        assert objectives.weighted_two_term is not original
        assert objectives.weighted_two_term(1.0, 2.0, 0.0) == 2.0
    assert objectives.weighted_two_term is original
