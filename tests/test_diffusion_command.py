"""The diffusion command's wiring, on tiny CPU runs: the learning-rate schedule, gradient
clipping, the EMA (updated after each step, swapped in for sampling), the sampling random
streams and options (clip, prediction), the reconstruction, and the outputs it writes."""
import json
import math
import os
import pathlib
import time
from types import SimpleNamespace

import numpy
import pytest

from minilean.autograd.creation import tensor
from minilean.cli import main
from minilean.data import load_dataset, read_metrics, read_pnm
from minilean.data.images import make_grid, to_uint8
from minilean.data.streams import Purpose, stream
from minilean.models import diffusion as D
from minilean.optim import load_checkpoint
from minilean.train import diffusion
from minilean.train.loop import TrainState

TINY = ["--cpu", "--n-total=32", "--batch-size=4", "--hidden-c=4", "--T=10", "--noprogress",
        "--evaluate=false"]
SEED, T, SIZE = 0, 10, 16  # the defaults of the builtin dataset's runs above


def run_cli(out, *argv):
    """A tiny run into ``out`` (TINY and 4 samples, where ``argv`` gives no other value);
    returns its summary."""
    given = {flag.split("=")[0] for flag in argv}
    tiny = [flag for flag in [*TINY, "--n-samples=4"] if flag.split("=")[0] not in given]
    main(["diffusion", *tiny, f"--out={out}", *argv])
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


def exit_and_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["--steps=5", "--warmup-steps=6"], "--warmup-steps: got 6; expected at most 5, the "
                                        "cosine's horizon (--steps); a longer warm-up never "
                                        "reaches --lr"),
    (["--steps=5", "--lr-decay-steps=8", "--warmup-steps=9"],
     "--warmup-steps: got 9; expected at most 8, the cosine's horizon (--lr-decay-steps); a "
     "longer warm-up never reaches --lr"),
    (["--steps=5", "--lr-decay-steps=4"], "--lr-decay-steps: got 4; expected an integer >= "
                                          "--steps 5 (the cosine reaches 0 there; the steps "
                                          "after it would train at learning rate 0)"),
])
def test_a_schedule_that_misses_lr_or_ends_early_is_refused_before_training(
        argv, expected, tmp_path, capsys):
    code, err = exit_and_error(["diffusion", *TINY, *argv, f"--out={tmp_path / 'run'}"], capsys)
    assert code == 2 and err == f"minilean diffusion: error: {expected}\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags", [
    {"steps": 5, "warmup_steps": 5}, {"steps": 5, "lr_decay_steps": 8, "warmup_steps": 8},
    {"steps": 5},  # the default warm-up (100) is not refused: every short run would be
    {"steps": 5, "warmup_steps": 9, "lr_decay_steps": 3, "lr_schedule": "constant"}])
def test_a_schedule_that_reaches_lr_and_lasts_the_run_passes(flags):
    from minilean.cli import DIFFUSION
    DIFFUSION.parse((), flags)


def test_a_resumed_run_past_its_cosine_horizon_is_refused_and_kept(tmp_path, capsys):
    """--steps on --resume is the new total: the saved --lr-decay-steps must still cover it."""
    run_cli(tmp_path, "--steps=2", "--lr-decay-steps=4", "--warmup-steps=3")
    before = (tmp_path / "config.json").read_bytes()
    code, err = exit_and_error(["diffusion", "--steps=6", f"--resume={tmp_path}"], capsys)
    assert code == 2 and "--lr-decay-steps: got 4; expected an integer >= --steps 6" in err
    code, err = exit_and_error(["diffusion", "--steps=6", "--lr-decay-steps=6",
                                "--warmup-steps=7", f"--resume={tmp_path}"], capsys)
    assert code == 2 and "--warmup-steps: got 7; expected at most 6" in err
    assert (tmp_path / "config.json").read_bytes() == before
    main(["diffusion", "--steps=4", f"--resume={tmp_path}", "--noprogress"])  # within it
    assert [record["step"] for record in read_metrics(tmp_path / "metrics.jsonl")][-1] == 4


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


def test_ema_0_disables_the_average(tmp_path):
    """As --ema's help says ("0 disables it"): the run keeps no average, and its checkpoint
    holds none."""
    run_cli(tmp_path, "--steps=1", "--ema=0")
    checkpoint = load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))
    assert "model" in checkpoint["modules"] and not checkpoint.get("emas")


