"""GPU benchmark of minilean: the card's ceilings, the fast kernels, a diffusion training step
against PyTorch eager, and DDIM sampling. Needs an NVIDIA GPU with CuPy; PyTorch with CUDA is
optional (its column is skipped, with a note, when it is missing).

    python benchmarks/bench_gpu.py [--batch-size 32] [--hidden-c 24] [--image-size 16]

The model, batch and image size default to ``python -m minilean diffusion``'s.

Order: first the ceilings (device-to-device copy bandwidth, a large float32 matmul), then each
elementwise kernel's bandwidth as a share of the copy bandwidth on a large tensor (target at
least 85%; CuPy's own elementwise kernel as a reference): the activations, Adam, EMA, clipping,
forward noising and the MSE loss; then the training step (plain CuPy and fast kernels, each
also replayed as a CUDA graph as ``--cuda-graph`` does, and PyTorch eager on the same model,
batch and card), and DDIM sampling throughput of each of the four (with a graph, the sampler's
network replayed as one). Last, where PyTorch has CUDA, its profiler (CUPTI) counts the kernels
each training step runs and how long the GPU is busy with them, against the step's wall time:
far below it, the step waits on the host, and ``host_costs.py`` says what each of its calls
costs there.

Kernels and training steps are timed in ``--rounds`` rounds: each kernel beside a copy, each
step variant in turn with the others. The lent machines drift within a run (the same step moved
by tens of percent within minutes), so a share or a ratio is the median over the rounds, with
its lowest and highest. Prints one table with the GPU name and the CuPy and CUDA versions; copy
it into benchmarks/RESULTS.md with the command.
"""
import argparse
import math
import sys
import time

import numpy

from arguments import at_least, image_side, description  # (beside this script)


def gpu_time(fn, repeats, warmup=3, calls=10):
    """Median seconds of one ``fn()`` on the GPU, measured with CUDA events (after ``warmup``
    calls) around ``calls`` calls made back to back.

    The events enclose only work queued behind a call the GPU is still busy with, so the host's
    time in each call (a kernel's Python wrapper: about 10-20 us on a lent machine's host)
    passes while the GPU runs the previous one, as in a training step. Events around a single
    call would count that host time as the kernel's: on a 130 us pass over 512 MB, it made an
    activation forward look 10-15 points of copy bandwidth slower than the same kernel
    launched bare (benchmarks/RESULTS.md).
    """
    import cupy
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        fn()  # the GPU is busy with this one while the host records the start
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3 / calls)
    return float(numpy.median(times))


def wall_time(fn, repeats, synchronize, warmup=3):
    """Seconds per call of ``fn()`` over ``repeats`` calls, host time included (launch-bound
    work such as a training step is limited by the host, so events alone would flatter it)."""
    for _ in range(warmup):
        fn()
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return (time.perf_counter() - start) / repeats


# --- ceilings ------------------------------------------------------------------------------------

def copy_call(elements):
    """(bytes moved, one call) of a device-to-device copy of ``elements`` float32 values (read
    + write counted)."""
    import cupy
    source = cupy.ones(elements, dtype=cupy.float32)
    target = cupy.empty_like(source)
    return 2 * source.nbytes, lambda: target.data.copy_from_device(source.data, source.nbytes)


def negate_call(elements):
    """(bytes moved, one call) of CuPy's own elementwise kernel ``y = -x`` (read + write
    counted): what a generated kernel with the activations' memory traffic reaches."""
    import cupy
    source = cupy.ones(elements, dtype=cupy.float32)
    target = cupy.empty_like(source)
    return 2 * source.nbytes, lambda: cupy.negative(source, out=target)


def matmul_flops(size):
    import cupy
    a = cupy.random.standard_normal((size, size), dtype=cupy.float32)
    b = cupy.random.standard_normal((size, size), dtype=cupy.float32)
    seconds = gpu_time(lambda: cupy.matmul(a, b), 10)
    return 2 * size ** 3 / seconds


# --- kernels --------------------------------------------------------------------------------------

