"""The backward contract: deep graphs, accumulation, no_grad, detach, requires_grad_, freeing
the graph (and the error after), no leaked tensors, and the device error without a GPU."""
import gc
import math
import pathlib
import re
import subprocess
import sys
import weakref

import numpy as np
import pytest

import minilean as ml
from opcheck import gradient_dtype_spy


def test_a_chain_of_ten_thousand_ops_backpropagates_without_recursion():
    x = ml.tensor(1.0, dtype=ml.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 0.9999
    y.backward()
    np.testing.assert_allclose(x.grad.item(), 0.9999 ** 10_000)


def test_gradients_of_a_tensor_used_twice_add_up():
    x = ml.tensor([1.0, -2.0, 3.0], dtype=ml.float64, requires_grad=True)
    (x * x + x).sum().backward()  # d/dx (x^2 + x) = 2x + 1
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 1)


def test_gradients_accumulate_over_backward_calls_until_cleared():
    x = ml.tensor([1.0, 2.0], dtype=ml.float64, requires_grad=True)
    (3 * x).sum().backward()
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])
    x.grad = None
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_an_accumulated_gradient_keeps_the_leaf_dtype():
    x = ml.tensor([1.0, 2.0], requires_grad=True)  # float32
    w = ml.tensor(np.array([1.0, 3.0]))  # float64: the product's gradient arrives in float64
    for _ in range(2):
        (x * w).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 6.0])


def test_an_accumulated_gradient_of_a_0d_leaf_is_an_array_updated_in_place():
    """NumPy's 0-d a + b is a scalar, not an array; as .grad it made in-place updates such
    as clip_grad_norm_'s rebind a local name and leave the gradient unclipped."""
    x = ml.tensor(2.0, requires_grad=True)
    for _ in range(2):
        (x * x).backward()
    assert isinstance(x.grad.data, np.ndarray) and x.grad.dtype == np.float32
    ml.optim.clip_grad_norm_([x], 1.0)
    np.testing.assert_allclose(x.grad.numpy(), 1.0, rtol=1e-5)


def test_leaf_gradients_are_separate_writable_arrays():
    a, b = ml.randn(3, requires_grad=True), ml.randn(3, requires_grad=True)
    (a + b).sum().backward()  # Add hands the same array to both; sum's is a broadcast view
    assert a.grad.data is not b.grad.data
    a.grad.data *= 2  # what an optimizer's in-place update does
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3, dtype=np.float32))


def test_leaf_gradients_keep_the_leaf_shape_and_dtype():
    """A scalar leaf's gradient is a scalar array (a sum over the axes it was broadcast on),
    and a float32 leaf in a float64 computation gets a float32 gradient."""
    scale = ml.tensor(2.0, requires_grad=True)
    x = ml.tensor(np.array([1.0, 2.0, 3.0]), dtype=ml.float64)
    (x * scale).sum().backward()
    assert scale.grad.shape == () and scale.grad.dtype == np.float32
    np.testing.assert_allclose(scale.grad.numpy(), 6.0)


def test_no_grad_records_nothing_and_enable_grad_records_inside_it():
    x = ml.randn(3, requires_grad=True)
    with ml.no_grad():
        y = (x * 2).exp().sum()
        with ml.enable_grad():
            z = (x * 2).sum()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    assert ml.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()



@pytest.mark.parametrize("unchanged", [
    lambda x: x.reshape(2, 3), lambda x: x.expand(2, 3), lambda x: x.squeeze(),
    lambda x: x.flatten(1)])
def test_a_shape_op_that_changes_nothing_under_no_grad_stops_the_gradient(unchanged):
    """reshape, expand and squeeze to the shape x has returned x itself, also under no_grad:
    a target made there (``with no_grad(): target = x.reshape(x.shape)``) was x, and a loss
    x * target sent 2x back to x instead of target."""
    x = ml.tensor(np.arange(6.0).reshape(2, 3), dtype=ml.float64, requires_grad=True)
    with ml.no_grad():
        target = unchanged(x)
    assert not target.requires_grad and target.grad_fn is None
    (x * target).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), x.numpy())


@pytest.mark.parametrize("unchanged", [
    lambda x: x.reshape(2, 3), lambda x: x.view(2, 3), lambda x: x.expand(2, 3),
    lambda x: x.squeeze()])
