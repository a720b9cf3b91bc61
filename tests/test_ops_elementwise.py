"""Elementwise ops: gradcheck over broadcast / size-1 / non-contiguous operands, and PyTorch
as an oracle for values and gradients (see tests/opcheck.py)."""
import importlib
import importlib.util
import math
import operator
import re
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minilean as ml
from minilean.autograd import elementwise as ew
from minilean.autograd.function import Context
from opcheck import (OpCase, arrays, away_from, binary, gradient_dtype_spy, op_tests, positive,
                     unary)


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
    OpCase("softplus", unary(), ew.softplus, lambda x: _functional().softplus(x)),
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


@pytest.mark.parametrize("op", [ml.maximum, ml.minimum])
def test_maximum_and_minimum_pass_a_float32_gradient_on_in_float32(op):
    """Only the leaves' gradients are cast to their dtype: a float64 gradient from the middle
    of a float32 graph would make every op before it compute its backward in float64."""
    spy, seen = gradient_dtype_spy()
    x = ml.tensor([1.0, 2.0, 3.0], requires_grad=True)
    op(spy.apply(x), 2.0).sum().backward()
    assert seen == [np.float32]
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 1.0] if op is ml.maximum
                                  else [1.0, 0.5, 0.0])


def test_python_abs_of_a_tensor_is_the_abs_op():
    x = ml.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    abs(x).sum().backward()  # without __abs__, Python's abs() raised a TypeError
    np.testing.assert_array_equal(x.grad.numpy(), [-1.0, 0.0, 1.0])


def test_the_method_forms_compute_the_ops_they_name():
    """``x.sub(y)``, ``[[...]] @ x`` and the rest, against NumPy on the same float64 values:
    each method hands its operands, in order, to the op of its name."""
    a, b = np.array([[0.5, 2.0], [3.0, 4.0]]), np.array([[1.0, -1.0], [0.25, 8.0]])
    x, y = ml.tensor(a), ml.tensor(b)
    cases = [(x.add(y), a + b), (x.sub(y), a - b), (x.mul(y), a * b), (x.div(y), a / b),
             (x.pow(y), a ** b), (x.neg(), -a), (x.rsqrt(), 1 / np.sqrt(a)),
             (x.maximum(y), np.maximum(a, b)), (x.minimum(y), np.minimum(a, b)),
             (x.square(), a * a), (b.tolist() @ x, b @ a)]
    for got, expected in cases:
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-15)


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


HALF_WITH_NUMBERS = [
    lambda lib, t: t * 65536.0, lambda lib, t: t / 1e5, lambda lib, t: t * 1e-8,
    lambda lib, t: t / 1e-5, lambda lib, t: 1e-5 * t, lambda lib, t: t * 70000,
    lambda lib, t: t * lib.tensor(1e5, dtype=lib.float64)]
HALF_VALUES = np.array([1e-3, 0.5, 2.0, 1000.0], dtype=np.float16)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # to inf, as meant
@pytest.mark.parametrize("expression", HALF_WITH_NUMBERS)
def test_a_float16_tensor_with_a_number_is_the_float32_result_rounded_once(expression):
    """The number was rounded to float16 first: ``half_x * 65536`` was inf, ``half_x / 1e5``
    zeros, ``half_x / 1e-5`` 0.2% off (1e-5 is a float16 subnormal)."""
    out = expression(ml, ml.tensor(HALF_VALUES))
    in_float32 = expression(ml, ml.tensor(HALF_VALUES.astype(np.float32))).numpy()
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out.numpy(), in_float32.astype(np.float16))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # to inf, as meant
@pytest.mark.parametrize("expression", HALF_WITH_NUMBERS)
def test_a_float16_tensor_with_a_number_and_its_gradient_are_pytorchs(expression):
    torch = pytest.importorskip("torch")
    x = ml.tensor(HALF_VALUES, requires_grad=True)
    reference = torch.tensor(HALF_VALUES, requires_grad=True)
    out, expected = expression(ml, x), expression(torch, reference)
    np.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
    upstream = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float16)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    assert x.grad.dtype == np.float16
    np.testing.assert_allclose(x.grad.numpy(), reference.grad.numpy(), rtol=2e-3)


# --- Python scalars with integer and bool tensors: PyTorch's result dtype ---------------------

# (tensor, expression, dtype, values): a float with an integer or bool tensor gives float32, an
# int with a bool tensor int64; otherwise the tensor's dtype is kept.
SCALAR_CASES = [
    ("int", lambda t: t * 0.5, np.float32, [0, 0.5, 1, 1.5]),
    ("int", lambda t: 0.5 * t, np.float32, [0, 0.5, 1, 1.5]),
    ("int", lambda t: t + 0.5, np.float32, [0.5, 1.5, 2.5, 3.5]),
    ("int", lambda t: 0.5 - t, np.float32, [0.5, -0.5, -1.5, -2.5]),
    ("int", lambda t: t ** 0.5, np.float32, np.sqrt([0, 1, 2, 3])),
    ("int", lambda t: 1.5 ** t, np.float32, [1, 1.5, 2.25, 3.375]),
    ("int", lambda t: t / 2, np.float32, [0, 0.5, 1, 1.5]),
    ("int", lambda t: 3 / (t + 1), np.float32, [3, 1.5, 1, 0.75]),
    ("int", lambda t: t * 2, np.int64, [0, 2, 4, 6]),
    ("int", lambda t: 2 ** t, np.int64, [1, 2, 4, 8]),
    ("int", lambda t: t.clamp(0.5), np.float32, [0.5, 1, 2, 3]),
    ("int", lambda t: t.clamp(0, 2.5), np.float32, [0, 1, 2, 2.5]),
    ("bool", lambda t: t * 1.5, np.float32, [1.5, 0, 1.5, 0]),
    ("bool", lambda t: t * 2, np.int64, [2, 0, 2, 0]),
    ("bool", lambda t: t + True, np.bool_, [True, True, True, True]),
    ("float32", lambda t: t * 0.1 + 1, np.float32, np.float32([1, 1.1, 1.2, 1.3])),
    ("float64", lambda t: t * 0.1 + 1, np.float64, [1, 1.1, 1.2, 1.3]),
    ("float16", lambda t: t * 0.5 - 2, np.float16, [-2, -1.5, -1, -0.5]),
]
SCALAR_TENSORS = {"int": [0, 1, 2, 3], "bool": [True, False, True, False]}


