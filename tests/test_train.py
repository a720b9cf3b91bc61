"""The shared training loop and the diffusion command end to end, on tiny CPU runs."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import types
import weakref

import numpy
import pytest

import minilean as ml
from minilean import atomic, cli, interrupts
from minilean.cli import main
from minilean.data import Loader, read_metrics, read_pnm
from minilean.nn import Linear
from minilean.optim import SGD, load_checkpoint, save_checkpoint
from minilean.data import RunDirectory, runlog
from minilean.train.loop import (FILE_FLAGS, TrainState, TrainingDiverged, check_samples_fit,
                                 default_interval, train, write_trainlog)

TINY = ["--cpu", "--n-total=32", "--batch-size=4", "--hidden-c=4", "--T=10",
        "--n-samples=4", "--log-every=1", "--noprogress"]


def run_cli(*argv):
    main(["diffusion", *TINY, *argv])


def losses(run_dir):
    return [(record["step"], record["loss"]) for record in
            read_metrics(os.path.join(run_dir, "metrics.jsonl"))]


def test_a_few_steps_write_every_artifact(tmp_path):
    out, log = tmp_path / "run", tmp_path / "trainlog.json"
    run_cli("--steps=3", f"--out={out}", "--evaluate=false", f"--log={log}",
            f"--reference-ppm={tmp_path / 'ref.ppm'}", f"--noisy-ppm={tmp_path / 'noisy.ppm'}",
            f"--reconstruct-ppm={tmp_path / 'rec.ppm'}", "--reconstruct-step=4")
    for name in ("config.json", "metrics.jsonl", "loss.svg", "summary.json", "samples.npy",
                 "images/samples.ppm", "checkpoints/last.npz"):
        assert (out / name).is_file(), name
    grid = read_pnm(out / "images" / "samples.ppm")
    assert grid.dtype == numpy.uint8 and grid.shape[-1] == 3        # a readable RGB image
    for name in ("ref.ppm", "noisy.ppm", "rec.ppm"):
        assert read_pnm(tmp_path / name).size > 0
    assert [step for step, _ in losses(out)] == [1, 2, 3]
    assert all(numpy.isfinite(loss) for _, loss in losses(out))
    assert json.loads(log.read_text())["steps"] == [1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["sampler"] == cli.DIFFUSION.flags["sampler"].default
    checkpoint = load_checkpoint(str(out / "checkpoints" / "last.npz"))
    assert checkpoint["step"] == 3 and set(checkpoint) >= {"modules", "optimizers", "emas", "rng"}


@pytest.mark.parametrize("arch, sampler", [("residual", "ddpm"), ("unet", "pf-euler")])
def test_other_architectures_and_samplers_run(tmp_path, arch, sampler):
    run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false", f"--arch={arch}",
            f"--sampler={sampler}", "--schedule=linear")
    assert numpy.load(tmp_path / "samples.npy").shape == (4, 3, 16, 16)


def assert_same_run(split, whole, steps):
    """The resumed run ``split`` logged, saved and sampled what ``whole`` did, bit for bit."""
    assert losses(split) == losses(whole) and len(losses(whole)) == steps
    first = load_checkpoint(str(whole / "checkpoints" / "last.npz"))["modules"]["model"]
    second = load_checkpoint(str(split / "checkpoints" / "last.npz"))["modules"]["model"]
    for name in first:
        numpy.testing.assert_array_equal(first[name], second[name])
    numpy.testing.assert_array_equal(numpy.load(whole / "samples.npy"),
                                     numpy.load(split / "samples.npy"))


def test_resume_repeats_an_uninterrupted_run(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_cli("--steps=4", f"--out={whole}", "--evaluate=false", "--checkpoint-every=2")
    # the cosine learning rate of the split run must end where the whole run's does
    run_cli("--steps=2", f"--out={split}", "--evaluate=false", "--lr-decay-steps=4")
    run_cli("--steps=4", f"--resume={split}", "--evaluate=false")
    assert_same_run(split, whole, steps=4)


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(tmp_path, monkeypatch,
                                                                     capsys):
    """Interrupted at step 2 of 4, before the checkpoint at step 4: config.json and two metric
    lines are there, no checkpoint. The resume starts again from the seeded initialisation
    and ends as an uninterrupted run does."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_cli("--steps=4", f"--out={whole}", "--evaluate=false", "--checkpoint-every=4")
    batches = Loader.batches

    def interrupted_after_two(self, start=0):
        for step, batch in enumerate(batches(self, start), start=start):
            if step == 2:
                raise KeyboardInterrupt
            yield batch

    with monkeypatch.context() as patch:
        patch.setattr(Loader, "batches", interrupted_after_two)
        code, _ = _exit_and_error(["diffusion", *TINY, "--steps=4", f"--out={split}",
                                   "--evaluate=false", "--checkpoint-every=4"], capsys)
    assert code == 130 and [step for step, _ in losses(split)] == [1, 2]
    assert not (split / "checkpoints" / "last.npz").exists()
    run_cli("--steps=4", f"--resume={split}", "--evaluate=false")
    assert "holds no checkpoint yet" in capsys.readouterr().err
    assert_same_run(split, whole, steps=4)


def test_a_folder_where_the_checkpoint_belongs_is_named_and_the_metrics_stay(tmp_path, capsys):
    """It read as "no checkpoint yet": the resume dropped every metrics line, then failed at
    its first save."""
    run = tmp_path / "run"
    run_cli("--steps=2", f"--out={run}", "--evaluate=false")
    checkpoint = run / "checkpoints" / "last.npz"
    checkpoint.unlink()
    checkpoint.mkdir()
    metrics = (run / "metrics.jsonl").read_bytes()
    code, err = _exit_and_error(["diffusion", *TINY, "--steps=4", f"--resume={run}",
                                 "--evaluate=false"], capsys)
    assert (code, err) == (1, f"minilean diffusion: error: {checkpoint} is not a file; expected "
                              f"the run's checkpoint there (or nothing, for a run stopped "
                              f"before its first)\n")
    assert (run / "metrics.jsonl").read_bytes() == metrics and checkpoint.is_dir()


def _ticking(clock, interrupt_at=None):
    """A ``Loader.batches`` that moves ``clock`` 10 s on with each batch it hands out (the
    run's only passing time), and stops with Ctrl-C instead of the batch of step
    ``interrupt_at``."""
    batches = Loader.batches

    def ticking(self, start=0):
        for step, batch in enumerate(batches(self, start), start=start + 1):
            if step == interrupt_at:
                raise KeyboardInterrupt
            clock.now += 10.0
            yield batch
    return ticking


def test_a_resumed_runs_seconds_count_every_part_of_it(tmp_path, monkeypatch, capsys):
    """Stopped at step 4 of 4 after the checkpoint at step 2 (steps 1-3 took 10 s each), then
    resumed: steps 3 and 4 are trained again, and the seconds go on from the 20 of the line at
    the checkpoint's step, as an uninterrupted run's do (summary.json said 20 s, the resume's
    alone, below the 30 s the first part had logged). A resume that only samples again keeps
    them (it said 0)."""
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(runlog, "time", types.SimpleNamespace(time=lambda: clock.now))
    split = ["--steps=4", "--evaluate=false", "--checkpoint-every=2"]
    with monkeypatch.context() as patch:
        patch.setattr(Loader, "batches", _ticking(clock, interrupt_at=4))
        code, _ = _exit_and_error(["diffusion", *TINY, *split, f"--out={tmp_path}"], capsys)
    first = [record["seconds"] for record in read_metrics(tmp_path / "metrics.jsonl")]
    assert code == 130 and first == [10.0, 20.0, 30.0]
    assert not (tmp_path / "summary.json").exists()

    def seconds():
        return ([record["seconds"] for record in read_metrics(tmp_path / "metrics.jsonl")],
                json.loads((tmp_path / "summary.json").read_text())["seconds"])
    monkeypatch.setattr(Loader, "batches", _ticking(clock))
    run_cli(*split, f"--resume={tmp_path}")
    assert seconds() == ([10.0, 20.0, 30.0, 40.0], 40.0) and 40.0 >= first[-1]
    run_cli(*split, f"--resume={tmp_path}")  # at its end: it samples again, no step trains
    assert seconds() == ([10.0, 20.0, 30.0, 40.0], 40.0)


