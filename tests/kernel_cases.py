"""Each CUDA kernel against its NumPy reference, on odd, non-contiguous and large inputs.

The tests take the array module as the fixture ``cupy`` and their data from the fixture ``rng``
(conftest.py, seeded per test): tests/test_cuda_gpu.py runs them with real CuPy on a GPU,
tests/test_fake_device.py with the CPU stand-in, where the kernels' CUDA C is compiled for the
CPU (tests/cuda_on_cpu.py). Cases marked ``big`` run on a GPU only.
"""
import math

import numpy
import pytest

from minilean.cuda import (activations, adam, clip, ema, im2col, matmul, mse, noising, norm,
                           reduce, softmax)
from minilean.cuda import compile as kernels

TOLERANCE = {numpy.float32: dict(rtol=2e-5, atol=2e-6), numpy.float64: dict(rtol=1e-11, atol=1e-13)}


def close(device_array, expected, dtype):
    numpy.testing.assert_allclose(device_array.get(), expected, **TOLERANCE[dtype])


def on_gpu(cupy, array, layout):
    """``array`` on the device: contiguous, as a non-contiguous view holding the same values
    ("strided"), or as a contiguous view that starts one element into its allocation, so off
    the 16-byte boundary that vector loads need ("offset")."""
    if layout == "contiguous":
        return cupy.asarray(array)
    if layout == "offset":
        view = cupy.asarray(numpy.concatenate([array.ravel()[:1], array.ravel()]))[1:]
        assert view.data.ptr % 16 != 0 and view.flags.c_contiguous
        return view.reshape(array.shape)
    # a Fortran-ordered copy: same values, non-contiguous in C order (a 1-d input: a strided view)
    if array.ndim == 1:
        return cupy.asarray(numpy.repeat(array, 2))[::2]
    return cupy.asfortranarray(cupy.asarray(array))


BIG = pytest.mark.big  # run on a GPU only: on the CPU emulation they take minutes
SHAPES = [(1,), (1023,), (3, 5, 7), (2, 33, 65), pytest.param((1 << 22) + 3, marks=BIG)]
DTYPES = [numpy.float32, numpy.float64]
LAYOUTS = ["contiguous", "strided"]
NORMS = [("layer", (3, 4, 6), 2), ("layer", (5, 1000), 1), ("layer", (7, 3), 1),
         ("group", (2, 6, 3, 5), 3), ("group", (3, 32, 17, 9), 8), ("group", (2, 4, 7), 1)]
# (an empty parameter between others, and a 0-d one, in the all-parameters tables too)
PARAMETER_SHAPES = [(3, 4), (1,), (257,), (16, 3, 3, 3), (5, 7), ((1 << 20) + 1,), (0,), (),
                    (7,)]
