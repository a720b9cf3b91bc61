"""minilean/autograd/writes.py and the graph walk's checks of what a backward returns: a tensor
written in place between a forward and its backward fails that backward (the gradient would use
values the forward never saw), and a backward that returns too few gradients, or one of a shape
its input cannot take, is named instead of being reshaped or dropped."""
import re

import numpy
import pytest

import minilean as ml
from minilean.autograd import Function
from minilean.nn import init
from minilean.optim import EMA, SGD


def written_error(shape):
    return re.escape(f"backward through <MulBackward>: its input of shape {shape} was written in "
                     f"place after this forward (by an optimizer step, an EMA swap, "
                     f"load_state_dict or an init), so its gradient would use the new values; "
                     f"call backward before changing the weights, or run the forward again")


def square_sum(weight):
    return (weight * weight).sum()


def test_an_optimizer_step_between_forward_and_backward_fails_the_backward():
    """The bug hunt's case: the step wrote w = [1, 2] - 10 = [-9, -8] into the array Mul kept,
    and backward gave 2w = [-18, -16], not [2, 4]."""
    weight = ml.nn.Parameter(ml.tensor([1.0, 2.0]))
    optimizer = SGD([weight], lr=1.0)
    loss = square_sum(weight)
    weight.grad = ml.tensor([10.0, 10.0])
    optimizer.step()
    weight.grad = None
    with pytest.raises(RuntimeError, match=f"^{written_error((2,))}$"):
        loss.backward()
    assert weight.grad is None


@pytest.mark.parametrize("write", [
    lambda model: EMA(model, 0.5).copy_to(model),
    lambda model: model.load_state_dict({"weight": numpy.ones((2, 3), numpy.float32),
                                         "bias": numpy.ones(2, numpy.float32)}),
    lambda model: init.normal_(model.weight),
    lambda model: init.constant_(model.weight, 0.5),
])
def test_every_in_place_writer_of_weights_is_seen(write):
    model = ml.nn.Linear(3, 2, bias=True)
    loss = square_sum(model.weight)
    write(model)
    with pytest.raises(RuntimeError, match=f"^{written_error((2, 3))}$"):
        loss.backward()


def test_load_state_dict_marks_every_tensor_it_writes():
    """Each loaded weight, not only the first: a forward through the bias before the load."""
    model = ml.nn.Linear(3, 2, bias=True)
    loss = square_sum(model.bias)
    model.load_state_dict({"weight": numpy.ones((2, 3), numpy.float32),
                           "bias": numpy.ones(2, numpy.float32)})
    with pytest.raises(RuntimeError, match=f"^{written_error((2,))}$"):
        loss.backward()


def under_no_grad(make):
    with ml.no_grad():
        return make()


@pytest.mark.parametrize("alias", [
    lambda weight, model: weight.detach(),
    lambda weight, model: model.state_dict()["weight"],
    lambda weight, model: under_no_grad(lambda: weight.reshape(3, 2)),
    lambda weight, model: under_no_grad(lambda: weight[1:]),
], ids=["detach", "state_dict", "reshape under no_grad", "slice under no_grad"])
def test_a_write_is_seen_through_another_tensor_of_the_same_memory(alias):
    """A forward through a detached alias, a state_dict entry or a view made under no_grad
    keeps the weight's memory as much as one through the weight: a step after it gave the
    input's gradient from the new weights (x's gradient is the weight), without a word."""
    model = ml.nn.Linear(3, 2, bias=False)
    optimizer = SGD(model.parameters(), lr=1.0)
    x = ml.tensor(numpy.ones((1, 2), numpy.float32), requires_grad=True)
    loss = (x * alias(model.weight, model)[-1:, :2]).sum()
    model.weight.grad = ml.ones(2, 3)
    optimizer.step()
    with pytest.raises(RuntimeError, match=re.escape("was written in place after this forward")):
        loss.backward()


@pytest.mark.parametrize("op, keeps", [(lambda x: x.tanh(), True), (lambda x: x.exp(), True),
                                      (lambda x: x.softmax(-1), True), (lambda x: 2 * x, False)],
                         ids=["tanh", "exp", "softmax", "mul"])
