"""Devices and array modules: the one place that probes for CuPy and picks NumPy or CuPy
(the kernels in ``minilean/cuda/`` import CuPy themselves, once this module has found it).

``device="cpu"`` computes with NumPy, ``device="cuda"`` with CuPy. Everything above this
module asks ``xp_for(device)`` (or ``array_module(array)``) for its array module and is written
once for both. CuPy is probed lazily, so a machine without it imports and runs minilean on
the CPU. Random numbers come from one seeded generator per device (``manual_seed``).
"""
import collections
import contextlib
import math

import numpy

DEVICES = ("cpu", "cuda")


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


class GraphCaptureError(DeviceError):
    """A function could not be captured as a CUDA graph (``minilean.cuda.graph``): it copied
    to or from the host, synchronised, called a library that CuPy does not capture, or drew
    random numbers on the device (``generator`` refuses that while a graph is recorded)."""


_cupy = None
_cuda_problem = None  # the reason CUDA is unusable, once probed; "" when it works


def _probe_cuda():
    """Import CuPy and check that a GPU answers; remember the verdict."""
    global _cupy, _cuda_problem
    if _cuda_problem is not None:
        return
    try:
        import cupy
    except ImportError:
        _cuda_problem = ("device 'cuda' needs CuPy, which is not installed "
                         "(pip install 'minilean[cuda12]' or 'minilean[cuda13]')")
        return
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy raises its own CUDARuntimeError without a driver
        count, reason = 0, str(error).splitlines()[0] if str(error) else type(error).__name__
    else:
        reason = "no GPU is visible"
    if count == 0:
        _cuda_problem = f"device 'cuda' needs an NVIDIA GPU, but CuPy found none ({reason})"
        return
    _cupy, _cuda_problem = cupy, ""


def cuda_available():
    """True when CuPy is installed and at least one GPU answers."""
    _probe_cuda()
    return _cuda_problem == ""