def test_summary_final_loss_is_the_last_logged_loss(tmp_path):
    """... and its cpu_seconds the process's CPU time at the run's end (to a tenth)."""
    before = time.process_time()
    summary = run_cli(tmp_path, "--steps=3", "--log-every=1")
    after = time.process_time()
    records = read_metrics(str(tmp_path / "metrics.jsonl"))
    assert [record["step"] for record in records] == [1, 2, 3]
    assert records[0]["loss"] != records[-1]["loss"]
    assert summary["final_loss"] == records[-1]["loss"] and summary["steps"] == 3
    assert before - 0.05 <= summary["cpu_seconds"] <= after + 0.05


def test_run_returns_the_summary_it_writes(tmp_path):
    """For a caller in Python, as ``evaluate.run`` returns its report."""
    from minilean.cli import DIFFUSION
    config = DIFFUSION.parse((), {"steps": 1, "n_total": 32, "batch_size": 4, "hidden_c": 4,
                                  "T": 10, "n_samples": 4, "device": "cpu",
                                  "evaluate": False, "progress": False, "out": str(tmp_path)})
    returned = diffusion.run(config)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert returned["steps"] == 1 and returned == {key: saved[key] for key in returned}


def test_the_default_intervals_are_a_hundredth_and_a_quarter_of_the_steps(tmp_path,
                                                                          monkeypatch):
    """As the README says: without --log-every and --checkpoint-every, a metrics line every
    --steps/100 steps and a checkpoint every --steps/4."""
    saved, save = [], TrainState.save
    monkeypatch.setattr(TrainState, "save", lambda state, *place: saved.append(state.step) or
                        save(state, *place))
    main(["diffusion", "--cpu", "--arch=residual", "--hidden-c=2", "--T=2", "--sampler=ddim",
          "--sample-steps=1", "--n-samples=1", "--evaluate=false", "--steps=200",
          "--batch-size=1", "--n-total=8", "--noprogress", f"--out={tmp_path}"])
    logged = [record["step"] for record in read_metrics(str(tmp_path / "metrics.jsonl"))]
    assert logged == list(range(2, 201, 2)) and saved == [50, 100, 150, 200]


# --- sampling -------------------------------------------------------------------------------

def test_sampling_uses_the_ema_weights(tmp_path, monkeypatch):
    seen = []

    def sampler(eps_model, betas, x_T, noise, clip=False):
        seen.append({name: param.data.copy() for name, param in eps_model.named_parameters()})
        return x_T

    monkeypatch.setattr(D, "ddpm_sample", sampler)
    run_cli(tmp_path, "--steps=3", "--ema=0.5", "--prediction=eps", "--lr=0.01",
            "--warmup-steps=0")
    checkpoint = load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))
    weights, shadow = checkpoint["modules"]["model"], checkpoint["emas"]["model"]["shadow"]
    assert len(seen) == 1 and set(seen[0]) == set(shadow)
    assert any(not numpy.allclose(shadow[name], weights[name]) for name in shadow)
    for name, value in seen[0].items():
        numpy.testing.assert_array_equal(value, shadow[name], err_msg=name)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "pf-euler"])
def test_samples_do_not_depend_on_the_sample_batch(tmp_path, monkeypatch, sampler):
    returned = []
    spy(monkeypatch, D, "in_batches", returned)
    flags = ("--steps=2", "--n-samples=5", f"--sampler={sampler}", "--eta=0.5")
    run_cli(tmp_path / "whole", *flags)
    run_cli(tmp_path / "batched", *flags, "--sample-batch=2")
    assert len(returned) == 1 and returned[0][0][1] == 2  # wrapped only where it batches
    whole, batched = (numpy.load(tmp_path / run / "samples.npy") for run in ("whole", "batched"))
    # uint8 pixels: a value within float32 rounding of a rounding boundary may land either side
    assert numpy.abs(whole.astype(int) - batched).max() <= 1
    assert (whole == batched).mean() > 0.99


def test_samples_map_the_sampler_range_minus_one_to_one_onto_0_255(tmp_path, monkeypatch):
    returned = []
    spy(monkeypatch, D, "ddpm_sample", returned)
    run_cli(tmp_path, "--steps=1")
    images = returned[0][2].numpy()
    assert images.min() < -0.5  # negative values must not all become 0
    expected = numpy.clip(numpy.round((images.astype(numpy.float64) + 1.0) * 127.5), 0, 255)
    samples = numpy.load(tmp_path / "samples.npy")
    assert samples.dtype == numpy.uint8 and samples.shape == (4, 3, SIZE, SIZE)
    assert numpy.abs(samples.astype(numpy.int64) - expected).max() <= 1


