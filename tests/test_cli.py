"""The command line: every bad flag is one line on stderr and exit code 2, before any work."""
import importlib
import inspect
import math
import os
import re
import subprocess
import sys

import numpy
import pytest

from minilean import cli
from minilean.cli import Command, FlagGroup, main
from minilean.errors import FlagError
from minilean.flags import Flag, flag_checked


def fail(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    return exit_info.value.code, err


@pytest.fixture
def no_work(monkeypatch):
    """Make sure no command starts working: the check must come first."""
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: pytest.fail("ran with bad flags"))


@pytest.mark.parametrize("argv, expected", [
    (["--stepz=3"], "--stepz: got 3; expected a flag of 'diffusion' (did you mean --steps?"),
    # a flag of other commands is named so, not taken for a near name here (--mask-ratio is
    # as near --image-size as --stepz is to --steps)
    (["--mask-ratio=0.5"], "--mask-ratio: got 0.5; expected a flag of 'diffusion' (only mae has "
                           "it; see"),
    (["--n-eval=9"], "--n-eval: got 9; expected a flag of 'diffusion' (only evaluate, vae, "
                     "vqvae, autoencoder, mae have it; see"),
    (["extra"], "unexpected argument 'extra'; expected flags only"),
    # words fire takes for itself, after running the command: its separator, its own flags
    (["--steps=3", "-", "extra"], "unexpected argument '-'; expected flags only"),
    (["--steps=3", "--", "--help"], "unexpected argument '--'; expected flags only"),
    (["--=3"], "unexpected argument '--=3'; expected flags only"),
    (["--steps=0"], "--steps: got 0; expected an integer >= 1"),
    (["--steps"], "--steps: got no value; expected an integer >= 1"),
    (["--steps", "--lr=1e-3"], "--steps: got no value; expected an integer >= 1"),
    (["--steps=True"], "--steps: got True; expected an integer >= 1"),  # a value, typed
    (["--out"], "--out: got no value; expected a file or directory path"),
    (["--steps=2.5"], "--steps: got 2.5; expected an integer >= 1"),
    (["--lr=0"], "--lr: got 0; expected a finite number > 0"),
    (["--lr=inf"], "--lr: got 'inf'; expected a finite number > 0"),
    (["--lr=fast"], "--lr: got 'fast'; expected a finite number > 0"),
    pytest.param(["--lr=1" + "0" * 400], f"--lr: got {10**400}; expected a finite number > 0",
                 id="lr-past-float-range"),
    pytest.param(["--lr=-1" + "0" * 400], f"--lr: got {-10**400}; expected a finite number > 0",
                 id="lr-past-float-range-negative"),
    pytest.param(["--steps=1" + "0" * 5000], f"--steps: got '1{'0' * 5000}'; expected an "
                                             f"integer >= 1", id="steps-of-5001-digits"),
    (["--ema=1"], "--ema: got 1; expected a finite number >= 0 and < 1"),
    (["--log-every=0"], "--log-every: got 0; expected an integer >= 1 or none"),
    (["--checkpoint-every=0"], "--checkpoint-every: got 0; expected an integer >= 1 or none"),
    (["--cpu=maybe"], "--cpu: got 'maybe'; expected a boolean"),
    (["--cpu=5"], "--cpu: got 5; expected a boolean"),
    (["--cpu", "--cuda"], "--cpu and --cuda: got both"),
    (["--device=cuda", "--cpu"], "--device: got 'cuda' together with --cpu"),
    (["--device=tpu"], "--device: got 'tpu'; expected one of auto, cpu, cuda"),
    (["--arch=vit"], "--arch: got 'vit'; expected one of unet, residual"),
    (["--sampler=euler"], "--sampler: got 'euler'; expected one of ddpm, ddim, pf-euler"),
    (["--schedule=quad"], "--schedule: got 'quad'; expected one of linear, cosine"),
    (["--beta-end=1.5"], "--beta-end: got 1.5; expected a finite number >= 0 and < 1"),
    (["--beta-start=1"], "--beta-start: got 1; expected a finite number >= 0 and < 1"),
    (["--T=-1"], "--T: got -1; expected an integer >= 1"),
    (["--image-size=8"], "--image-size: got 8; expected an integer >= 16 and <= 64"),
    (["--dataset=mnist"], "--dataset: got 'mnist'; expected one of builtin"),
    (["--x=x.npy", "--dataset=cifar10"], "--dataset: got 'cifar10'; expected no --dataset with "
                                         "--x (the run trains on the --x array instead)"),
    (["--y=labels.npy"], "--y: got 'labels.npy'; expected to come with --x (labels for an "
                        "image array)"),
    (["--n-total=0"], "--n-total: got 0; expected an integer >= 1 or none"),
    (["--threads=0"], "--threads: got 0; expected an integer >= 1 or none"),
    (["--out=[1, 2]"], "--out: got [1, 2]; expected a file or directory path"),
    (["--sample-ppm=grid.jpg"], "--sample-ppm: got 'grid.jpg'; expected a path ending in .png, "
                                ".ppm, .pgm"),
    (["--log=."], "--log: got '.'; expected the path of a file (this is a directory)"),
    # a folder that is not there yet: the TrainLog was written as a file named logs
    (["--log=logs/"], "--log: got 'logs/'; expected the path of a file (logs/ names a "
                      "directory)"),
    (["--log=log.json/."], "--log: got 'log.json/.'; expected the path of a file (log.json/. "
                           "names a directory)"),
])
def test_bad_flags_exit_2_with_one_line(argv, expected, capsys, no_work):
    code, err = fail(["diffusion", *argv], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("minilean diffusion: error: ")
    assert expected in err


@pytest.mark.parametrize("command, argv, expected", [
    # difflib's nearest name to --timesteps is --steps, the training steps: a wrong guess
    ("diffusion", ["--timesteps=10"], "--timesteps: got 10; expected a flag of 'diffusion' "
                                      "(did you mean --T? see"),
    ("diffusion", ["--num-timesteps=10"], "(did you mean --T? see"),
    ("diffusion", ["--t=10"], "--t: got 10; expected a flag of 'diffusion' (did you mean --T? "
                              "see"),  # difflib's match is case-sensitive: it found none
    ("diffusion", ["--LR=0.1"], "(did you mean --lr? see"),
    ("diffusion", ["--learning-rate=0.1"], "(did you mean --lr? see"),
    ("diffusion", ["--bs=4"], "(did you mean --batch-size? see"),
    ("vae", ["--timesteps=10"], "--timesteps: got 10; expected a flag of 'vae' (only diffusion "
                                "has --T; see"),
    ("vae", ["--t=10"], "(only diffusion has --T; see"),
])
def test_unknown_flag_hint_knows_synonyms_and_case(command, argv, expected, capsys, no_work,
                                                   monkeypatch):
    monkeypatch.setattr(cli.VAE, "_run", lambda config: pytest.fail("ran with bad flags"))
    code, err = fail([command, *argv], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err


# Bounded flags whose lowest value no other test reaches (with the flags each needs to get
# there): each takes it, and refuses the value one below it.
LOWEST_VALUES = [
    (cli.DIFFUSION, {"arch": "residual"}, "hidden_c", 1, "an integer >= 1"),
    (cli.DIFFUSION, {"lr_schedule": "constant"}, "warmup_steps", 0, "an integer >= 0"),
    (cli.DIFFUSION, {"steps": 1}, "lr_decay_steps", 1, "an integer >= 1 or none"),
    (cli.DIFFUSION, {}, "sample_steps", 1, "an integer >= 1"),
    (cli.DIFFUSION, {}, "eta", 0, "a finite number >= 0 and <= 1"),
    (cli.DIFFUSION, {"evaluate": False}, "n_samples", 1, "an integer >= 1"),
    (cli.DIFFUSION, {}, "sample_batch", 1, "an integer >= 1"),
    (cli.DIFFUSION, {}, "reconstruct_step", 0, "an integer >= 0 or none"),
    (cli.EVALUATE, {"samples": "s.npy"}, "n_eval", 2, "an integer >= 2"),
    (cli.EVALUATE, {"samples": "s.npy"}, "classifier_steps", 1, "an integer >= 1"),
    (cli.EVALUATE, {"samples": "s.npy"}, "seed", 0, "an integer >= 0 and <= 4294967295"),
    *[(command, {}, name, 1, "an integer >= 1") for command, name in (
        (cli.VAE, "hidden"), (cli.VAE, "latent"), (cli.VQVAE, "code_dim"), (cli.VQVAE, "hidden"),
        (cli.GAN, "latent"), (cli.GAN, "hidden"), (cli.GAN, "sample_every"), (cli.GAN, "d_steps"),
        (cli.AUTOENCODER, "latent"), (cli.MAE, "patch_size"), (cli.MAE, "depth"),
        (cli.MAE, "decoder_depth"))],
    (cli.VQVAE, {}, "beta", 0, "a finite number >= 0"),
    (cli.VQVAE, {}, "decay", 0, "a finite number >= 0 and < 1"),
    (cli.GAN, {"evaluate": False}, "n_samples", 1, "an integer >= 1"),
    (cli.MAE, {"heads": 1}, "width", 1, "an integer >= 1"),
    (cli.MAE, {"decoder_width": 1}, "heads", 1, "an integer >= 1"),
    (cli.MAE, {"heads": 1}, "decoder_width", 1, "an integer >= 1"),
]


@pytest.mark.parametrize("command, others, name, lowest, expected", LOWEST_VALUES,
                         ids=[f"{command.name}-{name}" for command, _, name, *_ in LOWEST_VALUES])
def test_a_bounded_flag_takes_its_lowest_value_and_refuses_the_one_below(command, others, name,
                                                                         lowest, expected):
    assert getattr(command.parse((), {**others, name: lowest}), name) == lowest
    below = f"{command.flags[name].option}: got {lowest - 1}; expected {expected}"
    with pytest.raises(FlagError, match=f"^{re.escape(below)}$"):
        command.parse((), {**others, name: lowest - 1})


@pytest.mark.parametrize("others, name, highest, above, expected", [
    ({}, "eta", 1.0, 1.5, "a finite number >= 0 and <= 1"),
    # the highest timestep of the schedule --T gives, on a resumed run the saved one
    ({"T": 10}, "reconstruct_step", 9, 10, "an integer >= 0 and <= 9 (a timestep of --T 10)"),
    # the seed is a key of the random streams, a 32-bit word
    ({}, "seed", 2**32 - 1, 2**32, "an integer >= 0 and <= 4294967295"),
    # a warm-up as long as the cosine's horizon reaches --lr at its end
    ({"steps": 10}, "warmup_steps", 10, 11, "at most 10, the cosine's horizon (--steps); a "
                                           "longer warm-up never reaches --lr"),
])
def test_a_bounded_flag_takes_its_highest_value_and_refuses_one_above(others, name, highest,
                                                                      above, expected):
    assert getattr(cli.DIFFUSION.parse((), {**others, name: highest}), name) == highest
    refused = f"{cli.DIFFUSION.flags[name].option}: got {above}; expected {expected}"
    with pytest.raises(FlagError, match=f"^{re.escape(refused)}$"):
        cli.DIFFUSION.parse((), {**others, name: above})


@pytest.mark.parametrize("command, flags, expected, kind", [
    (["evaluate"], ["--cpu"], "--samples: missing; expected a file or directory path (see",
     "PATH"),
    (["data", "convert", "image-folder"], ["--x-output=x.npy"], "--input: missing; expected a "
                                                                "file or directory path (see",
     "PATH"),
])
def test_a_required_flag_is_named_in_one_line_and_not_offered_none(command, flags, expected,
                                                                   kind, capsys):
    code, err = fail(command + flags, capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err
    main(command + ["--help"])
    assert f"{expected.split(':')[0]}={kind}    required" in capsys.readouterr().out


def test_fire_spellings_are_accepted(no_work, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: seen.update(vars(config)))
    main(["diffusion", "--cpu=false", "--seed=007", "--steps=1e3", "--lr=1", "--out=2024",
          "--dataset=cifar", "--log=off", "--device=cpu"])
    assert seen["cpu"] is False and seen["seed"] == 7 and seen["steps"] == 1000
    assert seen["lr"] == 1.0 and seen["out"] == "2024" and seen["dataset"] == "cifar10"
    assert seen["log"] is None and seen["device"] == "cpu"
    assert "seed" in seen["given_flags"] and "arch" not in seen["given_flags"]
    assert seen["progress"] is True  # the bar is shown unless --progress=false


@pytest.mark.parametrize("argv, expected", [
    (["proofs", "--name", "[mul]"], "--name: got ['mul']; expected a text or none (fire read "
                                    "the text as a list: quote it, as --name='\"TEXT\"')"),
    (["diffusion", "--out", "1e3"], "--out: got 1000.0; expected a file or directory path "
                                    "(fire read the text as a float: quote it, as "
                                    "--out='\"TEXT\"')")])
def test_a_text_that_fire_reads_as_a_literal_is_refused_with_how_to_quote_it(argv, expected,
                                                                            capsys):
    """fire would hand --out=1e3 over as 1000.0 (a folder named 1000.0) and --name=[mul] as a
    list: what was typed is lost, so the flag asks for it quoted."""
    code, err = fail(argv, capsys)
    assert code == 2 and err == f"minilean {argv[0]}: error: {expected}\n"


@pytest.mark.parametrize("flag, usable, device", [("--cpu", True, "cpu"),
                                                   ("--cuda", False, "cuda")])
def test_a_device_alias_picks_its_device_whatever_auto_would(flag, usable, device, no_work,
                                                            monkeypatch):
    """--cpu on a machine with a GPU computes on the CPU (auto would pick cuda); --cuda without
    one asks for cuda (and fails there, naming it), not for the CPU."""
    from minilean import backend
    seen = {}
    monkeypatch.setattr(backend, "cuda_available", lambda: usable)
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: seen.update(vars(config)))
    main(["diffusion", flag])
    assert seen["device"] == device


def test_unet_takes_hidden_c_2_the_fewest_its_groups_need(no_work, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: seen.update(vars(config)))
    main(["diffusion", "--arch=unet", "--hidden-c=2"])
    assert seen["hidden_c"] == 2


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(config):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli.DIFFUSION, "_run", interrupted)
    assert fail(["diffusion"], capsys) == (130, "minilean diffusion: interrupted\n")


@pytest.mark.parametrize("argv", [["--nolog"], ["--log=False"], ["--log=false"],
                                  ["--log=none"], ["--nolr-decay-steps"]])
def test_no_value_for_a_flag_that_may_be_none_is_none_however_it_is_spelled(argv, no_work,
                                                                             monkeypatch):
    """--nolog and --log=False (fire's False) were refused where --log=false passed."""
    seen = {}
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: seen.update(vars(config)))
    main(["diffusion", *argv])
    flag = argv[0].lstrip("-").partition("=")[0].removeprefix("no").replace("-", "_")
    assert seen[flag] is None and flag in seen["given_flags"]


