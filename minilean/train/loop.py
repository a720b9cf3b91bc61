"""The training loop every model command shares: steps, progress, metrics, checkpoints, resume.

A model command supplies ``step_fn(batch, step) -> {"loss": value, ...}`` (forward, backward,
optimizer and EMA updates) and a ``TrainState`` naming what a checkpoint must hold; the loop
does the rest:

* a progress display (steps, loss, steps/s, time left);
* ``metrics.jsonl``: every ``log_every`` steps the mean of each metric since the last line;
* ``checkpoints/last.npz`` every ``checkpoint_every`` steps and at the end: every module, EMA
  and optimizer state, the step, the CPU random state and the metrics summed since the last
  log line on the ``log_every`` interval (so a resumed run's first line averages the steps an
  uninterrupted run's does, also past a finished run's last line off the interval), written
  atomically;
* a NaN guard: a non-finite metric stops training with ``TrainingDiverged`` naming the step,
  before anything is saved, so the last good checkpoint stays as it was; so does a checkpoint
  due after an update that left a weight (or optimizer or EMA array) non-finite while its
  step's loss, computed before it, was finite: saved, the run would resume into the same
  blow-up at any --lr.

A metric is a float or a 0-d Tensor. Tensors stay on their device until the loop needs the
numbers (at a log line, before a checkpoint, at the end), or ``READ_BACK_EVERY`` steps have
waited, and are then copied back all at once: reading a GPU loss every step would make Python
wait for the GPU to finish each step before it can queue the next. The NaN guard looks at
every step's metrics when they are read back, so it still names the first bad step, and
nothing is saved before it has looked.

Randomness that must repeat exactly after ``--resume`` is drawn from
``streams.stream(seed, Purpose.TRAINING_STEP, step)`` (a fresh generator per step,
``minilean/data/streams.py``) rather than from a global stream.
"""
import copy
import math
import os
import sys

import numpy

from minilean import atomic, backend
from minilean.autograd.shape import stack
from minilean.autograd.tensor import Tensor
from minilean.cuda import use_fast_kernels
from minilean.data.arrays import check_within_cap
from minilean.data.progress import Progress
from minilean.data.runlog import (LOCK_FILE, RUN_RECORDS, WRITTEN_FILE_FLAGS, RunDirectory,
                                  RunInUse, lock_run_directory, read_metrics, read_run_config,
                                  resumed_flags, seconds_at)
from minilean.errors import flag_error
from minilean.interrupts import raise_lost_interrupt
from minilean.optim.checkpoint import checkpoint_members, load_checkpoint, write_checkpoint
from minilean.threads import use_run_threads

CHECKPOINT = os.path.join("checkpoints", "last.npz")
# Steps whose metrics wait on the device at most: each waiting step holds its metric tensors
# (about 1 KB on the host, and on a GPU a pool block per metric), so a run logged and saved
# only every 10^6 steps held a gigabyte of losses; one read-back in 1000 steps costs nothing
READ_BACK_EVERY = 1000


class TrainingDiverged(ValueError):
    """A loss or metric became NaN or infinite, or samples drawn from the model did."""


