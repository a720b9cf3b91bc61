"""Every registered statement holds on the engine (skipped, with the reason, while a function
it is about has not been written yet)."""
import numpy
import pytest
from hypothesis import Phase, find, settings

from proofs.framework import load_all
from proofs.statistics import GAUSSIAN_LAWS, TESTS

STATEMENTS = load_all()


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_statement_holds(name):
    statement = STATEMENTS[name]
    reason = statement.missing()
    if reason:
        pytest.skip(reason)
    outcome = statement.run()
    assert outcome.status == "pass", outcome.message
    assert outcome.examples > 0
    examples, per_example = TESTS.get(name, (0, 0))
    assert outcome.statistical_tests <= examples * per_example, (
        f"{outcome.statistical_tests} statistical tests, more than the {examples} x "
        f"{per_example} budgeted for {name} in proofs/statistics.py's TESTS")
    # the law tests' power is shared out among GAUSSIAN_LAWS: one left out would go uncounted
    assert (outcome.gaussian_law_tests > 0) == (name in GAUSSIAN_LAWS), (
        f"{name} makes {outcome.gaussian_law_tests} Gaussian law tests; proofs/statistics.py's "
        f"GAUSSIAN_LAWS must list exactly the statements that make some")


def test_the_false_alarm_budget_uses_each_statements_max_examples():
    """TESTS_PER_RUN (and so the per-test false-alarm rate) counts every statistical
    statement's max_examples as it is registered."""
    for name, (examples, _) in TESTS.items():
        assert STATEMENTS[name].max_examples == examples, name


@pytest.mark.parametrize("name", [n for n, s in STATEMENTS.items() if s.relaxed is not None])
def test_dropping_a_hypothesis_admits_a_counterexample(name):
    """The hypotheses are needed: without one of them hypothesis finds an example where the
    conclusion fails."""
    statement = STATEMENTS[name]
    reason = statement.missing()
    if reason:
        pytest.skip(reason)
    counterexample = statement.counterexample()
    assert isinstance(counterexample, dict)


def test_every_statement_says_what_it_states():
    for name, statement in STATEMENTS.items():
        assert statement.summary, f"{name} has no docstring"
        assert statement.about, f"{name} names no minilean function"


def test_the_objective_statements_run_on_floats_and_on_tensors_of_both_dtypes(monkeypatch):
    """objective.py checks each statement "on the engine in three ways: Python floats, float64
    tensors and float32 tensors"; a way left out goes unchecked."""
    from minilean.models import objectives
    seen = set()
    for function_name in ("weighted_two_term", "weighted_three_term"):
        def spy(*terms, function=getattr(objectives, function_name)):
            seen.add(str(getattr(terms[0], "dtype", type(terms[0]).__name__)))
            return function(*terms)
        monkeypatch.setattr(objectives, function_name, spy)
    for name, statement in STATEMENTS.items():
        if statement.module == "proofs.statements.objective":
            seen.clear()
            assert statement.run(max_examples=1).status == "pass", name
            assert seen == {"float", "float64", "float32"}, name


@pytest.mark.parametrize("name, kept", [
    ("discriminatorLoss_zero_of_perfect_scores", lambda example: set(example["real"]) == {1.0}),
    ("weightedThreeTerm_zero_middle_zero_regularizer",
     lambda example: example["regularizer"] == 0.0)])
def test_a_relaxed_strategy_keeps_the_hypothesis_it_does_not_drop(name, kept):
    """Of two hypotheses the relaxed strategy drops one: its counterexample satisfies the
    other, so the one dropped is shown needed by itself."""
    assert kept(STATEMENTS[name].counterexample())


def _draws(strategy, case):
    """``strategy`` draws an example where ``case`` holds among its first 500, the same ones on
    every run (a case of a statement's hypothesis that its draws never reach goes unchecked)."""
    find(strategy, case, settings=settings(database=None, phases=(Phase.generate,),
                                           max_examples=500, derandomize=True))


@pytest.mark.parametrize("kind", [
    lambda mask: mask is None,
    lambda mask: mask is not None and mask.dtype == bool and not mask.any(axis=-1).all(),
    lambda mask: mask is not None and mask.dtype.kind == "f"])
def test_attention_draws_each_kind_of_mask_its_strategy_names(kind):
    """no mask, a boolean one with a row all False, a float one: the pinned examples show the
    mask slips, the draws are to show that nothing else breaks with a mask."""
    from proofs.statements.attention import _attention_inputs
    _draws(_attention_inputs(), lambda example: kind(example["mask"]))