def scalar_case_tensor(library, kind):
    values = SCALAR_TENSORS.get(kind, [0.0, 1.0, 2.0, 3.0])
    if library is ml:
        return ml.tensor(np.array(values, dtype=np.dtype(kind) if kind.startswith("float")
                                  else None))
    return library.tensor(values, dtype=getattr(library, kind) if kind.startswith("float")
                          else None)


@pytest.mark.parametrize("kind, expression, dtype, values", SCALAR_CASES)
def test_python_scalars_give_pytorchs_result_dtype(kind, expression, dtype, values):
    out = expression(scalar_case_tensor(ml, kind))
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), np.asarray(values, dtype=dtype), rtol=1e-6)


@pytest.mark.parametrize("kind, expression, dtype, values", SCALAR_CASES)
def test_python_scalar_result_dtype_matches_torch(kind, expression, dtype, values):
    torch = pytest.importorskip("torch")
    expected = expression(scalar_case_tensor(torch, kind))
    out = expression(scalar_case_tensor(ml, kind))
    assert str(out.dtype) == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("condition", [ml.tensor([0.2, 0.0]), ml.tensor([2, 0]),
                                       np.array([1, 0], dtype=np.uint8), [0.5, 0.0]])
def test_where_refuses_a_condition_that_is_not_boolean(condition):
    """A float or integer condition was read as nonzero = True (a probability of 0.2 chose
    a); PyTorch refuses it."""
    with pytest.raises(TypeError, match=r"where's condition must be boolean, got (float|int|"
                                        r"uint)\d+; compare first"):
        ml.where(condition, ml.tensor([1.0, 2.0]), 0.0)


def test_where_with_an_integer_tensor_and_a_float_is_float32():
    out = ml.where(ml.tensor([True, False]), ml.arange(2), 0.5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), [0.0, 0.5])


@pytest.mark.parametrize("a, b", [(1.0, 0.0), (1, 0), (1, 0.5), (True, False)])
def test_where_between_two_numbers_gives_pytorchs_tensor(a, b):
    torch = pytest.importorskip("torch")
    mask = [True, False, True]
    out, expected = ml.where(ml.tensor(mask), a, b), torch.where(torch.tensor(mask), a, b)
    assert str(out.dtype) == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(out.numpy(), expected.numpy())


TENSOR_PAIRS = [("int64", "float32"), ("float32", "int64"), ("bool", "float16"),
                ("int32", "float64"), ("uint8", "float32"), ("int32", "int64"),
                ("float16", "float32"), ("bool", "int32")]


@pytest.mark.parametrize("left, right, operation", [
    (left, right, operation) for left, right in TENSOR_PAIRS
    for operation in ("add", "mul", "sub", "truediv", "lt", "where")
    if not (operation == "sub" and "bool" in (left, right))])  # PyTorch refuses bool - x
def test_two_tensors_give_pytorchs_result_dtype(left, right, operation):
    """An integer or bool tensor with a float tensor takes the float's dtype (NumPy would give
    float64 for int64 with float32)."""
    torch = pytest.importorskip("torch")
    values = {"bool": [True, False, True]}

    def pair(library):
        def make(kind):
            data = np.array(values.get(kind, [1, 2, 3]), dtype=kind)
            return ml.tensor(data) if library is ml else torch.from_numpy(data)
        a, b = make(left), make(right)
        if operation == "where":
            return library.where(make("bool"), a, b)
        return getattr(operator, operation)(a, b)
    out, expected = pair(ml), pair(torch)
    assert str(out.dtype) == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)


def test_an_integer_tensor_with_a_float_tensor_keeps_the_float_gradient():
    x = ml.tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = ml.arange(3) * x
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 2.0])


# --- pow at exponent 0 ----------------------------------------------------------------------

def test_pow_has_zero_gradient_where_the_exponent_is_zero():
    x = ml.tensor([0.0, 1.0, -2.0, np.inf], dtype=ml.float64, requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0, 0.0])


def test_pow_with_a_tensor_exponent_at_zero_matches_torch():
    torch = pytest.importorskip("torch")
    base, exponent = [0.0, 0.0, 0.0, 2.0, 3.0], [0.0, 1.0, 2.0, 0.0, 1.5]
    x = ml.tensor(base, dtype=ml.float64, requires_grad=True)
    p = ml.tensor(exponent, dtype=ml.float64, requires_grad=True)
    (x ** p).sum().backward()
    x_t = torch.tensor(base, dtype=torch.float64, requires_grad=True)
    p_t = torch.tensor(exponent, dtype=torch.float64, requires_grad=True)
    (x_t ** p_t).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x_t.grad.numpy(), rtol=1e-12)
    # dz/dp = z log x, taken as 0 where x <= 0 (unchanged; PyTorch agrees here)
    np.testing.assert_allclose(p.grad.numpy(), [0, 0, 0, np.log(2), 3 ** 1.5 * np.log(3)])
    np.testing.assert_allclose(p.grad.numpy(), p_t.grad.numpy(), rtol=1e-12)


# --- sigmoid and SiLU in the tails ------------------------------------------------------------

TAIL_POINTS = {np.float32: [-87, -60, -40, -20, -17, -15, -5, -0.5, 0, 0.5, 5, 15, 20, 40, 87],
               np.float64: [-700, -300, -100, -40, -38, -20, -5, -0.5, 0, 0.5, 5, 20, 40, 700]}


def exact_sigmoid(x):
    import mpmath
    with mpmath.workdps(50):  # local: a global mp.dps would leak into later tests
        return [float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in x]


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-15)])
def test_sigmoid_and_silu_are_accurate_in_both_tails(dtype, rtol):
    points = np.array(TAIL_POINTS[dtype], dtype=dtype)
    sigma = np.array(exact_sigmoid(points))
    x = ml.tensor(points, requires_grad=True)
    np.testing.assert_allclose(ml.sigmoid(x).numpy(), sigma, rtol=rtol, atol=0)
    np.testing.assert_allclose(ew.silu(x).numpy(), points * sigma, rtol=rtol, atol=0)
    ml.sigmoid(x).sum().backward()  # y (1 - y): relative accuracy in the left tail too
    left = points < 0
    np.testing.assert_allclose(x.grad.numpy()[left], (sigma * (1 - sigma))[left], rtol=2 * rtol)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-15)])