def test_a_write_into_a_result_its_op_keeps_fails_the_backward(op, keeps):
    """tanh keeps y for dy (1 - y^2): a leaf made of y by detach() and trained wrote into it,
    and backward used the trained values (PyTorch raises). An op that keeps no result (a
    product keeps its inputs) still backpropagates: its gradient does not read y."""
    x = ml.tensor([0.5, 1.0], dtype=numpy.float64, requires_grad=True)
    y = op(x)
    latent = y.detach().requires_grad_()
    optimizer = SGD([latent], lr=1.0)
    ((latent - 3.0) ** 2).sum().backward()
    optimizer.step()
    if keeps:
        with pytest.raises(RuntimeError, match=r"^backward through <\w+Backward>: its output of "
                                               r"shape \(2,\) was written in place after this "
                                               r"forward"):
            y.sum().backward()
    else:
        y.sum().backward()
        numpy.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_a_write_into_a_layer_norm_result_without_affine_leaves_its_gradient():
    """layer_norm without weight and bias returned the standardised x that its backward reads:
    a leaf made of the result and trained wrote into it, and the gradient (PyTorch's
    [1.28, -1.60, 0.32] here) came out [8.98, 5.67, 5.87], without a word."""
    x = ml.tensor([[0.5, 1.0, 3.0]], dtype=numpy.float64, requires_grad=True)
    seed = ml.tensor([[1.0, -2.0, 0.5]], dtype=numpy.float64)
    y = ml.nn.functional.layer_norm(x, (3,))
    y.backward(seed, retain_graph=True)
    expected, x.grad = x.grad.numpy().copy(), None
    latent = y.detach().requires_grad_()
    optimizer = SGD([latent], lr=1.0)
    ((latent - 3.0) ** 2).sum().backward()
    optimizer.step()
    y.backward(seed)
    numpy.testing.assert_array_equal(x.grad.numpy(), expected)


def test_the_write_records_of_freed_arrays_go_with_them():
    """One record per written memory: models made, stepped and dropped leave none behind."""
    from minilean.autograd import writes
    before = len(writes._written)
    for _ in range(20):
        model = ml.nn.Linear(3, 2)
        init.normal_(model.weight)
        del model
    assert len(writes._written) <= before + 1


def test_a_forward_inside_averaged_weights_cannot_backpropagate_after_them():
    """average_parameters puts the trained weights back as the block ends: a backward after it
    would pair the averaged forward with the trained weights."""
    model = ml.nn.Linear(3, 2)
    ema = EMA(model, 0.5)
    with ema.average_parameters(model):
        loss = square_sum(model.weight)
    with pytest.raises(RuntimeError, match=f"^{written_error((2, 3))}$"):
        loss.backward()


def test_training_in_order_and_writes_elsewhere_pass():
    """forward, backward, step, as every training loop runs: no error, and the gradients are
    those of the weights each forward used. A write to a tensor the graph does not hold, and a
    new array put in .data (the forward keeps the old one), leave the backward alone."""
    weight = ml.nn.Parameter(ml.tensor([1.0, 2.0], dtype=numpy.float64))
    optimizer = SGD([weight], lr=0.25)
    for expected in ([2.0, 4.0], [1.0, 2.0]):  # w = [1, 2], then [1, 2] - 0.25 [2, 4]
        optimizer.zero_grad()
        square_sum(weight).backward()
        numpy.testing.assert_array_equal(weight.grad.numpy(), expected)
        optimizer.step()
    loss = square_sum(weight)
    init.constant_(ml.nn.Parameter(ml.zeros(3)), 1.0)
    weight.data = numpy.array([7.0, 7.0])
    optimizer.zero_grad()
    loss.backward(retain_graph=True)
    loss.backward()
    # twice 2 w at the forward's w = [0.5, 1] - 0.25 [1, 2], not at the [7, 7] put in since
    numpy.testing.assert_array_equal(weight.grad.numpy(), [1.0, 2.0])


class Doubled(Function):
    """y = 2 x, with a backward that the test replaces."""

    @staticmethod
    def forward(ctx, x, other=None):
        return 2 * x


@pytest.mark.parametrize("backward, expected", [
    (lambda ctx, grad: (2 * grad).T,
     "Doubled.backward returned a gradient of shape (2, 3) for an input of shape (3, 2); "
     "expected that shape, or one it broadcasts to"),
    (lambda ctx, grad: (2 * grad, 2 * grad),
     "Doubled.backward returned 2 gradient(s) for 1 input(s); expected one per input (None "
     "for no gradient)"),
])
def test_a_backward_that_returns_what_its_inputs_cannot_take_is_named(backward, expected,
                                                                      monkeypatch):
    """A transposed gradient of the right size was reshaped into the input's shape, and a
    surplus one dropped, without a word."""
    monkeypatch.setattr(Doubled, "backward", staticmethod(backward))
    x = ml.randn(3, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match=f"^{re.escape(expected)}$"):
        Doubled.apply(x).sum().backward()


def test_too_few_gradients_are_named_and_a_trailing_none_is_fine(monkeypatch):
    a, b = ml.randn(2, requires_grad=True), ml.randn(2, requires_grad=True)
    monkeypatch.setattr(Doubled, "backward", staticmethod(lambda ctx, grad: 2 * grad))
    with pytest.raises(RuntimeError, match=r"^Doubled\.backward returned 1 gradient\(s\) for 2 "
                                           r"input\(s\); expected one per input"):
        Doubled.apply(a, b).sum().backward()
    monkeypatch.setattr(Doubled, "backward", staticmethod(lambda ctx, grad: (2 * grad, None,
                                                                             None)))
    Doubled.apply(a, b).sum().backward()  # an optional input not given: Linear's bias
    numpy.testing.assert_array_equal(a.grad.numpy(), [2.0, 2.0])
    assert b.grad is None
