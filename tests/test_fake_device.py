"""The "cuda" code paths, run anywhere: every engine op, a training step and every model command
on device "cuda" backed by tests/fake_cupy.py (NumPy behind CuPy's interface and refusals), with
and without the fast kernels, whose CUDA C runs compiled for the CPU (tests/cuda_on_cpu.py).

What this proves without a GPU: the device-generic code never hands a host array to device code,
never converts a device array implicitly, a training step copies nothing to the host and keeps
its memory flat, every launch matches its kernel's parameters, and each kernel computes what its
NumPy reference says. What it cannot prove (speed, CuPy's and CUDA's own compilers and
numerics, the hardware) is left to tests/test_cuda_gpu.py.
"""
import ast
import gc
import importlib
import json
import math
import operator
import os
import pathlib
import re
import subprocess
import sys
import types

import numpy
import pytest

import cuda_on_cpu
import fake_cupy
import minilean
from device_cases import (MIXED_DTYPE_OPS, MODEL_COMMAND_RUNS, OPS, TAIL_ACTIVATIONS,
                          check_a_random_draw_on_the_device_is_refused_in_a_graph,
                          check_a_host_copy_while_capturing_is_a_clear_error,
                          check_an_interrupted_capture_leaves_none_open,
                          check_fused_clipping_in_a_graph_clips_its_own_gradients,
                          check_captured_call_bakes_in_host_numbers,
                          check_captured_call_keeps_the_plain_schedule_tables,
                          check_captured_call_replays_on_new_inputs,
                          check_captured_products_use_minilean_kernel,
                          check_eager_products_match_numpy,
                          check_cuda_graph_trains_like_eager,
                          check_broadcast_gradients_are_summed_by_kernel,
                          check_fast_activation_keeps_the_left_tail,
                          check_fast_conv_transpose_makes_columns_once, check_fast_kernels_are_used,
                          check_fast_op_takes_inputs_of_mixed_dtypes,
                          check_fast_q_sample_takes_the_timesteps_the_plain_one_takes,
                          check_fused_updates_take_what_the_plain_ones_take,
                          check_fast_q_sample_of_one_host_timestep_can_be_captured,
                          check_fused_updates_take_parameters_on_both_devices_and_infinite_ones,
                          check_fast_mean_of_many_equal_values_keeps_its_digits,
                          check_fused_adam_divides_before_it_scales,
                          check_graph_sampling_replays_the_network,
                          check_fast_kernels_train_like_plain, check_model_command_runs_on_cuda,
                          check_op_on_cuda_matches_cpu,
                          check_zero_grad_zeroes_device_gradients_in_place,
                          copies_in_each_cli_step, diffusion_step_parts)
from kernel_cases import KernelCases
from minilean.cuda import activations, compile as kernels, mse, use_fast_kernels
from minilean.cuda.graph import CapturedCall, GraphCaptureError
from minilean.data import RunDirectory
from minilean.data.runlog import read_metrics
from minilean.train.loop import TrainState, train

needs_compiler = pytest.mark.skipif(cuda_on_cpu.compiler() is None,
                                    reason="needs a C++ compiler to run the kernels on the CPU")


def benchmark_script(monkeypatch, name):
    """The module of ``benchmarks/<name>.py``, imported as its own command line would."""
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    return importlib.import_module(name)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Device "cuda" computes with the CPU stand-in for this test."""
    yield fake_cupy.install(monkeypatch)
    fake_cupy.forget_device_state()


@pytest.fixture
def launched_kernels(monkeypatch):
    """The names of the raw kernels launched during the test, in order (every launch looks
    its kernel up by name through ``Program.kernel``)."""
    launched = []
    kernel = kernels.Program.kernel
    monkeypatch.setattr(kernels.Program, "kernel",
                        lambda program, name: launched.append(name) or kernel(program, name))
    return launched


# --- the stand-in refuses what CuPy refuses ----------------------------------------------------

def test_stand_in_refuses_implicit_conversion_and_host_operands(fake_cuda):
    device_array = fake_cuda.arange(3.0)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        numpy.asarray(device_array)
    with pytest.raises(TypeError, match="Unsupported type"):
        device_array + numpy.ones(3)
    with pytest.raises(TypeError, match="Unsupported type"):
        fake_cuda.concatenate([device_array, numpy.ones(3)])
    for list_operand in (lambda: device_array < [1.0, 2.0, 3.0],  # NumPy makes arrays of lists
                         lambda: fake_cuda.maximum(device_array, [1.0, 2.0, 3.0])):
        with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
            list_operand()
    with pytest.raises(AttributeError, match="'list' object has no attribute 'astype'"):
        fake_cuda.where([True, False, True], device_array, 0.0)
    with pytest.raises(AttributeError, match="no attribute 'normal'"):
        fake_cuda.random.default_rng(0).normal(size=3)


def test_stand_in_has_only_what_cupy_arrays_and_ufuncs_have(fake_cuda):
    device_array = fake_cuda.zeros((2, 3))
    assert device_array.flags.c_contiguous and device_array.T.flags.f_contiguous
    with pytest.raises(AttributeError, match="writeable"):
        device_array.flags.writeable  # noqa: B018  (CuPy's flags: no such field)
    for host, error, message in (
            ([[0.0] * 3] * 2, TypeError, "Only numpy.ndarray can be set to cupy.ndarray"),
            (numpy.zeros((2, 3), numpy.float32), TypeError,
             "float32 array cannot be set to float64 array"),
            (numpy.zeros(3), ValueError, r"Shape mismatch. Old shape: \(2, 3\)")):
        with pytest.raises(error, match=message):
            device_array.set(host)
    for as_index in (operator.index, range, lambda a: [0, 1][a]):
        with pytest.raises(TypeError):  # CuPy's arrays convert with __int__ only, no __index__
            as_index(fake_cuda.asarray(1))
    assert fake_cuda.add.reduce(fake_cuda.arange(4.0)).get() == 6.0
    with pytest.raises(NotImplementedError, match="`cupy_maximum.reduce` is not supported"):
        fake_cuda.maximum.reduce(device_array)


def test_stand_in_reduces_to_device_scalars_and_counts_copies(fake_cuda):
    device_array = fake_cuda.asarray(numpy.arange(6.0).reshape(2, 3))
    assert fake_cupy.transfers.to_device == 1
    total = device_array.sum()
    assert isinstance(total, fake_cuda.ndarray) and total.shape == ()
    assert isinstance(device_array[1, 2], fake_cuda.ndarray)
    assert fake_cupy.transfers.to_host == 0
    assert float(total) == 15.0 and device_array.get().tolist()[1] == [3.0, 4.0, 5.0]
    assert fake_cupy.transfers.to_host == 2
    # outputs sized by the values: CuPy reads that size back, once per call
    indices = fake_cuda.asarray(numpy.array([0, 2, 2]))
    assert fake_cuda.bincount(indices, minlength=4).get().tolist() == [1, 0, 2, 0]
    assert fake_cuda.nonzero(indices)[0].get().tolist() == [1, 2]
    assert fake_cupy.transfers.to_host == 2 + 2 * 2


def test_stand_in_counts_the_copies_cupy_hides_in_masks_methods_and_printing(fake_cuda):
    """Each of these reads a count or a value back to the host in CuPy (its sources:
    ``_prepare_mask_indexing_single`` reads the count of Trues of a mask, ``where`` with only a
    condition is ``nonzero``, ``compress`` calls ``nonzero``, ``__array_function__`` hands
    ``numpy.f`` to ``cupy.f``, and ``__repr__``/``__str__``/``__format__`` print ``.get()``)."""
    values = fake_cuda.asarray(numpy.array([0.0, 2.0, 0.0, 3.0]))
    keep = values > 0
    fake_cupy.transfers.reset()
    copies = {
        "a[mask]": lambda: values[keep],
        "a[mask] = v": lambda: values.__setitem__(keep, 1.0),
        "where(condition)": lambda: fake_cuda.where(keep),
        "a.nonzero()": lambda: values.nonzero(),
        "a.compress(condition)": lambda: values.compress(keep),
        "numpy.flatnonzero(a)": lambda: numpy.flatnonzero(values),
        "repr(a)": lambda: repr(values),
        "str(a)": lambda: str(values),
        "f'{a.sum():.1f}'": lambda: f"{values.sum():.1f}",
    }
    for what, call in copies.items():
        before = fake_cupy.transfers.to_host
        call()
        assert fake_cupy.transfers.to_host == before + 1, what
    # what CuPy computes without reading anything back
    fake_cuda.where(keep, values, 0.0)
    fake_cuda.zeros(0)[fake_cuda.zeros(0, dtype=bool)]  # an empty mask: nothing to count
    values[fake_cuda.arange(2)] = 0.0
    assert fake_cupy.transfers.to_host == len(copies)
    assert values.get().tolist() == [0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="only supports slices that consist of one boolean"):
        fake_cuda.ones((4, 4))[keep, fake_cuda.arange(4)]


def test_stand_in_wraps_index_arrays_around_as_cupy_does(fake_cuda):
    """CuPy takes an integer index array past an axis modulo its size, reading, writing and
    in ``ufunc.at`` (its kernels compute ``indices % adim``); a plain int is still checked."""
    values = fake_cuda.asarray(numpy.arange(12.0).reshape(3, 4))
    assert values[fake_cuda.asarray(numpy.array([4, -2]))].get().tolist() == [
        [4.0, 5.0, 6.0, 7.0]] * 2
    assert values[..., [5, -1]].get().tolist() == [[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]]
    assert values[1, [4, 7]].get().tolist() == [4.0, 7.0]
    values[[3], 0] = -1.0
    sums = fake_cuda.zeros(3)
    fake_cuda.add.at(sums, fake_cuda.asarray(numpy.array([4, 4, 0])), 1.0)
    assert values[0, 0].get() == -1.0 and sums.get().tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(IndexError, match="index 3 is out of bounds"):
        values[3]


def test_stand_in_counts_the_scatters_that_add_into_one_place_twice(fake_cuda):
    """``add.at`` into distinct places is repeatable on a GPU; into one place twice (after
    CuPy's wrap-around, here 4 and 1 of 3), its atomic additions come in no fixed order."""
    grid = fake_cuda.zeros((2, 3))
    fake_cuda.add.at(grid, (fake_cuda.asarray(numpy.array([0, 1, 1])), [0, 0, 2]), 1.0)
    assert fake_cupy.scatters.repeated == 0
    fake_cuda.add.at(grid, (0, fake_cuda.asarray(numpy.array([4, 1]))), 1.0)
    assert fake_cupy.scatters.repeated == 1
    assert grid.get().tolist() == [[1.0, 2.0, 0.0], [1.0, 0.0, 1.0]]


def test_stand_in_computes_negative_integer_powers_as_cupy_does(fake_cuda):
    """CuPy's integer power gives 1 / a^n truncated toward zero for a negative exponent
    (``integral_power``, cupy/_core/_routines_math.pyx), where NumPy raises ValueError."""
    base = fake_cuda.asarray(numpy.array([2, 3, 1, -1, -1, 0]))
    exponent = fake_cuda.asarray(numpy.array([-1, 2, -3, -3, -2, -1]))
    assert (base ** exponent).tolist() == [0, 9, 1, -1, 1, 0]
    assert fake_cuda.power(base, exponent).tolist() == [0, 9, 1, -1, 1, 0]


def test_an_integer_tensor_to_negative_tensor_powers_is_the_same_on_both_devices(fake_cuda):
    values, powers = [2, 3, 1, -1, -1, 0], [-1, 2, -3, -3, -2, -1]
    on_cuda = minilean.tensor(values, device="cuda") ** minilean.tensor(powers, device="cuda")
    on_cpu = minilean.tensor(values) ** minilean.tensor(powers)
    assert on_cuda.tolist() == on_cpu.tolist() == [0, 9, 1, -1, 1, 0]
    assert on_cuda.dtype == on_cpu.dtype == numpy.int64


def test_stand_in_takes_the_sign_of_nan_as_cupy_does(fake_cuda):
    """CuPy's sign of a float is (x > 0) - (x < 0) (cupy/_math/misc.py): 0 at nan, where
    NumPy's is nan."""
    values = fake_cuda.asarray(numpy.array([numpy.nan, -2.0, 0.0, 3.0]))
    assert fake_cuda.sign(values).tolist() == numpy.sign(values).tolist() == [0.0, -1.0, 0.0, 1.0]


def test_the_gradient_of_abs_at_nan_is_nan_on_cuda_as_on_the_cpu(fake_cuda):
    """abs's slope is sign(x), nan at nan (its docstring): on a GPU it was 0 there, as CuPy's
    sign gives, so a nan input left the gradients before it finite on one device only."""
    values = [math.nan, -2.0, 0.0, 3.0]
    grads = []
    for device in ("cpu", "cuda"):
        x = minilean.tensor(values, device=device, requires_grad=True)
        minilean.abs(x).sum().backward()
        grads.append(x.grad.numpy())
    numpy.testing.assert_array_equal(grads[1], grads[0])
    numpy.testing.assert_array_equal(grads[0], [math.nan, -1.0, 0.0, 1.0])


def test_stand_in_clips_past_a_nan_bound_as_cupy_does(fake_cuda):
    """CuPy's clip takes x where a bound is nan (cupy/cupy#9031); NumPy's gives nan."""
    values = fake_cuda.asarray(numpy.array([-2.0, 0.5, 3.0]))
    assert fake_cuda.clip(values, math.nan, 1.0).tolist() == [-2.0, 0.5, 1.0]
    bounds = fake_cuda.asarray(numpy.array([0.0, math.nan, math.nan]))
    assert fake_cuda.clip(values, -1.0, bounds).tolist() == [-1.0, 0.5, 3.0]


@pytest.mark.parametrize("bounds", [dict(min=math.nan), dict(max=math.nan),
                                    dict(min=-1.0, max=math.nan),
                                    dict(min=[0.0, math.nan, 0.0]), dict(max=[math.nan, 1.0, 9.0])])
def test_clamp_to_a_nan_bound_is_nan_on_cuda_as_on_the_cpu(fake_cuda, bounds):
    """As PyTorch's clamp: a nan bound gives nan. On a GPU, CuPy's clip passed it over and
    gave x (or the other bound)."""
    results = []
    for device in ("cpu", "cuda"):
        given = {name: minilean.tensor(bound, device=device) if isinstance(bound, list)
                 else bound for name, bound in bounds.items()}
        results.append(minilean.clamp(minilean.tensor([-2.0, 0.5, 3.0], device=device),
                                      **given).numpy())
    numpy.testing.assert_array_equal(results[1], results[0])
    torch = pytest.importorskip("torch")
    expected = torch.clamp(torch.tensor([-2.0, 0.5, 3.0]), **{
        name: torch.tensor(bound) if isinstance(bound, list) else bound
        for name, bound in bounds.items()})
    numpy.testing.assert_array_equal(results[0], expected.numpy())


def test_gelu_of_float16_on_cuda_stays_float16_as_on_the_cpu(fake_cuda):
    """cupyx's erf and erfc give float64 for float16 (no half loop): the exact GELU casts
    their result back, so a float16 graph does not go on in float64 on a GPU alone."""
    import cupyx.scipy.special  # the stand-in's, as install() set it
    half = fake_cuda.asarray(numpy.array([-3.0, 0.5], numpy.float16))
    assert cupyx.scipy.special.erfc(half).dtype == numpy.float64
    values = numpy.array([-3.0, -0.5, 0.0, 1.5], numpy.float16)
    expected = minilean.nn.functional.gelu(minilean.tensor(values))
    x = minilean.tensor(values, device="cuda", requires_grad=True)
    got = minilean.nn.functional.gelu(x)
    got.sum().backward()
    assert got.dtype == expected.dtype == numpy.float16 and x.grad.dtype == numpy.float16
    numpy.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-3)