def activation_kernels(elements):
    """{"kind direction": (bytes moved, one call)} of activations.cu on ``elements`` float32
    values."""
    import cupy
    from minilean.cuda import activations
    x = cupy.random.standard_normal(elements, dtype=cupy.float32)
    grad = cupy.random.standard_normal(elements, dtype=cupy.float32)
    kernels = {}
    for kind in activations.KINDS:
        kernels[f"{kind} forward"] = (  # read x, write y
            2 * x.nbytes, lambda kind=kind: activations.forward(kind, x))
        kernels[f"{kind} backward"] = (  # read x and grad, write dx
            3 * x.nbytes, lambda kind=kind: activations.backward(kind, x, grad))
    return kernels


def fused_kernels(elements, tensors=8):
    """{kernel: (bytes moved, one call)} of the other elementwise kernels on ``elements``
    float32 values: the optimizer's (Adam, EMA and clipping, over ``tensors`` parameters in one
    launch each, as over a model's) and the diffusion loss's (forward noising, the MSE loss).
    Each counts the bytes it must read and write once, the same measure as the activations'."""
    import cupy
    from minilean.cuda import adam, clip, ema, mse, noising

    per_tensor = elements // tensors

    def role():  # one array per parameter
        return [cupy.random.standard_normal(per_tensor, dtype=cupy.float32)
                for _ in range(tensors)]

    params, grads, exp_avgs, averages = (role() for _ in range(4))
    exp_avg_sqs = [cupy.abs(v) for v in role()]
    x0, noise, target = (cupy.random.standard_normal((tensors, per_tensor), dtype=cupy.float32)
                         for _ in range(3))  # a batch of `tensors` samples
    factors = noising.device_coefficients(numpy.linspace(0.99, 0.01, 1000), numpy.float32)
    t = cupy.arange(tensors, dtype=cupy.int64) * 100
    loss_grad = cupy.ones((), dtype=cupy.float32)
    value_bytes = 4 * per_tensor * tensors
    kernels = {  # name: (bytes read and written, one call)
        f"adam update over {tensors} tensors": (7 * value_bytes, lambda: adam.fused_adam_update(
            params, grads, exp_avgs, exp_avg_sqs, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)),
        f"ema update over {tensors} tensors": (
            3 * value_bytes, lambda: ema.fused_ema_update(averages, params, 0.999)),
        # the norm's pass reads the gradients, the scaling pass reads and writes them (by a
        # factor of 1 under this max_norm, so that the repeats leave the values as they are)
        f"gradient clipping over {tensors} tensors, 2 passes": (
            3 * value_bytes, lambda: clip.fused_clip_arrays(grads, 1e30, 1e-6)),
        "q_sample forward": (3 * value_bytes, lambda: noising.forward(x0, noise, factors, t)),
        "q_sample backward": (3 * value_bytes, lambda: noising.backward(x0, factors, t)),
        "mse loss forward (mean)": (2 * value_bytes, lambda: mse.forward(x0, target)),
        "mse loss backward": (4 * value_bytes, lambda: mse.backward(x0, target, loss_grad)),
    }
    return kernels


def copy_shares(kernels, copy, rounds):
    """{name: (bytes/s, share of the copy bandwidth, lowest and highest share of a round)} of
    ``kernels`` ({name: (bytes moved, one call)}) against ``copy`` (the same for a copy).

    Each round times every kernel right after a copy and takes their ratio; the share is the
    median over ``rounds``. The same kernel measured once per run moved by up to 13 points
    between runs, and a copy timed once at the start cannot follow a card whose speed drifts
    during the run."""
    copy_bytes, copy_call = copy
    ratios = {name: [] for name in kernels}
    bandwidths = {name: [] for name in kernels}
    for _ in range(rounds):
        for name, (moved, call) in kernels.items():
            copy_bandwidth = copy_bytes / gpu_time(copy_call, 5)
            bandwidths[name].append(moved / gpu_time(call, 5))
            ratios[name].append(bandwidths[name][-1] / copy_bandwidth)
    return {name: (float(numpy.median(bandwidths[name])), float(numpy.median(ratios[name])),
                   min(ratios[name]), max(ratios[name])) for name in kernels}


# --- the training step -------------------------------------------------------------------------