def test_a_quoted_text_reaches_the_flag_as_typed(no_work, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: seen.update(vars(config)))
    main(["diffusion", "--out", '"1e3"'])
    assert seen["out"] == "1e3"


@pytest.mark.parametrize("word", ["2024_05_01", "0x10", "+5", "run #2", "(a)", "run "])
def test_a_path_word_that_fire_reads_as_another_text_or_an_integer_reaches_the_flag_as_typed(
        word, no_work, monkeypatch):
    """fire reads --out 2024_05_01 as the integer 20240501 and --log 'log #1.json' as 'log'
    (a comment after '#'): the run wrote to a path the user never named."""
    seen = {}
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: seen.update(vars(config)))
    main(["diffusion", "--out", word, f"--log={word}.json"])
    assert seen["out"] == word and seen["log"] == f"{word}.json"


def test_expected_errors_exit_1_with_one_line(tmp_path, capsys, monkeypatch):
    code, err = fail(["diffusion", "--cpu", f"--x={tmp_path / 'missing.npy'}",
                      f"--out={tmp_path / 'run'}"], capsys)
    assert code == 1 and err.count("\n") == 1 and "missing.npy" in err
    code, err = fail(["diffusion", "--cpu", f"--x={tmp_path}", f"--out={tmp_path / 'run'}"],
                     capsys)
    assert (code, err) == (1, f"minilean diffusion: error: --x {tmp_path} is a directory; "
                              f"expected a .npy array file\n")
    code, err = fail(["evaluate", "--cpu", f"--samples={tmp_path}"], capsys)
    assert code == 1 and "samples.npy not found" in err
    numpy.save(tmp_path / "samples.npy", numpy.zeros((4, 3, 16, 16), numpy.uint8))
    code, err = fail(["evaluate", "--cpu", f"--samples={tmp_path}", "--n-total=1",
                      f"--cache={tmp_path / 'cache'}"], capsys)  # the floor's covariance
    assert (code, err) == (1, "minilean evaluate: error: FD-classifier needs at least 2 real "
                              "images, the dataset has 1\n")
    from minilean.train import diffusion
    run = tmp_path / "diverged"  # a sampler whose samples overflowed
    monkeypatch.setattr(diffusion, "sample",
                        lambda eps_model, config, betas, x_T: x_T * math.inf)
    code, err = fail(["diffusion", "--cpu", "--steps=2", "--T=10", "--hidden-c=8",
                      "--n-samples=4", "--evaluate=False", "--progress=False", f"--out={run}"],
                     capsys)
    assert (code, err) == (1, "minilean diffusion: error: the ddpm sampler gave 3072 nan or "
                              "infinite values of 3072: training or sampling diverged\n")
    assert os.listdir(run / "images") == [] and (run / "checkpoints" / "last.npz").exists()