def test_resume_refuses_to_change_the_model(tmp_path, capsys):
    run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false")
    with pytest.raises(SystemExit) as exit_info:
        main(["diffusion", "--steps=2", f"--resume={tmp_path}", "--arch=residual"])
    assert exit_info.value.code == 2
    assert "--arch: got 'residual'; expected 'unet'" in capsys.readouterr().err


def test_resume_refuses_the_run_of_another_command_and_keeps_it(tmp_path, capsys):
    """A diffusion run stopped before its first checkpoint: vae --resume would have trained a
    VAE with diffusion's flags and rewritten the run's config.json."""
    run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false")
    os.remove(tmp_path / "checkpoints" / "last.npz")
    assert json.loads((tmp_path / "config.json").read_text())["command"] == "diffusion"
    before = {name: (tmp_path / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    code, err = _exit_and_error(["vae", "--steps=1", f"--resume={tmp_path}", "--noprogress"],
                                capsys)
    assert (code, err) == (2, f"minilean vae: error: --resume: got '{tmp_path}'; expected a run "
                              f"of vae (this is a run of diffusion: continue it with diffusion "
                              f"--resume)\n")
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_another_commands_run_is_refused_as_the_flags_are_read(tmp_path, capsys, monkeypatch):
    """Before the command runs, and before the groups' checks read the other run's flags
    (mae's patch check would refuse this VAE run's --image-size 18 instead)."""
    monkeypatch.setattr(cli.MAE, "_run", lambda config: pytest.fail("ran another's run"))
    (tmp_path / "config.json").write_text(json.dumps({"command": "vae", "image_size": 18}))
    code, err = _exit_and_error(["mae", f"--resume={tmp_path}"], capsys)
    assert (code, err) == (2, f"minilean mae: error: --resume: got '{tmp_path}'; expected a run "
                              f"of mae (this is a run of vae: continue it with vae --resume)\n")


@pytest.mark.parametrize("make, expected", [
    (lambda path: path.write_text("[1, 2]"),
     "config.json is not a config minilean wrote (it holds a list, not a JSON object)"),
    (lambda path: path.write_text("{}"),
     "config.json is not a config minilean wrote (it lacks batch_size, checkpoint_every, cpu, "
     "cuda, dataset, device, fast_kernels, given_flags, image_size, log, log_every, lr, "
     "n_total, out, progress, resume, seed, steps, x, y, which every run saves)"),
    (lambda path: path.mkdir(), "no config.json there (is it a run directory?)")],
    ids=["list", "empty", "directory"])
def test_a_config_json_that_holds_no_run_is_a_one_line_error(tmp_path, capsys, make, expected):
    make(tmp_path / "config.json")
    code, err = _exit_and_error(["diffusion", f"--resume={tmp_path}"], capsys)
    assert (code, err) == (1, f"minilean diffusion: error: --resume {tmp_path}: {expected}\n")


@pytest.mark.parametrize("make, words", [(lambda path: None, "not found"),
                                         (lambda path: path.write_text("{}"),
                                          "is not a directory")], ids=["missing", "file"])
def test_resume_of_no_folder_is_a_bad_flag(tmp_path, capsys, make, words):
    """A mistyped --resume is found before any work and exits 2, as any bad flag value does."""
    run = tmp_path / "run"
    make(run)
    code, err = _exit_and_error(["vae", f"--resume={run}"], capsys)
    assert (code, err) == (2, f"minilean vae: error: --resume: got '{run}'; expected an existing "
                              f"run directory; {run} {words}\n")


def test_a_resumed_run_is_checked_on_its_own_flags_not_todays_defaults(tmp_path):
    """--hidden-c 1 is refused for the default --arch unet, not for the residual run being
    resumed (whose --arch is not given again)."""
    tiny = [flag for flag in TINY if not flag.startswith("--hidden-c=")]
    main(["diffusion", *tiny, "--steps=1", f"--out={tmp_path}", "--evaluate=false",
          "--arch=residual", "--hidden-c=1"])
    main(["diffusion", "--steps=2", f"--resume={tmp_path}", "--hidden-c=1", "--noprogress"])
    assert len(losses(tmp_path)) == 2


def test_resume_gives_flags_an_older_run_predates_their_defaults(tmp_path):
    """Nor does a run from before config.json recorded its command lose its resume: the keys
    saved since the first config.json (its command, --data-root, --threads, --prediction, the
    data's fingerprint) may be missing."""
    run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false")
    config_path = tmp_path / "config.json"
    saved = json.loads(config_path.read_text())
    for name in ("prediction", "command", "data_root", "threads", "data_fingerprint"):
        del saved[name]
    config_path.write_text(json.dumps(saved))
    run_cli("--steps=2", f"--resume={tmp_path}", "--evaluate=false")
    assert len(losses(tmp_path)) == 2
    resumed = json.loads(config_path.read_text())
    assert resumed["prediction"] == cli.DIFFUSION.flags["prediction"].default
    assert resumed["command"] == "diffusion"


@pytest.fixture
def default_stop_signals():
    """SIGTERM and SIGHUP left to their default, as a command finds them outside ``nohup``
    (under it, pytest itself ignores SIGHUP); put back as they were after the test."""
    before = {number: signal.signal(number, signal.SIG_DFL)
              for number in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


def _signalled_at(step_to_signal, signal_number):
    """A ``Loader.batches`` that sends this process ``signal_number`` as it hands out the
    batch of step ``step_to_signal + 1``, as ``kill`` from outside would."""
    batches = Loader.batches

    def signalled(self, start=0):
        for step, batch in enumerate(batches(self, start), start=start):
            if step == step_to_signal:
                if signal.getsignal(signal_number) == signal.SIG_DFL:  # it would end pytest too
                    pytest.fail(f"{signal.Signals(signal_number).name} would end the process")
                os.kill(os.getpid(), signal_number)
            yield batch
    return signalled


@pytest.mark.parametrize("stop, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_stops_a_run_as_ctrl_c_does_and_it_resumes(
        stop, code, tmp_path, monkeypatch, capsys, default_stop_signals):
    """SIGTERM (a batch system's stop) or SIGHUP (the terminal closed) at step 3 of 4: one
    line, exit 128 + the signal, the step-2 checkpoint whole, no temporary file, the handler
    given back; the resume ends as an uninterrupted run does."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_cli("--steps=4", f"--out={whole}", "--evaluate=false", "--checkpoint-every=2")
    with monkeypatch.context() as patch:
        patch.setattr(Loader, "batches", _signalled_at(2, stop))
        stopped = _exit_and_error(["diffusion", *TINY, "--steps=4", f"--out={split}",
                                   "--evaluate=false", "--checkpoint-every=2"], capsys)
    assert stopped == (code, f"minilean diffusion: stopped by {signal.Signals(stop).name}\n")
    assert signal.getsignal(stop) == signal.SIG_DFL
    assert load_checkpoint(str(split / "checkpoints" / "last.npz"))["step"] == 2
    assert not [name for _, _, names in os.walk(split) for name in names
                if atomic.TEMPORARY_NAME.fullmatch(name)]
    run_cli("--steps=4", f"--resume={split}", "--evaluate=false")
    assert_same_run(split, whole, steps=4)


def test_a_second_stop_signal_does_not_cut_the_unwinding_short(default_stop_signals):
    """SIGHUP (a terminal closed) while a command unwinds from SIGTERM is ignored: raised
    there, it would stop the cleanup half-way (a temporary file left behind)."""
    with cli._stop_signals():
        if signal.SIG_DFL in (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)):
            pytest.fail("SIGTERM or SIGHUP would end the process")  # pytest too
        with pytest.raises(cli.Stopped, match="^SIGTERM$"):
            try:
                signal.raise_signal(signal.SIGTERM)  # runs the handler before it returns
            finally:  # the unwinding
                signal.raise_signal(signal.SIGHUP)
    assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_a_command_run_outside_the_main_thread_runs_without_the_stop_signals(tmp_path):
    """Only the main thread may set a signal handler (elsewhere signal.signal raises
    ValueError, which would fail the command): a command run by another thread (a notebook's
    or a server's worker) runs as it is."""
    raised = []

    def run():
        try:
            run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false")
        except BaseException as error:  # noqa: BLE001  SystemExit too: the test reports it
            raised.append(error)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert raised == [] and [step for step, _ in losses(tmp_path)] == [1]


def test_a_stop_signal_the_parent_ignores_stays_ignored(tmp_path, monkeypatch):
    """Under ``nohup`` SIGHUP is ignored, so that a run outlives its terminal: it must not
    stop the run."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(Loader, "batches", _signalled_at(1, signal.SIGHUP))
            run_cli("--steps=3", f"--out={tmp_path}", "--evaluate=false")
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert [step for step, _ in losses(tmp_path)] == [1, 2, 3]


def _exit_and_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def _run_files(run_dir):
    return {name: (run_dir / name).read_bytes()
            for name in ("config.json", "metrics.jsonl", "checkpoints/last.npz")}


def test_a_new_run_never_overwrites_a_run(tmp_path, monkeypatch, capsys):
    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
    before = _run_files(tmp_path)
    from minilean.train import diffusion  # refused before any work: no data are loaded
    monkeypatch.setattr(diffusion, "load_dataset", lambda *args, **kwargs: pytest.fail(
        "the data were loaded for a run refused by its --out"))
    code, err = _exit_and_error(["diffusion", *TINY, "--steps=1", "--seed=5",
                                 f"--out={tmp_path}"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"--out: got '{tmp_path}'; expected a directory that holds no run yet" in err
    assert _run_files(tmp_path) == before


def test_a_new_run_never_overwrites_a_run_that_began_and_ended_while_it_loaded_its_data(
        tmp_path, monkeypatch, capsys):
    """Two runs started at once with one --out: both found it free; the first trained and
    ended (releasing the lock) while the second loaded its data, which then replaced the
    first's config.json, metrics, checkpoint and samples. It looks again under the lock."""
    from minilean.train import diffusion
    load, loads = diffusion.load_dataset, []

    def load_while_another_run_ends(*args, **kwargs):
        loads.append(args)
        if len(loads) == 1:  # the second run's load: the first runs meanwhile, start to end
            run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
        return load(*args, **kwargs)

    monkeypatch.setattr(diffusion, "load_dataset", load_while_another_run_ends)
    code, err = _exit_and_error(["diffusion", *TINY, "--steps=1", "--seed=5",
                                 f"--out={tmp_path}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --out: got '{tmp_path}'; expected a "
                              f"directory that holds no run yet (this one holds one: continue "
                              f"it with --resume, or remove it)\n")
    assert [step for step, _ in losses(tmp_path)] == [1, 2]
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0


class LockHolder:
    """Another process that holds the lock of a run directory until ``release``."""

    def __init__(self, run_dir):
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, sys; lock = open(sys.argv[1], 'ab'); "
             "fcntl.flock(lock, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
             str(run_dir / ".lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline() == "locked\n"

    def release(self):
        self.process.stdin.close()  # its read ends, and so does the process
        assert self.process.wait(timeout=60) == 0
        self.process.stdout.close()


@pytest.mark.parametrize("start", ["resume", "out"])
def test_a_run_another_process_writes_is_refused_and_left_as_it_is(tmp_path, capsys, start,
                                                                  folder_contents):
    """--resume of a run still going (its lock held by another process), or a new run in an
    --out where one is starting: one line, exit 1, nothing in the directory changed (the
    resume reads the checkpoint only once it holds the lock). Released, the run opens."""
    pytest.importorskip("fcntl")  # (Windows has none: runs there are not locked)
    run = tmp_path / "run"
    if start == "resume":
        run_cli("--steps=2", f"--out={run}", "--evaluate=false")
    else:
        run.mkdir()
    holder = LockHolder(run)
    try:
        before = folder_contents(run)
        argv = ["diffusion", *TINY, "--steps=3", "--evaluate=false",
                f"--resume={run}" if start == "resume" else f"--out={run}"]
        assert _exit_and_error(argv, capsys) == (
            1, f"minilean diffusion: error: run directory {run}: another minilean process is "
               f"writing it (its lock {run / '.lock'} is held); wait for that run to end\n")
        assert folder_contents(run) == before
    finally:
        holder.release()
    main(argv)
    assert [step for step, _ in losses(run)] == [1, 2, 3]


def test_a_new_run_never_overwrites_a_runs_files_left_without_their_config(tmp_path, capsys):
    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
    (tmp_path / "config.json").unlink()
    before = {name: (tmp_path / name).read_bytes()
              for name in ("metrics.jsonl", "checkpoints/last.npz")}
    code, err = _exit_and_error(["diffusion", *TINY, "--steps=1", f"--out={tmp_path}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --out: got '{tmp_path}'; expected a "
                              f"directory that holds no run's files (this one holds "
                              f"metrics.jsonl, which a new run would replace: move it "
                              f"away, or choose another)\n")
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("own", ["loss.svg", "images/samples.png"])
def test_a_new_run_never_overwrites_a_file_of_the_users_where_it_writes_its_own(tmp_path,
                                                                                capsys, own):
    """A loss.svg or an image of one's own in --out was replaced without a word."""
    (tmp_path / own).parent.mkdir(exist_ok=True)
    (tmp_path / own).write_text("mine")
    code, err = _exit_and_error(["diffusion", *TINY, "--steps=1", f"--out={tmp_path}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: --out: got '{tmp_path}'; expected a "
                              f"directory that holds no run's files (this one holds "
                              f"{own.split('/')[0]}, which a new run would replace: move it "
                              f"away, or choose another)\n")
    assert (tmp_path / own).read_text() == "mine"


def test_a_resume_on_data_changed_since_the_run_began_is_refused_by_name(tmp_path, capsys):
    """--x replaced since the run began: the run trained on the new data unsaid (the same
    shape), or stopped at the checkpoint in the weights' words (another). A run saved before
    config.json kept the data's fingerprint resumes as it did, and keeps one from then on."""
    x, run = tmp_path / "x.npy", tmp_path / "run"
    images = numpy.random.default_rng(0).integers(0, 256, (32, 3, 16, 16), dtype=numpy.uint8)
    numpy.save(x, images)
    run_cli("--steps=2", f"--x={x}", f"--out={run}", "--evaluate=false")
    resume = ["diffusion", f"--resume={run}", "--steps=3"]
    for changed, words in [(255 - images, "the same shape (32, 3, 16, 16) uint8, other "
                                          "contents"),
                           (images[:, :, :8, :8], "then (32, 3, 16, 16) uint8, now "
                                                  "(32, 3, 8, 8) uint8")]:
        numpy.save(x, changed)
        assert _exit_and_error(resume, capsys) == (
            1, f"minilean diffusion: error: --x {x}: not the data the run {str(run)!r} began "
               f"with ({words}); resume it with those data, or start a new run\n")
    numpy.save(x, images)
    config = json.loads((run / "config.json").read_text())
    fingerprint = config.pop("data_fingerprint")
    (run / "config.json").write_text(json.dumps(config))
    main(resume)
    assert json.loads((run / "config.json").read_text())["data_fingerprint"] == fingerprint


def test_a_resume_whose_saved_data_are_points_is_a_one_line_error_naming_the_command(tmp_path,
                                                                                    capsys):
    """The data flags refuse ring8 for a command that trains on images; a resumed run takes
    its data from config.json, which they do not see (here one edited, of a run saved before
    the data's fingerprint was kept): diffusion and the zoo commands refuse it in one line."""
    for command, flags in (("diffusion", [*TINY, "--evaluate=false"]),
                           ("autoencoder", ["--n-total=32", "--batch-size=8"])):
        run = tmp_path / command
        main([command, *flags, "--steps=1", f"--out={run}"])
        config = json.loads((run / "config.json").read_text())
        config.pop("data_fingerprint")
        (run / "config.json").write_text(json.dumps({**config, "dataset": "ring8"}))
        capsys.readouterr()
        assert _exit_and_error([command, f"--resume={run}", "--steps=2"], capsys) == (
            1, f"minilean {command}: error: {command} trains on images, but dataset 'ring8' "
               f"has rows of shape (2,)\n")


def test_a_run_interrupted_before_its_config_is_written_leaves_room_for_a_new_one(
        tmp_path, monkeypatch, capsys):
    """Ctrl-C while the run directory opens, after its folders are made and before its
    config.json is there: no run to resume, and neither the empty checkpoints folder nor the
    lock file is a run's file that would keep a new run out."""
    def interrupted(path, value):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(atomic, "write_json", interrupted)
        code, _ = _exit_and_error(["diffusion", *TINY, "--steps=1", f"--out={tmp_path}"],
                                  capsys)
    assert code == 130 and sorted(os.listdir(tmp_path)) == [".lock", "checkpoints", "images"]
    run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false")
    assert len(losses(tmp_path)) == 1
@pytest.mark.parametrize("failing", ["metrics.jsonl", "checkpoints/last.npz"])
def test_a_write_the_system_refuses_is_one_line_naming_the_file_and_the_run_resumes(tmp_path,
                                                                                   failing):
    """A file size limit makes the system refuse a write, as a full disk does: the resumed run
    stops with one line that names the file (not "[Errno 27] File too large" alone), its last
    checkpoint stays as it was, no temporary file is left, and a later --resume carries on."""
    import resource
    import subprocess
    import sys

    run = tmp_path / "run"
    command = [sys.executable, "-m", "minilean", "diffusion", *TINY, "--evaluate=false"]
    subprocess.run(command + ["--steps=40", f"--out={run}"], check=True, capture_output=True)
    checkpoint = (run / "checkpoints" / "last.npz").read_bytes()
    # metrics.jsonl: room for its 40 lines (rewritten by the resume), not for the 41st
    limit = (run / failing).stat().st_size + 10 if failing == "metrics.jsonl" else \
        len(checkpoint) // 2

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    stopped = subprocess.run(command + ["--steps=42", f"--resume={run}"], preexec_fn=limited,
                             capture_output=True, text=True)
    assert (stopped.returncode, stopped.stderr) == (
        1, f"minilean diffusion: error: cannot write {run / failing}: File too large\n")
    assert (run / "checkpoints" / "last.npz").read_bytes() == checkpoint
    assert not [path for path in run.rglob("*") if path.name.endswith(".tmp")]
    subprocess.run(command + ["--steps=42", f"--resume={run}"], check=True, capture_output=True)
    assert [step for step, _ in losses(run)] == list(range(1, 43))


@pytest.mark.parametrize("edit, expected", [
    (lambda config: {**config, "hidden_c": "big"},
     "config.json holds a value this command cannot use: --hidden-c: got 'big'; expected an "
     "integer >= 1"),
    (lambda config: {name: value for name, value in config.items() if name != "seed"},
     "config.json is not a config minilean wrote (it lacks seed, which every run saves)")],
    ids=["value", "missing"])
def test_resume_refuses_a_saved_value_its_flag_would_refuse_and_keeps_the_run(
        tmp_path, capsys, edit, expected):
    """A hand-edited (or another version's) config.json: one line naming the saved flag, not
    a comparison's TypeError from deep in the run. One without a flag every run saves (an
    edit that lost lines) was not written by minilean: the resume would have trained on the
    default seed's data order unsaid."""
    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(edit(config)))
    before = _run_files(tmp_path)
    code, err = _exit_and_error(["diffusion", "--steps=3", f"--resume={tmp_path}"], capsys)
    assert (code, err) == (1, f"minilean diffusion: error: --resume {tmp_path}: {expected}\n")
    assert _run_files(tmp_path) == before


@pytest.mark.parametrize("name, value, expected", [
    ("hidden_c", "16", "--hidden-c: got '16'; expected an integer >= 1"),
    ("evaluate", "false", "--evaluate: got 'false'; expected a boolean")])
def test_a_saved_value_is_checked_as_a_python_value_not_as_a_typed_word(name, value, expected):
    """config.json is JSON: a text where a number or boolean belongs was not written by a run
    (the command line's reading of the word '16' or 'false' does not apply to it)."""
    with pytest.raises(ValueError, match=re.escape(f"--resume run: config.json holds a value "
                                                   f"this command cannot use: {expected}")):
        cli.DIFFUSION.check_saved({name: value}, "run")


def test_resume_takes_a_flag_given_now_over_a_saved_value_its_flag_would_refuse(tmp_path):
    """The value given now is the one the run uses: giving it mends the bad saved one, and
    the saved one is not checked."""
    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "checkpoint_every": "often"}))
    run_cli("--steps=3", f"--resume={tmp_path}", "--checkpoint-every=1", "--evaluate=false")
    assert json.loads((tmp_path / "config.json").read_text())["checkpoint_every"] == 1
    assert [step for step, _ in losses(tmp_path)] == [1, 2, 3]


@pytest.mark.parametrize("flag", ["log", "sample_ppm"])
def test_resume_refuses_a_saved_file_flag_its_flag_now_refuses_before_training(
        tmp_path, monkeypatch, capsys, flag):
    """A file the run writes at its end is checked again on --resume, where it is now: a
    --log path that became a directory, a .png --sample-ppm where Pillow is gone. Unchecked,
    the resume trained to its end and then failed to write it (exit 1)."""
    option, name = "--" + flag.replace("_", "-"), "trainlog.json" if flag == "log" else "s.png"
    if flag == "sample_ppm":
        pytest.importorskip("PIL")
    run, path = tmp_path / "run", tmp_path / name
    run_cli("--steps=2", f"--out={run}", "--evaluate=false", f"{option}={path}")
    if flag == "log":
        path.unlink()
        path.mkdir()
        expected = "the path of a file (this is a directory)"
    else:
        monkeypatch.setitem(sys.modules, "PIL", None)  # Pillow cannot be imported now
        expected = "a path ending in .ppm or .pgm (writing .png needs Pillow: pip install Pillow)"
    before = _run_files(run)
    code, err = _exit_and_error(["diffusion", "--steps=4", f"--resume={run}"], capsys)
    assert (code, err) == (2, f"minilean diffusion: error: {option}: got '{path}'; expected "
                              f"{expected} (the value saved in {run}'s config.json; give "
                              f"{option} to replace it)\n")
    assert _run_files(run) == before


def test_a_resume_that_another_resume_overtook_stops_before_writing_its_stale_flags(
        tmp_path, monkeypatch, capsys):
    """Two resumes of one run started together: both read config.json before either locks
    the run. The one that locks second, after the first ran to its end with a new --lr,
    stopped neither: it wrote the config it had read back over the first's (lr and the
    given "lr" lost) and trained on it. It stops with one line, and the run stays the
    first's."""
    import minilean.train.diffusion as diffusion

    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
    loading, overtaken = diffusion.image_dataset, []

    def load_while_another_resume_runs(config):
        if not overtaken:  # the first resume runs start to end while this one loads its data
            overtaken.append(True)
            main(["diffusion", "--steps=4", "--lr=1e-4", f"--resume={tmp_path}"])
        return loading(config)

    monkeypatch.setattr(diffusion, "image_dataset", load_while_another_resume_runs)
    code, err = _exit_and_error(["diffusion", "--steps=6", f"--resume={tmp_path}"], capsys)
    assert (code, err) == (1, f"minilean diffusion: error: run directory {tmp_path}: another "
                              f"minilean process resumed it while this one started (its "
                              f"config.json changed since this run read it); resume it again "
                              f"to continue from there\n")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["lr"], saved["steps"], "lr" in saved["given_flags"]) == (1e-4, 4, True)
    assert [step for step, _ in losses(tmp_path)] == [1, 2, 3, 4]
    run_cli("--steps=6", f"--resume={tmp_path}", "--evaluate=false")  # resumed again: goes on
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 1e-4


def test_resume_refuses_what_it_cannot_do_and_keeps_the_run(tmp_path, capsys):
    run_cli("--steps=3", f"--out={tmp_path}", "--evaluate=false")
    before = _run_files(tmp_path)
    code, err = _exit_and_error(["diffusion", "--steps=2", f"--resume={tmp_path}"], capsys)
    assert code == 2 and "--steps: got 2; expected an integer >= 3, the step the resumed run" \
        in err
    code, err = _exit_and_error(["diffusion", "--steps=4", f"--resume={tmp_path}",
                                 f"--out={tmp_path / 'elsewhere'}"], capsys)
    assert code == 2 and "expected no --out with --resume (the run continues in" in err
    assert _run_files(tmp_path) == before and not (tmp_path / "elsewhere").exists()


def test_resume_may_name_its_own_directory_as_out(tmp_path, monkeypatch):
    run_cli("--steps=1", f"--out={tmp_path / 'run'}", "--evaluate=false")
    monkeypatch.chdir(tmp_path)  # a relative --out naming the same directory is no change
    run_cli("--steps=2", "--resume=run", f"--out={tmp_path / 'run'}", "--evaluate=false")
    run_cli("--steps=3", f"--resume={tmp_path / 'run'}", "--out=run", "--evaluate=false")
    assert [step for step, _ in losses(tmp_path / "run")] == [1, 2, 3]


def test_resuming_a_finished_run_with_its_steps_samples_again(tmp_path):
    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
    before = losses(tmp_path)
    os.remove(tmp_path / "samples.npy")
    run_cli("--steps=2", f"--resume={tmp_path}", "--evaluate=false")
    assert losses(tmp_path) == before  # no step trained again
    assert numpy.load(tmp_path / "samples.npy").shape == (4, 3, 16, 16)


def test_a_resumed_run_computes_on_todays_device_unless_told(tmp_path, monkeypatch):
    """A run started on a GPU machine (device auto), resumed without a device flag where no GPU
    answers, resumes on the CPU (``auto`` resolved today), not on the saved "cuda"."""
    from minilean import backend
    run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false")
    config_path = tmp_path / "config.json"
    saved = json.loads(config_path.read_text())
    assert saved["device"] == "cpu"
    config_path.write_text(json.dumps({**saved, "device": "cuda", "cpu": False, "cuda": False}))
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    main(["diffusion", "--steps=2", f"--resume={tmp_path}", "--evaluate=false", "--noprogress"])
    assert json.loads(config_path.read_text())["device"] == "cpu"
    assert len(losses(tmp_path)) == 2


def test_unreadable_run_files_on_resume_are_one_line_errors(tmp_path, capsys):
    run_cli("--steps=1", f"--out={tmp_path}", "--evaluate=false")
    checkpoint = tmp_path / "checkpoints" / "last.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # torn
    code, err = _exit_and_error(["diffusion", "--steps=2", f"--resume={tmp_path}"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert f"'{checkpoint}' is not a readable minilean checkpoint" in err
    (tmp_path / "config.json").write_text("{not json")
    code, err = _exit_and_error(["diffusion", "--steps=2", f"--resume={tmp_path}"], capsys)
    assert code == 1 and "config.json is not a config minilean wrote (it is not JSON: " in err


@pytest.mark.parametrize("entry, value, expected", [
    ("step", -5, "its step is -5; expected an integer >= 0"),
    ("step", -1, "its step is -1; expected an integer >= 0"),
    ("step", 2.5, "its step is 2.5; expected an integer >= 0"),
    ("unlogged", None, "its unlogged metrics are None; expected {'sums': {name: number}, "
                       "'count': integer}"),
    ("unlogged", {"sums": {"loss": "x"}, "count": 1},
     "its unlogged metrics are {'sums': {'loss': 'x'}, 'count': 1}; expected {'sums': "
     "{name: number}, 'count': integer}"),
    ("rng", 5, "state must be a dict")])  # NumPy's TypeError for a random state of no dict
def test_a_checkpoint_with_a_bad_entry_is_named_and_the_run_kept(entry, value, expected,
                                                                  tmp_path, capsys):
    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")
    path = str(tmp_path / "checkpoints" / "last.npz")
    save_checkpoint(path, **{**load_checkpoint(path), entry: value})
    before = {name: (tmp_path / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    code, err = _exit_and_error(["diffusion", "--steps=3", f"--resume={tmp_path}"], capsys)
    assert (code, err) == (1, f"minilean diffusion: error: checkpoint {path} does not fit this "
                              f"run: {expected}\n")
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_a_checkpoint_from_before_the_unlogged_sums_resumes_as_an_uninterrupted_run(tmp_path):
    """Checkpoints written before the loop saved its unlogged sums have no such entry: resumed,
    the run keeps every logged line and logs the next steps as a run never stopped does."""
    run_cli("--steps=2", f"--out={tmp_path / 'old'}", "--evaluate=false")
    path = str(tmp_path / "old" / "checkpoints" / "last.npz")
    save_checkpoint(path, **{name: value for name, value in load_checkpoint(path).items()
                             if name != "unlogged"})
    run_cli("--steps=3", f"--resume={tmp_path / 'old'}", "--evaluate=false")
    run_cli("--steps=3", f"--out={tmp_path / 'whole'}", "--evaluate=false")
    assert losses(tmp_path / "old") == losses(tmp_path / "whole")


def test_data_paths_are_saved_absolute_for_a_resume_from_elsewhere(tmp_path, monkeypatch):
    images = numpy.random.default_rng(0).integers(0, 256, (32, 3, 16, 16), dtype=numpy.uint8)
    (tmp_path / "data").mkdir()
    numpy.save(tmp_path / "data" / "x.npy", images)
    monkeypatch.chdir(tmp_path)
    run_cli("--steps=1", "--x=data/x.npy", "--out=run", "--evaluate=false")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["x"] == str(tmp_path / "data" / "x.npy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no data/x.npy here: the saved path must be the real one
    run_cli("--steps=2", f"--resume={tmp_path / 'run'}", "--evaluate=false")
    assert len(losses(tmp_path / "run")) == 2
    monkeypatch.chdir(tmp_path)  # the same relative --x names the same file: not a change
    run_cli("--steps=3", "--resume=run", "--x=data/x.npy", "--evaluate=false")
    assert len(losses(tmp_path / "run")) == 3


def test_output_paths_are_saved_absolute_for_a_resume_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("--steps=1", "--out=run", "--evaluate=false", "--log=trainlog.json",
            "--sample-ppm=samples.ppm")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["log"], saved["sample_ppm"]) == (str(tmp_path / "trainlog.json"),
                                                   str(tmp_path / "samples.ppm"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the resumed run writes where the run did, not here
    run_cli("--steps=2", f"--resume={tmp_path / 'run'}", "--evaluate=false")
    assert json.loads((tmp_path / "trainlog.json").read_text())["steps"] == [1, 2]
    assert not os.listdir(elsewhere)


def test_every_flag_naming_a_file_is_saved_absolute():
    """A new flag for a file to write must join FILE_FLAGS too, or a resume from another
    working directory would write that file there."""
    writes_a_file = cli.output_file().__code__  # every check output_file makes runs this code
    written = {flag.name for command in cli.COMMANDS for flag in command.flags.values()
               if getattr(flag.check, "__code__", None) is writes_a_file}
    assert "log" in written and written | {"x", "y"} <= set(FILE_FLAGS)


def test_a_dataset_too_small_to_score_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """FD-classifier needs 1000 labelled real images: found out before any step, not after."""
    rng = numpy.random.default_rng(0)
    numpy.save(tmp_path / "x.npy", rng.integers(0, 256, (32, 3, 16, 16), dtype=numpy.uint8))
    numpy.save(tmp_path / "y.npy", rng.integers(0, 3, 32))
    monkeypatch.setattr(TrainState, "save", lambda *args: pytest.fail("a step ran"))
    code, err = _exit_and_error(["diffusion", *TINY, "--steps=2", f"--x={tmp_path / 'x.npy'}",
                                 f"--y={tmp_path / 'y.npy'}", f"--out={tmp_path / 'run'}"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "--evaluate: got True; expected false for this dataset: FD-classifier needs 1000 " \
           "real images (500 twice), it has 32" in err


SCORED_RUNS = {  # tiny runs of the commands that measure FD-classifier, without --n-samples
    "diffusion": ["diffusion", *[flag for flag in TINY if not flag.startswith("--n-samples=")],
                  "--steps=1"],
    "gan": ["gan", "--n-total=40", "--steps=1", "--batch-size=4", "--hidden=8",
            "--latent=2", "--noprogress"]}


@pytest.mark.parametrize("command", sorted(SCORED_RUNS))
def test_one_sample_cannot_be_scored_and_is_refused_before_training(command, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.setattr(TrainState, "save", lambda *args: pytest.fail("a step ran"))
    code, err = _exit_and_error([*SCORED_RUNS[command], "--n-samples=1",
                                 f"--out={tmp_path / 'run'}"], capsys)
    assert (code, err) == (2, f"minilean {command}: error: --n-samples: got 1; expected an "
                              f"integer >= 2 with --evaluate (FD-classifier fits a covariance "
                              f"to the samples), or --noevaluate\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", sorted(SCORED_RUNS))
def test_data_without_labels_say_fd_classifier_is_skipped(command, tmp_path, capsys):
    numpy.save(tmp_path / "x.npy", numpy.random.default_rng(0).integers(
        0, 256, (40, 3, 16, 16), dtype=numpy.uint8))
    argv = [*SCORED_RUNS[command], "--n-samples=4", f"--x={tmp_path / 'x.npy'}"]
    main([*argv, f"--out={tmp_path / 'run'}"])
    assert capsys.readouterr().err == (
        "minilean: --evaluate: FD-classifier is skipped, the data have no labels (give --y with "
        "--x; --noevaluate silences this)\n")
    assert "fd_classifier" not in json.loads((tmp_path / "run" / "summary.json").read_text())
    main([*argv, "--noevaluate", f"--out={tmp_path / 'quiet'}"])
    assert capsys.readouterr().err == ""


def test_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    ml.manual_seed(0)
    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    values = iter([1.0, 0.5, float("nan"), 0.1])

    def step_fn(batch, step):
        return {"loss": next(values)}

    with RunDirectory(tmp_path, {}) as run:
        with pytest.raises(TrainingDiverged) as error:
            train(state, step_fn, iter(range(10)), 4, run, log_every=1, checkpoint_every=2,
                  progress=False)
    assert "loss became nan at step 3" in str(error.value)
    # config.json holds this attempt's flags: a plain --resume would take its --lr again
    assert str(error.value).endswith("(step 2) is kept in "
                                     f"{tmp_path / 'checkpoints' / 'last.npz'}; --resume takes "
                                     "this attempt's flags again (give --lr to change its rate)")
    assert load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))["step"] == 2
    assert read_metrics(str(tmp_path / "metrics.jsonl"))[-1]["step"] == 3


class _CtrlCLandsInDel:
    """An object whose ``__del__`` is where a Ctrl-C lands: Python cannot raise it there."""

    def __del__(self):
        raise KeyboardInterrupt


def test_a_ctrl_c_python_could_not_raise_stops_training_at_the_next_step(tmp_path):
    """A Ctrl-C that lands in a ``__del__`` or a weak reference's callback cannot leave it:
    kept by ``catch_lost_interrupts``, it was raised only at the command's end, so a run
    trained to its last step before it said "interrupted". The loop raises it after the step
    it landed in, and the last checkpoint stays."""
    ml.manual_seed(0)
    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    trained = []

    def step_fn(batch, step):
        trained.append(step)
        if step == 3:
            _CtrlCLandsInDel()  # made and deleted at once
        return {"loss": 1.0 / step}

    with RunDirectory(tmp_path, {}) as run, interrupts.catch_lost_interrupts():
        with pytest.raises(KeyboardInterrupt):
            train(state, step_fn, iter(range(10)), 8, run, log_every=1, checkpoint_every=2,
                  progress=False)
    assert trained == [1, 2, 3]
    assert load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))["step"] == 2


def test_an_update_that_makes_the_weights_non_finite_is_never_checkpointed(tmp_path):
    """Step 4's loss is finite (computed before its update), but its update leaves an infinite
    weight (an overflowing step, a NaN gradient): the checkpoint that falls on step 4 would
    hold it, and a resume from there, at any --lr, would stop at step 5 again. The run stops
    at step 4 instead, naming the weight, and the step 2 checkpoint stays."""
    ml.manual_seed(0)
    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})

    def step_fn(batch, step):
        if step == 4:
            model.weight.data[0, 1] = numpy.inf
        return {"loss": 1.0 / step}

    with RunDirectory(tmp_path, {}) as run:
        with pytest.raises(TrainingDiverged, match=r"^modules/model/weight became nan or "
                                                   r"infinite in the update of step 4 \(its "
                                                   r"loss was finite\); stopped, the last good "
                                                   r"checkpoint \(step 2\) is kept in "):
            train(state, step_fn, iter(range(10)), 6, run, log_every=1, checkpoint_every=2,
                  progress=False)
    saved = load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))
    assert saved["step"] == 2 and numpy.isfinite(saved["modules"]["model"]["weight"]).all()
    assert read_metrics(str(tmp_path / "metrics.jsonl"))[-1]["step"] == 4


def test_a_checkpoint_is_not_written_into_a_run_directory_made_anew(tmp_path):
    """A run whose folder was removed between two log lines stops at the checkpoint that
    falls there, rather than make the folder anew with a checkpoint and no config or metrics
    (which a new run refuses, and --resume cannot continue)."""
    import shutil

    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    run_dir = tmp_path / "run"

    def step_fn(batch, step):
        if step == 2:
            shutil.rmtree(run_dir)
        return {"loss": 1.0 / step}

    with RunDirectory(run_dir, {}) as run:
        with pytest.raises(OSError, match=f"^run directory {re.escape(str(run_dir))}: it was "
                                          f"removed or moved away while this run was writing it"):
            train(state, step_fn, iter(range(10)), 4, run, log_every=3, checkpoint_every=2,
                  progress=False)
    assert not run_dir.exists()


def test_a_checkpoint_of_other_modules_optimizers_or_emas_does_not_fit(tmp_path):
    model, critic = Linear(2, 1), Linear(1, 1)
    saved = TrainState({"model": model, "critic": critic},
                       {"optimizer": SGD(model.parameters(), lr=0.1)}, step=3)
    saved.save(str(tmp_path))
    path = os.path.join(str(tmp_path), "checkpoints", "last.npz")
    fewer = TrainState({"model": Linear(2, 1)}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    with pytest.raises(ValueError, match=rf"^checkpoint {path} does not fit this run: checkpoint "
                                         rf"holds modules \['critic', 'model'\], expected "
                                         rf"\['model'\]$"):
        fewer.load(str(tmp_path))
    more_model, more_critic = Linear(2, 1), Linear(1, 1)
    more = TrainState({"model": more_model, "critic": more_critic},
                      {"optimizer": SGD(model.parameters(), lr=0.1),
                       "critic_optimizer": SGD(critic.parameters(), lr=0.1)})
    weights = [parameter.data.copy() for parameter in more_model.parameters()]
    with pytest.raises(ValueError, match=r"checkpoint holds optimizers \['optimizer'\], "
                                         r"expected \['critic_optimizer', 'optimizer'\]$"):
        more.load(str(tmp_path))
    assert fewer.step == 0 and more.step == 0
    # the modules fitted and were loaded first: the refused optimizers put them back
    for parameter, before in zip(more_model.parameters(), weights):
        numpy.testing.assert_array_equal(parameter.data, before)


@pytest.mark.parametrize("steps, parts, interval", [(400, 100, 4), (401, 100, 4), (99, 100, 1),
                                                    (3, 4, 1), (8, 4, 2), (1, 100, 1)])
def test_the_default_interval_is_a_part_of_the_run_and_at_least_every_step(steps, parts,
                                                                           interval):
    assert default_interval(steps, parts) == interval


def test_a_resumed_runs_first_log_line_averages_the_steps_an_uninterrupted_one_does(tmp_path):
    """Log every 3 steps, checkpoint every 2, stopped at step 5: the line at step 6 averages
    steps 4-6 as in one run (the sum of step 4 comes back with the checkpoint), not 5-6."""
    def train_to(run_dir, steps, batches, resume_step=None):
        ml.manual_seed(0)
        model = Linear(2, 1)
        state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
        if resume_step is not None:
            state.load(str(run_dir))
        with RunDirectory(run_dir, {}, resume_step=resume_step) as run:
            train(state, lambda batch, step: {"loss": float(step * step)}, batches, steps, run,
                  log_every=3, checkpoint_every=2, progress=False)
        return [(record["step"], record["loss"]) for record in read_metrics(
            str(run_dir / "metrics.jsonl"))]

    def stopped_at_step_5():
        yield from range(4)
        raise KeyboardInterrupt

    whole = train_to(tmp_path / "whole", 6, iter(range(6)))
    assert whole == [(3, (1 + 4 + 9) / 3), (6, (16 + 25 + 36) / 3)]
    with pytest.raises(KeyboardInterrupt):
        train_to(tmp_path / "split", 6, stopped_at_step_5())
    assert load_checkpoint(str(tmp_path / "split" / "checkpoints" / "last.npz"))["step"] == 4
    assert train_to(tmp_path / "split", 6, iter(range(2)), resume_step=4) == whole


def test_a_checkpoint_restores_the_cpu_random_state(tmp_path):
    """After loading a checkpoint, ml.randn draws what the process that saved it would have
    drawn next, not the seed's first numbers again."""
    def fresh_state():
        ml.manual_seed(0)
        model = Linear(2, 1)
        return TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})

    state = fresh_state()
    ml.randn(5)  # the run has drawn some numbers before its checkpoint
    os.makedirs(tmp_path / "checkpoints")
    state.save(str(tmp_path))
    uninterrupted = ml.randn(6).numpy()
    state = fresh_state()  # a new process: the generator is back at the seed's start
    from_seed = ml.randn(6).numpy()
    state = fresh_state()
    state.load(str(tmp_path))
    resumed = ml.randn(6).numpy()
    numpy.testing.assert_array_equal(resumed, uninterrupted)
    assert not numpy.array_equal(resumed, from_seed)


def _train_on_step_numbers(run_dir, steps, log_every, checkpoint_every):
    """Train with loss = the step number; returns the last logged record and the metric lines."""
    ml.manual_seed(0)
    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    with RunDirectory(run_dir, {}) as run:
        record = train(state, lambda batch, step: {"loss": float(step)}, iter(range(steps)),
                       steps, run, log_every=log_every, checkpoint_every=checkpoint_every,
                       progress=False)
    return record, [(line["step"], line["loss"]) for line in
                    read_metrics(str(run_dir / "metrics.jsonl"))]


def test_the_last_part_window_is_logged_as_its_own_mean_and_saved(tmp_path):
    """5 steps, log and checkpoint every 2: lines at 2 and 4 average two steps, the line at
    step 5 is step 5's alone, and the final checkpoint is step 5's. It keeps step 5 unlogged:
    a run continued past it logs step 5 with step 6 on the interval, as a run of 6 steps does."""
    record, lines = _train_on_step_numbers(tmp_path, 5, log_every=2, checkpoint_every=2)
    assert lines == [(2, (1 + 2) / 2), (4, (3 + 4) / 2), (5, 5.0)]
    assert (record["step"], record["loss"]) == (5, 5.0)
    checkpoint = load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))
    assert checkpoint["step"] == 5 and checkpoint["unlogged"] == {"sums": {"loss": 5.0},
                                                                  "count": 1}


def test_a_run_resumed_at_its_end_logs_its_last_part_window_again_as_its_mean(tmp_path):
    """5 steps, log every 3: the line at step 5 averages steps 4 and 5, which the checkpoint
    keeps unlogged. Resumed at its end, the run drops that line and logs it again from the
    saved sums and count: the same mean, and no step trains again."""
    _, lines = _train_on_step_numbers(tmp_path, 5, log_every=3, checkpoint_every=5)
    assert lines == [(3, (1 + 2 + 3) / 3), (5, (4 + 5) / 2)]
    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    state.load(str(tmp_path))
    with RunDirectory(tmp_path, {}, resume_step=state.step - state.unlogged_count) as run:
        record = train(state, lambda batch, step: pytest.fail(f"step {step} trained again"),
                       iter(()), 5, run, log_every=3, checkpoint_every=5, progress=False)
    assert (record["step"], record["loss"]) == (5, 4.5)
    assert [(line["step"], line["loss"]) for line in
            read_metrics(str(tmp_path / "metrics.jsonl"))] == lines


def test_train_shows_progress_by_default_and_ends_on_the_last_steps_line(tmp_path, capsys):
    """Not on a terminal, the display prints at most every 10 s, and closing it prints the
    final state: the last step of the total and its loss."""
    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    with RunDirectory(tmp_path, {}) as run:
        train(state, lambda batch, step: {"loss": float(step)}, iter(range(4)), 4, run,
              log_every=2, checkpoint_every=4)
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("train [") and " 4/4 100% loss=4 " in last


def test_the_last_step_is_saved_when_checkpoints_are_rarer_than_the_run(tmp_path):
    _, lines = _train_on_step_numbers(tmp_path, 5, log_every=1, checkpoint_every=2)
    assert [step for step, _ in lines] == [1, 2, 3, 4, 5]
    assert load_checkpoint(str(tmp_path / "checkpoints" / "last.npz"))["step"] == 5


def test_the_progress_display_shows_the_latest_steps_metrics(tmp_path, monkeypatch):
    """Read back every 3 steps: the display gets step 3's and step 6's loss, not the loss of
    the first step of each window."""
    from minilean.data.progress import Progress
    shown = []
    update = Progress.update

    def recording_update(self, count, **metrics):
        if metrics:
            shown.append((count, metrics))
        update(self, count, **metrics)

    monkeypatch.setattr(Progress, "update", recording_update)
    _train_on_step_numbers(tmp_path, 6, log_every=3, checkpoint_every=3)
    assert shown == [(3, {"loss": 3.0}), (6, {"loss": 6.0})]


def test_metrics_waiting_for_a_rare_log_line_are_read_back_every_few_steps(tmp_path,
                                                                           monkeypatch):
    """Logged and saved only at the end of 10 steps, with a read-back every 4: no step's loss
    tensor is kept past the next read-back (each was kept until the end: a run logged every
    10^6 steps held 10^6 of them), and the one line is still the mean of all 10 steps."""
    from minilean.train import loop
    monkeypatch.setattr(loop, "READ_BACK_EVERY", 4, raising=False)
    kept, most_kept = [], []

    def step_fn(batch, step):
        most_kept.append(sum(ref() is not None for ref in kept))
        loss = ml.tensor(float(step))
        kept.append(weakref.ref(loss.data))
        return {"loss": loss}

    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})
    with RunDirectory(tmp_path, {}) as run:
        train(state, step_fn, iter(range(10)), 10, run, log_every=10, checkpoint_every=10,
              progress=False)
    assert max(most_kept) == 3 and most_kept[-1] == 1  # steps 1-8 read back by step 10
    assert [(line["step"], line["loss"]) for line in
            read_metrics(str(tmp_path / "metrics.jsonl"))] == [(10, 5.5)]


