"""The command line: ``python -m minilean <command> --flag=value ...`` (python-fire).

This is the only module that turns errors into exit codes. Every command is declared, not
hand-parsed, and every flag is checked before any work starts:

* a bad flag (unknown name, stray positional word, wrong type, out of range, a boolean given
  as the string ``'false'``, conflicting aliases) prints ONE line on stderr that names the flag,
  the value and what is allowed, and exits with code 2;
* an expected failure while working (``ValueError``, ``TypeError``, ``FileNotFoundError``,
  ``OSError``, ``minilean.backend.DeviceError``, and ``MemoryError`` for sizes this machine
  cannot hold) prints one line and exits with code 1;
  ``MINILEAN_TRACEBACK=1`` re-raises it with the full traceback instead;
* Ctrl-C (``KeyboardInterrupt``) prints one line and exits with code 130; SIGTERM (``kill``, a
  batch system stopping a job) and SIGHUP (its terminal closed) stop a command the same way,
  with exit code 128 + the signal's number;
* a closed stdout (``| head``) ends the command without a word, with 141 (128 + SIGPIPE), as a
  pipeline's writers end.

Why not let fire check the flags? python-fire calls the function with its defaults *before* it
reports an unknown flag (a typo would start a five-minute training run), and it hands over
``--cpu=false`` as the truthy string ``'false'``. So each command function takes
``*positional, **flags``, and ``run_command`` checks them against the declared ``Flag`` list.

How to add a command (the pattern every model command follows)
----------------------------------------------------------------
1. Write the work as ``run(config)`` in ``minilean/train/<name>.py`` (``vae.py`` trains the
   model of ``minilean/models/vae.py``; ``diffusion.py``), where ``config`` is a
   ``types.SimpleNamespace`` of checked flag values (attribute names = flag names with ``_``).
   The CLI imports that module only when the command runs, so ``--help`` and flag errors stay
   instant.
2. Declare the flags: shared groups (``DEVICE_FLAGS``, ``data_flags()``, ``training_flags()``,
   ``run_dir_flags()``) with per-command defaults, plus a ``FlagGroup`` of your own ``Flag``s.
   A zoo command does this in one call, ``zoo_command`` (its ``run`` is
   ``minilean.train.<name>:run``)::

       VAE = zoo_command(
           "vae", "Train a variational autoencoder; ...", "Loss = -log p(x|z) ...",
           dict(steps=1200, lr=2e-3, batch_size=64),
           [Flag("arch", "conv", "network", choices=("mlp", "conv")),
            Flag("beta", 1.0, "weight of the KL term (1 = the ELBO)", low=0), ...])

   ``Flag(name, default, help, kind=None, choices=None, low=None, high=None, ...)``
   (``minilean/flags.py``): the kind comes from the default (bool, int, float, str) unless
   given (``pathlib.Path``: a text that names a file or folder); ``optional=True`` lets None
   through; ``required=True`` makes the flag mandatory; ``low``/``high`` bound numbers
   (``low_open``/``high_open`` make the bound strict); ``aliases`` maps extra spellings of a
   choice onto it; ``check(value)`` may return an error text for anything else. A group's
   ``resolve(config)`` may combine its flags after they are checked (``DEVICE_FLAGS`` turns
   ``--cpu``/``--cuda``/``auto`` into ``config.device``), and its ``check(values)`` raises a
   ``FlagError`` for a combination the model cannot run (a U-Net needs ``--image-size`` a
   multiple of 4): it sees the values the run will use, a resumed run's saved ones included,
   so limits are found before anything is written.
3. Append the ``Command`` to ``COMMANDS`` below. ``--help`` is generated from the declaration.

A plain fire-style function or class (``data download``, ``data convert image-folder``) plugs in
through ``guard(obj)`` instead: the ``Flag``s it declares with ``minilean.flags.flag_checked``
(which check a Python caller's values too) become its flags, so it gets the same
unknown-flag, positional and boolean checks without a second declaration.
"""
import contextlib
import difflib
import importlib
import inspect
import itertools
import os
import re
import signal
import sys
import threading
import types
from pathlib import Path

import numpy

from minilean import heap
from minilean.backend import DeviceError
from minilean.data.images import output_image
from minilean.data.arrays import (DATA_FLAGS, DATASETS, READ_FROM_DATA_ROOT,
                                  check_labels_come_with_images)
from minilean.data.paths import output_file, output_folder
from minilean.data.runlog import (RUN_RECORDS, WRITTEN_FILE_FLAGS, read_run_config,
                                  resumed_flags)
from minilean.data.streams import KEY_LIMIT
from minilean.errors import FlagError, exit_interrupted, flag_error
from minilean.flags import Flag
from minilean.interrupts import catch_lost_interrupts, raise_lost_interrupt

PROGRAM = "python -m minilean"
FIRE_NAME = "minilean"  # fire quotes a name with spaces in its help


# --- groups of flags ------------------------------------------------------------------------

class FlagGroup:
    """Flags shown together under a title, with an optional ``resolve(config)`` step and an
    optional ``check(values)`` of limits between flags (raising ``FlagError``), which sees the
    values the run will use (a resumed run's included)."""

    def __init__(self, title, flags, resolve=None, check=None):
        self.title, self.flags, self.resolve, self.check = title, list(flags), resolve, check

    def with_defaults(self, **defaults):
        """A copy whose named flags get new defaults (a command's own choice of defaults)."""
        names = {flag.name for flag in self.flags}
        unknown = sorted(set(defaults) - names)
        if unknown:
            raise KeyError(f"group {self.title!r} has no flag(s) {unknown}")
        flags = [flag.with_default(defaults[flag.name]) if flag.name in defaults else flag
                 for flag in self.flags]
        return FlagGroup(self.title, flags, self.resolve, self.check)


def _resolve_device(config):
    """``--cpu``/``--cuda`` are aliases of ``--device``; ``auto`` picks cuda when usable."""
    aliases = [name for name in ("cpu", "cuda") if getattr(config, name)]
    if len(aliases) == 2:
        raise FlagError("--cpu and --cuda: got both; expected at most one of them")
    if aliases:
        if config.device not in ("auto", aliases[0]):
            raise FlagError(f"--device: got {config.device!r} together with --{aliases[0]}; "
                            f"expected one device")
        config.device = aliases[0]
    if config.device == "auto":
        from minilean.backend import cuda_available
        config.device = "cuda" if cuda_available() else "cpu"