def test_a_shape_op_that_changes_nothing_returns_a_new_tensor_as_torchs(unchanged):
    """reshape, view, expand and squeeze to the shape x has returned x itself: a fixed
    batch's ``fixed.reshape(2, 3).requires_grad_()`` made the batch require grad, so each
    step's input gradient added to the one before (2, 4, 6 where PyTorch gives 2, 2, 2), and
    ``requires_grad_(False)`` on the result froze x. PyTorch's result is a new tensor (a view
    of the same memory); its flatten(1) of a 2-d tensor alone is x itself."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        fixed = library.tensor(np.arange(6.0).reshape(2, 3), dtype=library.float64)
        grads = []
        for _ in range(3):
            x = unchanged(fixed).requires_grad_()
            (x * x).sum().backward()
            grads.append(x.grad.numpy().tolist())
        weight = library.ones(2, 3, dtype=library.float64, requires_grad=True)
        view = unchanged(weight)
        (view * fixed).sum().backward()  # the gradient still reaches the tensor viewed
        view.detach().numpy()[0, 0] = 5.0  # the same memory, as PyTorch's view
        seen[library.__name__] = (grads, fixed.requires_grad, view is weight,
                                  weight.grad.numpy().tolist(), weight.detach().numpy()[0, 0])
    assert seen["minilean"] == seen["torch"] == (
        [(2 * np.arange(6.0).reshape(2, 3)).tolist()] * 3, False, False,
        np.arange(6.0).reshape(2, 3).tolist(), 5.0)
    for library in (ml, torch):
        x = library.ones(2, 3, requires_grad=True)
        assert x.flatten(1) is x

def test_a_grad_mode_may_be_entered_again_also_inside_itself():
    """A ``no_grad()`` kept and entered twice was an error (a one-shot generator context, as
    PyTorch's before 2.0). Each exit restores the mode its own entry found: PyTorch 2.13's,
    entered inside itself, leaves grad off after the outer exit."""
    x = ml.randn(3, requires_grad=True)
    for mode, inner in ((ml.no_grad(), ml.enable_grad()), (ml.enable_grad(), ml.no_grad())):
        with inner:
            outside = ml.is_grad_enabled()
            for _ in range(2):
                with mode:
                    with mode:
                        assert ml.is_grad_enabled() == mode.enabled
                    assert (x * 2).requires_grad == mode.enabled
                assert ml.is_grad_enabled() == outside
    assert ml.is_grad_enabled()


def test_each_thread_has_its_own_grad_mode_on_at_its_start():
    """As PyTorch's: a thread started inside a ``no_grad`` block records, and a ``no_grad``
    block in a thread leaves the thread that started it recording."""
    import threading
    x = ml.ones(3, requires_grad=True)
    seen = {}
    inside, go_on = threading.Event(), threading.Event()

    def other():
        seen["at its start"] = (x * 2).requires_grad
        with ml.no_grad():
            inside.set()
            go_on.wait(10)
            seen["in its no_grad"] = (x * 2).requires_grad
        seen["after it"] = ml.is_grad_enabled()

    with ml.no_grad():
        thread = threading.Thread(target=other)
        thread.start()
        assert inside.wait(10)
    assert (x * 2).requires_grad  # while the other thread is inside its no_grad block
    go_on.set()
    thread.join(10)
    assert seen == {"at its start": True, "in its no_grad": False, "after it": True}


@pytest.mark.parametrize("parentheses", [False, True])
def test_grad_modes_decorate_with_or_without_parentheses(parentheses):
    """``@ml.no_grad`` without parentheses (which PyTorch 2 accepts) was a TypeError."""
    def decorate(mode):
        return mode() if parentheses else mode

    @decorate(ml.no_grad)
    def sample(x, fail=False):
        """Twice x."""
        if fail:
            raise ValueError("stop")
        return x * 2, ml.is_grad_enabled()

    @decorate(ml.enable_grad)
    def recorded(x):
        return (x * 2).requires_grad

    x = ml.ones(3, requires_grad=True)
    y, enabled = sample(x)
    assert not y.requires_grad and not enabled and ml.is_grad_enabled()
    assert sample.__name__ == "sample" and sample.__doc__ == "Twice x."
    with pytest.raises(ValueError, match="^stop$"):
        sample(x, fail=True)
    assert ml.is_grad_enabled()
    with ml.no_grad():
        assert recorded(x) and not ml.is_grad_enabled()


@pytest.mark.parametrize("mode, caller", [(ml.no_grad, ml.enable_grad),
                                           (ml.enable_grad, ml.no_grad)])
def test_a_decorated_generator_runs_its_body_in_the_mode_and_the_caller_in_its_own(mode, caller):
    """As PyTorch's decorators: a generator function's body runs in the mode at every resume
    (send, throw and close too), the caller's code between its yields in the caller's mode.
    ContextDecorator set the mode only while the generator object was made, before any of
    its body ran, so ``@ml.no_grad`` sampling loops written as generators recorded graphs."""
    seen = []

    @mode
    def steps(first):
        """The modes the body sees."""
        try:
            sent = yield (first, ml.is_grad_enabled())
            try:
                yield (sent, ml.is_grad_enabled())
            except ValueError as error:
                sent = yield (str(error), ml.is_grad_enabled())
            yield (sent, ml.is_grad_enabled())
        finally:
            seen.append(("finally", ml.is_grad_enabled()))
        return "done"

    inside = mode.enabled
    with caller():
        outside = ml.is_grad_enabled()
        run = steps("a")
        assert steps.__name__ == "steps" and steps.__doc__ == "The modes the body sees."
        assert next(run) == ("a", inside) and ml.is_grad_enabled() == outside
        assert run.send("b") == ("b", inside) and ml.is_grad_enabled() == outside
        assert run.throw(ValueError("c")) == ("c", inside) and ml.is_grad_enabled() == outside
        assert run.send("d") == ("d", inside)
        run.close()
        assert seen == [("finally", inside)] and ml.is_grad_enabled() == outside

        values, returned = [], []

        def whole():
            returned.append((yield from steps("e")))
        for value in whole():  # a loop that runs it to its end
            values.append(value)
            assert ml.is_grad_enabled() == outside
        assert values == [("e", inside), (None, inside), (None, inside)]
        assert returned == ["done"] and seen[1:] == [("finally", inside)]
    assert ml.is_grad_enabled()


def test_set_grad_enabled_is_a_call_a_block_and_a_decorator_as_torchs():
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        x, modes = library.ones(2, requires_grad=True), []
        library.set_grad_enabled(False)  # a call: from here on
        modes.append(((x * 2).requires_grad, library.is_grad_enabled()))
        library.set_grad_enabled(True)
        with library.set_grad_enabled(False):
            modes.append(((x * 2).requires_grad, library.is_grad_enabled()))
        modes.append(library.is_grad_enabled())
        with library.no_grad():
            with library.set_grad_enabled(True):
                modes.append((x * 2).requires_grad)
            modes.append(library.is_grad_enabled())
        recording = library.set_grad_enabled(True)(lambda: (x * 2).requires_grad)
        modes.append(library.is_grad_enabled())
        with library.no_grad():
            modes.append((recording(), library.is_grad_enabled()))
        modes.append(library.is_grad_enabled())
        seen[library.__name__] = modes
    assert seen["minilean"] == seen["torch"] == [
        (False, False), (False, False), True, True, False, True, (True, False), True]
    with pytest.raises(TypeError, match="^set_grad_enabled takes a bool, got 'false'$"):
        ml.set_grad_enabled("false")
    assert ml.is_grad_enabled()


@pytest.mark.parametrize("parentheses", [False, True])
def test_inference_mode_is_no_grad(parentheses):
    """PyTorch's name for a no_grad block in evaluation; its tensors are plain ones here (the
    docstring says how PyTorch's differ)."""
    x = ml.ones(2, requires_grad=True)
    with ml.inference_mode():
        y = x * 2
    assert not y.requires_grad and ml.is_grad_enabled()
    double = (ml.inference_mode() if parentheses else ml.inference_mode)(lambda: x * 2)
    assert not double().requires_grad and ml.is_grad_enabled()
    (x * y).sum().backward()  # made in the block, used in a graph later
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_inference_mode_takes_pytorchs_mode():
    """inference_mode(mode=True) as PyTorch's: False records the graph, also inside no_grad
    (``inference_mode(not training)``); it was refused ('inference_mode takes no mode')."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        x, modes = library.ones(2, requires_grad=True), []
        for mode in (True, False):
            with library.no_grad():
                with library.inference_mode(mode):
                    modes.append(((x * 2).requires_grad, library.is_grad_enabled()))
                modes.append(library.is_grad_enabled())
            with library.inference_mode(mode):
                modes.append((x * 2).requires_grad)
            recording = library.inference_mode(mode)(lambda: (x * 2).requires_grad)
            with library.no_grad():
                modes.append(recording())
            modes.append(library.is_grad_enabled())
        seen[library.__name__] = modes
    assert seen["minilean"] == seen["torch"] == [
        (False, False), False, False, False, True, (True, True), False, True, True, True]
    for mode, shown in (("false", "str 'false'"), (0, "int 0"), (None, "NoneType None")):
        with pytest.raises(TypeError, match=re.escape(
                f"inference_mode takes a bool mode or a function to decorate, got {shown}")):
            ml.inference_mode(mode)
    # NumPy's bools, as train() and requires_grad take them (refused as "got bool np.False_")
    x = ml.ones(2, requires_grad=True)
    with ml.no_grad(), ml.inference_mode(np.False_):
        assert (x * 2).requires_grad
    with ml.inference_mode(np.True_):
        assert not (x * 2).requires_grad


def test_inputs_that_need_no_gradient_get_none():
    x, constant = ml.randn(2, 3, requires_grad=True), ml.randn(2, 3)
    (x * constant).sum().backward()
    assert constant.grad is None
    np.testing.assert_array_equal(x.grad.numpy(), constant.numpy())


def test_detach_shares_the_data_but_cuts_the_graph():
    x = ml.tensor([1.0, 2.0], dtype=ml.float64, requires_grad=True)
    frozen = (x * 3).detach()
    assert not frozen.requires_grad and frozen.is_leaf
    (frozen * x).sum().backward()  # frozen counts as a constant
    np.testing.assert_allclose(x.grad.numpy(), frozen.numpy())
    assert np.shares_memory(x.detach().data, x.data)


def test_requires_grad_underscore_turns_a_leaf_on_and_refuses_integers():
    x = ml.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, "
                                        "got int64"):
        ml.arange(3).requires_grad_()


@pytest.mark.parametrize("turn_off", [lambda t: t.requires_grad_(False),
                                      lambda t: setattr(t, "requires_grad", False)])
def test_requires_grad_cannot_be_turned_off_on_a_tensor_made_by_an_op(turn_off):
    """Turning y off after z was built through it cut only the later walk through y: dz/dx
    came out 1 instead of 7. Refused, as in PyTorch; detach() is the way to a constant."""
    x = ml.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = (y * 3 + x).sum()
    with pytest.raises(RuntimeError, match=r"^requires_grad=False on a tensor made by an op "
                                           r"\(not a leaf\): only a leaf's flag can be turned "
                                           r"off; use detach\(\) for the same data outside "
                                           r"the graph$"):
        turn_off(y)
    assert y.requires_grad and y.requires_grad_(True) is y  # turning it on again is harmless
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [7.0, 7.0])
    turn_off(x)  # a leaf's flag is its own to change
    assert not x.requires_grad


def test_assigning_requires_grad_is_checked_as_requires_grad_underscore():
    """``x.requires_grad = True`` on an integer tensor was accepted (and its "gradient" an
    integer array), where requires_grad_() refuses it."""
    x = ml.arange(3)
    with pytest.raises(TypeError, match="^only floating-point tensors can require gradients, "
                                        "got int64$"):
        x.requires_grad = True
    assert not x.requires_grad
    w = ml.ones(2)
    w.requires_grad = True
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0])


def test_requires_grad_takes_a_bool_as_torchs():
    """A flag that is no bool was stored as it came: ``requires_grad_("false")`` (a flag read as
    text) kept a module's every weight training, and 0 or 1 came back as the flag."""
    torch = pytest.importorskip("torch")
    for flag in ("false", 0, 1, None):
        model = ml.nn.Linear(2, 1)
        for set_flag in (model.requires_grad_, model.weight.requires_grad_,
                         lambda flag: setattr(model.bias, "requires_grad", flag),
                         lambda flag: ml.ones(2, requires_grad=flag),
                         lambda flag: ml.nn.Parameter(ml.ones(2), requires_grad=flag)):
            with pytest.raises(TypeError, match=f"^requires_grad must be a bool, got "
                                                f"{re.escape(repr(flag))}$"):
                set_flag(flag)
        assert [param.requires_grad for param in model.parameters()] == [True, True]
        with pytest.raises(TypeError, match="must be bool"):
            torch.nn.Linear(2, 1).requires_grad_(flag)
    model.requires_grad_(np.False_)
    assert [param.requires_grad for param in model.parameters()] == [False, False]
    assert type(model.weight.requires_grad) is bool


@pytest.mark.parametrize("statement", ["w += 1.0", "w -= 0.1 * w", "w *= 2", "w /= 2",
                                       "w **= 2", "w @= w"])
def test_an_augmented_assignment_to_a_leaf_that_requires_grad_is_refused(statement):
    """x += y rebinds x to a new tensor (no op writes in place): for a leaf that requires grad,
    manual SGD under no_grad (w -= lr * w.grad) silently left the model's w unchanged."""
    w = ml.ones(2, 2, requires_grad=True)
    for mode in (ml.no_grad, ml.enable_grad):
        names = {"w": w}
        with mode(), pytest.raises(RuntimeError, match=r"on a leaf tensor that requires grad "
                                                       r"would make a new tensor .*\.data"):
            exec(statement, {}, names)
        assert names["w"] is w  # the name was not rebound to a new tensor
    assert w.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    y, constant = w * 1.0, ml.ones(2)  # a non-leaf, a leaf without grad: a new tensor, as before
    kept_y, kept_constant = y, constant
    y += 1.0
    constant += 1.0
    assert y.tolist() == [[2.0, 2.0], [2.0, 2.0]] and y.grad_fn is not None
    assert kept_y.tolist() == [[1.0, 1.0], [1.0, 1.0]] and kept_constant.tolist() == [1.0, 1.0]


def test_the_update_the_refusal_advises_keeps_data_an_array():
    """``w.data -= lr * w.grad`` (PyTorch's hand-written step, where the refusal above points):
    the right side is a Tensor, NumPy handed the subtraction to it, and .data became a Tensor,
    which the next op failed on far from here (``Tensor.sum() got an unexpected keyword
    argument 'axis'``). Now .data is the Tensor's array; anything but an array is refused."""
    w = ml.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (w * w).sum().backward()
    w.data -= 0.5 * w.grad
    assert type(w.data) is np.ndarray and w.tolist() == [0.0, 0.0, 0.0]
    w.grad = None
    ((w + 1) * (w + 1)).sum().backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]
    for value in ([1.0, 2.0, 3.0], 2.0, None):
        with pytest.raises(TypeError, match=f"^tensor.data must be an array \\(or a Tensor, for "
                                            f"its array\\), got {type(value).__name__}$"):
            w.data = value
    assert type(w.data) is np.ndarray