def test_n_samples_may_fill_the_generated_bytes_cap_exactly():
    """4 GiB of float32 (3, 16, 16) images is 1398101 of them, with room for no further one."""
    from minilean.errors import FlagError
    check_samples_fit(1398101, (3, 16, 16))
    with pytest.raises(FlagError, match=r"^--n-samples: got 1398102; expected at most 1398101 "):
        check_samples_fit(1398102, (3, 16, 16))


def test_trainlog_keeps_six_decimals_of_the_logged_loss(tmp_path):
    records = [{"step": 1, "loss": 1 / 3}, {"step": 2, "modes_covered": 8},
               {"step": 3, "loss": 0.0123456789},
               {"step": 4, "loss": None, "nonfinite": ["loss"]}]  # logged as null
    write_trainlog(str(tmp_path / "trainlog.json"), "Toy", records, notes=["a note"])
    log = json.loads((tmp_path / "trainlog.json").read_text())
    assert log["title"] == "Toy" and log["steps"] == [1, 3] and log["notes"] == ["a note"]
    assert log["series"][0]["name"] == "loss"
    assert log["series"][0]["values"] == [0.333333, 0.012346]


def test_nan_guard_before_the_first_checkpoint_says_there_is_none(tmp_path):
    ml.manual_seed(0)
    model = Linear(2, 1)
    state = TrainState({"model": model}, {"optimizer": SGD(model.parameters(), lr=0.1)})

    with RunDirectory(tmp_path, {}) as run:
        with pytest.raises(TrainingDiverged) as error:
            train(state, lambda batch, step: {"loss": float("inf")}, iter(range(10)), 4, run,
                  log_every=1, checkpoint_every=2, progress=False)
    assert "loss became inf at step 1" in str(error.value)
    assert f"no checkpoint was written yet (--resume {tmp_path} starts again from step 0)" \
        in str(error.value)
    assert not (tmp_path / "checkpoints" / "last.npz").exists()