def test_tensor_numpy_is_the_one_copy_to_the_host(fake_cuda):
    x = minilean.randn(3, 4, device="cuda", requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    assert fake_cupy.transfers.to_host == 0
    numpy.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    assert fake_cupy.transfers.to_host == 2


def test_tensor_of_a_cuda_tensor_is_a_copy_on_cuda(fake_cuda):
    """``minilean.tensor(x)`` copies ``x``'s array where it is, as ``torch.tensor`` does."""
    x = minilean.randn(3, device="cuda")
    copied = minilean.tensor(x)
    assert copied.device == "cuda" and fake_cupy.transfers.to_host == 0
    copied.data[...] = 0
    assert (x.numpy() != 0).all()


def test_to_another_tensor_takes_its_device_and_dtype(fake_cuda):
    """PyTorch's ``x.to(other)``: ``other``'s device and dtype (the device was kept)."""
    other = minilean.zeros(2, dtype=minilean.float64, device="cuda")
    x = minilean.ones(3, requires_grad=True)
    moved = x.to(other)
    assert (moved.device, moved.dtype) == ("cuda", minilean.float64)
    moved.sum().backward()
    assert (x.grad.device, x.grad.dtype) == ("cpu", minilean.float32)
    model = minilean.nn.Linear(2, 2).to(other)
    assert all((p.device, p.dtype) == ("cuda", minilean.float64) for p in model.parameters())


@pytest.mark.parametrize("compare", [operator.gt, operator.le, operator.eq, operator.ne])
def test_comparing_tensors_on_two_devices_is_the_error_other_ops_give(fake_cuda, compare):
    """It was CuPy's "Unsupported type <class 'numpy.ndarray'>", naming neither device, or with
    the host tensor on the left, whatever CuPy's ufunc made of a host array."""
    on_cuda, on_cpu = minilean.ones(2, device="cuda"), minilean.ones(2)
    for a, b in ((on_cuda, on_cpu), (on_cpu, on_cuda)):
        with pytest.raises(RuntimeError, match=f"inputs are on different devices "
                                               f"\\({a.device} and {b.device}\\); move them"):
            compare(a, b)
    assert compare(on_cuda, on_cuda.detach()).device == "cuda"
    assert compare(on_cuda, 1.0).device == "cuda" and fake_cupy.transfers.to_host == 0


@pytest.mark.parametrize("index", [lambda: minilean.tensor(1, device="cuda"),
                                   lambda: minilean.tensor([1, 2], device="cuda"),
                                   lambda: minilean.tensor([True, False, True], device="cuda"),
                                   lambda: (slice(None), minilean.tensor(0, device="cuda"))])
def test_indexing_a_cpu_tensor_by_a_cuda_index_is_the_error_other_ops_give(fake_cuda, index):
    """It was CuPy's "Implicit conversion to a NumPy array is not allowed", naming neither
    device (a 0-d index went through the stand-in's __index__, which CuPy's arrays lack)."""
    on_cpu = minilean.tensor([[5.0, 6.0, 7.0]] * 3)
    with pytest.raises(RuntimeError, match=r"^index: inputs are on different devices \(cpu and "
                                           r"cuda\); move them with \.to\(\)"):
        on_cpu[index()]
    # a host index for a tensor on "cuda" is uploaded, as PyTorch takes it
    assert on_cpu.to("cuda")[minilean.tensor([0, 2])].tolist() == [[5.0, 6.0, 7.0]] * 2


@pytest.mark.parametrize("compare", [operator.lt, operator.ge, operator.eq, operator.ne])
def test_comparing_with_a_list_or_host_array_works_on_cuda_as_on_the_cpu(fake_cuda, compare):
    """CuPy's comparison ufuncs refuse a list, and a host array, where NumPy takes both: the
    other operand goes to the tensor's device first, as in the arithmetic ops."""
    values = numpy.array([0.5, 2.0, -1.0], numpy.float32)
    for other in ([0.5, 1.0, 3.0], numpy.array([2.0, 2.0, -1.0])):
        expected = compare(minilean.tensor(values), other)
        got = compare(minilean.tensor(values, device="cuda"), other)
        assert (got.device, got.dtype) == ("cuda", expected.dtype)
        numpy.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_where_takes_a_list_or_host_condition_on_cuda_as_on_the_cpu(fake_cuda):
    """CuPy's ``where`` calls ``condition.astype``, which a list lacks, and its ufunc refuses
    a host array: the condition goes to the operands' device first."""
    values = numpy.array([1.0, -2.0, 3.0], numpy.float32)
    for condition in ([True, False, True], numpy.array([False, True, True])):
        expected = minilean.where(condition, minilean.tensor(values), 0.0)
        x = minilean.tensor(values, device="cuda", requires_grad=True)
        got = minilean.where(condition, x, 0.0)
        got.sum().backward()
        assert got.device == "cuda"
        numpy.testing.assert_array_equal(got.numpy(), expected.numpy())
        numpy.testing.assert_array_equal(x.grad.numpy(), numpy.float32(condition))


@pytest.mark.parametrize("a, b, dtype", [(1.0, 0.0, "float32"), (1, 0, "int64")])
def test_where_between_two_numbers_is_on_the_conditions_device(fake_cuda, a, b, dtype):
    """``where(mask, 1.0, 0.0)`` has no tensor but the mask to say where it computes."""
    out = minilean.where(minilean.tensor([True, False], device="cuda"), a, b)
    assert (out.device, out.dtype) == ("cuda", numpy.dtype(dtype))
    numpy.testing.assert_array_equal(out.numpy(), [a, b])


def test_where_refuses_a_condition_on_cuda_for_operands_on_the_cpu(fake_cuda):
    """The devices error every op gives, not NumPy's 'Implicit conversion to a NumPy array'
    (a host condition goes to the device; a device one does not come back to the host)."""
    on_cpu = minilean.tensor([1.0, 2.0, 3.0])
    mask = minilean.tensor([True, False, True], device="cuda")
    for condition in (mask, mask.data):
        for a, b in ((on_cpu, 0.0), (0.0, on_cpu), (on_cpu, on_cpu)):
            with pytest.raises(RuntimeError, match=r"^where: inputs are on different devices "
                                                   r"\(cpu and cuda\); move them with \.to\(\)$"):
                minilean.where(condition, a, b)


def test_only_a_cupy_array_is_on_cuda(fake_cuda, monkeypatch):
    """With CuPy present, host data that is not NumPy's (a memoryview) is still on the CPU;
    a CuPy array made before minilean looked for CuPy is on "cuda" all the same."""
    host = memoryview(numpy.array([1.5, -2.0]))
    assert minilean.backend.device_of(host) == "cpu" and minilean.tensor(host).device == "cpu"
    device_array = fake_cuda.ones(2)
    monkeypatch.setattr(minilean.backend, "_cupy", None)  # not looked for yet
    monkeypatch.setattr(minilean.backend, "_cuda_problem", None)
    assert minilean.backend.device_of(device_array) == "cuda"


def test_cross_entropy_on_cuda_reads_no_class_index_back(fake_cuda):
    """The feature classifier's training step (FD-classifier scoring, on "cuda" too) takes its
    labels on the device: checking their range there would read two numbers back every step.
    Labels given on the host are still checked, there."""
    logits = minilean.randn(4, 3, device="cuda", requires_grad=True)
    labels = minilean.tensor(numpy.array([0, 2, 1, 2]), device="cuda")
    fake_cupy.transfers.reset()
    minilean.nn.functional.cross_entropy(logits, labels).backward()
    assert fake_cupy.transfers.to_host == 0
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\), got values from 0 to 3"):
        minilean.nn.functional.cross_entropy(logits, numpy.array([0, 3, 1, 2]))