DEVICE_FLAGS = FlagGroup("device", [
    Flag("device", "auto", "where to compute: auto (cuda when a GPU answers, else cpu), "
         "cpu (NumPy) or cuda (CuPy)", choices=("auto", "cpu", "cuda")),
    Flag("cpu", False, "alias for --device=cpu"),
    Flag("cuda", False, "alias for --device=cuda"),
    Flag("fast_kernels", False, "use minilean's hand-written CUDA kernels where they exist "
         "(cuda only)"),
    Flag("threads", None, "CPU threads of the matrix products (the BLAS library's; default: "
         "its own choice, usually one per core). On a machine busy with other work, 1 can be "
         "several times faster; results differ in the last bits between thread counts",
         kind=int, low=1),
], resolve=_resolve_device)


def _typed_now(values):
    """The flags typed on this command line: a resumed run's values carry them as
    ``typed_now`` (their ``given_flags`` hold those typed at the run's start too)."""
    return getattr(values, "typed_now", values.given_flags)


def _check_data(values):
    """A check (not a resolve step), so that it sees a resumed run's saved --x: ``--resume RUN
    --y Y`` of a run of --x and --y was refused as "--y alone", and ``--resume RUN --dataset
    builtin`` taken in silence, the run going on with its --x."""
    check_labels_come_with_images(values.x, values.y)
    # --x replaces --dataset: both typed is a conflict to name, not one to settle unsaid. On
    # --resume, a --dataset typed now (an --x typed now that is not the run's own is refused
    # as a change of its data, naming --x)
    if values.x is not None and "dataset" in _typed_now(values):
        raise flag_error("dataset", values.dataset, "no --dataset with --x (the run trains on "
                                                    "the --x array instead)")


# The datasets of points, not images (``Dataset.is_image`` false): only gan trains on them
POINT_DATASETS = ("ring8",)


def _check_image_data(values):
    """``_check_data`` for a command that trains on images only: a dataset of points is
    refused here, from the flags, not after loading it (its rows' shape is known by name).
    A resumed run's saved one was never typed (config.json edited): ``check_images`` refuses
    it, naming the run's data."""
    _check_data(values)
    if values.x is None and values.dataset in POINT_DATASETS and "dataset" in _typed_now(values):
        images = ", ".join(name for name in DATASETS if name not in POINT_DATASETS)
        raise flag_error("dataset", values.dataset, f"one of {images} ({values.command} works "
                                                    f"on images; {values.dataset} is 2-D "
                                                    f"points, for gan)")


def data_flags(points=False, **defaults):
    """The dataset flags (shared by every model command), with per-command defaults;
    ``points``: whether the command takes the datasets of points too (``POINT_DATASETS``)."""
    return FlagGroup("data", DATA_FLAGS, check=_check_data if points
                     else _check_image_data).with_defaults(**defaults)


def _image_size_unused(values):
    """--image-size sizes the generated images (builtin, digits) only."""
    if values.x is not None:
        return "with --x (its images keep their own size)"
    if values.dataset not in ("builtin", "digits"):
        kind = "points" if values.dataset in POINT_DATASETS else "images"
        return f"with --dataset {values.dataset} (its {kind} keep their own size)"
    return None


def _data_root_unused(values):
    """--data-root is the folder of the datasets read from files by name (cifar10, imagenet64)."""
    if values.x is not None:
        return "with --x (the array is read from its own path)"
    if values.dataset not in READ_FROM_DATA_ROOT:
        return (f"with --dataset {values.dataset} (only {' and '.join(READ_FROM_DATA_ROOT)} are "
                f"read from it)")
    return None


# the notes of the shared data flags, for every command that reads data
DATA_FLAGS_UNUSED = {"image_size": _image_size_unused, "data_root": _data_root_unused}


def training_flags(**defaults):
    """Optimisation flags shared by every training command, with per-command defaults."""
    return FlagGroup("training", [
        Flag("seed", 0, "seed of every random choice (data order, noise, initial weights)",
             low=0, high=KEY_LIMIT - 1),
        Flag("steps", 1000, "optimizer steps", low=1),
        Flag("lr", 1e-3, "Adam learning rate", low=0, low_open=True),
        Flag("batch_size", 32, "images per step", low=1),
        Flag("ema", 0.999, "decay of the exponential moving average of the weights used for "
             "sampling (0 disables it)", low=0, high=1, high_open=True),
        Flag("log_every", None, "write a metrics line, the mean of the steps since the one "
             "before, every N steps (default: --steps/100; on --resume, of the new --steps "
             "from the resumed step on, as a run of that many steps would)", kind=int, low=1),
        Flag("checkpoint_every", None, "write a checkpoint every N steps (default: --steps/4, "
             "on --resume of the new --steps; a final one is always written)", kind=int,
             low=1),
    ]).with_defaults(**defaults)


def _check_written_files_spare_the_run(values):
    """A file a flag names must not be the run directory (it would be found out only when the
    file is written, after the whole run), nor one of the records the run reads back or reports
    (``RUN_RECORDS``: a TrainLog written over config.json leaves a run that cannot resume), nor
    the data it reads (--x, --y), nor the file another flag names (the later write would
    replace the earlier one unsaid). Paths are compared where they lead: a link named as
    --log to the --x file would have the TrainLog written over the training data."""
    run = os.path.realpath(values.out)
    taken = [os.path.join(run, record) for record in RUN_RECORDS]
    read = {_file_identity(getattr(values, name)): name for name in ("x", "y")
            if getattr(values, name, None)}
    named = {}  # the file a flag names (``_file_identity``) -> that flag
    for name in WRITTEN_FILE_FLAGS:
        value = getattr(values, name, None)
        path = value and os.path.realpath(value)
        if path and (path == run or any(path == record or path.startswith(record + os.sep)
                                        for record in taken)):
            raise flag_error(name, value, f"a path other than the run directory {values.out} "
                                          f"and its records ({', '.join(RUN_RECORDS)})")
        identity = path and _file_identity(value)
        if identity in read:
            raise flag_error(name, value, f"a path other than --{read[identity]}'s (the run "
                                          f"reads its data there; writing it would replace "
                                          f"them)")
        if identity in named:
            other = "--" + named[identity].replace("_", "-")
            raise flag_error(name, value, f"a path other than {other}'s (both would write "
                                          f"it, the later over the earlier)")
        if identity:
            named[identity] = name


def _file_identity(path):
    """What tells two names of one file apart from two files: an existing file's device and
    inode (hard links share them), else the path with every link resolved."""
    try:
        status = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return status.st_dev, status.st_ino


def run_dir_flags(out, **defaults):
    """Where a run writes, and how to continue one."""
    return FlagGroup("run directory", [
        Flag("out", out, "run directory: config.json, metrics.jsonl, loss curve, images, "
             "checkpoints, summary.json (a new run will not overwrite one already there)",
             kind=Path, check=output_folder("the run's files")),
        Flag("resume", None, "continue the run in this directory (a run of this command) "
             "from its last checkpoint", kind=Path),
        Flag("log", None, "also write a TorchLean-style TrainLog JSON here "
             "(false/off/none: do not): the loss of each metrics line, the training batches' "
             "mean since the line before, at --log-every steps (TorchLean's curve is one fixed "
             "sample's loss every steps/50, written by default)", kind=Path,
             check=output_file()),
        Flag("progress", True, "show a progress bar (plain lines when output is not a "
             "terminal)"),
    ], check=_check_written_files_spare_the_run).with_defaults(**defaults)


