"""Run directory logs (config, metrics.jsonl, SVG loss curve, summary) and the progress display."""
import io
import json
import math
import os
import re
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy
import pytest

from minilean import atomic
from minilean.data.progress import Progress, format_count, format_duration
from minilean.data.runlog import (RunDirectory, RunInUse, lock_run_directory, loss_curve_svg,
                                  read_metrics, resumed_flags, seconds_at)


def test_run_directory_files(tmp_path):
    with RunDirectory(tmp_path / "run", {"lr": 2e-4, "steps": numpy.int64(10)}) as run:
        run.log(1, loss=numpy.float32(0.5), lr=1e-4)
        record = run.log(2, loss=float("nan"), kl=float("inf"))
        assert record["loss"] is None and record["nonfinite"] == ["loss", "kl"]
        run.log(3, loss=0.25)
        svg_path = run.write_loss_curve()
        run.write_summary(final_loss=0.25)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config == {"lr": 2e-4, "steps": 10}
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert all("seconds" in json.loads(line) for line in lines)
    root = ElementTree.parse(svg_path).getroot()
    polyline = root.find("{http://www.w3.org/2000/svg}polyline")
    assert len(polyline.get("points").split()) == 2  # the NaN step is left out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_loss"] == 0.25
    assert (tmp_path / "run" / "images").is_dir() and (tmp_path / "run" / "checkpoints").is_dir()


def test_a_run_folder_linked_to_a_folder_not_made_yet_is_made_where_the_link_leads(tmp_path):
    """--out a link to a folder not made yet (a run folder linked to another disk) passed the
    flag check, then the run, its data loaded, stopped with "cannot create the run directory
    folder ...: File exists": makedirs stops at a link. It follows the link, as the run's
    file writes (atomic_open) do."""
    from minilean.data.paths import output_folder
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "disk" / "run")
    assert output_folder("the run's files")(str(link)) is None
    with RunDirectory(link, {"steps": 1}) as run:
        run.log(1, loss=0.5)
    assert link.is_symlink() and (tmp_path / "disk" / "run" / "metrics.jsonl").is_file()


