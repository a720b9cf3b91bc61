"""How many device arrays one diffusion training step creates on "cuda", with plain CuPy and
with --fast-kernels: counted on the CPU stand-in for CuPy (tests/fake_cupy.py, the kernels
compiled for the CPU by tests/cuda_on_cpu.py), so it runs without a GPU.

    python benchmarks/count_device_ops.py [--batch-size 32] [--hidden-c 24] [--image-size 16]
    python benchmarks/count_device_ops.py --sites 15     # and the lines that make most of them

A fresh array (one that is not a view) is, roughly, one kernel launch on a GPU: a small model's
step there is bound by the host time per launch, not by arithmetic, so this count is what the
fast kernels and CUDA graphs (``--cuda-graph``) bring down. It is a count, not a timing.

Below each variant: its matrix products by how CuPy runs them, and the launches CuPy adds around
the GEMM, which the stand-in (NumPy's matmul) does not make and so does not count as arrays:
copies of operands cuBLAS cannot read as they are, and, for a batched product that broadcasts
its batch dimensions, device arrays of matrix addresses (``cupy_product_work``). Then an
estimate of the step's kernel launches: the raw ones, the stand-in's operations that stand for
a CuPy kernel (``cupy_operation_launches``) and those launches around the products.
"""
import argparse
import collections
import math
import os
import sys
import traceback

import numpy

from arguments import at_least, image_side, description  # beside this script

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")


class _Patches:
    """Just enough of pytest's monkeypatch for fake_cupy.install."""

    def setattr(self, owner, name, value):
        setattr(owner, name, value)

    def setitem(self, mapping, key, value):
        mapping[key] = value


def cupy_product_work(a, b):
    """How ``backend.matmul`` has CuPy 14 run ``a @ b`` for device arrays (``matmul`` and
    ``dot`` in cupy/_core/_routines_linalg.pyx), as (kind, launches besides the GEMM):

    * "single" (no batch, or batch dimensions all 1): ``ndarray.dot``, one GEMM; a matrix
      neither C- nor F-contiguous is copied first;
    * "batched": ``cupy.matmul``, which copies every operand that is not C-contiguous;
      "batched, broadcast" when the batch dimensions broadcast (a weight shared by the batch):
      then the GEMM reads device arrays of matrix addresses, ndim - 2 launches for each of a,
      b and the output.
    """
    ndim = max(a.ndim, b.ndim)
    if math.prod(a.shape[:-2]) * math.prod(b.shape[:-2]) == 1:
        matrices = (x.reshape(x.shape[-2:]) if x.ndim > 2 else x for x in (a, b))
        return "single", sum(not (x.flags.c_contiguous or x.flags.f_contiguous)
                             for x in matrices)
    copies = sum(not x.flags.c_contiguous for x in (a, b))
    batch_a, batch_b = ((1,) * (ndim - x.ndim) + x.shape[:-2] for x in (a, b))
    if batch_a == batch_b:
        return "batched", copies
    return "batched, broadcast", copies + 3 * (ndim - 2)


def cupy_operation_launches(fake_cupy, function, args, kwargs, result):
    """Whether an operation of the stand-in (``function`` on the NumPy ``args``) stands for a
    CuPy kernel launch: it writes in place (``out=``, item assignment, ``copyto``, ``fill``) or
    returns new memory that a kernel filled (not ``empty``, not a view, not an input as it
    was, as ``ascontiguousarray`` of a contiguous array returns it)."""
    import numpy
    name = getattr(function, "__name__", "")
    if name in fake_cupy.ALLOCATIONS:
        return False
    if name in ("__setitem__", "copyto", "fill") or (kwargs or {}).get("out") is not None:
        return True
    inputs = [value for value in (*args, getattr(function, "__self__", None))
              if isinstance(value, numpy.ndarray)]
    results = result if isinstance(result, (tuple, list)) else (result,)
    return any(isinstance(value, fake_cupy.ndarray)
               and not isinstance(value._array.base, numpy.ndarray)
               and all(value._array is not array for array in inputs) for value in results)