# --- commands -------------------------------------------------------------------------------

class Command:
    """A named command: its flag groups and the ``run(config)`` that does the work.

    ``run`` is a callable or a ``"module:function"`` text, imported only when the command runs.
    """

    def __init__(self, name, summary, run, groups, details="", unused=None):
        self.name, self.summary, self.details = name, summary, details
        self._run, self.groups = run, list(groups)
        # {flag name: unused(values)}: the words that say why a typed flag has no effect with
        # the rest of the command line ("with --sampler ddpm"), or None where it has one
        self.unused = dict(unused or {})
        self.flags = {flag.name: flag for group in self.groups for flag in group.flags}
        if sum(len(group.flags) for group in self.groups) != len(self.flags):
            raise ValueError(f"command {name!r} declares a flag twice")

    def parse(self, positional, given, texts=None):
        """Check every given flag and return the full config (defaults filled in).

        ``given``: fire's reading of each flag; ``texts``: what was typed for them, where known
        (``Flag.parse`` reads an integer from the text, which fire may have rounded)."""
        texts = texts or {}
        if positional:
            raise FlagError(_unexpected_argument(positional[0], self.name))
        for name in given:
            if name not in self.flags:
                raise _unknown_flag(self.name, name, given[name], self.flags)
        for name, flag in self.flags.items():
            if flag.required and name not in given:
                raise FlagError(f"{flag.option}: missing; expected {flag.allowed()} "
                                f"(see {PROGRAM} {self.name} --help)")
        # --noNAME (fire's False) of a flag that may be none is none, as --NAME=false is
        given = {name: None if value is False and self.flags[name].kind is not bool
                 and self.flags[name].optional else value for name, value in given.items()}
        for name, value in given.items():
            flag = self.flags[name]
            if value is False and flag.kind is not bool:
                raise _negated_value_flag(flag)
            if value is True and flag.kind is not bool and texts.get(name) is None:
                # fire's True for a flag typed with no value after it (--steps --lr 1e-3)
                raise FlagError(f"{flag.option}: got no value; expected {flag.allowed()}")
        config = types.SimpleNamespace(**{
            name: flag.parse(given[name], text=texts.get(name)) if name in given
            else flag.default
            for name, flag in self.flags.items()})
        config.given_flags = sorted(given)  # what the user typed (a resumed run keeps these)
        config.command = self.name  # saved in config.json: --resume refuses another's run
        for group in self.groups:
            if group.resolve:
                group.resolve(config)
        self.check(config)
        return config

    def check(self, config):
        """Run the groups' ``check``s on the values the run will use: with ``--resume``, the
        resumed run's (its saved flags with the ones given now on top), which must be a run
        of this command, its saved values ones its flags accept."""
        values, judged = config, list(config.given_flags)
        if getattr(config, "resume", None):
            saved = read_run_config(config.resume, self.name)
            self.check_saved(saved, config.resume, config.given_flags)
            values = types.SimpleNamespace(**resumed_flags(vars(config), saved))
            values.typed_now = config.given_flags  # given_flags: those of its start too
            # a flag typed before that had an effect then and has none with the flags typed
            # now (a saved --eta, then --sampler ddpm) was taken in silence: only flags typed
            # now were judged. One said before is not said again at each resume
            before = types.SimpleNamespace(**{**vars(values), **saved})
            judged += [name for name in saved.get("given_flags", ())
                       if name in self.unused and name not in judged
                       and not self.unused[name](before)]
        for group in self.groups:
            if group.check:
                group.check(values)
        # said, not refused (as --fast-kernels on the CPU): the run is what was asked for
        # without them, but a flag taken in silence reads as one that worked. ``run_config``
        # prints them once the run is accepted (a refused resume says its error alone)
        reasons = [(self.flags[name].option, self.unused[name](values))
                   for name in judged if name in self.unused]
        notes = [f"minilean {self.name}: {option} has no effect {reason}"
                 for option, reason in reasons if reason]
        if notes:
            config.unused_notes = notes

    def check_saved(self, saved, run_dir, given=()):
        """A resumed run's saved flag values, checked as a Python caller's would be: a
        config.json edited by hand or written by another version would otherwise fail later,
        in a comparison's words. The paths of the data are left to the run, which reads
        them; those of the files it writes (``WRITTEN_FILE_FLAGS``) are checked now, as on a
        new run: their checks are of the file system today (a folder removed since, a .png
        where Pillow is gone), and the run would find out only when it writes them, at its
        end. A flag ``given`` now replaces its saved value, which is then not used (and
        giving it is how a bad saved value is mended)."""
        for name, value in saved.items():
            flag = self.flags.get(name)
            if flag is None or name in given:
                continue
            if flag.kind is Path:
                if name in WRITTEN_FILE_FLAGS and value is not None:
                    try:  # the flag's own one-line error (exit 2), told where the value is
                        flag.parse(value, typed=True)
                    except FlagError as error:
                        raise FlagError(f"{error} (the value saved in {run_dir}'s config.json; "
                                        f"give {flag.option} to replace it)") from None
                continue
            try:
                flag.parse(value, typed=True)
            except FlagError as error:
                raise ValueError(f"--resume {run_dir}: config.json holds a value this command "
                                 f"cannot use: {error}") from None

    def run(self, config):
        function = _load(self._run) if isinstance(self._run, str) else self._run
        return function(config)

    def help_text(self):
        lines = [f"usage: {PROGRAM} {self.name} [--flag=value ...]", "", self.summary]
        if self.details:
            lines += ["", self.details]
        for group in self.groups:
            lines += ["", f"{group.title} flags:"]
            for flag in group.flags:
                default = "required" if flag.required else \
                    f"default: {_show_default(flag.default)}"
                lines.append(f"  {flag.option}={flag.kind.__name__.upper()}    {default}")
                lines.append(f"      {flag.help}; {flag.allowed()}")
        return "\n".join(lines)

    def fire_function(self, texts=None):
        """The function fire calls: it takes anything, and ``run_command`` checks it (with
        ``texts``, the words typed for the flags)."""
        def command(*positional, **flags):
            run_command(self, positional, flags, texts)
        command.__name__ = self.name.split()[-1].replace("-", "_")
        command.__doc__ = self.summary
        return command


def _unexpected_argument(word, command):
    return (f"unexpected argument {word!r}; expected flags only, written --name=value "
            f"(see {PROGRAM} {command} --help)")


def _show_default(value):
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