def check_device(device):
    """Return ``device`` if usable, else raise a one-line error saying what is missing."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not cuda_available():
        raise DeviceError(_cuda_problem)
    return device


def xp_for(device):
    """The array module (NumPy or CuPy) that computes on ``device``."""
    if device == "cpu":
        return numpy
    check_device(device)
    return _cupy


def device_of(array):
    """'cuda' for a CuPy array, 'cpu' for anything else (NumPy's arrays, and host data such as
    a memoryview or another library's CPU tensor, which NumPy can read)."""
    if isinstance(array, (numpy.ndarray, numpy.generic)):
        return "cpu"
    if _cuda_problem is None:  # a CuPy array made before minilean looked for CuPy
        _probe_cuda()
    return "cuda" if _cupy is not None and isinstance(array, _cupy.ndarray) else "cpu"


def array_module(array):
    """The array module that owns ``array``."""
    return numpy if device_of(array) == "cpu" else _cupy


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    return xp_for("cuda").asarray(array)


def erf(array):
    """erf of each element, in the array's own module: CuPy ships it (cupyx); on the CPU
    SciPy's when installed, else the standard library's, one element at a time (exact but
    slow, fine for small models). In the array's dtype: SciPy has no float16 loop and gives
    float64 there (and gelu with it)."""
    return _special("erf", array)


def erfc(array):
    """erfc(x) = 1 - erf(x) of each element, from the same sources as ``erf``, without the
    cancellation of 1 - erf(x) where erf(x) is near 1 (gelu's Phi(x) = erfc(-x / sqrt 2) / 2
    keeps its left tail)."""
    return _special("erfc", array)


def _special(name, array):
    """SciPy's special function ``name`` (cupyx's on a GPU, else ``math.<name>`` element by
    element) of ``array``, in its dtype."""
    if device_of(array) == "cuda":
        import cupyx.scipy.special
        return getattr(cupyx.scipy.special, name)(array).astype(array.dtype, copy=False)
    try:
        import scipy.special
    except ImportError:
        return numpy.vectorize(getattr(math, name), otypes=[array.dtype])(array)
    return getattr(scipy.special, name)(array).astype(array.dtype, copy=False)


def sum_middle_axis(array):
    """``array.sum(axis=1, keepdims=True)`` of a contiguous array of 3 or more axes, by the
    fastest route on its device. NumPy: a product of a vector of ones with each sample's
    (S, rest) matrix, 5-10x faster than its reduction over a middle axis (measured at
    (32, 256, 8, 3): 12 against 138 us). CuPy: one reduction kernel; the product would be a
    batched GEMM, for which CuPy first builds device arrays of matrix addresses."""
    if device_of(array) == "cuda":
        return array.sum(axis=1, keepdims=True)
    ones = numpy.ones(array.shape[1], dtype=array.dtype)
    # (N, S, ...) -> (N, S, rest); (S,) @ (N, S, rest) -> (N, rest) -> (N, 1, ...)
    sums = numpy.matmul(ones, array.reshape(array.shape[:2] + (-1,)))
    return sums.reshape((array.shape[0], 1) + array.shape[2:])


def keep_where(mask, values):
    """``values`` where ``mask`` holds, else +0 (to the bit: inf and nan kept where it holds),
    by the fastest route on the device. NumPy: values' bits and'ed with a word of all ones
    where the mask holds, of zeros where not. NumPy's ``where`` branches on every element, and
    on a mask such as ReLU's x > 0 the branch mispredicts half the time: 1.9 ms against 0.12 ms
    at (32, 16, 32, 32) float32, one thread. CuPy: ``where``, one kernel where the bitwise
    select would launch three."""
    xp = array_module(values)
    if xp is not numpy:
        return xp.where(mask, values, xp.zeros((), dtype=values.dtype))
    bits = numpy.dtype(f"uint{8 * values.dtype.itemsize}")  # the unsigned integer of its width
    keep = numpy.asarray(mask).astype(bits)
    numpy.negative(keep, out=keep)  # 1 -> all ones (unsigned arithmetic wraps), 0 -> 0
    # asarray: NumPy gives a scalar, not an array, for 0-d operands
    return numpy.asarray(values.view(bits) & keep).view(values.dtype)


_graph_matmul = None  # the product used while minilean.cuda.graph records (see graph_recording)


def matmul(a, b, out=None):
    """``a @ b`` by NumPy's rules, in the operands' own module; every product of the engine
    goes through here, so that ``graph_recording`` can replace it."""
    if device_of(a) == "cuda":
        if _graph_matmul is not None:
            return _graph_matmul(a, b, out)
        if out is None and a.ndim == 2 and b.ndim == 2:  # two matrices, as most products are
            return a.dot(b)
        if _one_product(a, b, out):
            return _dot(a, b, out)
    return array_module(a).matmul(a, b, out=out)


def _one_product(a, b, out):
    """Whether ``a @ b`` is one product of matrices (or vectors): batch dimensions, if any, all
    1 on both sides, and ``out``, if given, C-contiguous (as ``ndarray.dot`` requires)."""
    if (out is not None and not out.flags.c_contiguous) or a.ndim == 0 or b.ndim == 0:
        return False  # (matmul refuses scalars, which dot would multiply)
    if a.ndim <= 2 and b.ndim <= 2:
        return True
    return a.ndim >= 2 and b.ndim >= 2 and math.prod(a.shape[:-2]) * math.prod(b.shape[:-2]) == 1


def _dot(a, b, out):
    """``a @ b`` for a ``_one_product`` on "cuda" by ``ndarray.dot``: the cuBLAS GEMM that
    cupy.matmul reaches too, without the layer of Python (signature, dtypes, axes, output) its
    generalized ufunc runs on every call, nor, for batch dimensions of 1, a batched GEMM (a
    small model's step is bound by host time per launch)."""
    product = _as_matrix(a).dot(_as_matrix(b), out=None if out is None else _as_matrix(out))
    if out is not None:
        return out
    batch_ndim = max(a.ndim, b.ndim) - 2
    return product.reshape((1,) * batch_ndim + product.shape) if batch_ndim > 0 else product


def _as_matrix(array):
    """A batch of one matrix -> the matrix (a view); a matrix or a vector as it is."""
    return array.reshape(array.shape[-2:]) if array.ndim > 2 else array


@contextlib.contextmanager
def graph_recording(graph_matmul):
    """The block in which ``minilean.cuda.graph`` warms up and records a CUDA graph. Inside it
    ``matmul`` on "cuda" arrays computes ``graph_matmul(a, b, out)`` (CuPy's matmul calls
    cuBLAS, which CuPy refuses while a stream is captured), and ``recording_graph()`` is true,
    so code that would bake host state into the graph takes its plain path instead, and
    ``generator`` refuses to draw on "cuda"."""
    global _graph_matmul
    previous, _graph_matmul = _graph_matmul, graph_matmul
    try:
        yield
    finally:
        _graph_matmul = previous


def recording_graph():
    """True inside ``graph_recording``."""
    return _graph_matmul is not None


_CONSTANTS_KEPT = 16
_constants = collections.OrderedDict()  # (dtype, shape, bytes) -> the copy on "cuda"


def constant(values, device):
    """The NumPy array ``values`` on ``device``, copied there once and reused afterwards.

    For tables that every training step reads, such as a diffusion schedule: indexing the
    device copy with device indices costs no host-device copy per step (which a CUDA graph
    requires). Keyed by the contents; the copy is shared, so never write into it.
    """
    if device == "cpu":
        return values
    key = (values.dtype.str, values.shape, values.tobytes())
    if key in _constants:
        _constants.move_to_end(key)
    else:
        _constants[key] = xp_for(device).asarray(values)
        if len(_constants) > _CONSTANTS_KEPT:
            _constants.popitem(last=False)
    return _constants[key]


# --- random numbers ---------------------------------------------------------------------

_seed = 0
_generators = {}


def manual_seed(seed):
    """Reseed every device's generator, so a run with the same seed repeats exactly."""
    global _seed
    if not isinstance(seed, (int, numpy.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _seed = int(seed)
    _generators.clear()


def generator(device):
    """The seeded random generator of ``device`` (created on first use).

    Refused on "cuda" while a CUDA graph is recorded (``recording_graph``): the graph would
    hold the draw's kernels, which read the generator's state in device memory by its address
    (CuPy's ``Generator`` keeps it there), so every replay would draw from the generator as it
    was captured, deaf to a ``manual_seed`` that replaced it since and freed that memory.
    A captured function takes its random numbers as inputs instead, drawn outside it."""
    if device == "cuda" and recording_graph():
        raise GraphCaptureError("it draws random numbers on 'cuda': a replay would take them "
                                "from the generator as it was captured, whatever manual_seed "
                                "did since; draw them outside the captured function (on the "
                                "host, as the CLI does) and pass them in as inputs")
    if device not in _generators:
        xp = xp_for(device)
        _generators[device] = xp.random.default_rng(_seed)
    return _generators[device]


def get_rng_state():
    """A JSON-able snapshot of the CPU generator, for checkpoints."""
    return generator("cpu").bit_generator.state


def set_rng_state(state):
    """Restore a snapshot taken by ``get_rng_state``."""
    generator("cpu").bit_generator.state = state
