"""The zoo commands: every bad flag is one line and exit code 2 before any work; a tiny run of
each command writes its run directory and the numbers it promises."""
import importlib
import json
import math
import os
import re
import shutil
import sys
import tracemalloc
import types

import numpy
import pytest

from minilean import cli
from minilean.cli import main
from minilean.data import read_metrics
from minilean.data.runlog import RunDirectory
from minilean.data.arrays import float_images
from minilean.data.images import read_pnm
from minilean.data.streams import Purpose, stream
from minilean.optim import load_checkpoint
from minilean.train import zoo_run
from minilean.train.loop import TrainState, run_config

ZOO = {"vae": cli.VAE, "vqvae": cli.VQVAE, "gan": cli.GAN, "autoencoder": cli.AUTOENCODER,
       "mae": cli.MAE}


@pytest.fixture
def no_work(monkeypatch):
    for command in ZOO.values():
        monkeypatch.setattr(command, "_run", lambda config: pytest.fail("ran with bad flags"))


BAD_FLAGS = [
    ("vae", ["--beta=-1"], "--beta: got -1; expected a finite number >= 0"),
    ("vae", ["--arch=resnet"], "--arch: got 'resnet'; expected one of mlp, conv"),
    ("vae", ["--iw-samples=0"], "--iw-samples: got 0; expected an integer >= 1"),
    ("vae", ["--latent=2.5"], "--latent: got 2.5; expected an integer >= 1"),
    ("vae", ["--ema=0.9"], "--ema: got 0.9; expected a flag of 'vae'"),
    ("vqvae", ["--codes=0"], "--codes: got 0; expected an integer >= 1"),
    ("vqvae", ["--decay=1"], "--decay: got 1; expected a finite number >= 0 and < 1"),
    ("vqvae", ["--ema-codebook=maybe"], "--ema-codebook: got 'maybe'; expected a boolean"),
    ("vqvae", ["--restart-every=-1"], "--restart-every: got -1; expected an integer >= 0"),
    ("gan", ["--d-steps=0"], "--d-steps: got 0; expected an integer >= 1"),
    ("gan", ["--sample-every=x"], "--sample-every: got 'x'; expected an integer >= 1"),
    ("gan", ["--evaluate=2"], "--evaluate: got 2; expected a boolean"),
    ("autoencoder", ["--arch=vit"], "--arch: got 'vit'; expected one of mlp, conv"),
    ("autoencoder", ["--hidden=0"], "--hidden: got 0; expected an integer >= 1"),
    ("mae", ["--mask-ratio=1"], "--mask-ratio: got 1; expected a finite number > 0 and < 1"),
    ("mae", ["--mask-ratio=0"], "--mask-ratio: got 0; expected a finite number > 0 and < 1"),
    ("mae", ["--mask=grid"], "--mask: got 'grid'; expected one of random, block"),
    ("mae", ["--patch-size=0"], "--patch-size: got 0; expected an integer >= 1"),
    ("mae", ["--per-patch-norm=yes please"], "--per-patch-norm: got 'yes please'; expected a boolean"),
    # the GAN's numbers are measured on its --n-samples samples: it has no --n-eval to ignore
    ("gan", ["--n-eval=4"], "--n-eval: got 4; expected a flag of 'gan'"),
] + [(name, ["--n-eval=0"], "--n-eval: got 0; expected an integer >= 1")
     for name in ("vae", "vqvae", "autoencoder", "mae")]
SHARED_BAD_FLAGS = [
    (["--steps=0"], "--steps: got 0; expected an integer >= 1"),
    (["--lr=-1"], "--lr: got -1; expected a finite number > 0"),
    (["--batch-size=0"], "--batch-size: got 0; expected an integer >= 1"),
    (["--device=tpu"], "--device: got 'tpu'; expected one of auto, cpu, cuda"),
    (["--dataset=mnist"], "--dataset: got 'mnist'; expected one of builtin"),
    (["--image-size=8"], "--image-size: got 8; expected an integer >= 16 and <= 64"),
    (["--stepz=3"], "expected a flag of"),
    (["extra"], "unexpected argument 'extra'; expected flags only"),
]


