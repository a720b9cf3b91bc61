"""benchmarks/gpu_session.sh, the one script a lent GPU machine runs: every part runs, each
part's status is kept, and the exit status counts the parts that failed. (Run here with a
stand-in for python: the parts themselves need a GPU.)"""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                      "gpu_session.sh")
PARTS = ("parity", "gpu_tests", "bench_gpu", "host_costs", "host_layer", "profile_step")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a bash script")


def session(tmp_path, **environment):
    return subprocess.run(["bash", SCRIPT, str(tmp_path / "results")], capture_output=True,
                          text=True, env={**os.environ, **environment}, timeout=120)


@pytest.mark.parametrize("python, code", [("true", 0), ("false", 6)])
def test_every_part_runs_and_the_exit_status_counts_the_failed_ones(python, code, tmp_path):
    """Every part was piped into tee, whose status became the script's: a session whose every
    part failed ended with 0."""
    done = session(tmp_path, PYTHON=python)
    assert done.returncode == code
    assert (tmp_path / "results" / "status.txt").read_text() == "".join(
        f"{part}: exit {int(bool(code))}\n" for part in PARTS)
    assert all((tmp_path / "results" / f"{part}.log").exists() for part in PARTS)


def test_a_part_past_its_time_is_named_as_timed_out(tmp_path):
    slow = tmp_path / "slow"
    # quick at the version lines (python -c ...), slow at every part
    slow.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 0\nexec sleep 30\n')
    slow.chmod(0o755)
    limits = {f"{name}_TIMEOUT": "0.1"
              for name in ("PARITY", "TESTS", "BENCH", "HOST", "LAYER", "PROFILE")}
    done = session(tmp_path, PYTHON=str(slow), **limits)
    status = (tmp_path / "results" / "status.txt").read_text().splitlines()
    assert done.returncode == 6
    assert status[0] == "parity: exit 124 (timed out after 0.1 s)"


def test_a_results_folder_that_cannot_be_made_stops_it_before_any_part(tmp_path):
    """It went on and ran all six parts, their logs written nowhere."""
    (tmp_path / "results").write_text("")  # a file where the folder should go
    done = subprocess.run(["bash", SCRIPT, str(tmp_path / "results" / "below")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": "false"})
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        f"gpu_session: cannot make the results folder {tmp_path / 'results' / 'below'}")
