"""Live Python memory across the CLI's diffusion training steps, and what the growth is.

    python benchmarks/memory_growth.py                          # 300 steps, batch 32
    python benchmarks/memory_growth.py --batch 2 --steps 1000   # the long run, cheaply

tracemalloc (NumPy reports its array data to it too) over the steps that ``python -m minilean
diffusion`` takes with its defaults: builtin 3x16x16 images through the Loader, t and eps
drawn afresh each step, the v-predicting U-Net hc=24, Adam, clipping, EMA. Every ``--every``
steps it prints the traced memory as it is and after ``gc.collect()`` (which also empties
Python's free lists); at the end the lines whose live memory grew after ``--since``, then two
checks that name the two kinds of growth seen on CPython 3.11 (neither is minilean's):

- one block of 961,216 bytes: the interpreter's table of interned strings (a dict of 2**16
  slots: 32 + 4 x 65,536 + 16 x 43,690 bytes), allocated at import, before tracing began.
  tracemalloc sees it only once the table is rebuilt, which happens when its free slots run
  out, at whatever line interns a string then. Interning fresh strings rebuilds it again:
  the block moves to that line, at the same size.
- blocks of 55 and 59 bytes at ``clip.py`` (a NumPy scalar's ``astype``) and at NumPy's
  ``cumsum``: name strings ("astype", "accumulate") that NumPy's C code makes afresh to look
  a method up, kept alive by the type attribute cache of CPython 3.11, which holds a
  reference to the name in each of its 4096 entries. ``sys._clear_type_cache()`` frees them.
"""
import argparse
import fnmatch
import gc
import linecache
import os
import re
import sys
import tracemalloc

import numpy

from arguments import at_least, description  # noqa: E402  (beside this script)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from minilean import backend  # noqa: E402
from minilean.autograd.tensor import Tensor  # noqa: E402
from minilean.data import Loader, load_dataset  # noqa: E402
from minilean.data.streams import Purpose, stream  # noqa: E402
from minilean.models import diffusion as D  # noqa: E402
from minilean.models.unet import UNet  # noqa: E402
from minilean.optim import EMA, Adam, clip_grad_norm_  # noqa: E402

T, LR, EMA_DECAY, GRAD_CLIP = 200, 3e-3, 0.996, 1.0  # the diffusion command's defaults
# the measuring itself: tracemalloc, the source lines it reads, and the pattern matching its
# filters and snapshots do (fnmatch compiles its patterns with re, which caches them)
NOT_MEASURED = [tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, linecache.__file__),
                tracemalloc.Filter(False, fnmatch.__file__),
                tracemalloc.Filter(False, os.path.join(os.path.dirname(re.__file__), "*"))]


def cli_step(batch):
    """``step(k)``: the diffusion command's training step k (its ``step_fn``, learning-rate
    schedule aside), on the CPU."""
    dataset = load_dataset("builtin", None, None, None, 16, 0)
    alpha_bar = D.alpha_bars(D.make_betas("cosine", T))
    backend.manual_seed(0)
    model = UNet(3, 24)
    optimizer, average = Adam(model.parameters(), lr=LR), EMA(model, EMA_DECAY)
    batches = Loader(dataset, batch, seed=0, device="cpu").batches(0)

    def step(k):
        x0 = next(batches).x.data
        generator = stream(0, Purpose.TRAINING_STEP, k)
        t = D.sample_timesteps(x0.shape[0], T, generator)
        eps = generator.standard_normal(x0.shape).astype(numpy.float32)
        loss = D.v_prediction_loss(model, alpha_bar, Tensor(x0), t, Tensor(eps))
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        average.update(model)
    return step


def collected():
    """Traced bytes after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def snapshot():
    """What is traced after a full collection (tracemalloc's own work left out)."""
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(NOT_MEASURED)


def large_blocks(traces):
    """(size, line) of each block over half a MiB."""
    return [(trace.size, str(trace.traceback)) for trace in traces if trace.size > 2**19]


def mib(size):
    return f"{size / 2**20:.4f} MiB"


def main():
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--steps", type=at_least(1), default=300)
    parser.add_argument("--batch", type=at_least(1), default=32, help="the CLI default is 32")
    parser.add_argument("--every", type=at_least(1), default=50, help="steps between readings")
    parser.add_argument("--since", type=at_least(1), default=50,
                        help="the step growth is counted from (at most --steps)")
    args = parser.parse_args()
    if args.since > args.steps:
        parser.error(f"--since {args.since} is after the last step, --steps {args.steps}")
    step = cli_step(args.batch)
    tracemalloc.start()
    for k in range(1, args.steps + 1):
        step(k)
        if k == 1 or k % args.every == 0:
            raw = tracemalloc.get_traced_memory()[0]
            print(f"step {k:5d}: traced {mib(raw)}, after gc.collect() {mib(collected())}",
                  flush=True)
        if k == args.since:
            since = snapshot()
    last = snapshot()
    print(f"\nlive memory that grew from step {args.since} to {args.steps}, by line:")
    for change in last.compare_to(since, "lineno")[:8]:
        print(f"  {change.size_diff:+9d} B {change.count_diff:+5d} blocks  {change.traceback}")

    print(f"\nblocks over 0.5 MiB: {large_blocks(last.traces)}")
    for index in range(100_000):
        sys.intern(f"fresh name {index}")  # each dies at once, leaving a used slot behind
    print(f"the same after interning 100,000 fresh strings: {large_blocks(snapshot().traces)}")

    before = collected()
    sys._clear_type_cache()
    print(f"sys._clear_type_cache() frees {before - collected()} B")


if __name__ == "__main__":
    main()