def test_scalar_operands_are_filled_on_the_device_not_copied_there(fake_cuda):
    x = minilean.randn(3, device="cuda")
    fake_cupy.transfers.reset()
    y = (x * 0.5 + numpy.float32(2.0)) / 4
    assert fake_cupy.transfers.to_device == 0
    numpy.testing.assert_allclose(y.numpy(), (x.numpy() * 0.5 + 2.0) / 4, rtol=1e-6)
    z = x * numpy.array([1.0, 2.0, 3.0])  # a host array is still accepted, at one copy
    assert fake_cupy.transfers.to_device == 1
    numpy.testing.assert_allclose(z.numpy(), x.numpy() * [1.0, 2.0, 3.0], rtol=1e-6)


def test_cuda_is_available_is_the_backends_probe(fake_cuda, monkeypatch):
    """PyTorch's ``torch.cuda.is_available()`` was missing; it answers what device "cuda" does."""
    assert minilean.cuda.is_available() is True
    minilean.zeros(1, device="cuda")
    monkeypatch.setattr(minilean.backend, "_cuda_problem", "device 'cuda' needs CuPy")
    assert minilean.cuda.is_available() is False
    with pytest.raises(minilean.DeviceError, match="^device 'cuda' needs CuPy$"):
        minilean.zeros(1, device="cuda")


def unprobed_cupy(monkeypatch, device_count):
    """A CuPy that ``import cupy`` finds and minilean has not probed yet, whose runtime
    answers the count of GPUs with ``device_count()``."""
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=device_count)))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(minilean.backend, "_cupy", None)
    monkeypatch.setattr(minilean.backend, "_cuda_problem", None)
    return cupy


@pytest.mark.parametrize("count, error, reason", [
    (0, None, "no GPU is visible"),
    (None, RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected\nat runtime.pyx"),
     "cudaErrorNoDevice: no CUDA-capable device is detected"),
    (None, RuntimeError(), "RuntimeError")])
def test_cupy_without_a_gpu_is_a_one_line_error_saying_why(monkeypatch, count, error, reason):
    """CuPy imports on a machine without a GPU; the probe asks it for the GPUs and says, in
    one line, that it found none and why (its own error's first line, else the error's type)."""
    def device_count():
        if error is not None:
            raise error
        return count

    unprobed_cupy(monkeypatch, device_count)
    assert minilean.cuda.is_available() is False
    with pytest.raises(minilean.DeviceError, match=rf"^device 'cuda' needs an NVIDIA GPU, but "
                                                   rf"CuPy found none \({reason}\)$"):
        minilean.zeros(1, device="cuda")


def test_cupy_that_finds_a_gpu_computes_on_cuda(monkeypatch):
    cupy = unprobed_cupy(monkeypatch, lambda: 1)
    assert minilean.cuda.is_available() is True
    assert minilean.backend.xp_for("cuda") is cupy


def test_a_constant_is_copied_to_the_device_once_while_it_stays_among_the_latest(fake_cuda,
                                                                                 monkeypatch):
    """``backend.constant`` keeps the device copies of the tables used most recently (a fixed
    number of them, 2 here): a table used again costs no copy, one dropped is copied again."""
    monkeypatch.setattr(minilean.backend, "_CONSTANTS_KEPT", 2)
    a, b, c = numpy.arange(3.0), numpy.arange(3.0) + 1, numpy.arange(3.0) + 2
    host = minilean.backend.constant(a, "cpu")
    assert host is a
    first_a = minilean.backend.constant(a, "cuda")
    numpy.testing.assert_array_equal(first_a.get(), a)
    fake_cupy.transfers.reset()
    first_b = minilean.backend.constant(b, "cuda")
    assert minilean.backend.constant(a.copy(), "cuda") is first_a  # keyed by the contents
    assert minilean.backend.constant(a.astype(numpy.float32), "cuda") is not first_a
    assert fake_cupy.transfers.to_device == 2  # b and the float32 a
    assert minilean.backend.constant(a, "cuda") is first_a  # the latest two: float32 a, a
    minilean.backend.constant(c, "cuda")  # drops the float32 a, used least recently
    fake_cupy.transfers.reset()
    assert minilean.backend.constant(a, "cuda") is first_a
    assert minilean.backend.constant(b, "cuda") is not first_b
    assert fake_cupy.transfers.to_device == 1


def test_zero_grad_zeroes_device_gradients_in_place_without_a_copy(fake_cuda, monkeypatch):
    zero_grads, copies = minilean.nn.module.zero_grads, []

    def counted(*args, **kwargs):  # the zeroing alone: the check's own reads are copies
        fake_cupy.transfers.reset()
        zero_grads(*args, **kwargs)
        copies.append((fake_cupy.transfers.to_host, fake_cupy.transfers.to_device))
    monkeypatch.setattr(minilean.nn.module, "zero_grads", counted)
    check_zero_grad_zeroes_device_gradients_in_place()
    assert copies == [(0, 0)]


def test_init_of_a_device_weight_draws_from_that_devices_generator(fake_cuda):
    """The host's random numbers after it (the data order, the next host draw) are those of
    a run without that init."""
    weight = minilean.nn.Parameter(minilean.zeros(4, 3, device="cuda"))
    for fill in (minilean.nn.init.uniform_, minilean.nn.init.normal_):
        minilean.manual_seed(0)
        fill(weight)
        after = minilean.rand(5).numpy()
        minilean.manual_seed(0)
        numpy.testing.assert_array_equal(minilean.rand(5).numpy(), after)


def test_model_to_cuda_moves_the_gradients_with_the_weights(fake_cuda):
    """A gradient made before the move goes to the device (and is cast) with its weight, as
    ``to(dtype)`` casts it; one left on the host would meet device arrays at the next step."""
    model = minilean.nn.Linear(3, 2)
    model(minilean.ones(1, 3)).sum().backward()
    expected = [param.grad.numpy() for param in model.parameters()]
    model.to("cuda", numpy.float64)
    for param, grad in zip(model.parameters(), expected):
        assert minilean.backend.device_of(param.grad.data) == "cuda"
        assert param.grad.dtype == numpy.float64
        numpy.testing.assert_array_equal(param.grad.numpy(), grad)


@pytest.mark.parametrize("steps_before_move", [0, 2])
@pytest.mark.parametrize("make", [lambda p: minilean.optim.Adam(p, lr=0.01),
                                  lambda p: minilean.optim.SGD(p, lr=0.1, momentum=0.9)],
                         ids=["Adam", "SGD"])
def test_optimizer_and_ema_made_before_model_to_cuda_follow_the_model(fake_cuda, make,
                                                                      steps_before_move):
    """Built before ``model.to("cuda")``, their host state met device parameters at the first
    step: TypeError: Unsupported type <class 'numpy.ndarray'> from deep inside CuPy. The
    state follows its parameter, and the run repeats one that stays on the CPU."""
    gradients = [[numpy.random.default_rng(seed).standard_normal(shape)
                  for shape in ((2, 3), (2,))] for seed in range(4)]

    def run(device):
        minilean.manual_seed(0)
        model = minilean.nn.Linear(3, 2)
        optimizer, ema = make(model.parameters()), minilean.optim.EMA(model, decay=0.5)
        for step, grads in enumerate(gradients):
            if step == steps_before_move:
                model.to(device)
            for param, grad in zip(model.parameters(), grads):
                param.grad = minilean.tensor(grad, dtype=param.dtype, device=param.device)
            optimizer.step()
            ema.update(model)
        state = [array for arrays in optimizer.state.values() for array in arrays]
        assert {minilean.backend.device_of(array) for array in state} == {device}
        assert {minilean.backend.device_of(array) for array in ema.shadow.values()} == {device}
        return ([param.numpy() for param in model.parameters()],
                [numpy.asarray(average.get() if device == "cuda" else average)
                 for average in ema.shadow.values()])

    for moved, stayed in zip(run("cuda"), run("cpu")):
        for ours, expected in zip(moved, stayed):
            numpy.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


# --- every op, forward and backward --------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPS))
def test_engine_op_on_cuda_matches_cpu(rng, fake_cuda, name):
    check_op_on_cuda_matches_cpu(name, rng)


# --- a training step copies nothing to the host ------------------------------------------------

@pytest.mark.parametrize("clip", [False, True], ids=["plain", "clipped"])
def test_training_step_makes_no_host_transfers(fake_cuda, clip):
    _, step = diffusion_step_parts()
    step(0, clip)
    fake_cupy.transfers.reset()
    step(1, clip)
    step(2, clip)
    assert fake_cupy.transfers.to_host == 0, "a training step copied data to the host"


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_diffusion_command_steps_make_no_host_transfers(fake_cuda, monkeypatch, tmp_path,
                                                        prediction):
    """The command's own step: its loss stays on the device until the loop logs."""
    copies = copies_in_each_cli_step(
        monkeypatch, ["diffusion", "--device=cuda", f"--prediction={prediction}", "--steps=4",
                      "--batch-size=4", "--hidden-c=8", "--T=10", "--n-samples=2",
                      "--evaluate=false", "--progress=false", f"--out={tmp_path}"],
        lambda: fake_cupy.transfers.to_host)
    assert copies == [0, 0, 0, 0]


