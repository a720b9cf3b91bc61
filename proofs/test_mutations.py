"""The mutation suite: every broken implementation is caught by each statement that claims it,
and every statement is shown to catch one."""
import sys

import pytest

from proofs.framework import load_all
from proofs.mutation import MUTANTS, Mutant, _resolve, applied, run_mutant, silenced, verdict

STATEMENTS = load_all()


# Slips that swap two axes, which the statements' examples make unequal: there the broken
# layout cannot even broadcast or multiply with the right one (a ValueError), which
# is how the slip shows in a user's program too; on equal axes they give wrong values
SHAPE_SLIPS = {"col2im with the stride's axes swapped", "col2im with the dilation's axes swapped",
               "im2col with the dilation's axes swapped",
               "var backward restoring the reduced axis as the last"}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_by_each_statement_it_names(name):
    """Each statement the mutant names fails under it, by a wrong value, not a crash: each slip
    is of value (a scale, a sign, which of the tied maximisers, a layout of the same shape, a
    wrong divisor or mask, a lost dtype, a wrong formula), and a run that crashes means the
    broken implementation is itself broken, which would count as caught whatever slip it meant
    to show. The SHAPE_SLIPS may also fail by the shapes their swap makes."""
    outcomes = run_mutant(MUTANTS[name])
    result = verdict(outcomes)
    if result == "not run":
        pytest.skip("; ".join(o.message for o in outcomes.values()))
    assert result == "caught", {n: o.status for n, o in outcomes.items()}
    for statement, outcome in outcomes.items():
        shape_error = name in SHAPE_SLIPS and outcome.message.startswith("ValueError: ")
        assert outcome.message.startswith("StatementFailed: ") or shape_error, (
            statement, outcome.message)
    if name in SHAPE_SLIPS:  # one that no statement catches by its shapes belongs with the others
        assert any(outcome.message.startswith("ValueError: ")
                   for outcome in outcomes.values()), name


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
        with applied(mutant_), silenced():
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
    """Every minilean module holding the function (a ``from ... import`` copy included) sees
    the broken one while the mutant is applied, a module outside minilean does not, and all
    hold the original again after."""
    import types

    from minilean.models import gan, objectives, vae
    original = objectives.weighted_two_term
    outside = types.ModuleType("outside_minilean")
    outside.weighted_two_term = original
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, outside.__name__, outside)
        with applied(MUTANTS["two-term weight on the base"]):
            assert objectives.weighted_two_term(1.0, 2.0, 0.0) == 2.0
            assert gan.weighted_two_term is vae.weighted_two_term is objectives.weighted_two_term
            assert outside.weighted_two_term is original
    assert objectives.weighted_two_term is gan.weighted_two_term is vae.weighted_two_term
    assert objectives.weighted_two_term is original


def test_a_mutant_that_changes_nothing_is_missed():
    """A statement that fails only where the function is broken: under an implementation that
    is the original, it passes, and the mutant is MISSED (not caught by a crash of the run)."""
    unchanged = Mutant("unchanged", "minilean.models.objectives.weighted_two_term",
                       lambda original: original, ("weightedTwoTerm_zero_weight",))
    assert verdict(run_mutant(unchanged)) == "MISSED"


def test_a_target_resolves_to_its_module_or_class():
    """"package.module.function" is the module's attribute, "package.module.Class.method" the
    class's; the longest importable prefix is the module."""
    import minilean
    from minilean.autograd.tensor import Tensor
    from minilean.models import objectives
    assert _resolve("minilean.models.objectives.weighted_two_term") == (
        objectives, "weighted_two_term")
    assert _resolve("minilean.autograd.tensor.Tensor.backward") == (Tensor, "backward")
    assert _resolve("minilean.manual_seed") == (minilean, "manual_seed")
    with pytest.raises(ImportError, match="cannot import any module of nothing_here.f"):
        _resolve("nothing_here.f")


def test_a_staticmethod_stays_one_while_broken_and_after():
    """A Function's backward is a staticmethod: the broken one is installed as one (called on
    the class or an instance alike) and the very staticmethod is put back after."""
    from minilean.autograd.elementwise import Exp
    raw = Exp.__dict__["backward"]
    with applied(MUTANTS["exp backward squared"]):
        assert isinstance(Exp.__dict__["backward"], staticmethod)
        assert Exp.__dict__["backward"] is not raw
    assert Exp.__dict__["backward"] is raw


def test_a_mutant_is_run_on_the_same_examples_every_time(fresh_draws):
    """The verdict must not be luck: outside CI's derandomized profile too, run_mutant runs its
    statements on the same examples each time."""
    calls = []

    def recording(original):
        """weighted_two_term as it is, remembering its arguments."""
        def weighted(*args, **kwargs):
            calls.append(repr((args, kwargs)))
            return original(*args, **kwargs)
        return weighted
    watched = Mutant("recording", "minilean.models.objectives.weighted_two_term", recording,
                     ("weightedTwoTerm_zero_weight",))
    runs = []
    for _ in range(2):
        calls.clear()
        run_mutant(watched)
        runs.append(list(calls))
    assert runs[0] and runs[0] == runs[1]


def test_a_mutant_whose_factory_returns_nothing_is_refused():
    """A factory that forgot its ``return broken`` would swap in None, which every statement
    "catches" by crashing on the call: the mutant would pass as caught whatever it was."""
    from minilean.models import objectives
    original = objectives.weighted_two_term
    forgetful = Mutant("forgot its return", "minilean.models.objectives.weighted_two_term",
                       lambda original: None, ("some statement",))
    with pytest.raises(TypeError, match="'forgot its return' made no broken implementation"):
        with applied(forgetful):
            pass
    assert objectives.weighted_two_term is original


def test_the_shape_slips_are_mutants():
    """SHAPE_SLIPS names registered mutants (each is then run above, where some statement must
    catch it by a ValueError of shapes)."""
    assert SHAPE_SLIPS <= set(MUTANTS), SHAPE_SLIPS - set(MUTANTS)
