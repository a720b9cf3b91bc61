"""Cases shared by the GPU tests (tests/test_cuda_gpu.py, real CuPy on a card) and the device
tests that run anywhere (tests/test_fake_device.py and tests/test_fresh_grads.py, on the CPU
stand-in tests/fake_cupy.py): every engine op with its input shapes, the ops that declare
``fresh_grads``, a small diffusion training step, the fast-vs-plain training check, a counter
of host copies in a model command's steps, every model command end to end, and the CUDA
graph checks.
"""
import json
import math

import numpy
import pytest

import minilean
import minilean.nn.functional as F
from minilean import backend
from minilean.autograd import shape
from minilean.cuda import use_fast_kernels
from minilean.models import diffusion as D


def positive(t):
    return t.abs() + 0.5


OPS = {  # name: (function of tensors, input shapes)
    "add": (lambda a, b: a + b, [(3, 4), (4,)]),
    "add_over_positions": (lambda a, b: a + b, [(2, 3, 4, 5), (2, 3, 1, 1)]),
    "sub": (lambda a, b: a - b, [(3, 1), (3, 4)]),
    "mul": (lambda a, b: a * b, [(2, 3, 4), (3, 1)]),
    "mul_over_leading_axes": (lambda a, b: a * b, [(2, 3, 4), (4,)]),
    "div": (lambda a, b: a / positive(b), [(3, 4), (3, 4)]),
    "pow": (lambda a, b: positive(a) ** b, [(3, 4), (3, 4)]),
    "neg": (lambda a: -a, [(5,)]),
    "exp": (minilean.exp, [(3, 4)]),
    "log": (lambda a: minilean.log(positive(a)), [(3, 4)]),
    "sqrt": (lambda a: minilean.sqrt(positive(a)), [(3, 4)]),
    "rsqrt": (lambda a: minilean.rsqrt(positive(a)), [(3, 4)]),
    "abs": (minilean.abs, [(3, 4)]),
    "clamp": (lambda a: minilean.clamp(a, -0.5, 0.7), [(3, 4)]),
    "maximum": (minilean.maximum, [(3, 4), (3, 4)]),
    "minimum": (minilean.minimum, [(3, 4), (4,)]),
    "where": (lambda a, b: minilean.where(a > 0, a, b), [(3, 4), (3, 4)]),
    "sin": (minilean.sin, [(3, 4)]),
    "cos": (minilean.cos, [(3, 4)]),
    "tanh": (minilean.tanh, [(3, 4)]),
    "sigmoid": (minilean.sigmoid, [(3, 4)]),
    "relu": (F.relu, [(3, 4)]),
    "leaky_relu": (lambda a: F.leaky_relu(a, 0.1), [(3, 4)]),
    "silu": (F.silu, [(3, 4)]),
    "gelu": (F.gelu, [(3, 4)]),
    "gelu_tanh": (lambda a: F.gelu(a, approximate="tanh"), [(3, 4)]),
    "sigmoid_of_a_scalar": (minilean.sigmoid, [()]),
    "sum_all": (minilean.sum, [(3, 4, 5)]),
    "sum_axis": (lambda a: a.sum(1), [(3, 4, 5)]),
    "sum_axes_keepdim": (lambda a: a.sum((0, 2), keepdim=True), [(3, 4, 5)]),
    "mean_axis": (lambda a: a.mean(-1), [(3, 4, 5)]),
    "mean_all": (lambda a: a.mean(), [(3, 4, 5)]),
    "mean_over_an_empty_axis": (lambda a: a.mean(0), [(0, 3)]),  # nan, as in PyTorch
    "var": (lambda a: a.var(1), [(3, 4, 5)]),
    "std": (lambda a: a.std((0, 2)), [(3, 4, 5)]),
    "max": (lambda a: a.max(1).values[:, None, :] * a.amax((0, 2), keepdim=True), [(3, 4, 5)]),
    "min": (lambda a: a.min(), [(3, 4, 5)]),
    "logsumexp": (lambda a: a.logsumexp(2), [(3, 4, 5)]),
    "softmax": (lambda a: a.softmax(1), [(3, 4, 5)]),
    "softmax_last": (lambda a: F.softmax(a, -1), [(3, 4, 65)]),
    "log_softmax": (lambda a: a.log_softmax(0), [(3, 4, 5)]),
    "reshape": (lambda a: a.reshape(4, 15) * 2, [(3, 4, 5)]),
    "permute": (lambda a: a.permute(2, 0, 1) * 2, [(3, 4, 5)]),
    "transpose": (lambda a: a.transpose(0, 2) * 2, [(3, 4, 5)]),
    "squeeze_unsqueeze": (lambda a: a.unsqueeze(1).squeeze(2) * 2, [(3, 1, 5)]),
    "expand": (lambda a: a.expand(3, 4, 5) * 2, [(3, 1, 5)]),
    "flatten": (lambda a: a.flatten(1) * 2, [(3, 4, 5)]),
    "getitem_basic": (lambda a: a[1:, ::2, -1] * 2, [(3, 4, 5)]),
    "getitem_fancy": (lambda a: a[numpy.array([0, 2, 0])] * 2, [(3, 4)]),
    "getitem_mask": (lambda a: a[a.detach() > 0] * 2, [(3, 4)]),
    "cat": (lambda a, b: shape.cat([a, b], 1), [(2, 3), (2, 5)]),
    "stack": (lambda a, b: shape.stack([a, b], 0), [(2, 3), (2, 3)]),
    "pad": (lambda a: F.pad(a, (1, 2, 0, 1), value=0.5), [(2, 3, 4)]),
    "chunk": (lambda a: shape.chunk(a, 2, 1)[1] * 2, [(3, 4)]),
    "split": (lambda a: shape.split(a, 3, 0)[0] * 2, [(7, 2)]),
    "matmul": (minilean.matmul, [(2, 3, 4), (4, 5)]),
    "linear": (F.linear, [(6, 4), (5, 4), (5,)]),
    "linear_batched": (F.linear, [(2, 3, 4), (5, 4), (5,)]),
    "linear_empty_batch": (F.linear, [(0, 4), (5, 4), (5,)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (5,), w, b), [(3, 4, 5), (5,), (5,)]),
    "group_norm": (lambda x, w, b: F.group_norm(x, 2, w, b), [(2, 4, 3, 3), (4,), (4,)]),
    "group_norm_empty_batch": (lambda x, w, b: F.group_norm(x, 2, w, b),
                               [(0, 4, 3, 3), (4,), (4,)]),
    # samples without positions: dw is nan (0/0 statistics), as in PyTorch
    "group_norm_no_positions": (lambda x, w, b: F.group_norm(x, 2, w, b), [(2, 4, 0), (4,), (4,)]),
    "mse_loss": (F.mse_loss, [(3, 4), (3, 4)]),
    "mse_loss_none": (lambda a, b: F.mse_loss(a, b, reduction="none"), [(3, 4), (3, 4)]),
    "mse_loss_of_nothing": (F.mse_loss, [(0, 4), (0, 4)]),  # nan, as in PyTorch
    "mse_loss_none_of_scalars": (lambda a, b: F.mse_loss(a, b, reduction="none"), [(), ()]),
    "cross_entropy": (lambda a: F.cross_entropy(a, minilean.tensor(numpy.array([0, 2, 1]),
                                                                   device=a.device)), [(3, 4)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), [(2, 3, 7, 6), (4, 3, 3, 3), (4,)]),
    "conv2d_strided_groups": (lambda x, w: F.conv2d(x, w, None, stride=2, padding=1, groups=2),
                              [(2, 4, 9, 8), (6, 2, 3, 3)]),
    "conv2d_empty_batch": (lambda x, w, b: F.conv2d(x, w, b, padding=1),
                           [(0, 3, 5, 5), (4, 3, 3, 3), (4,)]),
    "conv_transpose2d": (lambda x, w: F.conv_transpose2d(x, w, None, stride=2, padding=1,
                                                         output_padding=1),
                         [(2, 3, 4, 5), (3, 2, 3, 3)]),
    "conv_transpose2d_groups_bias": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=1, padding=2, groups=2, dilation=2),
        [(2, 4, 5, 6), (4, 3, 3, 2), (6,)]),
    "conv_transpose2d_empty_batch": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, groups=2),
        [(0, 4, 3, 3), (4, 3, 3, 3), (6,)]),
    "conv_transpose2d_output_padding_past_stride": (  # beyond the fast kernels' reach
        lambda x, w: F.conv_transpose2d(x, w, None, output_padding=1, dilation=2),
        [(1, 2, 4, 4), (2, 3, 3, 3)]),
    "avg_pool2d": (lambda a: F.avg_pool2d(a, 2), [(2, 3, 6, 6)]),
    "max_pool2d": (lambda a: F.max_pool2d(a, 2), [(2, 3, 6, 6)]),
    "max_pool2d_empty_batch": (lambda a: F.max_pool2d(a, 2), [(0, 3, 6, 6)]),
    "interpolate": (lambda a: F.interpolate(a, scale_factor=2), [(2, 3, 4, 4)]),
    "attention": (F.scaled_dot_product_attention, [(2, 5, 8), (2, 5, 8), (2, 5, 8)]),
    "attention_without_keys": (F.scaled_dot_product_attention, [(2, 3, 8), (2, 0, 8), (2, 0, 8)]),
}