def test_the_loop_reads_device_metrics_back_once_per_log_line(fake_cuda, tmp_path):
    state = TrainState({})
    losses = [minilean.tensor(float(step), device="cuda") for step in range(1, 7)]
    with RunDirectory(tmp_path, {}) as run:
        train(state, lambda batch, step: {"loss": losses[step - 1], "lr": 0.1},
              iter(range(6)), 6, run, log_every=3, checkpoint_every=100, progress=False)
        logged = run.metrics()
    assert fake_cupy.transfers.to_host == 2
    assert [(record["step"], record["loss"]) for record in logged] == [(3, 2.0), (6, 5.0)]


@pytest.mark.parametrize("graph", [False, True], ids=["python", "cuda-graph"])
def test_device_memory_is_flat_across_training_steps(fake_cuda, graph):
    _, step = diffusion_step_parts(graph=graph)
    in_use = []
    for k in range(6):
        step(k)
        gc.collect()
        in_use.append(fake_cupy.bytes_in_use())
    assert len(set(in_use[2:])) == 1, f"device memory in use grew across steps: {in_use}"
    held_loss = step(6)  # the check sees a leak: holding on to a step's loss grows memory
    gc.collect()
    assert fake_cupy.bytes_in_use() > in_use[-1] and held_loss.shape == ()


def test_the_transfer_check_catches_a_host_copy(fake_cuda):
    """The check above can fail: a step that reads its loss on the host is counted."""
    _, step = diffusion_step_parts()
    step(0)
    fake_cupy.transfers.reset()
    float(step(1).item())
    assert fake_cupy.transfers.to_host == 1


# --- CUDA graphs (stream capture emulated as CUDA defines it) ----------------------------------

def test_a_captured_call_replays_on_new_inputs(rng, fake_cuda):
    check_captured_call_replays_on_new_inputs(fake_cuda, rng)


def test_a_captured_call_bakes_in_host_numbers_as_cuda_does(fake_cuda):
    """The stand-in replays as CUDA does, so the graph tests here can fail."""
    check_captured_call_bakes_in_host_numbers()


def test_eager_products_match_numpy(rng, fake_cuda, monkeypatch):
    check_eager_products_match_numpy(fake_cuda, rng, monkeypatch)


def test_captured_products_use_minilean_kernel(rng, fake_cuda):
    """The stand-in refuses cuBLAS while capturing, as CuPy does."""
    check_captured_products_use_minilean_kernel(fake_cuda, rng)


def test_a_host_copy_while_capturing_is_a_clear_error(fake_cuda):
    check_a_host_copy_while_capturing_is_a_clear_error()


def test_a_random_draw_on_the_device_is_refused_in_a_graph(fake_cuda):
    """The stand-in replays a captured draw's numbers at every replay, as a graph with the
    draw's values in it would (it did so silently before the refusal)."""
    check_a_random_draw_on_the_device_is_refused_in_a_graph()


def test_an_interrupted_capture_leaves_none_open(fake_cuda):
    check_an_interrupted_capture_leaves_none_open()


def test_a_stop_as_the_capture_begins_leaves_none_open(fake_cuda, monkeypatch):
    """Ctrl-C or SIGTERM (raised where Python is) just as ``begin_capture`` returns: the
    capture it began is ended, so the next one can begin."""
    begin_capture = fake_cupy.Stream.begin_capture

    def stopped_as_it_returns(stream, mode=None):
        begin_capture(stream, mode)
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(fake_cupy.Stream, "begin_capture", stopped_as_it_returns)
        with pytest.raises(KeyboardInterrupt):
            CapturedCall(lambda x: x + 1.0, (numpy.ones(3),))
    captured = CapturedCall(lambda x: x * 2.0, (numpy.ones(3),))
    numpy.testing.assert_array_equal(captured(numpy.ones(3)).get(), [2.0, 2.0, 2.0])


def test_a_captured_call_refuses_inputs_of_another_shape(fake_cuda):
    captured = CapturedCall(lambda x: x + 1.0, (numpy.ones(3, dtype=numpy.float32),))
    with pytest.raises(ValueError, match=r"input 0: expected float32 of shape \(3,\) \(as "
                                         r"captured\), got float32 \(4,\)"):
        captured(numpy.ones(4, dtype=numpy.float32))


@pytest.mark.parametrize("fast", [False, pytest.param(True, marks=needs_compiler)],
                         ids=["cupy", "fast"])
def test_cuda_graph_trains_like_the_python_step(fake_cuda, tmp_path, fast):
    """Close, not equal: the graph's products come from matmul.cu, which sums in another order
    than NumPy's BLAS (a float32 rounding apart)."""
    check_cuda_graph_trains_like_eager(tmp_path, fast, rtol=1e-6, sample_atol=1)


@needs_compiler
def test_fused_clipping_in_a_graph_clips_the_graphs_own_gradients(fake_cuda):
    check_fused_clipping_in_a_graph_clips_its_own_gradients()


@needs_compiler
def test_a_graph_step_makes_its_device_tables_at_the_warm_up_only(fake_cuda, monkeypatch):
    """Made while capturing, a table could get a block that a temporary freed earlier in the
    capture, which every replay then writes first; the stand-in's arrays are not pooled and
    cannot show that, so the rule itself is checked: no table is made while capturing."""
    from minilean.cuda import multi_tensor, use_fast_kernels
    made = []
    make_table = multi_tensor.Table.__init__
    monkeypatch.setattr(multi_tensor.Table, "__init__", lambda self, *args: (
        made.append(fake_cupy._capture.stream is not None), make_table(self, *args))[-1])
    use_fast_kernels(True)
    _, step = diffusion_step_parts(graph=True)
    step(0, clip=True)  # warm-up and capture, one replay, then Adam and EMA outside the graph
    step(1, clip=True)
    assert made and not any(made)
    assert len(made) == 3  # the graph's clipping table, the shared Adam and EMA ones


def test_a_capture_takes_back_what_its_warm_up_made_in_order(fake_cuda):
    """During the capture, each made_at_warm_up call gets the object the warm-up made at the
    same point; outside a recording it just makes one."""
    from minilean.cuda import graph
    made = []

    def makes_two(x):
        made.append([graph.made_at_warm_up(key, lambda key=key: [key]) for key in ("a", "b")])
        return x + 1

    CapturedCall(makes_two, (numpy.ones(3),))
    warm_up, capture = made
    assert warm_up == [["a"], ["b"]]
    assert capture[0] is warm_up[0] and capture[1] is warm_up[1]
    assert graph.made_at_warm_up("a", lambda: ["new"]) == ["new"]


def test_a_failed_capture_reports_the_first_line_of_its_error(fake_cuda):
    calls = []

    def fails_at_capture(x):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the first line\nand more")
        return x + 1

    with pytest.raises(GraphCaptureError, match="fails_at_capture as a CUDA graph: the first "
                                                "line$"):
        CapturedCall(fails_at_capture, (numpy.ones(3),))


def test_a_capture_that_takes_another_path_than_its_warm_up_is_a_clear_error(fake_cuda):
    from minilean.cuda import graph
    calls = []

    def asks_at_capture_only(x):
        calls.append(1)
        if len(calls) == 2:
            graph.made_at_warm_up("table", lambda: None)
        return x + 1

    with pytest.raises(graph.GraphCaptureError, match="cannot capture .*asks_at_capture_only "
                       "as a CUDA graph: the capture asked for 'table', which its warm-up did "
                       "not make at this point"):
        CapturedCall(asks_at_capture_only, (numpy.ones(3),))
    assert graph._recording is None


def test_a_capture_that_asks_for_another_object_than_its_warm_up_made_is_a_clear_error(
        fake_cuda):
    """The capture asks for a table of other sizes where the warm-up made one: handing it the
    warm-up's would give its kernel a table of other tensors' sizes."""
    from minilean.cuda import graph
    keys = iter([(1, (3,), 4), (1, (5,), 4)])

    def asks_for_other_sizes(x):
        graph.made_at_warm_up(next(keys), lambda: None)
        return x + 1

    with pytest.raises(graph.GraphCaptureError, match=re.escape(
            "the capture asked for (1, (5,), 4), which its warm-up did not make at this point")):
        CapturedCall(asks_for_other_sizes, (numpy.ones(3),))
    assert graph._recording is None


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast-kernels"])
def test_cuda_graph_sampling_replays_the_network(fake_cuda, capsys, fast):
    check_graph_sampling_replays_the_network(capsys, fast)


def test_a_resumed_cuda_graph_run_repeats_an_uninterrupted_one(fake_cuda, tmp_path):
    from minilean.cli import main
    common = ["diffusion", "--device=cuda", "--cuda-graph", "--batch-size=4", "--hidden-c=8",
              "--T=10", "--sampler=ddim", "--sample-steps=2", "--n-samples=2",
              "--evaluate=false", "--progress=false", "--log-every=1"]
    main(common + ["--steps=4", f"--out={tmp_path / 'whole'}"])
    main(common + ["--steps=2", f"--out={tmp_path / 'split'}"])
    main(common + ["--steps=4", f"--resume={tmp_path / 'split'}"])
    whole, split = ([record["loss"] for record in read_metrics(tmp_path / name / "metrics.jsonl")]
                    for name in ("whole", "split"))
    assert len(whole) == 4 and split == whole
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "split" / "samples.npy"),
                                     numpy.load(tmp_path / "whole" / "samples.npy"))


def test_cuda_graph_steps_make_no_host_transfers(fake_cuda, monkeypatch, tmp_path):
    copies = copies_in_each_cli_step(
        monkeypatch, ["diffusion", "--device=cuda", "--cuda-graph", "--steps=3",
                      "--batch-size=4", "--hidden-c=8", "--T=10", "--n-samples=2",
                      "--evaluate=false", "--progress=false", f"--out={tmp_path}"],
        lambda: fake_cupy.transfers.to_host)
    assert copies == [0, 0, 0]


def test_a_step_that_cannot_be_captured_is_a_one_line_error(fake_cuda, monkeypatch, tmp_path,
                                                            capsys):
    from minilean.cli import main
    from minilean.train import diffusion
    clip = diffusion.clip_grad_norm_

    def clip_and_read_the_norm(parameters, max_norm):
        return float(clip(parameters, max_norm).item())

    monkeypatch.setattr(diffusion, "clip_grad_norm_", clip_and_read_the_norm)
    with pytest.raises(SystemExit) as exit_info:
        main(["diffusion", "--device=cuda", "--cuda-graph", "--steps=2", "--batch-size=2",
              "--hidden-c=4", "--T=4", "--sampler=ddim", "--sample-steps=1", "--n-samples=1",
              "--evaluate=false", "--progress=false", f"--out={tmp_path}"])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(error) == 1
    assert error[0].startswith("minilean diffusion: error: --cuda-graph: cannot capture "
                               "run.<locals>.loss_and_clipped_grads as a CUDA graph: ")
    advice = f"--resume={tmp_path} --cuda-graph=false"
    assert error[0].endswith(f"(continue without it: {advice})")
    main(["diffusion", *advice.split()])  # the advice works: the run ends without a graph
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2