def test_softplus_is_accurate_in_both_tails_and_its_slope_is_sigmoid(dtype, rtol):
    import mpmath
    points = np.array(TAIL_POINTS[dtype], dtype=dtype)
    with mpmath.workdps(50):  # local: a global mp.dps would leak into later tests
        exact = [float(mpmath.log1p(mpmath.exp(mpmath.mpf(float(v))))) for v in points]
    x = ml.tensor(points, requires_grad=True)
    y = ew.softplus(x)
    np.testing.assert_allclose(y.numpy(), exact, rtol=rtol, atol=0)
    y.sum().backward()  # sigma(x), 1/2 at x = 0 (the kinks of max and |x| would give 0)
    np.testing.assert_allclose(x.grad.numpy(), exact_sigmoid(points), rtol=rtol, atol=0)


# --- exact GELU in the left tail --------------------------------------------------------------

GELU_POINTS = {np.float32: [-5.5, -5, -4, -3, -2, -0.5, 0, 0.5, 3],
               np.float64: [-30, -20, -10, -5, -3, -0.5, 0, 0.5, 3]}


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_exact_gelu_is_accurate_in_the_left_tail(dtype, rtol):
    """Phi(x) as (1 + erf(x / sqrt 2)) / 2 cancels for x < 0: 1.4e-6 off in float32 at x = -3,
    0 from x = -5.55 (float32) and -8.38 (float64). As erfc(-x / sqrt 2) / 2 it does not."""
    import mpmath
    points = np.array(GELU_POINTS[dtype], dtype=dtype)
    with mpmath.workdps(50):  # local: a global mp.dps would leak into later tests
        phi = [mpmath.ncdf(mpmath.mpf(float(v))) for v in points]
        slope = [p + mpmath.mpf(float(v)) * mpmath.npdf(mpmath.mpf(float(v)))
                 for p, v in zip(phi, points)]
        exact = [float(mpmath.mpf(float(v)) * p) for v, p in zip(points, phi)]
        slope = [float(s) for s in slope]
    x = ml.tensor(points, requires_grad=True)
    y = ew.gelu(x)
    np.testing.assert_allclose(y.numpy(), exact, rtol=rtol, atol=0)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), slope, rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_silu_stay_finite_at_huge_and_infinite_inputs(dtype):
    points = np.array([-np.inf, -1e30, -1e4, 1e4, 1e30, np.inf], dtype=dtype)
    x = ml.tensor(points, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = ml.sigmoid(x)
        y.sum().backward()
        finite = ml.tensor(points[1:-1])
        silu = ew.silu(finite).numpy()
    np.testing.assert_array_equal(y.numpy(), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(6))
    np.testing.assert_array_equal(silu, points[1:-1] * [0, 0, 1, 1])
    assert np.isnan(ml.sigmoid(ml.tensor([np.nan], dtype=dtype)).numpy()).all()


def test_sigmoid_of_a_0d_tensor_is_a_0d_array():
    y = ml.sigmoid(ml.tensor(-20.0))
    assert isinstance(y.data, np.ndarray) and y.shape == () and y.dtype == np.float32
    np.testing.assert_allclose(y.item(), 1 / (1 + math.exp(20)), rtol=1e-6)


# --- clamp with tensor bounds -------------------------------------------------------------------

def on_grid(offset):
    """Values on a 0.1 grid shifted by ``offset``: x, min and max drawn on grids shifted by 0,
    1/3 and 2/3 of a step never come within 0.033 of each other, so the finite differences
    never straddle a kink."""
    return lambda values: np.round(values, 1) + offset


@st.composite
def clamp_operands(draw, low=True, high=True, broadcast_x=True):
    """x and tensor bounds of mutually broadcastable shapes (x of the full shape unless
    ``broadcast_x``: PyTorch's backward cannot reduce x's gradient from the broadcast shape)."""
    count = 1 + low + high
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=count, min_dims=0, max_dims=3,
                                                    min_side=1, max_side=3))
    x_shape = shapes.input_shapes[0] if broadcast_x else shapes.result_shape
    values = [draw(arrays(x_shape, on_grid(0.0)))]
    offsets = [offset for offset, given in ((0.033, low), (0.067, high)) if given]
    values += [draw(arrays(shape, on_grid(offset)))
               for shape, offset in zip(shapes.input_shapes[1:], offsets)]
    return tuple(values), {}


CLAMP_TENSOR_CASES = [
    OpCase("clamp_tensor_bounds", clamp_operands(broadcast_x=False),
           lambda x, low, high: ml.clamp(x, low, high), lambda x, low, high: x.clamp(low, high)),
    OpCase("clamp_tensor_min", clamp_operands(high=False, broadcast_x=False),
           lambda x, low: x.clamp(min=low), lambda x, low: x.clamp(min=low)),
    OpCase("clamp_tensor_max", clamp_operands(low=False, broadcast_x=False),
           lambda x, high: x.clamp(max=high), lambda x, high: x.clamp(max=high)),
]
test_clamp_tensor_bounds_gradcheck, test_clamp_tensor_bounds_match_torch = op_tests(
    CLAMP_TENSOR_CASES)


@given(clamp_operands())
def test_clamp_gradcheck_with_x_broadcast_against_its_bounds(operands):
    (x, low, high), _ = operands
    inputs = [ml.tensor(v, dtype=ml.float64, requires_grad=True) for v in (x, low, high)]
    ml.gradcheck(lambda x, low, high: ml.clamp(x, low, high), inputs)