class TrainState:
    """Everything a checkpoint holds: modules, optimizers and EMAs by name, the step, and the
    metrics of the steps since the last log line (``unlogged``: name -> sum, and their count)."""

    def __init__(self, modules, optimizers=None, emas=None, step=0):
        self.modules, self.optimizers = dict(modules), dict(optimizers or {})
        self.emas, self.step = dict(emas or {}), step
        self.unlogged_sums, self.unlogged_count = {}, 0

    def state_dict(self):
        return {"step": self.step, "rng": backend.get_rng_state(),
                "unlogged": {"sums": dict(self.unlogged_sums), "count": self.unlogged_count},
                "modules": {name: module.state_dict() for name, module in self.modules.items()},
                "optimizers": {name: optimizer.state_dict()
                               for name, optimizer in self.optimizers.items()},
                "emas": {name: ema.state_dict() for name, ema in self.emas.items()}}

    def load_state_dict(self, state):
        """Restore everything from ``state`` (a ``state_dict()``), or nothing: each owner checks
        all its arrays before it copies one, and when a later owner refuses its part, the
        owners already loaded are put back as they were."""
        before = copy.deepcopy(self.state_dict())  # a state_dict shares the live arrays
        try:
            self._load(state)
        except BaseException:
            self._load(before)
            raise

    def _load(self, state):
        for kind, owners in (("modules", self.modules), ("optimizers", self.optimizers),
                             ("emas", self.emas)):
            saved = state[kind]
            if set(saved) != set(owners):
                raise ValueError(f"checkpoint holds {kind} {sorted(saved)}, expected "
                                 f"{sorted(owners)}")
            for name, owner in owners.items():
                owner.load_state_dict(saved[name])
        backend.set_rng_state(state["rng"])
        self.step = int(state["step"])
        if self.step != state["step"] or self.step < 0:  # a resume keeps the metrics up to it
            raise ValueError(f"its step is {state['step']!r}; expected an integer >= 0")
        # checkpoints written before the sums were saved: the first line averages fewer steps
        unlogged = state.get("unlogged", {"sums": {}, "count": 0})
        try:
            self.unlogged_sums = {name: float(total) for name, total in unlogged["sums"].items()}
            self.unlogged_count = int(unlogged["count"])
        except (TypeError, KeyError, AttributeError, ValueError):
            raise ValueError(f"its unlogged metrics are {unlogged!r}; expected {{'sums': "
                             f"{{name: number}}, 'count': integer}}") from None

    def save(self, run_dir, members=None):
        """Write the checkpoint into ``run_dir``: ``members``, when given, are those that
        ``checkpoint_members()`` made (and the caller checked) before."""
        write_checkpoint(os.path.join(run_dir, CHECKPOINT),
                         self.checkpoint_members() if members is None else members)

    def checkpoint_members(self):
        """The checkpoint's members (``checkpoint.checkpoint_members``), its arrays on the host."""
        return checkpoint_members(**self.state_dict())

    def load(self, run_dir):
        path = os.path.join(run_dir, CHECKPOINT)
        try:
            self.load_state_dict(load_checkpoint(path))
        # a checkpoint of another model or size; TypeError: one whose entries are not of
        # their kind (rng state, logged sums)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"checkpoint {path} does not fit this run: {error}") from error


def prepare_device(config):
    """Check the device can run, set the CPU's BLAS threads (``--threads``), and switch the
    fast kernels on or off as the config says."""
    backend.check_device(config.device)
    if config.threads is not None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count()
        if cores and config.threads > cores:
            # each product waits for its slowest thread, and threads past the cores queue:
            # a VAE step took 0.5 s with 1 thread of a 2-core machine, 28 s with 16
            print(f"minilean: warning: --threads {config.threads} is more than the {cores} "
                  f"cores this process may use; the threads wait on each other, and a step "
                  f"can take many times longer", file=sys.stderr)
    # without --threads: the count there was before an earlier run in this process (``cli.main``
    # called twice) set its own, which changes the rounding of float32 sums (other weights)
    use_run_threads(config.threads)
    if config.fast_kernels and config.device != "cuda":
        print("minilean: --fast-kernels has no effect on the CPU", file=sys.stderr)
    # switched to what this run's config says, off too: the switch is the process's, and a
    # run without --fast-kernels after one with it in the same process (``cli.main`` called
    # twice) ran the kernels while its config.json said fast_kernels false
    use_fast_kernels(bool(config.fast_kernels) and config.device == "cuda")


def check_images(config, dataset):
    """The dataset of a command that trains on images must hold images. The data flags refuse
    ring8 for such commands; this refuses it where the flags did not see it, in a resumed
    run's saved config."""
    if not dataset.is_image:
        raise ValueError(f"{config.command} trains on images, but dataset {dataset.name!r} has "
                         f"rows of shape {dataset.x.shape[1:]}")


