"""cProfile of the default diffusion training step (U-Net hc=32, batch 32, 3x16x16, Adam, clip, EMA).

    python benchmarks/profile_step.py                 # 3 profiled steps, 2 BLAS threads
    python benchmarks/profile_step.py --steps 5 --top 30 --size 32

Prints the top functions by cumulative time and by own time, then the own time summed per
op (each Function's forward and backward), which is where an optimisation should start.
"""
import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--steps", type=int, default=3, help="profiled steps (after one warm-up)")
parser.add_argument("--top", type=int, default=25, help="rows of each table")
parser.add_argument("--size", type=int, default=16, help="image side (the CLI default is 16)")
parser.add_argument("--threads", type=int, default=2, help="BLAS threads")
parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: profile process CPU time (steadier on a busy machine)")
args = parser.parse_args()
for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = str(args.threads)

import cProfile  # noqa: E402
import collections  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402

import numpy  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import minilean  # noqa: E402
from minilean import backend  # noqa: E402
from minilean.models import diffusion as D  # noqa: E402
from minilean.models.unet import UNet  # noqa: E402
from minilean.optim import EMA, Adam, clip_grad_norm_  # noqa: E402


def make_step(batch=32, size=16):
    rng = numpy.random.default_rng(0)
    x0 = minilean.tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype(numpy.float32))
    eps = minilean.tensor(rng.standard_normal((batch, 3, size, size)).astype(numpy.float32))
    t = rng.integers(0, 200, batch)
    alpha_bar = D.alpha_bars(D.make_betas("cosine", 200))
    backend.manual_seed(0)
    model = UNet(3, 32)
    optimizer, average = Adam(model.parameters(), lr=2e-3), EMA(model, 0.995)

    def step():
        optimizer.zero_grad()
        D.eps_prediction_loss(model, alpha_bar, x0, t, eps).backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        average.update(model)
    return step


def per_op(stats):
    """Own time summed by (file, class-or-function) for the autograd op files."""
    totals = collections.Counter()
    for (filename, _, function), (_, _, own, _, _) in stats.stats.items():
        if "minilean" in filename:
            totals[f"{os.path.basename(filename)}:{function}"] += own
        elif function.startswith("<method") or function.startswith("<built-in"):
            totals[function] += own
    return totals


def main():
    step = make_step(size=args.size)
    step()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    start = clock()
    profiler = cProfile.Profile(clock)
    profiler.enable()
    for _ in range(args.steps):
        step()
    profiler.disable()
    per_step = (clock() - start) / args.steps
    print(f"{args.steps} profiled steps, {per_step * 1e3:.0f} ms ({args.clock} clock) per step "
          f"under the profiler (BLAS threads {args.threads}, image {args.size}x{args.size})\n")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    print("own time per function, summed (s per step):")
    for name, seconds in per_op(stats).most_common(args.top):
        print(f"  {seconds / args.steps * 1e3:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