def _run_op(fn, arrays, device, grad):
    inputs = [minilean.tensor(a, device=device, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(minilean.tensor(grad, device=device))
    return out.numpy(), [t.grad.numpy() for t in inputs]


def check_op_on_cuda_matches_cpu(name, rng, fast=False):
    """Run op ``name`` forward and backward on random float32 inputs on both devices (on "cuda"
    with the fast kernels when ``fast``); assert values and input gradients agree."""
    fn, shapes = OPS[name]
    arrays = [rng.normal(size=s).astype(numpy.float32) for s in shapes]
    grad = rng.normal(size=fn(*[minilean.tensor(a) for a in arrays]).shape).astype(numpy.float32)
    _assert_cuda_matches_cpu(fn, arrays, grad, fast, rtol=1e-4, atol=1e-5)


def _assert_cuda_matches_cpu(fn, arrays, grad, fast, rtol, atol):
    """``fn``'s value and input gradients on "cuda" (with the fast kernels when ``fast``) are
    the CPU's; returns the CPU's value."""
    expected, expected_grads = _run_op(fn, arrays, "cpu", grad)
    use_fast_kernels(fast)
    try:
        got, got_grads = _run_op(fn, arrays, "cuda", grad)
    finally:
        use_fast_kernels(False)
    numpy.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    for got_grad, expected_grad in zip(got_grads, expected_grads):
        numpy.testing.assert_allclose(got_grad, expected_grad, rtol=rtol, atol=atol)
        assert got_grad.dtype == expected_grad.dtype and got_grad.shape == expected_grad.shape
    return expected


# Activations whose sigmoid reaches the left tail, where sigma(x) ~ e^x and the tanh form
# (1 + tanh(x/2)) / 2 rounds to 0 from x = -20 in float32: name: (function, input arrays)
_TAIL = numpy.array([-30.0, -20.0, -17.0, -1.0, 0.5, 2.0, 30.0], numpy.float32)
TAIL_ACTIVATIONS = {
    "sigmoid": (minilean.sigmoid, [_TAIL]),
    "silu": (F.silu, [_TAIL]),
    # the norm's output z = 16 xhat - 8 runs from about -38 to +15
    "group_norm_silu": (lambda x, w, b: F.group_norm(x, 1, w, b, activation="silu"),
                        [_TAIL.reshape(1, 1, 7), numpy.float32([16]), numpy.float32([-8])]),
}


def check_fast_activation_keeps_the_left_tail(name):
    """Activation ``name`` with the fast kernels gives the CPU's values and gradients to float32
    relative precision in the left tail (sigma(-30) ~ 9e-14), not 0."""
    fn, arrays = TAIL_ACTIVATIONS[name]
    grad = numpy.ones(fn(*[minilean.tensor(a) for a in arrays]).shape, numpy.float32)
    expected = _assert_cuda_matches_cpu(fn, arrays, grad, True, rtol=2e-5, atol=0)
    assert numpy.all(expected != 0)


_ALPHA_BAR = D.alpha_bars(D.make_betas("linear", 10))
# ops whose inputs may be of different dtypes: name: (function, input shapes, input dtypes)
MIXED_DTYPE_OPS = {
    "layer_norm": OPS["layer_norm"] + ((numpy.float32, numpy.float64, numpy.float64),),
    "group_norm": OPS["group_norm"] + ((numpy.float32, numpy.float64, numpy.float64),),
    "q_sample": (lambda x0, eps: D.q_sample(_ALPHA_BAR, x0, numpy.array([0, 9, 3, 3]), eps),
                 [(4, 3), (4, 3)], (numpy.float32, numpy.float64)),
    "mse_loss": OPS["mse_loss"] + ((numpy.float32, numpy.float64),),
    # a float32 result scaled by a float64 tensor: a float64 gradient comes back to the kernel
    "softmax_scaled_in_float64": (lambda a, b: a.softmax(-1) * b, [(3, 4), (3, 4)],
                                  (numpy.float32, numpy.float64)),
    "log_softmax_scaled_in_float64": (lambda a, b: a.log_softmax(0) * b, [(3, 4), (3, 4)],
                                      (numpy.float32, numpy.float64)),
    "mse_loss_scaled_in_float64": (lambda a, b, c: F.mse_loss(a, b) * c, [(3, 4), (3, 4), ()],
                                   (numpy.float32, numpy.float32, numpy.float64)),
    "mse_loss_none_scaled_in_float64": (lambda a, b, c: F.mse_loss(a, b, reduction="none") * c,
                                        [(3, 4), (3, 4), (3, 4)],
                                        (numpy.float32, numpy.float32, numpy.float64)),
}


def check_fast_op_takes_inputs_of_mixed_dtypes(name, rng):
    """Op ``name`` with inputs of mixed dtypes gives, with the fast kernels, the plain op's
    values, gradients and dtypes: float32 x with float64 weight and bias make float32 norms,
    whose kernels get the parameters in x's dtype (a float64 array read as float is garbage on
    a GPU, a refused launch on the stand-in); float32 x0 with float64 noise make a float64
    q_sample and float32 input with float64 target a float64 loss, which run the plain op; a
    float32 softmax or loss scaled by a float64 tensor gets a float64 gradient, which its
    backward kernel reads in its own dtype."""
    fn, shapes, dtypes = MIXED_DTYPE_OPS[name]
    arrays = [rng.normal(size=shape).astype(dtype) for shape, dtype in zip(shapes, dtypes)]
    expected = fn(*[minilean.tensor(a) for a in arrays])
    grad = rng.normal(size=expected.shape).astype(expected.dtype)
    _assert_cuda_matches_cpu(fn, arrays, grad, True, rtol=1e-4, atol=1e-5)


def check_fast_q_sample_takes_the_timesteps_the_plain_one_takes(rng):
    """The fast q_sample reads only timesteps it was given, and only inside the schedule. A
    count of them that is neither one nor the batch's runs the plain op, which refuses it as
    broadcasting does; timesteps on the host outside 0..T-1 are refused by q_sample before
    either op runs; timesteps on the device, which cannot be checked without waiting for a
    copy back, wrap around as CuPy's indexing of the plain op's device table does (both are
    checked); QSample.apply called directly refuses host timesteps past either end as the
    plain op does. Noise shared by the samples is broadcast, as by the plain op."""
    alpha_bar = D.alpha_bars(D.make_betas("linear", 10))
    x0, eps, grad = (rng.normal(size=(4, 3)).astype(numpy.float32) for _ in range(3))

    def noised_with(timesteps):  # {device: the timesteps q_sample gets there}
        return lambda a, b: D.q_sample(alpha_bar, a, timesteps[a.device], b)

    for device in ("cpu", "cuda"):
        use_fast_kernels(device == "cuda")
        try:
            with pytest.raises(ValueError, match="broadcast"):
                _run_op(noised_with({device: [1, 2]}), (x0, eps), device, grad)
            for t, value in ((numpy.array([0, 10, 1, 1]), 10),
                             (numpy.array([-11, 0, 1, 1]), -11), (-1, -1), (10, 10)):
                with pytest.raises(ValueError, match=f"^timestep {value} is outside the "
                                                     f"schedule's timesteps 0..9$"):
                    _run_op(noised_with({device: t}), (x0, eps), device, grad)
        finally:
            use_fast_kernels(False)
    on_device = backend.xp_for("cuda").asarray(numpy.array([12, -1, 3, 25]))
    for timesteps in ({"cpu": numpy.array([2, 9, 3, 5]), "cuda": on_device},
                      *({"cpu": t, "cuda": t} for t in (numpy.array([9, 0, 9, 3]), 2, [5],
                                                        numpy.int64(7)))):
        for fast in (False, True):
            _assert_cuda_matches_cpu(noised_with(timesteps), (x0, eps), grad, fast, rtol=1e-5,
                                     atol=1e-6)
    # QSample.apply called directly skips q_sample's check: host timesteps past either end are
    # NumPy's IndexError there, as for the plain op, not wrapped around into the schedule
    for fast in (False, True):
        use_fast_kernels(fast)
        try:
            for value in (10, -11):
                with pytest.raises(IndexError, match=f"^index {value} is out of bounds"):
                    D.QSample.apply(*(minilean.tensor(a, device="cuda") for a in (x0, eps)),
                                    alpha_bar=alpha_bar, t=numpy.array([0, value, 1, 1]))
        finally:
            use_fast_kernels(False)
    # noise shared by the samples: the kernels read one noise element per element of x0, so
    # it goes to the plain op, which broadcasts it (and sums its gradient over the samples)
    for shared in (eps[:1], eps[0]):
        for fast in (False, True):
            _assert_cuda_matches_cpu(noised_with(dict.fromkeys(("cpu", "cuda"), [9, 0, 9, 3])),
                                     (x0, shared), grad, fast, rtol=1e-5, atol=1e-6)


def check_fast_q_sample_of_one_host_timestep_can_be_captured():
    """One timestep on the host is two numbers to the plain op, which a CUDA graph bakes in as
    it bakes in any host number; the fast op copied it to the device at every call, which a
    capture refuses (GraphCaptureError)."""
    from minilean.cuda.graph import CapturedCall
    alpha_bar = D.alpha_bars(D.make_betas("linear", 10))
    x0, eps = (numpy.random.default_rng(seed).normal(size=(4, 3)).astype(numpy.float32)
               for seed in (0, 1))
    use_fast_kernels(True)
    try:
        captured = CapturedCall(
            lambda x, e: D.q_sample(alpha_bar, minilean.Tensor(x), 3, minilean.Tensor(e)).data,
            (x0, eps))
        noised = captured(2 * x0, eps).get()
    finally:
        use_fast_kernels(False)
    numpy.testing.assert_allclose(noised, D.q_sample(alpha_bar, 2 * x0, 3, eps), rtol=1e-6)


def check_fused_updates_take_parameters_on_both_devices_and_infinite_ones():
    """Adam and the EMA with fast kernels on give what their plain updates give, to the bit,
    for a model partly moved to the GPU (the fused update stopped on CuPy's TypeError of the
    host array) and for an infinite weight (Adam's kernel added weight_decay 0 times inf, NaN,
    to its gradient, where the plain update adds no decay at 0)."""
    from minilean.nn.module import Module, Parameter
    from minilean.optim import EMA, Adam
    for devices, first in ((("cuda", "cpu"), [0.5, 1.0, -2.0]),
                           (("cuda", "cuda"), [numpy.inf, 1.0, -2.0])):
        results = []
        for fast in (False, True):
            use_fast_kernels(fast)
            try:
                model = Module()
                for k, (device, values) in enumerate(zip(devices, (first, [0.25, -1.0]))):
                    setattr(model, f"p{k}", Parameter(minilean.tensor(
                        numpy.array(values, numpy.float32), device=device)))
                average, optimizer = EMA(model, 0.9), Adam(model.parameters(), lr=0.1)
                for _ in range(2):
                    for param in model.parameters():
                        param.grad = minilean.tensor(numpy.ones(param.shape, numpy.float32),
                                                     device=param.device)
                    optimizer.step()
                    with numpy.errstate(invalid="ignore"):  # the EMA of inf: inf - inf
                        average.update(model)
                adam = [param.numpy() for param in model.parameters()] + [
                    backend.to_device(array, "cpu") for arrays in optimizer.state.values()
                    for array in arrays]
                assert not numpy.isnan(numpy.concatenate(adam)).any()
                results.append(adam + [backend.to_device(array, "cpu")  # inf: the EMA's NaN
                                       for array in average.shadow.values()])
            finally:
                use_fast_kernels(False)
        plain, fast = results
        for got, expected in zip(fast, plain):
            numpy.testing.assert_array_equal(got, expected)


def check_fused_adam_divides_before_it_scales():
    """Fused Adam and AdamW give the plain update's parameters where the moment
    times the step size passes float32's largest number: the plain update (as PyTorch's
    ``addcdiv``) takes m / (sqrt(v) / c + eps) first and then scales it, while the kernel took
    step_size * m first, inf there, and wrote inf / inf = NaN (the infinite v of a gradient near
    3e38) or inf into the weight. A diverging GAN at lr 1e3 stopped at NaN with
    --fast-kernels only."""
    from minilean.optim import Adam, AdamW
    for make in (lambda params: Adam(params, lr=100.0), lambda params: AdamW(params, lr=10.0)):
        results = []
        for fast in (False, True):
            use_fast_kernels(fast)
            try:
                param = minilean.tensor(numpy.float32([1.0, 2.0, 3.0]), device="cuda",
                                        requires_grad=True)
                optimizer = make([param])
                # m = 1e37 and 3e36 at step 1: step_size * m overflows (3e38 is near float32's
                # largest: v = (1 - beta2) g^2 overflows for the first)
                param.grad = minilean.tensor(numpy.float32([1e38, 3e37, 1.0]), device="cuda")
                with numpy.errstate(over="ignore"):
                    optimizer.step()
                results.append(param.numpy())
            finally:
                use_fast_kernels(False)
        plain, fused = results
        assert not numpy.isnan(plain).any()
        numpy.testing.assert_allclose(fused, plain, rtol=1e-6)


def check_fast_mean_of_many_equal_values_keeps_its_digits():
    """A whole-tensor sum is one row of ``sum_rows``: 256 threads each adding 4,000 values in
    turn, which in float32 left the mean of 10^6 values of 0.1 3.7e-5 off (NumPy: 1e-7)."""
    values = numpy.full(10 ** 6, 0.1, numpy.float32)
    use_fast_kernels(True)
    try:
        mean = minilean.tensor(values, device="cuda").mean().item()
    finally:
        use_fast_kernels(False)
    assert mean == pytest.approx(0.1, rel=1e-6)


def check_fused_updates_take_what_the_plain_ones_take():
    """With fast kernels on, gradient clipping, Adam and the EMA on "cuda" take what their plain
    updates take, by those updates where no kernel applies: float16 parameters (the kernels are
    float32 or float64), float32 ones beside float64 ones (a kernel runs over one dtype), and a
    parameter made as a transposed view beside a strided gradient (the kernels write flat
    memory): the results are those of fast kernels off, to the bit, and the CPU's. The EMA,
    which only reads the parameters, reads a strided one from a contiguous copy and runs its
    kernel there: within two ulps of the plain update. A step where no parameter has a
    gradient does nothing."""
    from minilean.nn.module import Module, Parameter
    from minilean.optim import EMA, Adam, clip_grad_norm_
    host = numpy.random.default_rng(0)
    values = [host.normal(size=shape) for shape in ((3, 4), (5,))]
    for dtypes, transposed in (((numpy.float16, numpy.float16), False),
                               ((numpy.float32, numpy.float64), False),
                               ((numpy.float32, numpy.float32), True)):
        results = []
        for device, fast in (("cpu", False), ("cuda", False), ("cuda", True)):
            use_fast_kernels(fast)
            try:
                model = Module()
                for k, (value, dtype) in enumerate(zip(values, dtypes)):
                    data = minilean.tensor(value.astype(dtype), device=device).data
                    # (3, 4) -> (4, 3), a view of the same memory: not C-contiguous
                    setattr(model, f"p{k}", Parameter(data.T if transposed else data))
                params = list(model.parameters())
                assert transposed != params[0].data.flags.c_contiguous
                average, optimizer = EMA(model, 0.9), Adam(params, lr=0.1)
                optimizer.step()  # no gradients yet: nothing to update
                for param in params:
                    param.grad = minilean.tensor(param.numpy() * 3, device=device)
                if transposed:  # and a gradient set by hand as a strided view
                    spread = minilean.tensor(numpy.repeat(params[1].numpy() * 3, 2), device=device)
                    params[1].grad = minilean.Tensor(spread.data[::2])
                norm = clip_grad_norm_(params, 1.0)
                optimizer.step()
                average.update(model)
                results.append([numpy.asarray(norm.item())] + [p.numpy() for p in params] + [
                    backend.to_device(a, "cpu") for a in average.shadow.values()])
            finally:
                use_fast_kernels(False)
        on_cpu, plain, fast = results
        averages = len(results[0]) - len(values)  # the EMA's, last: its kernel may run
        for index, (got, expected) in enumerate(zip(fast, plain)):
            assert got.dtype == expected.dtype
            if transposed and index >= averages:
                # the EMA kernel reads a strided parameter from a copy and runs: on a GPU its
                # s - c (s - p) may be one fused multiply-add where CuPy rounds twice
                numpy.testing.assert_allclose(got, expected, rtol=2 * numpy.finfo(got.dtype).eps)
            else:
                numpy.testing.assert_array_equal(got, expected)
        # CuPy's float16 arithmetic may round differently from NumPy's (float16 carries about
        # 3 significant digits); in float32 the two differ by a few ulps at most
        tolerance = (dict(rtol=1e-2, atol=1e-3) if dtypes[0] == numpy.float16
                     else dict(rtol=1e-5, atol=1e-6))
        for got, expected in zip(plain, on_cpu):
            assert got.dtype == expected.dtype
            numpy.testing.assert_allclose(got, expected, **tolerance)


# name: (function of tensors whose last op declares Function.fresh_grads, input shapes)
FRESH_GRAD_CASES = {
    "matmul": (minilean.matmul, [(3, 4), (4, 5)]),
    "matmul_batched_by_unbatched_weight": (minilean.matmul, [(2, 3, 4), (4, 5)]),
    "matmul_batched": (minilean.matmul, [(2, 3, 4), (2, 4, 5)]),
    "matmul_vector_matrix": (minilean.matmul, [(4,), (4, 5)]),
    "matmul_matrix_vector": (minilean.matmul, [(3, 4), (4,)]),
    "linear": (F.linear, [(2, 3, 4), (5, 4), (5,)]),
    "linear_without_bias": (F.linear, [(3, 4), (5, 4)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), [(2, 4, 5, 5), (6, 4, 3, 3), (6,)]),
    "conv2d_unpadded": (F.conv2d, [(2, 4, 5, 5), (6, 4, 3, 3), (6,)]),
    "conv2d_strided": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
                       [(2, 4, 5, 5), (6, 4, 3, 3), (6,)]),
    "conv2d_grouped": (lambda x, w: F.conv2d(x, w, padding=1, groups=2),
                       [(2, 4, 5, 5), (6, 2, 3, 3)]),
    "conv2d_narrowing": (lambda x, w: F.conv2d(x, w, padding=1),  # the shifted products
                         [(2, 8, 4, 4), (2, 8, 3, 3)]),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                            output_padding=1),
                         [(2, 4, 3, 3), (4, 3, 3, 3), (3,)]),
    "group_norm": (lambda x, w, b: F.group_norm(x, 2, w, b), [(2, 4, 3, 3), (4,), (4,)]),
    "group_norm_channels_last": (  # a convolution's output is channels-last memory
        lambda x, k, w, b: F.group_norm(F.conv2d(x, k, padding=1), 2, w, b),
        [(2, 3, 4, 4), (4, 3, 3, 3), (4,), (4,)]),
}