def test_cuda_graph_on_the_cpu_says_it_does_nothing(tmp_path, capsys):
    from minilean.cli import main
    main(["diffusion", "--device=cpu", "--cuda-graph", "--steps=1", "--batch-size=2",
          "--hidden-c=4", "--T=4", "--sample-steps=1", "--sampler=ddim", "--n-samples=1",
          "--evaluate=false", "--progress=false", f"--out={tmp_path}"])
    assert "--cuda-graph has no effect on the CPU" in capsys.readouterr().err


# --- every model command end to end on "cuda" ---------------------------------------------------

@pytest.mark.parametrize("fast", [False, pytest.param(True, marks=needs_compiler)],
                         ids=["cupy", "fast"])
@pytest.mark.parametrize("command", sorted(MODEL_COMMAND_RUNS))
def test_model_command_runs_on_cuda(fake_cuda, monkeypatch, tmp_path, command, fast):
    """The shared check, and no ``add.at`` that adds into one place twice
    (``fake_cupy.scatters``): CuPy's atomic additions would make a run on a card differ from
    the next."""
    check_model_command_runs_on_cuda(monkeypatch, tmp_path, command, fast,
                                     lambda: fake_cupy.transfers.to_host)
    assert fake_cupy.scatters.repeated == 0, \
        f"{command}: {fake_cupy.scatters.repeated} add.at calls summed into one place twice"


@needs_compiler
def test_a_run_without_fast_kernels_runs_none_after_one_with_them(fake_cuda, tmp_path):
    """The switch is the process's: a second command in one process (``main`` called again)
    without --fast-kernels ran the kernels the first had switched on, while its config.json
    said fast_kernels false."""
    from minilean.cli import main
    from minilean.cuda import registry
    common = ["autoencoder", "--device=cuda", "--steps=1", "--batch-size=4", "--n-total=16",
              "--n-eval=4", "--progress=false"]
    try:
        main(common + ["--fast-kernels", f"--out={tmp_path / 'fast'}"])
        assert registry.installed()
        main(common + [f"--out={tmp_path / 'plain'}"])
        assert registry.installed() == {}
    finally:
        use_fast_kernels(False)
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["fast_kernels"] is False


def test_a_resumed_vae_run_on_cuda_repeats_an_uninterrupted_one(fake_cuda, tmp_path):
    """The reparameterisation noise of each step repeats after --resume on "cuda" too (a
    checkpoint holds the CPU generator, not the device's)."""
    from minilean.cli import main
    common = ["vae", "--device=cuda", "--n-total=40", "--batch-size=4", "--n-eval=4",
              "--hidden=4", "--latent=2", "--iw-samples=2", "--log-every=1", "--progress=false"]
    main(common + ["--steps=4", f"--out={tmp_path / 'whole'}"])
    main(common + ["--steps=2", f"--out={tmp_path / 'split'}"])
    main(["vae", "--steps=4", f"--resume={tmp_path / 'split'}"])

    def without_times(records):
        return [{key: value for key, value in record.items() if key != "seconds"}
                for record in records]
    whole, split = (without_times(read_metrics(tmp_path / name / "metrics.jsonl"))
                    for name in ("whole", "split"))
    assert len(whole) == 4 and split == whole
    whole, split = (without_times([json.loads((tmp_path / name / "summary.json").read_text())])
                    for name in ("whole", "split"))
    assert split == whole


def test_a_vae_run_decodes_the_same_prior_draws_on_either_device(fake_cuda, tmp_path):
    """The prior samples decode z drawn from the run's host stream, not the device's own
    generator: the stand-in computes as NumPy does, so its images are the CPU's byte for byte."""
    from minilean.cli import main
    for device in ("cpu", "cuda"):
        main(["vae", f"--device={device}", "--n-total=40", "--batch-size=4", "--n-eval=4",
              "--hidden=4", "--latent=2", "--iw-samples=2", "--steps=2", "--progress=false",
              f"--out={tmp_path / device}"])
    on_cpu, on_cuda = ((tmp_path / device / "images" / "prior_samples.ppm").read_bytes()
                       for device in ("cpu", "cuda"))
    assert on_cpu == on_cuda


# --- the stand-in forwards every NumPy name; real CuPy must have each one minilean uses -------

def array_module_names(package_dir):
    """{'xp.name.sub': 'file:line'} for every attribute chain minilean takes from an array
    module: ``xp.<chain>``, ``<obj>.xp.<chain>``, ``array_module(a).<chain>``."""
    used = {}
    for path in sorted(pathlib.Path(package_dir).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            chain, root = [], node
            while isinstance(root, ast.Attribute) and root.attr != "xp":
                chain.append(root.attr)
                root = root.value
            from_module = (isinstance(root, ast.Attribute)
                           or (isinstance(root, ast.Name) and root.id == "xp")
                           or (isinstance(root, ast.Call) and isinstance(root.func, ast.Name)
                               and root.func.id in ("array_module", "xp_for")))
            if from_module and chain:
                used.setdefault(".".join(reversed(chain)), f"{path}:{node.lineno}")
    return used


def test_every_array_module_name_minilean_uses_exists_in_cupy():
    """Needs CuPy installed (no GPU): catches a NumPy-only function in device-generic code."""
    cupy = pytest.importorskip("cupy")
    used = array_module_names(pathlib.Path(minilean.__file__).parent)
    assert "zeros" in used and "random.default_rng" in used
    missing = []
    for chain, where in used.items():
        owner = cupy
        for part in chain.split("."):
            owner = getattr(owner, part, None)
        if owner is None:
            missing.append(f"{chain} ({where})")
    assert not missing, f"not in CuPy {cupy.__version__}: {missing}"


# --- the fast kernels, their CUDA C run on the CPU (tests/cuda_on_cpu.py) ----------------------

@needs_compiler
class TestKernels(KernelCases):
    """Each kernel's CUDA C, compiled for the CPU, against its NumPy reference."""

    @pytest.fixture(name="cupy")
    def emulated_cupy(self, fake_cuda, request):
        if request.node.get_closest_marker("big"):
            pytest.skip("too large for the CPU emulation; runs on a GPU (test_cuda_gpu.py)")
        return fake_cuda


@needs_compiler
@pytest.mark.parametrize("name", sorted(OPS))
def test_engine_op_with_fast_kernels_matches_cpu(rng, fake_cuda, name):
    check_op_on_cuda_matches_cpu(name, rng, fast=True)


@needs_compiler
def test_fast_relu_gives_0_not_nan_for_an_infinite_gradient_below_0(fake_cuda):
    """x.relu().sqrt() sends sqrt's slope at 0, inf, back to x <= 0: the kernel multiplied
    it by relu's slope 0 there (nan), where the plain op, as PyTorch, gives 0."""
    grad = numpy.array([numpy.inf, numpy.inf, 1.0], numpy.float32)
    gradients = []
    for fast in (False, True):
        use_fast_kernels(fast)
        try:
            x = minilean.tensor([-1.0, 0.0, 4.0], device="cuda", requires_grad=True)
            minilean.relu(x).backward(minilean.tensor(grad, device="cuda"))
        finally:
            use_fast_kernels(False)
        gradients.append(x.grad.numpy())
    numpy.testing.assert_array_equal(gradients[1], [0.0, 0.0, 1.0])
    numpy.testing.assert_array_equal(gradients[1], gradients[0])


@needs_compiler
@pytest.mark.parametrize("op", ["tanh", "sigmoid", "softmax", "log_softmax"])
def test_a_write_into_a_result_a_fast_op_keeps_fails_the_backward(fake_cuda, op):
    """The fast op's backward reads its saved result, as the op's does: a write into that
    result after the forward fails the backward with the op's error (test_writes.py), rather
    than giving gradients of the written values."""
    from minilean.optim import SGD
    use_fast_kernels(True)
    try:
        x = minilean.tensor([0.5, 1.0], dtype=numpy.float32, device="cuda", requires_grad=True)
        y = getattr(x, op)() if op in ("tanh", "sigmoid") else getattr(x, op)(-1)
        latent = y.detach().requires_grad_()
        ((latent - 3.0) ** 2).sum().backward()
        SGD([latent], lr=1.0).step()
        with pytest.raises(RuntimeError, match=r"^backward through <Fast\w+Backward>: its "
                                               r"output of shape \(2,\) was written in place"):
            y.sum().backward()
    finally:
        use_fast_kernels(False)


@needs_compiler
def test_fast_group_norm_takes_a_numpy_integer_of_groups(rng, fake_cuda):
    """nn.GroupNorm(numpy.gcd(8, 12), 8), a layer the plain op runs: its NumPy integer made the
    fast kernels' launch sizes NumPy integers, and they stopped on an AttributeError."""
    groups = numpy.gcd(8, 12)
    assert type(groups) is numpy.int64
    layer = minilean.nn.GroupNorm(groups, 8, activation="silu").to("cuda")
    x = rng.normal(size=(2, 8, 3, 3)).astype(numpy.float32)
    assert_fast_gradients_match_cpu(
        lambda x, weight, bias: minilean.nn.functional.group_norm(x, groups, weight, bias,
                                                                  activation="silu"),
        [x, layer.weight.numpy(), layer.bias.numpy()], (True, True, True))
    use_fast_kernels(True)
    try:
        got = layer(minilean.tensor(x, device="cuda")).numpy()
    finally:
        use_fast_kernels(False)
    expected = layer.to("cpu")(minilean.tensor(x)).numpy()
    numpy.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@needs_compiler
@pytest.mark.parametrize("name", sorted(TAIL_ACTIVATIONS))
def test_fast_activation_keeps_the_left_tail(fake_cuda, name):
    check_fast_activation_keeps_the_left_tail(name)


@needs_compiler
@pytest.mark.parametrize("name", sorted(MIXED_DTYPE_OPS))
def test_fast_op_takes_inputs_of_mixed_dtypes(rng, fake_cuda, name):
    check_fast_op_takes_inputs_of_mixed_dtypes(name, rng)


@needs_compiler
def test_fast_q_sample_takes_the_timesteps_the_plain_one_takes(rng, fake_cuda):
    check_fast_q_sample_takes_the_timesteps_the_plain_one_takes(rng)


@needs_compiler
@pytest.mark.parametrize("shape, t", [((4, 3), [0, 9, 3, 3]), ((4, 3), [5]), ((4,), [1, 2, 3, 4]),
                                      ((0, 3), [])])
def test_fast_q_sample_runs_its_kernels(rng, fake_cuda, launched_kernels, shape, t):
    """A timestep per sample or one for all, a batch of vectors or of none: noising.cu's two
    kernels, with the CPU's results (not the plain op that the fast one falls back to, as it
    does for one host timestep: ``check_fast_q_sample_of_one_host_timestep_can_be_captured``)."""
    from minilean.models import diffusion
    alpha_bar = diffusion.alpha_bars(diffusion.make_betas("linear", 10))
    assert_fast_gradients_match_cpu(
        lambda x0, eps: diffusion.q_sample(alpha_bar, x0, numpy.array(t, dtype=numpy.int64), eps),
        [rng.normal(size=shape).astype(numpy.float32) for _ in range(2)], (True, True))
    assert [name for name in launched_kernels if name.startswith("q_sample")] == [
        "q_sample_forward<float>", "q_sample_backward<float>"]


@needs_compiler
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis, launches", [((3, 5), -1, 2), ((5,), 0, 2), ((1,), 0, 2),
                                                   ((), 0, 0)])