@pytest.mark.parametrize("args, dtype, values", [
    ((0.0, 1.0, 0.25), np.float32, [0.0, 0.25, 0.5, 0.75]),
    ((0, 1, 0.25), np.float32, [0.0, 0.25, 0.5, 0.75]),
    ((np.float64(2.0),), np.float32, [0.0, 1.0]),
    ((5,), np.int64, [0, 1, 2, 3, 4]),
    ((2, 7, 2), np.int64, [2, 4, 6]),
    ((np.int64(3),), np.int64, [0, 1, 2]),
])
def test_arange_picks_float32_for_any_float_and_int64_for_ints_as_tensor_does(args, dtype, values):
    """PyTorch's defaults (NumPy's arange would give float64 for a float argument)."""
    out = ml.arange(*args)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), values)
    assert ml.tensor(values).dtype == dtype
    assert ml.arange(*args, dtype=ml.float64).dtype == np.float64


def test_float32_arange_is_each_value_rounded_once():
    """start + k step in float64, then rounded to float32, as PyTorch computes it; NumPy's
    float32 arange accumulates the rounded step (5e-7 off at the end of this one)."""
    expected = (-1.0 + 0.05 * np.arange(40)).astype(np.float32)
    np.testing.assert_array_equal(ml.arange(-1, 1, 0.05).numpy(), expected)