def run_fresh_grad_case(name, rng, device):
    """The output of case ``name`` on float64 inputs on ``device``."""
    function, shapes = FRESH_GRAD_CASES[name]
    return function(*[minilean.tensor(rng.standard_normal(shape), device=device,
                                      requires_grad=True) for shape in shapes])


def _arrays_in(value, array_type):
    if isinstance(value, array_type):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays_in(item, array_type)


def assert_fresh_grads(out, rng):
    """Call the backward of ``out``'s op once and assert what ``fresh_grads`` promises: each
    gradient it returns shares no memory with the incoming gradient, the op's inputs, what its
    ctx saved, or another returned gradient."""
    node, xp = out.grad_fn, out.xp
    assert node.function.fresh_grads, f"{node.function.__name__} does not declare fresh_grads"
    incoming = xp.asarray(rng.standard_normal(out.shape).astype(out.dtype))
    grads = node.function.backward(node.ctx, incoming)
    grads = grads if isinstance(grads, tuple) else (grads,)
    others = {"the incoming gradient": [incoming],
              "an input": [tensor.data for tensor in node.inputs],
              "the saved ctx": list(_arrays_in(list(vars(node.ctx).values()), xp.ndarray))}
    for index, grad in enumerate(grads):
        if grad is None:
            continue
        earlier = [other for other in grads[:index] if other is not None]
        for what, arrays in dict(others, **{"another returned gradient": earlier}).items():
            assert not any(xp.may_share_memory(grad, array) for array in arrays), \
                f"{node.function.__name__}: gradient {index} shares memory with {what}"