def minilean_step(args, fast, graph=False):
    """(step, sample, synchronize) for the CLI's diffusion step on "cuda" (fast
    kernels on or off; with ``graph``, loss and gradients replayed as one CUDA graph, and the
    sampler's network as another, as ``--cuda-graph`` does)."""
    import cupy
    from minilean import Tensor, backend, tensor, use_fast_kernels
    from minilean.autograd.grad_mode import no_grad
    from minilean.cuda.graph import CapturedCall
    from minilean.models import diffusion as D
    from minilean.models.unet import UNet
    from minilean.optim import EMA, Adam, clip_grad_norm_
    from minilean.train.diffusion import GraphNetwork

    use_fast_kernels(fast)
    backend.manual_seed(0)
    model = UNet(3, args.hidden_c).to("cuda")
    optimizer, average = Adam(model.parameters(), lr=2e-3), EMA(model, 0.995)
    alpha_bar = D.alpha_bars(D.make_betas("cosine", args.T))
    host = numpy.random.default_rng(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    x0 = cupy.asarray(host.uniform(-1, 1, shape).astype(numpy.float32))

    def draw():
        return (D.sample_timesteps(args.batch_size, args.T, host),
                host.standard_normal(shape).astype(numpy.float32))

    def loss_and_clipped_grads(x0, t, eps):
        loss = D.eps_prediction_loss(model, alpha_bar, Tensor(x0), t, Tensor(eps))
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        return loss.data

    replay = CapturedCall(loss_and_clipped_grads, (x0,) + draw()) if graph else None

    def step():
        t, eps = draw()
        if replay is None:
            loss_and_clipped_grads(x0, t, cupy.asarray(eps))
        else:
            replay(x0, t, eps)
        optimizer.step()
        average.update(model)

    network = GraphNetwork(model) if graph else model  # captured at the first sampling step

    def sample():
        x_T = tensor(host.standard_normal((args.n_samples, 3, args.image_size, args.image_size))
                     .astype(numpy.float32), device="cuda")
        with no_grad():
            D.ddim_sample(network, alpha_bar, x_T,
                          D.respaced_timesteps(args.T, args.sample_steps), clip=True)

    return step, sample, cupy.cuda.Stream.null.synchronize


def torch_step(torch, args):
    """(step, synchronize, parameters) for the same training step in PyTorch eager."""
    from minilean.models import diffusion as D
    from minilean.models.unet import sinusoidal_embedding
    from minilean import tensor
    from torch_unet import TorchUNet  # the same U-Net in PyTorch (beside this script)

    model = TorchUNet(3, args.hidden_c).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    shadow = [p.detach().clone() for p in model.parameters()]
    alpha_bar = torch.tensor(D.alpha_bars(D.make_betas("cosine", args.T)), dtype=torch.float32,
                             device="cuda")
    host = numpy.random.default_rng(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    x0 = torch.tensor(host.uniform(-1, 1, shape).astype(numpy.float32), device="cuda")
    like = tensor(numpy.zeros(1, dtype=numpy.float32))
    # asynchronous uploads, as CuPy's: a blocking .cuda() would make each step wait for the
    # previous one to finish on the GPU, and flatter minilean
    upload = {"device": "cuda", "non_blocking": True}

    def step():
        t = D.sample_timesteps(args.batch_size, args.T, host)
        embedding = torch.from_numpy(sinusoidal_embedding(t, args.hidden_c, args.batch_size,
                                                          like).numpy()).to(**upload)
        eps = torch.from_numpy(host.standard_normal(shape).astype(numpy.float32)).to(**upload)
        alpha = alpha_bar[torch.from_numpy(t).to(**upload)].reshape(-1, 1, 1, 1)
        x_t = alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps
        loss = torch.nn.functional.mse_loss(model(x_t, embedding), eps)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(shadow, list(model.parameters()), 1 - 0.995)

    return step, torch.cuda.synchronize, sum(p.numel() for p in model.parameters())


# --- what the GPU does during a step ------------------------------------------------------------

def device_intervals(events, device_type):
    """(name, start, end) of each of the profiler's ``events`` that ran on the device: kernels,
    copies and fills, in the profiler's microseconds."""
    return [(event.name, event.time_range.start, event.time_range.end) for event in events
            if event.device_type == device_type]


def busy_time(intervals):
    """How long at least one of ``intervals`` (name, start, end) was running: their union's
    length, so kernels that overlap (on several streams) count once."""
    busy, reached = 0.0, float("-inf")
    for _, start, end in sorted(intervals, key=lambda interval: interval[1]):
        busy += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    return busy


def interleaved_step_times(steps, count, rounds, use_fast_kernels, after_round=None):
    """{label: seconds per step in each round} of ``steps`` ({label: (fast, step,
    synchronize)}), each timed over ``count`` steps once per round, in turn. Back to back, one
    variant after another, the same step moved by tens of percent within minutes on one
    machine (its host time varies): in turns, such drift falls on every variant alike. Every
    other round runs the variants in reverse order, so that a drift within a round does not
    always fall on the variant timed last. ``after_round(number, {label: seconds})`` is called
    as each round ends."""
    times = {label: [] for label in steps}
    for round_number in range(rounds):
        order = list(steps.items())
        for label, (fast, step, synchronize) in order[::-1] if round_number % 2 else order:
            use_fast_kernels(fast)
            try:
                times[label].append(wall_time(step, count, synchronize, warmup=1))
            finally:
                use_fast_kernels(False)
        if after_round:
            after_round(round_number, {label: seconds[-1] for label, seconds in times.items()})
    return times


def median_interval(values, confidence=0.95):
    """(median, low, high) of ``values``: low and high, the k-th smallest and the k-th largest
    value, hold the true median with probability at least ``confidence`` whatever the values'
    distribution (the sign test's interval), k the largest count with
    P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2. low and high are None where n is too
    small for such an interval (n < 6 at 95%)."""
    ordered, n = sorted(values), len(values)
    median = float(numpy.median(ordered))
    # the median lies below the k-th smallest value when fewer than k values fall below it:
    # probability P(X <= k - 1), X ~ Binomial(n, 1/2); k grows while that stays in the tail
    k, at_most = 0, 0.0
    while k < n // 2:
        at_most += math.comb(n, k) / 2 ** n  # P(X <= k)
        if at_most > (1 - confidence) / 2:
            break
        k += 1
    if k == 0:
        return median, None, None
    return median, ordered[k - 1], ordered[n - k]


def unet_parameters(args):
    """The parameter count of the U-Net that minilean's step trains."""
    from minilean.models.unet import UNet
    return sum(p.numel() for p in UNet(3, args.hidden_c).parameters())


def same_model_torch_step(torch, args, parameters):
    """(step, synchronize) of ``torch_step``, refused unless its U-Net has ``parameters``
    parameters like minilean's: a comparison with another model would time nothing useful."""
    step, synchronize, torch_parameters = torch_step(torch, args)
    if torch_parameters != parameters:
        raise RuntimeError(f"the PyTorch U-Net has {torch_parameters} parameters, "
                           f"minilean's {parameters}: not the same model")
    return step, synchronize


def parity(args, use_fast_kernels):
    """Rows comparing the eager ``--fast-kernels`` training step with PyTorch eager alone: the
    median of the rounds' speed ratios, its 95% interval and what it says (``--parity``). Two
    variants in many short rounds narrow the interval that five long rounds of five variants
    leave as wide as 0.69-1.37x on a lent machine's drifting host."""
    torch, why_not = load_torch_cuda()
    if torch is None:
        return [("parity", "PyTorch eager", f"not measured: {why_not}")]
    step, _, synchronize = minilean_step(args, fast=True)
    use_fast_kernels(False)
    torch_training_step, torch_synchronize = same_model_torch_step(torch, args,
                                                                   unet_parameters(args))
    baseline = f"PyTorch {torch.__version__} eager"
    steps = {"minilean fast kernels": (True, step, synchronize),
             baseline: (False, torch_training_step, torch_synchronize)}
    def print_round(number, seconds):  # as it ends: a run cut short keeps its rounds
        ours, theirs = seconds["minilean fast kernels"], seconds[baseline]
        print(f"parity round {number + 1}/{args.rounds}: minilean {1e3 * ours:.2f} ms, "
              f"PyTorch {1e3 * theirs:.2f} ms, {theirs / ours:.2f}x", flush=True)

    times = interleaved_step_times(steps, args.steps, args.rounds, use_fast_kernels,
                                   print_round)
    speeds = [theirs / ours for ours, theirs in zip(times["minilean fast kernels"],
                                                    times[baseline])]
    median, low, high = median_interval(speeds)
    if low is None:
        verdict = f"{args.rounds} rounds are too few for a 95% interval (at least 6)"
    elif low >= 1:
        verdict = f"95% interval {low:.2f}-{high:.2f}x: faster"
    elif high < 1:
        verdict = f"95% interval {low:.2f}-{high:.2f}x: slower"
    else:
        verdict = f"95% interval {low:.2f}-{high:.2f}x: neither slower nor faster at 95%"
    what = (f"minilean fast kernels, eager, vs {baseline}: U-Net hidden {args.hidden_c}, "
            f"batch {args.batch_size}x3x{args.image_size}^2, {args.rounds} rounds of "
            f"{args.steps} steps")
    return [("parity", what, f"{median:.2f}x PyTorch eager's speed (median; "
             f"{1e3 * numpy.median(times['minilean fast kernels']):.2f} ms against "
             f"{1e3 * numpy.median(times[baseline]):.2f} ms); {verdict}")]


def gpu_work(torch, step, synchronize, steps=5):
    """(kernels, busy seconds) per call of ``step``, as CUPTI records them through PyTorch's
    profiler: every kernel the process runs, CuPy's and minilean's as well as PyTorch's, those
    inside a CUDA graph included. A step whose busy time is far below its wall time waits on
    the host (Python, launches), not on the GPU."""
    from torch.profiler import ProfilerActivity, profile
    step()
    synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(steps):
            step()
        synchronize()
    intervals = device_intervals(profiler.events(), torch.autograd.DeviceType.CUDA)
    kernels = [name for name, _, _ in intervals if not name.startswith(("Memcpy", "Memset"))]
    return len(kernels) / steps, busy_time(intervals) / 1e6 / steps


def load_torch_cuda():
    """PyTorch if it is installed with CUDA, else (None, the reason)."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} has no CUDA here"
    return torch, ""


# --- report ---------------------------------------------------------------------------------------

def versions():
    import cupy
    properties = cupy.cuda.runtime.getDeviceProperties(0)
    name = properties["name"]
    name = name.decode() if isinstance(name, bytes) else name

    def dotted(number):
        return f"{number // 1000}.{number % 1000 // 10}"

    return (f"GPU {name}; CuPy {cupy.__version__}; CUDA runtime "
            f"{dotted(cupy.cuda.runtime.runtimeGetVersion())}, driver "
            f"{dotted(cupy.cuda.runtime.driverGetVersion())}")


def main(argv=None):
    from minilean.cli import DIFFUSION
    cli_default = {name: flag.default for name, flag in DIFFUSION.flags.items()}
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--batch-size", type=at_least(1), default=cli_default["batch_size"])
    parser.add_argument("--hidden-c", type=at_least(2), default=cli_default["hidden_c"])
    parser.add_argument("--image-size", type=image_side, default=cli_default["image_size"])
    parser.add_argument("--T", type=at_least(1), default=cli_default["T"])
    parser.add_argument("--steps", type=at_least(1), default=20,
                        help="timed training steps of each variant per round")
    parser.add_argument("--rounds", type=at_least(1), default=None,
                        help="rounds in which every kernel (beside a copy) and every training "
                             "step variant is timed in turn; the reports are medians "
                             "(default 5; with --parity 41)")
    parser.add_argument("--parity", action="store_true",
                        help="only the eager --fast-kernels training step against PyTorch "
                             "eager, in many rounds: the median speed ratio, its 95%% "
                             "interval and what it says")
    parser.add_argument("--n-samples", type=at_least(1), default=64)
    parser.add_argument("--sample-steps", type=at_least(1), default=50)
    parser.add_argument("--elements", type=at_least(1), default=1 << 26,
                        help="float32 values per array in the bandwidth tests (default 64 Mi = "
                             "256 MiB, far beyond every cache)")
    parser.add_argument("--matmul-size", type=at_least(1), default=8192)
    args = parser.parse_args(argv)
    from minilean import backend
    if not backend.cuda_available():
        print("bench_gpu: needs an NVIDIA GPU with CuPy; nothing measured", file=sys.stderr)
        return 1
    from minilean import use_fast_kernels

    rows = Rows()
    rows.append(("card", "", versions()))
    if args.parity:
        args.rounds = 41 if args.rounds is None else args.rounds
        return report(rows + parity(args, use_fast_kernels), argv)
    args.rounds = 5 if args.rounds is None else args.rounds
    copy = copy_call(args.elements)
    rows.append(("ceiling", "device-to-device copy",
                 f"{copy[0] / gpu_time(copy[1], 20) / 1e9:.0f} GB/s"))
    rows.append(("ceiling", f"float32 matmul {args.matmul_size}^3",
                 f"{matmul_flops(args.matmul_size) / 1e12:.1f} TFLOP/s"))
    kernels = {"CuPy elementwise y = -x": negate_call(args.elements)}
    kernels.update(activation_kernels(args.elements))
    kernels.update(fused_kernels(args.elements))
    for name, (bandwidth, share, low, high) in copy_shares(kernels, copy, args.rounds).items():
        rows.append(("reference" if name.startswith("CuPy") else "kernel",
                     f"{name} ({args.elements} float32)",
                     f"{bandwidth / 1e9:.0f} GB/s = {100 * share:.0f}% of copy "
                     f"({100 * low:.0f}-{100 * high:.0f}% over {args.rounds} rounds)"))
    parameters = unet_parameters(args)
    steps = {}  # label: (fast, step, synchronize)
    for fast, graph in ((False, False), (True, False), (False, True), (True, True)):
        label = ("minilean fast kernels" if fast else "minilean plain CuPy") + \
            (" + CUDA graph" if graph else "")
        try:
            step, sample, synchronize = minilean_step(args, fast, graph)
            wall_time(step, 1, synchronize)  # a graph that cannot be captured fails here
            steps[label] = (fast, step, synchronize)
            use_fast_kernels(fast)
            # the sampler's graph may fail to capture too: a row, not the end of the run
            images_per_second = args.n_samples / wall_time(sample, 2, synchronize, warmup=1)
        except Exception as error:  # say why, go on
            rows.append(("sampling" if label in steps else "train step", label,
                         f"failed: {type(error).__name__}: {error}"))
            continue
        finally:
            use_fast_kernels(False)
        rows.append(("sampling",
                     f"{label}: DDIM {args.sample_steps} steps, {args.n_samples} images",
                     f"{images_per_second:.1f} images/s"))
    torch, why_not = load_torch_cuda()
    if torch is None:
        rows.append(("train step", "PyTorch eager", f"not measured: {why_not}"))
    else:
        step, synchronize = same_model_torch_step(torch, args, parameters)
        steps[f"PyTorch {torch.__version__} eager"] = (False, step, synchronize)
    round_times = interleaved_step_times(steps, args.steps, args.rounds, use_fast_kernels)
    step_times = {label: float(numpy.median(times)) for label, times in round_times.items()}
    baseline = next((label for label in steps if label.startswith("PyTorch")), None)
    for label, seconds in step_times.items():
        versus = ""
        if baseline:
            speeds = [theirs / ours for ours, theirs in zip(round_times[label],
                                                            round_times[baseline])]
            versus = (f" ({numpy.median(speeds):.2f}x PyTorch eager's speed; "
                      f"{min(speeds):.2f}-{max(speeds):.2f}x over {args.rounds} rounds)")
        rows.append(("train step", f"{label}: U-Net hidden {args.hidden_c}, {parameters} params, "
                     f"batch {args.batch_size}x3x{args.image_size}^2",
                     f"{1e3 * seconds:.2f} ms{versus}"))
    # last, so that the profiler's tracing cannot slow any timing above
    for label, (fast, step, synchronize) in steps.items():
        if torch is None:
            rows.append(("gpu work", label, f"not measured: {why_not}"))
            continue
        use_fast_kernels(fast)
        try:
            kernels, busy = gpu_work(torch, step, synchronize)
        except Exception as error:  # the profiler cannot trace on this machine: say so, go on
            rows.append(("gpu work", label, f"failed: {type(error).__name__}: {error}"))
            continue
        finally:
            use_fast_kernels(False)
        rows.append(("gpu work", f"{label}: kernels and GPU busy time per training step",
                     f"{kernels:.0f} kernels, {1e3 * busy:.2f} ms busy = "
                     f"{100 * busy / step_times[label]:.0f}% of the step's wall time"
                     if kernels else "the profiler saw no kernel (no CUPTI tracing here?)"))
    return report(rows, argv)


class Rows(list):
    """The report's rows ((group, what, value)), each printed as it is measured, so that a
    run stopped by its time limit or an error keeps in its log what it had measured; the
    aligned table comes at the end."""

    def append(self, row):
        super().append(row)
        print(" | ".join(row), flush=True)


def report(rows, argv):
    """Print ``rows`` ((group, what, value)) as one table and the command; returns 0."""
    width = max(len(what) for _, what, _ in rows)
    for group, what, value in rows:
        print(f"{group:<11} {what:<{width}}  {value}")
    print(f"command: python benchmarks/bench_gpu.py {' '.join(argv or sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