def test_fast_softmax_runs_its_kernels_where_they_cover(rng, fake_cuda, launched_kernels, op,
                                                         shape, axis, launches):
    """softmax.cu forward and backward on rows of any length; a 0-d input runs the plain op."""
    function = getattr(minilean.nn.functional, op)
    assert_fast_gradients_match_cpu(lambda x: function(x, axis),
                                    [rng.normal(size=shape).astype(numpy.float32)], (True,))
    assert [name for name in launched_kernels if name.startswith("softmax")] == [
        "softmax_forward<float>", "softmax_backward<float>"][:launches]


@needs_compiler
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("size, target_shape", [(21, (4, 5)), (2, (1, 1))])
def test_fast_mse_loss_runs_its_kernels_on_views(rng, fake_cuda, launched_kernels, reduction,
                                                 size, target_shape):
    """mse.cu's kernels, with the CPU's results, on views: the input one element into its
    array (off the 16-byte boundary), the target transposed, and (reduction "none") a
    transposed gradient coming back."""

    def loss(x, target):
        y = minilean.nn.functional.mse_loss(x[1:].reshape(target_shape[::-1]),
                                            target.transpose(0, 1), reduction=reduction)
        return y.transpose(0, 1) if reduction == "none" else y

    assert_fast_gradients_match_cpu(loss, [rng.normal(size=shape).astype(numpy.float32)
                                           for shape in ((size,), target_shape)], (True, True))
    assert "mse_backward<float>" in launched_kernels


@needs_compiler
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fast_mse_loss_broadcasts_a_target_of_another_shape(rng, fake_cuda, reduction):
    """A (3, 1) target against a (3, 4) input is broadcast, with PyTorch's warning, as by the
    plain op: the kernels read one target element per input element, so it runs the plain op."""
    def loss(x, target):
        with pytest.warns(UserWarning, match="they are broadcast"):
            return minilean.nn.functional.mse_loss(x, target, reduction=reduction)

    assert_fast_gradients_match_cpu(loss, [rng.normal(size=shape).astype(numpy.float32)
                                           for shape in ((3, 4), (3, 1))], (True, True))


@needs_compiler
def test_fused_updates_take_what_the_plain_ones_take(fake_cuda):
    check_fused_updates_take_what_the_plain_ones_take()


@needs_compiler
def test_fused_updates_take_parameters_on_both_devices_and_infinite_ones(fake_cuda):
    check_fused_updates_take_parameters_on_both_devices_and_infinite_ones()


@needs_compiler
def test_fused_adam_divides_before_it_scales(fake_cuda):
    check_fused_adam_divides_before_it_scales()


@needs_compiler
def test_fast_q_sample_of_one_host_timestep_can_be_captured(fake_cuda):
    check_fast_q_sample_of_one_host_timestep_can_be_captured()


@needs_compiler
def test_fast_mean_of_many_equal_values_keeps_its_digits(fake_cuda):
    check_fast_mean_of_many_equal_values_keeps_its_digits()


@needs_compiler
def test_a_captured_call_keeps_the_cached_constants_it_reads(fake_cuda, rng, monkeypatch):
    """A graph reads the schedule table and the convolutions' geometry at every replay; their
    caches may drop them (the geometry's kept 64, so a model of more shapes dropped some at
    every step), and a dropped one's memory could go to another array while the graph still
    read it. The graph keeps them. (This stand-in's graph keeps every launch's arguments, so
    here they would outlive the caches anyway: the test asks the graph what it keeps.)"""
    import weakref

    from minilean import backend
    from minilean.cuda import im2col
    from minilean.models import diffusion
    from minilean.nn import functional as F
    geometries, cached = [], im2col._device_geometry

    def recorded(geometry):
        array = cached(geometry)
        geometries.append(weakref.ref(array))
        return array

    recorded.cache_clear = cached.cache_clear
    monkeypatch.setattr(im2col, "_device_geometry", recorded)
    alpha_bar = diffusion.alpha_bars(diffusion.make_betas("linear", 10))
    weight = minilean.tensor(rng.normal(size=(2, 3, 3, 3)).astype(numpy.float32), device="cuda")
    timesteps = backend.xp_for("cuda").asarray(numpy.array([1, 7]))

    def noised_and_convolved(x, eps):
        noised = diffusion.q_sample(alpha_bar, minilean.Tensor(x), timesteps, minilean.Tensor(eps))
        return F.conv2d(noised, weight, padding=1).data

    examples = [rng.normal(size=(2, 3, 5, 5)).astype(numpy.float32) for _ in range(2)]
    use_fast_kernels(True)
    try:
        captured = CapturedCall(noised_and_convolved, examples)
        expected = noised_and_convolved(*(backend.xp_for("cuda").asarray(a) for a in examples))
    finally:
        use_fast_kernels(False)
    constants = list(backend._constants.values()) + [geometry() for geometry in geometries]
    assert len(backend._constants) == 1 and geometries
    assert all(any(constant is held for held in captured._kept.held) for constant in constants)
    fake_cupy.forget_device_state()  # empties both caches
    # (the graph's products are minilean's own kernel, not cuBLAS's: a few ulps apart)
    numpy.testing.assert_allclose(captured(*examples).get(), expected.get(), rtol=1e-5,
                                  atol=1e-6)


def test_a_captured_call_keeps_the_plain_schedule_tables(fake_cuda):
    check_captured_call_keeps_the_plain_schedule_tables()


@needs_compiler
def test_fast_conv_transpose_makes_columns_once(rng, fake_cuda, monkeypatch):
    check_fast_conv_transpose_makes_columns_once(monkeypatch, rng)


def assert_fast_gradients_match_cpu(function, arrays, needs):
    """The gradients of sum(function(*arrays)^2) on "cuda" with the fast kernels are the CPU's,
    for inputs that need one (``needs``); the others get none."""
    grads = []
    for device in ("cpu", "cuda"):
        use_fast_kernels(device == "cuda")
        try:
            inputs = [minilean.tensor(a, device=device, requires_grad=need)
                      for a, need in zip(arrays, needs)]
            y = function(*inputs)
            (y * y).sum().backward()
        finally:
            use_fast_kernels(False)
        grads.append([t.grad.numpy() if need else t.grad for t, need in zip(inputs, needs)])
    for got, expected, need in zip(grads[1], grads[0], needs):
        if need:
            numpy.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
        else:
            assert got is None and expected is None


@needs_compiler
@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, True)],
                         ids=["input-grad-only", "data-input"])
def test_fast_convolutions_give_just_the_gradients_their_inputs_need(rng, fake_cuda, op, needs):
    """A frozen layer's input gradient, and a first layer's (x is data, no gradient) weight
    and bias gradients, as the CPU's."""
    arrays = [rng.normal(size=shape).astype(numpy.float32) for shape in
              [(2, 4, 5, 5), (4, 4, 3, 3), (4,)]]
    assert_fast_gradients_match_cpu(lambda x, w, b: getattr(minilean.nn.functional, op)(
        x, w, b, stride=2, padding=1), arrays, needs)


NORM_CASES = {  # name: (function, input shapes, which inputs need a gradient)
    "layer_norm_without_affine": (lambda x: minilean.nn.functional.layer_norm(x, (4, 5)),
                                  [(3, 4, 5)], (True,)),
    "group_norm_frozen_affine": (lambda x, w, b: minilean.nn.functional.group_norm(x, 2, w, b),
                                 [(2, 4, 3, 3), (4,), (4,)], (True, False, False)),
    "layer_norm_of_single_elements": (lambda x, w, b: minilean.nn.functional.layer_norm(
        x, (1,), w, b), [(4, 1), (1,), (1,)], (True, True, True)),
    "group_norm_of_a_strided_view": (lambda x, w, b: minilean.nn.functional.group_norm(
        x.transpose(2, 3), 2, w, b), [(2, 4, 3, 5), (4,), (4,)], (True, True, True)),
    # one affine parameter: the kernels must read it as the weight or as the bias it is
    "layer_norm_with_weight_only": (lambda x, w: minilean.nn.functional.layer_norm(
        x, (5,), w), [(3, 4, 5), (5,)], (True, True)),
    "group_norm_with_bias_only": (lambda x, b: minilean.nn.functional.group_norm(
        x, 2, bias=b), [(2, 4, 3, 3), (4,)], (True, True)),
}


@needs_compiler
@pytest.mark.parametrize("name", sorted(NORM_CASES))
def test_fast_norm_gradients_match_cpu(rng, fake_cuda, name):
    """Without affine parameters, with frozen ones, with a weight or a bias alone, on rows of one
    element, on a strided view."""
    function, shapes, needs = NORM_CASES[name]
    arrays = [rng.normal(size=shape).astype(numpy.float32) for shape in shapes]
    assert_fast_gradients_match_cpu(function, arrays, needs)


@needs_compiler
def test_broadcast_gradients_are_summed_by_kernel(rng, fake_cuda, monkeypatch):
    check_broadcast_gradients_are_summed_by_kernel(monkeypatch, rng)


@needs_compiler
def test_a_program_compiles_its_file_on_first_use_only(fake_cuda, monkeypatch):
    """A new Program compiles at its first kernel, then hands out the same kernel; forget()
    makes the next launch compile again."""
    monkeypatch.setattr(kernels, "PROGRAMS", {})
    program = kernels.Program("mse.cu", ["squared_error<float>"])
    compiled, compile_module = [], fake_cuda.RawModule
    monkeypatch.setattr(fake_cuda, "RawModule", lambda *args, **options: compiled.append(
        args) or compile_module(*args, **options))
    kernel = program.kernel("squared_error<float>")
    assert program.kernel("squared_error<float>") is kernel and len(compiled) == 1
    x, y = fake_cuda.arange(8, dtype=numpy.float32), fake_cuda.ones(8, dtype=numpy.float32)
    out = fake_cuda.empty_like(x)
    kernels.launch_chunked(program, "squared_error<float>", 8, 4, (x, y, out, numpy.int64(8)))
    numpy.testing.assert_array_equal(out.get(), (numpy.arange(8) - 1.0) ** 2)
    program.forget()
    program.kernel("squared_error<float>")
    assert len(compiled) == 2


@needs_compiler
def test_a_launch_with_a_wrong_argument_is_refused(fake_cuda):
    """What a real RawKernel would take as raw bytes: a Python int for a long long, an array
    of the wrong type."""
    kernel = mse.program.kernel("squared_error<float>")
    x = fake_cuda.zeros(8, dtype=numpy.float32)
    with pytest.raises(TypeError, match="parameter n is long long, needs numpy.int64, got "):
        kernel((1,), (32,), (x, x, x, 8))
    with pytest.raises(TypeError, match=r"parameter out is float\*, needs a device array of "
                                        r"float32, got ndarray of float64"):
        kernel((1,), (32,), (x, x, x.astype(numpy.float64), numpy.int64(8)))
    with pytest.raises(TypeError, match="takes 4 arguments, got 3"):
        kernel((1,), (32,), (x, x, x))


