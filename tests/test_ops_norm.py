"""layer_norm and group_norm (fused primitives): gradcheck and torch oracle with and without
the affine weight and bias, group_norm with its SiLU fused, wide statistics for float16, and
bad arguments."""
import re

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minilean as ml
from minilean import backend
from minilean.autograd.norm import group_norm, layer_norm
from opcheck import OpCase, arrays, op_tests


def _functional():
    import torch.nn.functional
    return torch.nn.functional


@st.composite
def affine(draw, shape):
    """The optional weight and bias of ``shape`` (drawn present or absent)."""
    has_weight, has_bias = draw(st.booleans()), draw(st.booleans())
    values = tuple(draw(arrays(shape)) for present in (has_weight, has_bias) if present)
    return values, {"has_weight": has_weight, "has_bias": has_bias}


def split_affine(affine_tensors, has_weight, has_bias):
    """(weight, bias) with None for an absent one."""
    remaining = list(affine_tensors)
    weight = remaining.pop(0) if has_weight else None
    return weight, (remaining.pop(0) if has_bias else None)


@st.composite
def layer_norm_operands(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    normalized = shape[len(shape) - draw(st.integers(1, len(shape))):]
    values, params = draw(affine(normalized))
    if int(np.prod(normalized)) == 1:  # one element has zero variance: xhat is 0, not useful
        normalized = shape = shape[:-1] + (2,)
        values, params = draw(affine(normalized))
    return (draw(arrays(shape)),) + values, dict(params, normalized_shape=normalized)


@st.composite
def group_norm_operands(draw):
    groups, per_group = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    spatial = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    if per_group * int(np.prod(spatial)) == 1:
        spatial = (2,)
    shape = (draw(st.integers(1, 2)), groups * per_group) + spatial
    values, params = draw(affine((groups * per_group,)))
    return (draw(arrays(shape)),) + values, dict(params, num_groups=groups)


def ours_layer(x, *affine_tensors, normalized_shape, has_weight, has_bias):
    return layer_norm(x, normalized_shape, *split_affine(affine_tensors, has_weight, has_bias))


def torch_layer(x, *affine_tensors, normalized_shape, has_weight, has_bias):
    weight, bias = split_affine(affine_tensors, has_weight, has_bias)
    return _functional().layer_norm(x, normalized_shape, weight, bias, 1e-5)


def ours_group(x, *affine_tensors, num_groups, has_weight, has_bias):
    return group_norm(x, num_groups, *split_affine(affine_tensors, has_weight, has_bias))


def torch_group(x, *affine_tensors, num_groups, has_weight, has_bias):
    weight, bias = split_affine(affine_tensors, has_weight, has_bias)
    if weight is None and bias is not None:  # torch's CPU kernel fails on a bias alone
        weight = x.new_ones(x.shape[1])
    return _functional().group_norm(x, num_groups, weight, bias, 1e-5)


def ours_group_silu(x, *affine_tensors, num_groups, has_weight, has_bias):
    return group_norm(x, num_groups, *split_affine(affine_tensors, has_weight, has_bias),
                      activation="silu")


def torch_group_silu(x, *affine_tensors, **params):
    return _functional().silu(torch_group(x, *affine_tensors, **params))


CASES = [
    OpCase("layer_norm", layer_norm_operands(), ours_layer, torch_layer),
    OpCase("group_norm", group_norm_operands(), ours_group, torch_group),
    OpCase("group_norm_silu", group_norm_operands(), ours_group_silu, torch_group_silu),
]

test_gradcheck, test_matches_torch = op_tests(CASES)


@pytest.mark.parametrize("normalize", [lambda x: layer_norm(x, 256),
                                       lambda x: group_norm(x.reshape(2, 4, 64), 2)])
def test_float16_statistics_are_computed_wide(normalize):
    rng = np.random.default_rng(0)
    # a large offset with a small spread: a float16 mean and variance would lose the spread
    values = (300 + rng.standard_normal((2, 256))).astype(np.float16)
    out = normalize(ml.tensor(values, dtype=np.float16))
    reference = normalize(ml.tensor(values.astype(np.float64), dtype=ml.float64))
    assert out.dtype == np.float16
    # |y| < 4 here, where float16's spacing is 2^-9: rounding the output costs half of it. The
    # one-pass variance E[x^2] - E[x]^2, even in float32, cancels away the spread (~1.5e-2).
    np.testing.assert_allclose(out.numpy().astype(np.float64).reshape(2, 256),
                               reference.numpy().reshape(2, 256), rtol=0, atol=2.0 ** -9)


@pytest.mark.parametrize("normalize", [lambda x: layer_norm(x, (4,)),
                                       lambda x: group_norm(x, 2)])
def test_integer_inputs_are_normalized_in_float32(normalize):
    """Like the other real-valued ops (``floating``); the result was cast back to int64,
    every standardised value truncated to -1, 0 or 1."""
    values = np.arange(8).reshape(2, 4)
    out = normalize(ml.tensor(values))
    expected = normalize(ml.tensor(values, dtype=ml.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), expected.numpy())


def test_only_needed_gradients_are_computed():
    x = ml.randn(2, 4, 3, requires_grad=True)
    weight, bias = ml.ones(4), ml.zeros(4, requires_grad=True)
    group_norm(x, 2, weight, bias).sum().backward()
    assert weight.grad is None and bias.grad.shape == (4,) and x.grad.shape == x.shape


def test_bad_arguments_name_the_values():
    x = ml.ones(2, 6, 3)
    with pytest.raises(ValueError, match=r"normalized_shape \(4,\) must match the last axes"):
        layer_norm(x, 4)
    with pytest.raises(ValueError, match=r"layer_norm weight has shape \(2,\), expected \(3,\)"):
        layer_norm(x, 3, ml.ones(2))
    with pytest.raises(ValueError, match="num_groups 4 must divide the 6 channels"):
        group_norm(x, 4)
    with pytest.raises(ValueError, match=r"group_norm bias has shape \(3,\), expected \(6,\)"):
        group_norm(x, 3, None, ml.ones(3))
    with pytest.raises(ValueError, match=r"group_norm activation must be one of "
                                         r"\(None, 'silu'\), got 'gelu'"):
        group_norm(x, 3, activation="gelu")
    # None was NaN everywhere with fast kernels on (float32(None)), NumPy's TypeError without
    for eps in (None, -1e-5, float("nan"), True):
        for name, norm in (("layer_norm", lambda: layer_norm(x, 3, eps=eps)),
                           ("group_norm", lambda: group_norm(x, 3, eps=eps))):
            with pytest.raises(ValueError, match=f"^{name} eps must be a finite number >= 0, "
                                                 f"got {eps!r}$"):
                norm()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("shape", [(0, 4, 3, 3), (2, 4, 0, 3)])
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0/0: no positions
def test_group_norm_of_an_empty_batch_is_an_empty_batch(channels_last, activation, shape):
    """No samples, or no positions: the output and dx are empty, and db (a sum over no
    elements) is 0; so is dw without samples (with samples but no positions, their mean and
    variance are 0/0 and dw is nan, as in PyTorch)."""
    values = np.zeros(shape, np.float32)
    if channels_last:  # a convolution's output layout: the other code path
        values = np.moveaxis(np.zeros(shape[:1] + shape[2:] + shape[1:2], np.float32), -1, 1)
    x = ml.tensor(values, requires_grad=True)
    weight, bias = ml.ones(4, requires_grad=True), ml.zeros(4, requires_grad=True)
    out = group_norm(x, 2, weight, bias, activation=activation)
    out.sum().backward()
    assert out.shape == x.grad.shape == shape
    assert bias.grad.numpy().tolist() == [0.0] * 4
    if shape[0] == 0:
        assert weight.grad.numpy().tolist() == [0.0] * 4


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-13), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(2, 5, 3), (3, 7, 2, 4), (1, 1, 6), (2, 9, 1, 1)])
def test_sum_middle_axis_is_numpys_sum_over_axis_1(shape, dtype, tolerance):
    array = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    summed = backend.sum_middle_axis(array)
    assert summed.dtype == dtype  # as NumPy's sum: float32 stays float32
    np.testing.assert_allclose(summed, array.sum(axis=1, keepdims=True), rtol=tolerance,
                               atol=tolerance)


