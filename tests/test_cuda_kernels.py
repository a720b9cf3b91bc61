"""minilean.cuda without a GPU: every kernel source compiles with NVRTC, every NumPy reference
agrees with the engine's CPU op (forward and backward), and the registry wires the fast slots.

The kernels themselves run in tests/test_fake_device.py (compiled for the CPU) and
tests/test_cuda_gpu.py (on a GPU, marked gpu).
"""
import os

import numpy
import pytest

import minilean
from minilean.autograd import (elementwise, function, loss, norm as norm_ops,
                               reduce as reduce_ops)
from minilean.autograd.conv import conv2d
from minilean.autograd.function import Context
from minilean.cuda import (activations, adam, clip, compile as kernels, ema, im2col, mse,
                           noising, norm, reduce, registry, softmax, use_fast_kernels)
from minilean.cuda import matmul  # also registers matmul.cu in kernels.PROGRAMS
from minilean.models import diffusion as diffusion_ops
from kernel_cases import ON_SPECIAL_VALUES


def leaf(array):
    return minilean.tensor(array, dtype=array.dtype, requires_grad=True)


def value_and_grads(fn, *arrays, grad=None):
    """fn(*tensors) on the engine's CPU ops, and the input gradients for output gradient
    ``grad`` (ones for a scalar output)."""
    inputs = [leaf(array) for array in arrays]
    out = fn(*inputs)
    out.backward(None if grad is None else minilean.tensor(grad, dtype=out.dtype))
    return out.numpy(), [t.grad.numpy() for t in inputs]


# --- every kernel source compiles -------------------------------------------------------------

needs_nvrtc = pytest.mark.skipif(kernels.find_libnvrtc() is None,
                                 reason="the nvidia-cuda-nvrtc-cu12 wheel is not installed")


def test_every_cu_file_has_a_program():
    on_disk = sorted(name for name in os.listdir(kernels.SOURCE_DIR) if name.endswith(".cu"))
    assert on_disk == sorted(kernels.PROGRAMS)


def test_chunked_launch_matches_the_kernels_chunk():
    """launch_chunked sizes the grid by compile.CHUNK_BYTES and THREADS; the kernels step by
    common.cuh's and bound their registers by its THREADS."""
    with open(os.path.join(kernels.SOURCE_DIR, "common.cuh"), encoding="utf-8") as file:
        common = file.read()
    assert f"constexpr int CHUNK_BYTES = {kernels.CHUNK_BYTES};" in common
    assert f"constexpr int THREADS = {kernels.THREADS};" in common


def test_a_grid_covers_every_item_with_whole_blocks_up_to_the_cap():
    """At least one block (a launch needs one), no more than MAX_BLOCKS (the grid-stride loops
    walk the rest), a Python int as a launch's grid takes."""
    assert kernels.grid_for(0) == kernels.grid_for(1) == kernels.grid_for(kernels.THREADS) == (1,)
    assert kernels.grid_for(kernels.THREADS + 1) == (2,)
    assert kernels.grid_for(10 ** 12) == (kernels.MAX_BLOCKS,)
    assert all(type(kernels.grid_for(count)[0]) is int for count in (1, 257, 10 ** 12))


def test_a_row_gets_one_block_of_a_power_of_two_of_threads_from_32_to_256():
    """block_reduce (common.cuh) reduces whole warps of 32: a block is a multiple of 32."""
    lengths = [0, 1, 32, 33, 64, 65, 200, 256, 10 ** 6]
    assert [kernels.threads_for(n) for n in lengths] == [32, 32, 32, 64, 64, 128, 256, 256, 256]
    assert kernels._row_grid(5, 100) == ((5,), (128,))
    assert kernels._row_grid(0, 0) == ((1,), (32,))
    assert kernels._row_grid(10 ** 9, 7) == ((kernels.MAX_BLOCKS,), (32,))


def test_chunks_and_partial_sums_count_whole_chunks():
    """A chunk holds CHUNK_BYTES: 4 float32 or 2 float64 elements; a sum's first pass has a
    block per THREADS chunks, at least one and at most PARTIAL_BLOCKS."""
    assert [kernels.chunks(n, 4) for n in (0, 1, 4, 5)] == [0, 1, 1, 2]
    assert kernels.chunks(5, 8) == 3 and type(kernels.chunks(5, 4)) is int
    assert kernels.partial_sum_blocks(1, 4) == 1
    assert kernels.partial_sum_blocks(4 * kernels.THREADS + 1, 4) == 2
    assert kernels.partial_sum_blocks(10 ** 9, 4) == kernels.PARTIAL_BLOCKS