def diffusion_step_parts(batch_size=8, hidden_c=8, size=16, device="cuda", lr=1e-3,
                         graph=False):
    """A U-Net, Adam and EMA on ``device``, and ``step(k, clip)`` running one training step.

    With ``graph`` the loss and gradients (always clipped) are replayed as a CUDA graph,
    captured at the first step, as ``diffusion --cuda-graph`` does; Adam and EMA run after.
    """
    from minilean.cuda.graph import CapturedCall
    from minilean.models.unet import UNet
    from minilean.optim import EMA, Adam, clip_grad_norm_

    backend.manual_seed(0)
    model = UNet(3, hidden_c).to(device)
    optimizer = Adam(model.parameters(), lr=lr)
    average = EMA(model, 0.99)
    alpha_bar = D.alpha_bars(D.make_betas("cosine", 50))
    host = numpy.random.default_rng(0)
    x0 = minilean.tensor(host.uniform(-1, 1, (batch_size, 3, size, size)).astype(numpy.float32),
                         device=device).data

    def loss_and_grads(x0, t, eps, clip=True):
        loss = D.eps_prediction_loss(model, alpha_bar, minilean.Tensor(x0), t,
                                     minilean.Tensor(eps))
        optimizer.zero_grad()
        loss.backward()
        if clip:
            clip_grad_norm_(model.parameters(), 1.0)
        return loss.data

    replay = []

    def step(k, clip=False):
        generator = numpy.random.default_rng(k)
        t = D.sample_timesteps(batch_size, 50, generator)
        eps = generator.standard_normal(x0.shape).astype(numpy.float32)
        if graph and not replay:
            replay.append(CapturedCall(loss_and_grads, (x0, t, eps)))
        if replay:
            loss = minilean.tensor(replay[0](x0, t, eps))
        else:
            loss = minilean.Tensor(loss_and_grads(x0, t, backend.to_device(eps, device), clip))
        optimizer.step()
        average.update(model)
        return loss

    return model, step