def test_clamp_mixes_a_number_and_a_tensor_bound():
    x = ml.tensor([-1.0, 0.5, 2.0, 3.0], dtype=ml.float64, requires_grad=True)
    high = ml.tensor([1.5, 1.5, 1.5, -0.5], dtype=ml.float64, requires_grad=True)
    y = ml.clamp(x, -0.25, high)  # last element: max below min, so y = max
    np.testing.assert_array_equal(y.numpy(), [-0.25, 0.5, 1.5, -0.5])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 0, 0])
    np.testing.assert_array_equal(high.grad.numpy(), [0, 0, 1, 1])
    ml.gradcheck(lambda x, high: ml.clamp(x, -0.25, high),
                 [ml.tensor([-1.0, 0.5, 2.0], dtype=ml.float64, requires_grad=True),
                  ml.tensor([1.5, 1.5, 1.5], dtype=ml.float64, requires_grad=True)])


@pytest.mark.parametrize("bounds", [
    {"min": -0.5, "max": 0.5}, {"min": -0.5}, {"max": 0.5},
    {"min": "tensor", "max": "tensor"}, {"min": "tensor"}, {"max": "tensor"}],
    ids=["numbers", "number_min", "number_max", "tensors", "tensor_min", "tensor_max"])
def test_clamp_passes_the_gradient_at_its_bounds_as_torch_does(bounds):
    """dy/dx = [low <= x <= high]: 1 where x equals a bound (PyTorch's subgradient choice up to
    2.13, the version this project is checked against), 0 strictly outside; with number or
    tensor bounds. PyTorch 2.14 changed it (0 at a number bound, 1/2 at a tensor bound), so
    the comparison with PyTorch runs on the versions before, where PyTorch is installed."""
    x_values = [-1.0, -0.5, 0.0, 0.5, 1.0]  # below, at low, inside, at high, above
    inside = {"min": [0.0, 1.0, 1.0, 1.0, 1.0], "max": [1.0, 1.0, 1.0, 1.0, 0.0]}
    want = np.prod([inside[name] for name in bounds], axis=0)

    def run(library, make):
        x = make(x_values)
        limits = {name: (make([value] * 5) if bounds[name] == "tensor" else value)
                  for name, value in (("min", -0.5), ("max", 0.5)) if name in bounds}
        library.clamp(x, **limits).sum().backward()
        return x.grad.numpy()
    ours = run(ml, lambda v: ml.tensor(v, dtype=ml.float64, requires_grad=True))
    np.testing.assert_array_equal(ours, want)
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    if torch is not None and tuple(map(int, torch.__version__.split(".")[:2])) < (2, 14):
        theirs = run(torch, lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True))
        np.testing.assert_array_equal(theirs, want)


@pytest.mark.parametrize("x_values, bounds, want", [
    ([-1.0, -0.5, 0.0, 0.5, 1.0], {"min": -0.5, "max": 0.5},
     {"min": [1, 0, 0, 0, 0], "max": [0, 0, 0, 0, 1]}),
    ([-1.0, -0.5, 0.0], {"min": -0.5}, {"min": [1, 0, 0]}),
    ([0.0, 0.5, 1.0], {"max": 0.5}, {"max": [0, 0, 1]}),
    ([-1.0, 0.0, 1.0], {"min": 0.0, "max": 0.0}, {"min": [0, 0, 0], "max": [0, 0, 1]})],
    ids=["both", "min", "max", "equal"])
def test_clamp_tensor_bounds_get_the_gradient_strictly_beyond_them_as_torch(x_values, bounds,
                                                                           want):
    """dy/dlow = [x < low < high], dy/dhigh = [x > high or high < low]: a bound that x only
    touches (or a min equal to the max) gets none (PyTorch up to 2.13, as above)."""
    def run(library, make):
        limits = {name: make([value] * len(x_values)) for name, value in bounds.items()}
        library.clamp(make(x_values), **limits).sum().backward()
        return {name: limit.grad.numpy() for name, limit in limits.items()}
    ours = run(ml, lambda v: ml.tensor(v, dtype=ml.float64, requires_grad=True))
    for name in want:
        np.testing.assert_array_equal(ours[name], want[name])
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    if torch is not None and tuple(map(int, torch.__version__.split(".")[:2])) < (2, 14):
        theirs = run(torch, lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True))
        for name in want:
            np.testing.assert_array_equal(theirs[name], want[name])


@pytest.mark.parametrize("op, params", [
    (ew.Add, {}), (ew.Sub, {}), (ew.Mul, {}), (ew.Div, {}), (ew.Pow, {}),
    (ew.PairExtremum, {"largest": True}), (ew.PairExtremum, {"largest": False}),
    (ew.Where, {"condition": np.array([True, False, True])})], ids=lambda value: (
        value.__name__ if isinstance(value, type) else "-".join(map(str, value))))
@pytest.mark.parametrize("needs", [(True, False), (False, True)])
def test_a_binary_op_returns_no_gradient_for_an_input_that_needs_none(op, params, needs):
    """The Function contract: backward returns None where ``ctx.needs_input_grad`` is False
    (a constant operand costs no gradient array)."""
    ctx = Context(needs, True)
    a, b = np.array([1.5, 2.0, 3.0]), np.array([2.0, 2.0, 0.5])
    op.forward(ctx, a, b, **params)
    grads = op.backward(ctx, np.ones(3))
    assert [grad is not None for grad in grads] == list(needs)


@pytest.mark.parametrize("name", ["erf", "erfc"])
@pytest.mark.parametrize("scipy_installed", [True, False])
def test_erf_is_the_standard_librarys_with_or_without_scipy(monkeypatch, scipy_installed, name):
    if scipy_installed:
        pytest.importorskip("scipy.special")
    else:
        monkeypatch.setitem(sys.modules, "scipy.special", None)  # its import raises ImportError
    x = np.array([[-3.0, -0.5, 0.0], [1e-8, 0.7, 6.0]])
    ours, standard = getattr(ml.backend, name), np.vectorize(getattr(math, name))
    np.testing.assert_allclose(ours(x), standard(x), rtol=1e-15, atol=0)
    assert ours(x.astype(np.float32)).dtype == np.float32


def test_leaky_relu_of_integers_keeps_its_slope():
    """The slope 0.01 in an integer dtype was 0: leaky_relu of int64 was relu."""
    out = ml.nn.functional.leaky_relu(ml.tensor([-300, 0, 2]), 0.1)
    assert out.dtype == np.float32 and out.tolist() == [-30.0, 0.0, 2.0]