def test_metrics_are_appended_as_the_readme_says_and_the_other_files_replaced(tmp_path):
    """README's atomic-writes row names metrics.jsonl as the one file not written whole."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| atomic writes |"))
    assert "`metrics.jsonl`, appended and flushed a line at a time" in row
    with RunDirectory(tmp_path, {}) as run:
        metrics, config = (os.stat(run.file(name)).st_ino for name in ("metrics.jsonl",
                                                                       "config.json"))
        run.log(1, loss=0.5)
        run.write_summary(final_loss=0.5)
        assert os.stat(run.file("metrics.jsonl")).st_ino == metrics  # the same file, appended
    with RunDirectory(tmp_path, {}, resume_step=1) as run:  # config.json written anew: replaced
        assert os.stat(run.file("config.json")).st_ino != config
        assert run.metrics()[0]["loss"] == 0.5


def test_torn_last_line_is_skipped_and_resume_drops_later_steps(tmp_path):
    with RunDirectory(tmp_path, {}) as run:
        for step in (10, 20, 30):
            run.log(step, loss=1.0 / step)
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write('{"step": 40, "lo')  # a crash mid-line
    assert [record["step"] for record in read_metrics(tmp_path / "metrics.jsonl")] == [10, 20, 30]
    with RunDirectory(tmp_path, {}, resume_step=20) as run:
        run.log(30, loss=0.5)
        assert [(r["step"], r["loss"]) for r in run.metrics()] == [(10, 0.1), (20, 0.05),
                                                                   (30, 0.5)]
    with RunDirectory(tmp_path, {}) as fresh:
        assert fresh.metrics() == []


def test_a_corrupt_line_inside_the_log_is_skipped_and_the_lines_after_it_read(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 0.5}\n\x00\x00\x00\x00\n{"step": 2, "lo\n'
                     b'{"step": 3, "loss": 0.25}\n')
    assert read_metrics(path) == [{"step": 1, "loss": 0.5}, {"step": 3, "loss": 0.25}]


@pytest.mark.parametrize("corrupt", [b'{"step": 2, "note": "\xc3\x28"}', b"3", b"[2, 0.1]",
                                     b"null", b'{"loss": 1.0}', b'{"step": "2", "loss": 1.0}',
                                     b'{"step": null}', b'{"step": true}', b'{"step": 2.5}',
                                     b'{"step": 2, "loss": NaN}', b'{"step": 2, "kl": -Infinity}',
                                     b'{"step": 2, "loss": 1e999}', b'{"step": 2, "kl": -1e400}'])
def test_a_line_that_is_no_json_object_is_skipped_and_resume_goes_on(tmp_path, corrupt):
    """Bytes that are not UTF-8 (a torn disk block), JSON that is not an object, an object
    without an integer step (the loss curve and the resume read every record's step), or
    Python's NaN and Infinity, which JSON lacks, and numbers past float's range, which read as
    infinite (the resume, rewriting the kept lines as JSON, failed on them with "Out of range
    float values are not JSON compliant")."""
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 0.5}\n' + corrupt + b'\n{"step": 3, "loss": 0.25}\n')
    assert read_metrics(path) == [{"step": 1, "loss": 0.5}, {"step": 3, "loss": 0.25}]
    with RunDirectory(tmp_path, {}, resume_step=3) as run:
        assert [record["step"] for record in run.metrics()] == [1, 3]
        run.write_loss_curve()


def test_a_missing_log_reads_as_no_records(tmp_path):
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_seconds_logged_and_summarised_are_the_time_since_the_run_opened(tmp_path):
    opened = time.time()
    with RunDirectory(tmp_path, {}) as run:
        logged = run.log(1, loss=0.5)["seconds"]
        run.write_summary()
    elapsed = time.time() - opened
    summarised = json.loads((tmp_path / "summary.json").read_text())["seconds"]
    assert 0 <= logged <= summarised <= elapsed + 0.001


def test_a_run_directory_another_process_writes_is_refused_and_left_as_it_is(tmp_path,
                                                                             folder_contents):
    """Its lock held elsewhere (here by another open file, as another process holds it): the
    reopening stops before it changes anything (not even the temporary file of a killed write
    goes: it could be the other process's write in progress); released, the run reopens."""
    fcntl = pytest.importorskip("fcntl")  # (Windows has none: runs there are not locked)
    with RunDirectory(tmp_path, {"seed": 1}) as run:
        run.log(1, loss=0.5)
    (tmp_path / "checkpoints" / ".last.npz.abcdefgh.tmp").write_bytes(b"PK partial")
    before = folder_contents(tmp_path)
    with open(tmp_path / ".lock", "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunInUse, match=re.escape(
                f"run directory {tmp_path}: another minilean process is writing it (its lock "
                f"{tmp_path / '.lock'} is held); wait for that run to end")):
            RunDirectory(tmp_path, {"seed": 2}, resume_step=1)
        assert folder_contents(tmp_path) == before
    with RunDirectory(tmp_path, {"seed": 2}, resume_step=1) as run:
        assert run.metrics()[0]["loss"] == 0.5
    assert not (tmp_path / "checkpoints" / ".last.npz.abcdefgh.tmp").exists()


@pytest.mark.parametrize("code", ["ENOSYS", "EOPNOTSUPP", "ENOLCK"])
def test_a_file_system_that_cannot_lock_opens_the_run_unlocked_and_another_fault_stops_it(
        tmp_path, monkeypatch, code):
    """As documented: where flock is not supported (Lustre mounted without it) the run opens
    without the lock, as on Windows; any other failure to lock is an OSError naming the file."""
    import errno

    from minilean.data import runlog
    pytest.importorskip("fcntl")

    def flock(file, operation, failure=getattr(errno, code)):
        raise OSError(failure, os.strerror(failure))
    monkeypatch.setattr(runlog.fcntl, "flock", flock)
    with RunDirectory(tmp_path / "run", {"seed": 1}) as run:
        assert run.lock is None
        run.log(1, loss=0.5)
    assert [record["loss"] for record in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0.5]
    monkeypatch.setattr(runlog.fcntl, "flock", lambda file, operation, failure=errno.EIO: flock(
        file, operation, failure))
    with pytest.raises(OSError, match=f"^cannot lock {re.escape(str(tmp_path / 'other' / '.lock'))}"
                                      f": {os.strerror(errno.EIO)}$"):
        RunDirectory(tmp_path / "other", {"seed": 1})