CONVOLUTIONS = [((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
                ((1, 4, 9, 8), (3, 2), (2, 3), (1, 0), (1, 2)),
                ((3, 5, 33, 17), (5, 5), (2, 2), (2, 2), (1, 1)),
                ((2, 2, 5, 5), (1, 1), (1, 1), (0, 0), (1, 1))]
PRODUCTS = [((5, 7), (7, 3)), ((1, 1), (1, 1)), ((33, 17), (17, 40)), ((2, 3, 20, 16), (16, 5)),
            ((6, 16), (2, 3, 16, 18)), ((4, 1, 3, 9), (2, 9, 6)), ((9,), (9, 4)), ((3, 9, 4), (4,)),
            ((9,), (9,)), ((4, 0), (0, 3)), ((0, 4, 2), (2, 3)),
            pytest.param((1030, 500), (500, 700), marks=BIG)]


def float32_error_bound(roundings):
    """The largest relative error of a float32 value after ``roundings`` correctly rounded
    operations, each off by at most u = 2^-24 relatively: Higham's gamma_k = k u / (1 - k u)."""
    u = 2.0 ** -24
    return roundings * u / (1 - roundings * u)


# what each kernel must treat as the op it replaces does: NaN stays NaN (relu's max(x, 0)
# included), and infinities give what the op's formula gives at them
SPECIAL_VALUES = numpy.array([numpy.nan, numpy.inf, -numpy.inf, 0.0, -0.0])


# for the checks that feed NaN and infinities on purpose: NumPy's warnings about the arithmetic
# they make are expected there (and only there)
ON_SPECIAL_VALUES = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning",
                                               "ignore:overflow:RuntimeWarning",
                                               "ignore:divide by zero:RuntimeWarning")


def with_special_values(x):
    """``x`` with its first elements replaced by SPECIAL_VALUES (as many as fit)."""
    x = x.copy()
    count = min(x.size, len(SPECIAL_VALUES))
    x.flat[:count] = SPECIAL_VALUES[:count]
    return x


def use_index_type(monkeypatch, index):
    """Have im2col.cu split flat indices as ``index`` ("int" or "long long"): small test
    arrays take the 64-bit path when the int limit is lowered to 0. Every kernel of
    im2col.cu launched then must be of that index type (what im2col.py remembers of a shape
    must not keep the type an earlier test chose)."""
    if index == "long long":
        monkeypatch.setattr(im2col, "INT_INDEX_LIMIT", 0)
    launch = kernels.launch

    def launch_of_index_type(program, name, count, args):
        if program is im2col.program and count > 0:  # (an empty array has no index to split)
            assert name.endswith(f", {index}>"), name
        return launch(program, name, count, args)
    monkeypatch.setattr(kernels, "launch", launch_of_index_type)


class KernelCases:
    """The kernel tests; a test module collects them by subclassing (``class TestKernels(
    KernelCases)``) and defines the fixture ``cupy``."""

    @pytest.mark.parametrize("kind", sorted(activations.KINDS))
    @pytest.mark.parametrize("size", SHAPES)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("layout", LAYOUTS + ["offset"])
    @ON_SPECIAL_VALUES
    def test_activation_kernels(self, cupy, rng, kind, size, dtype, layout):
        x = with_special_values(rng.normal(scale=3, size=size).astype(dtype))
        grad = rng.normal(size=size).astype(dtype)
        y, derivative = activations.reference(kind, x, slope=0.1)
        close(activations.forward(kind, on_gpu(cupy, x, layout), 0.1), y, dtype)
        close(activations.backward(kind, on_gpu(cupy, x, layout), on_gpu(cupy, grad, layout), 0.1),
              grad * derivative, dtype)

    @BIG
    def test_activation_kernel_indexes_past_two_to_the_31(self, cupy):
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
    def test_reduce_kernel(self, cupy, rng, shape, axes, dtype, mean):
        x = rng.normal(size=shape).astype(dtype)
        outer, length, inner = reduce.row_layout(shape, axes)
        out = reduce.sum_rows(on_gpu(cupy, x, "strided"), outer, length, inner,
                              1 / length if mean else 1)
        expected = reduce.reference(x, axes, keepdim=False, mean=mean)
        # rounding grows with the number of terms: a few ulps per term at worst
        tolerance = dict(rtol=TOLERANCE[dtype]["rtol"], atol=4 * numpy.finfo(dtype).eps * length)
        numpy.testing.assert_allclose(out.get().reshape(expected.shape), expected, **tolerance)

    def test_sum_kept_keeps_the_summed_axes(self, cupy, rng):
        """unbroadcast's sum, by the kernel over adjacent axes, else by CuPy's sum (0 and 2)."""
        x = rng.normal(size=(3, 4, 5)).astype(numpy.float32)
        for axes in [(0,), (1, 2), (0, 2)]:
            got = reduce.sum_kept(cupy.asarray(x), axes)
            assert got.shape == x.sum(axis=axes, keepdims=True).shape
            close(got, x.sum(axis=axes, keepdims=True), numpy.float32)

    @pytest.mark.parametrize("shape, axis", [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((5,), 0),
                                             ((64, 1031), 1), ((2, 3000, 5), 1)])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("log", [False, True])
    def test_softmax_kernels(self, cupy, rng, shape, axis, dtype, log):
        x = rng.normal(scale=5, size=shape).astype(dtype)
        grad = rng.normal(size=shape).astype(dtype)
        y, vjp = softmax.reference(x, axis, log)
        y_gpu = softmax.forward(on_gpu(cupy, x, "strided"), axis, log)
        # both directions sum along the axis (exp(x - max), grad times y), in another order
        # than NumPy's: rounding grows with the axis length, in absolute terms too (log of
        # the sum shifts every log_softmax output, those near 0 included)
        growth = math.sqrt(shape[axis])
        tolerance = {name: value * growth for name, value in TOLERANCE[dtype].items()}
        numpy.testing.assert_allclose(y_gpu.get(), y, **tolerance)
        numpy.testing.assert_allclose(
            softmax.backward(y_gpu, on_gpu(cupy, grad, "strided"), axis, log).get(),
            vjp(y, grad), **tolerance)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("axis", [0, 1])
    @pytest.mark.parametrize("log", [False, True])
    @ON_SPECIAL_VALUES
    def test_softmax_kernels_on_rows_with_infinities_and_nan(self, cupy, dtype, axis, log):
        """Rows the shift by the maximum cannot make finite give what the op gives: +inf
        shifts by 0 (softmax [0, nan, 0], log_softmax [-inf, nan, -inf]), an all -inf row
        stays nan-free in log_softmax's -inf, a NaN makes its row NaN."""
        inf, nan = numpy.inf, numpy.nan
        rows = numpy.array([[1.0, inf, 2.0], [-inf, -inf, -inf], [1.0, nan, 2.0], [inf, inf, 0.0],
                            [-inf, 0.0, 1.0], [nan, inf, -inf], [3.0, -1.0, 0.5]], dtype=dtype)
        x = rows if axis == 1 else rows.T.copy()
        y, _ = softmax.reference(x, axis, log)
        numpy.testing.assert_allclose(
            softmax.forward(on_gpu(cupy, x, "strided"), axis, log).get(), y, **TOLERANCE[dtype])

    @pytest.mark.parametrize("which, shape, count", NORMS)
    @pytest.mark.parametrize("dtype", DTYPES)
    # (affine weight and bias, SiLU fused after the norm)
    @pytest.mark.parametrize("affine, silu", [(True, False), (False, False), (True, True)])
    def test_norm_kernels(self, cupy, rng, which, shape, count, dtype, affine, silu):
        layout = (norm.layer_norm_layout(shape, count) if which == "layer"
                  else norm.group_norm_layout(shape, count))
        x = rng.normal(loc=3, scale=2, size=shape).astype(dtype)
        grad = rng.normal(size=shape).astype(dtype)
        weight = rng.normal(size=layout.channels).astype(dtype) if affine else None
        bias = rng.normal(size=layout.channels).astype(dtype) if affine else None
        y, vjp = norm.reference(x, layout, weight, bias, silu=silu)
        weight_gpu, bias_gpu = (None if a is None else cupy.asarray(a) for a in (weight, bias))
        y_gpu, mean, inv_std = norm.forward(on_gpu(cupy, x, "strided"), layout, weight_gpu,
                                            bias_gpu, silu=silu)
        close(y_gpu, y, dtype)
        dx, dweight, dbias = norm.backward(cupy.asarray(x), layout,
                                           on_gpu(cupy, grad, "strided"), mean,
                                           inv_std, weight_gpu, bias_gpu, silu)
        for got, expected in zip((dx, dweight, dbias), vjp(grad)):
            tolerance = dict(TOLERANCE[dtype], atol=TOLERANCE[dtype]["atol"] * math.sqrt(x.size))
            numpy.testing.assert_allclose(cupy.asnumpy(got), expected, **tolerance)

    @pytest.mark.parametrize("which, shape, count", [("layer", (3, 1000), 1),
                                                     ("group", (2, 4, 31, 9), 2)])
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_norm_of_constant_rows_is_zero(self, cupy, which, shape, count, dtype):
        """Every row (group) holds one value, far from 0: xhat is 0, so y is the bias exactly.
        Centred on a float sum's mean, whose rounding times 1 / sqrt(eps) is large, float32
        rows of 1000.1 standardised to up to +-0.8."""
        layout = (norm.layer_norm_layout(shape, count) if which == "layer"
                  else norm.group_norm_layout(shape, count))
        values = numpy.linspace(1000.1, 12345.678, layout.rows).astype(dtype)
        x = numpy.repeat(values, layout.length).reshape(shape)
        weight = numpy.full(layout.channels, 2.0, dtype)
        bias = numpy.linspace(-1, 1, layout.channels).astype(dtype)
        # the bias of each element's channel: the last axis (layer), axis 1 (group)
        expected = numpy.broadcast_to(bias if which == "layer" else bias.reshape(
            (1, -1) + (1,) * (len(shape) - 2)), shape)
        numpy.testing.assert_array_equal(norm.reference(x, layout, weight, bias)[0], expected)
        y, _, _ = norm.forward(cupy.asarray(x), layout, cupy.asarray(weight), cupy.asarray(bias))
        numpy.testing.assert_array_equal(y.get(), expected)

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    # (1 << 20) + 5 is more chunks than PARTIAL_BLOCKS blocks have threads, float32 or float64:
    # all the partial sums, and the grid-stride loop
    @pytest.mark.parametrize("size", [(1,), (3, 5, 7), (1 << 20) + 5,
                                      pytest.param((1 << 22) + 5, marks=BIG)])
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_mse_kernels(self, cupy, rng, reduction, size, dtype):
        input, target = (rng.normal(size=size).astype(dtype) for _ in range(2))
        out, derivative = mse.reference(input, target, reduction)
        grad = rng.normal(size=size).astype(dtype) if reduction == "none" else numpy.asarray(
            1.5, dtype=dtype)
        n = input.size
        tolerance = dict(TOLERANCE[dtype], rtol=TOLERANCE[dtype]["rtol"] * math.sqrt(n))
        numpy.testing.assert_allclose(cupy.asnumpy(mse.forward(on_gpu(cupy, input, "strided"),
                                                               cupy.asarray(target), reduction)),
                                      out, **tolerance)
        d_input, d_target = mse.backward(cupy.asarray(input), on_gpu(cupy, target, "strided"),
                                         cupy.asarray(grad), reduction)
        close(d_input, derivative * grad, dtype)
        close(d_target, -derivative * grad, dtype)

    @pytest.mark.parametrize("shape", [(1, 1), (6, 1), (9, 2), (4, 3, 5, 5), (7, 3, 31, 33)])
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_noising_kernels(self, cupy, rng, shape, dtype):
        alpha_bar = numpy.cumprod(1 - numpy.linspace(1e-4, 0.05, 100))
        t = rng.integers(0, 100, size=shape[0])
        x0, eps, grad = (rng.normal(size=shape).astype(dtype) for _ in range(3))
        out, (signal, noise) = noising.reference(x0, eps, alpha_bar, t)
        tables = noising.device_coefficients(alpha_bar, dtype)
        close(noising.forward(on_gpu(cupy, x0, "strided"), cupy.asarray(eps), tables,
                              cupy.asarray(t)),
              out, dtype)
        d_x0, d_eps = noising.backward(on_gpu(cupy, grad, "strided"), tables, cupy.asarray(t))
        close(d_x0, signal * grad, dtype)
        close(d_eps, noise * grad, dtype)

    def test_noising_kernels_keep_float32_precision_near_the_clean_end(self, cupy, rng):
        """At t = 0 of a 1000-step cosine schedule 1 - alpha_bar is 4.1e-5: computed in float32
        from alpha_bar rounded to float32 (an error of up to 3e-8), sqrt(1 - alpha_bar) is off
        by 2.6e-4 relatively. From the float64 schedule each factor is rounded once, and
        s x0 + n eps is then two products and a sum in float32 (or a product and a fused
        multiply-add): each term goes through at most 3 roundings, so the error is within
        float32_error_bound(3) of |s x0| + |n eps|; the backward's s grad and n grad, 2."""
        from minilean.models import diffusion
        alpha_bar = diffusion.alpha_bars(diffusion.make_betas("cosine", 1000))
        t = numpy.zeros(64, dtype=numpy.int64)
        x0, eps = (rng.normal(size=(64, 5)).astype(numpy.float32) for _ in range(2))
        signal, noise = numpy.sqrt(alpha_bar[0]), numpy.sqrt(1 - alpha_bar[0])
        exact = signal * x0.astype(numpy.float64) + noise * eps.astype(numpy.float64)
        tables = noising.device_coefficients(alpha_bar, numpy.float32)
        got = noising.forward(cupy.asarray(x0), cupy.asarray(eps), tables, cupy.asarray(t)).get()
        bound = float32_error_bound(3) * (signal * numpy.abs(x0) + noise * numpy.abs(eps))
        assert numpy.all(numpy.abs(got - exact) <= bound)
        d_x0, d_eps = noising.backward(cupy.asarray(eps), tables, cupy.asarray(t))
        for got, factor in ((d_x0, signal), (d_eps, noise)):
            numpy.testing.assert_allclose(got.get(), factor * eps.astype(numpy.float64),
                                          rtol=float32_error_bound(2), atol=0)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("decoupled", [False, True])
    @pytest.mark.parametrize("misaligned", [False, True])
    def test_fused_adam_over_all_parameters(self, cupy, rng, dtype, decoupled, misaligned):
        host = [[rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES] for _ in range(3)]
        host.append([rng.random(size=s).astype(dtype) for s in PARAMETER_SHAPES])
        device = [[cupy.asarray(a) for a in role] for role in host]
        if misaligned:  # a parameter and a gradient as views off the vectors' boundary
            device[0][2], device[1][4] = (on_gpu(cupy, host[role][k], "offset")
                                          for role, k in ((0, 2), (1, 4)))
        device[1][0] = cupy.asarray(host[1][0].T.copy()).T  # a gradient as a transposed view
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
    @pytest.mark.parametrize("misaligned", [False, True])
    def test_fused_ema_over_all_parameters(self, cupy, rng, dtype, misaligned):
        averages = [rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES]
        params = [rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES]
        device_averages = [on_gpu(cupy, a, "offset" if misaligned and k == 3 else "contiguous")
                           for k, a in enumerate(averages)]
        device_params = [cupy.asarray(p) for p in params]
        device_params[0] = cupy.asarray(params[0].T.copy()).T  # a parameter as a transposed view
        ema.fused_ema_update(device_averages, device_params, 0.99)
        for got, average, param in zip(device_averages, averages, params):
            close(got, ema.reference(average, param, 0.99), dtype)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and left alone
    @pytest.mark.parametrize("misaligned", [False, True])
    def test_fused_clip_over_all_gradients(self, cupy, rng, dtype, max_norm, misaligned):
        grads = [rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES]
        expected, norm = clip.reference(grads, max_norm, 1e-6)
        device_grads = [on_gpu(cupy, grad, "offset" if misaligned and k == 2 else "contiguous")
                        for k, grad in enumerate(grads)]
        got_norm = clip.fused_clip_arrays(device_grads, max_norm, 1e-6)
        assert got_norm.dtype == numpy.float64 and got_norm.shape == ()
        numpy.testing.assert_allclose(got_norm.get(), norm, rtol=1e-12)
        for got, want in zip(device_grads, expected):
            close(got, want, dtype)

    def test_fused_ema_keeps_float32_precision_at_decay_near_one(self, cupy, rng):
        """decay 0.9999: 1 - decay taken in float32 from decay rounded to float32 is off by
        1.7e-4 relatively; from the host, in double and rounded once, by at most one rounding.
        From averages of 0 the new average is -(1 - decay)(0 - p): that rounding and the
        product's (0 - p and 0 - x are exact), float32_error_bound(2) of the float64 update."""
        from minilean.optim.ema import ema_update
        params = [rng.normal(size=s).astype(numpy.float32) for s in PARAMETER_SHAPES[:4]]
        averages = [cupy.zeros(p.shape, dtype=numpy.float32) for p in params]
        ema.fused_ema_update(averages, [cupy.asarray(p) for p in params], 0.9999)
        exact = [numpy.zeros(p.shape) for p in params]
        ema_update(exact, [p.astype(numpy.float64) for p in params], 0.9999)
        for got, want in zip(averages, exact):
            numpy.testing.assert_allclose(got.get(), want, rtol=float32_error_bound(2), atol=0)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("special", [numpy.nan, numpy.inf])
    @ON_SPECIAL_VALUES
    def test_fused_clip_of_a_nan_or_inf_norm_is_the_plain_ops(self, cupy, rng, dtype, special):
        """A NaN norm scales every gradient by NaN, as clip_arrays' min(1, nan) does, so the
        training loop's NaN guard sees it; an infinite one scales by 0 (inf * 0: NaN)."""
        from minilean.optim.clip import clip_arrays
        grads = [rng.normal(size=s).astype(dtype) for s in PARAMETER_SHAPES[:3]]
        grads[2].flat[5] = special
        expected, norm = clip.reference(grads, 1.0, 1e-6)
        plain = [grad.copy() for grad in grads]
        numpy.testing.assert_array_equal(clip_arrays(plain, 1.0, 1e-6), norm)
        device_grads = [cupy.asarray(grad) for grad in grads]
        numpy.testing.assert_array_equal(clip.fused_clip_arrays(device_grads, 1.0, 1e-6).get(),
                                         norm)
        for got, want, plain_grad in zip(device_grads, expected, plain):
            numpy.testing.assert_array_equal(want, plain_grad)
            numpy.testing.assert_array_equal(got.get(), want)

    def test_fused_update_names_what_it_refuses(self, cupy):
        """check_arrays names the failing property: mixed dtypes, a dtype without a kernel, a
        strided array, a size that is not the parameter's. The error is NotCovered (on which
        the optimizers run the plain update), raised before any array is written: the Adam
        moments and a strided gradient to clip keep their values."""
        from minilean.cuda.fast_function import NotCovered
        float32 = [cupy.zeros(3, dtype=cupy.float32), cupy.zeros(4, dtype=cupy.float32)]
        mixed = [float32[0], cupy.zeros(4, dtype=cupy.float64)]
        with pytest.raises(NotCovered, match="fused update needs arrays of one dtype, float32; "
                                             "got float64 of shape"):
            ema.fused_ema_update(mixed, mixed, 0.9)
        halves = [a.astype(cupy.float16) for a in float32]
        with pytest.raises(NotCovered, match="fused update takes float32 or float64 arrays, "
                                             "got float16"):
            ema.fused_ema_update(halves, halves, 0.9)
        strided = [float32[0], cupy.arange(8, dtype=cupy.float32)[::2]]
        with pytest.raises(NotCovered, match="fused update needs C-contiguous arrays, got a "
                                             "strided one of shape"):
            ema.fused_ema_update(strided, float32, 0.9)
        with pytest.raises(NotCovered, match=r"fused update needs arrays of the parameters' "
                                             r"sizes, got shape \(4,\) for a parameter of 3 "):
            ema.fused_ema_update(float32, float32[::-1], 0.9)
        with pytest.raises(NotCovered, match=r"^fused update needs one array per parameter in "
                                             r"every role, got \[2, 1\]$"):
            ema.fused_ema_update(float32, float32[:1], 0.9)
        with pytest.raises(NotCovered, match="fused update needs C-contiguous arrays"):
            clip.fused_clip_arrays(strided, 1.0, 1e-6)
        moments = [cupy.ones(3, dtype=cupy.float32), cupy.ones(4, dtype=cupy.float32)]
        with pytest.raises(NotCovered, match="fused update needs C-contiguous arrays"):
            adam.fused_adam_update(strided, float32, moments, moments, 1, 0.1, 0.9, 0.999,
                                   1e-8, 0.0, False)
        numpy.testing.assert_array_equal(strided[1].get(), [0, 2, 4, 6])
        assert all((moment.get() == 1).all() for moment in moments)

    def test_fused_update_refuses_an_array_it_writes_twice(self, cupy):
        """One gradient twice in the list to clip (``clip_grad_norm_([p, q, p])``) would be
        two entries of the table, two threads changing the same memory at once: on a GPU one
        scaling could be lost. NotCovered, before anything is written, and the plain clipping
        runs: the norm counts p twice and p's gradient is scaled twice, as PyTorch's
        clip_grad_norm_ does. Empty arrays, which nothing writes, may share an address."""
        from minilean.cuda.fast_function import NotCovered
        from minilean.optim.clip import clip_arrays
        from minilean.optim.optimizer import fused_or_plain
        p, q = cupy.full(3, 3.0, dtype=cupy.float32), cupy.full(4, 4.0, dtype=cupy.float32)
        twice = [p, q, p]
        with pytest.raises(NotCovered, match=r"^fused update writes each array once, got the "
                                             r"array of shape \(3,\) as arrays 0 and 2$"):
            clip.fused_clip_arrays(twice, 1.0, 1e-6)
        assert (p.get() == 3).all() and (q.get() == 4).all()
        averages = [cupy.zeros(3, dtype=cupy.float32)] * 2
        with pytest.raises(NotCovered, match=r"arrays 0 and 1$"):
            ema.fused_ema_update(averages, [p, p.copy()], 0.9)
        assert (averages[0].get() == 0).all()
        norm = numpy.sqrt(2 * 3 * 9 + 4 * 16)
        scale = numpy.float32(1.0 / (norm + 1e-6))
        got = fused_or_plain(clip.fused_clip_arrays, clip_arrays, twice, 1.0, 1e-6)
        numpy.testing.assert_allclose(float(got.get()), norm, rtol=1e-12)
        numpy.testing.assert_allclose(p.get(), 3 * scale * scale, rtol=1e-6)
        numpy.testing.assert_allclose(q.get(), 4 * scale, rtol=1e-6)
        # one empty array twice: nothing writes it, so the fused clipping takes the list
        p, empty = cupy.full(3, 3.0, dtype=cupy.float32), cupy.zeros(0, dtype=cupy.float32)
        got = clip.fused_clip_arrays([p, empty, q, empty], 1.0, 1e-6)
        norm = numpy.sqrt(3 * 9 + 4 * 16 * scale * scale)
        numpy.testing.assert_allclose(float(got.get()), norm, rtol=1e-6)
        numpy.testing.assert_allclose(p.get(), 3 / (norm + 1e-6), rtol=1e-6)
        empty = [cupy.zeros(0, dtype=cupy.float32), q, cupy.zeros(0, dtype=cupy.float32)]
        clip.fused_clip_arrays(empty, 1.0, 1e-6)  # runs the kernels

    @pytest.mark.parametrize("x_shape, kernel, stride, padding, dilation", CONVOLUTIONS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("index", ["int", "long long"])
    def test_im2col_and_col2im_kernels(self, cupy, rng, x_shape, kernel, stride, padding, dilation,
                                       dtype, index, monkeypatch):
        use_index_type(monkeypatch, index)
        x = rng.normal(size=x_shape).astype(dtype)
        columns = im2col.im2col_reference(x, kernel, stride, padding, dilation)
        close(im2col.im2col(on_gpu(cupy, x, "strided"), kernel, stride, padding, dilation),
              columns, dtype)
        grad_columns = rng.normal(size=columns.shape).astype(dtype)
        close(im2col.col2im(on_gpu(cupy, grad_columns, "strided"), x_shape, kernel, stride, padding,
                            dilation),
              im2col.col2im_reference(grad_columns, x_shape, kernel, stride, padding, dilation),
              dtype)

    def test_im2col_and_col2im_index_by_their_larger_array(self, cupy, rng, monkeypatch):
        """The columns of a padded 3x3 convolution are 9 times the size of x: with x within the
        int limit and its columns past it, both kernels must take 64-bit indices."""
        use_index_type(monkeypatch, "long long")
        x = rng.normal(size=(1, 2, 4, 4)).astype(numpy.float32)
        monkeypatch.setattr(im2col, "INT_INDEX_LIMIT", x.size)
        geometry = ((3, 3), (1, 1), (1, 1), (1, 1))
        columns = im2col.im2col_reference(x, *geometry)
        close(im2col.im2col(cupy.asarray(x), *geometry), columns, numpy.float32)
        close(im2col.col2im(cupy.asarray(columns), x.shape, *geometry),
              im2col.col2im_reference(columns, x.shape, *geometry), numpy.float32)

    @pytest.mark.parametrize("shape", [(3, 5, 7, 2), (4, 1, 9), (2, 6), (1, 3, 0)])
    @pytest.mark.parametrize("with_bias", [False, True])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("index", ["int", "long long"])
    def test_swap_leading_axes_kernel(self, cupy, rng, shape, with_bias, dtype, index, monkeypatch):
        use_index_type(monkeypatch, index)
        src = rng.normal(size=shape).astype(dtype)
        bias = rng.normal(size=shape[0]).astype(dtype) if with_bias else None
        got = im2col.swap_leading_axes(on_gpu(cupy, src, "strided"),
                                       None if bias is None else cupy.asarray(bias))
        assert got.flags.c_contiguous
        close(got, im2col.swap_leading_axes_reference(src, bias), dtype)

    @pytest.mark.parametrize("a_shape, b_shape", PRODUCTS)
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_matmul_kernel(self, cupy, rng, a_shape, b_shape, dtype):
        a, b = rng.normal(size=a_shape).astype(dtype), rng.normal(size=b_shape).astype(dtype)
        expected = matmul.reference(a.astype(numpy.float64), b.astype(numpy.float64))
        got = matmul.matmul(on_gpu(cupy, a, "strided"), cupy.asarray(b))
        assert got.dtype == dtype and got.shape == expected.shape
        # float32: rounding grows with the inner length (a sum of a_shape[-1] products)
        scale = 1e-6 * max(a_shape[-1], 1) if dtype == numpy.float32 else 1e-12
        numpy.testing.assert_allclose(got.get(), expected, rtol=scale, atol=scale)

    @pytest.mark.parametrize("parts", [1, 2, 3, 7, 40])
    def test_matmul_kernel_splits_the_inner_axis(self, cupy, rng, parts):
        """Parts of whole 16-wide slabs, the last one shorter (or, for 40 parts of 150, empty),
        summed: the same product, broadcast batch included."""
        a, b = rng.normal(size=(2, 5, 150)), rng.normal(size=(150, 19))
        got = matmul.matmul(cupy.asarray(a), cupy.asarray(b), parts=parts)
        close(got, a @ b, numpy.float64)

    def test_matmul_kernel_writes_out_and_refuses_integers(self, cupy, rng):
        a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 5))
        out = cupy.zeros((5, 3))
        got = matmul.matmul(cupy.asarray(a), cupy.asarray(b), out=out.T)
        assert got.shape == (3, 5) and got.data.ptr == out.data.ptr  # out itself, returned
        close(got, a @ b, numpy.float64)
        close(out.T, a @ b, numpy.float64)
        with pytest.raises(TypeError, match="takes float32 or float64, got int64"):
            matmul.matmul(cupy.ones((2, 2), dtype=cupy.int64), cupy.ones((2, 2), dtype=cupy.int64))
        with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(2, 3\) do not fit"):
            matmul.matmul(cupy.ones((2, 3)), cupy.ones((2, 3)))
        for a, b in ((cupy.ones(()), cupy.ones((2, 3))), (cupy.ones((2, 3)), cupy.ones(()))):
            with pytest.raises(ValueError, match=r"shapes \(.*\) and \(.*\) do not fit"):
                matmul.matmul(a, b)
