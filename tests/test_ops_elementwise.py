"""Elementwise ops: gradcheck over broadcast / size-1 / non-contiguous operands, and PyTorch
as an oracle for values and gradients (see tests/opcheck.py)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minilean as ml
from minilean.autograd import elementwise as ew
from opcheck import OpCase, away_from, binary, op_tests, positive, unary


def _torch():
    import torch
    return torch


def _functional():
    import torch.nn.functional
    return torch.nn.functional


def nonzero(values):
    return np.sign(values) * positive(values)


@st.composite
def condition_and_pair(draw):
    (a, b), _ = draw(binary())
    shape = np.broadcast_shapes(a.shape, b.shape)
    condition = np.random.default_rng(draw(st.integers(0, 99))).random(shape) < 0.5
    return (a, b), {"condition": condition}


CASES = [
    OpCase("add", binary(), lambda a, b: a + b, lambda a, b: a + b),
    OpCase("sub", binary(), lambda a, b: a - b, lambda a, b: a - b),
    OpCase("mul", binary(), lambda a, b: a * b, lambda a, b: a * b),
    OpCase("div", binary(transform_b=nonzero), lambda a, b: a / b, lambda a, b: a / b),
    OpCase("pow", binary(transform_a=positive), lambda a, b: a ** b, lambda a, b: a ** b),
    OpCase("neg", unary(), lambda x: -x, lambda x: -x),
    OpCase("scalar_left", unary(transform=nonzero),
           lambda x: (2.0 - x) * (3.0 / x) + 1.5 ** x, lambda x: (2.0 - x) * (3.0 / x) + 1.5 ** x),
    OpCase("scalar_right", unary(transform=positive),
           lambda x: (x + 2.0) * 0.5 - x ** 2.5 / 4.0, lambda x: (x + 2.0) * 0.5 - x ** 2.5 / 4.0),
    OpCase("exp", unary(), ml.exp, lambda x: x.exp()),
    OpCase("log", unary(transform=positive), ml.log, lambda x: x.log()),
    OpCase("sqrt", unary(transform=positive), ml.sqrt, lambda x: x.sqrt()),
    OpCase("rsqrt", unary(transform=positive), ml.rsqrt, lambda x: x.rsqrt()),
    OpCase("abs", unary(transform=away_from(0)), ml.abs, lambda x: x.abs()),
    OpCase("clamp", unary(transform=away_from(-0.5, 0.5)),
           lambda x: ml.clamp(x, -0.5, 0.5), lambda x: x.clamp(-0.5, 0.5)),
    OpCase("clamp_min", unary(transform=away_from(0.2)),
           lambda x: x.clamp(min=0.2), lambda x: x.clamp(min=0.2)),
    OpCase("maximum", binary(), ml.maximum, lambda a, b: _torch().maximum(a, b)),
    OpCase("minimum", binary(), ml.minimum, lambda a, b: _torch().minimum(a, b)),
    OpCase("where", condition_and_pair(),
           lambda a, b, condition: ml.where(condition, a, b),
           lambda a, b, condition: _torch().where(_torch().tensor(condition), a, b)),
    OpCase("sin", unary(), ml.sin, lambda x: x.sin()),
    OpCase("cos", unary(), ml.cos, lambda x: x.cos()),
    OpCase("tanh", unary(), ml.tanh, lambda x: x.tanh()),
    OpCase("sigmoid", unary(), ml.sigmoid, lambda x: x.sigmoid()),
    OpCase("relu", unary(transform=away_from(0)), ml.relu, lambda x: x.relu()),
    OpCase("leaky_relu", unary(transform=away_from(0)),
           lambda x: ew.leaky_relu(x, 0.1), lambda x: _functional().leaky_relu(x, 0.1)),
    OpCase("silu", unary(), ew.silu, lambda x: _functional().silu(x)),
    OpCase("gelu", unary(), ew.gelu, lambda x: _functional().gelu(x)),
    OpCase("gelu_tanh", unary(), lambda x: ew.gelu(x, approximate="tanh"),
           lambda x: _functional().gelu(x, approximate="tanh")),
]

test_gradcheck, test_matches_torch = op_tests(CASES)


def test_maximum_splits_the_gradient_of_a_tie():
    a = ml.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = ml.tensor([2.0, 2.0, 2.0], requires_grad=True)
    ml.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 0.5, 0.0])


def test_sigmoid_and_tanh_do_not_overflow():
    x = ml.tensor([-1000.0, 0.0, 1000.0], dtype=ml.float64)
    with np.errstate(over="raise"):
        np.testing.assert_allclose(ml.sigmoid(x).numpy(), [0.0, 0.5, 1.0])
        np.testing.assert_allclose(ml.tanh(x).numpy(), [-1.0, 0.0, 1.0])


@given(st.sampled_from([np.float32, np.float64]))
def test_ops_keep_the_dtype_of_a_tensor_mixed_with_python_scalars(dtype):
    x = ml.ones(2, 3, dtype=dtype, requires_grad=True)
    y = 2.0 * x - 1 / (x + 1.5) ** 2
    assert y.dtype == dtype
    y.sum().backward()
    assert x.grad.dtype == dtype


def test_bad_parameters_name_the_value():
    x = ml.ones(2)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'erf'"):
        ew.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="clamp needs at least one of min and max"):
        ml.clamp(x)