def test_a_run_directory_is_locked_until_it_is_closed(tmp_path):
    """Two open RunDirectory of one folder would write one metrics.jsonl; the lock goes with
    the close, also when the close fails."""
    pytest.importorskip("fcntl")
    run = RunDirectory(tmp_path, {})
    with pytest.raises(RunInUse, match="another minilean process is writing it"):
        RunDirectory(tmp_path, {}, resume_step=0)
    run.close()
    run = RunDirectory(tmp_path, {}, resume_step=0)

    class FailingClose:
        def close(self):
            raise OSError(28, "No space left on device")
    metrics_file, run.metrics_file = run.metrics_file, FailingClose()
    with pytest.raises(OSError, match="No space left on device"):
        run.close()
    metrics_file.close()
    RunDirectory(tmp_path, {}, resume_step=0).close()


def test_a_run_directory_that_fails_to_open_releases_its_lock(tmp_path):
    """A config that is no JSON fails the open after the lock was taken: the lock goes with
    the failure, not when the failed object is collected (its error, kept here, holds it)."""
    pytest.importorskip("fcntl")
    with pytest.raises(TypeError) as failed:
        RunDirectory(tmp_path, {"lr": object()})
    assert failed.tb is not None
    RunDirectory(tmp_path, {}).close()


def test_a_run_directory_refused_for_its_lock_leaves_no_file_open(tmp_path):
    """Each refused open closes the lock file it opened: a process that retries while another
    run holds the folder does not pile up open files."""
    pytest.importorskip("fcntl")
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts open files through /proc")
    with RunDirectory(tmp_path, {}):
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(RunInUse) as refused:
            lock_run_directory(tmp_path)
        # counted while its traceback (which holds the refused call's names) is kept
        assert len(os.listdir("/proc/self/fd")) == before and refused.tb is not None


def test_a_resumed_runs_seconds_go_on_from_its_last_line_up_to_the_checkpoint(tmp_path):
    """A run of 5 steps logging every 3 saved at step 5: its seconds there are its last line's
    (step 5's, which the resume drops and logs again), at step 4 the line at 3's; a line
    without seconds (edited, or written by a tool) is passed over. Reopened with them, the
    run's records and summary go on from there."""
    records = [{"step": 3, "seconds": 30.0}, {"step": 4, "seconds": None},
               {"step": 5, "seconds": 50.5}]
    assert [seconds_at(records, step) for step in (0, 2, 3, 4, 5, 9)] == [
        0.0, 0.0, 30.0, 30.0, 50.5, 50.5]
    # JSON's true is no number of seconds, though Python's bool is an int
    assert seconds_at([{"step": 3, "seconds": 30.0}, {"step": 4, "seconds": True}], 4) == 30.0
    with RunDirectory(tmp_path, {}, earlier_seconds=50.5) as run:
        assert 50.5 <= run.log(6, loss=0.5)["seconds"] < 60


def test_a_resumed_run_keeps_its_saved_flags_under_those_given_now_and_remembers_both():
    current = dict(lr=0.1, steps=5, batch=8, device="cpu", resume="runs/a", out="runs/b",
                   given_flags=["resume", "steps"])
    saved = dict(lr=0.2, steps=3, device="cuda", resume=None, out="runs/a",
                 given_flags=["lr", "steps"])
    assert resumed_flags(current, saved) == dict(
        lr=0.2, steps=5, batch=8, device="cpu", resume="runs/a", out="runs/a",
        given_flags=["lr", "resume", "steps"])