def _as_typed(name):
    """The option the user typed for a name fire hands over. fire reads a valueless
    ``--noNAME`` as NAME=False, so ``--no-NAME`` (and ``--no_NAME``) arrive as ``_NAME``."""
    return "--no-" + name[1:].replace("_", "-") if name.startswith("_") else \
        "--" + name.replace("_", "-")


def _negated_value_flag(flag):
    """The error for ``--noNAME`` (fire's NAME=False; ``--NAME=False`` gives the same, so both
    are named) where NAME is a flag that takes a value and cannot be none: it says how to give
    that value, instead of calling False the value."""
    return FlagError(f"{flag.negation} (or {flag.option}=False): {flag.option} is no boolean "
                     f"to turn off; expected {flag.option}=VALUE, {flag.allowed()}")


# Names other code gives a flag of ours, for the "did you mean" hint: only true synonyms
# (the same quantity in the same unit; --epochs counts passes over the data, not steps).
# difflib alone would take --timesteps for --steps, the training steps, not the diffusion T.
FLAG_SYNONYMS = {"timesteps": "T", "num_timesteps": "T", "learning_rate": "lr",
                 "bs": "batch_size"}


def _same_flag(name):
    """The flag of some command that ``name`` means for sure: a synonym (``FLAG_SYNONYMS``)
    or the name in another case (--t for --T); else ``name`` itself."""
    lowered = name.lower()
    if lowered in FLAG_SYNONYMS:
        return FLAG_SYNONYMS[lowered]
    declared = {flag for command in COMMANDS for flag in command.flags}
    return next((flag for flag in sorted(declared) if flag.lower() == lowered), name)


def _unknown_flag(command, name, value, known):
    """The error for a name ``command`` has no flag of, naming the option as typed: a
    ``--no-NAME`` (see ``_as_typed``) of a boolean is told the spellings that turn it off, a
    flag named no... given no value (``--noisy-ppm``, read as isy_ppm=False) is named whole,
    and any other False is fire's reading of a valueless ``--noNAME`` (``--NAME=False`` would
    give it too, but the help offers ``--NAME=false``, a text), so it is named ``--noNAME``."""
    see = f"see {PROGRAM} {command} --help"
    dashed = value is False and name.startswith("_")
    bare = name[1:] if dashed else name  # the name typed after --no-
    if dashed and bare in known and known[bare].kind is bool:
        flag = known[bare]
        return FlagError(f"{_as_typed(name)}: no such flag; expected {flag.negation} or "
                         f"{flag.option}=false ({see})")
    if value is False and "no" + name in known:
        flag = known["no" + name]
        return FlagError(f"{flag.option}: got no value; expected {flag.allowed()}")
    meant = _same_flag(bare)
    elsewhere = [] if meant in known else [other.name for other in COMMANDS
                                           if meant in other.flags]
    close = difflib.get_close_matches(bare, list(known), n=1)
    if elsewhere:  # a flag of another command: a near name here would be a wrong guess
        it = "it" if meant == bare else "--" + meant.replace("_", "-")
        hint = f"only {', '.join(elsewhere)} {'has' if len(elsewhere) == 1 else 'have'} {it};"
    elif meant != bare:  # the same flag, spelled as elsewhere: surer than the nearest name
        hint = f"did you mean --{meant.replace('_', '-')}?"
    elif close:
        hint = f"did you mean --{close[0].replace('_', '-')}?"
    else:
        hint = "no such flag;"
    wanted = f"a flag of '{command}' ({hint} {see})"
    if value is False:  # fire's False is no value the user gave
        typed = _as_typed(name) if dashed else "--no" + name.replace("_", "-")
        return FlagError(f"{typed}: expected {wanted}")
    return flag_error(name, value, wanted)