def test_evaluate_notes_samples_older_than_their_runs_checkpoint(tmp_path, monkeypatch, capsys):
    """A resume from step 2 to 4 stopped while sampling: the checkpoint is at step 4, the
    samples still step 2's. evaluate scores them and says so; once the resume at the end has
    sampled again, it says nothing."""
    from minilean.train import diffusion
    scoring = ["evaluate", "--cpu", f"--samples={tmp_path}", "--n-eval=4",
               "--classifier-steps=1", f"--cache={tmp_path / 'cache'}", "--n-total=200"]
    run_cli("--steps=2", f"--out={tmp_path}", "--evaluate=false")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(diffusion, "write_images", stopped)
        assert _exit_and_error(["diffusion", *TINY, "--steps=4", f"--resume={tmp_path}"],
                               capsys)[0] == 130
    main(scoring)
    assert capsys.readouterr().err == (
        f"minilean evaluate: note: {tmp_path}'s samples were drawn at step 2, and its checkpoint "
        f"is at step 4 (a resume stopped before it sampled again: --resume {tmp_path} "
        f"--steps=4 draws them anew)\n")
    # samples as old as the checkpoint (a file system's coarse clock) are not older than it
    samples, checkpoint = tmp_path / "samples.npy", tmp_path / "checkpoints" / "last.npz"
    stamp = os.path.getmtime(checkpoint)
    os.utime(samples, (stamp, stamp))
    main(scoring)
    assert capsys.readouterr().err == ""
    run_cli("--steps=4", f"--resume={tmp_path}")
    main(scoring)
    assert capsys.readouterr().err == ""
    # samples of the checkpoint's own step are never stale, whatever their file's time
    os.utime(samples, (stamp - 10, stamp - 10))
    main(scoring)
    assert capsys.readouterr().err == ""


