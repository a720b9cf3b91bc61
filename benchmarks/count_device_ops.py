"""How many device arrays one diffusion training step creates on "cuda", with plain CuPy and
with --fast-kernels: counted on the CPU stand-in for CuPy (tests/fake_cupy.py, the kernels
compiled for the CPU by tests/cuda_on_cpu.py), so it runs without a GPU.

    python benchmarks/count_device_ops.py [--batch-size 32] [--hidden-c 24] [--image-size 16]

A fresh array (one that is not a view) is, roughly, one kernel launch on a GPU: a small model's
step there is bound by the host time per launch, not by arithmetic, so this count is what the
fast kernels (and, later, CUDA graphs) must bring down. It is a count, not a timing.
"""
import argparse
import os
import sys

import numpy

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")


class _Patches:
    """Just enough of pytest's monkeypatch for fake_cupy.install."""

    def setattr(self, owner, name, value):
        setattr(owner, name, value)

    def setitem(self, mapping, key, value):
        mapping[key] = value


def count_step(fake_cupy, cuda_on_cpu, step):
    """(fresh device arrays, raw kernel launches) of one call of ``step``."""
    counts = {"fresh": 0, "launches": 0}
    make_array, launch = fake_cupy.ndarray.__init__, cuda_on_cpu.Kernel.__call__

    def counted_array(self, array):
        make_array(self, array)
        counts["fresh"] += not isinstance(array.base, numpy.ndarray)

    def counted_launch(self, *args, **kwargs):
        counts["launches"] += 1
        return launch(self, *args, **kwargs)

    fake_cupy.ndarray.__init__, cuda_on_cpu.Kernel.__call__ = counted_array, counted_launch
    try:
        step(1)
    finally:
        fake_cupy.ndarray.__init__, cuda_on_cpu.Kernel.__call__ = make_array, launch
    return counts["fresh"], counts["launches"]


def main(argv=None):
    sys.path.insert(0, TESTS)
    import cuda_on_cpu
    import fake_cupy
    from device_cases import diffusion_step_parts
    from minilean.cli import DIFFUSION
    from minilean.cuda import use_fast_kernels

    default = {name: flag.default for name, flag in DIFFUSION.flags.items()}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=default["batch_size"])
    parser.add_argument("--hidden-c", type=int, default=default["hidden_c"])
    parser.add_argument("--image-size", type=int, default=default["image_size"])
    args = parser.parse_args(argv)
    if cuda_on_cpu.compiler() is None:
        print("count_device_ops: needs x86-64 and a C++ compiler", file=sys.stderr)
        return 1
    fake_cupy.install(_Patches())
    print(f"U-Net hidden {args.hidden_c}, batch {args.batch_size}x3x{args.image_size}^2, "
          f"Adam + clipping + EMA, one step after a warm-up step:")
    for fast in (False, True):
        use_fast_kernels(fast)
        _, step = diffusion_step_parts(args.batch_size, args.hidden_c, args.image_size)
        step(0)
        fresh, launches = count_step(fake_cupy, cuda_on_cpu, step)
        use_fast_kernels(False)
        label = "--fast-kernels" if fast else "plain CuPy"
        print(f"  {label:<14} {fresh:5d} fresh device arrays, {launches:4d} raw kernel launches")
    print(f"command: python benchmarks/count_device_ops.py {' '.join(argv or sys.argv[1:])}"
          .rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
