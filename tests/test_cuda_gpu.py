"""minilean on a GPU: every kernel against its NumPy reference, every engine op on "cuda"
against the CPU (with and without fast kernels), no host transfers and no memory growth in a
training step, and the diffusion command end to end. Every test here is marked gpu and is
skipped without an NVIDIA GPU and CuPy (see conftest.py).
"""
import json
import math
import subprocess
import sys

import numpy
import pytest

import minilean
import minilean.nn.functional as F
from device_cases import (OPS, check_op_on_cuda_matches_cpu, copies_in_each_cli_step,
                          diffusion_step_parts)
from minilean.autograd import reduce as reduce_ops
from minilean.cuda import (activations, adam, ema, im2col, mse, noising, norm, reduce, softmax,
                           use_fast_kernels)

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

TOLERANCE = {numpy.float32: dict(rtol=2e-5, atol=2e-6), numpy.float64: dict(rtol=1e-11, atol=1e-13)}
rng = numpy.random.default_rng(11)


@pytest.fixture
def fast_kernels():
    use_fast_kernels(True)
    yield
    use_fast_kernels(False)


def close(device_array, expected, dtype):
    numpy.testing.assert_allclose(cupy.asnumpy(device_array), expected, **TOLERANCE[dtype])


def on_gpu(array, layout):
    """``array`` on the GPU, contiguous or as a non-contiguous view holding the same values."""
    if layout == "contiguous":
        return cupy.asarray(array)
    # a Fortran-ordered copy: same values, non-contiguous in C order (a 1-d input: a strided view)
    if array.ndim == 1:
        return cupy.asarray(numpy.repeat(array, 2))[::2]
    return cupy.asfortranarray(cupy.asarray(array))


SHAPES = [(1,), (1023,), (3, 5, 7), (2, 33, 65), (1 << 22) + 3]
DTYPES = [numpy.float32, numpy.float64]
LAYOUTS = ["contiguous", "strided"]


# --- each kernel against its NumPy reference ----------------------------------------------------