def _load(target):
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where the command is as Ctrl-C's ``KeyboardInterrupt`` is, so that
    it unwinds the same way: a write in progress removes its temporary file, the last
    checkpoint stays whole. Without this, SIGTERM ends the process on the spot."""

    def __init__(self, signal_number):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # Windows has no SIGHUP


def _raise_stopped(signal_number, frame):
    # a second stop, of either kind (a terminal closed after a kill), must not cut the
    # unwinding short: a temporary file would be left, and no line would say why it stopped
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is _raise_stopped:
            signal.signal(number, signal.SIG_IGN)
    raise Stopped(signal_number)


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM and SIGHUP raise ``Stopped`` inside the block; the handlers before it are put
    back after. Only a signal left to its default (ending the process) is taken: one a parent
    ignores stays ignored (``nohup`` ignores SIGHUP so that a run outlives its terminal).
    Signals can be handled only in the main thread: elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {number: signal.signal(number, _raise_stopped) for number in STOP_SIGNALS
              if signal.getsignal(number) == signal.SIG_DFL}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def run_command(command, positional, flags, texts=None):
    """Check the flags, run the command, and turn expected errors into one line + exit code."""
    try:
        if flags.keys() & {"help", "h"}:
            print(command.help_text())
            return
        config = command.parse(positional, flags, texts)
        # a loss that overflows is reported by the NaN guard, in one line that names the step;
        # NumPy would first print a warning and a source line per overflowing operation
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                _stop_signals(), catch_lost_interrupts():
            command.run(config)
            raise_lost_interrupt()  # one the work could not stop on: it still ends interrupted
    except FlagError as error:
        _fail(command.name, error, 2)
    except BrokenPipeError:  # stdout's reader went away (| head): nothing is left to tell it
        _end_quietly_on_a_closed_pipe()
    # MemoryError: sizes this machine cannot hold (NumPy's message says how much it asked for)
    except (ValueError, TypeError, FileNotFoundError, DeviceError, OSError, MemoryError) as error:
        _fail(command.name, error, 1)
    except Stopped as stop:
        print(f"minilean {command.name}: stopped by {stop}", file=sys.stderr)
        sys.exit(128 + stop.signal_number)
    except KeyboardInterrupt:
        exit_interrupted(f"minilean {command.name}")


def _print_any_path():
    """Let stdout print any path, as stderr does: a file name that is not UTF-8 (bytes that
    Python holds as surrogates) met a strict UTF-8 stdout (a UTF-8 locale, or
    PYTHONIOENCODING=utf-8), and the "wrote RUN" line of a finished run ended it with "error:
    'utf-8' codec can't encode character '\\udcff'" and exit code 1. Written as stderr writes
    it (backslashreplace), the path reads as in the errors about it; a stdout that writes the
    bytes back (surrogateescape, the C locale's) is left as it is."""
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")


def _end_quietly_on_a_closed_pipe():
    """End as a pipeline's writer does when its reader has gone, without a word, 128 + SIGPIPE
    (13). stdout goes to /dev/null first: Python's flush at exit would fail on the pipe again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(128 + 13)


def _fail(name, error, code):
    if os.environ.get("MINILEAN_TRACEBACK") == "1":  # as documented: =0 or empty keeps it short
        raise error
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"minilean {name}: error: {message}", file=sys.stderr)
    sys.exit(code)


# --- plain fire functions and classes, guarded ---------------------------------------------

def command_from_function(function, name=None):
    """A ``Command`` whose flags are those ``function`` declares with
    ``minilean.flags.flag_checked``."""
    name = name or function.__name__.replace("_", "-")
    flags = getattr(function, "flags", None)
    if flags is None:
        raise TypeError(f"{name}: a guarded function declares its flags with "
                        f"minilean.flags.flag_checked")
    summary = (function.__doc__ or name).strip().splitlines()[0]
    return Command(name, summary, lambda config: function(**{
        flag.name: getattr(config, flag.name) for flag in flags}),
                   [FlagGroup(name, list(flags))])


def guard(component, name, texts=None):
    """Wrap a fire-style function, or every public method of an object (recursively), so it
    gets the same flag checks as a declared ``Command``; ``name`` is its command path,
    ``texts`` the words typed for the flags."""
    if inspect.isfunction(component) or inspect.ismethod(component):
        return command_from_function(component, name).fire_function(texts)
    members = {member: getattr(component, member) for member in dir(component)
               if not member.startswith("_")}
    namespace = types.SimpleNamespace(**{
        member: guard(value, f"{name} {member.replace('_', '-')}", texts)
        for member, value in members.items() if callable(value) or hasattr(value, "__dict__")})
    namespace.__doc__ = inspect.getdoc(component)
    return namespace


# --- limits between flags, that a model's code sets (group checks) --------------------------

def _sized_by_flag(values):
    """Whether --image-size sets the images' side: for the built-in shapes and digits (an --x
    array and the real datasets bring their own size)."""
    return values.x is None and values.dataset in ("builtin", "digits")


def _check_halved_twice(values, network):
    """``network`` (in words) halves the image side twice with stride-2 layers and doubles it
    back: --image-size must be a multiple of 4, or the output comes back smaller."""
    if _sized_by_flag(values) and values.image_size % 4:
        raise flag_error("image_size", values.image_size, f"a multiple of 4 for {network} (it "
                                                          f"halves the side twice)")


def _check_diffusion_model(values):
    if values.arch == "unet":  # the residual net keeps the size and takes any width
        if values.hidden_c < 2:  # see unet.norm_groups: a group needs two channels
            raise flag_error("hidden_c", values.hidden_c, "an integer >= 2 for --arch unet "
                                                          "(its GroupNorm groups need 2 channels)")
        _check_halved_twice(values, "--arch unet")


def _check_reconstruct_step(values):
    """The reconstruction noises real images to a timestep of the schedule, 0..T-1."""
    if values.reconstruct_step is not None and values.reconstruct_step >= values.T:
        raise flag_error("reconstruct_step", values.reconstruct_step,
                         f"an integer >= 0 and <= {values.T - 1} (a timestep of --T {values.T})")


def _check_lr_schedule(values):
    """The cosine must not end before the run does (the steps after its horizon would train
    at learning rate 0), nor a warm-up the user gave run past the horizon (the rate would
    never reach --lr). On a resumed run --steps is the new total. The default warm-up is
    left alone: refusing it would refuse every run shorter than it."""
    if values.lr_schedule != "cosine":
        return
    if values.lr_decay_steps is not None and values.lr_decay_steps < values.steps:
        raise flag_error("lr_decay_steps", values.lr_decay_steps,
                         f"an integer >= --steps {values.steps} (the cosine reaches 0 there; "
                         f"the steps after it would train at learning rate 0)")
    horizon, named = ((values.lr_decay_steps, "--lr-decay-steps") if values.lr_decay_steps
                      else (values.steps, "--steps"))
    if "warmup_steps" in values.given_flags and values.warmup_steps > horizon:
        raise flag_error("warmup_steps", values.warmup_steps,
                         f"at most {horizon}, the cosine's horizon ({named}); a longer warm-up "
                         f"never reaches --lr")


def _in_warm_up(values):
    """The schedule after the warm-up (--lr-schedule, the cosine's --lr-decay-steps) shapes
    no step of a run that ends inside the warm-up: every rate is the warm-up's ramp (the
    default warm-up, 100 steps, is longer than many a short run)."""
    if values.steps <= values.warmup_steps:
        return (f"with --steps {values.steps} inside the --warmup-steps {values.warmup_steps} "
                f"warm-up (the run ends before the schedule after it starts)")
    return None


def _check_conv_arch(values):
    """vae and autoencoder: the conv encoder halves twice; the MLP takes any size."""
    if values.arch == "conv":
        _check_halved_twice(values, "--arch conv")


def _check_mae(values):
    if values.width % values.heads:
        raise flag_error("heads", values.heads, f"a divisor of --width {values.width} (each "
                                                f"head takes an equal share of it)")
    from minilean.models.mae import decoder_heads as decoder_heads_for
    decoder_heads = decoder_heads_for(values.heads)
    if values.decoder_width % decoder_heads:
        raise flag_error("decoder_width", values.decoder_width,
                         f"a multiple of {decoder_heads}, the decoder's heads (half of --heads "
                         f"{values.heads})")
    size = values.image_size
    if _sized_by_flag(values) and (size % values.patch_size or values.patch_size == size):
        raise flag_error("patch_size", values.patch_size,
                         f"a divisor of --image-size {size} smaller than it (the image is cut "
                         f"into patches; at least one is hidden and one seen)")


# --- the commands ---------------------------------------------------------------------------

DIFFUSION = Command(
    "diffusion",
    "Train a denoising diffusion model (DDPM, v prediction) and write samples.",
    run="minilean.train.diffusion:run",
    details="Trains, then samples from the EMA weights with --sampler and writes a sample grid, "
            "the loss curve, checkpoints and summary.json (with FD-classifier) into --out.",
    groups=[
        DEVICE_FLAGS,
        data_flags(image_size=16),
        training_flags(steps=1500, lr=3e-3, batch_size=32, ema=0.996),
        FlagGroup("speed", [
            Flag("cuda_graph", False, "capture the loss and gradient computation of a step "
                 "as one CUDA graph at the first step and replay it, and the network of each "
                 "sampler step likewise (cuda only; the same numbers up to float32 rounding, "
                 "far fewer kernel launches from Python; with --fast-kernels, Adam and EMA "
                 "add one launch each)"),
        ]),
        FlagGroup("model", [
            Flag("arch", "unet", "the network (it predicts what --prediction says): unet "
                 "(time embedding, GroupNorm, attention) or residual (TorchLean's compact "
                 "conv net)",
                 choices=("unet", "residual")),
            Flag("hidden_c", 24, "base channel count of the network (unet: at least 2)", low=1),
        ], check=_check_diffusion_model),
        FlagGroup("learning rate", [
            Flag("lr_schedule", "cosine", "after the warm-up: cosine decay to 0 at "
                 "--lr-decay-steps, or constant", choices=("cosine", "constant")),
            Flag("warmup_steps", 100, "steps of linear learning-rate warm-up (given with "
                 "cosine: at most its horizon, --lr-decay-steps or --steps)", low=0),
            Flag("lr_decay_steps", None, "step where the cosine reaches 0 (default: --steps; "
                 "at least --steps: give the final total when a run will be resumed further)",
                 kind=int, low=1),
        ], check=_check_lr_schedule),
        FlagGroup("diffusion", [
            Flag("T", 200, "number of diffusion timesteps", low=1),
            Flag("schedule", "cosine", "beta schedule", choices=("linear", "cosine")),
            Flag("beta_start", 1e-4, "first beta of the linear schedule", low=0, high=1,
                 high_open=True),
            Flag("beta_end", 0.1, "last beta of the linear schedule (TorchLean's default "
                 "is 0.12, with T = 100; this one matters only with --schedule linear, and "
                 "not with --T 1, whose one beta is --beta-start)",
                 low=0, high=1, high_open=True),
            Flag("prediction", "v", "what the network predicts: eps (the noise, DDPM) or v "
                 "(sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0; no error blow-up near "
                 "alpha_bar = 0)", choices=("eps", "v")),
        ]),
        FlagGroup("sampling", [
            Flag("sampler", "ddpm", "reverse process: ddpm (ancestral), ddim or pf-euler "
                 "(probability-flow ODE, Euler)", choices=("ddpm", "ddim", "pf-euler")),
            Flag("sample_steps", 50, "sampler steps: ddim takes that many of the T timesteps "
                 "(all T when it is T or more), pf-euler that many Euler steps; ddpm uses all "
                 "T", low=1),
            Flag("eta", 0.0, "DDIM noise scale: 0 deterministic, 1 DDPM-like (above 1 "
                 "the noise would need more variance than the step has)", low=0, high=1),
            Flag("clip", True, "ddpm and ddim (and the reconstruction): clip each step's "
                 "predicted x0 to [-1, 1]; pf-euler, which predicts no x0: clamp the final "
                 "samples to [-1, 1] (the images written are clamped either way: for "
                 "pf-euler --noclip only makes an overflowed sample an error)"),
            Flag("n_samples", 128, "images to sample (the grid shows 64) and to measure "
                 "FD-classifier on: the first 500 of them at most, the size of its reference "
                 "sets (fewer where the data hold fewer images; evaluate --n-eval scores "
                 "more)", low=1),
            Flag("sample_batch", 256, "images through the network at once while sampling "
                 "(its memory grows with this, not with --n-samples; the samples do not "
                 "depend on it)", low=1),
            Flag("evaluate", True, "measure FD-classifier of the samples (trains a small "
                 "classifier once, cached)"),
            Flag("sample_ppm", None, "also write the sample grid to this PPM path",
                 kind=Path, check=output_image),
            Flag("reference_ppm", None, "write a grid of real training images here",
                 kind=Path, check=output_image),
            Flag("noisy_ppm", None, "write the images noised to --reconstruct-step here",
                 kind=Path, check=output_image),
            Flag("reconstruct_ppm", None, "write their DDIM reconstruction here",
                 kind=Path, check=output_image),
            Flag("reconstruct_step", None, "timestep of the noisy/reconstruction images "
                 "(default T/4; at most T-1)", kind=int, low=0),
        ], check=_check_reconstruct_step),
        run_dir_flags("runs/diffusion"),
    ], unused={
        **DATA_FLAGS_UNUSED,
        "eta": lambda values: None if values.sampler == "ddim"
        else f"with --sampler {values.sampler} (it is DDIM's noise scale)",
        "reconstruct_step": lambda values: None if values.noisy_ppm or values.reconstruct_ppm
        else "without --noisy-ppm or --reconstruct-ppm (the images it is the timestep of)",
        "sample_steps": lambda values: None if values.sampler != "ddpm"
        else "with --sampler ddpm (it runs all T steps)",
        "beta_start": lambda values: None if values.schedule == "linear"
        else f"with --schedule {values.schedule} (it is the linear schedule's)",
        # one timestep has one beta, --beta-start (TorchLean's current convention): the end
        # was taken in silence there
        "beta_end": lambda values: (
            f"with --schedule {values.schedule} (it is the linear schedule's)"
            if values.schedule != "linear"
            else "with --T 1 (the one beta is --beta-start)" if values.T == 1 else None),
        "lr_decay_steps": lambda values: _in_warm_up(values) if values.lr_schedule == "cosine"
        else f"with --lr-schedule {values.lr_schedule} (it is where the cosine reaches 0)",
        "lr_schedule": _in_warm_up})

EVALUATE = Command(
    "evaluate",
    "FD-classifier of generated images against held-out real ones, with floor and ceiling.",
    run="minilean.train.evaluate:run",
    details="Trains (once, cached) a small classifier on the dataset's labels and reports the "
            "Frechet distance between Gaussian fits of its penultimate features: generated "
            "images vs held-out real ones, next to real training images (floor) and Gaussian "
            "noise images (ceiling). The builtin dataset is drawn at the samples' size "
            "(--image-size is not used for it). With a run directory, each data flag and "
            "--seed not typed is the run's own, so the FD is its summary's (a --dataset or --x "
            "typed takes neither the run's --x nor its --y).",
    groups=[
        DEVICE_FLAGS,
        data_flags(),
        FlagGroup("evaluate", resolve=lambda config: _load(
            "minilean.train.evaluate:with_the_runs_data")(config), flags=[
            Flag("samples", None, "generated images: a run directory (its samples.npy) or an "
                 ".npy array of images (uint8 [0,255] or float [0,1], NCHW)", kind=Path,
                 required=True),
            Flag("n_eval", 500, "real images in each reference set, and the most samples "
                 "scored (the first N); the built-in shapes generate N, at most 4 GiB of them "
                 "as float32", low=2),
            Flag("classifier_steps", 800, "training steps of the feature classifier", low=1),
            Flag("cache", "runs/classifiers", "directory of cached classifiers", kind=Path,
                 check=output_folder("the cached classifiers")),
            Flag("seed", 0, "seed of the classifier and the reference sets", low=0,
                 high=KEY_LIMIT - 1),
        ]),
    ], unused={**DATA_FLAGS_UNUSED, "image_size": lambda values: _image_size_unused(values) or (
        "with --dataset builtin (its shapes are drawn at the samples' size)"
        if values.dataset == "builtin" else None)})

PROOFS = Command(
    "proofs",
    "Check the theorems in proofs/ (mpmath + hypothesis) against minilean's functions.",
    run=lambda config: _run_proofs(config.name),
    groups=[FlagGroup("proofs", [
        Flag("name", None, "only the statements whose theorem name contains this text, "
             "ignoring case (default: all)"),
    ])])


def _run_proofs(name):
    """``proofs/`` lives beside the package in the source checkout, not inside it."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "proofs" / "runner.py").exists():
        raise FileNotFoundError(f"proofs/runner.py not found under {root}; the proofs ship "
                                f"with the source checkout, not with an installed package")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        runner = importlib.import_module("proofs.runner")
    except ModuleNotFoundError as error:
        if error.name not in ("hypothesis", "mpmath"):
            raise
        # the test extra's: "pip install -e ." alone trains, but checks nothing
        raise ValueError(f"the proofs need {error.name}: pip install -e \".[test]\"") from None
    try:
        status = runner.main(name=name)
    except runner.NoStatement:
        raise flag_error("name", name, "a text that some statement's name contains, ignoring "
                                       "case (see the names with no --name)") from None
    if status:
        sys.exit(int(status))