def test_resume_removes_the_temporary_files_of_killed_writes_and_nothing_else(tmp_path):
    RunDirectory(tmp_path, {}).close()
    killed = atomic.atomic_open(tmp_path / "checkpoints" / "last.npz")
    killed.__enter__().write(b"PK partial")  # never finished: as if the process was killed
    leftover, = (tmp_path / "checkpoints").iterdir()
    kept = [tmp_path / name for name in (
        "notes.tmp", ".last.npz.tmp", ".last.npz.abc.tmp", ".last.npz.ABCDEFGH.tmp",
        ".last.npz.abcdefgh.tmp.bak", "images/last.npz.abcdefgh.tmp")]
    for path in kept:
        path.write_text("not a leftover")
    folder = tmp_path / "images" / ".folder.abcdefgh.tmp"
    folder.mkdir()
    link = tmp_path / ".config.json.abcdefgh.tmp"  # named as a leftover, but a link: no file
    link.symlink_to(kept[0])                        # of ours, and removing it loses nothing
    grid = tmp_path / "images" / ".samples.ppm.k2j4_9zz.tmp"
    grid.write_bytes(b"P6 partial")
    with RunDirectory(tmp_path, {}, resume_step=0):
        pass
    assert not leftover.exists() and not grid.exists()
    assert all(path.exists() for path in kept) and folder.is_dir() and link.is_symlink()


def test_resume_removes_the_temporary_files_of_killed_writes_to_the_runs_own_files_elsewhere(
        tmp_path):
    """--log and the --*-ppm pictures may lie outside the run directory; the README promises
    that the temporary file of a killed write goes when its run is resumed, and it stayed
    beside them. Only those of the files the run writes go: the folder is shared."""
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    config = {"log": str(pictures / "log.json"), "sample_ppm": str(pictures / "samples.ppm"),
              "reference_ppm": None}
    RunDirectory(tmp_path / "run", config).close()
    killed = [atomic.atomic_open(config[name]) for name in ("log", "sample_ppm")]
    for write in killed:
        write.__enter__().write(b"partial")  # never finished: as if the process was killed
    others = (pictures / ".other.json.abcdefgh.tmp", pictures / "log.json.abcdefgh.tmp")
    for path in others:
        path.write_text("not a leftover of this run")
    assert len(list(pictures.iterdir())) == 4
    with RunDirectory(tmp_path / "run", config, resume_step=0):
        pass
    assert sorted(pictures.iterdir()) == sorted(others)


@pytest.mark.parametrize("gone", ["removed", "moved"])
def test_a_run_directory_removed_or_moved_mid_run_stops_the_run_and_is_not_made_anew(tmp_path,
                                                                                     gone):
    """A run whose folder went away wrote its lines into a metrics.jsonl no longer there, and
    its next file made the folder anew (without config, metrics or lock): it ended as if all
    went well. Its next line or file now stops it, and nothing is made in the folder's place."""
    path = tmp_path / "run"
    message = (f"^run directory {re.escape(str(path))}: it was removed or moved away while this "
               f"run was writing it; stopped rather than make it anew without the run's config "
               f"and metrics$")
    with RunDirectory(path, {}) as run:
        run.log(1, loss=0.5)
        if gone == "removed":
            for folder, _, names in os.walk(path, topdown=False):
                for name in names:
                    os.remove(os.path.join(folder, name))
                os.rmdir(folder)
        else:
            os.rename(path, tmp_path / "elsewhere")
        with pytest.raises(OSError, match=message):
            run.log(2, loss=0.25)
        for write in (run.write_loss_curve, run.write_summary, lambda: run.file("samples.npy")):
            with pytest.raises(OSError, match=message):
                write()
        assert not path.exists()
        path.mkdir()  # a new folder of that name is not the run's either
        with pytest.raises(OSError, match=message):
            run.log(2, loss=0.25)
        assert os.listdir(path) == []
    if gone == "moved":  # the run's own lines stay whole where it went
        assert [record["step"] for record in read_metrics(tmp_path / "elsewhere" /
                                                          "metrics.jsonl")] == [1]