def check_fast_conv_transpose_makes_columns_once(monkeypatch, rng):
    """A fast conv_transpose2d's backward makes the columns of dL/dy once for both of its
    gradients (and its forward none), with the CPU's results."""
    from minilean.cuda import im2col
    made = []
    make_columns = im2col.im2col
    monkeypatch.setattr(im2col, "im2col", lambda *args: made.append(args) or make_columns(*args))
    check_op_on_cuda_matches_cpu("conv_transpose2d_groups_bias", rng, fast=True)
    assert len(made) == 1


# OPS case: sum_rows launches for its broadcast input's gradient with fast kernels (only where
# the summed axes are adjacent: "mul" sums b's gradient over axes 0 and 2, by CuPy)
BROADCAST_GRADIENT_SUMS = {"add": 1, "sub": 1, "add_over_positions": 1,
                           "mul_over_leading_axes": 1, "linear_batched": 1, "mul": 0}


def check_broadcast_gradients_are_summed_by_kernel(monkeypatch, rng):
    """With fast kernels on, the graph walk sums a broadcast input's gradient over adjacent
    axes with reduce.cu's sum_rows (leading axes, as a bias's; trailing ones, as a
    per-channel value's), giving the CPU's results; other axes by CuPy's sum."""
    from minilean.cuda import reduce
    launched = []
    sum_rows = reduce.sum_rows
    monkeypatch.setattr(reduce, "sum_rows",
                        lambda *args: launched.append(args[1:]) or sum_rows(*args))
    for name, sums in BROADCAST_GRADIENT_SUMS.items():
        launched.clear()
        check_op_on_cuda_matches_cpu(name, rng, fast=True)
        assert len(launched) == sums, (name, launched)


def check_zero_grad_zeroes_device_gradients_in_place():
    """``zero_grad(set_to_none=False)`` writes zeros into each gradient's own device array, as
    PyTorch does (a reference held to it sees them); returns the model for further checks."""
    model = minilean.nn.Linear(3, 2).to("cuda")
    model(minilean.ones(4, 3, device="cuda")).sum().backward()
    arrays = [param.grad.data for param in model.parameters()]
    model.zero_grad(set_to_none=False)
    for param, array in zip(model.parameters(), arrays):
        assert param.grad.data is array and param.grad.device == "cuda"
        numpy.testing.assert_array_equal(array.get(), numpy.zeros(array.shape))


def check_fast_kernels_are_used():
    """With the fast kernels on, "cuda" ops record the fast Functions, and their kernels run
    (``ctx.by_kernel``), not the replaced op they fall back to where a kernel does not cover
    a call."""
    from minilean.cuda import activations, im2col, noising, norm, reduce, softmax

    def check(result, fast_function):
        assert result.grad_fn.function is fast_function, result.grad_fn
        assert result.grad_fn.ctx.by_kernel, f"{fast_function.__name__} fell back"

    use_fast_kernels(True)
    try:
        x = minilean.randn(4, 6, device="cuda", requires_grad=True)
        check(F.silu(x), activations.FastSilu)
        check(F.softmax(x, 1), softmax.FastSoftmax)
        check(x.sum(1), reduce.FastSum)
        check(x.mean(0), reduce.FastMean)
        check(F.layer_norm(x, (6,)), norm.FastLayerNorm)
        images = minilean.randn(2, 4, 5, 5, device="cuda")
        weight = minilean.randn(4, 3, 3, 3, device="cuda", requires_grad=True)
        check(F.conv_transpose2d(images, weight, stride=2), im2col.FastConvTranspose2d)
        check(F.conv2d(images, weight.transpose(0, 1), padding=1), im2col.FastConv2d)
        check(F.group_norm(images.requires_grad_(), 2), norm.FastGroupNorm)
        alpha_bar = D.alpha_bars(D.make_betas("linear", 10))
        check(D.q_sample(alpha_bar, weight, numpy.array([0, 9, 3, 3]), weight.detach()),
              noising.FastQSample)
    finally:
        use_fast_kernels(False)


def check_fast_kernels_train_like_plain(steps=3, lr=1e-3):
    """Training steps with and without the fast kernels: the same losses, the same gradients
    in the first step, and parameters that moved alike.

    Gradients are compared on the scale of the largest one: a bias followed by a normalisation
    has a true gradient of 0, and what is computed is rounding noise. Adam turns such noise into
    steps of about ``lr`` in either direction, so parameters can differ by ``steps * lr``.
    """
    results = []
    for fast in (False, True):
        use_fast_kernels(fast)
        try:
            model, step = diffusion_step_parts(lr=lr)
            losses = [float(step(0).item())]
            grads = [p.grad.numpy() for p in model.parameters()]
            losses += [float(step(k).item()) for k in range(1, steps)]
            results.append((losses, grads, [p.numpy() for p in model.parameters()]))
        finally:
            use_fast_kernels(False)
    (plain_losses, plain_grads, plain_params), (fast_losses, fast_grads, fast_params) = results
    numpy.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-4)
    scale = max(numpy.abs(grad).max() for grad in plain_grads)
    for fast_grad, plain_grad in zip(fast_grads, plain_grads):
        numpy.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-3, atol=1e-5 * scale)
    for fast_param, plain_param in zip(fast_params, plain_params):
        numpy.testing.assert_allclose(fast_param, plain_param, rtol=0, atol=steps * lr)


