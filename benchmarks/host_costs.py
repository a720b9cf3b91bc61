"""Host time per call of what an eager training step on a GPU is made of, minilean beside PyTorch.

    python benchmarks/host_costs.py [--calls 2000]

A small model's eager step on a GPU waits on the host (``bench_gpu.py``'s "gpu work" rows: the
GPU is busy for a seventh of the step), so its time is the sum, over the calls it makes, of what
each call costs the host. Each row times one kind of call ``--calls`` times back to back and
divides by the count, after a synchronisation at the end, so a GPU that keeps up adds nothing.
The minilean column shows each way minilean (or CuPy under it) has to make the call, the
PyTorch column its counterpart on the same card: where a row's ways differ, the layer between
them is what costs.

The shapes are the default diffusion step's: activations (32, 24, 16, 16), a bias gradient's
rows (32, 256), a convolution's product (24 x 216 @ 216 x 8192), a batch of 32 images 3x16x16.
Needs an NVIDIA GPU with CuPy; without PyTorch with CUDA its column says why it is empty.
"""
import argparse
import os
import sys

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from arguments import at_least, description  # noqa: E402  (beside this script)
from bench_gpu import load_torch_cuda, wall_time  # noqa: E402  (beside this script)


def minilean_calls():
    """{row: {way: one call}} of minilean and CuPy."""
    import cupy
    import minilean
    from minilean import backend
    from minilean.cuda import activations, reduce
    from minilean.cuda import compile as kernels

    rng = numpy.random.default_rng(0)

    def device(*shape):
        return cupy.asarray(rng.standard_normal(shape).astype(numpy.float32))

    x, y, rows = device(32, 24, 16, 16), device(32, 24, 16, 16), device(32, 256)
    a, b = device(24, 216), device(216, 8192)
    images = rng.standard_normal((32, 3, 16, 16)).astype(numpy.float32)
    out = cupy.empty_like(x)
    relu = activations.program.kernel("activation_forward<float, RELU>")
    relu_arguments = (x, out, numpy.int64(x.size), numpy.float32(0))
    relu_grid = kernels.grid_for(kernels.chunks(x.size, x.itemsize))
    tensor = minilean.tensor(x, requires_grad=True)  # stays on the device: x is a CuPy array
    return {
        "allocate (32, 24, 16, 16)": {"cupy.empty": lambda: cupy.empty(x.shape, x.dtype),
                                      "cupy.empty_like": lambda: cupy.empty_like(x)},
        "relu, output given (one raw launch)": {
            "RawKernel": lambda: relu(relu_grid, (kernels.THREADS,), relu_arguments)},
        "relu, allocating its output": {"activations.forward": lambda: activations.forward(
            "relu", x)},
        "relu of a tensor, recording the graph": {"Tensor.relu": tensor.relu},
        "add two (32, 24, 16, 16) arrays": {"ndarray +": lambda: x + y},
        "a contiguous array made contiguous (a no-op)": {
            "cupy.ascontiguousarray": lambda: cupy.ascontiguousarray(x),
            "flags.c_contiguous": lambda: x.flags.c_contiguous},
        "a view of another shape": {"ndarray.reshape": lambda: x.reshape(32, -1)},
        # im2col.py's GEMMs take a transposed operand as such a view (41 per step; the function
        # making them had 0.9 ms of own time per step in one H200 profile, under 0.3 in two)
        "a transposed view of a 24x216 matrix": {"ndarray.swapaxes": lambda: a.swapaxes(-1, -2),
                                                  "ndarray.T": lambda: a.T},
        "sum over rows (32, 256) -> (256,)": {
            "ndarray.sum": lambda: rows.sum(axis=0),
            "reduce.sum_rows": lambda: reduce.sum_rows(rows, 1, 32, 256)},
        "product 24x216 @ 216x8192": {"cupy.matmul": lambda: cupy.matmul(a, b),
                                      "ndarray.dot": lambda: a.dot(b),
                                      "backend.matmul": lambda: backend.matmul(a, b)},
        "upload a 32x3x16x16 batch (pageable)": {"cupy.asarray": lambda: cupy.asarray(images)},
    }


def torch_calls(torch):
    """{row: one call} of PyTorch, the rows of ``minilean_calls``."""
    x, y = (torch.randn(32, 24, 16, 16, device="cuda") for _ in range(2))
    rows, a, b = (torch.randn(32, 256, device="cuda"), torch.randn(24, 216, device="cuda"),
                  torch.randn(216, 8192, device="cuda"))
    out = torch.empty_like(x)
    tensor = x.clone().requires_grad_()
    images = torch.from_numpy(numpy.zeros((32, 3, 16, 16), dtype=numpy.float32))
    return {
        "allocate (32, 24, 16, 16)": lambda: torch.empty(x.shape, device="cuda"),
        "relu, output given (one raw launch)": lambda: torch.clamp_min(x, 0, out=out),
        "relu, allocating its output": lambda: torch.relu(x),
        "relu of a tensor, recording the graph": lambda: torch.relu(tensor),
        "add two (32, 24, 16, 16) arrays": lambda: x + y,
        "a contiguous array made contiguous (a no-op)": lambda: x.contiguous(),
        "a view of another shape": lambda: x.reshape(32, -1),
        "a transposed view of a 24x216 matrix": lambda: a.transpose(-1, -2),
        "sum over rows (32, 256) -> (256,)": lambda: rows.sum(dim=0),
        "product 24x216 @ 216x8192": lambda: a @ b,
        "upload a 32x3x16x16 batch (pageable)": lambda: images.to("cuda", non_blocking=True),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--calls", type=at_least(1), default=2000, help="calls timed per way")
    args = parser.parse_args(argv)
    from minilean import backend, use_fast_kernels
    if not backend.cuda_available():
        print("host_costs: needs an NVIDIA GPU with CuPy; nothing measured", file=sys.stderr)
        return 1
    import cupy
    synchronize = cupy.cuda.get_current_stream().synchronize
    torch, why_not = load_torch_cuda()
    theirs = torch_calls(torch) if torch is not None else {}
    use_fast_kernels(True)  # the Tensor row: an eager step with --fast-kernels
    try:
        rows = []
        for what, ways in minilean_calls().items():
            ours = ", ".join(f"{way} {1e6 * wall_time(call, args.calls, synchronize):.1f} us"
                             for way, call in ways.items())
            peer = (f"{1e6 * wall_time(theirs[what], args.calls, torch.cuda.synchronize):.1f} us"
                    if torch is not None else f"not measured: {why_not}")
            rows.append((what, ours, peer))
    finally:
        use_fast_kernels(False)
    width = max(len(what) for what, _, _ in rows)
    peer_name = f"PyTorch {torch.__version__}" if torch is not None else "PyTorch"
    for what, ours, peer in rows:
        print(f"{what:<{width}}  minilean: {ours}  |  {peer_name}: {peer}")
    print(f"command: python benchmarks/host_costs.py {' '.join(argv or sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