# --- the model zoo (vae, vqvae, gan, autoencoder, mae): same conventions as diffusion -------

def zoo_training_flags(**defaults):
    """``training_flags`` without the weight EMA, which the zoo models do not use."""
    group = training_flags(**defaults)
    return FlagGroup(group.title, [flag for flag in group.flags if flag.name != "ema"])


# The held-out rows a model's numbers are measured on: a flag of the commands that report on
# them, not of the GAN, whose numbers are measured on its --n-samples samples.
HELD_OUT_EVAL = Flag("n_eval", 500, "held-out rows to evaluate on (at most the 10% held out)",
                     low=1)


def zoo_command(name, summary, details, training, own_flags, data=None, resolve=None,
                check=None, points=False, unused=None):
    """A zoo command: device, data (16x16 built-in images by default; ``points``: the
    datasets of points too), training, its own flags (and their ``resolve(config)`` step,
    ``check(values)`` and ``unused`` rules, see ``Command``) and the run directory
    ``runs/<name>``."""
    return Command(name, summary, run=f"minilean.train.{name}:run", details=details, groups=[
        DEVICE_FLAGS, data_flags(points, **(data or {"image_size": 16})),
        zoo_training_flags(**training),
        FlagGroup(name, own_flags, resolve, check), run_dir_flags(f"runs/{name}")],
        unused={**DATA_FLAGS_UNUSED, **(unused or {})})


