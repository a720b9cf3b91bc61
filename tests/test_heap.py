"""heap.keep_freed_memory: freed blocks stay in the process, so a step's arrays fault no pages."""
import platform
import subprocess
import sys

import pytest

from minilean import heap

ON_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# In a fresh process (the setting is process-wide): minor page faults per cycle of 64 arrays
# of 1 MiB, each written and then all freed, as a training step's arrays are; glibc's
# defaults, then with keep_freed_memory.
FAULTS_SCRIPT = """
import resource, numpy
from minilean import heap

def faults_per_cycle():
    def cycle():
        blocks = [numpy.ones(2**18, numpy.float32) for _ in range(64)]
        del blocks
    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        cycle()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5

default = faults_per_cycle()
applied = heap.keep_freed_memory()
print(default, applied, faults_per_cycle())
"""


@pytest.mark.skipif(not ON_GLIBC, reason="glibc's malloc only")
def test_freed_memory_is_reused_without_page_faults():
    done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True,
                          check=True)
    default, applied, kept = done.stdout.split()
    # With 4 KiB pages 64 MiB is 16,384 faults a cycle (huge pages would make it fewer): glibc
    # trims the freed arrays away every cycle. Kept, the next cycle reuses them.
    assert applied == "True" and float(default) > 0 and float(kept) <= float(default) / 10


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert heap.keep_freed_memory() is False


def test_the_command_line_keeps_freed_memory(monkeypatch, capsys):
    from minilean.cli import main
    calls = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(True))
    with pytest.raises(SystemExit) as exit_info:  # a flag error: nothing to train
        main(["diffusion", "--steps=0"])
    assert exit_info.value.code == 2 and calls == [True]