@pytest.mark.parametrize("args, values", [((-0.5, 3), [0, 1, 2]), ((0, 2.5), [0, 1]),
                                          ((0.7, 3.2, 1.5), [0, 1, 2]),
                                          ((0, 10, 2.5), [0, 2, 4, 6, 8])])
def test_an_integer_arange_truncates_float_bounds_and_step_first_as_pytorch_does(args, values):
    """NumPy steps an integer arange by the difference of its first two values cast to the
    dtype: arange(-0.5, 3, dtype=int64) was [0, 0, 0, 0]."""
    torch = pytest.importorskip("torch")
    out = ml.arange(*args, dtype=ml.int64)
    assert out.dtype == np.int64 and out.tolist() == values
    assert torch.arange(*args, dtype=torch.int64).tolist() == values


@pytest.mark.parametrize("step", [0.5, -0.9])
def test_an_integer_arange_with_a_step_truncated_to_zero_says_so(step):
    """Four zeros were the answer (NumPy's); PyTorch refuses it too."""
    with pytest.raises(ValueError, match=re.escape(f"arange step must be nonzero once "
                                                   f"truncated to int64, got {step!r}")):
        ml.arange(0, 2, step, dtype=ml.int64)


@pytest.mark.parametrize("bounds", [(0, math.inf, 1), (0, math.nan, 1), (-math.inf, 0, 1),
                                    (0, 1, math.nan)])
@pytest.mark.parametrize("dtype", [None, ml.int64])
def test_arange_with_a_bound_or_step_not_finite_says_so(bounds, dtype):
    """Python's "cannot convert float infinity to integer" named neither arange nor the
    value; PyTorch refuses them too ("unsupported range")."""
    start, end, step = bounds
    with pytest.raises(ValueError, match=re.escape(
            f"arange needs finite bounds and step, got start={start!r}, end={end!r}, "
            f"step={step!r}")):
        ml.arange(start, end, step, dtype=dtype)


