"""Shared machinery of the op tests (tests/test_ops_*.py).

An ``OpCase`` names an op, a hypothesis strategy that draws its float64 operands (broadcast,
size-1 and non-contiguous ones) and its parameters, and the same computation written with
minilean and with PyTorch. ``op_tests(cases)`` makes the two tests every op passes:

* ``test_gradcheck``: autograd against central finite differences (``minilean.gradcheck``);
* ``test_matches_torch``: forward values and input gradients against PyTorch to 1e-6 relative,
  skipped when torch is not installed.
"""
import collections

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minilean as ml

OpCase = collections.namedtuple("OpCase", "name draw minilean torch")

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def arrays(draw, shape, transform=None):
    """A float64 array of ``shape`` with standard normal values (passed through ``transform``),
    for two dimensions or more a transposed, non-contiguous view half of the time."""
    rng = np.random.default_rng(draw(SEEDS))
    transposed = len(shape) >= 2 and draw(st.booleans())
    values = np.asarray(rng.standard_normal(tuple(reversed(shape)) if transposed else shape))
    values = values if transform is None else transform(values)
    return values.T if transposed else values


def positive(values):
    """Values moved into [0.5, inf): for log, sqrt, division and the base of pow."""
    return np.abs(values) + 0.5


def away_from(*points, gap=0.01):
    """A transform moving values at least ``gap`` from each kink in ``points``, so that the
    finite differences never straddle a point where the derivative jumps."""
    def transform(values):
        for point in points:
            values = np.where(np.abs(values - point) < gap, values + 2 * gap, values)
        return values
    return transform


@st.composite
def unary(draw, transform=None, shapes=SHAPES):
    """One operand of a drawn shape, no parameters."""
    return (draw(arrays(draw(shapes), transform)),), {}


@st.composite
def binary(draw, transform_a=None, transform_b=None):
    """Two operands of mutually broadcastable shapes (size-1 and missing axes included)."""
    shape_a, shape_b = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)).input_shapes
    return (draw(arrays(shape_a, transform_a)), draw(arrays(shape_b, transform_b))), {}


def _minilean_inputs(values):
    return [ml.tensor(array, dtype=ml.float64, requires_grad=True) for array in values]


def check_gradients(case, data):
    values, params = data.draw(case.draw, label="operands, params")
    ml.gradcheck(lambda *tensors: case.minilean(*tensors, **params), _minilean_inputs(values))


def check_against_torch(case, data, rtol=1e-6, atol=1e-10):
    torch = pytest.importorskip("torch")
    values, params = data.draw(case.draw, label="operands, params")
    inputs = _minilean_inputs(values)
    torch_inputs = [torch.tensor(np.array(array, order="C"), requires_grad=True)
                    for array in values]
    out = case.minilean(*inputs, **params)
    torch_out = case.torch(*torch_inputs, **params)
    np.testing.assert_allclose(out.numpy(), torch_out.detach().numpy(), rtol=rtol, atol=atol)
    cotangent = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(cotangent)
    torch_out.backward(torch.tensor(cotangent))
    for index, (tensor, torch_tensor) in enumerate(zip(inputs, torch_inputs)):
        expected = (np.zeros(tensor.shape) if torch_tensor.grad is None
                    else torch_tensor.grad.numpy())
        actual = np.zeros(tensor.shape) if tensor.grad is None else tensor.grad.numpy()
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {index}")


def op_tests(cases):
    """The gradcheck test and the torch test, parametrised over ``cases``."""
    parametrize = pytest.mark.parametrize("case", cases, ids=[case.name for case in cases])

    @parametrize
    @given(data=st.data())
    def test_gradcheck(case, data):
        check_gradients(case, data)

    @parametrize
    @given(data=st.data())
    def test_matches_torch(case, data):
        check_against_torch(case, data)

    return test_gradcheck, test_matches_torch


def gradient_dtype_spy():
    """(identity, seen): ``identity.apply(x)`` passes x on unchanged, and its backward notes
    in ``seen`` the dtype of each gradient it is handed, for tests of the dtype a backward
    passes on."""
    seen = []

    class Identity(ml.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            seen.append(grad.dtype)
            return grad

    return Identity, seen