def check_halved_twice(config, image_shape, network):
    """``network`` (in words) halves the image side twice and doubles it back, so the data's
    height and width must be multiples of 4; checked on the loaded data (``--image-size`` is
    checked with the flags) before the run directory is written."""
    height, width = image_shape[1:]
    if height % 4 or width % 4:
        raise ValueError(f"{data_in_errors(config)}: images are {height}x{width}; {network} "
                         f"needs a height and width that are multiples of 4 (it halves them "
                         f"twice)")


def data_in_errors(config):
    """The run's data as an error names them: ``--x PATH``, as every --x error starts, else
    the dataset."""
    return f"--x {config.x}" if config.x else f"dataset {config.dataset!r}"


def check_same_data(config, dataset):
    """A resumed run must train on the data it began with: a file given by --x and changed
    since (replaced, edited, converted again) would be trained on unsaid, or, of another
    shape, stop at the checkpoint in the weights' words. The data's fingerprint (``Dataset.
    fingerprint``) is kept in ``config``, so that config.json saves it; a run saved before it
    was kept has none to compare."""
    now = dataset.fingerprint()
    then = getattr(config, "data_fingerprint", None)
    if config.resume and then is not None and then != now:
        raise ValueError(f"{data_in_errors(config)}: not the data the run {config.resume!r} "
                         f"began with ({data_change(then, now)}); resume it with those data, "
                         f"or start a new run")
    config.data_fingerprint = now


def data_change(then, now):
    """How two different data fingerprints differ, in words: of the same shape and dtype,
    "the same shape S D, other contents", else "then S D, now S' D'"."""
    shapes = [f"{tuple(data['shape'])} {data['dtype']}" for data in (then, now)]
    if shapes[0] == shapes[1]:
        return f"the same shape {shapes[1]}, other contents"
    return f"then {shapes[0]}, now {shapes[1]}"


def check_batch_fits(batch_size, rows, what):
    """--batch-size must not exceed the ``rows`` (``what``: their words) it is drawn from,
    said in the flag's words before the run rather than in the Loader's after it opened."""
    if batch_size > rows:
        raise ValueError(f"--batch-size {batch_size} is larger than the {rows} {what}")


def check_samples_fit(n_samples, image_shape):
    """--n-samples is refused before training when its float32 samples alone would pass the
    cap on arrays made in memory at once (``GENERATED_BYTES_CAP``): found when sampling, the
    lack of memory would end the run after its training. (A sampler holds a few arrays of
    that size, and the network's activations for ``--sample-batch`` samples.)"""
    check_within_cap("n_samples", n_samples, 4 * math.prod(image_shape),
                     f"images of shape {tuple(image_shape)}", "sampled")


def check_samples_finite(samples, made_by):
    """``samples`` (an array), checked before they are drawn: a NaN or an infinity means that
    training or sampling diverged, which the generic "images hold nan" of the image writer
    did not say (a GAN's NaN weights met it mid-training, before the NaN guard named the
    step). ``made_by`` says what made them ("the ddim sampler", "the generator at step 40")."""
    finite = numpy.isfinite(samples)
    if not finite.all():
        raise TrainingDiverged(f"{made_by} gave {finite.size - finite.sum()} nan or infinite "
                               f"values of {finite.size}: training or sampling diverged")
    return samples


