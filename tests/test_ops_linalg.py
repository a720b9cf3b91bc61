"""matmul: batched with broadcasting and 1-D operands, gradchecked and matched against
torch.matmul; the linear-layer case (a batched input times a shared matrix) included; and
linear (x W^T + b as one op) against torch.nn.functional.linear."""
import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minilean as ml
from minilean import backend
from minilean.autograd.linalg import Linear
from opcheck import OpCase, arrays, op_tests


@st.composite
def matmul_operands(draw):
    """a (..., n, k) or (k,) and b (..., k, m) or (k,), batch axes mutually broadcastable;
    any size may be 0 (k = 0 gives zeros, and reshaping to rows could not infer a -1)."""
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=2, min_side=0, max_side=3)).input_shapes
    n, k, m = (draw(st.integers(0, 3)) for _ in range(3))
    shape_a = (k,) if draw(st.booleans()) else batch_a + (n, k)
    shape_b = (k,) if draw(st.booleans()) else batch_b + (k, m)
    return (draw(arrays(shape_a)), draw(arrays(shape_b))), {}


@st.composite
def linear_operands(draw, with_bias):
    """x (..., in) with up to two leading axes, W (out, in), and b (out,) when ``with_bias``;
    any size may be 0."""
    leading = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    features_in, features_out = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    shapes = [leading + (features_in,), (features_out, features_in)]
    shapes += [(features_out,)] * with_bias
    return tuple(draw(arrays(shape)) for shape in shapes), {}


def torch_linear(*operands):
    import torch
    return torch.nn.functional.linear(*operands)


CASES = [
    OpCase("linear", linear_operands(True), ml.nn.functional.linear, torch_linear),
    OpCase("linear_without_bias", linear_operands(False), ml.nn.functional.linear,
           torch_linear),
    OpCase("matmul", matmul_operands(), ml.matmul, lambda a, b: a @ b),
    OpCase("matmul_operator", matmul_operands(), lambda a, b: a @ b, lambda a, b: a @ b),
    OpCase("matmul_method", matmul_operands(), lambda a, b: a.matmul(b), lambda a, b: a @ b),
]

test_gradcheck, test_matches_torch = op_tests(CASES)


def test_linear_layer_gradient_of_the_shared_matrix():
    rng = np.random.default_rng(0)
    x_values, w_values = rng.standard_normal((2, 5, 3)), rng.standard_normal((4, 3))
    x = ml.tensor(x_values, dtype=ml.float64, requires_grad=True)
    weight = ml.tensor(w_values, dtype=ml.float64, requires_grad=True)
    (x @ weight.T).sum().backward()
    # d/dW sum(x W^T) = sum over every row of x, for each output unit
    np.testing.assert_allclose(weight.grad.numpy(),
                               np.broadcast_to(x_values.sum((0, 1)), (4, 3)))
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(w_values.sum(0), (2, 5, 3)))


@pytest.mark.parametrize("shape_a, shape_b", [((2, 5, 3), (3, 4)), ((4, 5), (2, 5, 3))])
def test_a_batch_against_one_matrix_multiplies_as_matrices(monkeypatch, shape_a, shape_b):
    """The batch axes fold into the rows, forward and backward, and the matrix's gradient is
    summed over the batch inside its product: three 2-D products (one BLAS call each, on
    "cuda" a plain GEMM), never a batched loop over small matrices."""
    products, matmul = [], backend.matmul
    monkeypatch.setattr(backend, "matmul",
                        lambda a, b: products.append((a.shape, b.shape)) or matmul(a, b))
    a, b = ml.randn(*shape_a, requires_grad=True), ml.randn(*shape_b, requires_grad=True)
    out = a @ b
    out.sum().backward()
    assert len(products) == 3 and all(len(x) == len(y) == 2 for x, y in products), products
    np.testing.assert_allclose(out.numpy(), a.numpy() @ b.numpy(), rtol=1e-5)


def test_only_the_needed_gradient_is_computed():
    a = ml.randn(2, 3, requires_grad=True)
    b = ml.randn(3, 4)
    (a @ b).sum().backward()
    assert a.grad.shape == (2, 3) and b.grad is None


def test_mismatched_shapes_name_both():
    with pytest.raises(ValueError, match=r"matmul shapes \(2, 3\) and \(4, 5\) do not fit"):
        ml.matmul(ml.ones(2, 3), ml.ones(4, 5))
    with pytest.raises(ValueError, match=r"matmul needs operands with at least one dimension"):
        ml.matmul(ml.ones(3), ml.tensor(2.0))
    with pytest.raises(ValueError, match=r"matmul needs operands with at least one dimension, "
                                         r"got shapes \(\) and \(3,\)"):
        ml.matmul(ml.tensor(2.0), ml.ones(3))
    # batch axes that do not broadcast: NumPy's words were "remapped shapes ... newaxis"
    with pytest.raises(ValueError, match=r"^matmul of \(2, 3, 4\) and \(3, 4, 5\), batch axes: "
                                         r"shapes \(2,\), \(3,\) do not broadcast together"):
        ml.matmul(ml.ones(2, 3, 4), ml.ones(3, 4, 5))
    assert ml.matmul(ml.ones(2, 1, 3, 4), ml.ones(5, 4, 2)).shape == (2, 5, 3, 2)


