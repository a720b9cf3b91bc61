"""cProfile of the diffusion training step (U-Net, batch 32, Adam, clipping, EMA; the CLI's sizes).

    python benchmarks/profile_step.py                 # 3 profiled steps, 2 BLAS threads
    python benchmarks/profile_step.py --steps 5 --top 30 --size 32
    python benchmarks/profile_step.py --device cuda --fast-kernels --steps 20   # host time on a GPU

Prints the top functions by cumulative time and by own time, then the own time summed per
op (each Function's forward and backward), which is where an optimisation should start.
"""
import argparse
import os
import sys

from arguments import at_least, image_side, description  # beside this script; imports nothing heavy

parser = argparse.ArgumentParser(description=description(__doc__))
parser.add_argument("--steps", type=at_least(1), default=3,
                    help="profiled steps (after one warm-up)")
parser.add_argument("--top", type=at_least(1), default=25, help="rows of each table")
parser.add_argument("--size", type=image_side, default=16,
                    help="image side, a multiple of 4 (the CLI default is 16)")
parser.add_argument("--hidden-c", type=at_least(2), default=24,
                    help="U-Net width (the CLI default is 24)")
parser.add_argument("--threads", type=at_least(1), default=2, help="BLAS threads")
parser.add_argument("--conv-shapes", action="store_true",
                    help="also time each convolution shape of the step against torch.conv2d")
parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: the host's share of a GPU step (each step ends synchronised)")
parser.add_argument("--fast-kernels", action="store_true", help="the CUDA kernels (cuda only)")
parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: profile process CPU time (steadier on a busy machine)")
args = parser.parse_args()
if args.fast_kernels and args.device != "cuda":
    parser.error("--fast-kernels needs --device cuda (the CPU step has no fast kernels)")
for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = str(args.threads)

import ast  # noqa: E402
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


def make_step(batch=32, size=16, hidden_c=24, device="cpu"):
    rng = numpy.random.default_rng(0)
    x0 = minilean.tensor(rng.uniform(-1, 1, (batch, 3, size, size)).astype(numpy.float32),
                         device=device)
    eps = minilean.tensor(rng.standard_normal((batch, 3, size, size)).astype(numpy.float32),
                          device=device)
    t = backend.to_device(rng.integers(0, 200, batch), device)
    alpha_bar = D.alpha_bars(D.make_betas("cosine", 200))
    backend.manual_seed(0)
    model = UNet(3, hidden_c).to(device)
    optimizer, average = Adam(model.parameters(), lr=2e-3), EMA(model, 0.995)
    xp = backend.xp_for(device)

    def step():
        optimizer.zero_grad()
        D.eps_prediction_loss(model, alpha_bar, x0, t, eps).backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        average.update(model)
        if xp is not numpy:
            xp.cuda.get_current_stream().synchronize()
    return step


def per_op(stats):
    """Own time summed by file and class.method (a function outside a class by its name) for
    minilean's files, and by name for C methods and built-ins. cProfile names a method
    ``forward`` alone, which would sum every op's forward of a file into one row."""
    totals, classes = collections.Counter(), {}
    for (filename, line, function), (_, _, own, _, _) in stats.stats.items():
        if "minilean" in filename:
            if filename not in classes:
                classes[filename] = _method_classes(filename)
            owner = classes[filename].get(line)
            name = f"{owner}.{function}" if owner else function
            totals[f"{os.path.basename(filename)}:{name}"] += own
        elif function.startswith("<method") or function.startswith("<built-in"):
            totals[function] += own
    return totals


def _method_classes(filename):
    """{first line of a method (its first decorator's, as cProfile counts it): its class}."""
    with open(filename, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    return {min([method.lineno] + [mark.lineno for mark in method.decorator_list]): owner.name
            for owner in ast.walk(tree) if isinstance(owner, ast.ClassDef)
            for method in owner.body
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef))}