@pytest.mark.parametrize("stopped_by", [None, ValueError("the error that stopped the run")])
def test_a_failed_close_is_raised_unless_an_error_already_stops_the_run(tmp_path, stopped_by):
    """Leaving the block closes metrics.jsonl: its failure is the error when nothing else went
    wrong (a full disk must not pass unseen), and gives way to the error that stopped the run
    (a failed line fails again when it is closed; the first error names the file)."""
    run = RunDirectory(tmp_path, {})
    metrics_file = run.metrics_file

    class FailingClose:
        def close(self):
            metrics_file.close()
            raise OSError(28, "No space left on device")
    run.metrics_file = FailingClose()
    expected = stopped_by or OSError(28, "No space left on device")
    with pytest.raises(type(expected), match=f"^{re.escape(str(expected))}$"):
        with run:
            if stopped_by:
                raise stopped_by


def test_svg_scales_points_into_the_plot_area():
    svg = loss_curve_svg({"loss": [(0, 1.0), (10, 0.01)]}, width=200, height=100, margin=10)
    root = ElementTree.fromstring(svg)
    points = root.find("{http://www.w3.org/2000/svg}polyline").get("points").split()
    assert points == ["10.0,10.0", "190.0,90.0"]  # log scale: first top-left, last bottom-right
    assert "no values logged" in loss_curve_svg({})


def test_svg_of_a_series_that_reaches_zero_uses_a_linear_scale():
    svg = loss_curve_svg({"loss": [(0, 2.0), (5, 1.0), (10, 0.0)]}, width=200, height=100,
                         margin=10)
    root = ElementTree.fromstring(svg)
    points = root.find("{http://www.w3.org/2000/svg}polyline").get("points").split()
    assert points == ["10.0,10.0", "100.0,50.0", "190.0,90.0"]  # evenly spaced: not log10
    assert "log-scale" not in svg


def test_svg_axis_labels_are_the_lowest_and_highest_values_on_a_log_scale():
    svg = loss_curve_svg({"loss": [(0, 2.0), (10, 0.01)]}, width=200, height=100, margin=10)
    svg_text = "{http://www.w3.org/2000/svg}text"
    texts = [text.text for text in ElementTree.fromstring(svg).iter(svg_text)]
    assert texts[:4] == ["0.01", "2", "0", "10"]  # bottom, top, first step, last step


