"""The ``fresh_grads`` contract (``minilean/autograd/function.py``): an op that declares it
returns gradients in memory of its own, so the graph walk makes them leaves' ``.grad``
without a copy. A wrong declaration would let an optimizer's in-place update write into an
array something else still reads, so every declaring op is checked here (tests/device_cases.py
has the cases and the check; tests/test_cuda_gpu.py runs them on a GPU), plain on the CPU and
fast on the CPU stand-in for CuPy, and the check is shown to catch the ways it can be broken.
"""
import numpy
import pytest

import cuda_on_cpu
import fake_cupy
import minilean
import minilean.nn.functional as F
from device_cases import FRESH_GRAD_CASES, assert_fresh_grads, run_fresh_grad_case
from minilean.autograd.function import Function
from minilean.autograd.linalg import Linear
from minilean.cuda import registry, use_fast_kernels


@pytest.fixture(params=["cpu", "cuda"])
def device(request, monkeypatch):
    """The plain ops on the CPU; the fast kernels on the CUDA stand-in."""
    if request.param == "cuda":
        if cuda_on_cpu.compiler() is None:
            pytest.skip("needs a C++ compiler to run the kernels on the CPU")
        fake_cupy.install(monkeypatch)
        use_fast_kernels(True)
    yield request.param
    if request.param == "cuda":
        use_fast_kernels(False)
        fake_cupy.forget_device_state()


@pytest.mark.parametrize("name", sorted(FRESH_GRAD_CASES))
def test_declared_fresh_gradients_are_fresh(rng, device, name):
    assert_fresh_grads(run_fresh_grad_case(name, rng, device), rng)


def test_every_declaring_op_has_a_case(rng):
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    checked = {run_fresh_grad_case(name, rng, "cpu").grad_fn.function
               for name in FRESH_GRAD_CASES}
    fast = {fast for _, _, fast in registry.FAST_FUNCTIONS}
    declaring = {op for op in subclasses(Function) if op.fresh_grads and op not in fast
                 and op.__module__.startswith("minilean.")}
    assert declaring <= checked, f"no case for {sorted(op.__name__ for op in declaring - checked)}"


def test_a_fast_kernel_declares_fresh_gradients_only_where_its_op_does():
    """Where a kernel does not cover a call it runs the replaced op, whose gradients are then
    the ones returned."""
    for _, _, fast in registry.FAST_FUNCTIONS:
        assert not fast.fresh_grads or fast.replaces.fresh_grads, fast.__name__


class _Doubling(Function):
    """y = 2 a + 2 b, with a backward that hands out arrays it does not own in several ways."""
    fresh_grads = True
    leak = None

    @staticmethod
    def forward(ctx, a, b):
        ctx.twice = numpy.full_like(a, 2.0)
        return 2 * a + 2 * b

    @staticmethod
    def backward(ctx, grad):
        return {"the incoming gradient": (grad, 2 * grad),
                "the saved ctx": (2 * grad, ctx.twice),
                "another returned gradient": (2 * grad,) * 2}[_Doubling.leak]


@pytest.mark.parametrize("leak", ["the incoming gradient", "the saved ctx",
                                  "another returned gradient"])
def test_the_check_catches_a_gradient_that_is_not_fresh(rng, monkeypatch, leak):
    monkeypatch.setattr(_Doubling, "leak", leak)
    a, b = (minilean.tensor(rng.standard_normal(3), requires_grad=True) for _ in range(2))
    with pytest.raises(AssertionError, match=f"_Doubling: gradient . shares memory with {leak}"):
        assert_fresh_grads(_Doubling.apply(a, b), rng)


def test_a_leaf_gets_the_fresh_gradient_itself_and_a_copy_of_any_other(rng, monkeypatch):
    """Linear's weight gradient becomes ``.grad`` as it is (no copy); the gradient that Add
    passes on unchanged (here sum's read-only broadcast view) is copied."""
    returned = []
    backward = Linear.backward

    def recording_backward(ctx, grad):
        returned.extend(backward(ctx, grad))
        return tuple(returned)

    monkeypatch.setattr(Linear, "backward", staticmethod(recording_backward))
    x = minilean.tensor(rng.standard_normal((3, 4)))
    weight, shift = (minilean.tensor(rng.standard_normal(shape), requires_grad=True)
                     for shape in ((5, 4), (3, 5)))
    (F.linear(x, weight) + shift).sum().backward()
    assert weight.grad.data is returned[1]
    assert weight.grad.data.flags.c_contiguous and weight.grad.data.flags.writeable
    assert shift.grad.data.flags.writeable  # sum's gradient is a read-only broadcast view
    numpy.testing.assert_array_equal(shift.grad.numpy(), numpy.ones((3, 5)))