VAE = zoo_command(
    "vae", "Train a variational autoencoder; report held-out -ELBO and IW bound (nats, bits/dim).",
    "Loss = -log p(x|z) (discretised logistic over 256 levels) + beta * KL(q(z|x) || N(0, I)). "
    "Writes reconstructions, prior samples and summary.json with the held-out negative ELBO, "
    "the importance-weighted bound and the independent-pixel baseline.",
    dict(steps=1200, lr=2e-3, batch_size=64),
    [Flag("arch", "conv", "network", choices=("mlp", "conv")),
     Flag("hidden", 32, "hidden width (mlp) or base channels (conv)", low=1),
     Flag("latent", 8, "latent coordinates (mlp) or channels at S/4 (conv)", low=1),
     Flag("beta", 1.0, "weight of the KL term (1 = the ELBO)", low=0),
     Flag("iw_samples", 16, "K of the importance-weighted bound", low=1), HELD_OUT_EVAL],
    check=_check_conv_arch)

VQVAE = zoo_command(
    "vqvae", "Train a VQ-VAE; report codebook usage, perplexity and held-out reconstruction.",
    "Loss = reconstruction + codebook + beta * commitment (each logged), nearest-code "
    "quantisation with a straight-through gradient. Writes reconstructions.",
    dict(steps=800, lr=2e-3, batch_size=64),
    [Flag("codes", 64, "codebook size K", low=1),
     Flag("code_dim", 16, "code vector size D", low=1),
     Flag("hidden", 32, "base channels of the encoder/decoder", low=1),
     Flag("beta", 0.25, "weight of the commitment term", low=0),
     Flag("ema_codebook", False, "update the codebook by moving averages instead of its loss"),
     Flag("decay", 0.99, "decay of the EMA codebook", low=0, high=1, high_open=True),
     Flag("restart_every", 100, "every N steps restart codes unused since the last check "
          "(0: never)", low=0), HELD_OUT_EVAL],
    check=lambda values: _check_halved_twice(values, "the VQ-VAE"),
    unused={"decay": lambda values: None if values.ema_codebook
            else "without --ema-codebook (it is the moving averages' decay)"})

# The image defaults cover 5 of the ring's 8 modes; a narrower G and D with a 2-D latent, trained
# 3x longer, cover all 8 (about 10 s on a CPU).
RING8_GAN_DEFAULTS = {"steps": 3000, "hidden": 128, "latent": 2}


def ring8_gan_defaults(config):
    """On --dataset ring8, the ring's own defaults for the flags not given."""
    if config.dataset == "ring8":
        for name, value in RING8_GAN_DEFAULTS.items():
            if name not in config.given_flags:
                setattr(config, name, value)


GAN = zoo_command(
    "gan", "Train an LSGAN (alternating D and G steps); write sample grids and FD-classifier.",
    "discriminator_loss = mse(D(x), 1) + mse(D(G(z)), 0), generator_loss = mse(D(G(z)), 1), "
    "each player with its own Adam (betas 0.5, 0.999: less momentum chasing a moving "
    "opponent; TorchLean's examples use 0.9, 0.999). On --dataset ring8: modes covered of 8, "
    "share within 3 std, and a scatter plot; there the defaults are "
    + " ".join(f"--{name} {value}" for name, value in RING8_GAN_DEFAULTS.items()) + ".",
    dict(steps=1000, lr=5e-4, batch_size=64),
    [Flag("latent", 32, "latent noise size", low=1),
     Flag("hidden", 256, "hidden width of G and D", low=1),
     Flag("d_steps", 1, "discriminator steps per generator step", low=1),
     Flag("sample_every", 500, "write a grid from a fixed latent batch every N steps", low=1),
     Flag("n_samples", 256, "samples for the grids and the evaluation (FD-classifier: the "
          "first 500 of them at most, the size of its reference sets; evaluate --n-eval "
          "scores more)", low=1),
     Flag("evaluate", True, "measure FD-classifier of the samples (image datasets)")],
    resolve=ring8_gan_defaults, points=True,
    unused={"evaluate": lambda values: None
            if values.x is not None or values.dataset not in POINT_DATASETS
            else f"with --dataset {values.dataset} (its samples are scored by the modes they "
                 f"cover)"})