def test_libnvrtc_is_found_inside_its_wheel():
    wheel = pytest.importorskip("nvidia.cuda_nvrtc")  # (needs_nvrtc would skip a failed search)
    path = kernels.find_libnvrtc()
    assert os.path.basename(path).startswith("libnvrtc.so.")
    assert os.path.dirname(os.path.dirname(path)) in list(wheel.__path__)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["compute_90", "compute_80"])
@pytest.mark.parametrize("filename", sorted(kernels.PROGRAMS))
def test_kernel_source_compiles_with_nvrtc(filename, arch):
    program = kernels.PROGRAMS[filename]
    ptx, lowered_names = kernels.nvrtc_compile(program, arch)
    assert f".target sm_{arch[-2:]}" in ptx
    assert ptx.count(".entry ") == len(program.name_expressions)
    assert sorted(lowered_names) == sorted(program.name_expressions)
    assert all(f".entry {name}(" in ptx for name in lowered_names.values())


@needs_nvrtc
def test_nvrtc_reports_a_broken_source(monkeypatch):
    monkeypatch.setattr(kernels, "PROGRAMS", {})
    broken = kernels.Program("broken.cu", ["missing<float>"])
    monkeypatch.setattr(kernels.Program, "source", property(
        lambda self: "template <typename T> __global__ void missing(T* x) { x[0] = undefined; }"))
    # the message carries NVRTC's log, which names what is wrong
    with pytest.raises(kernels.NvrtcError, match='broken.cu does not compile for compute_90:\n'
                                                 '(.|\n)*identifier "undefined" is undefined'):
        kernels.nvrtc_compile(broken)


def test_an_edited_header_changes_the_source_cupy_caches(tmp_path, monkeypatch):
    """CuPy's disk cache is keyed on the source text only: a header edit must change it."""
    monkeypatch.setattr(kernels, "PROGRAMS", {})
    monkeypatch.setattr(kernels, "SOURCE_DIR", str(tmp_path))
    (tmp_path / "shared.cuh").write_text("#define SCALE 2\n")
    (tmp_path / "scale.cu").write_text('#include "shared.cuh"\n')
    program = kernels.Program("scale.cu", [])
    before = program.source
    assert before.startswith('#include "shared.cuh"\n')
    (tmp_path / "shared.cuh").write_text("#define SCALE 3\n")
    edited = program.source
    (tmp_path / "other.cuh").write_text("")
    assert len({before, edited, program.source}) == 3