def test_gelu_of_float16_is_float16():
    """SciPy's erf has no float16 loop: gelu of float16 came out in float64."""
    x = ml.tensor([-2.0, 0.5, 3.0], dtype=np.float16, requires_grad=True)
    y = ml.nn.functional.gelu(x)
    y.sum().backward()
    assert y.dtype == np.float16 and x.grad.dtype == np.float16
    assert ml.backend.erf(np.ones(2, np.float16)).dtype == np.float16


def test_ops_that_convert_integer_tensors_give_constants():
    """An integer tensor converted to float for an op (exp, true division, a float scalar) is
    a constant, as in PyTorch, where integer tensors cannot require gradients."""
    ints = ml.tensor([1, 2, 3])
    for out in (ml.exp(ints), ints / ints, ints * 0.5):
        assert out.dtype == np.float32 and not out.requires_grad


@pytest.mark.parametrize("slope", [None, "0.1", True])
def test_leaky_relu_refuses_a_slope_that_is_not_a_number(slope):
    """A slope of None was NumPy's float(None), NaN: every negative input became NaN without a
    word (PyTorch refuses it); "0.1" was parsed. The layer refuses it where it is built."""
    with pytest.raises(TypeError, match=f"negative_slope must be a number, got {slope!r}"):
        ml.nn.functional.leaky_relu(ml.tensor([-2.0, 3.0]), slope)
    with pytest.raises(TypeError, match=f"negative_slope must be a number, got {slope!r}"):
        ml.nn.LeakyReLU(slope)


def test_leaky_relu_default_slope_is_pytorchs():
    out = ml.nn.functional.leaky_relu(ml.tensor([-2.0, 0.0, 3.0]))
    np.testing.assert_allclose(out.numpy(), [-0.02, 0.0, 3.0], rtol=1e-6)


def test_an_integer_tensor_to_the_power_zero_is_ones():
    """Only negative integer powers are refused: x ** 0 is 1, as in NumPy and PyTorch."""
    out = ml.tensor([2, -3, 0]) ** 0
    np.testing.assert_array_equal(out.numpy(), np.array([2, -3, 0]) ** 0)
    assert out.dtype == np.int64


@pytest.mark.parametrize("values", [[0, 1, 2], [True, False, True]])
@pytest.mark.parametrize("name, reference", [
    ("exp", np.exp), ("log", np.log), ("sqrt", np.sqrt), ("rsqrt", lambda v: 1 / np.sqrt(v)),
    ("sin", np.sin), ("cos", np.cos), ("tanh", np.tanh),
    ("sigmoid", lambda v: 1 / (1 + np.exp(-v))), ("softplus", lambda v: np.log1p(np.exp(v))),
    ("silu", lambda v: v / (1 + np.exp(-v))),
    ("gelu", lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))),
    ("leaky_relu", lambda v: np.where(v > 0, v, 0.01 * v))])
def test_real_valued_ops_of_integer_and_bool_tensors_are_float32(name, reference, values):
    """PyTorch computes exp(int64) in float32; NumPy alone gave float64 (float16 for bool),
    and sigmoid, silu and softplus failed with a casting error from inside NumPy."""
    op = getattr(ml.nn.functional, name, None) or getattr(ml, name)
    with np.errstate(divide="ignore"):
        out = op(ml.tensor(values))
        expected = reference(np.array(values, dtype=np.float64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("zero_dim, other", [("float64", "float32"), ("float32", "float64"),
                                             ("float64", "float16"), ("int64", "int32"),
                                             ("float32", "int64"), ("int64", "float32")])
@pytest.mark.parametrize("operation", ["add", "mul", "truediv", "where"])
def test_a_0d_tensor_with_a_tensor_gives_pytorchs_result_dtype(zero_dim, other, operation):
    """A 0-d tensor ranks with the Python numbers in PyTorch's promotion: with a tensor that
    has dimensions and the same kind of number it takes that tensor's dtype (float64 0-d
    times float32 is float32; NumPy gave float64), the gradient going back in its own."""
    torch = pytest.importorskip("torch")

    def pair(library, wrap):
        small, large = wrap(np.array(2, dtype=zero_dim)), wrap(np.array([1, 2, 3], dtype=other))
        if operation == "where":
            return library.where(wrap(np.array([True, False, True])), small, large)
        return getattr(operator, operation)(small, large), getattr(operator, operation)(large,
                                                                                         small)
    ours, theirs = pair(ml, ml.tensor), pair(torch, torch.from_numpy)
    for out, expected in zip(ours if isinstance(ours, tuple) else (ours,),
                             theirs if isinstance(theirs, tuple) else (theirs,)):
        assert str(out.dtype) == str(expected.dtype).removeprefix("torch.")
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-3)


def test_a_float64_0d_tensor_times_float32_is_float32_with_its_gradient_in_float64():
    scale = ml.tensor(np.float64(2.0), requires_grad=True)
    x = ml.ones(3, requires_grad=True)
    y = scale * x
    assert y.dtype == np.float32
    y.sum().backward()
    assert scale.grad.dtype == np.float64 and scale.grad.item() == 3.0
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2])


# --- gradients at special values --------------------------------------------------------------

SPECIAL_VALUES = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5]


def _value_and_grad(op, values):
    x = ml.tensor(values, dtype=ml.float64, requires_grad=True)
    with np.errstate(all="ignore"):  # nan and inf on purpose
        op(x).sum().backward()
        return op(x.detach()).numpy(), x.grad.numpy()


def _torch_value_and_grad(op, values):
    torch = _torch()
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    y = op(x)
    y.sum().backward()
    return y.detach().numpy(), x.grad.numpy()


SPECIAL_CASES = {  # the kinked ops, where minilean's gradient equals PyTorch's at every value
    "clamp": (lambda x: ml.clamp(x, 0.0, 1.0), lambda x: x.clamp(0.0, 1.0)),
    "clamp_min": (lambda x: ml.clamp(x, min=0.0), lambda x: x.clamp(min=0.0)),
    "leaky_relu": (lambda x: ml.nn.functional.leaky_relu(x, 0.1),
                   lambda x: _functional().leaky_relu(x, 0.1)),
    "sqrt": (ml.sqrt, lambda x: x.sqrt()),
    "log": (ml.log, lambda x: x.log()),
    "square": (lambda x: x ** 2, lambda x: x ** 2),
    "reciprocal": (lambda x: x ** -1, lambda x: x ** -1),
    "where_masking_sqrt": (lambda x: ml.where(np.array(False), ml.sqrt(x), 0.0),
                           lambda x: _torch().where(_torch().tensor(False), x.sqrt(), 0.0)),
}