AUTOENCODER = zoo_command(
    "autoencoder", "Train an MLP or conv autoencoder; report held-out MSE vs the mean image.",
    "MSE reconstruction; writes originals above their reconstructions.",
    dict(steps=1000, lr=2e-3, batch_size=64),
    [Flag("arch", "mlp", "network", choices=("mlp", "conv")),
     Flag("hidden", 256, "hidden width (mlp) or base channels (conv)", low=1),
     Flag("latent", 16, "code size (mlp) or code channels at S/4 (conv)", low=1),
     HELD_OUT_EVAL],
    check=_check_conv_arch)

MAE = zoo_command(
    "mae", "Train a masked autoencoder (ViT); report masked-patch MSE vs the mean patch.",
    "The encoder sees only visible patches; a light decoder fills mask tokens; the loss "
    "covers hidden patches only. Writes original / masked / reconstruction rows.",
    dict(steps=600, lr=2e-3, batch_size=64),
    [Flag("patch_size", 4, "patch side in pixels (must divide the image size, and be "
          "smaller)", low=1),
     Flag("mask", "random", "random (a fresh subset per image) or block (TorchLean's "
          "deterministic quadrant)", choices=("random", "block")),
     Flag("mask_ratio", 0.75, "share of patches hidden by the random mask", low=0, high=1,
          low_open=True, high_open=True),
     Flag("width", 64, "encoder width", low=1), Flag("depth", 2, "encoder blocks", low=1),
     Flag("heads", 4, "encoder attention heads (must divide --width)", low=1),
     Flag("decoder_width", 32, "decoder width (a multiple of the decoder's heads, half of "
          "--heads)", low=1),
     Flag("decoder_depth", 1, "decoder blocks", low=1),
     Flag("per_patch_norm", False, "predict per-patch normalised pixels (MAE's normalised "
          "targets; named so, because fire reads --no... as a negated flag)"), HELD_OUT_EVAL],
    check=_check_mae,
    unused={"mask_ratio": lambda values: None if values.mask == "random"
            else f"with --mask {values.mask} (its mask is fixed)"})


COMMANDS = [DIFFUSION, EVALUATE, PROOFS, VAE, VQVAE, GAN, AUTOENCODER, MAE]

# Groups of fire-style sub-commands, guarded on first use: name -> "module:attribute".
GROUPS = {"data": "minilean.data.commands:DataCommands"}


def components(texts=None):
    """What fire sees: every command, plus the groups (``texts``: the words typed for the
    flags)."""
    found = {command.name: command.fire_function(texts) for command in COMMANDS}
    for name, target in GROUPS.items():
        group = _load(target)
        found[name] = guard(group() if inspect.isclass(group) else group, name, texts)
    return found


def _is_flag(token):
    """Whether fire reads ``token`` as a flag (``--name`` or ``-x``), not as a value."""
    return token.startswith("--") or re.match(r"-[a-zA-Z]", token) is not None


def _typed_flags(argv):
    """(name, text) for each flag token: the name it sets and the word typed as its value
    (None for none), as fire reads them: the name without its leading dashes, however many
    (``-steps`` and ``---steps`` set steps too); the value after ``=`` or in the next word
    when that is no flag; ``--noNAME`` with no value after it sets NAME (to false), so
    ``--progress --noprogress`` names progress twice; a flag declared under its own name
    (diffusion's ``--noisy-ppm``) is never a negation."""
    declared = {name for command in COMMANDS for name in command.flags}
    flags = []
    for index, token in enumerate(argv):
        if not _is_flag(token):
            continue
        key, equals, text = token.lstrip("-").partition("=")
        key = key.replace("-", "_")
        alone = not equals and (index + 1 == len(argv) or _is_flag(argv[index + 1]))
        if alone:
            negated = key.startswith("no") and key not in declared
            flags.append((key[2:] if negated else key, None))
        else:
            flags.append((key, text if equals else argv[index + 1]))
    return flags


def _command_path_problem(found, argv):
    """The one-line error for a word of ``argv`` that should name a command or group of the
    group it follows (``data dowload``, ``data convert --input=...``) and does not, or None.
    fire would print its usage block for it, several lines that name fire's internal
    spellings (``image_folder``). After the command, the words fire would take for itself
    (``_fire_word_problem``)."""
    path, members = [], found
    for index, word in enumerate(argv):
        if word in ("--help", "-h", "--"):  # help, or fire's own flags after "--"
            return None
        names = {name.replace("_", "-"): name for name in members if not name.startswith("_")}
        where = " ".join([FIRE_NAME, *path])
        if word.startswith("-"):  # a flag, but of which command the user has not said
            return (f"{where}: error: got the flag {word!r} before a command; expected one "
                    f"of {', '.join(names)} first")
        key = word.replace("_", "-")
        if key not in names:
            close = difflib.get_close_matches(key, list(names), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return (f"{where}: error: no command {word!r}; expected one of "
                    f"{', '.join(names)}{hint}")
        member = members[names[key]]
        if not isinstance(member, types.SimpleNamespace):  # a command: it checks its flags
            return _fire_word_problem(" ".join([*path, key]), argv[index + 1:])
        path, members = path + [key], vars(member)
    return None  # no words, or a group's name alone: fire shows its help


def _fire_word_problem(command, words):
    """The one-line error for a word after ``command`` that fire takes for itself instead of
    handing it to the command, or None: ``-`` (fire's separator: it runs the command with the
    flags before it, then reads the words after it), ``--`` (fire's own flags follow it:
    ``--steps 3 -- --help`` trains, then shows fire's help) and ``--=VALUE`` (a flag without
    a name, which fire reports only after running the command with its defaults)."""
    for word in words:
        if word in ("-", "--") or word.startswith("--="):
            return f"{FIRE_NAME} {command}: error: {_unexpected_argument(word, command)}"
    return None


def main(argv=None):
    import fire

    # fire pages help through less on a terminal where no pager is named, as PAGER= names none
    if not os.environ.get("PAGER"):
        os.environ["PAGER"] = "cat"
    _print_any_path()
    argv = sys.argv[1:] if argv is None else list(argv)
    flags = _typed_flags(argv)
    found = components({name: text for name, text in flags if text is not None})
    problem = _command_path_problem(found, argv)
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    given = [name for name, _ in flags]
    repeated = sorted({name for name in given if given.count(name) > 1})
    if repeated:  # fire keeps the last value of a repeated flag without a word
        command = itertools.takewhile(lambda word: not word.startswith("-"), argv)
        print(f"{' '.join([FIRE_NAME, *command])}: error: {_as_typed(repeated[0])} is given "
              f"more than once; expected each flag once", file=sys.stderr)
        sys.exit(2)
    heap.keep_freed_memory()
    try:
        fire.Fire(found, command=argv, name=FIRE_NAME)
    except BrokenPipeError:  # fire's own help (no command, a group's name alone) to a closed
        _end_quietly_on_a_closed_pipe()  # stdout; a command's output is run_command's