@pytest.mark.parametrize("value, raises", [("1", True), ("0", False), ("", False)])
def test_only_minilean_traceback_1_re_raises(value, raises, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINILEAN_TRACEBACK", value)
    argv = ["diffusion", "--cpu", f"--x={tmp_path / 'missing.npy'}", f"--out={tmp_path / 'run'}"]
    if raises:
        with pytest.raises(FileNotFoundError):
            main(argv)
    else:
        assert fail(argv, capsys)[0] == 1


@pytest.mark.parametrize("flag, name", [("--sample-ppm", "x.ppm"), ("--log", "x.json"),
                                        ("--reference-ppm", "deeper/x.ppm")])
def test_an_output_file_below_a_file_is_refused_before_the_run(flag, name, tmp_path, capsys,
                                                               no_work):
    (tmp_path / "afile").write_text("")
    value = str(tmp_path / "afile" / name)
    code, err = fail(["diffusion", f"{flag}={value}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: {flag}: got '{value}'; expected a "
                              f"path inside a folder; {tmp_path / 'afile'} is a file\n")


@pytest.mark.parametrize("flag, name", [("--log", "log.json"), ("--sample-ppm", "x.ppm")])
def test_an_output_file_that_is_a_special_file_is_refused_before_the_run(flag, name, tmp_path,
                                                                         capsys, no_work):
    value = str(tmp_path / name)  # a pipe stands for /dev/null, which the test must not touch
    os.mkfifo(value)
    code, err = fail(["diffusion", f"{flag}={value}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: {flag}: got '{value}'; expected the "
                              f"path of a regular file (this is a device, pipe or socket)\n")


def test_an_output_file_in_a_folder_that_refuses_writing_is_refused_before_the_run(
        tmp_path, capsys, monkeypatch, no_work):
    real_access = os.access  # root writes anywhere: the folder refuses writing to this check

    def access(path, mode, **kwargs):
        refused = mode & os.W_OK and os.path.abspath(path) == str(tmp_path)
        return not refused and real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    value = str(tmp_path / "deeper" / "log.json")
    code, err = fail(["diffusion", f"--log={value}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --log: got '{value}'; expected a "
                              f"path in a writable folder; {tmp_path} is not writable\n")


@pytest.mark.parametrize("flag", ["--sample-ppm", "--reference-ppm", "--noisy-ppm",
                                  "--reconstruct-ppm"])
def test_a_png_picture_without_pillow_is_refused_before_the_run(flag, tmp_path, capsys,
                                                                 monkeypatch, no_work):
    monkeypatch.setitem(sys.modules, "PIL", None)  # ``import PIL`` now raises ImportError
    value = str(tmp_path / "grid.PNG")  # the run wrote it only after training, and failed
    code, err = fail(["diffusion", f"{flag}={value}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: {flag}: got '{value}'; expected a "
                              f"path ending in .ppm or .pgm (writing .png needs Pillow: pip "
                              f"install Pillow)\n")
    name, ppm = flag[2:].replace("-", "_"), str(tmp_path / "grid.ppm")  # PPM needs nothing
    assert getattr(cli.DIFFUSION.parse((), {name: ppm}), name) == ppm


def test_an_output_files_ending_is_matched_in_any_case(tmp_path):
    path = str(tmp_path / "grid.PPM")  # save_grid reads the ending in any case too
    assert cli.DIFFUSION.parse((), {"sample_ppm": path}).sample_ppm == path


@pytest.mark.parametrize("cache, expected", [
    ("afile", "a directory for the cached classifiers (this is a file)"),
    ("afile/classifiers", "a path inside a folder; {tmp_path}/afile is a file")])
def test_an_evaluate_cache_that_cannot_be_a_folder_is_refused_before_training(
        cache, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli.EVALUATE, "_run", lambda config: pytest.fail("ran with bad flags"))
    (tmp_path / "afile").write_text("")
    value = str(tmp_path / cache)
    code, err = fail(["evaluate", f"--samples={tmp_path}", f"--cache={value}"], capsys)
    assert (code, err) == (2, f"minilean evaluate: error: --cache: got '{value}'; expected "
                              f"{expected.format(tmp_path=tmp_path)}\n")


def test_an_unknown_command_is_a_one_line_error(capsys):
    code, err = fail(["difusion", "--steps=3"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("minilean: error: no command 'difusion'; expected one of diffusion, ")
    assert err.endswith("(did you mean diffusion?)\n")


@pytest.mark.parametrize("argv, expected", [
    (["data", "dowload", "--cifar10"], "minilean data: error: no command 'dowload'; expected one "
                                       "of convert, download (did you mean download?)"),
    (["data", "convert", "imagefolder", "--input=in"],
     "minilean data convert: error: no command 'imagefolder'; expected one of image-folder "
     "(did you mean image-folder?)"),
    (["data", "convert", "--input=in"], "minilean data convert: error: got the flag "
                                        "'--input=in' before a command; expected one of "
                                        "image-folder first"),
    (["--steps=3"], "minilean: error: got the flag '--steps=3' before a command; expected one "
                    "of diffusion, evaluate, proofs, vae, vqvae, gan, autoencoder, mae, data "
                    "first"),
])
def test_a_word_that_names_no_command_of_its_group_is_a_one_line_error(argv, expected, capsys):
    """fire would print its usage block (several lines, naming image_folder) instead."""
    assert fail(argv, capsys) == (2, expected + "\n")


@pytest.mark.parametrize("argv, name", [
    (["--steps=1", "--cpu", "--steps", "2"], "steps"),
    (["--image-size=16", "--image_size=16"], "image-size"),  # fire reads both as image_size
    (["--noisy-ppm=a.ppm", "--noisy-ppm=b.ppm"], "noisy-ppm"),  # with =, --no... is no negation
    (["--noisy-ppm", "--noisy-ppm"], "noisy-ppm"),  # a flag's own name is no negation either
])
def test_a_flag_given_twice_is_a_one_line_error(argv, name, capsys):
    code, err = fail(["diffusion", *argv], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --{name} is given more than once; "
                              f"expected each flag once\n")


def test_a_flag_given_twice_is_named_with_its_command_path(capsys):
    assert fail(["data", "convert", "image-folder", "--x=a", "--x=b"], capsys) == (
        2, "minilean data convert image-folder: error: --x is given more than once; expected "
           "each flag once\n")


@pytest.mark.parametrize("argv", [["--progress", "--noprogress"], ["--noprogress", "--progress"],
                                  ["--noprogress", "--progress=false"],
                                  ["--noprogress", "--steps=1", "--noprogress"]])
def test_a_boolean_given_in_both_spellings_is_given_twice(argv, capsys, no_work):
    code, err = fail(["diffusion", *argv], capsys)
    assert (code, err) == (2, "minilean diffusion: error: --progress is given more than once; "
                              "expected each flag once\n")


def test_a_flag_named_no_something_is_not_read_as_a_negation(no_work, monkeypatch):
    """--noisy-ppm takes a value, so fire (and the repeat check) keep its name."""
    seen = {}
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: seen.update(vars(config)))
    main(["diffusion", "--noisy-ppm", "a.ppm", "--noprogress"])
    assert seen["noisy_ppm"] == "a.ppm" and seen["progress"] is False


NO_STATEMENT = ("minilean proofs: error: --name: got 'no such theorem'; expected a text that "
                "some statement's name contains, ignoring case (see the names with no --name)\n")


def test_proofs_matching_nothing_is_a_one_line_error(capsys):
    """A flag's value that matches nothing: exit 2, as any bad flag value (it was 1)."""
    code, err = fail(["proofs", "--name=no such theorem"], capsys)
    assert (code, err) == (2, NO_STATEMENT)


@pytest.mark.parametrize("status", [0, 1])
def test_proofs_exit_with_the_runners_status(status, monkeypatch):
    """1 when a statement fails: a script or CI sees the failure."""
    runner = importlib.import_module("proofs.runner")
    monkeypatch.setattr(runner, "main", lambda name: status)
    if status:
        with pytest.raises(SystemExit) as exit_info:
            main(["proofs"])
        assert exit_info.value.code == status
    else:
        assert main(["proofs"]) is None


@pytest.mark.parametrize("package", ["hypothesis", "mpmath"])
def test_proofs_without_the_test_extra_are_a_one_line_error(package, monkeypatch, capsys):
    """The README's first set-up command (pip install -e .) brings neither: a traceback of 45
    lines said so."""
    for module in [name for name in sys.modules if name.split(".")[0] == "proofs"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, package, None)  # what an import finds for a missing one
    assert fail(["proofs"], capsys) == (
        1, f"minilean proofs: error: the proofs need {package}: pip install -e \".[test]\"\n")


def test_proofs_are_found_with_the_checkout_off_the_import_path(monkeypatch, capsys):
    """Run from another directory, ``python -m minilean proofs`` has the package but not the
    checkout beside it on sys.path: the command adds it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path
                                      if os.path.abspath(entry or ".") != root])
    for module in [name for name in sys.modules if name.split(".")[0] == "proofs"]:
        monkeypatch.delitem(sys.modules, module)
    code, err = fail(["proofs", "--name=no such theorem"], capsys)
    assert (code, err) == (2, NO_STATEMENT)
    assert sys.modules["proofs.runner"].__file__.startswith(root)


def test_main_reads_the_words_after_the_program_name(monkeypatch, capsys, no_work):
    monkeypatch.setattr(sys, "argv", ["minilean", "diffusion", "--steps=0"])
    assert fail(None, capsys) == (2, "minilean diffusion: error: --steps: got 0; expected an "
                                     "integer >= 1\n")


# PAGER= (empty) names no pager: fire would search for less
@pytest.mark.parametrize("user_pager, used", [(None, "cat"), ("", "cat"), ("more", "more")])
def test_help_on_a_terminal_goes_through_cat_unless_the_user_names_a_pager(
        user_pager, used, monkeypatch, capsys):
    """fire pages help on a terminal through $PAGER, else less, which waits for a key."""
    from fire.console import console_io
    pagers = []

    class Pager:  # records the shell command fire pages through
        def __init__(self, command, **options):
            if options.get("shell"):
                pagers.append(command)

        def communicate(self, input):
            pass

        def wait(self):
            pass

    monkeypatch.setattr(console_io, "IsInteractive", lambda **options: True)
    monkeypatch.setattr(console_io.subprocess, "Popen", Pager)
    monkeypatch.setattr(console_io.signal, "signal", lambda *args: None)
    if user_pager is None:
        monkeypatch.delenv("PAGER", raising=False)
    else:
        monkeypatch.setenv("PAGER", user_pager)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and pagers == [used]


def test_evaluate_refuses_more_builtin_reference_images_than_memory_holds(tmp_path, capsys):
    """Scored against the built-in shapes, --n-eval held-out images are generated (and made
    float32) in memory at once: a huge one was a MemoryError in NumPy's words, or, below what
    the system refuses outright, an allocation that filled the machine. The cap of --n-total's
    built-in rows applies, before anything is generated or trained."""
    numpy.save(tmp_path / "s.npy", numpy.zeros((4, 3, 16, 16), numpy.uint8))
    cache = tmp_path / "classifiers"
    code, err = fail(["evaluate", "--cpu", f"--samples={tmp_path / 's.npy'}",
                      "--n-eval=100000000000", f"--cache={cache}"], capsys)
    assert (code, err) == (2, "minilean evaluate: error: --n-eval: got 100000000000; expected "
                              "at most 1398101 for held-out images of the built-in shapes at "
                              "16x16, as float32 (generated in memory at once: 100000000000 "
                              "would take 286,102.3 GiB, above the cap of 4 GiB)\n")
    assert not cache.exists()


def test_dash_h_shows_the_help_as_dash_dash_help_does(capsys):
    main(["diffusion", "-h"])
    assert capsys.readouterr().out.startswith("usage: python -m minilean diffusion "
                                              "[--flag=value ...]\n")
    with pytest.raises(SystemExit) as exit_info:  # fire's own help of the commands
        main(["-h"])
    assert exit_info.value.code in (0, None) and "error" not in capsys.readouterr().err


def test_a_command_declaring_a_flag_in_two_groups_is_refused():
    """The later group's flag would replace the earlier's unsaid: its default and checks too."""
    groups = [FlagGroup("a", [Flag("n", 1, "n")]),
              FlagGroup("b", [Flag("n", 2, "n")])]
    with pytest.raises(ValueError, match="^command 'x' declares a flag twice$"):
        Command("x", "summary", lambda config: None, groups)


@pytest.mark.parametrize("error, line", [
    (MemoryError("Unable to allocate 71.5 GiB for an array with shape (100000000, 3)"),
     "Unable to allocate 71.5 GiB for an array with shape (100000000, 3)"),
    # without words: named by its kind
    (ValueError(), "ValueError"), (OSError(), "OSError"),
    # a library's message may hold line breaks and runs of spaces (a NumPy shape error, a
    # JSON position): the command's error is still one line
    (ValueError("operands could not be broadcast\n  together with shapes (2,)  (3,)"),
     "operands could not be broadcast together with shapes (2,) (3,)")])
def test_an_error_of_the_run_is_one_line(error, line, monkeypatch, capsys):
    def fails(config):
        raise error

    monkeypatch.setattr(cli.DIFFUSION, "_run", fails)
    code, err = fail(["diffusion", "--cpu"], capsys)
    assert (code, err) == (1, f"minilean diffusion: error: {line}\n")


@pytest.mark.parametrize("flag, expected", [
    ("--n-total=100000000000", "--n-total: got 100000000000; expected at most 5534751 for "
                               "--dataset builtin at 16x16 (generated in memory at once: "
                               "100000000000 rows would take 72,270.6 GiB, above the cap of 4 "
                               "GiB)"),
    # found when sampling, after the training, the lack of memory would lose the run
    ("--n-samples=10000000000", "--n-samples: got 10000000000; expected at most 1398101 for "
                                "images of shape (3, 16, 16) (sampled in memory at once: "
                                "10000000000 would take 28,610.2 GiB, above the cap of 4 GiB)")])
def test_a_size_no_memory_holds_is_a_flag_error_before_the_run(tmp_path, capsys, flag,
                                                               expected):
    out = tmp_path / "run"
    code, err = fail(["diffusion", "--cpu", flag, "--steps=1", f"--out={out}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: {expected}\n")
    assert not out.exists()


def test_help_lists_commands_and_every_flag_with_default(capsys):
    main(["diffusion", "--help"])
    text = capsys.readouterr().out
    for flag in cli.DIFFUSION.flags.values():
        assert flag.option in text
    steps = cli.DIFFUSION.flags["steps"].default
    assert f"--steps=INT    default: {steps}" in text and "optimizer steps" in text
    assert cli.DIFFUSION.details in text and "\nsampling flags:\n" in text
    result = subprocess.run([sys.executable, "-m", "minilean", "--help"], capture_output=True,
                            text=True, env={**os.environ, "PAGER": "cat"})
    assert result.returncode == 0
    for name in ("diffusion", "evaluate", "proofs", "data"):
        assert name in result.stdout + result.stderr  # fire writes its help to stderr
    assert cli.DIFFUSION.summary in result.stdout + result.stderr
    from minilean.data.commands import DataCommands  # a group's help: its docstring's
    assert inspect.getdoc(DataCommands).splitlines()[0] in result.stdout + result.stderr


def test_a_bad_flag_from_the_shell_has_no_traceback():
    result = subprocess.run([sys.executable, "-m", "minilean", "diffusion", "--stepz=3"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


@pytest.mark.parametrize("words", [["evaluate", "--help"], [], ["data"], ["data", "convert"]])
def test_a_closed_stdout_ends_the_command_quietly_as_a_pipelines_writer(words):
    """``python -m minilean ... | head``: with the reader gone, a command ended in "error:
    [Errno 32] Broken pipe" and exit 1, a finished run reported as failed; the usage fire
    prints for no command or a group's name alone ended in a traceback. Now it ends as a
    shell's writers do: no word, 128 + SIGPIPE."""
    reader, writer = os.pipe()
    os.close(reader)  # before the command starts: its first line meets a closed pipe
    try:
        result = subprocess.run([sys.executable, "-m", "minilean", *words],
                                stdout=writer, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (141, "")


def test_ctrl_c_while_the_command_line_is_imported_is_one_line(monkeypatch, capsys):
    """The imports take a moment before the command's own handling starts: a Ctrl-C then
    printed a KeyboardInterrupt traceback."""
    import runpy

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "main", interrupted)
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("minilean", run_name="__main__")
    assert stop.value.code == 130 and capsys.readouterr().err == "minilean: interrupted\n"


# ``python -m minilean`` as the interpreter runs it (sys.argv[0] is "-m" while runpy finds the
# module), with a Ctrl-C raised as the package's import looks for minilean.autograd
CTRL_C_WHILE_THE_PACKAGE_IS_IMPORTED = """
import runpy, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "minilean.autograd":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
sys.argv = ["-m", "diffusion", "--steps=2"]
runpy._run_module_as_main("minilean")
"""


def test_ctrl_c_while_the_package_is_imported_by_dash_m_is_one_line():
    """``python -m minilean`` imports the package (half a second of imports) before it runs
    minilean/__main__.py: a Ctrl-C then printed a KeyboardInterrupt traceback, exit -2."""
    result = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_THE_PACKAGE_IS_IMPORTED],
                            capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (130, "minilean: interrupted\n")
    # imported by a program of its own, the Ctrl-C is that program's to handle
    imported = CTRL_C_WHILE_THE_PACKAGE_IS_IMPORTED.replace(
        'runpy._run_module_as_main("minilean")',
        'sys.argv = ["program"]\ntry:\n    import minilean\nexcept KeyboardInterrupt:\n'
        '    print("caught")')
    result = subprocess.run([sys.executable, "-c", imported], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "caught\n", "")


# A Ctrl-C that lands in code a string ``exec`` runs (a dataclass made as SciPy is imported
# lazily, at gelu's first use), at each place that ends the process on one; run as
# ``python -m`` runs a module, the only way the interpreter's own exit code is seen
CTRL_C_IN_A_STRING_EXEC = {
    "package import": """
import sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "minilean.autograd":
            exec("raise KeyboardInterrupt", {})
sys.meta_path.insert(0, CtrlC())
sys.argv = ["-m"]
import minilean
""",
    "command line import": """
import runpy
from minilean import cli
def main():
    exec("raise KeyboardInterrupt", {})
cli.main = main
runpy.run_module("minilean", run_name="__main__")
""",
    "command": """
from minilean import cli
cli.DIFFUSION._run = lambda config: exec("raise KeyboardInterrupt", {})
cli.main(["diffusion", "--cpu"])
"""}


@pytest.mark.parametrize("where", list(CTRL_C_IN_A_STRING_EXEC))
def test_ctrl_c_in_a_string_exec_exits_130_under_dash_m(where, tmp_path):
    """CPython marks a KeyboardInterrupt that leaves a string ``exec`` unhandled even when it
    is caught, and under ``python -m`` ended the process by SIGINT (-2), not with 130."""
    (tmp_path / "interrupted_in_exec.py").write_text(CTRL_C_IN_A_STRING_EXEC[where])
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-m", "interrupted_in_exec"], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": path})
    who = "minilean diffusion" if where == "command" else "minilean"
    assert (result.returncode, result.stderr) == (130, f"{who}: interrupted\n")


def test_a_path_that_is_not_utf8_is_printed_on_a_strict_utf8_stdout(monkeypatch, tmp_path):
    """A file name of bytes that are not UTF-8 (held by Python as surrogates) met a strict UTF-8
    stdout (a UTF-8 locale): the finished run's "wrote" line ended it with "'utf-8' codec
    can't encode character" and exit code 1. It is written as stderr writes it."""
    import io
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", errors="strict"))
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/run\xff")  # "/run\udcff"
    monkeypatch.setattr(cli.DIFFUSION, "_run", lambda config: print(f"wrote {config.out}"))
    main(["diffusion", "--cpu", f"--out={out}"])
    sys.stdout.flush()
    assert raw.getvalue() == f"wrote {tmp_path}/run\\udcff\n".encode()


class CtrlCLandsInDel:
    """An object whose ``__del__`` is where a Ctrl-C lands: Python cannot raise it there."""

    def __del__(self):
        raise KeyboardInterrupt


def test_a_ctrl_c_python_could_not_raise_still_ends_the_command_interrupted(monkeypatch,
                                                                            capsys):
    """A Ctrl-C landing in a garbage collector callback (hypothesis's, all through the proofs),
    a weak reference's callback or a ``__del__`` cannot leave it: Python printed "Exception
    ignored in" with a traceback and dropped it, and the command ran to its end, exit 0."""
    hook = sys.unraisablehook

    def run(config):
        CtrlCLandsInDel()  # made and deleted at once
    monkeypatch.setattr(cli.DIFFUSION, "_run", run)
    assert fail(["diffusion", "--cpu"], capsys) == (130, "minilean diffusion: interrupted\n")
    assert sys.unraisablehook is hook  # put back


def test_declared_groups_and_guarded_functions(capsys):
    group = FlagGroup("g", [Flag("width", 4, "w", low=1), Flag("name", None, "n")])
    with pytest.raises(KeyError, match="no flag"):
        group.with_defaults(height=3)
    assert group.with_defaults(width=8).flags[0].default == 8

    @flag_checked(Flag("count", 2, "how many"), Flag("label", None, "a name"),
                  Flag("verbose", False, "say more"))
    def tool(count=2, label=None, verbose=False):
        """A tool."""
        print(f"ran {count} {label} {verbose}")

    guarded = cli.guard(tool, "tool")
    guarded(count="3", verbose="true")
    assert capsys.readouterr().out == "ran 3 None True\n"
    with pytest.raises(SystemExit) as exit_info:
        guarded(cnt=3)
    assert exit_info.value.code == 2 and "did you mean --count?" in capsys.readouterr().err
    command = Command("c", "s", run=lambda config: None, groups=[
        FlagGroup("g", [Flag("path", None, "p", required=True)])])
    with pytest.raises(cli.FlagError, match="--path: missing"):
        command.parse((), {})


@pytest.mark.parametrize("below", ["", "run"], ids=["a file", "below a file"])
def test_an_out_that_is_a_file_or_lies_below_one_is_refused_before_the_run(below, tmp_path,
                                                                           capsys, no_work):
    afile = tmp_path / "afile"
    afile.write_text("kept")
    value = str(afile / below) if below else str(afile)
    code, err = fail(["diffusion", f"--out={value}"], capsys)
    expected = f"a path inside a folder; {afile} is a file" if below else \
        "a directory for the run's files (this is a file)"
    assert (code, err) == (2, f"minilean diffusion: error: --out: got '{value}'; expected "
                              f"{expected}\n")
    assert afile.read_text() == "kept"


@pytest.mark.parametrize("name", ["", "config.json", "checkpoints/last.npz", "loss.svg",
                                  "images/samples.ppm", ".lock"])
def test_a_written_file_flag_may_not_name_the_run_directory_or_its_records(name, tmp_path,
                                                                           capsys, no_work):
    """A TrainLog written over config.json would leave a run that cannot be resumed; one
    written onto the run directory itself would fail only after the whole run."""
    out = tmp_path / "run"
    value = str(out / name) if name else str(out)
    code, err = fail(["diffusion", "--cpu", f"--out={out}", f"--log={value}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --log: got '{value}'; expected a "
                              f"path other than the run directory {out} and its records "
                              f"(config.json, metrics.jsonl, summary.json, samples.npy, "
                              f"checkpoints, loss.svg, images, .lock)\n")
    assert not out.exists()


def test_two_written_file_flags_may_not_name_the_same_file(tmp_path, capsys, no_work):
    """The TrainLog and the noisy grid in one file: one would replace the other."""
    out, shared = tmp_path / "run", tmp_path / "same.ppm"
    code, err = fail(["diffusion", "--cpu", f"--out={out}", f"--log={shared}",
                      f"--noisy-ppm={tmp_path}/../{tmp_path.name}/same.ppm"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --noisy-ppm: got "
                              f"'{tmp_path}/../{tmp_path.name}/same.ppm'; expected a path other "
                              f"than --log's (both would write it, the later over the "
                              f"earlier)\n")
    assert not out.exists() and not shared.exists()


@pytest.mark.parametrize("name", ["x.npy", "link.json", "hard.json", "linked/x.npy"])
def test_a_written_file_may_not_be_the_data_the_run_reads(name, tmp_path, capsys, no_work):
    """--log on the --x array would replace the training data at the end of the run; so
    would a link to it, or a path through a linked folder (compared as text, they passed)."""
    data = tmp_path / "x.npy"
    numpy.save(data, numpy.zeros((4, 3, 16, 16), numpy.uint8))
    (tmp_path / "link.json").symlink_to(data)
    os.link(data, tmp_path / "hard.json")
    (tmp_path / "linked").symlink_to(tmp_path)
    before = data.read_bytes()
    log = tmp_path / name
    code, err = fail(["diffusion", "--cpu", f"--out={tmp_path / 'run'}", f"--x={data}",
                      f"--log={log}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --log: got '{log}'; expected a path "
                              f"other than --x's (the run reads its data there; writing it "
                              f"would replace them)\n")
    assert data.read_bytes() == before


def test_a_path_written_after_the_equals_sign_has_its_tilde_expanded(monkeypatch, tmp_path):
    """The help writes flags --name=value, and the shell leaves a ~ after "=" alone: the run
    directory of --out=~/runs/first is the home's, not a folder named ~ here."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config = cli.DIFFUSION.parse((), {"out": "~/runs/first", "x": "~/x.npy"})
    assert (config.out, config.x) == (f"{tmp_path}/runs/first", f"{tmp_path}/x.npy")


@pytest.mark.parametrize("argv, flag, value", [
    (["diffusion"], "--out", "none"), (["diffusion"], "--out", "None"),
    (["vae"], "--out", "off"), (["gan"], "--out", "null"),
    (["evaluate", "--samples=s.npy"], "--cache", "none"),
    (["data", "download", "--cifar10"], "--root", "false"),
    (["data", "convert", "image-folder", "--input=in"], "--x-output", "none"),
])
def test_a_path_flag_that_cannot_be_none_refuses_the_none_words(argv, flag, value, tmp_path,
                                                                 monkeypatch, capsys):
    """Where a flag may be none, none/null/false/off (fire's None too) say "no file"; where it
    may not, they are a flag error, not a folder or file of that name made in the working
    directory (``--out=none`` made ./none)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Command, "run", lambda self, config: pytest.fail("ran with bad flags"))
    code, err = fail(argv + [f"{flag}={value}"], capsys)
    shown = None if value == "None" else value  # fire reads None as Python's None
    command = " ".join(word for word in argv if not word.startswith("--"))
    assert (code, err) == (2, f"minilean {command}: error: {flag}: got {shown!r}; expected a "
                              f"file or directory path ({flag} cannot be none; write ./{value} "
                              f"for a path of that name)\n")
    assert not any(tmp_path.iterdir())


def test_data_download_refuses_a_root_that_is_a_file_before_downloading(tmp_path, capsys,
                                                                        monkeypatch):
    from minilean.data import cifar10
    monkeypatch.setattr(cifar10, "prepare", lambda *args: pytest.fail("downloaded"))
    root = tmp_path / "afile"
    root.write_text("")
    code, err = fail(["data", "download", "--cifar10", f"--root={root}"], capsys)
    assert (code, err) == (2, f"minilean data download: error: --root: got '{root}'; expected "
                              f"a directory for the archive and the arrays (this is a file)\n")


@pytest.mark.parametrize("spelling", ["image-folder", "image_folder"])
def test_fire_takes_both_spellings_of_image_folder(spelling, capsys):
    """The docs write image-folder; fire lists the method's own name, image_folder, in the
    group's help, and reads a - as a _: both are the one command."""
    code, err = fail(["data", "convert", spelling, "--input=in", "--x-output=o.txt"], capsys)
    assert (code, err) == (2, "minilean data convert image-folder: error: --x-output: got "
                              "'o.txt'; expected a path ending in .npy\n")


def test_the_help_of_ext_names_what_it_takes(capsys):
    from minilean.data.commands import ConvertCommands
    main(["data", "convert", "image-folder", "--help"])
    out = capsys.readouterr().out
    summary = ConvertCommands.image_folder.__doc__.strip().splitlines()[0]  # its first line
    assert out.startswith(f"usage: python -m minilean data convert image-folder [--flag=value "
                          f"...]\n\n{summary}\n")
    assert "--ext=STR    default: '.png,.jpg,.jpeg,.bmp,.webp'" in out
    assert "comma-separated, e.g. .png,.jpg; a text\n" in out


def guarded_commands(path, component):
    """(command-line path, Command) of each function below a fire group, guarded as the CLI
    guards it (``cli.guard``)."""
    if callable(component) and hasattr(component, "flags"):
        return [(path, cli.command_from_function(component, " ".join(path)))]
    return [found for member in dir(component) if not member.startswith("_")
            for found in guarded_commands(path + [member.replace("_", "-")],
                                          getattr(component, member))]


def every_boolean_flag():
    """(path, flags it needs, Flag) for every boolean flag of every command."""
    commands = [([command.name], command) for command in cli.COMMANDS]
    for name, target in cli.GROUPS.items():
        commands += guarded_commands([name], cli._load(target)())
    needed = {"evaluate": ["--samples=s.npy"],
              "data convert image-folder": ["--input=in", "--x-output=x.npy"]}
    return [pytest.param(path, needed.get(" ".join(path), []) + (
        ["--device=cpu"] if "device" in command.flags else []), flag,
                         id=f"{' '.join(path)} {flag.option}")
            for path, command in commands for flag in command.flags.values()
            if flag.kind is bool]


@pytest.mark.parametrize("path, needed, flag", every_boolean_flag())
def test_every_boolean_flag_is_turned_off_as_its_help_says(path, needed, flag, monkeypatch,
                                                           capsys):
    """``Flag.allowed`` (and so --help and the README) offers --noNAME: it sets NAME false."""
    assert flag.negation in flag.allowed()
    seen = []
    monkeypatch.setattr(Command, "run", lambda self, config: seen.append(config))
    main(path + [flag.negation, *needed])
    assert getattr(seen[0], flag.name) is False and flag.name in seen[0].given_flags


@pytest.mark.parametrize("path, needed, flag", every_boolean_flag())
@pytest.mark.parametrize("dash", ["-", "_"])
def test_a_boolean_turned_off_as_no_dash_name_is_named_as_typed(path, needed, flag, dash,
                                                                monkeypatch, capsys):
    """fire reads --no-NAME as a flag called "_NAME"; the error names what was typed."""
    monkeypatch.setattr(Command, "run", lambda self, config: pytest.fail("ran"))
    name = flag.option[2:]
    code, err = fail(path + [f"--no{dash}{name}", *needed], capsys)
    assert (code, err) == (2, f"minilean {' '.join(path)}: error: --no-{name}: no such flag; "
                              f"expected --no{name} or --{name}=false (see python -m minilean "
                              f"{' '.join(path)} --help)\n")


@pytest.mark.parametrize("argv, expected", [
    (["--no-steps"], "--no-steps: expected a flag of 'diffusion' (did you mean --steps? see "
                     "python -m minilean diffusion --help)"),
    (["--no-l"], "--no-l: expected a flag of 'diffusion' (did you mean --lr? see "),
    # --no-NAME of another command's flag is named so, as --NAME is, not taken for a near name
    (["--no-n-eval"], "--no-n-eval: expected a flag of 'diffusion' (only evaluate, vae, vqvae, "
                      "autoencoder, mae have it; see python -m minilean diffusion --help)"),
    (["--noisy-ppm"], "--noisy-ppm: got no value; expected a file or directory path or none"),
    (["--no-progress", "--no-progress"], "--no-progress is given more than once"),
    # fire reads a valueless --noNAME as NAME=False: the False is no value the user gave
    (["--nofoo"], "--nofoo: expected a flag of 'diffusion' (no such flag; see python -m "
                  "minilean diffusion --help)"),
    (["--nostepz", "--steps=1"], "--nostepz: expected a flag of 'diffusion' (did you mean "
                                 "--steps? see python -m minilean diffusion --help)"),
    # the same False for a flag that takes a value: no value to call "False"
    (["--nosteps"], "--nosteps (or --steps=False): --steps is no boolean to turn off; "
                    "expected --steps=VALUE, an integer >= 1"),
])
def test_other_no_spellings_are_named_as_typed(argv, expected, capsys, no_work):
    code, err = fail(["diffusion", *argv], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err