def conv_shapes(step, clock, steps):
    """Seconds per step in Conv2d forward and backward, per (input, weight, stride, bias,
    input gradient) case, next to torch.nn.functional.conv2d doing the same forward + backward
    (host-side torch, imported only here: a benchmark peer): with a bias where minilean's had
    one, and a gradient for the input only where minilean's backward made one (not for the
    first convolution's, the noised image)."""
    import torch
    from minilean.autograd.conv import Conv2d

    torch.set_num_threads(args.threads)
    spent, calls, shapes = collections.Counter(), collections.Counter(), {}
    original = Conv2d.forward, Conv2d.backward

    def timed(kind, function):
        def wrapper(ctx, *arrays, **params):
            key = (kind, ctx.key) if kind == "bwd" else None
            start = clock()
            out = function(ctx, *arrays, **params)
            if kind == "fwd":
                x, weight = arrays[:2]
                bias = len(arrays) > 2 and arrays[2] is not None
                ctx.key = (x.shape, weight.shape, params.get("stride", (1, 1)), bias,
                           ctx.needs_input_grad[0])
                shapes[ctx.key], key = params, ("fwd", ctx.key)
            spent[key] += clock() - start
            calls[key] += 1
            return out
        return staticmethod(wrapper)

    Conv2d.forward, Conv2d.backward = timed("fwd", original[0]), timed("bwd", original[1])
    try:
        for _ in range(steps):
            step()
    finally:
        Conv2d.forward, Conv2d.backward = (staticmethod(original[0]), staticmethod(original[1]))
    print("\nconvolutions of one step: minilean fwd / bwd vs torch fwd+bwd (ms per step)")
    total_ours = total_theirs = 0.0
    for key, params in sorted(shapes.items(), key=lambda item: -spent["bwd", item[0]]):
        x_shape, w_shape, stride, has_bias, x_grad = key
        per_step = calls["fwd", key] // steps
        x = torch.randn(x_shape, requires_grad=x_grad)
        weight = torch.randn(w_shape, requires_grad=True)
        bias = torch.randn(w_shape[0], requires_grad=True) if has_bias else None

        def convolution():
            return torch.nn.functional.conv2d(x, weight, bias, stride=stride,
                                              padding=params["padding"])
        seed = torch.randn(convolution().shape)
        runs = []
        for _ in range(5):
            start = clock()
            convolution().backward(seed)
            runs.append(clock() - start)
        theirs = sorted(runs)[2] * per_step
        forward, backward = spent["fwd", key] / steps, spent["bwd", key] / steps
        total_ours, total_theirs = total_ours + forward + backward, total_theirs + theirs
        extras = " +bias" * has_bias + " no dx" * (not x_grad)
        print(f"  x{x_shape} w{w_shape} s{stride[0]}{extras} x{per_step}: {forward * 1e3:6.1f} / "
              f"{backward * 1e3:6.1f}   torch {theirs * 1e3:6.1f}")
    print(f"  all convolutions: minilean {total_ours * 1e3:.1f} ms, torch {total_theirs * 1e3:.1f} "
          f"ms per step")


def main():
    minilean.use_fast_kernels(args.fast_kernels)
    try:
        step = make_step(size=args.size, hidden_c=args.hidden_c, device=args.device)
    except backend.DeviceError as error:  # no CuPy or no GPU: its one line, not a traceback
        raise SystemExit(f"profile_step.py: {error}")
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
          f"under the profiler (device {args.device}{', fast kernels' * args.fast_kernels}, "
          f"BLAS threads {args.threads}, image {args.size}x{args.size})\n")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    print("own time per function, summed (ms per step):")
    for name, seconds in per_op(stats).most_common(args.top):
        print(f"  {seconds / args.steps * 1e3:8.1f} ms  {name}")
    if args.conv_shapes:
        conv_shapes(step, clock, args.steps)


if __name__ == "__main__":
    main()
