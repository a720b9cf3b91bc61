"""What ``minilean.heap.keep_freed_memory`` does to a CPU training step: time, minor page faults
and peak memory per step, with glibc's malloc defaults and with freed memory kept.

    python benchmarks/heap_settings.py                        # CLI default U-Net, 3 pairs
    python benchmarks/heap_settings.py --size 32 --hidden-c 32 --pairs 2

Each setting runs in a fresh process (the setting is process-wide and cannot be undone), the
two alternating, so that a slow-down of the machine hits both. Each process runs the diffusion
training step of the CLI (U-Net, batch 32, Adam, clipping, EMA) three times untimed, then
``--steps`` timed; it reports the median step, the median minor page faults per step and the
process's peak resident memory. PyTorch is not involved: both sides are minilean
(``bench_models.py --heap`` compares against PyTorch, which the setting speeds up as well).
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

from arguments import at_least, image_side, description  # beside this script

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")


def measure(setting, size, hidden_c, steps):
    """(median step seconds, median minor faults per step, peak RSS MiB) in this process."""
    from minilean import heap
    if setting == "kept" and not heap.keep_freed_memory():
        raise SystemExit("heap_settings.py: keep_freed_memory needs glibc's malloc")
    sys.path.insert(0, TESTS)
    from device_cases import diffusion_step_parts
    _, step = diffusion_step_parts(32, hidden_c, size, device="cpu")
    for k in range(3):
        step(k, clip=True)
    times, faults = [], []
    for k in range(3, 3 + steps):
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        step(k, clip=True)
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return statistics.median(times), statistics.median(faults), peak_mib


def main():
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--size", type=image_side, default=16, help="image side (CLI default 16)")
    parser.add_argument("--hidden-c", type=at_least(2), default=24,
                        help="U-Net width (CLI default 24)")
    parser.add_argument("--pairs", type=at_least(1), default=3, help="processes per setting")
    parser.add_argument("--steps", type=at_least(1), default=9, help="timed steps per process")
    parser.add_argument("--threads", type=at_least(1), default=2, help="BLAS threads")
    parser.add_argument("--run", choices=("glibc", "kept"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:  # one measurement, in the fresh process the parent started
        print(*measure(args.run, args.size, args.hidden_c, args.steps))
        return
    environment = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
    print(f"diffusion step, U-Net hidden {args.hidden_c}, batch 32x3x{args.size}^2, "
          f"{args.threads} BLAS threads; median of {args.steps} steps per process")
    for _ in range(args.pairs):
        for setting in ("glibc", "kept"):
            done = subprocess.run([sys.executable, __file__, "--run", setting,
                                   f"--size={args.size}", f"--hidden-c={args.hidden_c}",
                                   f"--steps={args.steps}"],
                                  env=environment, capture_output=True, text=True)
            if done.returncode:  # its own last line says why (keep_freed_memory needs glibc)
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise SystemExit(f"heap_settings: the {setting} run failed: {last}")
            seconds, faults, peak_mib = map(float, done.stdout.split())
            print(f"  heap {setting:5}  {seconds * 1e3:7.1f} ms  {faults:7.0f} minor faults  "
                  f"peak {peak_mib:5.0f} MiB")
    print("command: python benchmarks/heap_settings.py" + "".join(f" {a}" for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
