"""Every registered statement holds on the engine (skipped, with the reason, while a function
it is about has not been written yet)."""
import numpy
import pytest
from hypothesis import Phase, find, given, settings

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


@pytest.mark.parametrize("module, name, numerator, denominator", [
    ("pixel_likelihood", "HALF_BIN", 1, 510), ("wiring", "SLOPE", 1, 5)])
def test_the_references_exact_constants_hold_the_working_precision(module, name, numerator,
                                                                    denominator):
    """A reference's constant stated exact (the bin's half-width 1/510, the leaky slope 1/5) is
    exact to the 50 digits of the references: computed at import, where mpmath works at 15
    digits, it was float64's rounding (1/510 as 0.5 / 255, off by 1.4e-17 relative), the
    engine's own constant rather than the definition's."""
    import importlib

    import mpmath

    from proofs.framework import DIGITS
    value = getattr(importlib.import_module(f"proofs.statements.{module}"), name)
    with mpmath.workdps(DIGITS):
        assert abs(value * denominator - numerator) <= mpmath.mpf(10) ** -(DIGITS - 2), value


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


def _every_draw(holds, *strategies):
    """``holds`` (which asserts) on each of the first 200 draws of ``strategies``, the same ones
    on every run: a statement must draw only what its hypothesis allows."""
    settings(max_examples=200, database=None, derandomize=True)(given(*strategies)(holds))()


@pytest.mark.parametrize("kind", [
    lambda mask: mask is None,
    lambda mask: mask is not None and mask.dtype == bool and not mask.any(axis=-1).all(),
    lambda mask: mask is not None and mask.dtype.kind == "f"])
def test_attention_draws_each_kind_of_mask_its_strategy_names(kind):
    """no mask, a boolean one with a row all False, a float one: the pinned examples show the
    mask slips, the draws are to show that nothing else breaks with a mask."""
    from proofs.statements.attention import _attention_inputs
    _draws(_attention_inputs(), lambda example: kind(example["mask"]))


@pytest.mark.parametrize("leading", [(), (2,), (2, 2)])
def test_attention_draws_the_models_leading_axes(leading):
    """one (L, d) matrix, the U-Net's batch and the MAE's batch and heads: a softmax over a
    fixed axis 1 is right on the first alone."""
    from proofs.statements.attention import _attention_inputs
    _draws(_attention_inputs(), lambda example: example["q"].shape[:-2] == leading)


@pytest.mark.parametrize("case", [
    lambda example: example["heads"] > 1 and example["query"].shape[-1] > example["heads"],
    lambda example: example["heads"] == 1,
    lambda example: example["key"] is example["query"] and example["query"].shape[1] > 1,
    lambda example: example["key"] is not example["query"]
    and example["key"].shape[1] != example["query"].shape[1],
    lambda example: not example["batch_first"] and example["query"].shape[0] > 1,
    lambda example: example["in_bias"] is None])
def test_multihead_attention_draws_each_case_its_strategy_names(case):
    """several heads of several columns (where a split into interleaved columns, a merge in
    the wrong order and sqrt(E) for sqrt(d_h) differ from the layer), one head, the MAE's
    self-attention over several tokens, cross-attention over another number of keys,
    the (L, N, E) layout over a batch of two, no biases."""
    from proofs.statements.attention import _multihead_inputs
    _draws(_multihead_inputs(), case)


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


def _reaches(values, low, high):
    """Whether ``values`` (any shape) go below ``low`` and above ``high``."""
    return values.min() < low and values.max() > high


def _spans_zero(*arrays):
    """Whether the values of ``arrays`` (any shapes, together) include both signs."""
    return _reaches(numpy.concatenate([numpy.ravel(array) for array in arrays]), 0, 0)


@pytest.mark.parametrize("strategy, case", [
    ("_ema_inputs", lambda example: len(example["sizes"]) == 1),
    ("_ema_inputs", lambda example: example["sums"].shape[1] == 1),
    ("_ema_inputs", lambda example: len(example["sizes"]) > 1 and 0 in example["sizes"]),
    ("_ema_inputs", lambda example: ((0 < example["sizes"]) & (example["sizes"] < 1)).any()),
    ("_ema_inputs", lambda example: len(example["batches"]) == 1),
    ("_ema_inputs", lambda example: len(example["batches"]) == 3),
    ("_ema_inputs", lambda example: any(v.size == 1 for v, _ in example["batches"])),
    ("_ema_inputs", lambda example: _spans_zero(*[v for v, _ in example["batches"]])),
    ("_ema_inputs", lambda example: _spans_zero(example["sums"])),
    ("_ema_inputs", lambda example: 0 < example["decay"] < 0.9),
    ("_restart_inputs", lambda example: len(example["codebook"]) == 1),
    ("_restart_inputs", lambda example: example["codebook"].shape[1] == 1),
    ("_restart_inputs", lambda example: example["encoded"].shape[:3] == (1, 1, 1)),
    ("_restart_inputs", lambda example: example["encoded"].shape[:3] == (2, 2, 3)),
    ("_restart_inputs", lambda example: _spans_zero(example["codebook"])),
    ("_restart_inputs", lambda example: _spans_zero(example["sums"])),
    ("_restart_inputs", lambda example: _spans_zero(example["encoded"])),
    ("_restart_inputs", lambda example: (example["sizes"] < 1).any()),
    ("_restart_inputs", lambda example: len(example["usage"]) > 1
     and (example["usage"] < example["threshold"]).all()),
    ("_restart_inputs", lambda example: (example["usage"] >= example["threshold"]).all()),
    ("_restart_inputs", lambda example: 0 in example["usage"] and 1 in example["usage"]),
    ("_restart_inputs", lambda example: example["threshold"] == 1),
    ("_restart_inputs", lambda example: example["seed"] >= 2 ** 31),
    ("codeStatistics_usage_perplexity", lambda example: example["counts"] == [1]),
    ("codeStatistics_usage_perplexity", lambda example: 0 in example["counts"]
     and len(set(example["counts"]) - {0}) > 1),
    ("codeStatistics_usage_perplexity", lambda example: max(example["counts"]) > 10 ** 5)])
def test_vq_codebook_draws_each_end_of_its_strategies_ranges(strategy, case):
    """The cases the strategies' docstrings name: one code and several, one dimension, codes
    never chosen (N = 0) and counts below 1, one batch and three, a batch of one encoding,
    values of both signs, a decay away from 1; the restart's single encoding and its largest
    batch, all codes dead and none, usage 0 and 1, training's threshold 1, seeds past 2^31;
    code counts of one code used once, unused codes beside used ones, counts past 10^5."""
    from proofs.statements import vq_codebook
    _draws(STATEMENTS[strategy].given if strategy in STATEMENTS
           else getattr(vq_codebook, strategy)(), case)


def test_vq_codebook_examples_keep_the_hypotheses():
    """Drawn and pinned: counts N >= 0 with n = sum N >= 1 (training keeps n there; below it
    float32's e_k can overflow), a decay in [0, 1], code numbers in 0..K-1; usage counts >= 0
    and generator seeds >= 0."""
    from proofs.statements import vq_codebook

    def ema_holds(example):
        codes = len(example["sizes"])
        assert (example["sizes"] >= 0).all() and example["sizes"].sum() >= 1, example["sizes"]
        assert 0 <= example["decay"] <= 1, example["decay"]
        for _, indices in example["batches"]:
            assert ((0 <= indices) & (indices < codes)).all(), (indices, codes)

    def draws(ema, restart):
        ema_holds(ema)
        assert (restart["usage"] >= 0).all() and restart["seed"] >= 0, restart
    _every_draw(draws, vq_codebook._ema_inputs(), vq_codebook._restart_inputs())
    for example in STATEMENTS["emaCodebook_update"].examples:
        ema_holds(example)