def copies_in_each_cli_step(monkeypatch, argv, copies_so_far):
    """Run ``python -m minilean <argv>`` in this process; return how many device-to-host
    copies each of its training steps made (``copies_so_far()`` counts them)."""
    from minilean.cli import main
    from minilean.train import diffusion, zoo_run

    per_step = []
    real_train = zoo_run.train

    def counting_train(state, step_fn, *args, **kwargs):
        def counted_step(batch, step):
            before = copies_so_far()
            metrics = step_fn(batch, step)
            per_step.append(copies_so_far() - before)
            return metrics
        return real_train(state, counted_step, *args, **kwargs)

    monkeypatch.setattr(zoo_run, "train", counting_train)
    monkeypatch.setattr(diffusion, "train", counting_train)
    main(argv)
    return per_step


# every model command end to end on "cuda", each at a size that takes seconds
MODEL_COMMAND_RUNS = {
    "diffusion": ["--steps=3", "--batch-size=4", "--hidden-c=8", "--T=10",
                  "--n-samples=4", "--evaluate=false"],
    # 64 rows, not the 10,000 built-in images; the held-out scores on 6 of them, not 500
    **{command: ["--steps=3", "--batch-size=4", "--n-total=64", "--n-eval=8"]
       for command in ("vae", "vqvae", "autoencoder", "mae")},
    "gan": ["--steps=3", "--batch-size=4", "--n-total=64"],
}


def _small_fd_classifier(monkeypatch, tmp_path):
    """gan scores its samples (FD-classifier, on "cuda" too): with a 2-step classifier cached
    under tmp_path and 16 images a set, not the default 800 steps and 500 images, cached in
    ./runs/classifiers of the checkout."""
    from minilean.models import classifier
    fd_classifier = classifier.fd_classifier
    monkeypatch.setattr(classifier, "fd_classifier", lambda *args, **kwargs: fd_classifier(
        *args, **{**kwargs, "steps": 2, "n_eval": 16, "cache": str(tmp_path / "classifiers")}))


def check_model_command_runs_on_cuda(monkeypatch, tmp_path, command, fast,
                                     copies_so_far):
    """``python -m minilean <command> --device=cuda`` (with ``--fast-kernels`` if ``fast``)
    trains, copies nothing to the host inside a step (``copies_so_far()`` counts the copies),
    reaches the fast kernels exactly when asked, writes finite summaries and images, and (gan)
    scores its samples on the device."""
    from minilean.cuda import registry
    _small_fd_classifier(monkeypatch, tmp_path)
    try:
        copies = copies_in_each_cli_step(
            monkeypatch, [command, "--device=cuda", "--progress=false", f"--out={tmp_path}",
                          *MODEL_COMMAND_RUNS[command], *["--fast-kernels"] * fast],
            copies_so_far)
        assert bool(registry.installed()) == fast  # --fast-kernels reaches every command
    finally:
        use_fast_kernels(False)
    assert copies == [0, 0, 0], f"training steps copied data to the host: {copies} times"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 3
    assert all(math.isfinite(value) for value in summary.values() if isinstance(value, float))
    assert ("fd_classifier" in summary) == (command == "gan")
    if command == "gan":
        report = summary["fd_classifier"]
        assert report["n_images"] == 16 and report["classifier"].startswith(str(tmp_path))
        assert all(math.isfinite(report[key]) and report[key] >= 0
                   for key in ("fd_classifier", "floor_real_train", "ceiling_noise"))
    assert list(tmp_path.rglob("*.ppm")), "no images written"


def check_model_command_repeats_bit_for_bit(monkeypatch, tmp_path, command, fast):
    """Two runs of ``python -m minilean <command> --device=cuda`` with one seed end with the
    same weights, bit for bit: nothing in them sums in an order that varies from run to run
    (atomic additions into one place do; the stand-in counts those instead, since NumPy
    repeats every sum)."""
    from minilean.cli import main
    _small_fd_classifier(monkeypatch, tmp_path)
    weights = []
    for run in ("first", "second"):
        out = tmp_path / run
        try:
            main([command, "--device=cuda", "--progress=false", f"--out={out}",
                  *MODEL_COMMAND_RUNS[command], *["--fast-kernels"] * fast])
        finally:
            use_fast_kernels(False)
        with numpy.load(out / "checkpoints" / "last.npz") as checkpoint:
            weights.append({name: checkpoint[name] for name in checkpoint.files})
    first, second = weights
    assert first.keys() == second.keys()
    differing = [name for name in first if not numpy.array_equal(first[name], second[name])]
    assert not differing, f"{command}: a second run ended with other values of {differing}"


def check_cuda_graph_trains_like_eager(tmp_path, fast=False, rtol=0.0, sample_atol=0):
    """``diffusion --cuda-graph`` logs the losses and writes the samples of the same run
    without it: the replayed graph computes what the Python step computes. (Each logged value
    is the mean of two steps' losses, read back together: a step that handed the loop the
    graph's own loss array, which the next replay overwrites, would log a wrong mean.)"""
    from minilean.cli import main
    from minilean.data.runlog import read_metrics

    runs = []
    for graph in (False, True):
        out = tmp_path / ("graph" if graph else "eager")
        try:
            main(["diffusion", "--device=cuda", "--steps=4", "--log-every=2",
                  "--checkpoint-every=4", "--batch-size=4", "--hidden-c=8", "--T=10",
                  "--sampler=ddim", "--sample-steps=2", "--n-samples=2", "--evaluate=false",
                  "--progress=false", f"--out={out}"]
                 + ["--fast-kernels"] * fast + ["--cuda-graph"] * graph)
        finally:
            use_fast_kernels(False)
        losses = [record["loss"] for record in read_metrics(out / "metrics.jsonl")]
        runs.append((losses, numpy.load(out / "samples.npy")))
    (eager_losses, eager_samples), (graph_losses, graph_samples) = runs
    assert len(set(graph_losses)) == len(graph_losses) == 2
    numpy.testing.assert_allclose(graph_losses, eager_losses, rtol=rtol)
    numpy.testing.assert_allclose(graph_samples, eager_samples, rtol=0, atol=sample_atol)


# --- CUDA graphs ---------------------------------------------------------------------------------

def check_captured_call_replays_on_new_inputs(cupy, rng):
    from minilean.cuda.graph import CapturedCall
    table = cupy.asarray(numpy.array([0.5, 1.5, 2.5]))

    def function(x, t):
        return (x * 2.0 + table[t][:, None]).sum(axis=1), x.max()

    captured = CapturedCall(function, (numpy.ones((2, 3)), numpy.array([0, 1])))
    for x, t in [(rng.normal(size=(2, 3)), numpy.array([2, 0])),
                 (rng.normal(size=(2, 3)), numpy.array([1, 1]))]:
        total, peak = captured(x, t)
        numpy.testing.assert_allclose(total.get(),
                                      (x * 2.0 + table.get()[t][:, None]).sum(axis=1))
        assert float(peak) == x.max()
    assert captured(x, t)[0] is total, "the outputs are the arrays of the capture"
    with pytest.raises(ValueError, match="^captured call takes 2 inputs, got 1$"):
        captured(x)