def test_linear_mismatched_shapes_name_them():
    linear = ml.nn.functional.linear
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) and weight of shape "
                                         r"\(4, 5\) do not fit: expected weight "
                                         r"\(out_features, 3\)"):
        linear(ml.ones(2, 3), ml.ones(4, 5))
    # a weight that is not a matrix, and an input with no feature axis
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) and weight of shape "
                                         r"\(3,\) do not fit: expected weight "
                                         r"\(out_features, 3\)"):
        linear(ml.ones(2, 3), ml.ones(3))
    with pytest.raises(ValueError, match=r"linear: input of shape \(\) and weight of shape "
                                         r"\(4, 3\) do not fit: expected weight "
                                         r"\(out_features, in_features\)"):
        linear(ml.tensor(2.0), ml.ones(4, 3))
    with pytest.raises(ValueError, match=r"linear: bias of shape \(3,\) does not fit weight of "
                                         r"shape \(4, 5\): expected \(4,\)"):
        linear(ml.ones(2, 5), ml.ones(4, 5), ml.ones(3))


def test_linear_is_one_node_of_the_graph():
    weight = ml.randn(4, 3, requires_grad=True)
    out = ml.nn.functional.linear(ml.randn(2, 3), weight, ml.randn(4))
    assert out.grad_fn.function is Linear
    assert all(tensor.grad_fn is None for tensor in out.grad_fn.inputs)  # x, W, b: leaves


def test_an_integer_operand_takes_the_float_operands_dtype():
    """As the binary ops do (PyTorch's float32 for int64 with float32): NumPy alone computed
    int64 @ float32 in float64, so an integer batch through a float32 layer left float32."""
    x = ml.tensor([[1, 2, 3]])
    weight = ml.tensor(np.arange(6.0).reshape(2, 3), dtype=ml.float32, requires_grad=True)
    expected = np.array([[1, 2, 3]]) @ np.arange(6.0).reshape(2, 3).T
    for out in (ml.matmul(x, weight.T), x @ weight.T, ml.nn.functional.linear(x, weight),
                ml.nn.functional.linear(x, weight, ml.zeros(2))):
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.numpy(), expected)
    ml.nn.functional.linear(x, weight).sum().backward()
    assert weight.grad.dtype == np.float32
    np.testing.assert_array_equal(weight.grad.numpy(), [[1, 2, 3], [1, 2, 3]])
    assert (ml.tensor([1, 2]) @ ml.tensor([3, 4])).dtype == np.int64  # ints stay ints


@pytest.mark.parametrize("shape_a, shape_b", [((2, 3, 0), (0, 4)), ((3, 0), (2, 0, 4)),
                                              ((2, 0, 3), (3, 4)), ((2, 3, 0), (2, 0, 4))])
def test_matmul_with_an_empty_axis_gives_zeros_as_torch(shape_a, shape_b):
    """A batched operand against one matrix is folded into rows with a reshape, which
    could not infer a -1 from k = 0 (``cannot reshape array of size 0``)."""
    a = ml.tensor(np.ones(shape_a), requires_grad=True)
    b = ml.tensor(np.ones(shape_b), requires_grad=True)
    out = a @ b
    assert out.shape == np.broadcast_shapes(shape_a[:-2], shape_b[:-2]) + (shape_a[-2],
                                                                          shape_b[-1])
    np.testing.assert_array_equal(out.numpy(), 0)
    out.backward(np.ones(out.shape))
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    np.testing.assert_array_equal(a.grad.numpy(), 0)
    np.testing.assert_array_equal(b.grad.numpy(), 0)


def test_linear_with_no_input_or_output_features():
    x = ml.tensor(np.ones((2, 0)), requires_grad=True)
    w = ml.tensor(np.ones((3, 0)), requires_grad=True)
    b = ml.tensor(np.ones(3), requires_grad=True)
    out = ml.nn.functional.linear(x, w, b)
    np.testing.assert_array_equal(out.numpy(), np.ones((2, 3)))
    out.sum().backward()
    assert x.grad.shape == (2, 0) and w.grad.shape == (3, 0)
    np.testing.assert_array_equal(b.grad.numpy(), [2, 2, 2])
    assert ml.nn.functional.linear(ml.ones(2, 3), ml.ones(0, 3)).shape == (2, 0)
