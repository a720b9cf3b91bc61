"""The run directory of one training run: its flags, its metrics, its loss curve, its summary.

    RUN/config.json     every flag's value (written atomically when the run starts, and again,
                        merged with the flags given then, by each --resume)
    RUN/metrics.jsonl   one JSON object per logged step, appended and flushed line by line
    RUN/loss.svg        the loss curve (plain SVG, no plotting library)
    RUN/summary.json    final numbers, written at the end
    RUN/images/, RUN/checkpoints/   for sample grids and checkpoints
    RUN/.lock           empty; locked while a process has the run open for writing

JSON has no NaN or infinity, so non-finite metric values are logged as null and their names
listed under "nonfinite". A crash can leave a torn last line in metrics.jsonl; ``read_metrics``
skips it, and ``RunDirectory(resume_step=k)`` drops lines logged after step k. A run killed
while it wrote a file atomically (a checkpoint, say) leaves the write's temporary file
(``.last.npz.XXXXXXXX.tmp``); reopening the run removes it.

A run directory is written by one process at a time: ``RunDirectory`` locks ``.lock``
(``fcntl.flock``) before it changes anything there and holds the lock until it is closed, so
a second run in it (``--out`` or ``--resume`` of a run still going) stops with ``RunInUse``
instead of interleaving metrics.jsonl and overwriting the checkpoints. The system releases
the lock when its process ends, however it ends: a killed run leaves no stale lock, only the
empty file, which stays (removing it could let two processes lock two different files).
Where ``fcntl`` does not exist (Windows), or the file system cannot lock (Lustre mounted
without flock: ENOSYS), a run opens without the lock. A run whose folder is removed or moved
away while it runs stops with an ``OSError`` at its next line or file (``check_in_place``),
rather than make a new folder of that name without its config, metrics and lock.

"seconds", in each metrics record and in summary.json, is the run's time: since its
directory opened, plus, on a resume, the seconds the run had reached at the checkpoint it
resumes from (``earlier_seconds``: ``seconds_at`` the checkpoint's step, read back from the
metrics, so that checkpoints hold no clock time and two runs still write the same bytes).
Steps trained after that checkpoint and lost with an interruption are trained again and
counted once, as their lines are kept once: a resumed run counts about the time an
uninterrupted one would have, less the steps between its last line and its checkpoint (fewer
than the log interval; none when checkpoints fall on log lines, as by default). summary.json's
seconds also hold the last part's sampling and evaluation.
"""
import errno
import json
import math
import numbers
import os
import time
from xml.sax.saxutils import escape

try:
    import fcntl
except ImportError:  # Windows: run directories are not locked
    fcntl = None

from minilean import atomic
from minilean.data.paths import existing_problem
from minilean.errors import flag_error


def _json_safe(metrics):
    """Metrics with NumPy scalars as Python numbers and non-finite floats as None."""
    clean, nonfinite = {}, []
    for name, value in metrics.items():
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, float) and not math.isfinite(value):
            nonfinite.append(name)
            value = None
        clean[name] = value
    if nonfinite:
        clean["nonfinite"] = nonfinite
    return clean


def _not_json(constant):
    """Python's json reads NaN and Infinity, which JSON lacks (and the log never writes)."""
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text):
    """A JSON number as a float; a ValueError for one past float's range (1e999, which Python
    reads as infinite and the log never writes: rewritten by a resume, it would not be JSON)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is past the range of a float")
    return value


def read_metrics(path):
    """The logged records of a metrics.jsonl file: its lines that are JSON objects with an
    integer "step" (a torn or corrupt line is skipped, whether it is not JSON, not UTF-8, JSON
    of another kind, an object without such a step, or one with a number past float's
    range)."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path, "rb") as file:  # read line by line as bytes: bad UTF-8 spoils one line
        for line in file:
            try:
                record = json.loads(line, parse_constant=_not_json, parse_float=_finite_float)
            except ValueError:  # JSONDecodeError, UnicodeDecodeError
                continue
            step = record.get("step") if isinstance(record, dict) else None
            if isinstance(step, int) and not isinstance(step, bool):
                records.append(record)
    return records


def seconds_at(records, step):
    """The run's seconds at ``step``: those of the last of ``records`` (``read_metrics``) logged
    at or before it with a number of seconds, 0 when there is none. A line at or before a
    checkpoint's step was logged before the checkpoint was saved."""
    for record in reversed(records):
        seconds = record.get("seconds")
        if record["step"] <= step and type(seconds) in (int, float) and 0 <= seconds < math.inf:
            return float(seconds)
    return 0.0