def check_captured_call_bakes_in_host_numbers():
    """Why a captured function must read nothing from the host that changes between calls:
    the replay uses the value it had at capture."""
    from minilean.cuda.graph import CapturedCall
    scale = [2.0]
    captured = CapturedCall(lambda x: x * scale[0], (numpy.ones(3),))
    scale[0] = 5.0
    numpy.testing.assert_array_equal(captured(numpy.arange(3.0)).get(), [0.0, 2.0, 4.0])



def check_captured_call_keeps_the_plain_schedule_tables():
    """The plain (not ``--fast-kernels``) noising and v target look the schedule up in device
    tables from ``backend.constant``'s cache, which a graph reads at every replay. Made here
    before the capture (outside its private pool), then dropped by the cache as other tables
    come in: the graph keeps them (``graph.held``), so their memory cannot go to the arrays
    made next, and the replay still computes the noising of the capture's schedule."""
    from minilean.cuda.graph import CapturedCall
    cupy = backend.xp_for("cuda")
    alpha_bar = D.alpha_bars(D.make_betas("linear", 37))  # a size no other test's tables have
    timesteps = cupy.asarray(numpy.array([3, 30]))

    def noised_and_target(x, eps):
        x, eps = minilean.Tensor(x), minilean.Tensor(eps)
        return (D.q_sample(alpha_bar, x, timesteps, eps).data,
                D.v_target(alpha_bar, x, timesteps, eps).data)

    draws = numpy.random.default_rng(5)
    x, eps = (draws.normal(size=(2, 3, 4, 4)).astype(numpy.float32) for _ in range(2))
    expected = [array.get() for array in noised_and_target(cupy.asarray(x), cupy.asarray(eps))]
    tables = list(backend._constants.values())[-2:]  # sqrt(alpha_bar), sqrt(1 - alpha_bar)
    captured = CapturedCall(noised_and_target, (x, eps))
    assert all(any(table is kept for kept in captured._kept.held) for table in tables)
    del tables
    for shift in range(1, 40):  # tables of other schedules: the cache drops the graph's
        backend.constant(numpy.arange(37.0) + shift, "cuda")
    junk = [cupy.full(37, -7.0) for _ in range(8)]  # on a card: in memory a dropped table left
    for replayed, wanted in zip(captured(x, eps), expected):
        numpy.testing.assert_allclose(replayed.get(), wanted, rtol=1e-6, atol=1e-7)
    del junk

EAGER_PRODUCTS = [  # (a shape, b shape, a transposed, out given, goes through cupy.matmul)
    ((5, 4), (4, 6), False, False, False), ((4, 5), (4, 6), True, True, False),
    ((1, 5, 4), (1, 4, 6), False, True, False), ((1, 4, 5), (4, 6), True, False, False),
    ((5, 4), (1, 1, 4, 6), False, False, False), ((4,), (4, 6), False, True, False),
    ((5, 4), (4,), False, False, False), ((3, 5, 4), (3, 4, 6), False, True, True),
    ((5, 4), (3, 4, 6), False, False, True), ((4,), (2, 4, 6), False, False, True),
    ((3, 5, 4), (4, 6), False, False, True), ((2, 5, 4), (1, 4, 6), False, False, True),
    # a vector against a batch of one, into ``out``: ``dot`` would give no batch axis
    ((4,), (1, 4, 6), False, True, True), ((1, 5, 4), (4,), False, True, True)]


def check_eager_products_match_numpy(cupy, rng, monkeypatch):
    """``backend.matmul`` outside a graph: a product with no batch (or a batch of 1) is one
    ``ndarray.dot`` (cupy.matmul only for a real batch), with NumPy's result and shape, into
    ``out`` when given; an ``out`` that is not C-contiguous goes through cupy.matmul."""
    from minilean import backend
    batched = []
    matmul = cupy.matmul
    monkeypatch.setattr(cupy, "matmul", lambda *args, **kwargs: batched.append(1) or matmul(
        *args, **kwargs))
    for a_shape, b_shape, transposed, with_out, expect_batched in EAGER_PRODUCTS:
        a = rng.normal(size=a_shape).astype(numpy.float32)
        b = rng.normal(size=b_shape).astype(numpy.float32)
        device_a = cupy.asarray(a)
        if transposed:  # a transposed view (F-contiguous as a matrix), as the gradients pass
            a = numpy.swapaxes(a, -1, -2)
            device_a = cupy.swapaxes(device_a, -1, -2)
        expected = a @ b
        out = cupy.empty(expected.shape, dtype=numpy.float32) if with_out else None
        calls = len(batched)
        got = backend.matmul(device_a, cupy.asarray(b), out=out)
        assert len(batched) - calls == expect_batched, (a_shape, b_shape)
        assert got.shape == expected.shape and (out is None or got is out)
        numpy.testing.assert_allclose(got.get(), expected, rtol=1e-5, atol=1e-5)
    out = cupy.zeros((6, 5), dtype=numpy.float32).T  # not C-contiguous
    a, b = rng.normal(size=(5, 4)).astype(numpy.float32), rng.normal(size=(4, 6)).astype(
        numpy.float32)
    got = backend.matmul(cupy.asarray(a), cupy.asarray(b), out=out)
    assert batched[-1:] == [1] and got is out
    numpy.testing.assert_allclose(out.get(), a @ b, rtol=1e-5, atol=1e-5)
    for operands in ((a, numpy.float32(2.0)), (numpy.float32(2.0), b)):
        with pytest.raises(ValueError):  # NumPy's rule: no scalar operands (dot would multiply)
            backend.matmul(*map(cupy.asarray, operands))


def check_captured_products_use_minilean_kernel(cupy, rng):
    """CuPy refuses cuBLAS while capturing, so ``backend.matmul`` switches to matmul.cu there
    (a direct ``cupy.matmul`` is refused); the replayed products are NumPy's."""
    from minilean import backend
    from minilean.cuda.graph import CapturedCall, GraphCaptureError

    def products(a, b, v):
        return backend.matmul(a, b), backend.matmul(a[0], b[0]), backend.matmul(v, b), \
            backend.matmul(a, v)

    shapes = ((3, 5, 4), (3, 4, 6), (4,))
    captured = CapturedCall(products, tuple(numpy.ones(shape) for shape in shapes))
    for _ in range(2):
        a, b, v = (rng.normal(size=shape) for shape in shapes)
        for result, expected in zip(captured(a, b, v), (a @ b, a[0] @ b[0], v @ b, a @ v)):
            numpy.testing.assert_allclose(result.get(), expected, rtol=1e-12)
    with pytest.raises(GraphCaptureError, match="cannot capture .*cuBLAS"):
        CapturedCall(lambda a: cupy.matmul(a, a), (numpy.ones((2, 2)),))


def check_a_host_copy_while_capturing_is_a_clear_error():
    from minilean.cuda.graph import CapturedCall, GraphCaptureError

    def reads_its_sum(x):
        return x * float(x.sum())

    with pytest.raises(GraphCaptureError, match="cannot capture .*reads_its_sum as a CUDA "
                                                "graph: "):
        CapturedCall(reads_its_sum, (numpy.ones(3),))
    captured = CapturedCall(lambda x: x + 1.0, (numpy.ones(3),))  # the failure left no capture
    numpy.testing.assert_array_equal(captured(numpy.zeros(3)).get(), [1.0, 1.0, 1.0])


