"""How many CPU threads the BLAS library under NumPy (OpenBLAS, MKL, BLIS) multiplies with.

On the CPU, most of a training step is matrix products (convolutions become them), and NumPy
hands those to its BLAS library, which starts one thread per core by default. Each product is
split among the threads and waits for the last of them. On an idle machine that pays: the
default diffusion step takes 77-79 ms with two threads and 99-105 ms with one on a 2-core Xeon.
When another process keeps a core busy, the thread that lands there runs only when the
scheduler lets it, and every product waits for it: 333-368 ms against 106-108 ms with one
thread, on the same machine with one core kept busy (``benchmarks/blas_threads.py``; its
numbers in ``benchmarks/RESULTS.md``, "BLAS threads"). So a busy machine wants one thread, an
idle one all of them, and only the user knows which it is.

The thread count changes how a product is split, and with it the rounding of float32 sums: a
run is bit-for-bit repeatable on one machine with one thread count, not across counts. The
command line's ``--threads`` (saved with the run's flags) sets it; from Python,
``minilean.set_num_threads`` (PyTorch's name). The count is the process's: it applies to every
product that follows, until a command-line run without ``--threads`` in the same process puts
back the count there was before a run's ``--threads`` changed it (``use_run_threads``).
threadpoolctl (a dependency of the package) finds the BLAS library NumPy loaded, whichever it
is.
"""
import numbers

from minilean.backend import DeviceError

C_INT_MAX = 2**31 - 1
# the count before a command-line run's --threads changed it (None while none has), which a
# later run without --threads in the same process goes back to
_count_before_runs = None


def _blas_libraries(caller):
    """The loaded BLAS libraries that threadpoolctl can set (usually one: NumPy's).
    Imported here, not at the top: ``import minilean`` works where threadpoolctl is missing
    (a GPU machine's bare image) as long as nothing asks for threads."""
    from threadpoolctl import ThreadpoolController
    libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    if not libraries:
        raise DeviceError(f"{caller}: NumPy's BLAS library is none whose threads can be set "
                          f"(threadpoolctl knows OpenBLAS, MKL, BLIS and FlexiBLAS)")
    return libraries


def get_num_threads():
    """The threads the BLAS library multiplies with (the most, if several are loaded)."""
    return max(library.num_threads for library in _blas_libraries("get_num_threads"))


def set_num_threads(count):
    """Multiply with ``count`` threads (an integer >= 1) from now on; returns the count the
    library took (a library may cap it: OpenBLAS at the most it was built for)."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise TypeError(f"set_num_threads: got {count!r}; expected an integer >= 1")
    if count < 1:
        raise ValueError(f"set_num_threads: got {count!r}; expected an integer >= 1")
    global _count_before_runs
    _count_before_runs = None  # the count chosen now is the one a run without --threads keeps
    return _set(count)


def _set(count):
    # the libraries take a C int: a larger count would wrap (2**32 + 1 threads set 1); past
    # INT_MAX every library caps it anyway
    count = min(int(count), C_INT_MAX)
    for library in _blas_libraries("set_num_threads"):
        library.set_num_threads(count)
    return get_num_threads()


def use_run_threads(count):
    """The command line's ``--threads`` of a run: multiply with ``count`` threads, or, where it
    is None, with the count there was before an earlier run's ``--threads`` changed it (the
    library's own, or what ``set_num_threads`` set from Python; nothing to do, and no
    threadpoolctl needed, where no run has). ``cli.main`` called twice: a run without
    --threads, its config.json saying none, multiplied with the run before's count, which
    rounds float32 sums otherwise."""
    global _count_before_runs
    if count is None:
        if _count_before_runs is not None:
            _set(_count_before_runs)
            _count_before_runs = None
        return
    before = get_num_threads() if _count_before_runs is None else _count_before_runs
    set_num_threads(count)  # checks the count; forgets the count before, as a count set does
    _count_before_runs = before