# What a run writes in its directory: what it reads back (``--resume``: its config, metrics
# and checkpoints; ``evaluate``: its samples), reports (its summary) or shows (its loss curve,
# its image grids). No file another flag names may be written over them, and a new run starts
# only where none of them is (a loss.svg or an image of one's own would be replaced unsaid).
# Its lock file is one too: a file written over it (atomically, so a new file) would leave the
# lock of a running process on the old one, and a second process could lock the new one. (It
# holds nothing: a new run starts beside it, and locks it as its own.)
LOCK_FILE = ".lock"
RUN_RECORDS = ("config.json", "metrics.jsonl", "summary.json", "samples.npy", "checkpoints",
               "loss.svg", "images", LOCK_FILE)
# The flags that name a file a run writes besides its run directory (those a command has)
WRITTEN_FILE_FLAGS = ("log", "sample_ppm", "reference_ppm", "noisy_ppm", "reconstruct_ppm")


# The config.json keys every version of minilean has written for every model command, since
# the first config.json (the shared flags, and the flags given): one that lacks any was not
# written by minilean (a stub, an edit that lost lines), and a resume would fill them with
# today's defaults unsaid (other data, another seed). Flags added since (command, data_root,
# threads, a command's newer flags, the data's fingerprint) may be missing: their saved run
# predates them.
ALWAYS_SAVED = ("batch_size", "checkpoint_every", "cpu", "cuda", "dataset", "device",
                "fast_kernels", "given_flags", "image_size", "log", "log_every", "lr", "n_total",
                "out", "progress", "resume", "seed", "steps", "x", "y")


def read_run_config(run_dir, command=None, flag="resume"):
    """The flags saved in ``run_dir``'s config.json, for ``--resume`` (or the ``flag`` that
    named the run): a one-line error when there is none, when it is not a config minilean
    wrote (not a JSON object, or without one of the ``ALWAYS_SAVED`` keys), or when it is the
    run of another command than ``command`` (its flags would build the wrong model, and the
    resume would rewrite its config). A config.json without "command" (written before runs
    recorded it) passes."""
    missing = existing_problem(run_dir, want_folder=True)
    if missing:  # a mistyped flag, found before any work: exit 2, as for any bad flag value
        raise flag_error(flag, run_dir, f"an existing run directory; {run_dir} {missing[1]}")
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--{flag} {run_dir}: no config.json there (is it a run "
                                f"directory?)")
    not_ours = f"--{flag} {run_dir}: config.json is not a config minilean wrote"
    try:
        with open(path, encoding="utf-8") as file:
            saved = json.load(file)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{not_ours} (it is not JSON: {error})") from error
    if not isinstance(saved, dict):
        raise ValueError(f"{not_ours} (it holds a {type(saved).__name__}, not a JSON object)")
    made_by = saved.get("command")
    if command is not None and made_by is not None and made_by != command:
        raise flag_error("resume", run_dir, f"a run of {command} (this is a run of {made_by}: "
                                            f"continue it with {made_by} --resume)")
    lacking = [name for name in ALWAYS_SAVED if name not in saved]
    if lacking:
        raise ValueError(f"{not_ours} (it lacks {', '.join(lacking)}, which every run saves)")
    return saved


def resumed_flags(current, saved):
    """The flags of a resumed run, as a dict: ``saved`` (its config.json) over ``current``
    (so flags the saved run predates take today's defaults), then the flags given now
    (``current["given_flags"]``), the device (resolved today) and ``resume`` on top. The run
    continues in its own directory, and remembers every flag given at its start or since."""
    given = set(current["given_flags"])
    merged = {**current, **saved,
              **{name: current[name] for name in given | {"resume", "device"}}}
    merged["out"] = current["resume"]
    merged["given_flags"] = sorted(set(saved.get("given_flags", ())) | given)
    return merged


class RunInUse(OSError):
    """Another process holds the lock of a run directory: it is writing that run."""


