"""The CPU's BLAS threads: ``minilean.set_num_threads`` and the command line's ``--threads``."""
import ctypes
import json

import numpy
import pytest

import minilean as ml
from minilean.backend import DeviceError
from minilean.cli import main

# a dependency of the package; a GPU machine's bare image, which runs the checkout uninstalled,
# may lack it
threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture
def restored_threads():
    """The process's thread count as it was before the test."""
    before = ml.get_num_threads()
    yield before
    ml.set_num_threads(before)


@pytest.mark.parametrize("count", [1, 3, numpy.int64(2)])
def test_the_library_multiplies_with_the_count_set(restored_threads, count):
    assert ml.set_num_threads(count) == count
    assert ml.get_num_threads() == count
    a = numpy.random.default_rng(0).standard_normal((64, 48))
    numpy.testing.assert_allclose(a @ a.T, numpy.einsum("ik,jk->ij", a, a), rtol=1e-12,
                                  atol=1e-12)


@pytest.mark.parametrize("count, error", [(0, ValueError), (-2, ValueError), (1.0, TypeError),
                                          (True, TypeError), ("2", TypeError)])
def test_a_count_that_is_not_a_positive_integer_is_refused(restored_threads, count, error):
    with pytest.raises(error, match=rf"^set_num_threads: got {count!r}; expected an integer "
                                    rf">= 1$"):
        ml.set_num_threads(count)
    assert ml.get_num_threads() == restored_threads


def test_a_count_past_a_c_int_is_capped_not_wrapped(restored_threads):
    """The library takes a C int: 2**32 + 1 threads arrived as 1 (and 2**32 as 0, ignored)."""
    most = ml.set_num_threads(2**31 - 1)  # the library's own cap
    ml.set_num_threads(1)
    assert ml.set_num_threads(2**32 + 1) == most


def use_libraries(monkeypatch, libraries):
    """Make threadpoolctl show ``libraries`` as NumPy's BLAS libraries."""
    class Controller:
        lib_controllers = libraries

        def select(self, user_api):
            return self

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", Controller)


def test_without_a_known_blas_library_the_error_says_so(monkeypatch):
    use_libraries(monkeypatch, [])
    with pytest.raises(DeviceError, match="^set_num_threads: NumPy's BLAS library is none "
                                          "whose threads can be set"):
        ml.set_num_threads(1)


class FakeLibrary:
    """A BLAS library as threadpoolctl shows it, built for at most ``cap`` threads."""

    def __init__(self, num_threads, cap):
        self.num_threads, self.cap = num_threads, cap

    def set_num_threads(self, count):
        self.num_threads = min(count, self.cap)


def test_two_libraries_report_the_larger_count_and_a_capped_count_is_returned(monkeypatch):
    libraries = [FakeLibrary(2, cap=4), FakeLibrary(3, cap=16)]
    use_libraries(monkeypatch, libraries)
    assert ml.get_num_threads() == 3
    assert ml.set_num_threads(8) == 8  # the larger of the two counts taken: 4 and 8
    assert [library.num_threads for library in libraries] == [4, 8]
    libraries.pop()
    assert ml.set_num_threads(8) == 4  # what the library took, not what was asked


def test_a_library_taking_any_c_int_gets_the_largest_c_int_for_any_larger_count(monkeypatch):
    """A count reaches the library as a C int: whatever is asked past the largest C int
    arrives as that largest one, never wrapped to another value."""
    largest_c_int = 2 ** (8 * ctypes.sizeof(ctypes.c_int) - 1) - 1

    class CIntLibrary:
        num_threads = 1

        def set_num_threads(self, count):
            self.num_threads = ctypes.c_int(count).value  # wraps as a C int does

    use_libraries(monkeypatch, [CIntLibrary()])
    for count in (largest_c_int, largest_c_int + 1, 2**32 + 1, 2**64):
        assert ml.set_num_threads(count) == largest_c_int
    assert ml.set_num_threads(largest_c_int - 1) == largest_c_int - 1


def test_the_threads_flag_sets_the_count_and_is_saved_with_the_run(restored_threads,
                                                                   tmp_path):
    wanted = 1 if restored_threads > 1 else 2
    main(["autoencoder", "--steps=1", "--n-eval=1", "--n-total=40", "--batch-size=8",
          "--hidden=8",
          f"--threads={wanted}", f"--out={tmp_path / 'run'}"])
    assert ml.get_num_threads() == wanted
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == wanted


def test_a_run_without_the_threads_flag_goes_back_to_the_count_before_the_runs(
        restored_threads, tmp_path):
    """``cli.main`` called twice in one process: the second run, without --threads (its
    config.json says none), multiplied with the first run's count, which rounds float32 sums
    otherwise (a diffusion run ended with other weights than the same run in a fresh
    process). It goes back to the count there was before: here one set from Python."""
    ml.set_num_threads(3)
    run = ["autoencoder", "--steps=1", "--n-eval=1", "--n-total=40", "--batch-size=8",
           "--hidden=8", "--progress=false"]
    main([*run, "--threads=1", f"--out={tmp_path / 'first'}"])
    assert ml.get_num_threads() == 1
    main([*run, f"--out={tmp_path / 'second'}"])
    assert ml.get_num_threads() == 3
    assert json.loads((tmp_path / "second" / "config.json").read_text())["threads"] is None


def test_runs_with_threads_one_after_another_go_back_to_the_count_before_the_first(
        restored_threads):
    """Two runs with --threads, then one without: the count it goes back to is the one before
    the first run set its own, not the first run's (which the second replaced)."""
    from minilean.threads import use_run_threads
    ml.set_num_threads(3)
    use_run_threads(1)
    use_run_threads(2)
    assert ml.get_num_threads() == 2
    use_run_threads(None)
    assert ml.get_num_threads() == 3


@pytest.mark.parametrize("threads, warned", [(2, False), (3, True)])
def test_more_threads_than_cores_are_warned_of(restored_threads, monkeypatch, capsys, threads,
                                                warned):
    """On 2 cores a VAE step took 0.5 s with 1 thread and 28 s with 16, without a word."""
    import os
    from types import SimpleNamespace
    from minilean.train.loop import prepare_device
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    prepare_device(SimpleNamespace(device="cpu", threads=threads, fast_kernels=False))
    assert capsys.readouterr().err == (
        f"minilean: warning: --threads {threads} is more than the 2 cores this process may "
        f"use; the threads wait on each other, and a step can take many times longer\n"
        if warned else "")