@pytest.mark.parametrize("kind", sorted(activations.KINDS))
@pytest.mark.parametrize("size", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_activation_kernels(kind, size, dtype, layout):
    x = rng.normal(scale=3, size=size).astype(dtype)
    grad = rng.normal(size=size).astype(dtype)
    y, derivative = activations.reference(kind, x, slope=0.1)
    close(activations.forward(kind, on_gpu(x, layout), 0.1), y, dtype)
    close(activations.backward(kind, on_gpu(x, layout), on_gpu(grad, layout), 0.1),
          grad * derivative, dtype)


def test_activation_kernel_indexes_past_two_to_the_31():
    count = (1 << 31) + 7
    free, _ = cupy.cuda.runtime.memGetInfo()
    if free < 3 * 4 * count:
        pytest.skip(f"needs {3 * 4 * count >> 30} GiB of free GPU memory, has {free >> 30}")
    x = cupy.full(count, -1.0, dtype=cupy.float32)
    x[-7:] = cupy.arange(1, 8, dtype=cupy.float32)
    y = activations.forward("relu", x)
    del x
    assert cupy.asnumpy(y[-7:]).tolist() == list(range(1, 8))
    assert float(y[: 1 << 20].max()) == 0.0 and float(y[(1 << 31) - 5: -7].max()) == 0.0


@pytest.mark.parametrize("shape, axes", [((7,), (0,)), ((3, 5, 7), (1,)), ((3, 5, 7), (0, 1)),
                                         ((3, 5, 7), (2,)), ((2, 1000, 3), (0, 1, 2)),
                                         ((4097, 3), (0,)), ((3, 100003), (1,))])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mean", [False, True])
def test_reduce_kernel(shape, axes, dtype, mean):
    x = rng.normal(size=shape).astype(dtype)
    outer, length, inner = reduce.row_layout(shape, axes)
    out = reduce.sum_rows(on_gpu(x, "strided"), outer, length, inner, 1 / length if mean else 1)
    expected = reduce.reference(x, axes, keepdim=False, mean=mean)
    # rounding grows with the number of terms: a few ulps per term at worst
    tolerance = dict(rtol=TOLERANCE[dtype]["rtol"], atol=4 * numpy.finfo(dtype).eps * length)
    numpy.testing.assert_allclose(cupy.asnumpy(out).reshape(expected.shape), expected, **tolerance)


@pytest.mark.parametrize("shape, axis", [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((5,), 0),
                                         ((64, 1031), 1), ((2, 3000, 5), 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_kernels(shape, axis, dtype, log):
    x = rng.normal(scale=5, size=shape).astype(dtype)
    grad = rng.normal(size=shape).astype(dtype)
    y, vjp = softmax.reference(x, axis, log)
    y_gpu = softmax.forward(on_gpu(x, "strided"), axis, log)
    close(y_gpu, y, dtype)
    close(softmax.backward(y_gpu, on_gpu(grad, "strided"), axis, log), vjp(y, grad), dtype)


NORMS = [("layer", (3, 4, 6), 2), ("layer", (5, 1000), 1), ("layer", (7, 3), 1),
         ("group", (2, 6, 3, 5), 3), ("group", (3, 32, 17, 9), 8), ("group", (2, 4, 7), 1)]


@pytest.mark.parametrize("which, shape, count", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_norm_kernels(which, shape, count, dtype, affine):
    layout = (norm.layer_norm_layout(shape, count) if which == "layer"
              else norm.group_norm_layout(shape, count))
    x = rng.normal(loc=3, scale=2, size=shape).astype(dtype)
    grad = rng.normal(size=shape).astype(dtype)
    weight = rng.normal(size=layout.channels).astype(dtype) if affine else None
    bias = rng.normal(size=layout.channels).astype(dtype) if affine else None
    y, vjp = norm.reference(x, layout, weight, bias)
    gpu = (lambda a: None if a is None else cupy.asarray(a))
    y_gpu, mean, inv_std = norm.forward(on_gpu(x, "strided"), layout, gpu(weight), gpu(bias))
    close(y_gpu, y, dtype)
    dx, dweight, dbias = norm.backward(cupy.asarray(x), layout, on_gpu(grad, "strided"), mean,
                                       inv_std, gpu(weight))
    for got, expected in zip((dx, dweight, dbias), vjp(grad)):
        tolerance = dict(TOLERANCE[dtype], atol=TOLERANCE[dtype]["atol"] * math.sqrt(x.size))
        numpy.testing.assert_allclose(cupy.asnumpy(got), expected, **tolerance)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("size", [(1,), (3, 5, 7), (1 << 22) + 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_kernels(reduction, size, dtype):
    input, target = (rng.normal(size=size).astype(dtype) for _ in range(2))
    out, derivative = mse.reference(input, target, reduction)
    grad = rng.normal(size=size).astype(dtype) if reduction == "none" else numpy.asarray(
        1.5, dtype=dtype)
    n = input.size
    tolerance = dict(TOLERANCE[dtype], rtol=TOLERANCE[dtype]["rtol"] * math.sqrt(n))
    numpy.testing.assert_allclose(cupy.asnumpy(mse.forward(on_gpu(input, "strided"),
                                                           cupy.asarray(target), reduction)),
                                  out, **tolerance)
    d_input, d_target = mse.backward(cupy.asarray(input), on_gpu(target, "strided"),
                                     cupy.asarray(grad), reduction)
    close(d_input, derivative * grad, dtype)
    close(d_target, -derivative * grad, dtype)


@pytest.mark.parametrize("shape", [(1, 1), (4, 3, 5, 5), (7, 3, 31, 33)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_noising_kernels(shape, dtype):
    alpha_bar = numpy.cumprod(1 - numpy.linspace(1e-4, 0.05, 100))
    t = rng.integers(0, 100, size=shape[0])
    x0, eps, grad = (rng.normal(size=shape).astype(dtype) for _ in range(3))
    out, (signal, noise) = noising.reference(x0, eps, alpha_bar.astype(dtype), t)
    schedule = cupy.asarray(alpha_bar.astype(dtype))
    close(noising.forward(on_gpu(x0, "strided"), cupy.asarray(eps), schedule, cupy.asarray(t)),
          out, dtype)
    d_x0, d_eps = noising.backward(on_gpu(grad, "strided"), schedule, cupy.asarray(t))
    close(d_x0, signal * grad, dtype)
    close(d_eps, noise * grad, dtype)


PARAMETER_SHAPES = [(3, 4), (1,), (257,), (16, 3, 3, 3), (5, 7), ((1 << 20) + 1,)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_over_all_parameters(dtype, decoupled):
    host = [[rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES] for _ in range(3)]
    host.append([rng.random(size=s).astype(dtype) for s in PARAMETER_SHAPES])
    device = [[cupy.asarray(a) for a in role] for role in host]
    settings = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05,
                    decoupled=decoupled)
    for step in (1, 2, 3):
        adam.fused_adam_update(*device, step=step, **settings)
        for k in range(len(PARAMETER_SHAPES)):
            param, exp_avg, exp_avg_sq = adam.reference(host[0][k], host[1][k], host[2][k],
                                                        host[3][k], step=step, **settings)
            host[0][k], host[2][k], host[3][k] = param, exp_avg, exp_avg_sq
    for host_role, device_role in zip(host, device):
        for expected, got in zip(host_role, device_role):
            close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_ema_over_all_parameters(dtype):
    averages = [rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES]
    params = [rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES]
    device_averages = [cupy.asarray(a) for a in averages]
    ema.fused_ema_update(device_averages, [cupy.asarray(p) for p in params], 0.99)
    for got, average, param in zip(device_averages, averages, params):
        close(got, ema.reference(average, param, 0.99), dtype)


def test_fused_update_rejects_mixed_arrays():
    params = [cupy.zeros(3, dtype=cupy.float32), cupy.zeros(4, dtype=cupy.float64)]
    with pytest.raises(ValueError, match="fused update needs contiguous float32 arrays"):
        ema.fused_ema_update(params, params, 0.9)


CONVOLUTIONS = [((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
                ((1, 4, 9, 8), (3, 2), (2, 3), (1, 0), (1, 2)),
                ((3, 5, 33, 17), (5, 5), (2, 2), (2, 2), (1, 1)),
                ((2, 2, 5, 5), (1, 1), (1, 1), (0, 0), (1, 1))]


@pytest.mark.parametrize("x_shape, kernel, stride, padding, dilation", CONVOLUTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im_kernels(x_shape, kernel, stride, padding, dilation, dtype):
    x = rng.normal(size=x_shape).astype(dtype)
    columns = im2col.im2col_reference(x, kernel, stride, padding, dilation)
    close(im2col.im2col(on_gpu(x, "strided"), kernel, stride, padding, dilation), columns, dtype)
    grad_columns = rng.normal(size=columns.shape).astype(dtype)
    close(im2col.col2im(on_gpu(grad_columns, "strided"), x_shape, kernel, stride, padding,
                        dilation),
          im2col.col2im_reference(grad_columns, x_shape, kernel, stride, padding, dilation), dtype)


# --- every engine op on "cuda" against the CPU --------------------------------------------------

@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_engine_op_on_cuda_matches_cpu(name, fast):
    check_op_on_cuda_matches_cpu(name, rng, fast)


def test_fast_kernels_are_actually_used(fast_kernels):
    x = minilean.randn(4, 5, device="cuda", requires_grad=True)
    assert F.silu(x).grad_fn.function is activations.FastSilu
    assert reduce_ops.softmax(x, 1).grad_fn.function is softmax.FastSoftmax


# --- a training step: no host transfers, no memory growth, same numbers with fast kernels -------

class HostTransfers:
    """Counts device-to-host copies made through CuPy's Python-level entry points."""

    NAMES = ("get", "item", "tolist", "__float__", "__int__", "__bool__", "__array__")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(cupy.ndarray, name)
            monkeypatch.setattr(cupy.ndarray, name, self._counting(original))
        monkeypatch.setattr(cupy, "asnumpy", self._counting(cupy.asnumpy))

    def _counting(self, original):
        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)
        return counted


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_training_step_makes_no_host_transfers(monkeypatch, fast):
    use_fast_kernels(fast)
    try:
        _, step = diffusion_step_parts()
        step(0)  # warm-up: compiles kernels, fills caches
        transfers = HostTransfers(monkeypatch)
        cupy.zeros(1).get()  # the counter sees CuPy's own entry points
        assert transfers.count == 1
        step(1)
        step(2)
        cupy.cuda.Stream.null.synchronize()
        assert transfers.count == 1, "a training step copied data to the host"
    finally:
        use_fast_kernels(False)


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_diffusion_command_steps_make_no_host_transfers(monkeypatch, tmp_path, fast):
    """The command's own step (v-prediction, clipping, lr schedule, EMA), kernels included."""
    transfers = HostTransfers(monkeypatch)
    argv = ["diffusion", "--device=cuda", "--steps=4", "--batch-size=8", "--hidden-c=8", "--T=20",
            "--n-samples=2", "--evaluate=false", "--progress=false", f"--out={tmp_path}"]
    try:
        copies = copies_in_each_cli_step(monkeypatch, argv + ["--fast-kernels"] * fast,
                                         lambda: transfers.count)
    finally:
        use_fast_kernels(False)
    assert copies == [0, 0, 0, 0]


def test_training_step_with_gradient_clipping_makes_no_host_transfers(monkeypatch):
    """The CLI's step clips the gradient norm; the norm must stay on the device."""
    _, step = diffusion_step_parts()
    step(0, clip=True)
    transfers = HostTransfers(monkeypatch)
    step(1, clip=True)
    assert transfers.count == 0, "clip_grad_norm_ copied data to the host"


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_memory_pool_is_flat_across_steps(fast):
    use_fast_kernels(fast)
    try:
        _, step = diffusion_step_parts()
        pool = cupy.get_default_memory_pool()
        used = []
        for k in range(8):
            step(k)
            cupy.cuda.Stream.null.synchronize()
            if k >= 3:
                used.append(pool.used_bytes())
        assert max(used) == min(used), f"pool usage grew across steps: {used}"
    finally:
        use_fast_kernels(False)


def test_fast_kernels_train_like_plain_cupy():
    results = []
    for fast in (False, True):
        use_fast_kernels(fast)
        try:
            model, step = diffusion_step_parts()
            losses = [float(step(k).item()) for k in range(3)]
            results.append((losses, [p.numpy() for p in model.parameters()]))
        finally:
            use_fast_kernels(False)
    (plain_losses, plain_params), (fast_losses, fast_params) = results
    numpy.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-4)
    for fast_param, plain_param in zip(fast_params, plain_params):
        numpy.testing.assert_allclose(fast_param, plain_param, rtol=1e-3, atol=1e-5)


# --- the headline command ------------------------------------------------------------------------

@pytest.mark.slow
def test_diffusion_command_on_cuda_with_fast_kernels(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "minilean", "diffusion", "--device=cuda", "--fast-kernels",
               "--steps=5", "--batch-size=8", "--hidden-c=8", "--T=20", "--sample-steps=3",
               "--n-samples=4", "--evaluate=false", "--progress=false", f"--out={out}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 5
    assert math.isfinite(summary["final_loss"])