def test_evaluate_says_nothing_of_samples_drawn_after_the_checkpoint(tmp_path, monkeypatch,
                                                                    capsys):
    """A resume from step 2 to 4 stopped while it scored its new samples (the classifier
    trains for a while): samples.npy is step 4's, summary.json still step 2's. The samples are
    not stale, and evaluate must not say they are."""
    from minilean.train import diffusion
    scored = [*(flag for flag in TINY if not flag.startswith("--n-total=")), "--n-total=200"]
    main(["diffusion", *scored, "--steps=2", f"--out={tmp_path}", "--evaluate=false"])

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(diffusion, "fd_report", stopped)
        assert _exit_and_error(["diffusion", *scored, "--steps=4", f"--resume={tmp_path}",
                                "--evaluate=true"], capsys)[0] == 130
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2
    main(["evaluate", "--cpu", f"--samples={tmp_path}", "--n-eval=4", "--classifier-steps=1",
          f"--cache={tmp_path / 'cache'}", "--n-total=200"])
    assert capsys.readouterr().err == ""


def test_evaluate_reports_fd_with_floor_and_ceiling(tmp_path, capsys):
    samples = numpy.random.default_rng(0).integers(0, 256, (40, 3, 16, 16), dtype=numpy.uint8)
    numpy.save(tmp_path / "samples.npy", samples)
    main(["evaluate", "--cpu", f"--samples={tmp_path}", "--n-eval=40", "--classifier-steps=3",
          f"--cache={tmp_path / 'cache'}", "--n-total=200", "--fast-kernels"])
    out, err = capsys.readouterr()
    assert "--fast-kernels has no effect on the CPU" in err  # the flag is read, as elsewhere
    # and switches nothing on: the switch is the process's, and a cuda computation after this
    # CPU run would go through the kernels no flag of its own asked for
    from minilean.cuda import registry
    assert registry.installed() == {}
    report = json.loads(out)
    assert report["n_images"] == report["n_held_out"] == 40
    # seeded, so one fixed outcome: the real training images score closest to the held-out ones
    # (fd 7x the floor), the uniform-noise samples between, the clipped Gaussian noise farthest
    # (1.6x fd)
    assert report["floor_real_train"] < report["fd_classifier"] < report["ceiling_noise"]
    assert os.listdir(tmp_path / "cache")  # cached for the next time
    # the ceiling and the accuracy recomputed from their documentation with the cached
    # classifier: held-out shapes drawn with seed 0 + HELD_OUT_SEED_OFFSET; noise N(0, 1) from
    # the NOISE_CEILING stream in [-1, 1] space, clipped, mapped to [0, 1]; images enter the
    # classifier as 2 x - 1; FD between Gaussian fits (unbiased covariance) of the features
    from minilean.data import make_shapes
    from minilean.data.streams import Purpose, stream
    from minilean.models import classifier
    checkpoint = load_checkpoint(report["classifier"])
    model = classifier.FeatureClassifier(3, int(checkpoint["classes"]))
    model.load_state_dict(checkpoint["model"])
    held_out, labels = make_shapes(40, 16, classifier.HELD_OUT_SEED_OFFSET)
    noise = stream(0, Purpose.NOISE_CEILING).standard_normal((40, 3, 16, 16))
    noise = numpy.clip((noise + 1) / 2, 0, 1)

    def signed(images):
        return ml.tensor((images * 2 - 1).astype(numpy.float32))

    def fit(images):
        with ml.no_grad():
            rows = model.features(signed(images)).numpy().astype(numpy.float64)
        return rows.mean(axis=0), numpy.cov(rows.T, ddof=1)

    ceiling = classifier.frechet_distance(*fit(noise), *fit(held_out / 255.0))
    assert report["ceiling_noise"] == pytest.approx(ceiling, rel=1e-5)
    with ml.no_grad():
        predicted = model(signed(held_out / 255.0)).numpy().argmax(axis=1)
    correct = int((predicted == labels).sum())
    assert 0 < correct < 40  # after 3 steps: neither none nor all right
    assert report["classifier_accuracy_held_out"] == correct / 40