@pytest.mark.parametrize("strategy, case", [
    ("_codebook_and_vectors", lambda example: len(example["book"]) == 1),
    ("_codebook_and_vectors", lambda example: example["book"].shape[1] == 1),
    ("_codebook_and_vectors", lambda example: len(example["z"]) == 1),
    ("_codebook_and_vectors", lambda example: _spans_zero(example["book"])),
    ("_codebook_and_vectors", lambda example: _spans_zero(example["z"])),
    ("_loss_inputs", lambda example: len(example["target"]) == 1),
    ("_loss_inputs", lambda example: len(example["encoded"]) == 1),
    ("_loss_inputs", lambda example: all(_spans_zero(example[key]) for key in (
        "target", "reconstruction", "encoded", "quantized"))),
    ("_loss_inputs", lambda example: 0 < example["beta"] < 1),
    ("_gradient_inputs", lambda example: len(example["encoded"]) == 1),
    ("_gradient_inputs", lambda example: all(_spans_zero(example[key]) for key in (
        "encoded", "quantized", "weights", "target"))),
    ("_gradient_inputs", lambda example: 0 < example["beta"] < 1)])
def test_vqvae_draws_each_end_of_its_strategies_ranges(strategy, case):
    """One code, one dimension, one vector; one element in each loss term; values of both
    signs; a beta in (0, 1), the paper's 0.25 among them."""
    from proofs.statements import vqvae
    _draws(getattr(vqvae, strategy)(), case)


def test_vqvae_mono_draws_both_betas_from_its_range():
    """The monotonicity statement compares two betas in [-4, 4], as the theorem any two reals:
    each below 1 and above 0 at times, and a negative one below a positive one (|beta| for beta
    is monotone on beta >= 0 alone); never outside the range."""
    statement = STATEMENTS["vqvae_loss_mono_beta_of_commitment_nonneg"]
    _draws(statement.given, lambda example: 0 < example["other"] < 1)
    _draws(statement.given, lambda example: 0 < example["example"]["beta"] < 1)
    _draws(statement.given, lambda example: min(example["other"], example["example"]["beta"])
           < 0 < max(example["other"], example["example"]["beta"]))

    def draws(example):
        assert -4 <= example["other"] <= 4 and -4 <= example["example"]["beta"] <= 4, example
    _every_draw(draws, statement.given)


def _latent(example):
    return [list(v) for v in example["latent"]]


@pytest.mark.parametrize("name, case", [
    # _latents: one coordinate, both signs of mu and of logvar, exact zeros throughout
    ("coordinateKlToStandard_nonneg", lambda example: len(_latent(example)[0]) == 1),
    ("coordinateKlToStandard_nonneg", lambda example: all(map(_spans_zero, _latent(example)))),
    ("coordinateKlToStandard_nonneg",
     lambda example: len(_latent(example)[0]) > 1 and not any(sum(_latent(example), []))),
    ("diagonal_reparameterization_coordinate_law",
     lambda example: all(map(_spans_zero, _latent(example)))),
    # the zero-iff statement's latents: one coordinate, both signs, a zero beside values off 0
    # by under 1/2 (its margin, 2^-6, is what keeps small ones decidable)
    ("coordinateKlToStandard_eq_zero_iff", lambda example: len(_latent(example)[0]) == 1),
    ("coordinateKlToStandard_eq_zero_iff", lambda example: all(map(_spans_zero, _latent(example)))),
    ("coordinateKlToStandard_eq_zero_iff", lambda example: 0.0 in sum(_latent(example), [])
     and any(0 < abs(v) < 0.5 for v in sum(_latent(example), []))),
    # the batch: two rows of one coordinate, both signs, a zero
    ("diagonalGaussianKlToStandardSum_batch_mean",
     lambda example: example["latent"][0].shape == (2, 1)),
    ("diagonalGaussianKlToStandardSum_batch_mean",
     lambda example: all(_spans_zero(v) and 0.0 in v for v in example["latent"])),
    ("exp_minus_one_minus_nonneg", lambda example: example["x"] < -1),
    ("exp_minus_one_minus_nonneg", lambda example: example["x"] > 1),
    ("exp_minus_one_minus_pos", lambda example: example["x"] < -1),
    ("exp_minus_one_minus_pos", lambda example: example["x"] > 1),
    ("scalar_reparameterization_law", lambda example: example["mu"] < 0 > example["logvar"]),
    ("scalar_reparameterization_law", lambda example: example["mu"] > 0 < example["logvar"]),
    # the beta-VAE losses: every term below 1 and above it (beta 0 and 1 are special cases)
    ("betaVae_loss_decomposition",
     lambda example: max(example["reconstruction"], example["kl"], example["beta"]) < 1),
    ("betaVae_loss_decomposition",
     lambda example: min(example["reconstruction"], example["kl"], example["beta"]) > 1),
    ("betaVae_loss_mono_beta_of_kl_nonneg",
     lambda example: max(example["reconstruction"], example["kl"], *example["betas"]) < 1),
    ("betaVae_loss_mono_beta_of_kl_nonneg",
     lambda example: min(example["reconstruction"], example["kl"], *example["betas"]) > 1),
    # and, as the theorem has any two real betas, a negative one below a positive one
    ("betaVae_loss_mono_beta_of_kl_nonneg",
     lambda example: example["betas"][0] < 0 < example["betas"][1])])
def test_the_vae_statements_draw_each_case_their_strategies_name(name, case):
    """The KL and reparameterisation statements hold for all real mu and logvar: their draws
    reach both signs of each, one coordinate, and exact zeros; the beta-VAE losses' terms and
    weights lie in [0, their end), reached on both sides of 1 (the monotonicity's two betas in
    [-10, 10], as the theorem's are any two reals: one negative and one positive at times)."""
    _draws(STATEMENTS[name].given, case)


def test_the_beta_monotonicity_draws_only_what_its_hypothesis_asks():
    """0 <= KL and beta1 <= beta2 on every draw: the relaxed strategy's negative KL admits a
    counterexample, so one drawn by the statement itself would fail it on a correct engine."""
    def draws(example):
        assert example["kl"] >= 0 and example["betas"][0] <= example["betas"][1]
    _every_draw(draws, STATEMENTS["betaVae_loss_mono_beta_of_kl_nonneg"].given)


@pytest.mark.parametrize("name, case", [
    # the linear-Gaussian model: the least (d = D = 1), every entry of both signs, s on both
    # sides of 1 (the likelihood's width), a seed other than the first
    ("elbo_le_log_evidence_linear_gaussian", lambda example: example["W"].shape == (1, 1)),
    ("elbo_le_log_evidence_linear_gaussian", lambda example: all(
        _spans_zero(example[key]) for key in ("W", "b", "x", "mu", "logvar"))),
    ("elbo_le_log_evidence_linear_gaussian", lambda example: example["s"] < 1),
    ("elbo_le_log_evidence_linear_gaussian",
     lambda example: example["s"] > 1 and example["seed"] > 0),
    # the log-weights: one, moderate ones of both signs, and ones past exp's float64 range
    ("iwBound_value", lambda example: example["log_weights"].shape == (1, 1)),
    ("iwBound_value", lambda example: _spans_zero(example["log_weights"])
     and abs(example["log_weights"]).min() < 100),
    ("iwBound_value", lambda example: _reaches(example["log_weights"], -1e3, 1e3))])
def test_the_likelihood_statements_draw_each_case_their_strategies_name(name, case):
    """The ELBO and IW statements hold for any linear-Gaussian model and any diagonal q: the
    draws reach the least model and both signs of every parameter; the IW bound's log-weights
    reach both signs, and magnitudes past exp's range on both sides, where only the max shift
    keeps the bound finite."""
    _draws(STATEMENTS[name].given, case)


def _optim_strategy(name):
    from proofs.statements import optim
    return STATEMENTS[name].given if name == "warmupCosine_schedule" else getattr(optim, name)()