@pytest.mark.parametrize("strategy, case", [
    ("_spread_inputs", lambda example: example["dim"] is None),
    ("_spread_inputs", lambda example: example["dim"] == -1),
    ("_spread_inputs", lambda example: example["dim"] == 0),
    ("_constant_rows", lambda example: example["x"].shape[1] == 1)])
def test_var_and_std_draw_each_case_their_strategies_name(strategy, case):
    """var and std over all of x, each row, each column (the columns without keepdim also run
    on every example, the others only when drawn); std's zero variance over one element."""
    from proofs.statements import variance_backward
    _draws(getattr(variance_backward, strategy)(), case)


def test_the_frechet_strategy_draws_what_its_hypothesis_asks():
    """Symmetric covariances with lambda_min >= floor, the statement's hypothesis and its
    bound's premise; the relaxed C_1 singular, positive semi-definite."""
    import numpy
    from hypothesis import given

    from proofs.statements.frechet import _fd_inputs

    @settings(max_examples=20, database=None)
    @given(_fd_inputs(), _fd_inputs(singular=True))
    def draws(example, singular):
        floored = [(example["cov1"], example["floor"]), (example["cov2"], example["floor"]),
                   (singular["cov2"], singular["floor"])]
        for cov, floor in floored:
            assert (cov == cov.T).all() and numpy.linalg.eigvalsh(cov).min() >= floor
        cov = singular["cov1"]
        assert (cov == cov.T).all() and numpy.linalg.matrix_rank(cov) < len(cov)
    draws()


@pytest.mark.parametrize("strategy, case", [
    ("_pool_inputs", lambda example: example["kernel"][0] == 1 and example["x"].shape[2] == 1),
    ("_pool_inputs", lambda example: example["kernel"][1] == 1 and example["x"].shape[3] == 1),
    ("_pool_inputs", lambda example: example["stride"] is not None and example["stride"][0] == 1),
    ("_pool_inputs", lambda example: example["stride"] is not None and example["stride"][1] == 1),
    ("_pool_inputs", lambda example: example["kernel"][0] == 2 and example["padding"][0] == 1),
    ("_pool_inputs", lambda example: example["kernel"][0] == 3 and example["padding"][0] == 1
     and example["x"].shape[2] == 1),
    ("_pool_inputs", lambda example: example["x"].shape[:2] == (2, 2)),
    ("_pool_inputs", lambda example: example["kernel"][0] == 1 and example["x"].shape[2] == 3),
    ("_upsample_inputs", lambda example: example["x"].shape[:2] == (2, 2)),
    ("_upsample_inputs", lambda example: example["x"].shape[2:] == (1, 1)),
    ("_upsample_inputs", lambda example: example["x"].shape[2:] == (3, 3)),
    ("_upsample_inputs", lambda example: example["scale"] == 1),
    ("_upsample_inputs", lambda example: example["scale"] == (1, 1))])
def test_pool_and_upsample_draw_each_end_of_their_strategies_ranges(strategy, case):
    """The ends of the ranges the strategies' docstrings name: kernel and stride 1 (an output
    per element), padding K // 2 (windows mostly padding) on the least x that leaves an output,
    the largest x, N = C = 2, scale 1 (the identity) as an int and as a pair."""
    from proofs.statements import pool_backward
    _draws(getattr(pool_backward, strategy)(), case)


def _optim_strategy(name):
    from proofs.statements import optim
    return STATEMENTS[name].given if name == "warmupCosine_schedule" else getattr(optim, name)()


def _signs(arrays):
    values = numpy.concatenate(arrays)
    return (values < 0).any() and (values > 0).any()