@pytest.mark.parametrize("name, argv, expected", BAD_FLAGS + [
    (name, argv, expected) for name in ZOO for argv, expected in SHARED_BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(name, argv, expected, capsys, no_work):
    with pytest.raises(SystemExit) as exit_info:
        main([name, *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"minilean {name}: error: ")
    assert expected in err


HALVED_TWICE = "expected a multiple of 4 for {} (it halves the side twice)"
MODEL_LIMITS = [  # values inside each flag's range that the model's code cannot take
    ("autoencoder", ["--arch=conv", "--image-size=18"],
     "--image-size: got 18; " + HALVED_TWICE.format("--arch conv")),
    ("vae", ["--image-size=18"], "--image-size: got 18; " + HALVED_TWICE.format("--arch conv")),
    ("vqvae", ["--image-size=30"], "--image-size: got 30; " + HALVED_TWICE.format("the VQ-VAE")),
    ("diffusion", ["--image-size=18"],
     "--image-size: got 18; " + HALVED_TWICE.format("--arch unet")),
    ("diffusion", ["--dataset=digits", "--image-size=18"],  # --image-size sizes digits too
     "--image-size: got 18; " + HALVED_TWICE.format("--arch unet")),
    ("diffusion", ["--hidden-c=1"], "--hidden-c: got 1; expected an integer >= 2 for --arch "
                                    "unet (its GroupNorm groups need 2 channels)"),
    ("mae", ["--heads=3"], "--heads: got 3; expected a divisor of --width 64 (each head takes "
                           "an equal share of it)"),
    ("mae", ["--decoder-width=3"], "--decoder-width: got 3; expected a multiple of 2, the "
                                   "decoder's heads (half of --heads 4)"),
    ("mae", ["--patch-size=5"], "--patch-size: got 5; expected a divisor of --image-size 16 "
                                "smaller than it"),
    ("mae", ["--patch-size=16"], "--patch-size: got 16; expected a divisor of --image-size 16 "
                                 "smaller than it"),
    ("mae", ["--image-size=18"], "--patch-size: got 4; expected a divisor of --image-size 18"),
]


@pytest.mark.parametrize("name, argv, expected", MODEL_LIMITS)
def test_what_the_model_cannot_take_is_a_flag_error_before_anything_is_written(
        name, argv, expected, tmp_path, capsys, monkeypatch):
    for command in cli.COMMANDS:
        monkeypatch.setattr(command, "_run", lambda config: pytest.fail("ran with bad flags"))
    with pytest.raises(SystemExit) as exit_info:
        main([name, *argv, f"--out={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"minilean {name}: error: {expected}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command, flags", [
    (cli.AUTOENCODER, {"arch": "mlp", "image_size": 18}),
    (cli.VAE, {"arch": "mlp", "image_size": 18}),
    (cli.VQVAE, {"image_size": 18, "x": "images.npy"}),  # --x brings its own size
    (cli.GAN, {"image_size": 18}),
    (cli.DIFFUSION, {"arch": "residual", "hidden_c": 1, "image_size": 18}),
    (cli.MAE, {"image_size": 18, "patch_size": 6}),
    (cli.MAE, {"x": "images.npy", "image_size": 18}),  # the patch divides the --x images' side
    (cli.MAE, {"decoder_width": 6}),  # a multiple of the decoder's 2 heads, not of --heads 4
    (cli.MAE, {"heads": 3, "width": 66, "decoder_width": 33}),
])
def test_what_the_model_can_take_passes(command, flags, tmp_path):
    """Each of these passes the checks and trains a step: nothing more is refused."""
    command.parse((), flags)
    if "x" in flags:  # the given images' own size, 16x16, is used (a multiple of 4)
        numpy.save(tmp_path / "images.npy", numpy.zeros((8, 3, 16, 16), numpy.uint8))
        flags = dict(flags, x=str(tmp_path / "images.npy"))
    tiny = {"steps": 1, "batch_size": 2, "n_total": 8, "progress": False,
            **({"T": 4, "n_samples": 2, "evaluate": False} if command is cli.DIFFUSION
               else {"n_eval": 1} if "n_eval" in command.flags else {}),
            **({"n_samples": 2, "evaluate": False} if command is cli.GAN else {})}
    main([command.name, *[f"--{name}={value}" for name, value in {**flags, **tiny}.items()],
          f"--out={tmp_path / 'run'}"])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1


@pytest.mark.parametrize("command, flags, said", [
    (cli.MAE, {"mask": "block", "mask_ratio": 0.5},
     "--mask-ratio has no effect with --mask block (its mask is fixed)"),
    (cli.VQVAE, {"decay": 0.9},
     "--decay has no effect without --ema-codebook (it is the moving averages' decay)"),
    (cli.DIFFUSION, {"eta": 0.5},
     "--eta has no effect with --sampler ddpm (it is DDIM's noise scale)"),
    (cli.DIFFUSION, {"reconstruct_step": 3}, "--reconstruct-step has no effect without "
     "--noisy-ppm or --reconstruct-ppm (the images it is the timestep of)"),
    # DDPM runs all T steps, the cosine schedule has no beta flags, a constant rate no horizon:
    # each was taken in silence (the README promises a line for every such flag)
    (cli.DIFFUSION, {"sample_steps": 20},
     "--sample-steps has no effect with --sampler ddpm (it runs all T steps)"),
    (cli.DIFFUSION, {"beta_end": 0.12},
     "--beta-end has no effect with --schedule cosine (it is the linear schedule's)"),
    (cli.DIFFUSION, {"beta_start": 1e-3},
     "--beta-start has no effect with --schedule cosine (it is the linear schedule's)"),
    (cli.DIFFUSION, {"schedule": "linear", "T": 1, "beta_end": 0.12},
     "--beta-end has no effect with --T 1 (the one beta is --beta-start)"),
    (cli.DIFFUSION, {"lr_schedule": "constant", "lr_decay_steps": 3000},
     "--lr-decay-steps has no effect with --lr-schedule constant (it is where the cosine "
     "reaches 0)"),
    # a run that ends inside the warm-up (the default one, 100 steps, outlasts a short run)
    # trains at the warm-up's rates whatever comes after it: both were taken in silence
    (cli.DIFFUSION, {"steps": 50, "lr_schedule": "constant"},
     "--lr-schedule has no effect with --steps 50 inside the --warmup-steps 100 warm-up (the "
     "run ends before the schedule after it starts)"),
    (cli.DIFFUSION, {"steps": 100, "lr_decay_steps": 400},
     "--lr-decay-steps has no effect with --steps 100 inside the --warmup-steps 100 warm-up "
     "(the run ends before the schedule after it starts)"),
    (cli.VAE, {"dataset": "cifar10", "image_size": 32},
     "--image-size has no effect with --dataset cifar10 (its images keep their own size)"),
    (cli.GAN, {"dataset": "ring8", "image_size": 32},
     "--image-size has no effect with --dataset ring8 (its points keep their own size)"),
    (cli.AUTOENCODER, {"x": "images.npy", "image_size": 32},
     "--image-size has no effect with --x (its images keep their own size)"),
    (cli.GAN, {"dataset": "ring8", "evaluate": True},  # taken in silence, either way
     "--evaluate has no effect with --dataset ring8 (its samples are scored by the modes they "
     "cover)"),
    (cli.AUTOENCODER, {"data_root": "datasets"}, "--data-root has no effect with --dataset "
     "builtin (only cifar10 and imagenet64 are read from it)"),
    (cli.GAN, {"dataset": "ring8", "data_root": "datasets"}, "--data-root has no effect with "
     "--dataset ring8 (only cifar10 and imagenet64 are read from it)"),
    (cli.DIFFUSION, {"x": "images.npy", "data_root": "datasets"},
     "--data-root has no effect with --x (the array is read from its own path)"),
    (cli.GAN, {"dataset": "ring8", "evaluate": False},
     "--evaluate has no effect with --dataset ring8 (its samples are scored by the modes they "
     "cover)"),
])
def test_a_typed_flag_the_rest_leaves_without_effect_is_said(command, flags, said, capsys,
                                                             tmp_path):
    """Accepted (the run is the one asked for without it), but said on stderr, as
    --fast-kernels on the CPU is, once the run's config is accepted: they were taken in
    silence, and config.json recorded them. The note is not saved in the config."""
    config = command.parse((), {**flags, "out": str(tmp_path / "run")})
    assert capsys.readouterr().err == ""
    config = run_config(config, ())
    assert capsys.readouterr().err == f"minilean {command.name}: {said}\n"
    assert not hasattr(config, "unused_notes")


@pytest.mark.parametrize("command, flags", [
    (cli.MAE, {"mask_ratio": 0.5}), (cli.VQVAE, {"decay": 0.9, "ema_codebook": True}),
    (cli.DIFFUSION, {"eta": 0.5, "sampler": "ddim"}),
    (cli.DIFFUSION, {"reconstruct_step": 3, "noisy_ppm": "noisy.ppm"}),
    (cli.DIFFUSION, {"sample_steps": 20, "sampler": "ddim"}),
    (cli.DIFFUSION, {"sample_steps": 20, "sampler": "pf-euler"}),
    (cli.DIFFUSION, {"beta_end": 0.12, "schedule": "linear"}),
    (cli.DIFFUSION, {"beta_start": 0.02, "schedule": "linear", "T": 1}),
    (cli.DIFFUSION, {"lr_decay_steps": 3000}),
    (cli.DIFFUSION, {"steps": 101, "lr_schedule": "constant"}),
    (cli.DIFFUSION, {"steps": 50, "warmup_steps": 10, "lr_schedule": "constant"}),
    (cli.VAE, {"dataset": "digits", "image_size": 16}), (cli.VQVAE, {"image_size": 32}),
    (cli.MAE, {"mask": "block"}),  # the flag it would make idle not typed: nothing to say
    (cli.GAN, {"evaluate": False}), (cli.GAN, {"dataset": "ring8"}),
    (cli.VAE, {"dataset": "cifar10", "data_root": "datasets"}),
    (cli.DIFFUSION, {"dataset": "imagenet64", "data_root": "datasets"}),
])
def test_a_flag_that_takes_effect_is_not_said_to_have_none(command, flags, capsys, tmp_path):
    run_config(command.parse((), {**flags, "out": str(tmp_path / "run")}), ())
    assert capsys.readouterr().err == ""


def test_a_flag_typed_at_the_start_that_a_resume_leaves_without_effect_is_said(capsys,
                                                                               tmp_path):
    """--eta typed at the start (with --sampler ddim), then --resume RUN --sampler ddpm: the
    run samples with DDPM, its --eta unused, and nothing was said (only the flags typed now
    were judged). A flag without effect at the start already is not said again."""
    run = tmp_path / "run"
    main(["diffusion", "--steps=1", "--batch-size=2", "--n-total=8", "--hidden-c=4", "--T=4",
          "--n-samples=2", "--evaluate=false", "--progress=false", "--sampler=ddim",
          "--eta=0.5", "--schedule=cosine", "--beta-end=0.1", f"--out={run}"])
    assert capsys.readouterr().err.splitlines()[0] == (
        "minilean diffusion: --beta-end has no effect with --schedule cosine (it is the linear "
        "schedule's)")
    run_config(cli.DIFFUSION.parse((), {"resume": str(run), "steps": 2, "sampler": "ddpm"}),
               ())
    assert capsys.readouterr().err == ("minilean diffusion: --eta has no effect with --sampler "
                                       "ddpm (it is DDIM's noise scale)\n")


@pytest.mark.parametrize("mask_ratio, said", [
    (0.99, "--mask-ratio 0.99 hides 3 of the 4 patches of each image (a share of 0.75)"),
    (0.1, "--mask-ratio 0.1 hides 1 of the 4 patches of each image (a share of 0.25)"),
    (0.6, "--mask-ratio 0.6 hides 2 of the 4 patches of each image (a share of 0.5)"),
    (0.5, None), (0.75, None),
])
def test_a_typed_mask_ratio_the_patches_round_is_said(mask_ratio, said, capsys, tmp_path):
    """The random mask hides a whole number of patches, at least one and all but one at most:
    --mask-ratio 0.99 of 4 patches hid 3 in silence (the summary's hidden_share said 0.75,
    after the training). A ratio the patches take exactly is not said."""
    main(["mae", "--image-size=16", "--patch-size=8", f"--mask-ratio={mask_ratio}",
          "--steps=1", "--batch-size=2", "--n-total=8", "--n-eval=1", "--width=8", "--heads=2",
          "--decoder-width=4", "--progress=false", f"--out={tmp_path / 'run'}"])
    notes = [line for line in capsys.readouterr().err.splitlines() if "--mask-ratio" in line]
    assert notes == ([] if said is None else [f"minilean mae: {said}"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["hidden_share"] == (float(said.split()[-1][:-1]) if said else mask_ratio)


@pytest.mark.parametrize("data, said", [
    ([], "minilean evaluate: --image-size has no effect with --dataset builtin (its shapes are "
         "drawn at the samples' size)\n"),
    (["--x=real.npy", "--y=labels.npy"],
     "minilean evaluate: --image-size has no effect with --x (its images keep their own "
     "size)\n")])
def test_evaluate_says_an_image_size_it_does_not_use(data, said, tmp_path, capsys,
                                                     monkeypatch):
    """evaluate draws the built-in shapes at the samples' size and reads an --x array as it
    is: --image-size 16 typed for 32x32 samples was taken in silence, as the training
    commands say it for --x."""
    monkeypatch.chdir(tmp_path)
    rng = numpy.random.default_rng(0)
    numpy.save("samples.npy", rng.integers(0, 256, (4, 3, 32, 32), dtype=numpy.uint8))
    numpy.save("real.npy", rng.integers(0, 256, (8, 3, 32, 32), dtype=numpy.uint8))
    numpy.save("labels.npy", numpy.arange(8) % 2)
    argv = ["evaluate", "--cpu", "--samples=samples.npy", "--n-eval=2", "--classifier-steps=1",
            "--cache=cache", "--n-total=8", *data]
    main([*argv, "--image-size=16"])
    out, err = capsys.readouterr()
    assert err == said and json.loads(out)["n_images"] == 2
    main(argv)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("ema_codebook, said", [
    (True, ""),
    (False, "minilean vqvae: --decay has no effect without --ema-codebook (it is the moving "
            "averages' decay)\n")])
def test_a_typed_flag_on_resume_is_judged_with_the_resumed_runs_flags(ema_codebook, said,
                                                                      capsys, tmp_path):
    """--decay typed on --resume of a run saved with --ema-codebook takes effect: the note
    reads the resumed run's flags (its saved ones, the typed ones on top), not the defaults
    of the flags not typed now."""
    main(["vqvae", *TINY, f"--ema-codebook={ema_codebook}",
          f"--out={tmp_path / 'run'}"])
    capsys.readouterr()
    run_config(cli.VQVAE.parse((), {"resume": str(tmp_path / "run"), "decay": 0.9}), ())
    assert capsys.readouterr().err == said


@pytest.mark.parametrize("name, argv, network", [
    ("diffusion", ["--hidden-c=4"], "--arch unet"),
    ("vae", ["--arch=conv"], "--arch conv"),
    ("vqvae", [], "the VQ-VAE"),
    ("autoencoder", ["--arch=conv"], "--arch conv")])
@pytest.mark.parametrize("height, width", [(18, 16), (16, 18)])  # either side alone
def test_data_the_network_cannot_halve_twice_is_refused_before_the_run(name, argv, network,
                                                                        height, width,
                                                                        tmp_path, capsys):
    """--image-size is checked with the flags; an --x array's own size once it is loaded,
    still before the run directory is written."""
    x = tmp_path / "x.npy"
    numpy.save(x, numpy.zeros((40, 3, height, width), numpy.uint8))
    with pytest.raises(SystemExit) as exit_info:
        main([name, *argv, f"--x={x}", "--steps=1", "--batch-size=4", "--progress=false",
              f"--out={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1
    assert f"--x {x}: images are {height}x{width}; {network} needs a height and width that are " \
           f"multiples of 4" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["diffusion", "vae", "vqvae", "autoencoder", "mae",
                                  "evaluate"])
def test_image_models_refuse_points_with_one_line(name, tmp_path, capsys, monkeypatch):
    """Each in the same words, naming itself, as a flag error (exit 2) before any work: that
    the data are points is known from --dataset alone, not only once they are loaded."""
    command = next(command for command in cli.COMMANDS if command.name == name)
    monkeypatch.setattr(command, "_run", lambda config: pytest.fail("ran on points"))
    given = [f"--samples={tmp_path / 'samples.npy'}"] if name == "evaluate" else [
        "--n-total=40", "--steps=1", "--batch-size=4", f"--out={tmp_path / 'run'}"]
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--dataset=ring8", *given])
    assert (exit_info.value.code, capsys.readouterr().err) == (
        2, f"minilean {name}: error: --dataset: got 'ring8'; expected one of builtin, cifar10, "
           f"imagenet64, digits ({name} works on images; ring8 is 2-D points, for gan)\n")
    assert not (tmp_path / "run").exists()


def fail(argv, capsys):
    """(exit code, stderr) of a command line that must exit."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_gan_samples_that_would_pass_the_memory_cap_are_refused_before_training(tmp_path,
                                                                                capsys):
    """As diffusion's: found when sampling, the lack of memory ended the run after all of its
    training, in NumPy's words."""
    code, err = fail(["gan", "--n-samples=1398102", "--n-total=40", "--batch-size=4",
                      "--steps=1", f"--out={tmp_path / 'run'}", "--progress=false"], capsys)
    assert (code, err.count("\n")) == (2, 1)
    assert err.startswith("minilean gan: error: --n-samples: got 1398102; expected at most "
                          "1398101 for images of shape (3, 16, 16)")
    assert not (tmp_path / "run").exists()


def test_the_held_out_rows_are_the_last_tenth_of_a_seeded_shuffle(tmp_path):
    """10% of the rows, at least 1 and at most 1000; the rest train, none of them twice."""
    assert [zoo_run.held_out_count(rows) for rows in (2, 9, 10, 30, 10_000, 20_000)] == [
        1, 1, 1, 3, 1000, 1000]
    assert zoo_run.held_out_count(1) == 0  # the one row trains: none is held out
    numbered = numpy.arange(30, dtype=numpy.uint8)[:, None, None, None]
    numpy.save(tmp_path / "x.npy", numpy.broadcast_to(numbered, (30, 3, 16, 16)))
    config = cli.AUTOENCODER.parse((), {"x": str(tmp_path / "x.npy"), "batch_size": 4,
                                        "out": str(tmp_path / "run")})
    session = zoo_run.start(config, (), (0.0, 1.0))
    order = stream(config.seed, Purpose.HELD_OUT_SPLIT).permutation(30).tolist()
    assert session.dataset.x[session.train_index, 0, 0, 0].tolist() == order[:27]
    assert session.held_out_rows[:, 0, 0, 0].tolist() == order[27:]


@pytest.mark.parametrize("size, pieces", [(2, [[0, 1], [2, 3], [4]]), (5, [[0, 1, 2, 3, 4]]),
                                          (9, [[0, 1, 2, 3, 4]])])
def test_mean_over_chunks_passes_every_row_once_in_order(size, pieces):
    """The evaluation passes: every row once, in order, none left out, each with its index."""
    seen = []

    def score(piece, index):
        seen.append((index, piece.tolist()))
        return 0.0

    zoo_run.mean_over_chunks(score, numpy.arange(5), size)
    assert seen == list(enumerate(pieces))


@pytest.mark.parametrize("size", [1, 3, 40, 100, 150, 200])
def test_mean_over_chunks_is_the_mean_over_rows_when_the_last_chunk_is_short(size):
    """Chunks' means weighted by their lengths: the plain mean of each score over all rows (an
    unweighted mean of 100 rows and 50 would count the 50 twice)."""
    rows = numpy.random.default_rng(7).normal(size=(150, 2))
    means = zoo_run.mean_over_chunks(lambda piece, index: piece.mean(0), rows, size)
    numpy.testing.assert_allclose(means, rows.mean(0), rtol=1e-12)


def test_a_batch_larger_than_the_training_rows_is_refused_before_the_run(tmp_path, capsys):
    code, err = fail(["autoencoder", "--n-total=10", "--batch-size=10", "--steps=1",
                      "--progress=false", f"--out={tmp_path / 'run'}"], capsys)
    assert (code, err) == (1, "minilean autoencoder: error: --batch-size 10 is larger than the "
                              "9 training rows\n")
    assert not (tmp_path / "run").exists()
    # a batch of every training row is no larger than them
    main(["autoencoder", "--n-total=10", "--batch-size=9", "--steps=1", "--n-eval=1",
          "--hidden=8", "--progress=false", f"--out={tmp_path / 'run'}"])
    assert (tmp_path / "run" / "summary.json").is_file()


def test_mae_refuses_a_patch_size_that_divides_one_side_only(tmp_path, capsys):
    numpy.save(tmp_path / "x.npy", numpy.zeros((8, 3, 16, 12), numpy.uint8))
    code, err = fail(["mae", f"--x={tmp_path / 'x.npy'}", "--patch-size=8", "--batch-size=4",
                      "--steps=1", "--progress=false", f"--out={tmp_path / 'run'}"], capsys)
    assert (code, err) == (1, "minilean mae: error: --patch-size 8 must divide the image size "
                              "16x12\n")
    assert not (tmp_path / "run").exists()


def test_mae_refuses_an_array_image_that_is_one_patch(tmp_path, capsys):
    """The --image-size check cannot see an --x array's size; one patch per image would train
    on no hidden patch at all (hidden share 0, loss 0)."""
    numpy.save(tmp_path / "x.npy", numpy.zeros((8, 3, 8, 8), numpy.uint8))
    code, err = fail(["mae", f"--x={tmp_path / 'x.npy'}", "--patch-size=8", "--batch-size=4",
                      "--steps=1", "--progress=false", f"--out={tmp_path / 'run'}"], capsys)
    assert (code, err) == (1, "minilean mae: error: --patch-size 8 must be smaller than the "
                              "image size 8x8 (the image is cut into patches; at least one is "
                              "hidden and one seen)\n")
    assert not (tmp_path / "run").exists()


def test_the_loss_curve_is_drawn_before_an_evaluation_that_fails(tmp_path, monkeypatch, capsys):
    """As diffusion draws it before sampling: out of memory while evaluating leaves the curve
    of the training (and its checkpoint) in the run directory."""
    from minilean.train import autoencoder

    def out_of_memory(*args):
        raise MemoryError("Unable to allocate 9.3 GiB for an array with shape (5, 500000000)")
    monkeypatch.setattr(autoencoder, "mean_image_mse", out_of_memory)
    code, err = fail(["autoencoder", "--n-total=40", "--steps=2", "--batch-size=4",
                      "--n-eval=4", "--progress=false", f"--out={tmp_path}"], capsys)
    assert (code, err) == (1, "minilean autoencoder: error: Unable to allocate 9.3 GiB for an "
                              "array with shape (5, 500000000)\n")
    assert (tmp_path / "loss.svg").is_file() and (tmp_path / "checkpoints" / "last.npz").is_file()
    assert not (tmp_path / "summary.json").exists()

TINY = ["--n-total=40", "--steps=2", "--batch-size=4", "--n-eval=4", "--progress=false"]


def tiny(name):
    """TINY for the command ``name`` (the GAN, which has no held-out report, without --n-eval)."""
    return [flag for flag in TINY if name != "gan" or not flag.startswith("--n-eval=")]


RUNS = [  # (command, flags, the numbers it promises, those whose value the flags fix)
    ("vae", ["--hidden=8", "--latent=2", "--iw-samples=2"],
     ["negative_elbo_nats", "iw_bound_bits_per_dim", "baseline_independent_pixels_nats"],
     {"iw_samples": 2}),
    ("vae", ["--arch=conv", "--hidden=2", "--latent=1", "--iw-samples=2"], ["iw_bound_nats"],
     {"iw_samples": 2}),
    ("vqvae", ["--codes=4", "--code-dim=2", "--hidden=2", "--ema-codebook", "--restart-every=1"],
     ["codebook_usage", "perplexity", "held_out_reconstruction_mse"], {"codes": 4}),
    ("autoencoder", ["--hidden=8", "--latent=2"], ["held_out_mse", "baseline_mean_image_mse"],
     {}),
    # 16 patches of 4x4 on the 16x16 images: the random mask hides 0.75 of them (the default
    # --mask-ratio), the block mask one 2x2 block of patches in four
    ("mae", ["--width=4", "--heads=2", "--decoder-width=4", "--depth=1", "--per-patch-norm"],
     ["held_out_masked_patch_mse", "baseline_mean_patch_mse"],
     {"mask": "random", "hidden_share": 0.75}),
    ("mae", ["--width=4", "--heads=2", "--decoder-width=4", "--depth=1", "--mask=block"],
     ["hidden_share"], {"mask": "block", "hidden_share": 0.25}),
    ("gan", ["--hidden=8", "--latent=2", "--n-samples=4", "--sample-every=1", "--evaluate=false"],
     ["samples"], {"samples": 4}),
    ("gan", ["--dataset=ring8", "--hidden=8", "--latent=2", "--n-samples=8"],
     ["modes_covered", "share_within_3std"], {"samples": 8, "modes_total": 8}),
]


def assert_the_numbers_agree(summary):
    """What holds between a summary's numbers whatever the weights: every number finite, 4
    held-out images (--n-eval), bits per dim the nats over 16 * 16 * 3 ln 2, the codebook
    usage the share of codes used, a perplexity between 1 and the codes used, errors > 0, and
    shares and mode counts in their ranges."""
    numbers = {key: value for key, value in summary.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    assert all(math.isfinite(value) for value in numbers.values()), summary
    assert summary["steps"] == 2 and summary.get("held_out_images", 4) == 4
    for key, value in numbers.items():
        if key.endswith("_bits_per_dim"):
            nats = numbers[key.replace("_bits_per_dim", "_nats")]
            assert value == pytest.approx(nats / (16 * 16 * 3 * math.log(2)), rel=1e-12), key
        if key.endswith("_mse") or key.endswith("_nats"):
            assert value > 0, key
        if "share" in key:
            assert 0 <= value <= 1, key
    if "codes" in summary:
        assert summary["codebook_usage"] == summary["codes_used"] / summary["codes"]
        assert 1 <= summary["perplexity"] <= summary["codes_used"] + 1e-12
    for key in ("modes_covered", "real_data_modes"):
        if key in summary:
            assert 0 <= summary[key] <= summary["modes_total"], key


# the held-out images above their reconstructions (and, for the MAE, their masking): the grid's
# name and its rows
COMPARISON_GRIDS = {"vae": ("reconstructions.ppm", 2), "vqvae": ("reconstructions.ppm", 2),
                    "autoencoder": ("reconstructions.ppm", 2),
                    "mae": ("original_masked_reconstruction.ppm", 3)}


@pytest.mark.parametrize("name, argv, keys, fixed", RUNS)
def test_a_tiny_run_writes_its_numbers(name, argv, keys, fixed, tmp_path):
    main([name, *tiny(name), *argv, f"--out={tmp_path}"])
    with open(tmp_path / "summary.json") as file:
        summary = json.load(file)
    assert all(key in summary for key in keys)
    assert {key: summary.get(key) for key in fixed} == fixed
    assert_the_numbers_agree(summary)
    assert os.path.exists(tmp_path / "checkpoints" / "last.npz")
    assert os.listdir(tmp_path / "images")
    # one column for each of the 4 held-out images: 16 pixels and a padding of 2 around a tile
    if name in COMPARISON_GRIDS:
        grid, rows = COMPARISON_GRIDS[name]
        assert read_pnm(tmp_path / "images" / grid).shape == (rows * 18 + 2, 4 * 18 + 2, 3)


BASELINES = {  # the trivial model each command fits to its training rows, and its flags
    "vae": ("minilean.train.vae.independent_pixel_nats", ["--hidden=8", "--latent=2",
                                                          "--iw-samples=2"]),
    "vqvae": ("minilean.train.vqvae.mean_image_mse", ["--codes=4", "--code-dim=2",
                                                      "--hidden=2"]),
    "autoencoder": ("minilean.train.autoencoder.mean_image_mse", ["--hidden=8", "--latent=2"]),
    "mae": ("minilean.train.mae.mean_patch_mse", ["--width=4", "--heads=2", "--decoder-width=4",
                                                  "--depth=1"]),
    "gan": ("minilean.train.gan.independent_pixel_samples", ["--hidden=8", "--latent=2",
                                                             "--n-samples=4"]),
}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_the_baseline_is_fitted_to_the_training_rows_and_scored_on_the_held_out_ones(
        name, tmp_path, monkeypatch):
    """Scored on the held-out rows that the model's own numbers are measured on (all 4 of them:
    --n-eval=4); the GAN's baseline samples are scored as its samples are. Fitted to the
    training rows as each baseline takes them: the VAE's in chunks, the GAN's by index, the
    others' as their mean image."""
    target, flags = BASELINES[name]
    module, function = target.rsplit(".", 1)
    real, calls, sessions = getattr(importlib.import_module(module), function), [], []

    def record(fitted, *args):
        if name == "vae":  # the chunks, read once: kept whole for the check
            fitted = numpy.concatenate(list(fitted))
        calls.append((fitted, *args))
        return real(fitted, *args)
    monkeypatch.setattr(target, record)
    start = zoo_run.start
    monkeypatch.setattr(zoo_run, "start", lambda *args: sessions.append(start(*args)) or
                        sessions[-1])
    monkeypatch.setattr("minilean.models.classifier.fd_report",
                        lambda *args: {"fd_classifier": 0.0})
    main([name, *tiny(name), *flags, f"--out={tmp_path}"])
    (session,), ((fitted, measured, *rest),) = sessions, calls
    training = float_images(session.dataset.x[session.train_index])
    if name == "gan":  # (images, count, seed, rows)
        numpy.testing.assert_array_equal(float_images(fitted[rest[1]]), training)
    elif name == "vae":
        numpy.testing.assert_array_equal(float_images(fitted), training)
    else:
        numpy.testing.assert_allclose(fitted, training.mean(0, keepdims=True), rtol=1e-6)
    if name != "gan":  # its second argument is the count of samples
        numpy.testing.assert_array_equal(float_images(measured),
                                         float_images(session.held_out_rows))


def test_training_chunks_are_every_training_row_once_in_order_chunk_after_chunk(monkeypatch):
    """Chunks of ``TRAINING_CHUNK`` rows, the last one short: together the training rows in
    their seeded order, none skipped or repeated at a chunk's edge, none after the first
    chunk lost (a run's rows fit one chunk of 1024 in the other tests)."""
    monkeypatch.setattr(zoo_run, "TRAINING_CHUNK", 3)
    images = numpy.random.default_rng(0).integers(0, 256, (10, 1, 2, 2), numpy.uint8)
    train_index = numpy.array([7, 2, 9, 0, 4, 1, 8])
    session = zoo_run.Session(types.SimpleNamespace(device="cpu"), types.SimpleNamespace(x=images),
                              train_index, images[[3, 5, 6]], (0.0, 1.0))
    chunks = list(session.training_chunks())
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    numpy.testing.assert_array_equal(numpy.concatenate(chunks), images[train_index])
    mean = session.mean_training_image()
    assert mean.dtype == numpy.float32 and mean.shape == (1, 1, 2, 2)
    numpy.testing.assert_allclose(mean, (images[train_index] / 255.0).mean(0, keepdims=True),
                                  rtol=1e-7)


def test_the_mean_training_image_is_summed_in_float64_over_its_chunks(monkeypatch):
    """30,000 one-pixel rows a row at a time: float32 running sums of k/255 drift by some
    1e-6 relatively (5.5e-6 here); the float64 sum, rounded once, lands within float32's
    rounding of the mean."""
    monkeypatch.setattr(zoo_run, "TRAINING_CHUNK", 1)
    images = numpy.random.default_rng(1).integers(0, 256, (30_000, 1, 1, 1), numpy.uint8)
    session = zoo_run.Session(types.SimpleNamespace(device="cpu"),
                              types.SimpleNamespace(x=images), numpy.arange(len(images)),
                              images[:1], (0.0, 1.0))
    numpy.testing.assert_allclose(session.mean_training_image(),
                                  (images / 255.0).mean(0, keepdims=True), rtol=1e-7)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_a_run_holds_no_copy_of_its_training_rows(name, tmp_path):
    """The training rows of a memory-mapped --x are read a batch (the Loader's) or a chunk
    (the baseline's) at a time: a run on 29 MiB of uint8 images holds a small part of that at
    once. The split copied them all, and the mean-image baselines a float32 copy of the copy
    (117 MiB more); the MAE's patches of it 117 MiB more again."""
    images = numpy.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=numpy.uint8,
                                           shape=(40_000, 3, 16, 16))
    images[:] = numpy.random.default_rng(0).integers(0, 256, images.shape, numpy.uint8)
    images.flush()
    flags = [*tiny(name)[1:], *BASELINES[name][1],
             *(["--evaluate=false"] if name == "gan" else [])]
    # a first run on 40 of the rows imports and sets up what any run does, once a process
    main([name, f"--x={tmp_path / 'x.npy'}", "--n-total=40", *flags, f"--out={tmp_path / 'a'}"])
    tracemalloc.start()
    try:
        main([name, f"--x={tmp_path / 'x.npy'}", *flags, f"--out={tmp_path / 'b'}"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < images.nbytes / 4, f"{peak / 2 ** 20:.1f} MiB at once"


@pytest.mark.parametrize("mask", ["random", "block"])
def test_mae_trains_and_is_measured_with_the_mask_it_is_given(mask, tmp_path, monkeypatch):
    from minilean.models.mae import MaskedAutoencoder
    made = []
    for kind in ("random", "block"):
        real = getattr(MaskedAutoencoder, f"{kind}_mask")
        monkeypatch.setattr(MaskedAutoencoder, f"{kind}_mask",
                            lambda self, *args, kind=kind, real=real, **kwargs:
                            made.append(kind) or real(self, *args, **kwargs))
    main(["mae", *TINY, "--width=4", "--heads=2", "--decoder-width=4", "--depth=1",
          f"--mask={mask}", f"--out={tmp_path}"])
    assert made == [mask] * 3  # two training steps, then the held-out rows


@pytest.mark.parametrize("command", ["autoencoder", "diffusion"])
def test_without_pillow_the_grids_are_ppm_only(command, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # ``import PIL`` now raises ImportError
    flags = TINY if command != "diffusion" else [
        "--steps=2", "--batch-size=4", "--progress=false", "--hidden-c=4", "--T=4",
        "--sampler=ddim", "--sample-steps=1", "--n-samples=2", "--evaluate=false"]
    main([command, *flags, f"--out={tmp_path}"])
    written = sorted(os.listdir(tmp_path / "images"))
    assert written and all(name.endswith(".ppm") for name in written)


def test_resume_continues_to_the_new_step_count(tmp_path):
    main(["autoencoder", *TINY, "--hidden=8", "--latent=2", f"--out={tmp_path}"])
    main(["autoencoder", "--steps=4", f"--resume={tmp_path}", "--progress=false"])
    with open(tmp_path / "metrics.jsonl") as file:
        steps = [json.loads(line)["step"] for line in file]
    assert steps[-1] == 4 and steps == sorted(steps)


def test_a_finished_run_continued_past_its_last_line_off_the_interval_logs_as_a_whole_run(
        tmp_path):
    """A run of 3 steps logging every 2 ends with a line of step 3 alone; continued to 4 steps,
    it logs step 3 with step 4, as a run of 4 steps does (the line at 3 goes)."""
    flags = [flag for flag in TINY if not flag.startswith("--steps")] + [
        "--log-every=2", "--hidden=8", "--latent=2"]
    main(["autoencoder", *flags, "--steps=4", f"--out={tmp_path / 'whole'}"])
    main(["autoencoder", *flags, "--steps=3", f"--out={tmp_path / 'split'}"])

    def logged(run):
        return [(record["step"], record["loss"])
                for record in read_metrics(tmp_path / run / "metrics.jsonl")]
    # resumed at its end (to evaluate again, say), it keeps its last line
    main(["autoencoder", "--steps=3", f"--resume={tmp_path / 'split'}", "--progress=false"])
    assert [step for step, _ in logged("split")] == [2, 3]
    main(["autoencoder", "--steps=4", f"--resume={tmp_path / 'split'}", "--progress=false"])
    assert logged("split") == logged("whole") and [step for step, _ in logged("whole")] == [2, 4]


def test_a_run_resumed_to_its_checkpoints_step_off_the_interval_logs_that_step(tmp_path,
                                                                               monkeypatch,
                                                                               capsys):
    """A run of 3 steps logging every 2, continued to 4 and interrupted after its line at 4
    but before its checkpoint, then finished at 3 again: its lines are those of a run of 3
    steps (the line at 3 is the mean the checkpoint keeps), not the line at 2 alone."""
    flags = [flag for flag in TINY if not flag.startswith("--steps")] + [
        "--log-every=2", "--hidden=8", "--latent=2", f"--out={tmp_path}"]

    def logged():
        return [(record["step"], record["loss"])
                for record in read_metrics(tmp_path / "metrics.jsonl")]

    def interrupted(state, *place):
        raise KeyboardInterrupt

    main(["autoencoder", *flags, "--steps=3"])
    whole = logged()
    with monkeypatch.context() as patch:
        patch.setattr(TrainState, "save", interrupted)
        assert fail(["autoencoder", "--steps=4", f"--resume={tmp_path}"], capsys)[0] == 130
    assert [step for step, _ in logged()] == [2, 4]
    main(["autoencoder", "--steps=3", f"--resume={tmp_path}", "--progress=false"])
    assert logged() == whole and [step for step, _ in whole] == [2, 3]


def test_default_intervals_follow_the_steps_of_the_resume_from_its_step_on(tmp_path,
                                                                           monkeypatch):
    """A run of 100 steps (a line every step, a checkpoint every 25) resumed with --steps 200
    logs and checkpoints from step 100 on as a fresh run of 200 does (every 2 and every 50),
    with the same numbers; the lines before stay as they were written, so every line is the
    mean of the steps since the one before it."""
    saved, save = [], TrainState.save

    def recorded_save(state, run_dir, *members):
        saved.append((run_dir, state.step))
        save(state, run_dir, *members)
    monkeypatch.setattr(TrainState, "save", recorded_save)
    flags = [flag for flag in TINY if not flag.startswith("--steps")] + [
        "--arch=mlp", "--hidden=4", "--latent=2"]
    main(["autoencoder", *flags, "--steps=100", f"--out={tmp_path / 'split'}"])
    main(["autoencoder", "--steps=200", f"--resume={tmp_path / 'split'}", "--progress=false"])
    main(["autoencoder", *flags, "--steps=200", f"--out={tmp_path / 'whole'}"])

    def logged(run):
        return [(record["step"], record["loss"])
                for record in read_metrics(tmp_path / run / "metrics.jsonl")]

    def checkpoints(run):
        return [step for run_dir, step in saved if run_dir == str(tmp_path / run)]
    split, whole = logged("split"), logged("whole")
    assert [step for step, _ in split] == [*range(1, 101), *range(102, 201, 2)]
    assert split[100:] == whole[50:] and [step for step, _ in whole] == [*range(2, 201, 2)]
    assert checkpoints("split") == [25, 50, 75, 100, 150, 200]
    assert checkpoints("whole") == [50, 100, 150, 200]


def test_resume_trains_with_the_lr_it_is_given(tmp_path):
    """As diffusion does: a checkpoint holds the optimizer's lr, and --lr on --resume wins."""
    flags = [*TINY, "--log-every=1", "--hidden=8", "--latent=2"]  # 2 steps
    for run in ("same", "faster"):
        main(["autoencoder", *flags, f"--out={tmp_path / run}"])
    main(["autoencoder", "--steps=4", f"--resume={tmp_path / 'same'}", "--progress=false"])
    main(["autoencoder", "--steps=4", f"--resume={tmp_path / 'faster'}", "--progress=false",
          "--lr=0.5"])
    lrs = {run: load_checkpoint(str(tmp_path / run / "checkpoints" / "last.npz"))[
        "optimizers"]["optimizer"]["hyperparameters"]["lr"] for run in ("same", "faster")}
    assert lrs == {"same": cli.AUTOENCODER.flags["lr"].default, "faster": 0.5}
    losses = {run: [record["loss"] for record in read_metrics(tmp_path / run / "metrics.jsonl")]
              for run in ("same", "faster")}
    # the loss of step 4 is the first measured after an update at the new lr (step 3's)
    assert losses["same"][:3] == losses["faster"][:3] and losses["same"][3] != losses["faster"][3]


def test_vqvae_resumed_across_a_restart_of_dead_codes_repeats_an_uninterrupted_run(tmp_path):
    """The codes' uses since the last restart are saved, so a resumed run restarts the same
    dead codes at step 4 and then trains the same."""
    flags = ["--n-total=64", "--batch-size=4", "--n-eval=8", "--codes=64", "--hidden=4",
             "--restart-every=4", "--checkpoint-every=1", "--log-every=1", "--progress=false"]
    main(["vqvae", *flags, "--steps=6", f"--out={tmp_path / 'whole'}"])
    main(["vqvae", *flags, "--steps=3", f"--out={tmp_path / 'split'}"])
    main(["vqvae", "--steps=6", f"--resume={tmp_path / 'split'}", "--progress=false"])

    def records(run):
        with open(tmp_path / run / "metrics.jsonl") as file:
            return [{key: value for key, value in json.loads(line).items() if key != "seconds"}
                    for line in file]
    assert records("split") == records("whole") and records("whole")[3]["restarted"] > 0


def test_vqvae_restarts_codes_by_their_uses_summed_since_the_last_restart(tmp_path, monkeypatch):
    """The usage handed to each restart is the bincount of every training step's code indices
    since the previous restart, added up (not the last step's alone)."""
    import numpy

    from minilean.models import vqvae
    events = []  # ("step", counts of the codes chosen) and ("restart", usage it was given)
    forward, restart = vqvae.VQVAE.forward, vqvae.VQVAE.restart_dead_codes

    def recording_forward(self, images):
        outputs = forward(self, images)
        events.append(("step", numpy.bincount(outputs[3].numpy().reshape(-1), minlength=4)))
        return outputs

    def recording_restart(self, encoded, usage, threshold, generator):
        events.append(("restart", numpy.array(usage, dtype=numpy.float64)))
        return restart(self, encoded, usage, threshold, generator)

    monkeypatch.setattr(vqvae.VQVAE, "forward", recording_forward)
    monkeypatch.setattr(vqvae.VQVAE, "restart_dead_codes", recording_restart)
    flags = ["--n-total=40", "--batch-size=4", "--n-eval=4", "--progress=false", "--steps=7",
             "--codes=4", "--code-dim=2", "--hidden=2", "--restart-every=3"]
    main(["vqvae", *flags, f"--out={tmp_path}"])
    assert [kind for kind, _ in events[:8]] == ["step"] * 3 + ["restart"] + ["step"] * 3 + [
        "restart"]
    since_restart = numpy.zeros(4)
    for kind, counts in events[:8]:
        if kind == "step":
            since_restart += counts
        else:
            numpy.testing.assert_array_equal(counts, since_restart)
            since_restart = numpy.zeros(4)



def test_mae_masks_and_vqvae_restarts_draw_from_the_runs_own_streams(tmp_path, monkeypatch):
    """Each training step's MAE mask and VQ-VAE restart picks come from the stream (seed,
    TRAINING_STEP, step), the held-out masks from (seed, EVALUATION): not from the CPU
    generator, whose state depends on everything drawn before."""
    from minilean.models import mae, vqvae
    generators = []  # the state of each generator handed over, before it is drawn from

    def recording(method):
        def record(*args, generator, **kwargs):
            generators.append(generator.bit_generator.state)
            return method(*args, generator=generator, **kwargs)
        return record

    monkeypatch.setattr(mae.MaskedAutoencoder, "random_mask",
                        recording(mae.MaskedAutoencoder.random_mask))
    monkeypatch.setattr(vqvae.VQVAE, "restart_dead_codes",
                        recording(vqvae.VQVAE.restart_dead_codes))
    tiny = ["--n-total=40", "--batch-size=4", "--n-eval=4", "--progress=false", "--steps=4",
            "--seed=3"]
    main(["mae", *tiny, "--patch-size=8", "--width=16", "--depth=1", "--heads=2",
          "--decoder-width=16", "--decoder-depth=1", f"--out={tmp_path / 'mae'}"])
    main(["vqvae", *tiny, "--codes=4", "--code-dim=2", "--hidden=2", "--restart-every=2",
          f"--out={tmp_path / 'vqvae'}"])
    expected = ([stream(3, Purpose.TRAINING_STEP, step) for step in (1, 2, 3, 4)]
                + [stream(3, Purpose.EVALUATION)]
                + [stream(3, Purpose.TRAINING_STEP, step) for step in (2, 4)])
    assert generators == [generator.bit_generator.state for generator in expected]



def test_the_vae_draws_no_noise_from_the_device_generator(tmp_path, monkeypatch):
    """Training eps and the held-out bounds' eps come from the run's streams (host draws), so
    the numbers repeat on either device; the device generator's randn_like is never called."""
    from minilean.models import vae

    def refused(*args, **kwargs):
        raise AssertionError("randn_like called")
    monkeypatch.setattr(vae, "randn_like", refused)
    main(["vae", "--n-total=40", "--batch-size=4", "--n-eval=4", "--progress=false",
          "--steps=2", "--arch=mlp", "--hidden=4", "--latent=2", "--iw-samples=3",
          f"--out={tmp_path}"])
    assert json.loads((tmp_path / "summary.json").read_text())["iw_samples"] == 3


DEFINING = {  # per command, the flags that define its model or objective, each with a value not
    # the saved one
    "vae": {"arch": "mlp", "hidden": 16, "latent": 4, "beta": 0.5},
    "vqvae": {"codes": 8, "code_dim": 4, "hidden": 8, "ema_codebook": True, "decay": 0.9,
              "restart_every": 7, "beta": 0.5},
    "gan": {"latent": 4, "hidden": 8, "d_steps": 2},
    "autoencoder": {"arch": "conv", "hidden": 8, "latent": 4},
    "mae": {"patch_size": 8, "width": 32, "depth": 1, "heads": 2, "decoder_width": 16,
            "decoder_depth": 2, "per_patch_norm": True, "mask": "block", "mask_ratio": 0.5},
    "diffusion": {"arch": "residual", "hidden_c": 8, "T": 20, "schedule": "linear",
                  "beta_start": 0.001, "beta_end": 0.05, "ema": 0.9, "prediction": "eps"},
}
DATA = {"seed": 1, "batch_size": 8, "n_total": 100, "image_size": 32}  # define every model's data
# the saved run: a tiny one, so that a resume that is not refused ends soon
SAVED = {"steps": 1, "n_total": 40, "batch_size": 4, "n_samples": 4, "evaluate": False,
         "hidden_c": 4, "T": 10}


@pytest.mark.parametrize("name, flag, value", [
    (name, flag, value) for name, flags in DEFINING.items()
    for flag, value in {**DATA, **flags}.items()])
def test_resume_refuses_to_change_what_defines_the_model_or_its_data(name, flag, value, tmp_path,
                                                                      capsys):
    """The saved run (its config.json, as a run writes it before its first checkpoint) keeps
    each such flag; one given anew with another value is a one-line error, and the run's
    config stays as it was."""
    command = {**ZOO, "diffusion": cli.DIFFUSION}[name]
    saved = vars(command.parse((), {"out": str(tmp_path), **{
        key: setting for key, setting in SAVED.items() if key in command.flags}}))
    (tmp_path / "config.json").write_text(json.dumps(saved))
    before = (tmp_path / "config.json").read_bytes()
    code, err = fail([name, f"--resume={tmp_path}", f"--{flag.replace('_', '-')}={value}",
                      "--progress=false"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"minilean {name}: error: --{flag.replace('_', '-')}: got ")
    assert err.endswith(f"; expected {saved[flag]!r} (the value of the run being resumed)\n")
    assert (tmp_path / "config.json").read_bytes() == before


def test_resume_refuses_a_defining_flag_the_saved_run_left_out(tmp_path, capsys):
    saved = vars(cli.DIFFUSION.parse((), {"out": str(tmp_path), "steps": 1}))
    assert saved["n_total"] is None
    (tmp_path / "config.json").write_text(json.dumps(saved))
    code, err = fail(["diffusion", f"--resume={tmp_path}", "--n-total=20"], capsys)
    assert (code, err) == (2, "minilean diffusion: error: --n-total: got 20; expected it left "
                              "out (the run being resumed has none)\n")


def test_the_data_flags_given_on_resume_are_judged_with_the_runs_saved_x(tmp_path, capsys):
    """The resumed run trains on its saved --x: its own --y given again is no label "alone",
    and --dataset typed now conflicts with that --x as on a new run. Both were judged on the
    flags typed now alone: the first refused as "--y ... expected to come with --x", the
    second taken in silence, the run going on with its --x."""
    rng = numpy.random.default_rng(0)
    numpy.save(tmp_path / "x.npy", rng.integers(0, 256, (40, 3, 16, 16), dtype=numpy.uint8))
    numpy.save(tmp_path / "y.npy", rng.integers(0, 3, 40))
    run, data = tmp_path / "run", [f"--x={tmp_path / 'x.npy'}", f"--y={tmp_path / 'y.npy'}"]
    main(["autoencoder", *data, "--steps=1", "--batch-size=4", "--hidden=4", "--latent=2",
          "--n-eval=2", "--progress=false", f"--out={run}"])
    main(["autoencoder", f"--resume={run}", "--steps=2", data[1], "--progress=false"])
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    capsys.readouterr()
    before = (run / "config.json").read_bytes()
    code, err = fail(["autoencoder", f"--resume={run}", "--steps=3", "--dataset=builtin"], capsys)
    assert (code, err) == (2, "minilean autoencoder: error: --dataset: got 'builtin'; expected "
                              "no --dataset with --x (the run trains on the --x array instead)\n")
    assert (run / "config.json").read_bytes() == before
    # the conflict is with a --dataset typed now: one typed at the start of a run that an --x
    # typed now would change is left to the refusal that names that --x
    other = tmp_path / "other"
    main(["autoencoder", "--dataset=builtin", "--n-total=40", "--steps=1", "--batch-size=4",
          "--hidden=4", "--latent=2", "--n-eval=2", "--progress=false", f"--out={other}"])
    capsys.readouterr()
    code, err = fail(["autoencoder", f"--resume={other}", "--steps=2", data[0]], capsys)
    assert (code, err) == (2, f"minilean autoencoder: error: --x: got '{tmp_path / 'x.npy'}'; "
                              f"expected it left out (the run being resumed has none)\n")


def test_gan_on_ring8_resumes_without_naming_the_dataset_again(tmp_path):
    """The resumed run's data (points, not images) come from its saved config."""
    main(["gan", "--dataset=ring8", "--steps=2", "--batch-size=8", "--n-total=64",
          "--progress=false", "--evaluate=false", f"--out={tmp_path}"])
    main(["gan", "--steps=3", f"--resume={tmp_path}", "--progress=false", "--evaluate=false"])
    with open(tmp_path / "metrics.jsonl") as file:
        assert [json.loads(line)["step"] for line in file][-1] == 3


def test_a_new_run_does_not_write_over_a_ring8_runs_scatter_plots(tmp_path, capsys):
    """The scatter plots are the run's pictures, kept with its grids (``images/``): a new run
    into a folder that holds only them is refused, as one that holds only grids is."""
    first = tmp_path / "first"
    main(["gan", "--dataset=ring8", "--steps=2", "--sample-every=1", "--batch-size=8",
          "--n-total=64", "--progress=false", "--evaluate=false", f"--out={first}"])
    assert sorted(os.listdir(first / "images")) == [
        "samples.svg", "samples_step000001.svg", "samples_step000002.svg"]
    kept = tmp_path / "kept"
    os.makedirs(kept / "images")
    shutil.copy(first / "images" / "samples.svg", kept / "images" / "samples.svg")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["gan", "--dataset=ring8", "--steps=1", "--batch-size=8", "--n-total=64",
              "--progress=false", f"--out={kept}"])
    assert exit_info.value.code == 2
    assert "this one holds images, which a new run would replace" in capsys.readouterr().err


def test_evaluate_of_a_run_that_writes_no_images_says_so(tmp_path, capsys):
    """A gan run on ring8 makes points: evaluate names the run, not "train a model first"."""
    main(["gan", "--dataset=ring8", "--steps=1", "--batch-size=8", "--n-total=64",
          "--progress=false", "--evaluate=false", f"--out={tmp_path}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--cpu", f"--samples={tmp_path}"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        f"minilean evaluate: error: samples file {tmp_path / 'samples.npy'} not found: that "
        f"directory holds a run of gan on ring8, which writes none (diffusion and gan on "
        f"images do); give an .npy array of images instead\n")


def test_a_twice_resumed_run_keeps_the_flags_given_at_its_start(tmp_path):
    """--hidden=64 given at the start stays the run's, and stays among its given flags, however
    many resumes follow (the ring8 defaults would say 128)."""
    main(["gan", "--dataset=ring8", "--hidden=64", "--latent=2", "--steps=1", "--batch-size=8",
          "--n-total=64", "--progress=false", "--evaluate=false", f"--out={tmp_path}"])
    main(["gan", "--steps=2", f"--resume={tmp_path}", "--progress=false"])
    main(["gan", "--dataset=ring8", "--steps=3", f"--resume={tmp_path}", "--progress=false"])
    with open(tmp_path / "config.json") as file:
        config = json.load(file)
    assert config["hidden"] == 64 and config["steps"] == 3
    assert {"dataset", "hidden", "latent", "steps", "resume"} <= set(config["given_flags"])
    with open(tmp_path / "metrics.jsonl") as file:
        assert [json.loads(line)["step"] for line in file][-1] == 3


def test_gan_on_ring8_takes_the_ring_defaults_unless_given():
    ring = cli.GAN.parse([], {"dataset": "ring8"})
    assert (ring.steps, ring.hidden, ring.latent) == (3000, 128, 2)
    given = cli.GAN.parse([], {"dataset": "ring8", "hidden": "64", "steps": "10"})
    assert (given.steps, given.hidden, given.latent) == (10, 64, 2)
    images = cli.GAN.parse([], {})
    assert (images.steps, images.hidden, images.latent) == (1000, 256, 32)


def test_a_diverged_run_is_one_line_without_numpy_warnings(tmp_path, capsys):
    """NumPy would warn (a warning and a source line) at each overflowing operation first."""
    import warnings
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as exit_info:
        warnings.simplefilter("always")
        main(["autoencoder", "--cpu", "--lr=1e30", "--steps=20", "--n-total=64",
              "--batch-size=8", "--progress=false", f"--out={tmp_path}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1
    assert "loss became nan at step" in err
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.parametrize("name, grid", [("vae", "reconstructions"),
                                        ("vqvae", "reconstructions"),
                                        ("autoencoder", "reconstructions"),
                                        ("mae", "original_masked_reconstruction")])
def test_a_model_that_diverged_in_its_last_step_is_said_to_have(name, grid, tmp_path, capsys):
    """The last step's loss is finite (the NaN guard passes it) and its update overflows the
    weights: the evaluation's grid met the NaN first, and said "images hold ... nan", as if
    the images were at fault (diffusion and gan said that training diverged)."""
    code, err = fail([name, "--n-total=40", "--steps=1", "--batch-size=4", "--n-eval=4",
                      "--lr=1e30", "--progress=false", f"--out={tmp_path}"], capsys)
    assert code == 1 and re.fullmatch(
        rf"minilean {name}: error: the model after step 1 \({grid}\) gave \d+ nan or infinite "
        rf"values of \d+: training or sampling diverged\n", err), err
    assert not (tmp_path / "summary.json").exists()


def test_evaluate_of_an_array_run_that_writes_no_images_names_the_array(tmp_path, capsys):
    """An --x run's saved --dataset is the default it did not use: the message names the
    array it trained on."""
    numpy.save(tmp_path / "x.npy", numpy.zeros((16, 3, 8, 8), numpy.uint8))
    run = tmp_path / "run"
    main(["autoencoder", f"--x={tmp_path / 'x.npy'}", "--steps=1", "--batch-size=4",
          "--progress=false", f"--out={run}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--cpu", f"--samples={run}"])
    assert exit_info.value.code == 1
    assert f"holds a run of autoencoder on {tmp_path / 'x.npy'}, which writes none" in \
        capsys.readouterr().err


def test_a_run_on_a_downloaded_dataset_resumes_from_another_working_folder(tmp_path,
                                                                          monkeypatch):
    """--data-root is saved as an absolute path: the resume reads the same arrays from
    anywhere (the relative default, data/real, would be looked up in the new folder)."""
    folder = tmp_path / "datasets" / "cifar10"
    folder.mkdir(parents=True)
    images = numpy.random.default_rng(0).integers(0, 256, (40, 3, 32, 32), dtype=numpy.uint8)
    numpy.save(folder / "cifar10_train_X.npy", images)
    numpy.save(folder / "cifar10_train_y.npy", numpy.arange(40) % 10)
    monkeypatch.chdir(tmp_path)
    main(["autoencoder", "--dataset=cifar10", "--data-root=datasets", "--steps=1",
          "--batch-size=8", "--progress=false", "--out=run"])
    with open(tmp_path / "run" / "config.json") as file:
        assert json.load(file)["data_root"] == str(tmp_path / "datasets")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(["autoencoder", "--steps=2", f"--resume={tmp_path / 'run'}", "--progress=false"])
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["step"] == 2


@pytest.mark.parametrize("command, model", [
    ("vae", "minilean.models.vae.VAE"), ("autoencoder", "minilean.models.autoencoder.Autoencoder"),
    ("vqvae", "minilean.models.vqvae.VQVAE"), ("mae", "minilean.models.mae.MaskedAutoencoder"),
    ("gan", "minilean.models.gan.Generator"), ("gan", "minilean.models.gan.Discriminator")])
def test_a_zoo_models_defaults_are_its_commands(command, model):
    """Model(image_shape) builds what the command trains by default: a reader who builds the
    class from Python gets the network the README's numbers are for."""
    import importlib
    import inspect
    module, name = model.rsplit(".", 1)
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    flags = next(flag_set for flag_set in (c.flags for c in vars(cli).values()
                                           if isinstance(c, cli.Command) and c.name == command))
    shared = {name: parameter.default for name, parameter in parameters.items()
              if name in flags and parameter.default is not inspect.Parameter.empty}
    assert shared and shared == {name: flags[name].default for name in shared}


def test_a_zoo_command_ends_with_one_line_of_where_and_what(tmp_path, capsys):
    """As diffusion's: the command, the run directory, then the summary (numbers to 4 digits)."""
    main(["autoencoder", "--steps=1", "--batch-size=8", "--n-total=40", "--progress=false",
          f"--out={tmp_path}"])
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(rf"minilean autoencoder: wrote {re.escape(str(tmp_path))} "
                        r"held_out_images=\d+ held_out_mse=[\d.e-]+ "
                        r"baseline_mean_image_mse=[\d.e-]+ steps=1", last)


def test_a_finished_zoo_run_closes_its_metrics_log(tmp_path, monkeypatch):
    """finish() closes the open metrics.jsonl, as diffusion's ``with run_dir`` does."""
    sessions, start = [], zoo_run.start
    monkeypatch.setattr(zoo_run, "start", lambda *args: sessions.append(start(*args)) or
                        sessions[-1])
    main(["autoencoder", *TINY, "--hidden=8", "--latent=2", f"--out={tmp_path}"])
    (session,) = sessions
    assert session.run.metrics_file.closed


EVERY_MODEL_COMMAND = {  # tiny networks of each model command
    "diffusion": ["--hidden-c=4", "--T=4", "--sampler=ddim", "--sample-steps=1",
                  "--n-samples=2", "--evaluate=false"],
    "vae": ["--hidden=8", "--latent=2", "--iw-samples=2"],
    "vqvae": ["--codes=4", "--code-dim=2", "--hidden=2"],
    "gan": ["--hidden=8", "--latent=2", "--n-samples=4", "--evaluate=false"],
    "autoencoder": ["--hidden=8", "--latent=2"],
    "mae": ["--width=4", "--heads=2", "--decoder-width=4", "--depth=1"],
}


@pytest.mark.parametrize("name", sorted(EVERY_MODEL_COMMAND))
def test_every_model_command_says_what_it_trains_first_and_where_it_wrote_last(name, tmp_path,
                                                                               capsys):
    """Each command, started and resumed, prints the same two lines: its networks, the data,
    the device and the steps it will train; then the run directory and its summary."""
    main([name, "--cpu", "--steps=1", "--batch-size=4", "--n-total=40",
          "--progress=false", *EVERY_MODEL_COMMAND[name], f"--out={tmp_path}"])
    main([name, "--steps=2", f"--resume={tmp_path}", "--progress=false"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    for line, steps in zip(lines[::2], ("0->1", "1->2")):
        assert re.fullmatch(rf"minilean {name}: \w+( \+ \w+)* \(\d+ parameters\) on builtin "
                            rf"\(3, 16, 16\), device=cpu, steps {steps}", line), line
    for line, steps in zip(lines[1::2], (1, 2)):
        assert line.startswith(f"minilean {name}: wrote {tmp_path} ") and f" steps={steps}" in line


@pytest.mark.parametrize("name", sorted(EVERY_MODEL_COMMAND))
def test_the_trainlog_of_an_array_run_names_the_array(name, tmp_path):
    """--log's TrainLog says what the run trained on, as the start line does: the --x array,
    not the --dataset default the run did not use."""
    numpy.save(tmp_path / "x.npy", numpy.zeros((40, 3, 16, 16), numpy.uint8))
    main([name, "--cpu", "--steps=1", "--batch-size=4", "--progress=false",
          *EVERY_MODEL_COMMAND[name], f"--x={tmp_path / 'x.npy'}", f"--log={tmp_path / 'log.json'}",
          f"--out={tmp_path / 'run'}"])
    notes = json.loads((tmp_path / "log.json").read_text())["notes"]
    assert notes[:2] == [f"dataset={tmp_path / 'x.npy'}", "device=cpu"]


@pytest.mark.parametrize("name", ["diffusion", "vae", "vqvae", "gan", "autoencoder", "mae"])
def test_cuda_without_a_gpu_is_refused_before_the_data_load(name, tmp_path, capsys,
                                                            monkeypatch):
    """The device is checked first: a run on a missing GPU stops in one line before it spends
    time loading (or downloading, or generating) its data, and writes nothing."""
    from minilean import backend, data
    monkeypatch.setattr(backend, "_cuda_problem", "device 'cuda' needs CuPy, which is not "
                                                  "installed")
    loads = []
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: loads.append(args))
    for module in ("minilean.train.diffusion", "minilean.train.zoo_run"):
        monkeypatch.setattr(importlib.import_module(module), "load_dataset", data.load_dataset)
    code, err = fail([name, "--device=cuda", f"--out={tmp_path / 'run'}"], capsys)
    assert code != 0 and loads == [] and not (tmp_path / "run").exists()
    assert err == f"minilean {name}: error: device 'cuda' needs CuPy, which is not installed\n"


@pytest.mark.parametrize("stage", ["log", "write_summary"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_a_zoo_run_that_stops_on_an_error_unlocks_its_directory(name, stage, tmp_path,
                                                               monkeypatch, capsys):
    """A run that stopped in its evaluation (here: its summary.json cannot be written) kept its
    lock to the end of the process, so that a resume in the same process (a notebook's, a
    test's) found its own stopped run "another minilean process". One that stops in training
    (metrics.jsonl cannot be written) must release it too."""
    pytest.importorskip("fcntl")  # (Windows has none: runs there are not locked)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(RunDirectory, stage, disk_full)
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--cpu", "--steps=1", "--batch-size=4", "--n-total=40",
                  "--progress=false", *EVERY_MODEL_COMMAND[name], f"--out={tmp_path}"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.endswith(
        f"minilean {name}: error: No space left on device\n")
    main([name, "--steps=2", f"--resume={tmp_path}", "--progress=false"])
    assert [record["step"] for record in read_metrics(tmp_path / "metrics.jsonl")][-1] == 2