def _group_norm_reference(x, num_groups, weight, bias, silu):
    """GroupNorm in float64 NumPy, from its definition."""
    grouped = x.reshape(x.shape[0], num_groups, -1)
    xhat = (grouped - grouped.mean(-1, keepdims=True)) / np.sqrt(grouped.var(-1, keepdims=True)
                                                                 + 1e-5)
    channel = (1, -1) + (1,) * (x.ndim - 2)
    out = xhat.reshape(x.shape) * weight.reshape(channel) + bias.reshape(channel)
    return out / (1 + np.exp(-out)) if silu else out


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("spatial", [(3, 5), (7,)])
def test_group_norm_of_channels_last_memory(spatial, activation):
    """A convolution returns NCHW views of channels-last memory, which group_norm normalises
    in place of a copy (its other code path): values against NumPy, gradients against finite
    differences."""
    rng = np.random.default_rng(0)
    channels_last = rng.standard_normal((2, *spatial, 6))  # (N, *spatial, C) in memory
    weight, bias = rng.standard_normal(6), rng.standard_normal(6)
    tensors = [ml.tensor(a, requires_grad=True) for a in (channels_last, weight, bias)]
    to_nchw = (0, len(spatial) + 1) + tuple(range(1, len(spatial) + 1))

    def normalize(x, w, b):
        return group_norm(x.permute(*to_nchw), 3, w, b, activation=activation)

    expected = _group_norm_reference(channels_last.transpose(to_nchw), 3, weight, bias,
                                     activation == "silu")
    np.testing.assert_allclose(normalize(*tensors).numpy(), expected, rtol=1e-10, atol=1e-12)
    assert ml.gradcheck(normalize, tensors)



