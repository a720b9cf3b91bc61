"""Autograd from scratch: build a small computation, call backward(), and check every gradient
against finite differences.

Reverse-mode autograd records each op as it runs (a graph of Function nodes). backward() walks
that graph from the output back to the inputs, and each op turns "d loss / d my output" into
"d loss / d my inputs" with its own small derivative rule. Finite differences need no rules at
all: nudge one input element by +-eps and watch the loss move. When the two agree, the rules
are right.

Run:  python examples/autograd_from_scratch.py
"""
import numpy

import minilean as ml
from minilean.autograd import Function
from minilean.backend import array_module


# 1. A new op is a forward/backward pair on raw arrays. Softplus is log(1 + e^x), a smooth relu.
class Softplus(Function):
    """y = log(1 + e^x);  dy/dx = e^x / (1 + e^x) = sigmoid(x)."""

    @staticmethod
    def forward(ctx, x):
        xp = array_module(x)
        if ctx.recording:  # keep what backward needs, only when a graph is being recorded
            ctx.x = x
        return xp.logaddexp(0, x)  # log(e^0 + e^x) without overflowing e^x for large x

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        # sigmoid(x) in a form that cannot overflow; short, and exact enough in float64 here.
        # In float32 it rounds the far left tail to 0 (from x = -20), which is why
        # minilean's own Sigmoid uses tail_accurate_sigmoid (minilean/autograd/elementwise.py).
        return grad * 0.5 * (1 + xp.tanh(0.5 * ctx.x))


# 2. A small "network" made of built-in ops and the new one.
def loss_fn(x, weight, bias):
    hidden = Softplus.apply(x @ weight + bias)  # (4, 3) @ (3, 2) + (2,) -> (4, 2)
    return (hidden * hidden.tanh()).mean()


def finite_difference(fn, inputs, which, eps=1e-6):
    """d fn / d inputs[which], one element at a time, by central differences."""
    array = inputs[which].data
    grad = numpy.zeros_like(array)
    for index in numpy.ndindex(array.shape):
        original = array[index]
        array[index] = original + eps
        plus = fn(*inputs).item()
        array[index] = original - eps
        minus = fn(*inputs).item()
        array[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def main():
    ml.manual_seed(0)
    # float64: finite differences lose about half the digits, so start with as many as possible
    x = ml.randn(4, 3, dtype=ml.float64)
    weight = ml.randn(3, 2, dtype=ml.float64, requires_grad=True)
    bias = ml.randn(2, dtype=ml.float64, requires_grad=True)

    # 3. Forward records the graph; backward fills .grad of every leaf that requires grad.
    loss = loss_fn(x, weight, bias)
    print(f"loss = {loss.item():.6f}, made by {loss.grad_fn!r}")
    loss.backward()

    # 4. Compare with finite differences.
    worst = 0.0
    with ml.no_grad():  # the nudged evaluations need no graph
        for name, which, tensor in (("weight", 1, weight), ("bias", 2, bias)):
            numeric = finite_difference(loss_fn, [x, weight, bias], which)
            analytic = tensor.grad.numpy()
            difference = numpy.abs(analytic - numeric).max()
            worst = max(worst, difference)
            print(f"d loss / d {name}:")
            for a, n in zip(analytic.reshape(-1), numeric.reshape(-1)):
                print(f"  autograd {a:+.9f}   finite difference {n:+.9f}")
    print(f"largest difference: {worst:.2e}")
    if worst > 1e-7:
        raise SystemExit("gradients DISAGREE")
    print("gradients agree")


if __name__ == "__main__":
    main()