def test_arange_with_an_int_beyond_a_float_says_it_does_not_fit_int64():
    """An int is finite whatever its size: the finiteness check made 2**1100 a float first,
    and Python's "int too large to convert to float" named neither arange nor the value
    (before the check, tensor()'s integer dtype check named it, as it does for 2**70)."""
    with pytest.raises(OverflowError, match=f"^integer {2 ** 1100} does not fit int64"):
        ml.arange(2 ** 1100, 2 ** 1100 + 3)
    assert ml.arange(np.int64(2), 4, 1).numpy().tolist() == [2, 3]


@pytest.mark.parametrize("step", [0, 0.0])
def test_arange_with_step_zero_says_so(step):
    with pytest.raises(ValueError, match=f"^arange step must be nonzero, got {step!r}$"):
        ml.arange(0, 5, step)


@pytest.mark.parametrize("fill, dtype", [(3, np.int64), (3.0, np.float32), (True, np.bool_),
                                         (np.float64(0.5), np.float32)])
def test_full_takes_its_dtype_from_the_fill_value_as_pytorch_does(fill, dtype):
    """torch.full((2,), 3) is int64; minilean's was float32 whatever the fill."""
    out = ml.full((2,), fill)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), [fill, fill])
    assert ml.full((2,), fill, dtype=ml.float64).dtype == np.float64


@pytest.mark.parametrize("name, args", [("zeros", (2,)), ("ones", (2,)), ("randn", (2,)),
                                        ("rand", (2,)), ("linspace", (0, 1, 2))])
def test_creation_with_dtype_none_is_float32_and_float16_is_a_float_dtype_too(name, args):
    """dtype=None is PyTorch's default dtype, not NumPy's float64; randn and rand refused
    float16 (NumPy's generators draw float32 or float64 only)."""
    make = getattr(ml, name)
    assert make(*args, dtype=None).dtype == np.float32 == make(*args).dtype
    half = make(*args, dtype=np.float16)
    assert half.dtype == np.float16 and np.isfinite(half.numpy()).all()


def test_random_float16_samples_are_the_float32_ones_rounded():
    ml.manual_seed(5)
    single = ml.randn(1000)
    ml.manual_seed(5)
    np.testing.assert_array_equal(ml.randn(1000, dtype=np.float16).numpy(),
                                  single.numpy().astype(np.float16))
    with pytest.raises(TypeError, match="random samples are floating-point, got dtype int64"):
        ml.randn(2, dtype=ml.int64)


@pytest.mark.parametrize("name", ["zeros", "ones", "randn", "rand"])
def test_a_bad_size_names_the_factory_and_the_size(name):
    """NumPy's words ("negative dimensions are not allowed", "'float' object cannot be
    interpreted as an integer") named neither the factory nor the size."""
    make = getattr(ml, name)
    with pytest.raises(ValueError, match=rf"^{name} size must be a tuple of ints >= 0, "
                                         rf"got \(2, -1\)$"):
        make(2, -1)
    with pytest.raises(TypeError, match=rf"^{name} size must be a tuple of ints, got \(2.5,\)$"):
        make((2.5,))
    assert make(2, 0).shape == (2, 0) and make(np.int64(3)).shape == (3,)


def test_a_seed_picks_the_draws_and_a_fresh_process_draws_seed_0s():
    """The same seed repeats the draws, another seed changes them, and a process that never
    seeded draws what seed 0 draws (so a test run alone draws what it draws in the suite)."""
    draw = "import minilean as ml; print(ml.randn(4).numpy().tolist())"
    fresh = subprocess.run([sys.executable, "-c", draw], capture_output=True, text=True,
                           cwd=pathlib.Path(__file__).resolve().parent.parent, check=True)
    ml.manual_seed(0)
    assert fresh.stdout == f"{ml.randn(4).numpy().tolist()}\n"
    ml.manual_seed(np.int64(3))
    three = ml.randn(4).numpy()
    ml.manual_seed(4)
    assert not np.array_equal(ml.randn(4).numpy(), three)
    ml.manual_seed(3)
    np.testing.assert_array_equal(ml.randn(4).numpy(), three)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", None])
def test_a_seed_that_is_not_a_non_negative_integer_is_refused(seed):
    with pytest.raises(ValueError, match=rf"^seed must be a non-negative integer, got "
                                         rf"{re.escape(repr(seed))}$"):
        ml.manual_seed(seed)


@pytest.mark.parametrize("make", [
    lambda: ml.tensor([1.0]), lambda: ml.zeros(2), lambda: ml.ones(2), lambda: ml.full((2,), 1.0),
    lambda: ml.arange(2.0), lambda: ml.linspace(0, 1, 2), lambda: ml.randn(2), lambda: ml.rand(2),
    lambda: ml.randint(0, 3, (2,)), lambda: ml.zeros_like(ml.ones(2)),
    lambda: ml.ones_like(ml.ones(2)), lambda: ml.randn_like(ml.ones(2))])
def test_a_new_tensor_requires_no_gradient_unless_asked(make):
    """As PyTorch's factories: a constant, whose ops record no graph."""
    made = make()
    assert not made.requires_grad and (made * 2).grad_fn is None


@pytest.mark.parametrize("name", ["float16", "float32", "float64", "uint8", "int32", "int64",
                                  "long", "bool"])
def test_the_dtype_names_at_the_top_level_are_torchs(name):
    torch = pytest.importorskip("torch")
    made = ml.zeros(2, dtype=getattr(ml, name))
    assert f"torch.{made.dtype}" == str(torch.zeros(2, dtype=getattr(torch, name)).dtype)
    assert made.dtype == getattr(ml, name)