@pytest.mark.parametrize("name", sorted(SPECIAL_CASES))
def test_kinked_ops_match_torch_at_special_values(name):
    pytest.importorskip("torch")
    op, torch_op = SPECIAL_CASES[name]
    for mine, theirs in zip(_value_and_grad(op, SPECIAL_VALUES),
                            _torch_value_and_grad(torch_op, SPECIAL_VALUES)):
        np.testing.assert_array_equal(mine, theirs)


nan, inf = np.nan, np.inf


@pytest.mark.parametrize("masking", [
    lambda lib, x, other: x.clamp(min=0.0), lambda lib, x, other: x.clamp(-2.0, 0.0) + 2.0,
    lambda lib, x, other: x.relu(), lambda lib, x, other: lib.clamp(x, min=other),
    lambda lib, x, other: lib.maximum(x, other), lambda lib, x, other: -lib.minimum(-x, -other),
], ids=["clamp_min", "clamp", "relu", "clamp_tensor_min", "maximum", "minimum"])
def test_an_infinite_gradient_where_a_mask_is_off_gives_0_as_in_torch(masking):
    """x.clamp(min=0).sqrt() sends sqrt's slope at 0, inf, back to every clamped element; the
    mask multiplied into it gave inf * 0 = nan there (PyTorch: 0), and the nan reached every
    weight before it."""
    torch = pytest.importorskip("torch")
    values, other = [-1.0, 0.0, 4.0, -3.0], [0.0, 0.0, 0.0, 1.0]
    grads = []
    for lib, make in ((ml, lambda v: ml.tensor(v, dtype=ml.float64, requires_grad=True)),
                      (torch, lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True))):
        x, bound = make(values), make(other)
        with np.errstate(divide="ignore"):  # sqrt's slope at 0, on purpose
            masking(lib, x, bound).sqrt().sum().backward()
        grads.append([np.asarray(t.grad.numpy()) if t.grad is not None else None
                      for t in (x, bound)])
    (x_grad, bound_grad), (torch_x_grad, torch_bound_grad) = grads
    np.testing.assert_array_equal(x_grad, torch_x_grad)
    assert not np.isnan(x_grad).any()
    if torch_bound_grad is not None:
        np.testing.assert_array_equal(bound_grad, torch_bound_grad)


@pytest.mark.parametrize("op, values, grad", [
    # the conventions the docstrings state where PyTorch differs (see each op's docstring)
    (ml.relu, [nan, 0.0, 1.0], [0.0, 0.0, 1.0]),  # PyTorch: 1 at nan
    (ml.abs, [nan, 0.0, -2.0], [nan, 0.0, -1.0]),  # PyTorch: 0 at nan
    (lambda x: x ** 0.5, [-0.0, -inf, 4.0], [inf, 0.0, 0.25]),  # PyTorch: -inf, nan
    (lambda x: ml.maximum(x, ml.tensor([1.0, nan, 1.0], dtype=ml.float64)),
     [nan, 1.0, 1.0], [0.0, 0.0, 0.5]),  # PyTorch: 1 to both where either is nan
])
def test_documented_gradients_at_special_values(op, values, grad):
    np.testing.assert_array_equal(_value_and_grad(op, values)[1], grad)


# --- integer and bool edges against PyTorch ---------------------------------------------------

@pytest.mark.parametrize("expression", [
    lambda lib, t: t + 300, lambda lib, t: t * -1, lambda lib, t: 1000 - t,
    lambda lib, t: t * 100000, lambda lib, t: lib.where(t > 4, t, -1)])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_out_of_range_integer_scalars_wrap_as_in_pytorch(expression, dtype):
    """NumPy refused ``uint8 + 300`` (OverflowError); PyTorch stores 300 as 44."""
    check_integer_edge_against_torch(expression, np.array([0, 5, 100, 3], dtype=dtype))


@pytest.mark.parametrize("expression", [
    lambda t: t + 2**64, lambda t: 2**70 * t, lambda t: t - (-2**63 - 1),
    lambda t: ml.maximum(t, 2**64), lambda t: ml.where(t > 4, t, 2**64)])
@pytest.mark.parametrize("dtype", ["uint8", "int64"])
def test_integers_beyond_64_bits_are_refused_beside_integer_tensors(expression, dtype):
    """Wrapped into the dtype, ``int64_tensor + 2**64`` added 0 (PyTorch refuses it)."""
    with pytest.raises(OverflowError, match=r"integer -?\d+ does not fit 64 bits.*tensor of "
                                            + dtype):
        expression(ml.tensor(np.array([0, 5, 100, 3], dtype=dtype)))


def test_integers_within_64_bits_still_wrap_beside_an_int64_tensor():
    """The largest and smallest that PyTorch takes, wrapped as it wraps them."""
    pytest.importorskip("torch")
    for value in (2**64 - 1, 2**63, -2**63):
        check_integer_edge_against_torch(lambda lib, t: t + value, np.array([0, 5, -7]))


INTEGER_DIVISIONS = [
    lambda lib, t: t / 256, lambda lib, t: t / -3, lambda lib, t: t / 100000,
    lambda lib, t: 300 / t, lambda lib, t: -2 / t, lambda lib, t: t / 2**40]


@pytest.mark.parametrize("expression", INTEGER_DIVISIONS)
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16"])
def test_an_integer_tensor_and_an_out_of_range_integer_divide_as_numbers(expression, dtype):
    """The number was wrapped into the tensor's dtype before the float32 division:
    ``uint8_image / 256`` was inf, ``int8 / 200`` divided by -56. The result is the float32
    tensor's, as PyTorch's."""
    data = np.array([1, 5, 100, 3], dtype=dtype)
    out = expression(ml, ml.tensor(data))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(),
                                  expression(ml, ml.tensor(data.astype(np.float32))).numpy())