def test_sampling_and_reconstruction_noise_stay_off_the_training_stream(tmp_path, monkeypatch):
    """x_T, every sampler step's noise and the reconstruction's noise are not the draws of
    the training steps' streams (TRAINING_STEP, step), nor one another's."""
    samplers, noisings = [], []
    spy(monkeypatch, D, "ddpm_sample", samplers)
    spy(monkeypatch, D, "q_sample", noisings)
    run_cli(tmp_path, "--steps=1", "--n-samples=16", f"--noisy-ppm={tmp_path / 'noisy.ppm'}")
    (_, _, x_T, noise), _, _ = samplers[0]
    shape = (16, 3, SIZE, SIZE)
    assert x_T.shape == shape
    x_T = x_T.numpy()
    drawn = {"x_T": x_T}
    for t in range(T):
        drawn[f"noise({t})"] = noise(t).numpy()
    reconstruction_args = noisings[-1][0]
    assert reconstruction_args[1].shape == shape
    drawn["reconstruction eps"] = reconstruction_args[3].numpy()
    training = [stream(SEED, Purpose.TRAINING_STEP, step).standard_normal(shape)
                for step in range(T)]
    for name, value in drawn.items():
        assert value.shape == shape, name
        for step, draw in enumerate(training):
            assert not numpy.allclose(value, draw), f"{name} is the draw of step {step}"
    assert not numpy.allclose(drawn["x_T"], drawn["reconstruction eps"])
    for t in range(T):
        assert not numpy.allclose(drawn[f"noise({t})"], drawn["x_T"]), t
        assert not numpy.allclose(drawn[f"noise({t})"], drawn["reconstruction eps"]), t


def test_each_training_step_draws_its_timesteps_and_noise_from_its_own_stream(tmp_path,
                                                                             monkeypatch):
    """Step k draws t ~ U{0..T-1}, then eps, from (seed, TRAINING_STEP, k): what makes a
    resumed run repeat an uninterrupted one, and no two steps share a draw."""
    losses = []
    spy(monkeypatch, D, "v_prediction_loss", losses)
    run_cli(tmp_path, "--steps=3")
    assert len(losses) == 3
    for step, (args, _, _) in enumerate(losses, 1):
        _, _, x0, t, eps = args
        generator = stream(SEED, Purpose.TRAINING_STEP, step)
        numpy.testing.assert_array_equal(t, generator.integers(0, T, size=x0.shape[0]))
        numpy.testing.assert_array_equal(
            eps.numpy(), generator.standard_normal(x0.shape).astype(numpy.float32))


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_prediction_picks_the_loss_and_the_sampling_network(tmp_path, monkeypatch, prediction):
    converted, v_losses, eps_losses = [], [], []
    spy(monkeypatch, D, "eps_model_from_v", converted)
    spy(monkeypatch, D, "v_prediction_loss", v_losses)
    spy(monkeypatch, D, "eps_prediction_loss", eps_losses)
    run_cli(tmp_path, "--steps=2", f"--prediction={prediction}")
    if prediction == "v":
        assert converted and (len(v_losses), len(eps_losses)) == (2, 0)
    else:
        assert not converted and (len(v_losses), len(eps_losses)) == (0, 2)


def fake_config(sampler, clip):
    return SimpleNamespace(sampler=sampler, clip=clip, seed=SEED, T=T, sample_steps=3, eta=0.0)


def test_each_sampler_step_draws_its_own_noise():
    """noise(t) is the run's (seed, SAMPLING_NOISE, t) draw: one per sampler step, so that no
    two steps add the same noise."""
    config = SimpleNamespace(seed=SEED)
    noise = diffusion.sampling_noise(config, (2, 1, 4, 4), "cpu")
    draws = [noise(t).numpy() for t in range(3)]
    for t, draw in enumerate(draws):
        numpy.testing.assert_array_equal(draw, stream(SEED, Purpose.SAMPLING_NOISE, t)
                                         .standard_normal((2, 1, 4, 4)).astype(numpy.float32))
    assert not numpy.allclose(draws[1], draws[2])


def test_ddim_sampling_takes_the_eta_flag():
    """--eta reaches the DDIM sampler: eta = 1 adds each step's noise (the run's sampling
    stream), and differs from eta = 0."""
    betas = D.make_betas("linear", T, 1e-4, 0.02)
    x_T = tensor(stream(SEED, Purpose.SAMPLING_START).standard_normal((2, 1, 4, 4))
                 .astype(numpy.float32))

    def network(x, t):
        return 0.1 * x
    config = SimpleNamespace(sampler="ddim", clip=False, seed=SEED, T=T, sample_steps=3, eta=1.0)
    noisy = diffusion.sample(network, config, betas, x_T).numpy()
    expected = D.ddim_sample(network, D.alpha_bars(betas), x_T, D.respaced_timesteps(T, 3), 1.0,
                             diffusion.sampling_noise(config, x_T.shape, x_T.device)).numpy()
    numpy.testing.assert_allclose(noisy, expected, rtol=1e-6)
    config.eta = 0.0
    assert not numpy.allclose(diffusion.sample(network, config, betas, x_T).numpy(), noisy)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "pf-euler"])
