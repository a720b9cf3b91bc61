"""minilean's own host time per fast eager training step, measured without a GPU: a null device.

    python benchmarks/host_layer.py                       # 15 rounds of 20 steps, CPU time
    python benchmarks/host_layer.py --rounds 31 --steps 40     # steadier

A small model's eager step on a GPU waits on the host (``bench_gpu.py``'s "gpu work" rows: the
GPU is busy for a seventh of it), so the step takes the host time of the calls it makes:
minilean's own Python (tensors, the graph, the ops, the launch helpers of ``minilean/cuda``) and
CuPy's (allocations, launches, its own operators and products). ``host_costs.py`` times CuPy's
part per call on a GPU machine; this times minilean's part on any machine. Here "cuda" arrays
are NumPy arrays of a subclass (``DeviceArray``: reading an attribute costs what it costs on a
CuPy array, a C-level one), CuPy's functions are NumPy's, and a raw kernel launch does
nothing. The step's CPU time is then minilean's host work plus NumPy's on tiny arrays (by
default 2 images of 4x4, so that there is no arithmetic to speak of; the values mean nothing;
at the CLI's batch of 32 images of 16x16, NumPy's products would be most of the time).

The script also counts the raw launches per step: they are what the CPU stand-in counts for
the same step (``count_device_ops.py``), so the null device runs the fast path a GPU runs.
It has no PyTorch column: PyTorch's "meta" device also runs no kernels, but builds every
result's shape in Python (about 190 ms for this step), which is not its eager cost; PyTorch's
eager step on a card is in ``bench_gpu.py``.
"""
import argparse
import importlib.machinery
import os
import statistics
import sys
import time
import types

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the products are tiny: no threads to wake

import numpy  # noqa: E402

from arguments import at_least, image_side, description  # noqa: E402  (beside this script)
from count_device_ops import TESTS, _Patches  # noqa: E402  (beside this script)

sys.path[:0] = [os.path.dirname(TESTS), TESTS]
import fake_cupy  # noqa: E402  (in tests/)


class DeviceArray(numpy.ndarray):
    """An array on the null device: a NumPy array that says where it lives the way CuPy's do."""

    @property
    def data(self):
        # an aligned, unique address for as long as the array lives: kernels never read it
        return types.SimpleNamespace(ptr=id(self))

    def get(self, stream=None):
        return numpy.array(self.view(numpy.ndarray))

    def set(self, host, stream=None):
        self.view(numpy.ndarray)[...] = host


def _on_device(value):
    return value.view(DeviceArray) if type(value) is numpy.ndarray else value


class _Launches:
    """Every raw kernel of the null device: it counts its launches and runs nothing."""
    count = 0

    def __call__(self, grid, block, arguments, shared_mem=0):
        _Launches.count += 1


class _RawModule:
    def __init__(self, code, options=(), name_expressions=()):
        pass

    def get_function(self, name):
        return _Launches()


class _Stream:
    def synchronize(self):
        pass


class _Generator:
    """CuPy's ``random.Generator`` on the null device: NumPy's, its arrays put on the device."""

    def __init__(self, seed):
        self._host = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        method = getattr(self._host, name)
        return lambda *args, **kwargs: _on_device(method(*args, **kwargs))


class NullCupy(types.ModuleType):
    """``import cupy`` on the null device: NumPy's functions, their arrays put on the device.
    Memory comes zeroed: the kernels that would fill it run nothing, and garbage could hold
    the NaNs and subnormal numbers that slow a CPU's arithmetic down."""
    ndarray = DeviceArray
    RawModule = _RawModule
    _ZEROED = {"empty": "zeros", "empty_like": "zeros_like"}

    def __getattr__(self, name):
        attribute = getattr(numpy, self._ZEROED.get(name, name))
        if not callable(attribute) or isinstance(attribute, type):
            return attribute

        def on_device(*args, **kwargs):
            return _on_device(attribute(*args, **kwargs))
        setattr(self, name, on_device)  # looked up once
        return on_device


def install(patches):
    """Make device "cuda" the null device; ``patches`` (pytest's ``monkeypatch`` interface)
    sets every attribute, so that a test can undo it."""
    from minilean import backend
    fake_cupy.forget_device_state()  # kernels and device tables made by another "cuda"
    cupy = NullCupy("cupy")
    cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    cupy.__spec__._initializing = False  # as an imported module's: ``import cupy`` is a lookup
    cupy.cuda = types.SimpleNamespace(get_current_stream=_Stream)
    cupy.random = types.SimpleNamespace(default_rng=_Generator)
    patches.setitem(sys.modules, "cupy", cupy)
    host_types = (numpy.ndarray, numpy.generic)

    def device_of(array):
        return "cuda" if type(array) is DeviceArray or not isinstance(array, host_types) \
            else "cpu"

    def to_device(array, device):
        if device_of(array) == device:
            return array
        return numpy.array(array) if device == "cpu" else numpy.array(array).view(DeviceArray)

    for name, value in (("_cupy", cupy), ("_cuda_problem", ""), ("_generators", {}),
                        ("device_of", device_of), ("to_device", to_device)):
        patches.setattr(backend, name, value)


def host_time(step, rounds, steps):
    """CPU seconds per call of ``step(k)``, one number per round of ``steps`` calls."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for k in range(steps):
            step(k)
        times.append((time.process_time() - start) / steps)
    return times


def main(argv=None, patches=None):
    """``patches``: as for ``install``; by default the null device stays for the process."""
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--rounds", type=at_least(1), default=15)
    parser.add_argument("--steps", type=at_least(1), default=20, help="steps per round")
    parser.add_argument("--batch-size", type=at_least(1), default=2)
    parser.add_argument("--hidden-c", type=at_least(2), default=24,
                        help="U-Net width (CLI default 24)")
    parser.add_argument("--image-size", type=image_side, default=4)
    args = parser.parse_args(argv)
    install(patches or _Patches())
    from device_cases import diffusion_step_parts
    from minilean.cuda import use_fast_kernels

    use_fast_kernels(True)
    try:
        _, step = diffusion_step_parts(args.batch_size, args.hidden_c, args.image_size)
        step(0, clip=True)  # warm-up: caches filled
        _Launches.count = 0
        step(1, clip=True)
        launches = _Launches.count
        times = host_time(lambda k: step(k, clip=True), args.rounds, args.steps)
    finally:
        fake_cupy.forget_device_state()
    print(f"fast eager step of the U-Net (hidden {args.hidden_c}, batch {args.batch_size}x3x"
          f"{args.image_size}^2, Adam + clipping + EMA) on the null device: {launches} raw "
          f"launches; host CPU time per step: median {statistics.median(times) * 1e3:.2f} ms, "
          f"min {min(times) * 1e3:.2f} ms over {args.rounds} rounds of {args.steps}")
    print("command: python benchmarks/host_layer.py" + "".join(f" {a}" for a in argv or []))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
