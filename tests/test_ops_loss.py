"""mse_loss (a fused primitive): gradcheck and torch oracle for every reduction and a
broadcast target, plus a bad reduction."""
import numpy as np
import pytest
from hypothesis import strategies as st

import minilean as ml
from minilean.autograd.loss import mse_loss
from opcheck import OpCase, binary, op_tests

# the drawn operands are broadcast on purpose: mse_loss's warning about it is expected here
pytestmark = pytest.mark.filterwarnings("ignore:mse_loss. target shape:UserWarning")


@st.composite
def pair_and_reduction(draw):
    operands, _ = draw(binary())
    return operands, {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


def _torch_mse(input, target, reduction):
    import torch.nn.functional
    input, target = torch.broadcast_tensors(input, target)  # torch warns on implicit broadcasting
    return torch.nn.functional.mse_loss(input, target, reduction=reduction)


CASES = [OpCase("mse_loss", pair_and_reduction(), mse_loss, _torch_mse)]

test_gradcheck, test_matches_torch = op_tests(CASES)


def test_bad_reduction_names_the_value():
    from minilean import ones
    with pytest.raises(ValueError, match="reduction must be one of .*, got 'max'"):
        mse_loss(ones(2), ones(2), reduction="max")


def test_shapes_that_do_not_broadcast_name_mse_loss_and_the_shapes():
    from minilean import ones
    with pytest.raises(ValueError, match=r"^mse_loss: shapes \(3, 4\), \(5,\) do not broadcast "
                                         r"together \(each axis, counted from the last, needs "
                                         r"equal sizes or 1\)$"):
        mse_loss(ones(3, 4), ones(5))


def test_mean_squared_error_of_nothing_is_nan_with_empty_gradients():
    """As in PyTorch: the mean over no elements is 0/0, and the gradients have no elements."""
    import numpy
    from minilean import zeros
    input, target = zeros(0, 3, requires_grad=True), zeros(0, 3, requires_grad=True)
    # NumPy's own warnings: an empty mean, then its 0/0
    with pytest.warns(RuntimeWarning, match="Mean of empty slice"), \
            numpy.errstate(invalid="ignore"):
        loss = mse_loss(input, target)
    assert numpy.isnan(loss.item())
    loss.backward()
    assert input.grad.shape == target.grad.shape == (0, 3)
    assert mse_loss(input, target, reduction="sum").item() == 0.0


def test_an_integer_target_gives_the_float_inputs_dtype():
    """float32 input and int64 target: float32, as in PyTorch (NumPy alone gives float64)."""
    loss = mse_loss(ml.tensor([1.0, 1.0, 1.0]), ml.tensor([1, 2, 4]))
    assert loss.dtype == np.float32
    assert loss.item() == pytest.approx((0 + 1 + 9) / 3)


def test_two_integer_tensors_give_float32():
    """As the other real-valued ops of integers (PyTorch refuses them); NumPy gave float64."""
    for reduction in ("mean", "sum", "none"):
        loss = mse_loss(ml.tensor([1, 1, 1]), ml.tensor([1, 2, 4]), reduction=reduction)
        assert loss.dtype == np.float32
    assert loss.tolist() == [0.0, 1.0, 9.0]