def test_randint_draws_int64_from_low_up_to_but_not_including_high():
    drawn = ml.randint(2, 5, (3, 100))
    assert (drawn.shape, drawn.dtype) == ((3, 100), np.int64)
    assert set(np.unique(drawn.numpy())) == {2, 3, 4}


@pytest.mark.parametrize("draw", [lambda: ml.randint(3, (300,)),
                                  lambda: ml.randint(3, size=(300,)),
                                  lambda: ml.randint(0, 3, size=(300,))])
def test_randint_takes_pytorchs_form_without_low(draw):
    """``torch.randint(10, (5,))``, low 0: it failed with "missing 1 required positional
    argument: 'size'"; the same seed gives the same draws as with low 0 written out."""
    ml.manual_seed(7)
    drawn = draw()
    ml.manual_seed(7)
    np.testing.assert_array_equal(drawn.numpy(), ml.randint(0, 3, (300,)).numpy())
    assert drawn.dtype == np.int64 and set(np.unique(drawn.numpy())) == {0, 1, 2}
    with pytest.raises(TypeError, match=r"^randint needs a size, as randint\(0, 3, \(n,\)\) or "
                                        r"randint\(3, \(n,\)\), got none$"):
        ml.randint(3)


@pytest.mark.parametrize("name, value", [("zeros_like", 0.0), ("ones_like", 1.0),
                                         ("randn_like", None)])
def test_like_factories_take_the_shape_dtype_and_device_unless_given_a_dtype(name, value):
    make, other = getattr(ml, name), ml.ones(2, 3, dtype=ml.float64)
    made = make(other)
    assert (made.shape, made.dtype, made.device) == ((2, 3), np.float64, "cpu")
    assert make(other, dtype=np.float16).dtype == np.float16
    if value is not None:
        np.testing.assert_array_equal(made.numpy(), np.full((2, 3), value))
    else:  # standard normal draws, all different
        assert len(np.unique(made.numpy())) == 6


def test_backward_through_a_freed_graph_is_a_clear_error_unless_retained():
    x = ml.tensor([1.0, 2.0], dtype=ml.float64, requires_grad=True)
    loss = (x.exp() * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="already freed: call the first "
                                           r"backward\(retain_graph=True\)"):
        loss.backward()

    x.grad = None
    loss = (x.exp() * x).sum()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_backward_checks_its_seed():
    x = ml.randn(2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"needs a single-element tensor, got shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient shape \(3,\) does not match tensor shape"):
        y.backward(np.ones(3, dtype=np.float32))


@pytest.mark.parametrize("seed", [np.ones(3), [1.0, 1.0, 1.0], ml.ones(3, dtype=np.float64)])
def test_backward_takes_its_seed_in_the_outputs_dtype(seed):
    """A float64 seed (numpy.ones' default) for a float32 output: every backward before it
    still runs in float32."""
    spy, seen = gradient_dtype_spy()
    x = ml.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (spy.apply(x) * 2).backward(seed)
    assert seen == [np.float32]
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def live_tensors():
    gc.collect()
    # type(), not isinstance: isinstance reads __class__, which some objects of other
    # libraries compute (torch's deprecated aliases warn when it is read)
    return sum(issubclass(type(obj), ml.Tensor) for obj in gc.get_objects())


def test_intermediate_tensors_are_freed_after_backward_and_del():
    x = ml.randn(4, 5, requires_grad=True)
    before = live_tensors()
    hidden = (x * 2).tanh()
    scaled = hidden @ ml.randn(5, 3)
    loss = ml.softmax(scaled, 1).sum()
    watched = [weakref.ref(tensor) for tensor in (hidden, scaled)]
    loss.backward()
    del hidden, scaled
    gc.collect()
    # the loss is still alive, but its freed graph no longer holds the intermediates
    assert all(ref() is None for ref in watched)
    assert loss.grad_fn.ctx is None and loss.grad_fn.inputs == ()
    del loss
    assert live_tensors() == before + 1  # only x.grad is new


def test_the_readme_one_liner(capsys):
    exec('import minilean as ml; x = ml.randn(3, 4, requires_grad=True); '
         '(x.tanh() * x).sum().backward(); print(x.grad.shape)', {})
    assert capsys.readouterr().out == "(3, 4)\n"


