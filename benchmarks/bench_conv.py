"""Micro-benchmark: minilean conv2d / conv_transpose2d against PyTorch on the CPU.

For shapes typical of the diffusion U-Net (batch 32, 32x32 and 16x16 images) it builds the
same convolution in both, checks that output and gradients agree, then times forward and
forward+backward, alternating the two libraries after a warm-up and reporting medians, and
prints minilean / torch. Torch gets as many threads as NumPy's BLAS has cores here
(``--threads``, default: all CPUs this process may use).

    python benchmarks/bench_conv.py [--repeats 7] [--threads N] [--batch 32] [--clock wall]

On a machine shared with other jobs, wall times swing by several x; then compare with
``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_conv.py --threads 1 --clock cpu``.
"""
import argparse
import os
import time

import numpy

import minilean as ml
from minilean.autograd.conv import conv2d, conv_transpose2d

# (name, in channels, out channels, image side, kernel, stride, padding, transposed): the
# convolutions of the default diffusion U-Net (hidden 32) on 32x32 images, plus a transposed one
CASES = [
    ("3x3 3->32 @32 (in)", 3, 32, 32, 3, 1, 1, False),
    ("3x3 32->32 @32", 32, 32, 32, 3, 1, 1, False),
    ("3x3 s2 32->32 32->16", 32, 32, 32, 3, 2, 1, False),
    ("3x3 64->64 @16", 64, 64, 16, 3, 1, 1, False),
    ("3x3 128->64 @16", 128, 64, 16, 3, 1, 1, False),
    ("3x3 64->64 @8", 64, 64, 8, 3, 1, 1, False),
    ("3x3 64->64 @32", 64, 64, 32, 3, 1, 1, False),
    ("3x3 96->32 @32", 96, 32, 32, 3, 1, 1, False),
    ("1x1 96->32 @32", 96, 32, 32, 1, 1, 0, False),
    ("3x3 32->3 @32 (out)", 32, 3, 32, 3, 1, 1, False),
    ("T4x4 s2 64->64 16->32", 64, 64, 16, 4, 2, 1, True),
]


def make_case(torch, rng, batch, c_in, c_out, side, kernel, stride, padding, transposed):
    x = rng.standard_normal((batch, c_in, side, side)).astype(numpy.float32)
    w_shape = (c_in, c_out, kernel, kernel) if transposed else (c_out, c_in, kernel, kernel)
    w = (rng.standard_normal(w_shape) / numpy.sqrt(c_in * kernel * kernel)).astype(numpy.float32)
    b = rng.standard_normal(c_out).astype(numpy.float32)
    ml_f, torch_f = ((conv_transpose2d, torch.nn.functional.conv_transpose2d) if transposed
                     else (conv2d, torch.nn.functional.conv2d))
    ml_args = [ml.tensor(a, requires_grad=True) for a in (x, w, b)]
    torch_args = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]

    params = dict(stride=stride, padding=padding)
    run_ml = runner(ml_f, ml_args, ml.no_grad, ml.ones_like, params)
    run_torch = runner(torch_f, torch_args, torch.no_grad, torch.ones_like, params)
    return ml_args, torch_args, run_ml, run_torch


def runner(function, args, no_grad, ones_like, params):
    """run(backward): the forward alone (under no_grad), or forward + backward of sum(y)."""
    def run(backward):
        if not backward:
            with no_grad():
                return function(*args, **params)
        y = function(*args, **params)
        y.backward(ones_like(y))
        return y
    return run


def check_agreement(ml_args, torch_args, run_ml, run_torch):
    """Largest relative difference over output and the three gradients (float32)."""
    for t in ml_args + torch_args:
        t.grad = None
    pairs = [(run_ml(True).numpy(), run_torch(True).detach().numpy())]
    pairs += [(m.grad.numpy(), t.grad.numpy()) for m, t in zip(ml_args, torch_args)]
    return max(float(numpy.abs(a - b).max() / (numpy.abs(b).max() + 1e-12)) for a, b in pairs)


def median_times(run_ml, run_torch, backward, repeats, clock):
    """Median seconds of each, measured alternately after one warm-up call each."""
    run_ml(backward), run_torch(backward)
    ml_times, torch_times = [], []
    for _ in range(repeats):
        for run, times in ((run_ml, ml_times), (run_torch, torch_times)):
            start = clock()
            run(backward)
            times.append(clock() - start)
    return float(numpy.median(ml_times)), float(numpy.median(torch_times))


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time, steadier on a busy shared machine "
                             "(meaningful with --threads 1 and OPENBLAS_NUM_THREADS=1)")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    rng = numpy.random.default_rng(0)
    print(f"numpy {numpy.__version__}, torch {torch.__version__} with {args.threads} threads, "
          f"batch {args.batch}, median of {args.repeats}, {args.clock} times in ms")
    print(f"{'case':24s} {'rel.err':>8s} | {'fwd ml':>7s} {'torch':>7s} {'ratio':>6s} | "
          f"{'f+b ml':>7s} {'torch':>7s} {'ratio':>6s}")
    for name, *shape in CASES:
        ml_args, torch_args, run_ml, run_torch = make_case(torch, rng, args.batch, *shape)
        error = check_agreement(ml_args, torch_args, run_ml, run_torch)
        row = f"{name:24s} {error:8.1e} |"
        for backward in (False, True):
            ml_time, torch_time = median_times(run_ml, run_torch, backward, args.repeats, clock)
            row += f" {ml_time * 1e3:7.1f} {torch_time * 1e3:7.1f} {ml_time / torch_time:6.2f} |"
        print(row.rstrip(" |"))


if __name__ == "__main__":
    main()