@pytest.mark.parametrize("strategy, case", [
    ("_adam_inputs", lambda example: [p.size for p in example["params"]] == [1]),
    ("_adam_inputs", lambda example: len(example["grads"]) == 1),
    ("_adam_inputs", lambda example: len(example["grads"]) == 4 and len(example["params"]) == 2),
    ("_adam_inputs",
     lambda example: _spans_zero(*example["params"]) and _spans_zero(*example["grads"][0])),
    ("_adam_inputs", lambda example: example["beta1"] >= 0.9),
    ("_adam_inputs", lambda example: example["weight_decay"] > 0.4),
    ("_clip_inputs", lambda example: [g.size for g in example["grads"]] == [1]),
    ("_clip_inputs", lambda example: _spans_zero(*example["grads"])),
    ("_clip_inputs", lambda example: example["max_norm"] < 0.01 * numpy.linalg.norm(
        numpy.concatenate(example["grads"]))),
    ("_clip_inputs", lambda example: example["max_norm"] > numpy.linalg.norm(
        numpy.concatenate(example["grads"]))),
    ("_ema_inputs", lambda example: [w.size for w in example["weights"][0]] == [1]),
    ("_ema_inputs", lambda example: len(example["weights"]) == 2),
    ("_ema_inputs", lambda example: len(example["weights"]) == 6),
    ("_ema_inputs", lambda example: _spans_zero(*example["weights"][1])),
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


def _off_by_2_to_the_minus_20(carried):
    """A replayed value off by 2^-20 of itself, its error bound kept (so the engine stays
    within it): a replay that drifted from the formula it replays."""
    import mpmath

    from proofs.running_error import Carried
    return Carried(carried.value * (1 + mpmath.mpf(2) ** -20), carried.error, carried.dtype)


@pytest.mark.parametrize("name, replayed", [("adam_adamW_update", "_scalar"),
                                            ("ema_update_average", "_scalar"),
                                            ("warmupCosine_schedule", "_cos")])
def test_the_optim_replays_are_checked_against_the_formula(monkeypatch, name, replayed):
    """Each optim statement's replay of the engine's order is checked against the formula at 50
    digits, not trusted: one replayed step off by 2^-20 of its value (its error bound kept, so
    the engine stays within it) fails as a check of the reference."""
    from proofs.statements import optim
    exact = getattr(optim, replayed)
    monkeypatch.setattr(optim, replayed, lambda *args: _off_by_2_to_the_minus_20(exact(*args)))
    outcome = STATEMENTS[name].run(max_examples=3, shrink=False, derandomize=True)
    assert outcome.status == "FAIL" and outcome.message.startswith(
        "ReferenceFailed: reference: replay = formula"), outcome.message


def test_the_layer_backward_layer_norm_value_replay_is_checked_against_the_formula(monkeypatch):
    """layerNorm_value's replay of the engine's order (whose carried errors bound the engine)
    is checked against the formula at 50 digits, not trusted: a replayed r = 1/sqrt(var + eps)
    off by 2^-20 of its value, its error bound kept, fails as a check of the reference."""
    from proofs.statements import layer_backward
    exact = layer_backward._replayed_statistics

    def off(group, eps):
        centered, r = exact(group, eps)
        return centered, _off_by_2_to_the_minus_20(r)
    monkeypatch.setattr(layer_backward, "_replayed_statistics", off)
    outcome = STATEMENTS["layerNorm_value"].run(max_examples=3, shrink=False, derandomize=True)
    assert outcome.status == "FAIL" and outcome.message.startswith(
        "ReferenceFailed: reference: layer_norm"), outcome.message
    assert ": replay: computed" in outcome.message, outcome.message


@pytest.mark.parametrize("name, case", [
    ("forward_eq_decoder_sampleLatent", lambda example: _reaches(example["images"], 0.5, 0.5)),
    ("forward_eq_decoder_sampleLatent", lambda example: _spans_zero(example["eps"])),
    ("forward_eq_decoder_sampleLatent", lambda example: example["beta"] < 1),
    ("forward_eq_decoder_sampleLatent", lambda example: example["beta"] > 1),
    ("forward_eq_decoder_codebook", lambda example: _reaches(example["images"], 0.5, 0.5)),
    ("forward_eq_decoder_codebook", lambda example: example["spread"] < 1),
    ("generate_eq_generator", lambda example: _spans_zero(example["z"])),
    ("autoencoder_loss_eq_mse_of_reconstruction", lambda example: len(example["images"]) == 1),
    ("autoencoder_loss_eq_mse_of_reconstruction",
     lambda example: _reaches(example["images"], 0.5, 0.5))]
    + [(name, lambda example: example["seed"] > 100) for name in (
        "forward_eq_decoder_sampleLatent", "forward_eq_decoder_codebook", "generate_eq_generator",
        "autoencoder_loss_eq_mse_of_reconstruction")])
def test_the_wiring_strategies_draw_varied_inputs_and_models(name, case):
    """Pixels on both sides of 0.5, noise and latents of both signs, beta below and above 1,
    codebooks spread by under 1 and more, an autoencoder batch of one image, and models built
    under many seeds, not a handful: the wiring statements evaluate every layer on them."""
    _draws(STATEMENTS[name].given, case)


def _hides_only(example, patch):
    """Some image of ``example`` hides exactly one patch, its ``patch``-th (0 first, -1 last)."""
    return any(row.sum() == 1 and row[patch] == 1 for row in example["hidden"])


@pytest.mark.parametrize("case", [
    lambda example: example["hidden"].shape[0] == 1,
    lambda example: example["hidden"].shape[0] == 3,
    lambda example: example["hidden"].shape[1] == 2,
    lambda example: example["prediction"].shape[2] == 1,
    lambda example: _spans_zero(example["prediction"]) and _spans_zero(example["target"]),
    lambda example: (example["prediction"] != example["target"])[example["hidden"] == 1].any(),
    lambda example: _hides_only(example, 0),
    lambda example: _hides_only(example, -1),
    lambda example: (example["hidden"].sum(1) == example["hidden"].shape[1]).any()])
def test_masked_mse_draws_each_end_of_its_strategys_ranges(case):
    """The masked-MSE statements' batches of one (a mean and a sum alike) and of three, two
    patches, patches of one pixel, values of both signs, hidden patches the prediction misses
    (not only the zero statement's equal ones), an image hiding only its first patch or only
    its last, and one hiding every patch."""
    from proofs.statements import mae
    _draws(mae._patches(), case)


def test_the_masked_mse_pin_parts_the_readings_its_docstring_names():
    """The pinned example hides 2 and 1 of 3 patches, and the mean over the batch's hidden
    patches, the sum of per-image means, the mean over every patch, over the visible ones and
    the masked sum over every patch all differ there; its split cuts the hidden patches in two
    non-empty parts, and its permutation is neither the identity nor the reversal (checked
    anyway). The zero statement's pin: no loss on a hidden patch, some on a visible one."""
    from proofs.statements import mae
    example = mae._pinned_patches()
    losses = ((example["prediction"] - example["target"]) ** 2).mean(-1)
    hidden = example["hidden"]
    assert hidden.sum(1).tolist() == [2, 1] and hidden.shape == (2, 3)
    readings = [(losses * hidden).sum() / hidden.sum(),
                ((losses * hidden).sum(1) / hidden.sum(1)).sum(),
                losses.mean(), (losses * (1 - hidden)).sum() / (1 - hidden).sum(),
                (losses * hidden).mean()]
    assert min(abs(a - b) for i, a in enumerate(readings) for b in readings[:i]) > 0.05, readings
    split = example["split"]
    assert (hidden * split).any() and (hidden * (1 - split)).any()
    order = example["permutation"].tolist()
    assert sorted(order) == [0, 1, 2] and order not in ([0, 1, 2], [2, 1, 0])
    zero = mae._pinned_patches(hidden_equal=True)
    losses = ((zero["prediction"] - zero["target"]) ** 2).mean(-1)
    assert (losses[zero["hidden"] == 1] == 0).all() and (losses[zero["hidden"] == 0] > 0).all()


def test_masked_loss_cons_splits_off_one_hidden_patch(monkeypatch):
    """maskedLoss_cons is the sum law with one part a single hidden patch (i :: idxs), on its
    pinned example and its draws: not an empty part, which would leave S = S + 0."""
    from proofs.statements import mae
    splits = []
    monkeypatch.setattr(mae, "_additivity_checks",
                        lambda check, prediction, target, hidden, split: splits.append(
                            (hidden, split)))
    assert STATEMENTS["maskedLoss_cons"].run(max_examples=10, derandomize=True).status == "pass"
    assert len(splits) > 1
    for hidden, split in splits:
        assert (hidden * split).sum() == 1 == split.sum(), (hidden, split)


@pytest.mark.parametrize("name", ["exactReconstruction_identity", "patchify_layout"])
@pytest.mark.parametrize("axis", range(5))
def test_the_patch_statements_draw_each_end_of_every_axis(name, axis):
    """Images, channels, patch rows, patch columns and patch side each at the least and the
    most its strategy names (one image and channel, a grid of one patch row or column, p = 1
    in the round trip and p = 2 in the layout, which p = 1 cannot show)."""
    low = 2 if (name, axis) == ("patchify_layout", 4) else 1
    high = 2 if axis == 0 else 3
    for end in (low, high):
        _draws(STATEMENTS[name].given, lambda example: example["shape"][axis] == end)


@pytest.mark.parametrize("name, key, ends", [
    ("complement_selected_iff", "count", (1, 3)),
    ("complement_selected_iff", "patches", (2, 4, 12)),
    ("blockMask_eq_definition", "count", (1, 2)),
    ("blockMask_eq_definition", "rows", (1, 7)),
    ("blockMask_eq_definition", "cols", (1, 7)),
    ("blockMask_eq_definition", "block", (1, 4)),
    ("blockMask_eq_definition", "period", (1, 5))])
def test_the_mask_statements_draw_each_end_of_their_ranges(name, key, ends):
    """One image and the most, two patches (one hidden, one seen), four (the fewest with a
    block mask beside the random one) and twelve; a block mask's single row, column, block
    side and period and its largest."""
    for end in ends:
        _draws(STATEMENTS[name].given, lambda example: example[key] == end)


def test_complement_selected_checks_block_masks_too(monkeypatch):
    """complement_selected_iff is about block_mask as well as random_mask: its examples check
    a block mask, the one of four patches (pinned) among them."""
    from minilean.models import mae
    grids, block_mask = [], mae.block_mask

    def recorded(count, rows, cols, **options):
        grids.append((rows, cols))
        return block_mask(count, rows, cols, **options)
    monkeypatch.setattr(mae, "block_mask", recorded)
    statement = STATEMENTS["complement_selected_iff"]
    assert statement.run(max_examples=statement.max_examples, derandomize=True).status == "pass"
    assert (2, 2) in grids, grids


@pytest.mark.parametrize("case", [
    lambda example: example["patches"] == 2,
    lambda example: example["patches"] > 2 ** 12,
    lambda example: (example["ratio"] * example["patches"]) % 1 == 0.5,
    lambda example: (example["ratio"] * 2 ** 10) % 1 != 0])
def test_hidden_count_draws_two_patches_many_ties_and_plain_reals(case):
    """hiddenCount_eq_round's L = 2 and L in the thousands, ratios whose r L ends in exactly .5
    (the ties) and ratios that are no dyadic k / 2^m (m <= 10)."""
    _draws(STATEMENTS["hiddenCount_eq_round"].given, case)


def test_the_mae_examples_keep_their_hypotheses():
    """Drawn: ratios in (0, 1); every image of a model example hides a patch and sees one
    (none hidden in the empty mask's), all images hiding as many."""
    from proofs.statements import mae

    def draws(counts, example, empty):
        assert 0 < counts["ratio"] < 1, counts
        hidden = example["hidden"].sum(1)
        assert (hidden == hidden[0]).all() and 0 < hidden[0] < example["hidden"].shape[1], hidden
        assert not empty["hidden"].any(), empty["hidden"]
    _every_draw(draws, STATEMENTS["hiddenCount_eq_round"].given, mae._mae_example(),
                mae._mae_example(empty=True))


def test_the_hidden_pixels_statement_replaces_the_hidden_patches_alone():
    """maeModel_hidden_pixels_unseen changes the pixels of hidden patches only, on every draw
    and pin (its relaxed strategy's, every pixel, is what admits a counterexample), and its
    draws hide some patches of each image and leave some visible."""
    from proofs.statements import mae
    statement = STATEMENTS["maeModel_hidden_pixels_unseen"]

    def holds(example):
        assert example["replaced"] == "hidden", example
        pixels = mae._hidden_pixels(example["example"]["hidden"])
        assert pixels.any((1, 2, 3)).all() and not pixels.all((1, 2, 3)).any(), pixels
    _every_draw(holds, statement.given)
    for pinned in statement.examples:
        holds(pinned)


@pytest.mark.parametrize("case", [
    lambda example: len(example["example"]["image"]) == 1,
    lambda example: len(example["example"]["image"]) == 3,
    lambda example: numpy.ptp(example["example"]["image"]) > 0.5])
def test_the_mae_model_statements_draw_one_image_three_and_varied_pixels(case):
    """maeLoss_append's draws: a batch of one and of three, images whose pixels vary."""
    _draws(STATEMENTS["maeLoss_append"].given, case)


def test_the_pinned_mae_example_is_one_the_strategy_could_draw():
    """PINNED_MAE_EXAMPLE: a batch of two images of varied pixels in [0, 1], each hiding two of
    its four patches (its own two), a split cutting each image's hidden patches in two
    non-empty parts (the sum law within an image, not only across the batch), and a permutation of
    the four patches that is neither the identity nor the reversal."""
    from proofs.statements import mae
    example = mae.PINNED_MAE_EXAMPLE
    image, hidden, split = example["image"], example["hidden"], example["split"]
    assert image.shape == (2,) + mae.MAE_IMAGE and 0 <= image.min() < image.max() <= 1
    assert hidden.sum(1).tolist() == [2, 2] and (hidden[0] != hidden[1]).any()
    assert (hidden & split).any(1).all() and (hidden & ~split).any(1).all()
    order = example["permutation"].tolist()
    assert sorted(order) == [0, 1, 2, 3] and order not in ([0, 1, 2, 3], [3, 2, 1, 0])


def _sees_only(example, patch):
    """Some image of ``example`` sees exactly one patch, its ``patch``-th (0 first, -1 last)."""
    return any(row.sum() == len(row) - 1 and row[patch] == 0 for row in example["hidden"])


@pytest.mark.parametrize("case", [
    lambda example: example["patches"].shape[0] == 1,
    lambda example: example["patches"].shape[0] == 2,
    lambda example: example["patches"].shape[1] == 2,
    lambda example: example["patches"].shape[1] == 4,
    lambda example: example["patches"].shape[2] == 1,
    lambda example: example["patches"].shape[2] == 3,
    lambda example: _spans_zero(example["patches"]) and _spans_zero(example["prediction"]),
    lambda example: _sees_only(example, 0),
    lambda example: _sees_only(example, -1)])
def test_visible_statistics_draws_each_end_of_its_strategys_ranges(case):
    """One image and two, two patches and four, patches of one pixel and of three, values of
    both signs, an image seeing only its first patch or only its last."""
    from proofs.statements import mae
    _draws(mae._visible_example(), case)


def test_the_visible_statistics_pin_hides_one_of_three_patches():
    """Its comment's example: one image of three two-pixel patches, one hidden."""
    (example,) = STATEMENTS["visibleStatistics_denormalize_value"].examples
    assert example["patches"].shape == (1, 3, 2) and example["hidden"].sum() == 1


def _autograd_case(name):
    from proofs.statements import autograd
    return next(case for case in autograd.CASES if case.name == name)


@pytest.mark.parametrize("name, case", [
    ("exp", lambda xs: xs[0].shape == (1,)),
    ("exp", lambda xs: xs[0].shape == (5,)),
    ("exp", lambda xs: xs[0].min() <= -7.5),
    ("exp", lambda xs: xs[0].max() >= 7.5),
    *[(name, lambda xs: xs[0].min() < 1 / 16) for name in ("log", "sqrt", "rsqrt")],
    *[(name, lambda xs: xs[0].max() > 32) for name in ("log", "sqrt", "rsqrt")],
    *[(name, lambda xs: xs[0].min() < -4) for name in (
        "abs", "neg", "sin", "cos", "tanh", "relu", "leaky_relu", "sigmoid", "silu", "gelu",
        "gelu_tanh")],
    *[(name, lambda xs: xs[0].max() > 4) for name in (
        "abs", "neg", "sin", "cos", "tanh", "relu", "leaky_relu", "sigmoid", "silu", "gelu",
        "gelu_tanh")],
    *[(name, lambda xs: xs[0].min() < -9) for name in ("sigmoid", "silu")],
    ("softplus", lambda xs: xs[0].max() > 88.8),
    ("softplus", lambda xs: xs[0].min() < -9.5),
    ("gelu", lambda xs: xs[0].min() < -5),
    ("gelu_tanh", lambda xs: xs[0].min() < -9.25),
    ("gelu_tanh", lambda xs: xs[0].max() > 9.25),
    ("mul", lambda xs: xs[0].shape == (1,)),
    ("mul", lambda xs: xs[0].shape == (4,)),
    ("maximum", lambda xs: min(abs(xs[0] - xs[1])[xs[0] != xs[1]], default=1) < 1 / 16),
    *[(name, lambda xs: (xs[0] == xs[1]).any() and (xs[0] != xs[1]).any())
      for name in ("maximum", "minimum")],
    ("abs", lambda xs: (xs[0] == 0).any() and (xs[0] != 0).any()),
    ("add_broadcast", lambda xs: xs[0].shape == (5,) and xs[1].shape == (1,)),
    ("clamp", lambda xs: len(xs) == 2 and xs[0].shape == (1,)),
    ("clamp", lambda xs: len(xs) == 3 and xs[0].shape == (4,)),
    ("clamp", lambda xs: len(xs) == 3 and (xs[2] < xs[1]).any() and (xs[2] > xs[1]).any()),
    ("matmul", lambda xs: xs[0].shape == (1, 1) and xs[1].shape == (1, 1)),
    ("matmul", lambda xs: xs[0].shape == (3, 3) and xs[1].shape == (3, 3)),
    ("linear", lambda xs: xs[0].shape[:-1] == (1,)),
    ("linear", lambda xs: xs[0].ndim == 3),
    ("mse_loss", lambda xs: xs[0].shape == (1, 1)),
    ("mse_loss", lambda xs: xs[0].shape == (3, 4)),
    ("mse_loss", lambda xs: min(abs(xs[0] - xs[1]).ravel()) < 1 / 16),
    *[(name, lambda xs, k=k: _reaches(xs[k], -4, 4))
      for name in ("mul", "maximum", "minimum", "sub", "where") for k in (0, 1)],
    ("div", lambda xs: _reaches(xs[0], -4, 4)),
    ("div", lambda xs: _reaches(xs[1], 1 / 2, 4)),
    ("pow", lambda xs: _reaches(xs[0], 1 / 2, 2)),
    ("pow", lambda xs: _reaches(xs[1], -2, 2)),
    ("clamp", lambda xs: len(xs) == 2 and (xs[0] < xs[1]).any() and (xs[0] > xs[1]).any()),
    *[("clamp", lambda xs, order=order: len(xs) == 3 and (
        (xs[order[0]] < xs[order[1]]) & (xs[order[1]] < xs[order[2]])).any())
      for order in ((0, 1, 2), (1, 0, 2), (1, 2, 0))],
    *[("matmul", lambda xs, k=k: _reaches(xs[k], -2, 2)) for k in (0, 1)],
    *[("linear", lambda xs, k=k: _reaches(xs[k], -2, 2)) for k in (0, 1, 2)],
    ("mse_loss", lambda xs: _reaches(xs[0] - xs[1], -4, 4)),
    *[(name, lambda xs: _reaches(xs[0], -4, 4))
      for name in ("logsumexp", "softmax", "log_softmax")]])
def test_the_autograd_strategies_draw_each_end_of_their_ranges(name, case):
    """The ranges the autograd statement's strategies and formulas name: 1-5 elements (1-4 for
    a pair) spanning the domain: log, sqrt and rsqrt over both sides of 1 (below 1/16, above
    32), the others over both signs (past +-4) and the sigmoids into their left tails (below
    -9), near a tie (maximum) or a zero residual (mse_loss), exactly on a tie beside a pair
    apart (maximum, minimum) or on abs's kink 0 beside values off it, softplus
    past e^x's float32 range (88.7) and into its left tail, gelu below -5 (where 1 + erf
    would cancel), gelu-tanh to its domain's ends (+-9.5), clamp with its lower bound alone
    and with both in either order, matmul's 1-3 per axis, mse_loss over 1 x 1 to 3 x 4; each
    input of a binary op over both signs (past +-4), but div's denominator (below 1/2 and
    above 4), pow's base (on both sides of 1, where log a changes sign) and pow's exponent
    (past +-2); clamp's x on both sides of its lower bound alone, and below, between and above
    low < high; each matmul factor over both signs (past +-2: a constant A hides A for A^T in
    dB = A^T G on square shapes), linear's x of one row and of two leading axes (the MAE's
    (batch, tokens, width)), each of x, W and b over both signs (past +-2), mse_loss's
    residuals of both signs (past +-4), and one
    vector of logsumexp's, softmax's and log_softmax's spanning both signs (equal inputs, a
    uniform softmax, would hide s (g - mean g) for s (g - sum g s))."""
    _draws(_autograd_case(name).inputs, case)


def _off_zero(values, or_on_it):
    return all(abs(v) >= 1 / 64 or or_on_it and v == 0 for v in values)


def _pairs_off_ties(a, b, ties):
    return all(abs(x - y) >= 1 / 64 or ties and x == y for x, y in zip(a, b))


@pytest.mark.parametrize("name, kept", [
    ("abs", lambda xs: _off_zero(xs[0], or_on_it=True)),
    ("relu", lambda xs: _off_zero(xs[0], or_on_it=False)),
    ("leaky_relu", lambda xs: _off_zero(xs[0], or_on_it=False)),
    ("maximum", lambda xs: _pairs_off_ties(*xs, ties=True)),
    ("minimum", lambda xs: _pairs_off_ties(*xs, ties=True)),
    ("clamp", lambda xs: all(_pairs_off_ties(xs[i], xs[j], ties=False)
                             for i in range(len(xs)) for j in range(i))),
    ("mse_loss", lambda xs: _pairs_off_ties(xs[0].ravel(), xs[1].ravel(), ties=False))])
def test_the_autograd_strategies_keep_off_the_kinks_or_land_on_them(name, kept):
    """Each drawn value lies at least 1/64 from the op's kinks or, for abs, maximum and minimum,
    which take the symmetric derivative there as mpmath.diff does, exactly on one (the comment
    on kinks in autograd.py): relu, leaky_relu and clamp assume them off it, and a value
    nearer than mpmath.diff's step would have its difference straddle the kink. Likewise
    mse_loss's inputs keep 1/64 from their targets (a zero residual hides any scale)."""
    def holds(example):
        assert kept(example["inputs"]), example["inputs"]
    _every_draw(holds, STATEMENTS[f"autograd_backward_eq_mpmath_derivative[{name}]"].given)


@pytest.mark.parametrize("name, case", [
    ("leaky_relu", lambda parameter: parameter == 0.2),
    ("leaky_relu", lambda parameter: parameter == 0.01),
    ("leaky_relu", lambda parameter: parameter < 1 / 32),
    ("leaky_relu", lambda parameter: parameter == 1),
    ("where", lambda parameter: any(parameter[:1]) and not all(parameter[:2])),
    ("mse_loss", lambda parameter: parameter == "mean"),
    ("mse_loss", lambda parameter: parameter == "sum")])
def test_the_autograd_parameters_draw_each_case_their_comments_name(name, case):
    """leaky_relu's slope: the GAN's 0.2, PyTorch's 0.01, and drawn in [1/64, 1]; where's
    condition with both flags among two elements; mse_loss's two reductions."""
    _draws(_autograd_case(name).parameter, case)


def _above_least_side(example):
    """How far each of a convolution example's sides lies above the least its strategy
    draws (one that leaves an output; conv_transpose2d's at stride 1 and either dilation)."""
    kernel, padding = example["weight"].shape[2:], example["padding"]
    dilation = numpy.broadcast_to(example["dilation"], 2)
    mixed = example.get("mixed_dilation", dilation)
    if "output_padding" in example:
        least = [max(1, 1 + 2 * pad - min(d, m) * (k - 1))
                 for k, pad, d, m in zip(kernel, padding, dilation, mixed)]
    else:
        least = [max(1, max(d, m) * (k - 1) + 1 - 2 * pad)
                 for k, pad, d, m in zip(kernel, padding, dilation, mixed)]
    return tuple(side - low for side, low in zip(example["x"].shape[2:], least))


def _convolution_ends(strategy, most_channels, most_above_least):
    """(strategy, case) for each end of a convolution strategy's ranges: N = 1 and 2, one
    group of one input and one output channel, two groups of ``most_channels[0]`` inputs
    and two of ``most_channels[1]`` outputs (per group), kernels 1 x 4 and 4 x 1, padding 0
    and 1, dilation 1 and 2, each side the least the strategy draws (with padding 1 too, and
    along a kernel of 1) and ``most_above_least`` above it, a side of 1, and inputs and
    weights of both signs."""
    def channels(example):
        x, weight, groups = example["x"], example["weight"], example["groups"]
        out = weight.shape[1] if "output_padding" in example else weight.shape[0] // groups
        return groups, x.shape[1] // groups, out
    return [(strategy, case) for case in (
        lambda example: example["x"].shape[0] == 1, lambda example: example["x"].shape[0] == 2,
        lambda example: channels(example) == (1, 1, 1),
        lambda example: channels(example)[:2] == (2, most_channels[0]),
        lambda example: channels(example)[::2] == (2, most_channels[1]),
        lambda example: example["weight"].shape[2:] == (1, 4),
        lambda example: example["weight"].shape[2:] == (4, 1),
        lambda example: tuple(example["padding"]) == (0, 0),
        lambda example: tuple(example["padding"]) == (1, 1),
        lambda example: (numpy.asarray(example["dilation"]) == 1).all(),
        lambda example: (numpy.asarray(example["dilation"]) == 2).all(),
        lambda example: _above_least_side(example) == (0, 0),
        lambda example: _above_least_side(example) == (most_above_least,) * 2,
        lambda example: _above_least_side(example) == (0, 0)
        and tuple(example["padding"]) == (1, 1),
        lambda example: _above_least_side(example) == (0, 0) and 1 in example["weight"].shape[2:],
        lambda example: 1 in example["x"].shape[2:],
        lambda example: all(_spans_zero(example[key]) for key in example
                            if key in ("x", "weight", "bias", "fan_weight")))]


@pytest.mark.parametrize("strategy, case", [
    # layer_norm: B, R and n at each end, over one axis and over two, x, w and b of both signs
    ("_layer_norm_inputs", lambda example: example["x"].shape == (1, 1, 2)),
    ("_layer_norm_inputs", lambda example: example["x"].shape == (2, 3, 5)),
    ("_layer_norm_inputs", lambda example: len(example["normalized_shape"]) == 1),
    ("_layer_norm_inputs", lambda example: len(example["normalized_shape"]) == 2),
    ("_layer_norm_inputs", lambda example: all(_spans_zero(example[key]) for key in (
        "x", "weight", "bias"))),
    # group_norm: N, G, C/G, H and W at each end, both layouts, x, w and b of both signs
    ("_group_norm_inputs", lambda example: example["x"].shape == (1, 1, 1, 1)
     and example["groups"] == 1),
    ("_group_norm_inputs", lambda example: example["x"].shape == (2, 4, 2, 2)
     and example["groups"] == 2),
    ("_group_norm_inputs", lambda example: example["channels_last"]),
    ("_group_norm_inputs", lambda example: not example["channels_last"]),
    ("_group_norm_inputs", lambda example: all(_spans_zero(example[key]) for key in (
        "x", "weight", "bias"))),
    # normalize_patches: N, L and P at each end
    ("_patch_inputs", lambda example: example["patches"].shape == (1, 1, 2)),
    ("_patch_inputs", lambda example: example["patches"].shape == (2, 3, 4)),
    ("_patch_inputs", lambda example: example["patches"].min() < 0.5 < example["patches"].max()),
    # the convolutions: see _convolution_ends; conv2d's and conv_transpose2d's mixed strides
    # and dilations, conv_transpose2d's output_padding, the frozen weight's 1 x 1 kernel
    *_convolution_ends("_conv_inputs", (4, 4), 2),
    *_convolution_ends("_frozen_conv_inputs", (4, 3), 2),
    *_convolution_ends("_conv_transpose_inputs", (3, 3), 1),
    *[(strategy, lambda example, key=key, value=value: example[key] == value)
      for strategy in ("_conv_inputs", "_conv_transpose_inputs")
      for key in ("mixed_stride", "mixed_dilation") for value in ((1, 2), (2, 1))],
    *[("_conv_transpose_inputs", lambda example, value=value: example["output_padding"] == value)
      for value in ((0, 0), (1, 1))],
    ("_frozen_conv_inputs", lambda example: example["weight"].shape[2:] == (1, 1)),
    # embedding: one row of one dimension and four of three, indices (k,) and (a, b) at
    # each end, the last of several rows picked, a row picked twice, values of both signs
    ("_embedding_inputs", lambda example: example["weight"].shape == (1, 1)
     and example["indices"].shape == (1,)),
    ("_embedding_inputs", lambda example: example["weight"].shape == (4, 3)),
    ("_embedding_inputs", lambda example: example["indices"].shape == (6,)),
    ("_embedding_inputs", lambda example: len(example["weight"]) > 1
     and len(example["weight"]) - 1 in example["indices"]),
    ("_embedding_inputs", lambda example: example["indices"].shape == (1, 1)),
    ("_embedding_inputs", lambda example: example["indices"].shape == (3, 3)),
    ("_embedding_inputs", lambda example: _spans_zero(example["weight"])
     and len(set(example["indices"].ravel())) < example["indices"].size)])
def test_the_layer_backward_strategies_draw_each_end_of_their_ranges(strategy, case):
    """The ends of the ranges the layers' strategies' docstrings name, and affine weights and
    biases of both signs (a weight's sign slip shows only there)."""
    from proofs.statements import layer_backward
    _draws(getattr(layer_backward, strategy)(), case)


@pytest.mark.parametrize("strategy", ["_conv_inputs", "_frozen_conv_inputs",
                                      "_conv_transpose_inputs"])
def test_the_layer_backward_strategies_draw_only_what_their_docstrings_allow(strategy):
    """The convolution strategies draw an image at least, each side at least the least that
    leaves an output, and never a 1 x 1 kernel (it reads no dilation: the mixed dilations'
    slips would hide there), but for the frozen weight, whose padding stays within d (K - 1)
    per axis instead (so that dL/dx is always the flipped-kernel convolution); fan_weight
    takes x's first channel to 4, which the shifted-rows form asks (3 do not)."""
    from proofs.statements import layer_backward
    fanned = {"_frozen_conv_inputs": (4, 1), "_conv_transpose_inputs": (1, 4)}.get(strategy)

    def holds(example):
        kernel = example["weight"].shape[2:]
        assert example["x"].shape[0] >= 1 and min(_above_least_side(example)) >= 0, example
        assert fanned is None or example["fan_weight"].shape[:2] == fanned, example
        if strategy == "_frozen_conv_inputs":
            assert all(pad <= example["dilation"] * (k - 1)
                       for pad, k in zip(example["padding"], kernel)), example
        else:
            assert kernel != (1, 1), example
    _every_draw(holds, getattr(layer_backward, strategy)())


def _diffusion_part(example, part):
    """The values of ``part`` in a diffusion example: a key's value(s), or T (the schedule's
    length), n (the vectors' length) or the gap t - 1 - t' of a step (0: to t - 1)."""
    if part == "T":
        return len(example["betas"])
    if part == "n":
        return len(example["x"] if "x" in example else example["pair"][0])
    if part == "gap":
        return example["t"] - 1 - example["t_prev"]
    return example[part]


# the ranges the diffusion statements draw from: _betas (T from 1 to 6, or from 2; each beta
# in [2^-13, 1/2]), _vector and _pair (n from 1 to 4, entries in [-2, 2]), _with_step (t from
# 0 to T - 1, t' from the clean state -1 to t - 1: a gap t - 1 - t' from 0 to T - 1), and each
# statement's own
_DIFFUSION_VECTOR, _DIFFUSION_PAIR = [("n", 1, 4), ("x", -2, 2)], [("n", 1, 4), ("pair", -2, 2)]
_DIFFUSION_STEP = [("T", 2, 6), ("t", 0, 5), ("t_prev", -1, 4), ("gap", 0, 5)]
_DIFFUSION_FIELD = [("beta", 0.1, 20), ("sigma", 0.05, 1)]
_DIFFUSION_RANGES = [(name, *ends) for name, ranges in [
    ("alphaBar_zero", [("T", 1, 6), ("betas", 2 ** -13, 0.5), *_DIFFUSION_VECTOR, ("c", -1, 1)]),
    ("ddimStepSystem_eq_step", [("T", 2, 6), *_DIFFUSION_VECTOR, ("c", -1, 1)]),
    ("pfOdeEulerSystem_eq_step", [*_DIFFUSION_VECTOR, ("c", -1, 1), ("steps", 1, 3)]),
    ("ddimStep_eq_x0Pred", [*_DIFFUSION_STEP, *_DIFFUSION_VECTOR, ("c", -1, 1)]),
    ("eulerStep_l2_lipschitz_of_rhs_lipschitz", [*_DIFFUSION_PAIR, ("dt", -0.5, 0.5),
                                                 *_DIFFUSION_FIELD, ("c", -2, 2),
                                                 ("t", -1.0, 1.0)]),
    ("pfOdeEulerSystem_l2_lipschitz_of_rhs_lipschitz", [*_DIFFUSION_PAIR, ("dt", -0.5, 0.5),
                                                        *_DIFFUSION_FIELD, ("c", -2, 2)]),
    ("eulerStep_l2_distance_bound", [*_DIFFUSION_PAIR, ("dt", -1, 1), ("c", -2, 2),
                                     ("t", -1.0, 1.0)]),
    ("ddimStepSystem_lipschitz_of_step_lipschitz", [*_DIFFUSION_STEP, *_DIFFUSION_PAIR,
                                                    ("c", -2, 2)]),
    ("ddimStepSystem_contracts_of_step_contracts", [*_DIFFUSION_STEP, *_DIFFUSION_PAIR,
                                                    ("c", 0.5, 3)]),
    ("pfOdeEulerSystem_lipschitz_of_step_lipschitz", [*_DIFFUSION_PAIR, *_DIFFUSION_FIELD,
                                                      ("c", -2, 2), ("steps", 1, 3)]),
    ("pfOdeEulerSystem_contracts_of_step_contracts", [*_DIFFUSION_PAIR, *_DIFFUSION_FIELD,
                                                      ("c", 0.5, 3), ("steps", 1, 3)]),
    ("forwardGaussian_isGaussian", [("T", 2, 6), ("x0", -2, 2)]),
    ("forward_multistep_law", [("T", 1, 6), ("x0", -2, 2)])]
    for ends in ranges]


@pytest.mark.parametrize("name, part, end", [
    (name, part, end) for name, part, low, high in _DIFFUSION_RANGES for end in (low, high)])
def test_the_diffusion_strategies_draw_each_end_of_their_ranges(name, part, end):
    """Each end of every range the diffusion statements draw from, within half a unit of an
    integer end and a quarter of a fractional one (closer than the range moved by one, or
    halved, or its sign dropped): such a slip leaves the statement true and its pinned
    examples catching their mutants, and only its draws show what it lost."""
    within = 0.5 if isinstance(end, int) else abs(end) / 4
    _draws(STATEMENTS[name].given, lambda example: any(
        abs(value - end) <= within for value in numpy.ravel(_diffusion_part(example, part))))


def test_the_diffusion_pinned_examples_lie_in_their_strategies_ranges():
    """A pinned example is one the strategy could have drawn: outside its ranges, a pin that
    catches a mutant shows a slip of an input the statement does not claim."""
    for name, part, low, high in _DIFFUSION_RANGES:
        for pinned in STATEMENTS[name].examples:
            values = numpy.ravel(_diffusion_part(pinned, part))
            assert ((low <= values) & (values <= high)).all(), (name, part, values)


@pytest.mark.parametrize("name, key, claimed", [
    *[(name, "fraction", 1.0) for name in ("eulerStep_l2_lipschitz_of_rhs_lipschitz",
                                            "pfOdeEulerSystem_l2_lipschitz_of_rhs_lipschitz",
                                            "pfOdeEulerSystem_lipschitz_of_step_lipschitz")],
    *[(name, "require", True) for name in ("ddimStepSystem_contracts_of_step_contracts",
                                           "pfOdeEulerSystem_contracts_of_step_contracts")]])
def test_the_diffusion_statements_claim_what_their_docstrings_state(name, key, claimed):
    """The Lipschitz statements claim the whole constant L (fraction 1: a fraction above 1
    loosens the bound until a pinned example alone is tight, a quarter is the relaxed
    strategy's), the contraction statement asks its hypothesis k < 1: on every draw and pin."""
    def draws(example):
        assert example[key] == claimed, example
    _every_draw(draws, STATEMENTS[name].given)
    assert all(pinned[key] == claimed for pinned in STATEMENTS[name].examples)


@pytest.mark.parametrize("name, example", [
    # k = |1 + beta / (2n) (1 - c / sigma)| = 1.25
    ("pfOdeEulerSystem_contracts_of_step_contracts",
     {"beta": 1.0, "sigma": 1.0, "c": 0.5, "steps": 1}),
    # the step 2 -> 1 of alpha_bar 0.9, 0.72, 0.504: k = |sqrt(a'/a) + (sqrt(1 - a')
    # - sqrt(a'(1 - a)/a)) c| = 1.039
    ("ddimStepSystem_contracts_of_step_contracts",
     {"betas": numpy.asarray([0.1, 0.2, 0.3]), "t": 2, "t_prev": 1, "c": 0.5})])
def test_the_diffusion_contractions_fail_on_a_step_that_stretches_a_little(name, example):
    """Without its hypothesis k < 1 each contraction statement fails on a step that stretches
    distances by a factor under 2 (1.25 and 1.039), not only on the far larger ones its
    relaxed search finds: the conclusion is ||step(x) - step(y)|| <= ||x - y||, with no slack
    beyond rounding."""
    import mpmath

    from proofs.framework import DIGITS, Check, StatementFailed
    pair = (numpy.asarray([1.0]), numpy.asarray([0.0]))
    with mpmath.workdps(DIGITS), pytest.raises(StatementFailed, match="contracts"):
        STATEMENTS[name].body(Check(), pair=pair, require=False, **example)


def _x0_hat(example, t):
    """x0Pred(x_t, eps_hat) at timestep t of the example's schedule, in float64."""
    from minilean.models.diffusion import alpha_bars
    a = alpha_bars(example["betas"])[t]
    return (example["x"] - numpy.sqrt(1 - a) * example["eps"]) / numpy.sqrt(a)


_ANCESTRAL_STEPS = ("ddimStep_eta_one_eq_ddpm_posterior", "ddimStep_eq_eta_formula",
                    "ddpmStep_eq_posterior_step")


@pytest.mark.parametrize("name, case", [
    # the posterior: T = 2 (t - 1 = 0, the first timestep) and 6, x0 and x_t of both signs
    # past 1 and 2
    ("ddpm_posterior_mean_variance", lambda example: len(example["betas"]) == 2),
    ("ddpm_posterior_mean_variance", lambda example: len(example["betas"]) == 6),
    ("ddpm_posterior_mean_variance", lambda example: example["x0"] < -1 < 2 < example["x_t"]),
    ("ddpm_posterior_mean_variance", lambda example: example["x_t"] < -2 < 1 < example["x0"]),
    # the ancestral steps: T = 2, t at each end, one coordinate and four, x_t, eps_hat and z
    # past -1 and 1
    *[(name, case) for name in _ANCESTRAL_STEPS for case in (
        lambda example: len(example["betas"]) == 2,
        lambda example: example["t"] == len(example["betas"]) - 1,
        lambda example: len(example["x"]) == 1, lambda example: len(example["x"]) == 4,
        lambda example: all(_reaches(example[key], -1, 1) for key in ("x", "eps", "noise")))],
    ("ddpmStep_eq_posterior_step", lambda example: example["t"] == 0),
    # DDIM's respaced steps: to the timestep before and past it; eta below and above 1
    *[(name, case) for name in _ANCESTRAL_STEPS[:2] for case in (
        lambda example: example["t_prev"] == example["t"] - 1,
        lambda example: example["t_prev"] < example["t"] - 1)],
    ("ddimStep_eq_eta_formula", lambda example: example["eta"] < 1),
    ("ddimStep_eq_eta_formula", lambda example: example["eta"] > 1),
    # the DDPM sampler: one step (no noise at all) and four, eps_hat's factor of both signs
    ("ddpmSample_eq_steps", lambda example: len(example["betas"]) == 1),
    ("ddpmSample_eq_steps", lambda example: len(example["betas"]) == 4),
    ("ddpmSample_eq_steps", lambda example: example["c"] < 0),
    ("ddpmSample_eq_steps", lambda example: example["c"] > 0),
    # clip: T = 2, DDPM's t at each end, DDIM's t' the clean state and the timestep before,
    # eta 0 and not, one coordinate and four, x_t, eps_hat and z past -1 and 1 (an x_t
    # outside [-1, 1] shows a clipped x_t), x0_hat above 1, below -1 and inside
    ("samplerStep_clip_x0Pred", lambda example: len(example["betas"]) == 2),
    ("samplerStep_clip_x0Pred", lambda example: example["t"] == 0),
    ("samplerStep_clip_x0Pred", lambda example: example["t"] == len(example["betas"]) - 1),
    ("samplerStep_clip_x0Pred", lambda example: example["t_prev"] == -1),
    ("samplerStep_clip_x0Pred", lambda example: example["t_prev"] == example["ddim_t"] - 1 >= 0),
    ("samplerStep_clip_x0Pred", lambda example: example["eta"] == 0),
    ("samplerStep_clip_x0Pred", lambda example: example["eta"] > 0),
    ("samplerStep_clip_x0Pred", lambda example: len(example["x"]) == 1),
    ("samplerStep_clip_x0Pred", lambda example: len(example["x"]) == 4),
    ("samplerStep_clip_x0Pred", lambda example: all(
        _reaches(example[key], -1, 1) for key in ("x", "eps", "noise"))),
    ("samplerStep_clip_x0Pred", lambda example: _x0_hat(example, example["t"]).max() > 1),
    ("samplerStep_clip_x0Pred", lambda example: _x0_hat(example, example["t"]).min() < -1),
    ("samplerStep_clip_x0Pred", lambda example: abs(_x0_hat(example, example["t"])).min() < 1)])
def test_the_diffusion_strategies_draw_each_case_their_docstrings_name(name, case):
    """The cases the diffusion statements' strategies and docstrings name: the schedule's
    shortest T and longest, the first and the last timestep, DDIM's step to the timestep
    before and past it (respaced sampling skips) and to the clean state, eta 0 (clip's), below 1
    and above it (eta's formula's (0, 1.5)), one coordinate and four, inputs of both signs (the
    clip example's x0_hat above 1, below -1 and inside: "outside [-1, 1] on most examples and
    inside it on some")."""
    _draws(STATEMENTS[name].given, case)


@pytest.mark.parametrize("name, labels", [
    ("ddimStep_eta_one_eq_ddpm_posterior", {
        "mpmath: sigma^2 = posterior variance", "mpmath: direction coefficient",
        "mpmath: DDIM(eta = 1) = posterior mean + sqrt(variance) z"}),
    ("forward_multistep_law", {"mean recursion against alpha_bars",
                               "variance recursion against alpha_bars"})])
def test_the_diffusion_statements_make_the_50_digit_checks_they_state(monkeypatch, name, labels):
    """Checks that no engine slip fails alone are still made: DDIM at eta = 1 is checked to be
    the ancestral step in mpmath (sigma^2 the posterior variance, the direction coefficient its
    closed form, the value the posterior mean plus sqrt(v) z), not only the engine against the
    DDIM formula; the multi-step law's mean and variance recursions are each checked against
    alpha_bars (a slip in alpha_bars fails both, so neither shows the other gone)."""
    from proofs.framework import Check
    made, close = set(), Check.close

    def spy(check, computed, reference, bound, what):
        made.add(what)
        return close(check, computed, reference, bound, what)
    monkeypatch.setattr(Check, "close", spy)
    assert STATEMENTS[name].run(max_examples=1, shrink=False).status == "pass"
    assert labels <= made, labels - made


def _diffusion_step_kept(example, first_step, etas):
    """An ancestral-step example keeps _ancestral_example's ranges (``etas``: eta in (0, 1.5))."""
    t, lengths = example["t"], {len(example[key]) for key in ("x", "eps", "noise")}
    return (first_step <= t < len(example["betas"]) and min(lengths) == max(lengths) >= 1
            and ("t_prev" not in example or 0 <= example["t_prev"] < t)
            and (not etas or 0 < example["eta"] < 1.5))


def _clip_step_kept(example):
    """A clip example keeps _clip_example's ranges: t in 0..T - 1, ddim_t in 1..T - 1, t' from
    the clean state -1 up to ddim_t - 1, eta 0 or in (0, 1)."""
    steps = len(example["betas"])
    return (0 <= example["t"] < steps and -1 <= example["t_prev"] < example["ddim_t"] < steps
            and example["ddim_t"] >= 1
            and (example["eta"] == 0 or 0 < example["eta"] < 1)
            and len(example["x"]) == len(example["eps"]) == len(example["noise"]) >= 1)


@pytest.mark.parametrize("name, kept", [
    ("ddimStep_eta_one_eq_ddpm_posterior",
     lambda example: _diffusion_step_kept(example, 1, etas=False)),
    ("ddimStep_eq_eta_formula", lambda example: _diffusion_step_kept(example, 1, etas=True)),
    ("ddpmStep_eq_posterior_step", lambda example: _diffusion_step_kept(example, 0, etas=False)),
    ("ddpmSample_eq_steps", lambda example: 1 <= len(example["betas"]) <= 4),
    ("samplerStep_clip_x0Pred", _clip_step_kept)])
def test_the_diffusion_strategies_draw_only_what_their_hypotheses_allow(name, kept):
    """Timesteps inside the schedule (a negative t reads the schedule from its end, where
    engine and reference agree on a step that means nothing), t' below t, eta where the
    docstrings draw it (0 excluded where it is not the case meant), vectors of one length
    >= 1 (an empty one checks nothing), a sampler of 1 to 4 steps."""
    def holds(example):
        assert kept(example), example
    _every_draw(holds, STATEMENTS[name].given)