@pytest.mark.parametrize("strategy, case", [
    ("_adam_inputs", lambda example: [p.size for p in example["params"]] == [1]),
    ("_adam_inputs", lambda example: len(example["grads"]) == 1),
    ("_adam_inputs", lambda example: len(example["grads"]) == 4 and len(example["params"]) == 2),
    ("_adam_inputs", lambda example: _signs(example["params"]) and _signs(example["grads"][0])),
    ("_adam_inputs", lambda example: example["beta1"] >= 0.9),
    ("_adam_inputs", lambda example: example["weight_decay"] > 0.4),
    ("_clip_inputs", lambda example: [g.size for g in example["grads"]] == [1]),
    ("_clip_inputs", lambda example: _signs(example["grads"])),
    ("_clip_inputs", lambda example: example["max_norm"] < 0.01 * numpy.linalg.norm(
        numpy.concatenate(example["grads"]))),
    ("_clip_inputs", lambda example: example["max_norm"] > numpy.linalg.norm(
        numpy.concatenate(example["grads"]))),
    ("_ema_inputs", lambda example: [w.size for w in example["weights"][0]] == [1]),
    ("_ema_inputs", lambda example: len(example["weights"]) == 2),
    ("_ema_inputs", lambda example: len(example["weights"]) == 6),
    ("_ema_inputs", lambda example: _signs(example["weights"][1])),
    ("_ema_inputs", lambda example: 0 < example["decay"] < 0.9),
    ("_ema_inputs", lambda example: 0.999 <= example["decay"] < 1),
    ("warmupCosine_schedule", lambda example: example["total"] == 0),
    ("warmupCosine_schedule", lambda example: 0 < int(example["warmup_share"] * example["total"])
     < example["total"]),
    ("warmupCosine_schedule", lambda example: example["min_factor"] > 0.4)])
def test_the_optim_strategies_draw_each_case_their_docstrings_name(strategy, case):
    """One parameter (or gradient) of one element, one step and the most (two parameters,
    four steps; five EMA updates), both signs, beta1 from 0.9 up, weight decay and min_factor
    near their top 0.5, max_norm from clipping hard (scale < 0.01) to leaving the gradients
    alone, EMA decays from mid-range up past the zoo's 0.999, T = 0 and a warm-up inside T:
    the statements check Adam, clipping, the EMA and the schedule only where they draw."""
    _draws(_optim_strategy(strategy), case)


@pytest.mark.parametrize("name, replayed", [("adam_adamW_update", "_scalar"),
                                            ("ema_update_average", "_scalar"),
                                            ("warmupCosine_schedule", "_cos")])
def test_the_optim_replays_are_checked_against_the_formula(monkeypatch, name, replayed):
    """Each optim statement's replay of the engine's order is checked against the formula at 50
    digits, not trusted: one replayed step off by 2^-20 of its value (its error bound kept, so
    the engine stays within it) fails as a check of the reference."""
    import mpmath

    from proofs.running_error import Carried
    from proofs.statements import optim
    exact = getattr(optim, replayed)

    def off(*args):
        step = exact(*args)
        return Carried(step.value * (1 + mpmath.mpf(2) ** -20), step.error, step.dtype)
    monkeypatch.setattr(optim, replayed, off)
    outcome = STATEMENTS[name].run(max_examples=3, shrink=False, derandomize=True)
    assert outcome.status == "FAIL" and outcome.message.startswith(
        "ReferenceFailed: reference: replay = formula"), outcome.message


def _spread(values):
    return values.min() < 0.5 < values.max()


@pytest.mark.parametrize("name, case", [
    ("forward_eq_decoder_sampleLatent", lambda example: _spread(example["images"])),
    ("forward_eq_decoder_sampleLatent", lambda example: _signs([example["eps"].ravel()])),
    ("forward_eq_decoder_sampleLatent", lambda example: example["beta"] < 1),
    ("forward_eq_decoder_sampleLatent", lambda example: example["beta"] > 1),
    ("forward_eq_decoder_codebook", lambda example: _spread(example["images"])),
    ("forward_eq_decoder_codebook", lambda example: example["spread"] < 1),
    ("generate_eq_generator", lambda example: _signs([example["z"].ravel()])),
    ("autoencoder_loss_eq_mse_of_reconstruction", lambda example: len(example["images"]) == 1),
    ("autoencoder_loss_eq_mse_of_reconstruction", lambda example: _spread(example["images"]))]
    + [(name, lambda example: example["seed"] > 100) for name in (
        "forward_eq_decoder_sampleLatent", "forward_eq_decoder_codebook", "generate_eq_generator",
        "autoencoder_loss_eq_mse_of_reconstruction")])
def test_the_wiring_strategies_draw_varied_inputs_and_models(name, case):
    """Pixels on both sides of 0.5, noise and latents of both signs, beta below and above 1,
    codebooks spread by under 1 and more, an autoencoder batch of one image, and models built
    under many seeds, not a handful: the wiring statements evaluate every layer on them."""
    _draws(STATEMENTS[name].given, case)