def test_learning_rate_warms_up_then_follows_the_cosine_to_its_horizon():
    from types import SimpleNamespace
    from minilean.train.diffusion import lr_factor

    config = SimpleNamespace(lr_schedule="cosine", warmup_steps=4, lr_decay_steps=None,
                             steps=12)
    factors = [lr_factor(config)(index) for index in range(13)]
    numpy.testing.assert_allclose(factors[:4], [0.25, 0.5, 0.75, 1.0])
    numpy.testing.assert_allclose(factors[8], 0.5)  # half-way from the warm-up to step 12
    assert factors[12] == pytest.approx(0.0, abs=1e-12)
    config.lr_decay_steps = 20  # a run that will be resumed up to 20 steps
    assert lr_factor(config)(12) == pytest.approx(0.5)
    config.lr_schedule = "constant"
    assert [lr_factor(config)(index) for index in (0, 3, 19)] == [0.25, 1.0, 1.0]


def test_the_summary_line_gives_numbers_and_a_report_by_its_headline_number():
    from minilean.train.loop import summary_line
    summary = {"final_loss": 0.0840412, "steps": 1500, "sampler": "ddpm",
               "fd_classifier": {"fd_classifier": 144.2371, "floor_real_train": 9.78},
               "modes": [1, 2], "grid": {"rows": 8}}
    assert summary_line(summary) == ("final_loss=0.08404 steps=1500 sampler=ddpm "
                                     "fd_classifier=144.2")