@pytest.mark.parametrize("value, length", [(12345.678, 100), (1000.1, 1000), (0.1, 10000)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_a_constant_row_or_group_standardises_to_zero(value, length, channels_last):
    """A float32 row of one value has xhat = 0, so y = b exactly (as in PyTorch). Centred on a
    mean computed as a float32 sum, its rounding times 1 / sqrt(eps) gave layer_norm of 100
    values of 12345.678 +-0.53 and group_norm +-0.3."""
    rows = np.full((3, length), value, np.float32)
    bias = np.linspace(-1, 1, length).astype(np.float32)
    weight = ml.tensor(np.full(length, 2.0, np.float32))
    out = layer_norm(ml.tensor(rows), length, weight, ml.tensor(bias)).numpy()
    np.testing.assert_array_equal(out, np.broadcast_to(bias, rows.shape))
    # group_norm: 2 groups of 2 channels of length / 4 positions, each group one value
    groups = np.concatenate([rows[:, :length // 2], -rows[:, length // 2:]], axis=1)
    x = groups.reshape(3, 4, length // 4)  # (N, C, S)
    if channels_last:  # the same values in (N, S, C) memory, as a convolution returns them
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    out = group_norm(ml.tensor(x), 2, ml.tensor(np.full(4, 2.0, np.float32)),
                     ml.tensor(np.arange(4, dtype=np.float32))).numpy()
    np.testing.assert_array_equal(out, np.broadcast_to(np.arange(4.0)[:, None], x.shape))

@pytest.mark.parametrize("normalize", [lambda x, w, b: layer_norm(x, 4, w, b),
                                       lambda x, w, b: group_norm(x, 2, w, b)])
def test_affine_gradients_without_an_input_gradient(normalize):
    """The first layer's input needs no gradient; the weight's and bias's are still right."""
    rng = np.random.default_rng(0)
    x = ml.tensor(rng.standard_normal((3, 4)))
    weight, bias = (ml.tensor(rng.standard_normal(4), requires_grad=True) for _ in range(2))
    assert ml.gradcheck(normalize, [x, weight, bias])
    assert x.grad is None


def test_degenerate_shapes_and_groups_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"normalized_shape \(\) must match the last axes"):
        layer_norm(ml.ones(2, 3), ())
    with pytest.raises(ValueError, match=r"group_norm needs an input of shape \(N, C, \.\.\.\), "
                                         r"got \(6,\)"):
        group_norm(ml.ones(6), 3)
    with pytest.raises(ValueError, match="num_groups 0 must divide the 6 channels"):
        group_norm(ml.ones(2, 6), 0)


@pytest.mark.parametrize("groups", [2.0, True, "2"])
def test_group_norm_refuses_groups_that_are_not_an_int(groups):
    """A float failed in NumPy's words (reshape's), a bool ran as 1 group with fast kernels
    only; a NumPy integer is an int (tests/test_fake_device.py runs one on the fast kernels)."""
    with pytest.raises(ValueError, match=f"group_norm num_groups must be an int, got "
                                         f"{re.escape(repr(groups))}"):
        group_norm(ml.ones(2, 6), groups)
    np.testing.assert_array_equal(group_norm(ml.ones(2, 6, 2), np.int64(3)).numpy(),
                                  group_norm(ml.ones(2, 6, 2), 3).numpy())