@pytest.mark.parametrize("expression", INTEGER_DIVISIONS)
def test_an_integer_tensor_and_an_out_of_range_integer_divide_as_in_pytorch(expression):
    check_integer_edge_against_torch(expression, np.array([1, 5, 100, 3], dtype="uint8"),
                                     rtol=1e-6)


@pytest.mark.parametrize("x_dtype, bound_dtype", [("float16", "int64"), ("float32", "float64"),
                                                  ("int32", "int64"), ("uint8", "float32")])
def test_clamp_by_a_tensor_gives_pytorchs_result_dtype(x_dtype, bound_dtype):
    """A float16 x clamped by an int64 tensor came out in float64 (NumPy's clip)."""
    bound = np.array([1, 2, 9, 0], dtype=bound_dtype)
    check_integer_edge_against_torch(
        lambda lib, t: lib.clamp(t, min=lib.tensor(bound) if lib is ml else torch_of(bound)),
        np.array([0, 5, 100, 3], dtype=x_dtype))


def torch_of(array):
    return _torch().from_numpy(array.copy())


def check_integer_edge_against_torch(expression, data, rtol=0):
    pytest.importorskip("torch")
    out = expression(ml, ml.tensor(data))
    expected = expression(_torch(), torch_of(data))
    assert str(out.dtype) == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=rtol, atol=0)


def test_clamp_of_an_integer_tensor_clips_bounds_outside_its_dtype():
    """clamp(uint8, min=-1) raised NumPy's OverflowError. PyTorch gives uint8 255s there (it
    converts -1 to 255) and refuses max=300; minilean clips each bound to the dtype's range."""
    x = ml.tensor(np.array([0, 5, 200], dtype=np.uint8))
    for out in (ml.clamp(x, min=-1), ml.clamp(x, -1, 300), x.clamp(max=1000)):
        assert out.dtype == np.uint8 and out.tolist() == [0, 5, 200]
    assert ml.clamp(x, 300).tolist() == [255, 255, 255]
    assert ml.clamp(ml.tensor(np.int8([-100, 100])), -200, 50).tolist() == [-100, 50]


@pytest.mark.parametrize("name, expression", [
    ("relu", lambda lib, m: lib.relu(m)), ("abs", lambda lib, m: lib.abs(m)),
    ("subtraction", lambda lib, m: m - m), ("subtraction", lambda lib, m: 1 - m),
    ("subtraction", lambda lib, m: m - 1), ("matmul", lambda lib, m: m @ m),
    ("a bool exponent in the power", lambda lib, m: m ** m),
    ("a bool exponent in the power", lambda lib, m: lib.tensor(True) ** m)])
def test_ops_pytorch_refuses_on_bool_tensors_are_refused(name, expression):
    """relu of bool was int64, 1 - mask int64, mask ** mask int8, abs and matmul accepted
    (matmul a logical or of ands); PyTorch refuses all of them. (A power with one bool operand,
    mask ** 2 or 2 ** mask, is computed in both.)"""
    torch = pytest.importorskip("torch")
    with pytest.raises((RuntimeError, NotImplementedError)):
        expression(torch, torch.tensor([True, False]))
    with pytest.raises(TypeError, match=f"{name} of a bool tensor is not supported"):
        expression(ml, ml.tensor([True, False]))


@pytest.mark.parametrize("expression", [lambda lib, m: m ** 2, lambda lib, m: 2 ** m,
                                        lambda lib, m: m ** 2.0, lambda lib, m: m ** True,
                                        lambda lib, m: m ** False])
def test_a_power_with_one_bool_operand_is_computed_as_in_pytorch(expression):
    """A bool tensor to a Python bool power is a bool tensor in PyTorch (mask ** True was
    refused as a power of two bools, which a bool tensor exponent still is)."""
    check_integer_edge_against_torch(expression, np.array([True, False]))
    check_integer_edge_against_torch(expression, np.array(True))


def test_integer_to_a_negative_integer_power_is_refused():
    """The exponent -1 is not wrapped into uint8 (it would be 255), as PyTorch refuses it."""
    with pytest.raises(ValueError, match="^an integer tensor to the power -1: integers to "
                                         "negative integer powers are not allowed"):
        ml.tensor(np.uint8([2, 3])) ** -1


@pytest.mark.parametrize("expression", [lambda lib, b: lib.tensor([2, 3, 1, -1, -1, 0, -2]) ** b,
                                        lambda lib, b: 2 ** b])
def test_an_integer_tensor_exponent_may_be_negative_as_in_pytorch(expression):
    """An integer to a negative integer tensor power is 1 / a^n truncated toward zero (0, or
    +-1 for a base of +-1), as in PyTorch and as CuPy computes it on a GPU; NumPy refused it
    ("Integers to negative integer powers are not allowed"), on the CPU only."""
    check_integer_edge_against_torch(expression, np.array([-1, 2, -3, -3, -2, -1, -1]))


@pytest.mark.parametrize("operand, named", [(None, "NoneType"), ("2", "str"), (b"2", "bytes"),
                                            ([None, 1.0], "list of object"),
                                            (np.array(["a", "b"]), "ndarray of <U1")])
@pytest.mark.parametrize("expression", [
    lambda x, v: x + v, lambda x, v: v + x, lambda x, v: x * v, lambda x, v: x - v,
    lambda x, v: x / v, lambda x, v: x ** v, lambda x, v: ml.maximum(x, v),
    lambda x, v: ml.where(x > 0, x, v), lambda x, v: ml.nn.functional.mse_loss(x, v),
    lambda x, v: ml.nn.functional.l1_loss(x, v)])
def test_an_operand_that_is_not_numbers_is_a_type_error(expression, operand, named):
    """None became nan (x + None, mse_loss(x, None)) and '2' the number 2 (x + '2' added 2):
    they were converted straight to the tensor's dtype."""
    x = ml.tensor([1.0, -2.0], requires_grad=True)
    with pytest.raises(TypeError, match=rf"^an operand must be a Tensor, an array or a number, "
                                        rf"got {named}$"):
        expression(x, operand)