def lock_run_directory(path):
    """The lock file of the run directory ``path``, open and locked (``fcntl.flock``, exclusive)
    for this open file alone; closing it, or the end of the process, releases the lock.
    ``RunInUse`` when another process (or another open ``RunDirectory`` of this one) holds it.
    None where there is no lock to take: no ``fcntl`` (Windows), or a file system that cannot
    lock."""
    if fcntl is None:
        return None
    lock_path = os.path.join(path, LOCK_FILE)
    try:  # made when missing, never emptied: another process may hold it
        lock = open(lock_path, "ab")
    except OSError as error:
        raise OSError(f"cannot open {lock_path}: {error.strerror or error}") from error
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RunInUse(f"run directory {path}: another minilean process is writing it (its "
                       f"lock {lock_path} is held); wait for that run to end") from None
    except OSError as error:
        lock.close()
        if error.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):
            return None  # no locks on this file system (Lustre without flock): as on Windows
        raise OSError(f"cannot lock {lock_path}: {error.strerror or error}") from error
    return lock


class RunDirectory:
    """Create (or, with ``resume_step``, reopen) a run directory, lock it for this process
    (``lock_run_directory``; ``lock``: taken already by the caller) and write ``config.json``.
    ``earlier_seconds``: the seconds the run had reached at the checkpoint it resumes from,
    which its "seconds" go on from. ``close`` (or leaving a ``with`` block) releases the lock."""

    def __init__(self, path, config, resume_step=None, earlier_seconds=0.0, lock=None):
        self.path = os.fspath(path)
        self.make_folder(self.path)
        self.lock = lock or lock_run_directory(self.path)  # before anything in it changes
        self.folder_identity = _identity(self.path)  # the folder ``check_in_place`` expects
        try:
            for folder in (self.images_dir, self.checkpoints_dir):
                self.make_folder(folder)
            if resume_step is not None:  # the temporary files of writes killed mid-way (while
                # the lock is held, no other process is writing one here)
                for folder in (self.path, self.images_dir, self.checkpoints_dir):
                    atomic.remove_leftovers(folder)
                # and of the files it writes elsewhere (--log, the pictures), in folders
                # others may share: only the writes to those files
                for name in WRITTEN_FILE_FLAGS:
                    if config.get(name):
                        atomic.remove_leftovers_of(config[name])
            self.earlier_seconds, self.start_time = earlier_seconds, time.time()
            atomic.write_json(self.file("config.json"), _json_safe(dict(config)))
            metrics_path = self.file("metrics.jsonl")
            kept = [] if resume_step is None else [
                record for record in read_metrics(metrics_path) if record["step"] <= resume_step]
            atomic.write_text(metrics_path, "".join(json.dumps(record, allow_nan=False) + "\n"
                                                    for record in kept))
            self.metrics_file = open(metrics_path, "a", encoding="utf-8")
        except BaseException:
            self._unlock()
            raise

    @staticmethod
    def make_folder(folder):
        try:
            # through a link that leads nowhere yet (a run folder linked to another disk), as
            # atomic_open writes a file: makedirs stopped at the link with "File exists"
            os.makedirs(os.path.realpath(folder), exist_ok=True)
        except OSError as error:  # the message names the folder, not just its errno
            raise OSError(f"cannot create the run directory folder {folder!r}: "
                          f"{error.strerror or error}") from error

    def _unlock(self):
        if self.lock is not None:
            self.lock.close()

    def check_in_place(self):
        """Raise ``OSError`` when the run's folder was removed or moved away since it opened:
        its lines would go on into a metrics.jsonl that is no longer there, and its next file
        would make a new folder in its place, without the run's config, metrics or lock, and
        the run would end as if all went well."""
        try:
            still_here = _identity(self.path) == self.folder_identity
        except (FileNotFoundError, NotADirectoryError):
            still_here = False
        except OSError:  # not a sign that it went (a network file system's hiccup): the write
            return       # that follows says what is wrong, in the words of its file
        if not still_here:
            raise OSError(f"run directory {self.path}: it was removed or moved away while this "
                          f"run was writing it; stopped rather than make it anew without the "
                          f"run's config and metrics")

    def file(self, name):
        """The path of ``name`` in the run's folder, which must still be there
        (``check_in_place``): every file of the run is written through this."""
        self.check_in_place()
        return os.path.join(self.path, name)

    @property
    def images_dir(self):
        return self.file("images")

    @property
    def checkpoints_dir(self):
        return self.file("checkpoints")

    def seconds(self):
        """The run's time so far (in seconds, to a millisecond): since this directory opened,
        plus ``earlier_seconds``."""
        return round(self.earlier_seconds + time.time() - self.start_time, 3)

    def log(self, step, **metrics):
        """Append one record {step, seconds, **metrics}; returns it."""
        record = _json_safe({"step": int(step), "seconds": self.seconds(), **metrics})
        self.check_in_place()
        try:
            self.metrics_file.write(json.dumps(record, allow_nan=False) + "\n")
            self.metrics_file.flush()
        except OSError as error:  # a full disk: say which file, as an atomic write does
            raise OSError(f"cannot write {os.path.join(self.path, 'metrics.jsonl')}: "
                          f"{error.strerror or error}") from error
        return record

    def metrics(self):
        return read_metrics(self.file("metrics.jsonl"))

    def write_loss_curve(self, keys=("loss",), name="loss.svg"):
        """Plot the logged series named in ``keys`` (those present) against step as SVG."""
        records = self.metrics()
        series = {key: [(record["step"], record[key]) for record in records
                        if isinstance(record.get(key), (int, float))] for key in keys}
        path = self.file(name)
        atomic.write_text(path, loss_curve_svg({k: v for k, v in series.items() if v}))
        return path

    def write_summary(self, **summary):
        path = self.file("summary.json")
        atomic.write_json(path, _json_safe({"seconds": self.seconds(), **summary}))
        return path

    def close(self):
        """Close metrics.jsonl and release the lock (also when the close fails)."""
        try:
            self.metrics_file.close()
        finally:
            self._unlock()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        try:
            self.close()
        except OSError:  # the line that failed to write fails again: keep the first error,
            if error is None:  # which names the file, when the run stops on it
                raise