def test_clip_keeps_every_sampler_inside_minus_one_to_one(sampler):
    """A network whose noise estimate is far off (in either direction) drives the unclipped
    samplers beyond [-1, 1] on both sides; --clip keeps each one's result inside. pf-euler has
    no predicted x0 to clip: its final samples are clamped to [-1, 1]."""
    betas = D.make_betas("linear", T, 1e-4, 0.1)
    x_T = tensor(stream(SEED, Purpose.SAMPLING_START).standard_normal((2, 3, 4, 4))
                 .astype(numpy.float32))
    far_off = tensor(numpy.where(numpy.arange(96).reshape(2, 3, 4, 4) % 2, 30.0, -30.0)
                     .astype(numpy.float32))

    def wild(x, t):
        return x * 0.0 + far_off

    clipped = diffusion.sample(wild, fake_config(sampler, True), betas, x_T).numpy()
    unclipped = diffusion.sample(wild, fake_config(sampler, False), betas, x_T).numpy()
    assert unclipped.max() > 1.5 and unclipped.min() < -1.5
    assert numpy.abs(clipped).max() <= 1.0 + 1e-6
    if sampler == "pf-euler":
        numpy.testing.assert_array_equal(clipped, numpy.clip(unclipped, -1.0, 1.0))


def test_the_clip_flag_reaches_the_samplers(tmp_path, monkeypatch):
    calls = []
    spy(monkeypatch, D, "ddpm_sample", calls)
    spy(monkeypatch, D, "ddim_sample", calls)
    run_cli(tmp_path / "ddpm", "--steps=1", "--sampler=ddpm")
    run_cli(tmp_path / "ddim", "--steps=1", "--sampler=ddim", "--clip=false")
    assert [kwargs.get("clip") for _, kwargs, _ in calls] == [True, False]


def test_the_clip_help_says_what_it_does_for_each_sampler():
    """pf-euler has no predicted x0 to clip: --clip clamps its final samples (sample above)."""
    from minilean.cli import DIFFUSION
    text = DIFFUSION.flags["clip"].help
    assert "ddpm and ddim" in text and "pf-euler" in text and "final samples" in text


# --- outputs --------------------------------------------------------------------------------

def test_the_sample_grid_shows_the_first_64_samples_and_sample_ppm_is_the_same(tmp_path):
    """... and the reference grid the first 64 training images; the summary lists both."""
    copy, reference = tmp_path / "copy.ppm", tmp_path / "reference.ppm"
    summary = run_cli(tmp_path / "run", "--steps=1", "--n-samples=65", "--n-total=80",
                      f"--sample-ppm={copy}", f"--reference-ppm={reference}")
    samples = numpy.load(tmp_path / "run" / "samples.npy")
    assert samples.shape == (65, 3, SIZE, SIZE)
    grid = read_pnm(tmp_path / "run" / "images" / "samples.ppm")
    assert grid.shape == (8 * 18 + 2, 8 * 18 + 2, 3)  # 8 x 8 tiles of 16 + 2 padding
    numpy.testing.assert_array_equal(tiles(grid, 64), samples[:64].transpose(0, 2, 3, 1))
    numpy.testing.assert_array_equal(read_pnm(copy), grid)
    training = load_dataset("builtin", n_total=80, image_size=SIZE, seed=SEED).x
    numpy.testing.assert_array_equal(read_pnm(reference), make_grid(training[:64]))
    assert summary["images"][0] == "images/samples.ppm"  # in the run: relative to it
    assert summary["images"][-2:] == [str(copy), str(reference)]


def test_the_summary_names_its_images_from_any_working_folder(tmp_path, monkeypatch):
    """A run started with a relative --out in one folder: its summary, read from another,
    names the grids in the run by their paths from the run's folder (where config.json and
    the checkpoint are too, the run moved or not), and a --sample-ppm outside it by the
    absolute path config.json saves; a path relative to the folder the run started in named
    no file from anywhere else."""
    (tmp_path / "start").mkdir()
    monkeypatch.chdir(tmp_path / "start")
    run_cli(pathlib.Path("run"), "--steps=1", "--sample-ppm=copy.ppm")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "start" / "run"
    images = json.loads((run / "summary.json").read_text())["images"]
    assert images[0] == "images/samples.ppm"
    assert images[-1] == str(tmp_path / "start" / "copy.ppm")
    assert all((run / image).is_file() for image in images)