@pytest.mark.skipif(ml.cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_raises_a_one_line_device_error():
    with pytest.raises(ml.DeviceError) as error:
        ml.randn(2, device="cuda")
    message = str(error.value)
    assert "cuda" in message and "\n" not in message


class _HostArray:
    """Host data NumPy can read that is not a NumPy array (as a CPU torch tensor is)."""
    shape = (2,)

    def __array__(self, dtype=None, copy=None):
        return np.array([1.5, -2.0], dtype=dtype)


@pytest.mark.parametrize("data", [memoryview(np.array([1.5, -2.0])), _HostArray()],
                         ids=["memoryview", "array_protocol"])
def test_host_data_that_is_not_a_numpy_array_makes_a_cpu_tensor(data):
    tensor = ml.tensor(data)
    assert tensor.device == "cpu"
    np.testing.assert_array_equal(tensor.numpy(), [1.5, -2.0])


@pytest.mark.parametrize("data, what", [(["a", "b"], "list data of dtype <U1"),
                                        ([1 + 2j], "list data of dtype complex128"),
                                        (np.array([None, 1.0]), "ndarray data of dtype object"),
                                        (None, "NoneType data of dtype object")])
def test_a_tensor_of_text_objects_or_complex_numbers_is_refused(data, what):
    with pytest.raises(TypeError, match=f"^a tensor holds numbers or booleans, got {what}$"):
        ml.tensor(data)


@pytest.mark.parametrize("make, caller, dtype", [
    (lambda dtype: ml.zeros(2, dtype=dtype), "zeros", str),
    (lambda dtype: ml.ones(2, dtype=dtype), "ones", object),
    (lambda dtype: ml.full((2,), 1, dtype=dtype), "full", np.complex64),
    (lambda dtype: ml.arange(3, dtype=dtype), "arange", np.complex64),
    (lambda dtype: ml.linspace(0, 1, 3, dtype=dtype), "linspace", object),
    (lambda dtype: ml.randn(2, dtype=dtype), "randn", str),
    (lambda dtype: ml.zeros_like(ml.tensor([1.0]), dtype=dtype), "zeros_like", str),
    (lambda dtype: ml.ones_like(ml.tensor([1.0]), dtype=dtype), "ones_like", object),
    (lambda dtype: ml.randn_like(ml.tensor([1.0]), dtype=dtype), "randn_like", str),
    (lambda dtype: ml.tensor([1.5]).to(dtype=dtype), "to", str),
])
def test_a_factory_or_to_given_a_dtype_of_text_objects_or_complex_numbers_refuses_it(
        make, caller, dtype):
    """As Tensor() refuses such data: zeros(2, dtype=str) made a tensor of text, and + 1 on
    it appended "1"."""
    with pytest.raises(TypeError, match=f"^{caller} dtype must be a bool, integer or float "
                                        f"dtype, got {re.escape(str(np.dtype(dtype)))}$"):
        make(dtype)


@pytest.mark.parametrize("fill, dtype, kind", [(None, None, "NoneType"),
                                               (None, np.float32, "NoneType"),
                                               ("2", np.float32, "str"), (1j, None, "complex")])
def test_full_refuses_a_fill_value_that_is_not_a_number(fill, dtype, kind):
    """NumPy filled in None as an object (or nan, in float32) and "2" as the text or as 2;
    torch.full refuses them."""
    with pytest.raises(TypeError, match=f"^full fill_value must be a number or a bool, got "
                                        f"{kind}$"):
        ml.full((2,), fill, dtype=dtype)
    assert ml.full((2,), ml.tensor(1.5)).tolist() == [1.5, 1.5]  # a 0-d tensor is a number


@pytest.mark.parametrize("data, value", [(2**63, 2**63), ([[1], [-2**63 - 1]], -2**63 - 1),
                                         ([2**70, 1], 2**70)])
def test_an_int_beyond_int64_is_refused_as_pytorch_does(data, value):
    """NumPy would make the first a uint64 and the others Python objects."""
    with pytest.raises(OverflowError, match=f"^integer {value} does not fit int64, tensor"):
        ml.tensor(data)
    assert ml.tensor([2**63 - 1, -2**63]).dtype == np.int64  # the ends themselves fit
    assert ml.tensor(2**63, dtype=np.uint64).item() == 2**63  # a dtype given: it is held


def test_repr_shows_the_values_dtype_device_and_graph():
    """A reduction's NumPy scalar prints as its value, not as np.float32(...) or array(...)."""
    x = ml.tensor([[1.0, -2.5], [0.25, 4.0]], requires_grad=True)
    assert repr(x.sum()) == "tensor(2.75, dtype=float32, device='cpu', grad_fn=<SumBackward>)"
    assert repr(x) == ("tensor([[ 1.  , -2.5 ],\n"
                       "        [ 0.25,  4.  ]], dtype=float32, device='cpu', requires_grad=True)")
    assert repr(ml.tensor([1, 2])) == "tensor([1, 2], dtype=int64, device='cpu')"
    # an empty tensor's values are [] whatever its shape, so the shape is said (not for (0,))
    assert repr(ml.zeros(0, 3)) == "tensor([], shape=(0, 3), dtype=float32, device='cpu')"
    assert repr(ml.zeros(0)) == "tensor([], dtype=float32, device='cpu')"


def test_gradcheck_names_a_bad_fn_or_inputs():
    """A tuple or a float from fn was an AttributeError on '.xp'."""
    gradcheck = ml.gradcheck
    x = ml.tensor([1.0, 2.0], dtype=ml.float64, requires_grad=True)
    with pytest.raises(TypeError, match="gradcheck needs fn to return one tensor, got tuple"):
        gradcheck(lambda a: (a, a), [x])
    with pytest.raises(TypeError, match="gradcheck needs fn to return one tensor, got float"):
        gradcheck(lambda a: 3.0, [x])
    with pytest.raises(ValueError, match="at least one input with requires_grad=True"):
        gradcheck(lambda a: a * 2, [ml.tensor([1.0], dtype=ml.float64)])
    # a computed input gets no .grad: its check failed as "autograd 0 vs finite difference"
    with pytest.raises(ValueError, match="gradcheck needs leaf inputs, input 0 was computed"):
        gradcheck(lambda a: a * 2, [x + 1])
    # float32 finite differences would swamp the derivative: refused, not reported as a mismatch
    with pytest.raises(TypeError, match="gradcheck needs float64 inputs, input 1 is float32"):
        gradcheck(lambda a, b: a * b, [x, ml.tensor([1.0, 2.0], requires_grad=True)])
    assert gradcheck(lambda a: a * a, [x])


class _CubeWithOneSlopeOffByAPercent(ml.Function):
    """x^3, whose backward gives 3 x^2 but 1.01 times that at the flat index 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        slope = 3 * ctx.x ** 2
        slope.reshape(-1)[1] *= 1.01
        return grad * slope


@pytest.mark.parametrize("call, op, index, kind", [
    (lambda: ml.relu(np.ones(2)), "Relu", 0, "ndarray"),
    (lambda: ml.nn.Conv2d(1, 1, 3)(np.ones((1, 1, 4, 4), np.float32)), "Conv2d", 0, "ndarray"),
    (lambda: ml.nn.LayerNorm(3)(np.ones((2, 3), np.float32)), "LayerNorm", 0, "ndarray"),
    (lambda: _CubeWithOneSlopeOffByAPercent.apply([1.0, 2.0]), "_CubeWithOneSlopeOffByAPercent",
     0, "list"),
    (lambda: _CubeWithOneSlopeOffByAPercent.apply(ml.ones(2), 2.0),
     "_CubeWithOneSlopeOffByAPercent", 1, "float")])
def test_an_op_given_no_tensor_says_which_input_and_what_it_got(call, op, index, kind):
    """A NumPy batch in ``relu``, ``conv2d`` or ``layer_norm`` (PyTorch's TypeError: "must be
    Tensor, not numpy.ndarray"), or a number given to a custom Function as PyTorch's apply takes
    it, failed inside ``apply`` with "'numpy.ndarray' object has no attribute 'requires_grad'"
    or "'float' object has no attribute 'device'"."""
    with pytest.raises(TypeError, match=rf"^{op}: input {index} must be a Tensor, got {kind} "
                                        rf"\(make one with ml.tensor\(...\); a custom Function "
                                        rf"takes its other arguments by keyword\)$"):
        call()


@pytest.mark.parametrize("call, op, role, kind", [
    (lambda: ml.reshape(np.ones((2, 3)), (3, 2)), "reshape", "input", "ndarray"),
    (lambda: ml.nn.functional.softmax([[1.0, 2.0]], 1), "softmax", "input", "list"),
    (lambda: ml.mean([1.0, 2.0]), "mean", "input", "list"),
    (lambda: ml.argmax(np.ones(3)), "argmax", "input", "ndarray"),
    (lambda: ml.split(np.ones((2, 3)), 1), "split", "input", "ndarray"),
    (lambda: ml.clamp([1.0, 2.0], 0, 1), "clamp", "input", "list"),
    (lambda: ml.nn.functional.mse_loss([1.0, 2.0], ml.ones(2)), "mse_loss", "input", "list"),
    (lambda: ml.nn.functional.embedding([0], np.ones((3, 2))), "embedding", "weight", "ndarray"),
    (lambda: ml.nn.functional.scaled_dot_product_attention(*[np.ones((2, 3))] * 3),
     "attention", "query", "ndarray")])
def test_an_entry_point_given_no_tensor_says_so(call, op, role, kind):
    """The ops that read a shape or dtype before ``apply`` failed on a list or an array from
    inside ("'list' object has no attribute 'ndim'", "'numpy.ndarray' object has no attribute
    'xp'", a NumPy gufunc error for attention), and reshape of an array said "shape must be a
    tuple of ints, got (3, 2)" of a good shape. PyTorch: "must be Tensor, not list"."""
    with pytest.raises(TypeError, match=rf"^{op}: {role} must be a Tensor, got {kind} \(make "
                                        rf"one with ml.tensor\(\.\.\.\)\)$"):
        call()
    with pytest.raises(TypeError, match=r"^an operand must be a Tensor, got ndarray and ndarray "):
        ml.maximum(np.ones(2), np.ones(2))
    # an array beside a tensor is still taken, as before
    assert ml.maximum(np.zeros(2), ml.ones(2)).tolist() == [1.0, 1.0]


def test_gradcheck_finds_a_gradient_a_percent_off_and_names_where():
    """Element by element up to ``max_elements``, along random directions beyond; an input
    that requires no gradient (the first) is not checked."""
    rng = np.random.default_rng(0)
    scale = ml.tensor(rng.standard_normal((2, 2)), dtype=ml.float64)
    x = ml.tensor(rng.standard_normal((2, 2)), dtype=ml.float64, requires_grad=True)
    wrong = lambda scale, x: scale * _CubeWithOneSlopeOffByAPercent.apply(x)  # noqa: E731
    with pytest.raises(AssertionError, match=r"^gradcheck failed for input 1 at element "
                                             r"\(0, 1\): autograd \S+ vs finite difference "):
        ml.gradcheck(wrong, [scale, x], max_elements=4)
    with pytest.raises(AssertionError, match="^gradcheck failed for input 1 at a random "
                                             "direction: autograd"):
        ml.gradcheck(wrong, [scale, x], max_elements=3)
    big = ml.tensor(rng.standard_normal(100), dtype=ml.float64, requires_grad=True)
    with pytest.raises(AssertionError, match="^gradcheck failed for input 0 at a random "
                                             "direction"):
        ml.gradcheck(_CubeWithOneSlopeOffByAPercent.apply, [big])
    assert ml.gradcheck(lambda x: x ** 3, [big])


def test_gradcheck_passes_the_rounding_of_a_finite_difference():
    """Near a zero gradient the float64 rounding of the difference quotient (~1e-10) is
    within the absolute tolerance, and for a large gradient within the relative one."""
    x = ml.tensor(np.linspace(-1, 1, 6), dtype=ml.float64, requires_grad=True)
    assert ml.gradcheck(lambda x: x.sin() * x.sin() + x.cos() * x.cos(), [x])
    assert ml.gradcheck(lambda x: 1e6 * x * x, [x])


def test_gradcheck_leaves_the_checked_gradient_in_place_of_an_earlier_one():
    values = np.linspace(-1, 1, 6)
    x = ml.tensor(values, dtype=ml.float64, requires_grad=True)
    fresh = ml.tensor(values, dtype=ml.float64, requires_grad=True)
    x.grad = ml.ones(6, dtype=ml.float64)
    assert ml.gradcheck(lambda x: x * x, [x]) and ml.gradcheck(lambda x: x * x, [fresh])
    np.testing.assert_array_equal(x.grad.numpy(), fresh.grad.numpy())