def check_a_random_draw_on_the_device_is_refused_in_a_graph():
    """A captured function that draws random numbers on "cuda" (dropout's mask, randn, rand,
    randint, an init) is refused at the draw, with the way out: a replay would take them from
    the generator as it was captured (the stand-in: the capture's own numbers every time; on a
    GPU, its state at the captured address, whatever ``manual_seed`` did since). Numbers drawn
    outside and passed in as inputs are captured, and the generator works after a refusal."""
    from minilean.autograd.tensor import Tensor
    from minilean.cuda.graph import CapturedCall, GraphCaptureError
    from minilean.nn import init
    calls = []

    def draws_at_the_capture_only(x):  # the first call is the warm-up, the second the capture
        calls.append(1)
        return x + minilean.rand(*x.shape, device="cuda").data if len(calls) == 2 else x

    draws = [lambda x: F.dropout(Tensor(x), 0.5, training=True).data,
             lambda x: x + minilean.randn(*x.shape, device="cuda").data,
             lambda x: x + minilean.randint(0, 5, x.shape, device="cuda").data,
             lambda x: init.normal_(Tensor(x * 1.0)).data,
             draws_at_the_capture_only]
    for draw in draws:
        with pytest.raises(GraphCaptureError, match=r"^cannot capture .* as a CUDA graph: it "
                           r"draws random numbers on 'cuda': a replay would take them from the "
                           r"generator as it was captured, whatever manual_seed did since; "
                           r"draw them outside the captured function \(on the host, as the CLI "
                           r"does\) and pass them in as inputs$"):
            CapturedCall(draw, (numpy.ones((2, 3)),))
    assert calls == [1, 1]
    noise = [numpy.random.default_rng(seed).standard_normal((2, 3)) for seed in (1, 2)]
    captured = CapturedCall(lambda x, eps: x + eps, (numpy.ones((2, 3)), noise[0]))
    for eps in noise:
        numpy.testing.assert_array_equal(captured(numpy.ones((2, 3)), eps).get(), 1.0 + eps)
    assert minilean.randn(2, 3, device="cuda").shape == (2, 3)


def check_an_interrupted_capture_leaves_none_open():
    """Ctrl-C while capturing reaches the caller, and the capture is ended: a later one works
    (an open capture on the stream would fail every capture after it)."""
    from minilean.cuda.graph import CapturedCall
    calls = []

    def interrupted(x):  # the first call is the warm-up, the second the capture
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return x + 1.0

    with pytest.raises(KeyboardInterrupt):
        CapturedCall(interrupted, (numpy.ones(3),))
    captured = CapturedCall(lambda x: x * 2.0, (numpy.ones(3),))
    numpy.testing.assert_array_equal(captured(numpy.ones(3)).get(), [2.0, 2.0, 2.0])


def check_fused_clipping_in_a_graph_clips_its_own_gradients():
    """Inside a graph the fused kernels read a table of the addresses of arrays made while
    capturing: it is filled once the capture has ended, and it is the graph's own, so clipping
    other arrays of the same sizes afterwards (which rewrites the shared table) leaves what the
    replays clip alone."""
    from minilean.cuda import clip as clip_kernels
    from minilean.cuda.graph import CapturedCall
    from minilean.optim import clip
    xp = backend.xp_for("cuda")
    rng = numpy.random.default_rng(0)
    bounds = numpy.cumsum((0, 5, 16, 7))

    def gradients(x):  # three "gradients" computed on the device from the input
        return [x[start:end] * 3 for start, end in zip(bounds, bounds[1:])]

    def clipped_gradients(x):
        grads = [xp.ascontiguousarray(grad) for grad in gradients(x)]
        return tuple(grads) + (clip.fast_clip_arrays(grads, 1.0, 1e-6),)

    def draw():
        return rng.standard_normal(bounds[-1]).astype(numpy.float32)

    use_fast_kernels(True)
    try:
        captured = CapturedCall(clipped_gradients, (draw(),))
        others = [xp.asarray(grad) for grad in gradients(draw())]
        clip.fast_clip_arrays(others, 1.0, 1e-6)  # eager, on arrays of the same sizes
        for _ in range(2):
            x = draw()
            *grads, norm = captured(x)
            want, want_norm = clip_kernels.reference(gradients(x), 1.0, 1e-6)
            assert float(norm) == pytest.approx(want_norm, rel=1e-12)
            for grad, expected in zip(grads, want):
                numpy.testing.assert_allclose(grad.get(), expected, rtol=1e-6)
    finally:
        use_fast_kernels(False)


def check_graph_sampling_replays_the_network(capsys, fast=False):
    """``--cuda-graph`` sampling: the network runs in Python twice (warm-up and capture), the
    other DDIM steps are replays that read each step's timestep, and the samples are those of
    the plain network, in batches too (``--sample-batch``: a graph for each batch shape, and
    each replay's output kept before the next overwrites it); a network that cannot be
    captured runs as it is, after one note for all batch shapes."""
    from minilean.models.unet import UNet
    from minilean.train.diffusion import GraphNetwork

    backend.manual_seed(0)
    use_fast_kernels(fast)
    try:
        model = UNet(3, 8).to("cuda")
        model.eval()
        alpha_bar = D.alpha_bars(D.make_betas("cosine", 20))
        timesteps = D.respaced_timesteps(20, 5)
        x_T = minilean.tensor(numpy.random.default_rng(3).standard_normal((5, 3, 8, 8))
                              .astype(numpy.float32), device="cuda")
        calls = []

        def counted(x, t):
            calls.append(t)
            return model(x, t)

        def reads_a_host_number(x, t):
            calls.append(t)
            float(x.data.max())  # a copy to the host, which a capture refuses
            return model(x, t)

        with minilean.no_grad():
            plain = D.ddim_sample(model, alpha_bar, x_T, timesteps).numpy()
            graph = D.ddim_sample(GraphNetwork(counted), alpha_bar, x_T, timesteps).numpy()
            assert len(calls) == 2 and capsys.readouterr().err == ""
            # close, not equal: the graph's products come from matmul.cu, summed in another
            # order, and DDIM's 1/sqrt(alpha_bar) at high noise amplifies that
            numpy.testing.assert_allclose(graph, plain, rtol=1e-3, atol=1e-3)
            calls.clear()
            batched = D.ddim_sample(D.in_batches(GraphNetwork(counted), 2), alpha_bar, x_T,
                                    timesteps).numpy()
            assert len(calls) == 4 and capsys.readouterr().err == ""  # two shapes: 2 (twice) and 1
            numpy.testing.assert_allclose(batched, plain, rtol=1e-3, atol=1e-3)
            calls.clear()
            fallback = D.ddim_sample(D.in_batches(GraphNetwork(reads_a_host_number), 2),
                                     alpha_bar, x_T, timesteps).numpy()
        # warm-up and failed capture of the first shape, then every batch of every step: the
        # other shape is not tried again (a capture fails for the network's code, not a shape)
        assert len(calls) == 3 * len(timesteps) + 2
        notes = capsys.readouterr().err.splitlines()
        assert len(notes) == 1 and "--cuda-graph: sampling without a graph: cannot capture" \
            in notes[0]
        # batches of other shapes than the plain run's: their products are rounded otherwise
        numpy.testing.assert_allclose(fallback, plain, rtol=1e-4, atol=1e-3)
    finally:
        use_fast_kernels(False)