def test_svg_spans_the_logged_steps_and_names_each_series_in_its_colour():
    svg = loss_curve_svg({"loss": [(100, 2.0), (150, 1.0), (200, 0.0)],
                          "kl": [(100, 1.0), (200, 2.0)]}, width=200, height=100, margin=10)
    root = ElementTree.fromstring(svg)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert [line.get("points").split() for line in lines] == [
        ["10.0,10.0", "100.0,50.0", "190.0,90.0"], ["10.0,50.0", "190.0,10.0"]]
    legend = {text.text: text.get("fill") for text in root.iter("{http://www.w3.org/2000/svg}text")
              if text.get("fill")}
    assert legend == {"loss": lines[0].get("stroke"), "kl": lines[1].get("stroke")}
    assert lines[0].get("stroke") != lines[1].get("stroke")
    frames = [rect.attrib for rect in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert {"x": "10", "y": "10", "width": "180", "height": "80"}.items() <= frames[1].items()


def test_the_loss_curve_names_only_the_series_that_were_logged(tmp_path):
    """The model commands ask for loss, d_loss and g_loss (a GAN logs the last two, the others
    only loss): a key never logged gets no empty line and no legend entry."""
    with RunDirectory(tmp_path / "run", {}) as run:
        run.log(1, loss=0.5)
        run.log(2, loss=0.25)
        svg_path = run.write_loss_curve(keys=("loss", "d_loss", "g_loss"))
    root = ElementTree.parse(svg_path).getroot()
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert [len(line.get("points").split()) for line in lines] == [2]
    legend = [text.text for text in root.iter("{http://www.w3.org/2000/svg}text")
              if text.get("fill")]
    assert legend == ["loss"]


@pytest.mark.parametrize("values", [[(3, 0.5)], [(1, 0.5), (2, 0.5)], [(1, 0.0), (2, 0.0)]])
def test_svg_of_one_point_or_a_flat_series_draws_it_at_the_bottom(values):
    """A lone or constant value has no span: the axis is widened above it (a decade on a log
    scale, one unit on a linear one), not divided by zero."""
    svg = loss_curve_svg({"loss": values}, width=200, height=100, margin=10)
    root = ElementTree.fromstring(svg)
    points = root.find("{http://www.w3.org/2000/svg}polyline").get("points").split()
    assert {point.split(",")[1] for point in points} == {"90.0"}
    low, high = (float(text.text) for text in root.iter("{http://www.w3.org/2000/svg}text")
                 if text.get("text-anchor") == "end" and text.get("x") == "6")
    assert (low, high) == ((0.5, 5.0) if values[0][1] else (0.0, 1.0))


@pytest.mark.parametrize("step", [1, 2**60])
def test_svg_of_one_step_labels_its_step_axis_with_integers(step):
    """The step axis of a one-step run was widened by a float 1.0: labelled "1" to "2.0"."""
    root = ElementTree.fromstring(loss_curve_svg({"loss": [(step, 0.5)]}, width=200,
                                                 height=100, margin=10))
    labels = [text.text for text in root.iter("{http://www.w3.org/2000/svg}text")
              if text.get("y") == "106"]  # below the frame: the first and last step
    assert labels == [str(step), str(step + 1)]


def test_svg_of_one_point_draws_a_dot_and_leaves_out_what_is_not_finite():
    """A one-step run's curve was a polyline of one point, which draws nothing; a value read as
    infinite (1e999 in a hand-edited metrics.jsonl) gave nan coordinates; a constant 2**60
    divided by zero; and a series name went into the SVG unescaped."""
    root = ElementTree.fromstring(loss_curve_svg({"loss": [(1, 0.5), (2, math.inf)]},
                                                 width=200, height=100, margin=10))
    (dot,) = root.iter("{http://www.w3.org/2000/svg}circle")
    assert (dot.get("cx"), dot.get("cy")) == ("10.0", "90.0")
    assert "nan" not in ElementTree.tostring(root, encoding="unicode")
    flat = loss_curve_svg({"a<b&c": [(1, -2.0**60), (2, -2.0**60)]}, width=200, height=100,
                          margin=10)
    root = ElementTree.fromstring(flat)  # valid XML: the name escaped
    points = root.find("{http://www.w3.org/2000/svg}polyline").get("points").split()
    assert points == ["10.0,90.0", "190.0,90.0"]
    assert "a<b&c" in [text.text for text in root.iter("{http://www.w3.org/2000/svg}text")]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    """A stream that says it is a terminal, and records how much of its text was flushed."""
    flushed = 0

    def isatty(self):
        return True

    def flush(self):
        self.flushed = len(self.getvalue())


def test_progress_prints_plain_periodic_lines_when_not_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(total=100, stream=stream, line_interval=10.0, clock=clock)
    for step in range(1, 101):
        clock.now = step * 0.5  # 2 steps per second
        progress.update(step, loss=1.0 / step)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 5  # every 10 s over 50 s
    assert lines[0].startswith("[") and " 20/100  20% loss=0.05 2 it/s ETA 0:00:40" in lines[0]
    assert " 100/100 100% " in lines[-1]


def test_progress_redraws_in_place_on_a_terminal():
    stream, clock = Terminal(), FakeClock()
    progress = Progress(total=4, stream=stream, min_interval=0.0, clock=clock)
    for step in range(1, 5):
        clock.now = float(step)
        progress.update(step)
    progress.write("sampled a grid")
    # the bar is cleared, the message printed on its own line, and the bar drawn again below
    assert stream.getvalue().endswith("\r\033[Ksampled a grid\n\r" + progress.text() + "\033[K")
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") >= 4 and text.endswith("\n") and stream.flushed == len(text)


def test_durations_and_byte_counts_read_as_clock_time_and_mebibytes():
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(3 * 3600 + 5 * 60 + 7) == "3:05:07"  # minutes wrap at the hour
    assert format_count(3 * 2**20, "B") == "3.0MiB" and format_count(1536 * 1024, "B") == "1.5MiB"
    assert format_count(7, "step") == "7"


def test_a_resumed_progress_measures_its_rate_from_where_it_started():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(total=100, initial=50, stream=stream, line_interval=5.0, clock=clock)
    clock.now = 5.0
    progress.update(60)  # 10 steps in 5 s, not 60
    assert stream.getvalue() == "[##############..........] 60/100  60% 2 it/s ETA 0:00:20\n"


def test_a_count_past_the_total_fills_the_bar_and_no_more():
    progress = Progress(total=4, stream=io.StringIO(), clock=FakeClock())
    progress.update(6)  # not shown yet (no time has passed): text() is what it would show
    # no time has passed either: no rate to measure yet, and so no time left to estimate
    assert progress.text() == "[" + "#" * 24 + "] 6/4 100% 0 it/s"


def test_byte_progress_reads_in_mebibytes_and_a_count_past_the_total_has_no_time_left():
    clock = FakeClock()
    clock.now = 100.0  # the clock's origin is arbitrary: only differences count
    progress = Progress(total=4 * 2**20, unit="B", stream=io.StringIO(), clock=clock)
    clock.now = 101.0
    progress.update(2**20)
    assert progress.text() == "[######..................] 1.0MiB/4.0MiB  25% 1 MiB/s ETA 0:00:03"
    clock.now = 102.0
    progress.update(5 * 2**20)
    assert progress.text().endswith("] 5.0MiB/4.0MiB 100% 2.5 MiB/s ETA 0:00:00")


def test_a_slow_count_past_the_total_has_no_time_left_and_an_unknown_total_no_bar():
    clock = FakeClock()
    progress = Progress(total=4, stream=io.StringIO(), clock=clock)
    clock.now = 4.0
    progress.update(6)
    assert progress.text().endswith("] 6/4 100% 1.5 it/s ETA 0:00:00")
    progress = Progress(total=8, stream=io.StringIO(), clock=clock)
    clock.now = 12.0
    progress.update(4)  # 0.5 it/s: still an estimate
    assert progress.text().endswith("] 4/8  50% 0.5 it/s ETA 0:00:08")
    progress = Progress(stream=io.StringIO(), description="sampling", clock=clock)
    clock.now = 14.0
    progress.update(7)
    assert progress.text() == "sampling 7 3.5 it/s"  # 7 in the 2 s since it began


def test_progress_shows_a_line_every_10_s_off_a_terminal_and_redraws_every_0_1_s_on_one():
    for stream, interval in ((io.StringIO(), 10.0), (Terminal(), 0.1)):
        clock = FakeClock()
        progress = Progress(total=100, stream=stream, clock=clock)
        clock.now = interval * 0.99
        progress.update(1)
        assert stream.getvalue() == ""
        clock.now = interval
        progress.update(2)
        assert "2/100" in stream.getvalue()


def test_a_stream_without_isatty_gets_plain_lines_each_flushed_at_once():
    class Sink:  # a write-only stream: only write and flush
        def __init__(self):
            self.text, self.unflushed = "", False

        def write(self, text):
            self.text, self.unflushed = self.text + text, True

        def flush(self):
            self.unflushed = False
    sink, clock = Sink(), FakeClock()
    progress = Progress(total=2, stream=sink, line_interval=1.0, clock=clock)
    clock.now = 1.0
    progress.update(1)
    assert sink.text.endswith("1/2  50% 1 it/s ETA 0:00:01\n") and not sink.unflushed
    progress.write("note")
    assert sink.text.splitlines()[1:] == ["note"] and not sink.unflushed
    progress.update(2)
    progress.close()
    assert "\r" not in sink.text and sink.text.splitlines()[2].split()[1] == "2/2"
    assert not sink.unflushed


def test_close_prints_the_final_count_once_when_the_last_update_was_not_shown():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(total=15, stream=stream, line_interval=10.0, clock=clock)
    for step in range(1, 16):
        clock.now = float(step)
        progress.update(step)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["10/15", "15/15"]
    progress.close()  # shown already: nothing more
    assert len(stream.getvalue().splitlines()) == 2


def test_files_written_together_are_renamed_in_the_order_given(tmp_path, monkeypatch):
    """All are written before the first rename, and the renames follow ``contents``: a
    manifest put last is never in place before the files it describes."""
    renamed = []
    replace = os.replace

    def recorded(source, destination):
        if not renamed:  # the first rename: every file waits, written, in its temporary
            assert sum(atomic.TEMPORARY_NAME.fullmatch(name) is not None
                       for name in os.listdir(tmp_path)) == 3
        renamed.append(os.path.basename(destination))
        replace(source, destination)
    monkeypatch.setattr(atomic.os, "replace", recorded)
    names = ["images.npy", "labels.npy", "manifest.json"]
    atomic.write_together({str(tmp_path / name): name.encode() for name in names})
    assert renamed == names
    assert {name: (tmp_path / name).read_bytes() for name in names} == \
        {name: name.encode() for name in names}


def test_files_written_together_may_go_into_a_folder_not_made_yet(tmp_path):
    """The leftovers of earlier writes are looked for first, where there is a folder to look
    in: a new folder is made by the writes, as for one file."""
    path = tmp_path / "new" / "deeper" / "images.npy"
    atomic.write_together({str(path): numpy.arange(3)})
    assert numpy.load(path).tolist() == [0, 1, 2]


def test_the_leftovers_of_writes_through_a_link_are_removed_beside_the_file_it_points_to(
        tmp_path):
    """A write through a link at ``path`` made its temporary beside the file the link points
    to, named after that file: that is where ``remove_leftovers_of(path)`` looks."""
    (tmp_path / "data").mkdir()
    (tmp_path / "links").mkdir()
    (tmp_path / "data" / "images.npy").write_bytes(b"old")
    (tmp_path / "links" / "link.npy").symlink_to(tmp_path / "data" / "images.npy")
    leftover = tmp_path / "data" / ".images.npy.abcd1234.tmp"
    other = tmp_path / "data" / ".labels.npy.abcd1234.tmp"  # another file's write: kept
    leftover.write_bytes(b"killed mid-write")
    other.write_bytes(b"killed mid-write")
    atomic.remove_leftovers_of(tmp_path / "links" / "link.npy")
    assert not leftover.exists() and other.exists()


def test_files_written_together_remove_what_killed_writes_of_them_left(tmp_path):
    """A conversion killed mid-write left its temporaries: written again, each file's own are
    removed, those of other files (perhaps being written now) stay."""
    own = tmp_path / ".images.npy.abcd1234.tmp"
    other = tmp_path / ".other.npy.abcd1234.tmp"
    own.write_bytes(b"killed mid-write")
    other.write_bytes(b"killed mid-write")
    atomic.write_together({str(tmp_path / "images.npy"): numpy.arange(2)})
    assert not own.exists() and other.exists()


def test_a_file_of_a_set_that_fails_to_write_is_named_alone(tmp_path, monkeypatch):
    """The disk fills while the second file of two is synced: the error names that file once,
    not wrapped again in the name of the other file, whose write it unwinds; no file is left."""
    synced, fsync = [], os.fsync

    def fails_on_the_second(fd):
        synced.append(fd)
        if len(synced) == 2:
            raise OSError(28, os.strerror(28))
        fsync(fd)
    monkeypatch.setattr(atomic.os, "fsync", fails_on_the_second)
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    with pytest.raises(OSError, match=f"^cannot write {re.escape(str(first))}: "
                                      f"No space left on device$"):
        atomic.write_together({str(first): b"1", str(second): b"2"})  # second written first
    assert os.listdir(tmp_path) == []