def test_lists_and_arrays_are_still_operands_in_the_tensors_dtype():
    x = ml.tensor([1.0, -2.0])
    assert (x + [1, 2]).dtype == np.float32 and (x + [1, 2]).tolist() == [2.0, 0.0]
    assert (np.array([0.5, 0.5]) * x).tolist() == [0.5, -1.0]
    assert (ml.arange(2) + np.array([True, False])).tolist() == [1, 1]


@pytest.mark.parametrize("expression", [
    lambda t, a: t(np.arange(4)) * a(np.array([0.5])),
    lambda t, a: a(np.array([0.5])) * t(np.arange(4)),
    lambda t, a: t(np.arange(4)) * a(np.array(0.5)),
    lambda t, a: t(np.array([True, False, True])) * a(np.array([0.3, 0.7, 0.9])),
    lambda t, a: t(np.array([True, False])) + a(np.array([2, 3])),
    lambda t, a: t(np.arange(3)) - a(np.array([0.5, 1.5, 2.5])),
], ids=["int*float", "float*int", "int*0-d float", "bool*float", "bool+int", "int-float"])
def test_an_array_of_a_wider_kind_of_number_promotes_as_a_tensor_does(expression):
    """A float array beside an integer or bool tensor was cast to the tensor's dtype:
    arange(4) * array([0.5]) was [0, 0, 0, 0]. As in PyTorch, which makes the array a tensor,
    it promotes: the result is what two tensors give."""
    torch = pytest.importorskip("torch")
    ours = expression(ml.tensor, lambda array: array)
    theirs = expression(torch.tensor, torch.tensor)
    assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", ""))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("dtype", ["bool", "int8", "int64", "uint8"])
@pytest.mark.parametrize("symbol, reference", [("&", np.bitwise_and), ("|", np.bitwise_or),
                                               ("^", np.bitwise_xor)])
def test_logic_operators_of_bool_and_integer_tensors_match_numpy(symbol, reference, dtype):
    """The bool-tensor error advised ``~mask`` and ``^``, which Tensor did not have. They give
    tensors outside the graph, as comparisons do, with a tensor, a number or an array, either
    side of the operator."""
    a = np.array([[True, False, True]] * 2 if dtype == "bool" else [[5, 0, 3], [1, 2, 7]], dtype)
    b = np.array([True, True, False] if dtype == "bool" else [6, 3, 1], dtype)
    apply = getattr(operator, {"&": "and_", "|": "or_", "^": "xor"}[symbol])
    scalar = True if dtype == "bool" else 3
    for out, expected in ((apply(ml.tensor(a), ml.tensor(b)), reference(a, b)),
                          (apply(ml.tensor(a), scalar), reference(a, scalar)),
                          (apply(scalar, ml.tensor(a)), reference(scalar, a)),
                          (apply(b, ml.tensor(a)), reference(b, a))):
        assert out.dtype == expected.dtype and out.grad_fn is None
        np.testing.assert_array_equal(out.numpy(), expected)
    np.testing.assert_array_equal((~ml.tensor(a)).numpy(), np.invert(a))


def test_logic_operators_refuse_floats_and_name_the_operands():
    mask = ml.tensor([True, False])
    with pytest.raises(TypeError, match="^& takes bool or integer operands, got bool and "
                                        "float$"):
        mask & 0.5
    # (| escaped: "^| ..." is an alternation whose empty branch matches any message)
    with pytest.raises(TypeError, match=r"^\| takes bool or integer operands, got float32 and "
                                        r"bool$"):
        ml.ones(2) | mask
    with pytest.raises(TypeError, match="^~ takes a bool or integer tensor, got float32$"):
        ~ml.ones(2)


@pytest.mark.parametrize("name, expression, shapes", [
    ("add", lambda a, b: a + b, "(2, 3), (4,)"), ("mul", lambda a, b: a * b, "(2, 3), (4,)"),
    ("sub", lambda a, b: b - a, "(4,), (2, 3)"), ("div", lambda a, b: a / b, "(2, 3), (4,)"),
    ("pow", lambda a, b: a ** b, "(2, 3), (4,)"),
    ("maximum", lambda a, b: ml.maximum(a, b), "(2, 3), (4,)"),
    ("where", lambda a, b: ml.where(a > 0, b, 0.0), r"\(4,\), \(\), \(2, 3\)"),
    ("less", lambda a, b: a < b, "(2, 3), (4,)")])
def test_shapes_that_do_not_broadcast_are_named_with_the_op(name, expression, shapes):
    """NumPy's "operands could not be broadcast together" named neither the op nor, in the
    project's words, the shapes."""
    a, b = ml.ones(2, 3, requires_grad=True), ml.ones(4)
    shapes = shapes if name == "where" else re.escape(shapes)
    with pytest.raises(ValueError, match=rf"^{name}: shapes {shapes} do not broadcast together "
                                         rf"\(each axis, counted from the last, needs equal "
                                         rf"sizes or 1\)$"):
        expression(a, b)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_keep_where_selects_bit_for_bit_as_where(dtype):
    """The gradient masks of ReLU, clamp and max select with bit operations on NumPy (faster
    than ``where``, which branches per element): the result must be ``where``'s to the bit,
    inf, nan and -0 kept where the mask holds and +0 where it does not, for broadcast masks and
    0-d operands too."""
    from minilean import backend
    rng = np.random.default_rng(0)
    values = rng.standard_normal((4, 3, 5)).astype(dtype)
    values.flat[:4] = [np.inf, -np.inf, np.nan, -0.0]
    special = np.ones_like(values, dtype=bool)
    special.flat[4:] = rng.random(values.size - 4) > 0.5
    for mask in (special, rng.random((1, 3, 1)) > 0.5, np.bool_(True), np.bool_(False)):
        expected = np.where(mask, values, np.zeros((), dtype=dtype))
        kept = backend.keep_where(mask, values)
        assert kept.dtype == values.dtype and kept.shape == expected.shape
        np.testing.assert_array_equal(kept.view(f"uint{8 * values.itemsize}"),
                                      expected.view(f"uint{8 * values.itemsize}"))
    for mask in (np.bool_(True), np.bool_(False)):
        zero_d = np.asarray(values.flat[5])
        kept = backend.keep_where(mask, zero_d)
        assert isinstance(kept, np.ndarray) and kept.shape == () and kept == (zero_d if mask else 0)