@needs_compiler
def test_a_chunked_kernel_refuses_a_misaligned_array_and_the_host_copies_one(fake_cuda):
    """A kernel that moves 16-byte vectors stops on a misaligned array, as on a GPU; the host
    side hands it an aligned copy of a view that starts inside its allocation."""
    x = fake_cuda.arange(-4, 5, dtype=numpy.float32)[1:]  # contiguous, 4 bytes past a boundary
    kernel = activations.program.kernel("activation_forward<float, RELU>")
    with pytest.raises(RuntimeError, match="RELU>: misaligned address"):
        kernel((1,), (32,), (x, fake_cuda.empty_like(x), numpy.int64(8), numpy.float32(0)))
    aligned = kernels.chunk_aligned(x)
    assert aligned.data.ptr % kernels.CHUNK_BYTES == 0 and aligned.tolist() == x.tolist()
    assert kernels.chunk_aligned(aligned) is aligned
    assert activations.forward("relu", x).tolist() == [0, 0, 0, 0, 1, 2, 3, 4]


@needs_compiler
def test_fused_updates_keep_the_latest_tables_and_move_aligned_arrays_as_vectors(fake_cuda):
    """A table per list of sizes, the least recently used one dropped past _CACHE_SIZE; the
    kernels move whole chunks as vectors where every array starts on a chunk boundary."""
    from minilean.cuda import ema, multi_tensor
    for size in range(1, multi_tensor._CACHE_SIZE + 3):
        averages = [fake_cuda.zeros(size, dtype=numpy.float32)]
        ema.fused_ema_update(averages, [fake_cuda.ones(size, dtype=numpy.float32)], 0.5)
        numpy.testing.assert_array_equal(averages[0].get(), 0.5)
    assert len(multi_tensor._tables) == multi_tensor._CACHE_SIZE
    aligned = fake_cuda.zeros(8, dtype=numpy.float32)
    assert multi_tensor.device_table([[aligned]], 4).vector
    assert not multi_tensor.device_table([[fake_cuda.zeros(9, dtype=numpy.float32)[1:]]], 4).vector


@needs_compiler
def test_fast_kernels_are_the_ones_used(fake_cuda):
    check_fast_kernels_are_used()


@needs_compiler
def test_fast_kernels_train_like_plain_cupy(fake_cuda):
    check_fast_kernels_train_like_plain()


@needs_compiler
def test_gpu_benchmark_script_runs_end_to_end(fake_cuda, monkeypatch, capsys):
    """bench_gpu.py on tiny sizes, so a GPU session does not spend its minutes on a crash."""
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    from minilean.cuda import adam
    updates = []  # what the Adam row updates: a model's worth of parameters, not single values
    fused_adam_update = adam.fused_adam_update
    monkeypatch.setattr(adam, "fused_adam_update", lambda params, *rest, **settings: (
        updates.append([p.size for p in params]), fused_adam_update(params, *rest, **settings)))
    assert bench_gpu.main(["--batch-size=2", "--hidden-c=8", "--image-size=8", "--T=10",
                           "--steps=1", "--rounds=2", "--n-samples=2", "--sample-steps=2",
                           "--elements=4096", "--matmul-size=16"]) == 0
    report = capsys.readouterr().out
    assert "CPU stand-in for CuPy" in report and "minilean fast kernels" in report
    assert "gelu_tanh backward" in report and "PyTorch eager" in report
    assert "adam update over 8 tensors" in report and "mse loss backward" in report
    assert [512] * 8 in updates  # --elements=4096 over 8 tensors
    assert "fast kernels + CUDA graph" in report and "failed" not in report
    assert "minilean fast kernels + CUDA graph: DDIM 2 steps" in report
    assert re.search(r"gelu forward \(4096 float32\) +\d+ GB/s = \d+% of copy \(\d+-\d+% over "
                     r"2 rounds\)", report)


@needs_compiler
def test_gpu_benchmark_reports_a_failed_sampler_as_a_row_and_goes_on(fake_cuda, monkeypatch,
                                                                    capsys):
    """A sampler whose graph could not be captured ended the whole run, and as the rows were
    printed only at the end, none reached the log. Rows now print as they are measured."""
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    made = bench_gpu.minilean_step

    def failing_graph_sampler(args, fast, graph):
        step, sample, synchronize = made(args, fast, graph)
        if graph:
            def sample():
                raise RuntimeError("capture failed")
        return step, sample, synchronize
    monkeypatch.setattr(bench_gpu, "minilean_step", failing_graph_sampler)
    assert bench_gpu.main(["--batch-size=2", "--hidden-c=8", "--image-size=8", "--T=10",
                           "--steps=1", "--rounds=1", "--n-samples=2", "--sample-steps=2",
                           "--elements=4096", "--matmul-size=16"]) == 0
    report = capsys.readouterr().out
    for label in ("minilean plain CuPy + CUDA graph", "minilean fast kernels + CUDA graph"):
        assert f"sampling | {label} | failed: RuntimeError: capture failed\n" in report
        assert re.search(f"train step +{re.escape(label)}: U-Net .* ms", report)  # still timed
    assert report.startswith("card |  | ")  # streamed, before the table
    # the stand-in has no CUPTI: each step's GPU-work row says so instead of a number
    assert len(re.findall(r"gpu work +minilean .* not measured", report)) == 4


@needs_compiler
def test_host_cost_benchmark_runs_end_to_end(fake_cuda, monkeypatch, capsys):
    """host_costs.py on the stand-in: every row and each of its ways, PyTorch's column empty
    with the reason (the stand-in machine's PyTorch has no CUDA), nothing left switched on."""
    host_costs = benchmark_script(monkeypatch, "host_costs")
    from minilean.cuda import registry
    assert host_costs.main(["--calls=2"]) == 0
    report = capsys.readouterr().out.splitlines()
    rows = [line for line in report if "minilean:" in line]
    assert len(rows) == 11
    assert re.search(r"^a contiguous array made contiguous \(a no-op\) +minilean: "
                     r"cupy\.ascontiguousarray [\d.]+ us, flags\.c_contiguous [\d.]+ us  \|",
                     rows[5])
    assert re.search(r"^product 24x216 @ 216x8192 +minilean: cupy\.matmul [\d.]+ us, "
                     r"ndarray\.dot [\d.]+ us, backend\.matmul [\d.]+ us  \|  PyTorch: "
                     r"not measured: ", rows[9])
    assert re.search(r"^relu of a tensor, recording the graph +minilean: Tensor\.relu [\d.]+ us",
                     rows[3])
    assert re.search(r"^a transposed view of a 24x216 matrix +minilean: ndarray\.swapaxes "
                     r"[\d.]+ us, ndarray\.T [\d.]+ us  \|", rows[7])
    assert report[-1] == "command: python benchmarks/host_costs.py --calls=2"
    assert not registry.installed()  # fast kernels off again


def test_gpu_benchmark_busy_time_is_the_union_of_the_device_intervals(monkeypatch):
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")

    def event(name, start, end, device="cuda"):
        return types.SimpleNamespace(name=name, device_type=device,
                                     time_range=types.SimpleNamespace(start=start, end=end))

    events = [event("gemm", 10.0, 30.0), event("aten::mm", 0.0, 100.0, device="cpu"),
              event("relu", 25.0, 40.0),   # overlaps gemm on another stream: counts once
              event("Memcpy HtoD", 50.0, 52.0), event("adam", 60.0, 61.5)]
    intervals = bench_gpu.device_intervals(events, "cuda")
    assert [name for name, _, _ in intervals] == ["gemm", "relu", "Memcpy HtoD", "adam"]
    assert bench_gpu.busy_time(intervals) == 30.0 + 2.0 + 1.5
    assert bench_gpu.busy_time(intervals[::-1]) == 33.5  # in any order
    assert bench_gpu.busy_time([("inner", 12.0, 20.0), ("outer", 10.0, 40.0)]) == 30.0
    assert bench_gpu.busy_time([]) == 0.0


def test_gpu_benchmark_shares_are_medians_of_ratios_to_a_copy_timed_beside_each_kernel(
        monkeypatch):
    """A card that slows down halfway (every time doubles) leaves each share as it was."""
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    timed = []
    speeds = iter([1.0] * 4 + [0.5] * 4 + [1.0] * 4)  # one per call of gpu_time, in order
    # every call takes a second at full speed; each names what it stands for
    monkeypatch.setattr(bench_gpu, "gpu_time", lambda call, repeats: (
        timed.append(call()), 1.0 / next(speeds))[-1])
    copy = (200, lambda: "copy")  # 200 bytes a second
    kernels = {"half": (100, lambda: "half"), "slow": (30, lambda: "slow")}
    shares = bench_gpu.copy_shares(kernels, copy, rounds=3)
    assert timed == ["copy", "half", "copy", "slow"] * 3  # a copy right before each kernel
    assert shares["half"] == (100.0, 0.5, 0.5, 0.5)  # bandwidth: the median of 100, 50, 100
    assert shares["slow"][1:] == (0.15, 0.15, 0.15)


def test_gpu_benchmark_times_the_step_variants_in_turn_with_their_own_kernels(monkeypatch):
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    switched, timed = [], []
    monkeypatch.setattr(bench_gpu, "wall_time", lambda step, count, synchronize, warmup: (
        timed.append((step(), switched[-1], count, warmup)), 0.25 * len(timed))[-1])
    steps = {"plain": (False, lambda: "plain", None), "fast": (True, lambda: "fast", None)}
    times = bench_gpu.interleaved_step_times(steps, 7, 3, switched.append)
    # every other round in reverse order: a drift within a round does not favour one variant
    assert timed == [("plain", False, 7, 1), ("fast", True, 7, 1), ("fast", True, 7, 1),
                     ("plain", False, 7, 1), ("plain", False, 7, 1), ("fast", True, 7, 1)]
    assert switched[-1] is False  # fast kernels off again after the last variant
    assert times == {"plain": [0.25, 1.0, 1.25], "fast": [0.5, 0.75, 1.5]}


@pytest.mark.parametrize("count", range(1, 80))
def test_gpu_benchmark_median_interval_is_the_sign_tests(monkeypatch, count):
    """The k-th smallest and k-th largest of n values miss the median with probability
    2 P(Binomial(n, 1/2) <= k - 1): at most 5% for the k returned, more for k + 1."""
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    values = numpy.random.default_rng(count).permutation(count) * 0.5
    median, low, high = bench_gpu.median_interval(list(values))
    assert median == numpy.median(values)

    def miss(k):  # P(the interval of the k-th values misses the median)
        return 2 * sum(math.comb(count, below) for below in range(k)) / 2 ** count

    if low is None:
        assert high is None and miss(1) > 0.05 and count < 6
        return
    k = int(low / 0.5) + 1  # values are 0, 0.5, 1, ...: low is the k-th smallest
    assert high == (count - k) * 0.5 and miss(k) <= 0.05
    assert k == count // 2 or miss(k + 1) > 0.05