def _kernel_resources(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
    import kernel_resources
    return kernel_resources


@pytest.mark.parametrize("registers, expected", [(24, 1.0), (32, 1.0), (40, 0.75), (64, 0.5),
                                                 (72, 0.375), (255, 0.125)])
def test_occupancy_follows_the_register_file(monkeypatch, registers, expected):
    """The CUDA occupancy calculator's values for blocks of 256 threads on sm_70 to sm_90."""
    assert _kernel_resources(monkeypatch).occupancy(registers, 256) == expected


def test_kernel_resources_says_what_to_install_without_ptxas(monkeypatch, capsys):
    kernel_resources = _kernel_resources(monkeypatch)
    monkeypatch.setattr(kernel_resources, "find_tool", lambda name: None)
    assert kernel_resources.main([]) == 1
    assert "pip install nvidia-cuda-nvcc-cu12" in capsys.readouterr().err


@needs_nvrtc
def test_kernel_resources_reads_every_kernel_of_a_file(monkeypatch, capsys):
    kernel_resources = _kernel_resources(monkeypatch)
    if kernel_resources.find_tool("ptxas") is None:
        pytest.skip("ptxas is not installed (pip install nvidia-cuda-nvcc-cu12)")
    assert kernel_resources.main(["--files", "im2col.cu,activations.cu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:-1]]
    # "im2col.cu: im2col<float, long long>  registers  spilled  occupancy  instructions"
    assert sorted(" ".join(row[1:-4]) for row in rows) == sorted(
        im2col.program.name_expressions + activations.program.name_expressions)
    for *_, registers, spilled, occupancy, instructions in rows:
        assert 0 < int(registers) <= 255 and spilled.endswith("B") and occupancy.endswith("%")
        assert int(instructions) > 0


@needs_nvrtc
def test_kernel_resources_counts_instructions_per_element_of_chunked_kernels(monkeypatch, capsys):
    """--per-element reads the machine code: a chunked kernel's count grows with its math, and a
    kernel that moves no 16-byte chunks has none."""
    kernel_resources = _kernel_resources(monkeypatch)
    if None in (kernel_resources.find_tool("ptxas"), kernel_resources.find_tool("nvdisasm")):
        pytest.skip("needs ptxas and nvdisasm (pip install nvidia-cuda-nvcc-cu12 "
                    "nvidia-cuda-nvdisasm)")
    assert kernel_resources.main(["--per-element", "--files", "activations.cu,reduce.cu"]) == 0
    rows = {" ".join(line.split()[1:-5]): line.split()[-1]
            for line in capsys.readouterr().out.splitlines()[1:-1]}
    relu, gelu = (float(rows[f"activation_forward<float, {kind}>"]) for kind in ("RELU", "GELU"))
    assert 0 < relu < gelu
    assert rows["sum_rows<float>"] == "-"


# --- NumPy references against the engine's CPU ops --------------------------------------------

ACTIVATIONS = {
    "relu": elementwise.relu,
    "leaky_relu": lambda x: elementwise.leaky_relu(x, 0.2),
    "silu": elementwise.silu,
    "gelu": elementwise.gelu,
    "gelu_tanh": lambda x: elementwise.gelu(x, approximate="tanh"),
    "sigmoid": elementwise.sigmoid,
    "tanh": elementwise.tanh,
}


@pytest.mark.parametrize("kind", sorted(ACTIVATIONS))
@ON_SPECIAL_VALUES
def test_activation_reference_matches_op(rng, kind):
    x = rng.normal(scale=3, size=(5, 7))
    x[0, :3] = (0.0, 40.0, -40.0)  # the kink, saturation and the left tail (sigma(-40) ~ 4e-18)
    x[1, :3] = (numpy.nan, numpy.inf, -numpy.inf)  # NaN stays NaN, relu's max(x, 0) included
    grad = rng.normal(size=x.shape)
    y, (dx,) = value_and_grads(ACTIVATIONS[kind], x, grad=grad)
    reference_y, derivative = activations.reference(kind, x, slope=0.2)
    numpy.testing.assert_allclose(reference_y, y, rtol=1e-12, atol=0)
    numpy.testing.assert_allclose(grad * derivative, dx, rtol=1e-12, atol=0)


def test_activation_reference_rejects_unknown_kind():
    with pytest.raises(ValueError, match="activation kind must be one of .* got 'swish'"):
        activations.reference("swish", numpy.zeros(2))


@pytest.mark.parametrize("shape, dim", [((4, 5, 6), 1), ((4, 5, 6), (1, 2)), ((4, 5, 6), None),
                                        ((7,), 0), ((3, 1, 5), (0, 1))])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("mean", [False, True])
def test_reduce_reference_matches_op(rng, shape, dim, keepdim, mean):
    x = rng.normal(size=shape)
    axes = reduce_ops.normalize_dims(dim, x.ndim)
    op = reduce_ops.mean if mean else reduce_ops.sum
    expected = op(minilean.tensor(x, dtype=x.dtype), dim, keepdim).numpy()
    numpy.testing.assert_allclose(reduce.reference(x, axes, keepdim, mean), expected, rtol=1e-12)


def test_reduce_layout_refuses_non_adjacent_axes():
    assert reduce.row_layout((2, 3, 4), (0, 2)) is None
    assert reduce.row_layout((2, 3, 4), ()) is None
    assert reduce.row_layout((2, 3, 4), (1, 2)) == (2, 12, 1)
    assert reduce.FastSum.covers(numpy.zeros((2, 3, 4), numpy.float32), axes=(0, 2)) is False


@pytest.mark.parametrize("shape, axis", [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((6,), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_reference_matches_op(rng, shape, axis, log):
    x = rng.normal(scale=4, size=shape)
    grad = rng.normal(size=shape)
    op = reduce_ops.log_softmax if log else reduce_ops.softmax
    y, (dx,) = value_and_grads(lambda t: op(t, axis), x, grad=grad)
    reference_y, vjp = softmax.reference(x, axis, log)
    numpy.testing.assert_allclose(reference_y, y, rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(vjp(reference_y, grad), dx, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("log", [False, True])
@ON_SPECIAL_VALUES
def test_softmax_reference_matches_op_on_rows_with_infinities_and_nan(log):
    """A +inf maximum shifts by 0 in both (softmax [0, nan, 0], not all nan)."""
    inf, nan = numpy.inf, numpy.nan
    x = numpy.array([[1.0, inf, 2.0], [-inf, -inf, -inf], [1.0, nan, 2.0], [inf, inf, 0.0],
                     [-inf, 0.0, 1.0]])
    op = reduce_ops.log_softmax if log else reduce_ops.softmax
    y = op(minilean.tensor(x, dtype=x.dtype), 1).numpy()
    numpy.testing.assert_array_equal(softmax.reference(x, 1, log)[0], y)
    assert numpy.isnan(y[0]).tolist() == [False, True, False]


@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
def test_layer_norm_reference_matches_op(rng, affine):
    x = rng.normal(loc=2, size=(3, 4, 6))
    weight, bias = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    grad = rng.normal(size=x.shape)
    used = [a for a, keep in zip((weight, bias), affine) if keep]

    def layer_norm(x, *params):
        named = dict(zip([n for n, keep in zip(("weight", "bias"), affine) if keep], params))
        return norm_ops.layer_norm(x, (4, 6), **named)

    y, grads = value_and_grads(layer_norm, x, *used, grad=grad)
    reference_y, vjp = norm.reference(x, norm.layer_norm_layout(x.shape, 2),
                                      weight.ravel() if affine[0] else None,
                                      bias.ravel() if affine[1] else None)
    dx, dweight, dbias = vjp(grad)
    numpy.testing.assert_allclose(reference_y, y, rtol=1e-10, atol=1e-12)
    expected = [dx] + [g.reshape(4, 6) for g, keep in zip((dweight, dbias), affine) if keep]
    for reference_grad, engine_grad in zip(expected, grads):
        numpy.testing.assert_allclose(reference_grad, engine_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 5), 3), ((3, 4, 7), 1), ((2, 4, 2, 2), 4)])
def test_group_norm_reference_matches_op(rng, shape, groups, activation):
    x = rng.normal(loc=-1, scale=2, size=shape)
    weight, bias = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    grad = rng.normal(size=shape)
    y, (dx, dweight, dbias) = value_and_grads(
        lambda x, w, b: norm_ops.group_norm(x, groups, w, b, activation=activation),
        x, weight, bias, grad=grad)
    reference_y, vjp = norm.reference(x, norm.group_norm_layout(shape, groups), weight, bias,
                                      silu=activation == "silu")
    numpy.testing.assert_allclose(reference_y, y, rtol=1e-10, atol=1e-12)
    for reference_grad, engine_grad in zip(vjp(grad), (dx, dweight, dbias)):
        numpy.testing.assert_allclose(reference_grad, engine_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_reference_matches_op(rng, reduction):
    input, target = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
    grad = rng.normal(size=input.shape) if reduction == "none" else None
    out, (d_input, d_target) = value_and_grads(
        lambda a, b: loss.mse_loss(a, b, reduction=reduction), input, target, grad=grad)
    reference_out, derivative = mse.reference(input, target, reduction)
    scale = 1 if grad is None else grad
    numpy.testing.assert_allclose(reference_out, out, rtol=1e-12)
    numpy.testing.assert_allclose(derivative * scale, d_input, rtol=1e-12)
    numpy.testing.assert_allclose(-derivative * scale, d_target, rtol=1e-12)


def test_q_sample_reference_matches_diffusion(rng):
    diffusion = pytest.importorskip("minilean.models.diffusion")
    alpha_bar = diffusion.alpha_bars(diffusion.make_betas("linear", 50))
    x0, eps = rng.normal(size=(4, 3, 5, 5)), rng.normal(size=(4, 3, 5, 5))
    t = numpy.array([0, 49, 17, 17])
    grad = rng.normal(size=x0.shape)
    out, (d_x0, d_eps) = value_and_grads(
        lambda a, b: diffusion.q_sample(alpha_bar, a, t, b), x0, eps, grad=grad)
    reference_out, (signal, noise) = noising.reference(x0, eps, alpha_bar, t)
    numpy.testing.assert_allclose(reference_out, out, rtol=1e-12)
    numpy.testing.assert_allclose(signal * grad, d_x0, rtol=1e-12)
    numpy.testing.assert_allclose(noise * grad, d_eps, rtol=1e-12)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_reference_matches_optimizer_update(rng, decoupled):
    optim_adam = pytest.importorskip("minilean.optim.adam")
    shapes = [(3, 4), (5,), (2, 1, 3)]
    params = [rng.normal(size=s) for s in shapes]
    grads = [rng.normal(size=s) for s in shapes]
    moments = [[rng.normal(size=s) for s in shapes], [rng.random(size=s) for s in shapes]]
    settings = dict(step=3, lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1,
                    decoupled=decoupled)
    expected = [[a.copy() for a in role] for role in (params, moments[0], moments[1])]
    optim_adam.adam_update(expected[0], grads, expected[1], expected[2], **settings)
    for k in range(len(shapes)):
        new = adam.reference(params[k], grads[k], moments[0][k], moments[1][k], **settings)
        for reference_array, engine_array in zip(new, (role[k] for role in expected)):
            numpy.testing.assert_allclose(reference_array, engine_array, rtol=1e-12)


def test_adam_reference_without_weight_decay_keeps_an_infinite_weight_out_of_the_moments():
    """Adam without weight decay adds nothing to the gradient, as the plain update and the
    kernel: 0 * inf would make the moments of an infinite weight NaN."""
    param, exp_avg, exp_avg_sq = adam.reference(
        numpy.array([numpy.inf, 1.0]), numpy.array([0.5, 0.5]), numpy.zeros(2), numpy.zeros(2),
        step=1, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)
    assert param[0] == numpy.inf
    numpy.testing.assert_allclose(exp_avg, [0.05, 0.05], rtol=1e-12)
    numpy.testing.assert_allclose(exp_avg_sq, [0.00025, 0.00025], rtol=1e-12)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_reference_matches_torch(rng, decoupled):
    torch = pytest.importorskip("torch")
    param, exp_avg, exp_avg_sq = rng.normal(size=7), numpy.zeros(7), numpy.zeros(7)
    weight = torch.tensor(param.copy(), requires_grad=True)
    optimizer = (torch.optim.AdamW if decoupled else torch.optim.Adam)(
        [weight], lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    for step in range(1, 4):
        grad = rng.normal(size=7)
        weight.grad = torch.tensor(grad)
        optimizer.step()
        param, exp_avg, exp_avg_sq = adam.reference(
            param, grad, exp_avg, exp_avg_sq, step=step, lr=0.05, beta1=0.8, beta2=0.95,
            eps=1e-6, weight_decay=0.1, decoupled=decoupled)
    numpy.testing.assert_allclose(param, weight.detach().numpy(), rtol=1e-12)


def test_ema_reference_matches_ema_update(rng):
    optim_ema = pytest.importorskip("minilean.optim.ema")
    averages, params = [rng.normal(size=(3, 2)), rng.normal(size=4)], [rng.normal(size=(3, 2)),
                                                                       rng.normal(size=4)]
    expected = [a.copy() for a in averages]
    optim_ema.ema_update(expected, params, 0.9)
    for average, param, engine in zip(averages, params, expected):
        numpy.testing.assert_allclose(ema.reference(average, param, 0.9), engine, rtol=1e-12)


@pytest.mark.parametrize("max_norm", [1.5, 1e3])  # the norm (about 22) above it, and below
@pytest.mark.parametrize("special", [None, numpy.nan, numpy.inf])
@ON_SPECIAL_VALUES
def test_clip_reference_matches_clip_grad_norm(rng, special, max_norm):
    """Also for a NaN norm (every gradient NaN, as min(1, nan) makes them) and an infinite one."""
    from minilean.optim.clip import clip_arrays
    grads = [rng.normal(size=(3, 4)), rng.normal(size=5) * 10]
    if special is not None:
        grads[1][3] = special
    expected, norm = clip.reference(grads, max_norm, 1e-6)
    got = [grad.copy() for grad in grads]
    numpy.testing.assert_allclose(clip_arrays(got, max_norm, 1e-6), norm, rtol=1e-15)
    for a, b in zip(got, expected):
        numpy.testing.assert_allclose(a, b, rtol=1e-15)


CONVOLUTIONS = [  # (x shape, weight shape, stride, padding, dilation, groups)
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 9, 8), (6, 2, 3, 2), (2, 3), (1, 0), (1, 2), 2),
    ((2, 2, 5, 5), (2, 2, 1, 1), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONVOLUTIONS)
def test_im2col_reference_gives_conv2d(rng, x_shape, w_shape, stride, padding, dilation, groups):
    """The GEMM FastConv2d runs, on the reference columns, equals conv2d and its gradients."""
    x, weight = rng.normal(size=x_shape), rng.normal(size=w_shape)
    out_shape = conv2d(minilean.tensor(x), minilean.tensor(weight), None, stride, padding,
                       dilation, groups).shape
    grad = rng.normal(size=out_shape)
    y, (dx, dweight) = value_and_grads(
        lambda a, b: conv2d(a, b, None, stride, padding, dilation, groups), x, weight, grad=grad)
    out_channels, groups_rows = w_shape[0], (groups, w_shape[0] // groups, -1)
    columns = im2col.im2col_reference(x, w_shape[2:], stride, padding, dilation)
    assert columns.shape == (x_shape[1],) + w_shape[2:] + (x_shape[0],) + y.shape[2:]
    columns = columns.reshape(groups, -1, columns[0, 0, 0].size)  # (G, C/G Kh Kw, N Ho Wo)
    weight_matrix = weight.reshape(groups_rows)  # (G, O/G, C/G Kh Kw)
    y_rows = (weight_matrix @ columns).reshape((out_channels,) + y.shape[:1] + y.shape[2:])
    numpy.testing.assert_allclose(im2col.swap_leading_axes_reference(y_rows), y, rtol=1e-10)
    grad_rows = im2col.swap_leading_axes_reference(grad).reshape(groups_rows)  # (G, O/G, N Ho Wo)
    grad_columns = (weight_matrix.transpose(0, 2, 1) @ grad_rows).reshape(
        (x_shape[1],) + w_shape[2:] + (x_shape[0],) + y.shape[2:])  # (C, Kh, Kw, N, Ho, Wo)
    numpy.testing.assert_allclose(
        im2col.col2im_reference(grad_columns, x_shape, w_shape[2:], stride, padding, dilation),
        dx, rtol=1e-10, atol=1e-12)
    grad_weight = grad_rows @ columns.transpose(0, 2, 1)  # (G, O/G, C/G Kh Kw)
    numpy.testing.assert_allclose(grad_weight.reshape(w_shape), dweight, rtol=1e-10)


def test_im2col_takes_int_indices_up_to_two_to_the_31_elements():
    """The flat indices of 2^31 elements run to 2^31 - 1, the largest int."""
    float32 = numpy.dtype(numpy.float32)
    assert im2col._kernel_name("im2col", float32, 2 ** 31) == "im2col<float, int>"
    assert im2col._kernel_name("col2im", float32, 2 ** 31 + 1) == "col2im<float, long long>"


def test_swap_leading_axes_reference_adds_the_bias_per_channel(rng):
    src = rng.normal(size=(3, 2, 4))
    bias = numpy.array([1.0, -2.0, 0.5])
    swapped = im2col.swap_leading_axes_reference(src, bias)
    assert swapped.shape == (2, 3, 4)
    for a in range(3):
        numpy.testing.assert_array_equal(swapped[:, a], src[a] + bias[a])


def test_graph_matmul_splits_only_a_long_inner_axis_of_a_small_product():
    """A weight gradient's 82 output tiles over 8192 products get more blocks, no more than
    ENOUGH_BLOCKS in all and none with fewer than MIN_SLABS_PER_PART slabs; a forward's 1024
    tiles, or an inner axis too short to cut, stay whole."""
    parts = matmul.inner_parts(tiles=82, batches=1, inner=8192)
    assert parts > 1 and parts * 82 <= matmul.ENOUGH_BLOCKS
    assert 8192 / parts >= matmul.TILE * matmul.MIN_SLABS_PER_PART
    assert matmul.inner_parts(tiles=1024, batches=1, inner=216) == 1
    assert matmul.inner_parts(tiles=1, batches=1, inner=100) == 1
    # whole parts (the grid's y): ENOUGH_BLOCKS // tiles, or as many as the slabs allow
    assert matmul.inner_parts(tiles=82, batches=1, inner=8192) == matmul.ENOUGH_BLOCKS // 82
    assert matmul.inner_parts(tiles=1, batches=1, inner=1000) == 1000 // (
        matmul.TILE * matmul.MIN_SLABS_PER_PART)
    assert matmul.inner_parts(tiles=1, batches=1, inner=1 << 20) == matmul.ENOUGH_BLOCKS


# --- fallback and wiring, no GPU needed ---------------------------------------------------------

def test_fast_function_runs_the_op_where_the_kernel_does_not_cover():
    registry.install(True)
    try:
        x = numpy.array([-1.5, 0.0, 2.0], dtype=numpy.float16)
        ctx = Context((True,), True)
        out = activations.FastRelu.forward(ctx, x)
        assert ctx.by_kernel is False
        numpy.testing.assert_array_equal(out, elementwise.Relu.forward(Context((True,), True), x))
        numpy.testing.assert_array_equal(activations.FastRelu.backward(ctx, numpy.ones_like(x)),
                                         [0, 0, 1])
    finally:
        registry.install(False)


def test_install_names_the_ops_and_slots_it_cannot_find(monkeypatch):
    """An entry whose module or class is gone (a renamed op) is reported, not a crash, and
    the entries found are still filled; ``install()`` alone switches the kernels on."""
    monkeypatch.setattr(registry, "FAST_FUNCTIONS", registry.FAST_FUNCTIONS + (
        ("minilean.autograd.elementwise", "Gone", activations.FastRelu),))
    monkeypatch.setattr(registry, "FAST_SLOTS", registry.FAST_SLOTS + (
        ("minilean.no_such_module", None, "gone_slot", None),))
    try:
        assert registry.install() == ["minilean.autograd.elementwise.Gone",
                                      "minilean.no_such_module.gone_slot"]
        assert elementwise.Relu.fast is activations.FastRelu
    finally:
        registry.install(False)


def test_use_fast_kernels_fills_and_empties_the_slots():
    missing = use_fast_kernels(True)
    try:
        assert missing == []  # every op the registry names exists
        assert diffusion_ops.QSample.fast is noising.FastQSample
        assert registry.installed()
        assert elementwise.Relu.fast is activations.FastRelu
        assert elementwise.Gelu.fast is activations.FastGelu
        assert reduce_ops.Softmax.fast is softmax.FastSoftmax
        assert norm_ops.GroupNorm.fast is norm.FastGroupNorm
        assert loss.MseLoss.fast is mse.FastMseLoss
        assert activations.FastRelu.replaces is elementwise.Relu
        filled = registry.installed()
        for module_name, class_name, fast in registry.FAST_FUNCTIONS:
            assert filled[f"{module_name}.{class_name}"] is fast
    finally:
        assert use_fast_kernels(False) == missing
    assert registry.installed() == {}
    assert elementwise.Relu.fast is None


def test_module_slots_are_filled_unbound():
    optim_adam = pytest.importorskip("minilean.optim.adam")
    optim_ema = pytest.importorskip("minilean.optim.ema")
    optim_clip = pytest.importorskip("minilean.optim.clip")
    use_fast_kernels(True)
    try:
        # the optimizers call self.fast_update(...): it must not bind the optimizer as a param
        assert optim_adam.AdamW.__dict__.get("fast_update") is None
        assert optim_adam.Adam.__dict__["fast_update"].__func__ is adam.fused_adam_update
        assert optim_ema.EMA.__dict__["fast_update_arrays"].__func__ is ema.fused_ema_update
        assert optim_clip.fast_clip_arrays is clip.fused_clip_arrays  # a module's slot: plain
        assert registry.installed()["minilean.optim.clip.fast_clip_arrays"] is \
            clip.fused_clip_arrays
        assert function.fast_sum_kept is reduce.sum_kept
    finally:
        use_fast_kernels(False)
    assert optim_adam.Adam.fast_update is None and optim_ema.EMA.fast_update_arrays is None
    assert optim_clip.fast_clip_arrays is None and function.fast_sum_kept is None


def test_cpu_tensors_ignore_fast_kernels():
    use_fast_kernels(True)
    try:
        x = leaf(numpy.array([-1.0, 2.0], dtype=numpy.float32))
        y = elementwise.relu(x)
        assert y.grad_fn.function is elementwise.Relu
    finally:
        use_fast_kernels(False)


def test_use_fast_kernels_is_exported():
    assert minilean.use_fast_kernels is use_fast_kernels