def default_interval(steps, parts):
    """Every ``steps / parts`` steps (at least 1)."""
    return max(1, steps // parts)


# The flags that name a file or folder, read (the data) or written (the rest): saved as
# absolute paths, because a resumed run, perhaps started from another working directory, must
# read and write the same files.
FILE_FLAGS = ("x", "y", "data_root") + WRITTEN_FILE_FLAGS


def with_absolute_paths(config):
    """``config`` with the files its ``FILE_FLAGS`` name as absolute paths."""
    paths = {name: os.path.abspath(getattr(config, name)) for name in FILE_FLAGS
             if getattr(config, name, None) is not None}
    return type(config)(**{**vars(config), **paths}) if paths else config


# The flags that define a run's data, which a resumed run must keep: each command locks
# these and its model's own (its LOCKED_FLAGS).
LOCKED_DATA_FLAGS = ("dataset", "x", "y", "n_total", "image_size", "seed", "batch_size")


def run_config(config, locked):
    """The config a command runs with, its files as absolute paths (``with_absolute_paths``):
    the resumed run's (``resumed_config``) with ``--resume``; else ``config``, whose ``--out``
    must not hold a run already (``check_holds_no_run``). Once it is accepted, the notes of
    flags typed to no effect (``Command.check``'s ``unused_notes``, not saved) are printed:
    a run refused here prints its one-line error alone."""
    notes = vars(config).pop("unused_notes", ())
    config = with_absolute_paths(config)  # before a resume compares them with the saved ones
    if config.resume:
        config = resumed_config(config, locked)
    else:
        check_holds_no_run(config.out)
    for note in notes:
        print(note, file=sys.stderr)
    return config


def check_holds_no_run(out):
    """A new run's ``--out`` must not hold a run (a new run would overwrite its config, metrics
    and checkpoints), nor a run's files without its config.json: checked before any work, and
    again by ``open_run`` once it holds the directory's lock."""
    if os.path.isfile(os.path.join(out, "config.json")):
        raise flag_error("out", out, "a directory that holds no run yet (this one holds one: "
                                     "continue it with --resume, or remove it)")
    # a run's files without its config.json (lost, or never a minilean run's): a new run would
    # write over them, and --resume cannot continue them. An empty folder holds nothing to
    # replace: the checkpoints folder of a run stopped before it wrote its config.json. Nor
    # does the lock file (empty) of such a run: the new run locks it as its own
    found = [name for name in RUN_RECORDS if os.path.exists(os.path.join(out, name))
             and name != LOCK_FILE and not _empty_folder(os.path.join(out, name))]
    if found:
        raise flag_error("out", out, f"a directory that holds no run's files (this one holds "
                                     f"{found[0]}, which a new run would replace: move it "
                                     f"away, or choose another)")


def _empty_folder(path):
    return os.path.isdir(path) and not os.listdir(path)


def resumed_config(config, locked):
    """The config of a resumed run: the saved ``config.json`` of ``config.resume``, with the
    flags given now on top (``resumed_flags``). It must be a run of this command
    (``config.command``, when set). Flags in ``locked`` (what defines the model and its data)
    must not change; ``steps`` is the new total; the run continues in its own directory, so
    ``--out`` may only name that."""
    saved = read_run_config(config.resume, getattr(config, "command", None))
    given = set(config.given_flags)
    if "out" in given and os.path.abspath(config.out) != os.path.abspath(config.resume):
        raise flag_error("out", config.out, f"no --out with --resume (the run continues in "
                                            f"{config.resume!r})")
    for name in locked:
        if name in given and getattr(config, name) != saved.get(name):
            raise flag_error(name, getattr(config, name),
                             "it left out (the run being resumed has none)"
                             if saved.get(name) is None else
                             f"{saved.get(name)!r} (the value of the run being resumed)")
    resumed = type(config)(**resumed_flags(vars(config), saved))
    # what it was resumed from, for ``open_run`` to compare under the lock (not saved)
    resumed.saved_config = saved
    return resumed


def open_run(config, state):
    """The ``RunDirectory`` of ``config``: for a resumed run, after loading ``state`` from its
    checkpoint (whose step ``--steps``, the new total, must not be behind); else a new one.

    The directory is locked (``lock_run_directory``) first: a resumed run's before its
    checkpoint is read (a process still writing the run would stop it here, not after it read
    a checkpoint about to change); a new run's before ``--out`` is looked at again (a run that
    began and ended there while this one loaded its data would be written over).
    A run stopped before its first checkpoint resumes from step 0 with ``state`` as it is: the
    initialisation is seeded, so this repeats an uninterrupted run, and the metrics it logged
    are dropped as for any resume.

    A resume read config.json before the lock (``resumed_config``): another resume of the run,
    started with it, may have run to its end since and saved flags of its own (a new --lr).
    This one, whose model and data were built on the config read before, stops then: it would
    write the older flags back over that one's, and train on them."""
    saved_config = vars(config).pop("saved_config", None)
    RunDirectory.make_folder(config.out)
    lock = lock_run_directory(config.out)
    try:
        if not config.resume:
            check_holds_no_run(config.out)
            return RunDirectory(config.out, vars(config), lock=lock)
        if saved_config is not None \
                and read_run_config(config.out, getattr(config, "command", None)) != saved_config:
            raise RunInUse(f"run directory {config.out}: another minilean process resumed it "
                           f"while this one started (its config.json changed since this run "
                           f"read it); resume it again to continue from there")
        checkpoint = os.path.join(config.out, CHECKPOINT)
        if os.path.isfile(checkpoint):
            state.load(config.out)
        elif os.path.lexists(checkpoint):  # not "no checkpoint yet": that resume drops metrics
            raise ValueError(f"{checkpoint} is not a file; expected the run's checkpoint there "
                             f"(or nothing, for a run stopped before its first)")
        else:
            print(f"minilean: {config.out} holds no checkpoint yet (the run stopped before its "
                  f"first): starting again from step 0", file=sys.stderr)
        if config.steps < state.step:
            raise flag_error("steps", config.steps, f"an integer >= {state.step}, the step the "
                                                    f"resumed run has reached")
        # the lines up to the checkpoint's unlogged steps stay. A line of those steps (the last
        # line of a run that ended off its log interval) goes: continued, the run logs those
        # steps (their sums are in the checkpoint) with the next ones, as an uninterrupted run
        # does; resumed at its end, ``train`` logs that line again from the sums
        kept = state.step - state.unlogged_count
        # its seconds go on from the checkpoint's: those of its last line up to that step
        earlier = seconds_at(read_metrics(os.path.join(config.out, "metrics.jsonl")), state.step)
        return RunDirectory(config.out, vars(config), resume_step=kept, earlier_seconds=earlier,
                            lock=lock)
    except BaseException:
        if lock is not None:
            lock.close()
        raise


def train(state, step_fn, batches, steps, run, log_every, checkpoint_every, progress=True,
          description="train"):
    """Run ``step_fn`` from ``state.step`` up to ``steps``; returns the last logged record.

    ``batches`` is an iterator positioned at ``state.step`` (e.g. ``Loader.batches(start)``);
    ``run`` is the ``RunDirectory``.
    """
    display = Progress(total=steps, initial=state.step, description=description,
                       unit="step", enabled=progress)
    sums, count, record = dict(state.unlogged_sums), state.unlogged_count, None
    if state.step == steps and count:  # resumed at its end: its last line, off the interval
        record = run.log(steps, **{name: total / count for name, total in sums.items()})
    unread = []  # (step, metrics) of the steps since the metrics were last read back
    try:
        while state.step < steps:
            step = state.step + 1
            metrics = step_fn(next(batches), step)
            unread.append((step, {name: value.detach() if isinstance(value, Tensor) else value
                                  for name, value in metrics.items()}))
            state.step = step
            display.update(step)
            raise_lost_interrupt()  # a Ctrl-C that landed where Python could not raise it
            log_now = step % log_every == 0 or step == steps
            save_now = step % checkpoint_every == 0 or step == steps
            if not (log_now or save_now or len(unread) >= READ_BACK_EVERY):
                continue
            read = _read_back(unread)
            for done_step, values in read:
                _check_finite(run, done_step, values)
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + value
                count += 1
            unread = []
            display.update(step, **read[-1][1])  # this step's metrics
            if log_now:
                record = run.log(step, **{name: total / count for name, total in sums.items()})
                # the last step's line off the interval: its steps stay unlogged in the
                # checkpoint, so that a run continued past it logs them with the next ones
                if step % log_every == 0:
                    sums, count = {}, 0
            if save_now:
                state.unlogged_sums, state.unlogged_count = dict(sums), count
                members = state.checkpoint_members()  # its arrays copied to the host once
                _check_state_finite(run, step, members)
                run.check_in_place()  # the checkpoint's write would make a removed folder anew
                state.save(run.path, members)
    finally:
        display.close()
    return record


def _read_back(unread):
    """[(step, {name: float})] for the unread steps: each Tensor metric stacked on its device
    and copied to the host in one piece."""
    columns = {}
    for name in unread[0][1]:
        values = [metrics[name] for _, metrics in unread]
        if isinstance(values[0], Tensor):
            values = stack(values).numpy().tolist()
        columns[name] = [float(value) for value in values]
    return [(step, {name: column[index] for name, column in columns.items()})
            for index, (step, _) in enumerate(unread)]


def _check_finite(run, step, values):
    """Raise ``TrainingDiverged`` (after logging the bad step) when a metric is NaN or inf."""
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        run.log(step, **values)
        raise TrainingDiverged(f"{bad[0]} became {values[bad[0]]} at step {step}; stopped, "
                               f"{_kept_checkpoint(run)}")


def _check_state_finite(run, step, members):
    """Raise ``TrainingDiverged`` when an array among the checkpoint's ``members`` (host
    copies, ``TrainState.checkpoint_members``) of the modules, optimizers or EMAs holds a NaN
    or an infinity: the update of ``step`` made it so after its loss was computed. Checked on
    the copies the checkpoint writes, not on the device: one read of each array, not two."""
    for name, array in members.items():
        if name.split("/")[0] in ("modules", "optimizers", "emas") \
                and array.dtype.kind in "fc" and not numpy.isfinite(array).all():
            raise TrainingDiverged(f"{name} became nan or infinite in the update of step {step} "
                                   f"(its loss was finite); stopped, {_kept_checkpoint(run)}")


def _kept_checkpoint(run):
    """What a diverged run leaves to resume from, in words."""
    path = os.path.join(run.path, CHECKPOINT)
    # config.json already holds the flags of this attempt, a resume's --lr among them: a plain
    # --resume would take them again and meet the same blow-up
    return (f"the last good checkpoint (step {int(load_checkpoint(path)['step'])}) is kept in "
            f"{path}; --resume takes this attempt's flags again (give --lr to change its rate)"
            if os.path.isfile(path) else
            f"no checkpoint was written yet (--resume {run.path} starts again from step 0)")


def start_line(config, modules, data_shape, step):
    """The line a model command prints as its training starts: its networks (``modules``) and
    their parameters, the data and their shape, the device (``auto`` resolved) and the steps
    it trains (from ``step``: more than 0 on ``--resume``)."""
    networks = " + ".join(type(module).__name__ for module in modules)
    parameters = sum(p.numel() for module in modules for p in module.parameters())
    return (f"minilean {config.command}: {networks} ({parameters} parameters) on "
            f"{data_source(config)} {tuple(data_shape)}, device={config.device}, "
            f"steps {step}->{config.steps}")


def data_source(config):
    """What a run trains on, in words: its --x array, else its --dataset (which, given --x, is
    the default the run does not use)."""
    return config.dataset if config.x is None else config.x


def summary_line(summary):
    """``name=value`` for each entry of a run's summary, as the commands print it last:
    numbers to 4 significant digits, a report headed by a number of its own name (the
    FD-classifier's ``{"fd_classifier": distance, ...}``) by that number; other tables are
    left to summary.json."""
    words = []
    for name, value in summary.items():
        if isinstance(value, dict) and name in value:
            value = value[name]
        if isinstance(value, (dict, list)):
            continue
        words.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(words)


def write_trainlog(path, title, records, notes=()):
    """A TorchLean-style TrainLog JSON of the logged loss (values with 6 decimals)."""
    logged = [record for record in records if isinstance(record.get("loss"), (int, float))]
    atomic.write_json(path, {
        "title": title, "steps": [record["step"] for record in logged],
        "series": [{"values": [round(record["loss"], 6) for record in logged],
                    "name": "loss", "color": "#4e79a7"}],
        "notes": list(notes)})
