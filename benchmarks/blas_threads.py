"""What ``--threads`` (``minilean.set_num_threads``) does to a CPU training step, on an idle
machine and beside processes that keep cores busy.

    python benchmarks/blas_threads.py                  # CLI default U-Net, 0 and 1 busy cores
    python benchmarks/blas_threads.py --busy 0,1,2 --steps 9

For each number of busy cores, that many processes spin on the CPU (a stand-in for the other
work of a shared machine) while this one runs the diffusion training step of the CLI (U-Net,
batch 32, Adam, clipping, EMA) with 1 thread and with the BLAS library's default count,
alternating the two, and reports the median wall time of each. PyTorch is not involved: both
sides are minilean.
"""
import argparse
import multiprocessing
import os
import statistics
import sys
import time

from arguments import at_least, counts, image_side, description  # beside this script

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")


def spin(stop):
    """Keep one core busy until ``stop`` is set."""
    while not stop.is_set():
        pass


def median_step_seconds(step, count, first):
    """The median wall time of ``count`` calls of ``step(k, clip=True)``, k from ``first``."""
    times = []
    for k in range(first, first + count):
        start = time.perf_counter()
        step(k, clip=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--busy", type=counts(0), default=[0, 1],
                        help="comma-separated counts of busy cores")
    parser.add_argument("--steps", type=at_least(1), default=7, help="timed steps per thread count")
    parser.add_argument("--rounds", type=at_least(1), default=2,
                        help="alternations of the two counts")
    parser.add_argument("--size", type=image_side, default=16, help="image side (CLI default 16)")
    parser.add_argument("--hidden-c", type=at_least(2), default=24,
                        help="U-Net width (CLI default 24)")
    args = parser.parse_args(argv)
    import minilean
    sys.path.insert(0, TESTS)
    from device_cases import diffusion_step_parts

    default = minilean.get_num_threads()
    if default == 1:  # 1 against 1 would print "1.00x" as if it had measured something
        raise SystemExit("blas_threads: the BLAS library's default is 1 thread here (is "
                         "OPENBLAS_NUM_THREADS or OMP_NUM_THREADS set?); nothing to compare")
    _, step = diffusion_step_parts(32, args.hidden_c, args.size, device="cpu")
    for k in range(3):
        step(k, clip=True)
    print(f"diffusion training step, U-Net hidden {args.hidden_c}, batch 32x3x{args.size}^2, "
          f"{os.cpu_count()} CPUs, median of {args.steps} steps x {args.rounds} rounds")
    print("| busy cores | 1 thread, ms | default (%d threads), ms | 1 thread's speed-up |"
          % default)
    print("|---|---|---|---|")
    for busy in args.busy:
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(busy)]
        for spinner in spinners:
            spinner.start()
        try:
            seconds = {1: [], default: []}
            for round_ in range(args.rounds):
                for count in (1, default):
                    minilean.set_num_threads(count)
                    seconds[count].append(median_step_seconds(step, args.steps,
                                                              3 + round_ * args.steps))
        finally:
            stop.set()
            for spinner in spinners:
                spinner.join()
        one, many = statistics.median(seconds[1]), statistics.median(seconds[default])
        print(f"| {busy} | {one * 1e3:.1f} | {many * 1e3:.1f} | {many / one:.2f}x |")
    minilean.set_num_threads(default)
    print("command: python benchmarks/blas_threads.py" + "".join(f" {a}" for a in argv or []))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