def test_the_summary_names_its_cached_classifier_from_any_working_folder(tmp_path,
                                                                        monkeypatch):
    """The FD-classifier's classifier is cached under runs/classifiers in the working folder:
    summary.json named it by that relative path, no file once read from another folder. It
    is outside the run, so it is named by its absolute path, as config.json names the files
    outside the run. (The classifier trains 1 step here, not 800.)"""
    from minilean.models import classifier
    trained = classifier.trained_classifier
    monkeypatch.setattr(classifier, "trained_classifier", lambda dataset, device, seed, steps,
                        cache, **named: trained(dataset, device, seed, 1, cache, **named))
    (tmp_path / "start").mkdir()
    monkeypatch.chdir(tmp_path / "start")
    run_cli(pathlib.Path("run"), "--steps=1", "--evaluate=true", "--n-total=40")
    monkeypatch.chdir(tmp_path)
    summary = json.loads((tmp_path / "start" / "run" / "summary.json").read_text())
    cached = summary["fd_classifier"]["classifier"]
    assert os.path.isabs(cached) and os.path.isfile(cached)
    assert cached.startswith(str(tmp_path / "start" / "runs" / "classifiers"))


def tiles(grid, count):
    """The first ``count`` tiles of a grid of SIZE x SIZE images (2 pixels of padding),
    (count, SIZE, SIZE, 3)."""
    per_row = (grid.shape[1] - 2) // (SIZE + 2)
    corners = [((index // per_row) * (SIZE + 2) + 2, (index % per_row) * (SIZE + 2) + 2)
               for index in range(count)]
    return numpy.stack([grid[top:top + SIZE, left:left + SIZE] for top, left in corners])


def reconstruction_run(tmp_path, monkeypatch, step_flags):
    """A run writing the reference, noisy and reconstruction grids; returns them, the
    timesteps the reconstruction's DDIM walked, and the images it started from and ended at."""
    walks = []
    spy(monkeypatch, D, "ddim_sample", walks)
    paths = {name: tmp_path / f"{name}.ppm" for name in ("reference", "noisy", "reconstruct")}
    run_cli(tmp_path / "run", "--steps=1", *step_flags,
            *[f"--{name}-ppm={path}" for name, path in paths.items()])
    grids = {name: read_pnm(path).astype(numpy.int64) for name, path in paths.items()}
    assert len(walks) == 1  # (the samples come from ddpm)
    args, kwargs, restored = walks[0]
    return grids, list(args[3]), (args[2], restored)


def test_the_reconstruction_may_start_at_the_last_timestep(tmp_path, monkeypatch):
    grids, walk, _ = reconstruction_run(tmp_path, monkeypatch, ["--reconstruct-step=9"])
    assert walk == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert grids["noisy"].shape == grids["reconstruct"].shape == (4 * 18 + 2,) * 2 + (3,)


def test_the_reconstruction_denoises_from_its_step_down_to_the_clean_image(tmp_path,
                                                                         monkeypatch):
    grids, walk, (noisy, restored) = reconstruction_run(tmp_path, monkeypatch, ["--T=8"])
    assert walk == [2, 1, 0]  # the default step: T // 4
    # the noisy grid shows the images DDIM starts from, the reconstruction those it ends at
    for name, images in (("noisy", noisy), ("reconstruct", restored)):
        expected = make_grid(to_uint8(images.numpy(), (-1.0, 1.0)))
        assert numpy.abs(grids[name] - expected).max() <= 1, name
    assert numpy.abs(grids["noisy"] - grids["reconstruct"]).max() > 16
    grids, walk, _ = reconstruction_run(tmp_path / "zero", monkeypatch,
                                     ["--reconstruct-step=0", "--schedule=linear",
                                      "--beta-start=1e-4"])
    assert walk == [0]
    # at step 0 of this schedule the noise is sqrt(1e-4) = 0.01: both grids are the images
    reference = tiles(grids["reference"], 16)
    for name in ("noisy", "reconstruct"):
        difference = numpy.abs(tiles(grids[name], 16) - reference)
        assert difference.mean() < 2 and difference.max() <= 12, name


def test_a_batch_larger_than_the_dataset_is_refused_in_the_flags_words(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["diffusion", *[flag for flag in TINY if not flag.startswith("--n-total=")],
              "--n-total=3", f"--out={tmp_path / 'run'}"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == ("minilean diffusion: error: --batch-size 4 is larger "
                                       "than the 3 rows of the dataset\n")
    assert not (tmp_path / "run").exists()
