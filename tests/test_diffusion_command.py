"""The diffusion command's wiring, on tiny CPU runs: the learning-rate schedule, gradient
clipping, the EMA (updated after each step, swapped in for sampling), the sampling random
streams and options (clip, prediction), the reconstruction, and the outputs it writes."""
import json
import math

import numpy
import pytest

from minilean.cli import main
from minilean.data import read_metrics
from minilean.optim import load_checkpoint
from minilean.train import diffusion

TINY = ["--cpu", "--n-total=32", "--batch-size=4", "--hidden-c=4", "--T=10", "--noprogress",
        "--evaluate=false", "--sample-steps=2"]
SEED, T, SIZE = 0, 10, 16  # the defaults of the builtin dataset's runs above


def run_cli(out, *argv):
    """A tiny run into ``out`` (4 samples unless ``argv`` says otherwise); returns its
    summary."""
    samples = [] if any(flag.startswith("--n-samples=") for flag in argv) else ["--n-samples=4"]
    main(["diffusion", *TINY, *samples, f"--out={out}", *argv])
    return json.loads((out / "summary.json").read_text())


def spy(monkeypatch, owner, name, calls):
    """Replace ``owner.name`` by a wrapper that appends (args, kwargs, result) to ``calls``."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(owner, name, wrapper)


def recording_adam(monkeypatch):
    """Each optimizer step's (lr, global gradient norm), as Adam sees them."""
    seen = []

    class Recording(diffusion.Adam):
        def step(self):
            norm = math.sqrt(sum(float(numpy.sum(numpy.square(param.grad.data)))
                                 for param in self.params if param.grad is not None))
            seen.append((self.lr, norm))
            return super().step()

    monkeypatch.setattr(diffusion, "Adam", Recording)
    return seen


def expected_factor(index, warmup, horizon):
    """The documented schedule: linear warm-up (index + 1) / warmup over the first ``warmup``
    updates, then a half cosine from 1 to 0 at ``horizon``."""
    if index < warmup:
        return (index + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (index - warmup) / (horizon - warmup)))


# --- training: learning rate, clipping, EMA, logged loss ------------------------------------

@pytest.mark.parametrize("decay_flag, horizon", [([], 6), (["--lr-decay-steps=9"], 9)])
def test_each_update_uses_the_scheduled_learning_rate(tmp_path, monkeypatch, decay_flag,
                                                      horizon):
    seen = recording_adam(monkeypatch)
    run_cli(tmp_path, "--steps=6", "--lr=0.01", "--warmup-steps=2", *decay_flag)
    expected = [0.01 * expected_factor(index, 2, horizon) for index in range(6)]
    numpy.testing.assert_allclose([lr for lr, _ in seen], expected, rtol=1e-12, atol=1e-15)
    assert seen[0][0] == pytest.approx(0.005)  # the first update is already warming up


def test_every_update_clips_the_global_gradient_norm_to_one(tmp_path, monkeypatch):
    clips = []
    spy(monkeypatch, diffusion, "clip_grad_norm_", clips)
    seen = recording_adam(monkeypatch)
    run_cli(tmp_path, "--steps=3")
    assert len(clips) == 3
    for args, kwargs, _ in clips:
        assert kwargs.get("max_norm", args[1] if len(args) > 1 else None) == 1.0
    assert all(norm <= 1.0 + 1e-5 for _, norm in seen)
    # the clip does something here: the gradients before it are larger than 1
    assert max(float(norm.item()) for _, _, norm in clips) > 1.0


def test_the_ema_folds_in_the_weights_after_each_optimizer_step(tmp_path):
    """With a decay of almost 0 the average is the latest weights: those after the last
    step's update, not the ones before it."""
    run_cli(tmp_path, "--steps=3", "--ema=1e-9", "--lr=0.01", "--warmup-steps=0",
            "--lr-schedule=constant")
    checkpoint = load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))
    weights, shadow = checkpoint["modules"]["model"], checkpoint["emas"]["model"]["shadow"]
    assert checkpoint["emas"]["model"]["num_updates"] == 3
    for name, value in weights.items():
        numpy.testing.assert_allclose(shadow[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_summary_final_loss_is_the_last_logged_loss(tmp_path):
    summary = run_cli(tmp_path, "--steps=3", "--log-every=1")
    records = read_metrics(str(tmp_path / "metrics.jsonl"))
    assert [record["step"] for record in records] == [1, 2, 3]
    assert records[0]["loss"] != records[-1]["loss"]
    assert summary["final_loss"] == records[-1]["loss"] and summary["steps"] == 3