@needs_compiler
@pytest.mark.parametrize("theirs, verdict", [
    (1.0, "0.50x PyTorch eager's speed .*95% interval 0.50-0.50x: slower"),
    (4.0, "2.00x PyTorch eager's speed .*95% interval 2.00-2.00x: faster")])
def test_gpu_benchmark_parity_mode_times_only_the_fast_eager_step_and_pytorchs(
        fake_cuda, monkeypatch, capsys, theirs, verdict):
    """--parity on the stand-in, with a PyTorch step that takes ``theirs`` seconds against
    minilean's 2: 41 rounds by default, of the fast eager step and PyTorch's alone."""
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    monkeypatch.setattr(bench_gpu, "load_torch_cuda", lambda: (
        types.SimpleNamespace(__version__="0.0-test"), ""))
    parameters = bench_gpu.unet_parameters(types.SimpleNamespace(hidden_c=8))
    monkeypatch.setattr(bench_gpu, "torch_step", lambda torch, args: (
        lambda: "torch", lambda: None, parameters))
    timed = []

    def wall_time(step, count, synchronize, warmup):
        result = step()
        timed.append(result or "minilean")
        return theirs if result == "torch" else 2.0

    monkeypatch.setattr(bench_gpu, "wall_time", wall_time)
    assert bench_gpu.main(["--parity", "--batch-size=2", "--hidden-c=8", "--image-size=8",
                           "--T=10", "--steps=3"]) == 0
    report = capsys.readouterr().out.splitlines()
    assert timed == ["minilean", "torch", "torch", "minilean"] * 20 + ["minilean", "torch"]
    # the card's row as measured, a line per round as it ends (a run cut short by its timeout
    # keeps them), then the table
    assert report[0].startswith("card |  | ")
    report = report[1:]
    assert report[:41] == [f"parity round {k}/41: minilean 2000.00 ms, PyTorch "
                           f"{1e3 * theirs:.2f} ms, {theirs / 2.0:.2f}x" for k in range(1, 42)]
    assert re.search(r"^parity +minilean fast kernels, eager, vs PyTorch 0.0-test eager: U-Net "
                     r"hidden 8, batch 2x3x8\^2, 41 rounds of 3 steps +" + verdict, report[42])
    assert len(report) == 44 and report[43].startswith("command: python benchmarks/bench_gpu.py")


def test_gpu_benchmark_parity_refuses_a_pytorch_model_of_another_size(monkeypatch):
    """--parity, like the full run, compares only the same U-Net: a PyTorch model with other
    parameters is an error, not a speed ratio."""
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    monkeypatch.setattr(bench_gpu, "load_torch_cuda", lambda: (
        types.SimpleNamespace(__version__="0.0-test"), ""))
    monkeypatch.setattr(bench_gpu, "minilean_step", lambda args, fast: (
        lambda: None, None, lambda: None))
    monkeypatch.setattr(bench_gpu, "torch_step", lambda torch, args: (
        lambda: None, lambda: None, 12))
    monkeypatch.setattr(bench_gpu, "wall_time", lambda step, count, synchronize, warmup: 1.0)
    args = types.SimpleNamespace(hidden_c=8, batch_size=2, image_size=8, steps=1, rounds=6)
    with pytest.raises(RuntimeError, match=r"^the PyTorch U-Net has 12 parameters, "
                                           r"minilean's \d+: not the same model$"):
        bench_gpu.parity(args, lambda fast: None)


@needs_compiler
def test_host_layer_benchmark_runs_the_fast_path_of_the_stand_in(monkeypatch, capsys):
    """host_layer.py's null device launches every raw kernel the stand-in does in the same
    step: it times the fast path, not a fallback."""
    count_device_ops = benchmark_script(monkeypatch, "count_device_ops")
    host_layer = benchmark_script(monkeypatch, "host_layer")
    with monkeypatch.context() as patches:
        fake_cupy.install(patches)
        use_fast_kernels(True)
        try:
            _, step = diffusion_step_parts(2, 8, 4)
            step(0, clip=True)
            counts = count_device_ops.count_step(fake_cupy, cuda_on_cpu,
                                                 lambda k: step(k, clip=True))
        finally:
            fake_cupy.forget_device_state()
    with monkeypatch.context() as patches:
        assert host_layer.main(["--rounds=2", "--steps=1", "--hidden-c=8"], patches) == 0
    report = capsys.readouterr().out.splitlines()
    assert f" on the null device: {counts['launches']} raw launches;" in report[0]
    assert re.search(r"median (\d+\.\d+) ms, min (\d+\.\d+) ms over 2 rounds of 1$", report[0])
    assert report[1] == "command: python benchmarks/host_layer.py --rounds=2 --steps=1 --hidden-c=8"


def test_count_device_ops_tells_launches_from_views_and_allocations(fake_cuda, monkeypatch):
    count_device_ops = benchmark_script(monkeypatch, "count_device_ops")
    x, y = fake_cuda.arange(6.0).reshape(2, 3), fake_cuda.zeros(3)

    def step(_):
        x + 1.0                                  # a kernel: new memory
        x.reshape(3, 2), x.T, x[0]               # views
        fake_cuda.empty((4,)), fake_cuda.ascontiguousarray(x)  # an allocation; x as it is
        y.astype(y.dtype, copy=False)            # y as it is (NumPy returns the array itself)
        x[0] = 0.0                               # a kernel writing in place
        fake_cuda.multiply(x, 2.0, out=x)        # another
        fake_cuda.ascontiguousarray(x.T)         # a copy: new memory
        x.sum(axis=0)                            # a reduction: new memory

    counts = count_device_ops.count_step(fake_cupy, cuda_on_cpu, step)
    assert counts["cupy operations"] == 5 and counts["launches"] == 0


def test_count_device_ops_models_how_cupy_runs_each_product(fake_cuda, monkeypatch):
    count_device_ops = benchmark_script(monkeypatch, "count_device_ops")
    matrix, batch = fake_cuda.ones((4, 6)), fake_cuda.ones((2, 6, 5))
    work = count_device_ops.cupy_product_work
    assert work(matrix, fake_cuda.ones((6, 5))) == ("single", 0)
    assert work(matrix[:, ::2], fake_cuda.ones((3, 5))) == ("single", 1)  # copied first
    assert work(matrix.T, fake_cuda.ones((4, 2))) == ("single", 0)  # F-contiguous: read as is
    assert work(fake_cuda.ones((1, 4, 6)), fake_cuda.ones((1, 6, 5))) == ("single", 0)
    assert work(fake_cuda.ones((2, 4, 6)), batch) == ("batched", 0)
    # broadcast batch dimensions: 3 x (ndim - 2) launches of matrix addresses, plus the copy
    assert work(matrix, batch) == ("batched, broadcast", 3)
    assert work(matrix, fake_cuda.ones((2, 5, 6)).transpose(0, 2, 1)) == (
        "batched, broadcast", 4)


@needs_compiler
def test_count_device_ops_counts_what_a_graph_step_leaves_to_python(monkeypatch, capsys):
    count_device_ops = benchmark_script(monkeypatch, "count_device_ops")
    try:
        assert count_device_ops.main(["--batch-size=2", "--hidden-c=8", "--image-size=8",
                                      "--sites=2"], monkeypatch) == 0
    finally:
        fake_cupy.forget_device_state()
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("  ")[1].strip(): [int(word) for word in line.split() if word.isdigit()]
            for line in lines if line.startswith("  ") and not line.startswith("    ")}
    # each variant's products, then its two busiest lines follow it; the fast step's
    # convolutions are plain 2-D GEMMs, so CuPy adds no launches around its products
    fast_row = lines.index(next(line for line in lines if line.startswith("  --fast-kernels ")))
    products = re.fullmatch(r"    products: (\d+) single, (\d+) batched, 0 batched with "
                            r"broadcast; (\d+) launches around them", lines[fast_row + 1])
    assert products and int(products[1]) > 10 * int(products[2]) and int(products[3]) < 10
    estimate = re.fullmatch(r"    kernel launches, estimated: (\d+) = (\d+) raw \+ (\d+) CuPy "
                            r"operations \+ (\d+) around products", lines[fast_row + 2])
    assert estimate and int(estimate[1]) == sum(int(estimate[i]) for i in (2, 3, 4))
    assert int(estimate[2]) == rows["--fast-kernels"][1] and int(estimate[3]) > 50
    # (the busiest: backend.matmul's ndarray.dot of two matrices)
    assert re.fullmatch(r" +\d+  minilean/backend\.py:\d+ matmul", lines[fast_row + 3])
    # the plain step has no broadcast products either (GroupNorm sums by a reduction on CuPy)
    plain = re.match(r"    products: \d+ single, \d+ batched, (\d+) batched with broadcast",
                     lines[lines.index(next(
                         line for line in lines if line.startswith("  plain CuPy "))) + 1])
    assert int(plain[1]) == 0
    assert rows["--fast-kernels --cuda-graph"] == [1, 2, 1]  # the loss copy; Adam, EMA; graph
    assert rows["plain CuPy"][0] > rows["--fast-kernels"][0] > \
        rows["plain CuPy --cuda-graph"][0] > 1
    assert rows["--fast-kernels"][1] > 100 and rows["plain CuPy"][1:] == [0, 0]


@needs_compiler
def test_the_gpu_tests_themselves_run_on_the_stand_in():
    """tests/test_cuda_gpu.py's own tests (the ones it does not share with this file, each in
    one variant), run with ``import cupy`` giving the stand-in: a GPU session will not spend
    its minutes on a mistake in the test code. The variants left out are the fast-kernel ones
    ("...fast]", and "fast-..." where a test has a second axis): their test code is the plain
    variant's, and the emulated kernels ran them for 45 of this test's 90 seconds."""
    root = pathlib.Path(__file__).resolve().parent.parent
    shim = str(root / "tests" / "cupy_on_cpu")
    paths = [shim, str(root), os.environ.get("PYTHONPATH", "")]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in paths if path))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
         "-k", "not TestKernels and not engine_op and not fast] and not [fast-",
         "tests/test_cuda_gpu.py"],
        cwd=root, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "skipped" not in result.stdout and " passed" in result.stdout, result.stdout[-2000:]


def test_gpu_benchmark_refuses_rounds_below_one(monkeypatch, capsys):
    """--rounds 0 would have fallen back to the default unsaid (0 is false)."""
    bench_gpu = benchmark_script(monkeypatch, "bench_gpu")
    with pytest.raises(SystemExit) as exit_info:
        bench_gpu.main(["--parity", "--rounds=0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.rstrip().endswith(
        "error: argument --rounds: expected an integer >= 1, got 0")