def count_step(fake_cupy, cuda_on_cpu, step, sites=None):
    """The counts of what one call of ``step`` asks of the device from Python (what a
    replayed graph does inside is the GPU's work, not counted): "fresh" device arrays, raw
    kernel "launches", "graphs" launched, "cupy operations" (``cupy_operation_launches``:
    elementwise, reductions, copies, products), products per ``cupy_product_work`` kind, and
    "around products", the launches CuPy adds around them. ``sites``, a Counter, also gets the
    fresh arrays per minilean source line that made them."""
    from minilean import backend
    counts = collections.Counter()
    counts["replaying"] = False
    make_array, launch = fake_cupy.ndarray.__init__, cuda_on_cpu.Kernel.__call__
    replay = fake_cupy.Graph.launch
    product = backend.matmul

    # id -> each NumPy array wrapped so far: an array that is wrapped again (the result of an
    # in-place operation, ``ascontiguousarray`` of a contiguous one) is no new memory
    wrapped = {id(device_array._array): device_array._array
               for device_array in (reference() for reference in fake_cupy.live_arrays.values())
               if device_array is not None}

    def counted_array(self, array):
        make_array(self, array)
        fresh = not isinstance(array.base, numpy.ndarray) and id(array) not in wrapped
        wrapped[id(array)] = array
        fresh = fresh and not counts["replaying"]
        counts["fresh"] += fresh
        if fresh and sites is not None:
            sites[_minilean_caller()] += 1

    def counted_launch(self, *args, **kwargs):
        counts["launches"] += not counts["replaying"]
        return launch(self, *args, **kwargs)

    def counted_replay(self, stream=None):
        counts["graphs"] += 1
        counts["replaying"] = True
        try:
            replay(self, stream)
        finally:
            counts["replaying"] = False

    run = fake_cupy._run

    def counted_run(function, args, kwargs=None, baked=False):
        result = run(function, args, kwargs, baked)
        if not counts["replaying"] and cupy_operation_launches(fake_cupy, function, args,
                                                                 kwargs, result):
            counts["cupy operations"] += 1
        return result

    def counted_product(a, b, out=None):
        if backend.device_of(a) == "cuda" and not backend.recording_graph():
            kind, around = cupy_product_work(a, b)
            counts[kind] += 1
            counts["around products"] += around
        return product(a, b, out)

    patched = ((fake_cupy.ndarray, "__init__", counted_array, make_array),
               (cuda_on_cpu.Kernel, "__call__", counted_launch, launch),
               (fake_cupy.Graph, "launch", counted_replay, replay),
               (backend, "matmul", counted_product, product),
               (fake_cupy, "_run", counted_run, run))
    for owner, name, counted, _ in patched:
        setattr(owner, name, counted)
    try:
        step(1)
    finally:
        for owner, name, _, original in patched:
            setattr(owner, name, original)
    return counts


def _minilean_caller():
    """"file:line function" of the innermost frame in the minilean package."""
    import minilean
    package = os.path.dirname(os.path.abspath(minilean.__file__))
    for frame in reversed(traceback.extract_stack()):
        if frame.filename.startswith(package + os.sep):
            path = os.path.relpath(frame.filename, os.path.dirname(package))
            return f"{path}:{frame.lineno} {frame.name}"
    return "(outside minilean)"


def main(argv=None, patches=None):
    """``patches``: something with pytest's ``monkeypatch`` interface, to undo the stand-in
    afterwards (a test's); by default it stays for the life of the process."""
    sys.path.insert(0, TESTS)
    import cuda_on_cpu
    import fake_cupy
    from device_cases import diffusion_step_parts
    from minilean.cli import DIFFUSION
    from minilean.cuda import use_fast_kernels

    default = {name: flag.default for name, flag in DIFFUSION.flags.items()}
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--batch-size", type=at_least(1), default=default["batch_size"])
    parser.add_argument("--hidden-c", type=at_least(2), default=default["hidden_c"])
    parser.add_argument("--image-size", type=image_side, default=default["image_size"])
    parser.add_argument("--sites", type=at_least(0), default=0,
                        help="also list this many source lines that make the most fresh arrays")
    args = parser.parse_args(argv)
    if cuda_on_cpu.compiler() is None:
        print("count_device_ops: needs x86-64 and a C++ compiler", file=sys.stderr)
        return 1
    fake_cupy.install(patches or _Patches())
    print(f"U-Net hidden {args.hidden_c}, batch {args.batch_size}x3x{args.image_size}^2, "
          f"Adam + clipping + EMA, one step after a warm-up step, made from Python:")
    for graph in (False, True):
        for fast in (False, True):
            use_fast_kernels(fast)
            _, step = diffusion_step_parts(args.batch_size, args.hidden_c, args.image_size,
                                           graph=graph)
            step(0, clip=True)
            sites = collections.Counter() if args.sites else None
            counts = count_step(fake_cupy, cuda_on_cpu, lambda k: step(k, clip=True), sites)
            use_fast_kernels(False)
            label = ("--fast-kernels" if fast else "plain CuPy") + \
                (" --cuda-graph" if graph else "")
            graphs = counts["graphs"]
            print(f"  {label:<27} {counts['fresh']:5d} fresh device arrays, "
                  f"{counts['launches']:4d} raw kernel launches, {graphs} graph "
                  f"launch{'es' if graphs != 1 else ''}")
            print(f"    products: {counts['single']} single, {counts['batched']} batched, "
                  f"{counts['batched, broadcast']} batched with broadcast; "
                  f"{counts['around products']} launches around them")
            estimate = counts["launches"] + counts["cupy operations"] + \
                counts["around products"]
            print(f"    kernel launches, estimated: {estimate} = {counts['launches']} raw + "
                  f"{counts['cupy operations']} CuPy operations + {counts['around products']} "
                  f"around products")
            if sites:
                for site, count in sites.most_common(args.sites):
                    print(f"    {count:5d}  {site}")
    print(f"command: python benchmarks/count_device_ops.py {' '.join(argv or sys.argv[1:])}"
          .rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