def _identity(folder):
    """(device, inode) of ``folder``: a folder made anew under its name is another one."""
    status = os.stat(folder)
    return status.st_dev, status.st_ino


def _span(values):
    """(low, high) of the values, widened to a unit interval when they are all equal (wider
    where low + 1 would round back to low, past 2**53). Integers (the steps) widen by the
    integer 1, exact at any size: a float 1.0 labelled a one-step run's axis "1" to "2.0"."""
    low, high = min(values), max(values)
    if high > low:
        return low, high
    if isinstance(low, numbers.Integral):
        return low, low + 1
    return low, low + max(1.0, abs(low) * 1e-6)


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def loss_curve_svg(series, width=640, height=360, margin=48):
    """An SVG line chart of {name: [(step, value), ...]}; log-scaled y when all values > 0.
    Non-finite values are left out (``read_metrics`` skips a line with one, but a series given
    directly can hold them); a series of one point is drawn as a dot, which a line of one
    point is not."""
    series = {name: [(step, value) for step, value in values if math.isfinite(value)]
              for name, values in series.items()}
    points = [point for values in series.values() for point in values]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     'no values logged</text></svg>')
        return "\n".join(parts) + "\n"
    log_scale = all(value > 0 for _, value in points)
    transform = math.log10 if log_scale else float
    steps = [step for step, _ in points]
    levels = [transform(value) for _, value in points]
    step_low, step_high = _span(steps)
    level_low, level_high = _span(levels)

    def x_of(step):
        return margin + (step - step_low) / (step_high - step_low) * (width - 2 * margin)

    def y_of(value):
        level = transform(value)
        return height - margin - (level - level_low) / (level_high - level_low) * (
            height - 2 * margin)

    parts.append(f'<rect x="{margin}" y="{margin}" width="{width - 2 * margin}" '
                 f'height="{height - 2 * margin}" fill="none" stroke="#888"/>')
    low_label, high_label = ((10 ** level_low, 10 ** level_high) if log_scale
                             else (level_low, level_high))
    parts += [f'<text x="{margin - 4}" y="{height - margin}" text-anchor="end">{low_label:.3g}</text>',
              f'<text x="{margin - 4}" y="{margin + 8}" text-anchor="end">{high_label:.3g}</text>',
              f'<text x="{margin}" y="{height - margin + 16}">{step_low}</text>',
              f'<text x="{width - margin}" y="{height - margin + 16}" text-anchor="end">'
              f'{step_high}</text>',
              f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">step'
              f'{" (log-scale values)" if log_scale else ""}</text>']
    for number, (name, values) in enumerate(series.items()):
        colour = _COLOURS[number % len(_COLOURS)]
        path = " ".join(f"{x_of(step):.1f},{y_of(value):.1f}" for step, value in values)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{path}"/>')
        if len(values) == 1:
            step, value = values[0]
            parts.append(f'<circle cx="{x_of(step):.1f}" cy="{y_of(value):.1f}" r="3" '
                         f'fill="{colour}"/>')
        parts.append(f'<text x="{width - margin - 4}" y="{margin + 14 + 14 * number}" '
                     f'text-anchor="end" fill="{colour}">{escape(str(name))}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
