"""minilean on a GPU: every kernel against its NumPy reference (tests/kernel_cases.py), every
engine op on "cuda" against the CPU (with and without fast kernels), the ops' ``fresh_grads``
promise, no host transfers and no memory growth in a training step, and every model command
end to end (the diffusion command at its defaults too). Every test here is marked gpu and is
skipped without an NVIDIA GPU and CuPy (see conftest.py).
"""
import json
import math
import subprocess
import sys

import pytest

from device_cases import (FRESH_GRAD_CASES, MIXED_DTYPE_OPS, MODEL_COMMAND_RUNS, OPS,
                          TAIL_ACTIVATIONS, assert_fresh_grads,
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
                          check_fast_kernels_train_like_plain,
                          check_graph_sampling_replays_the_network,
                          check_model_command_repeats_bit_for_bit,
                          check_model_command_runs_on_cuda, check_op_on_cuda_matches_cpu,
                          check_zero_grad_zeroes_device_gradients_in_place,
                          copies_in_each_cli_step, diffusion_step_parts,
                          run_fresh_grad_case)
from kernel_cases import KernelCases
from minilean.cuda import use_fast_kernels

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")


@pytest.fixture(name="cupy")
def cupy_module():
    """The array module the kernel tests (kernel_cases.py) run with: CuPy itself."""
    return cupy


class TestKernels(KernelCases):
    """Each kernel against its NumPy reference, on the GPU."""


# --- every engine op on "cuda" against the CPU --------------------------------------------------

@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_engine_op_on_cuda_matches_cpu(rng, name, fast):
    check_op_on_cuda_matches_cpu(name, rng, fast)


def test_zero_grad_zeroes_device_gradients_in_place():
    check_zero_grad_zeroes_device_gradients_in_place()


def test_fast_kernels_are_actually_used():
    check_fast_kernels_are_used()


@pytest.mark.parametrize("name", sorted(TAIL_ACTIVATIONS))
def test_fast_activation_keeps_the_left_tail(name):
    check_fast_activation_keeps_the_left_tail(name)


@pytest.mark.parametrize("name", sorted(MIXED_DTYPE_OPS))
def test_fast_op_takes_inputs_of_mixed_dtypes(rng, name):
    check_fast_op_takes_inputs_of_mixed_dtypes(name, rng)


def test_fast_q_sample_takes_the_timesteps_the_plain_one_takes(rng):
    check_fast_q_sample_takes_the_timesteps_the_plain_one_takes(rng)


def test_fused_updates_take_what_the_plain_ones_take():
    check_fused_updates_take_what_the_plain_ones_take()


def test_fused_updates_take_parameters_on_both_devices_and_infinite_ones():
    check_fused_updates_take_parameters_on_both_devices_and_infinite_ones()


def test_fused_adam_divides_before_it_scales():
    check_fused_adam_divides_before_it_scales()


def test_fast_q_sample_of_one_host_timestep_can_be_captured():
    check_fast_q_sample_of_one_host_timestep_can_be_captured()


def test_fast_mean_of_many_equal_values_keeps_its_digits():
    check_fast_mean_of_many_equal_values_keeps_its_digits()


def test_fast_conv_transpose_makes_columns_once(rng, monkeypatch):
    check_fast_conv_transpose_makes_columns_once(monkeypatch, rng)


def test_broadcast_gradients_are_summed_by_kernel(rng, monkeypatch):
    check_broadcast_gradients_are_summed_by_kernel(monkeypatch, rng)


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
@pytest.mark.parametrize("name", sorted(FRESH_GRAD_CASES))
def test_declared_fresh_gradients_are_fresh(rng, name, fast):
    """What lets a leaf's .grad be the op's own array holds for CuPy's results too."""
    use_fast_kernels(fast)
    try:
        assert_fresh_grads(run_fresh_grad_case(name, rng, "cuda"), rng)
    finally:
        use_fast_kernels(False)


# --- a training step: no host transfers, no memory growth, same numbers with fast kernels -------

class HostTransfers:
    """Counts device-to-host copies made through CuPy's Python-level entry points."""

    NAMES = ("get", "item", "tolist", "__float__", "__int__", "__bool__", "__array__")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(cupy.ndarray, name)
            monkeypatch.setattr(cupy.ndarray, name, self._counting(original))
        monkeypatch.setattr(cupy, "asnumpy", self._counting(cupy.asnumpy))

    def _counting(self, original):
        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)
        return counted


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_training_step_makes_no_host_transfers(monkeypatch, fast):
    use_fast_kernels(fast)
    try:
        _, step = diffusion_step_parts()
        step(0)  # warm-up: compiles kernels, fills caches
        transfers = HostTransfers(monkeypatch)
        cupy.zeros(1).get()  # the counter sees CuPy's own entry points
        assert transfers.count == 1
        step(1)
        step(2)
        cupy.cuda.Stream.null.synchronize()
        assert transfers.count == 1, "a training step copied data to the host"
    finally:
        use_fast_kernels(False)


@pytest.mark.parametrize("graph", [False, True], ids=["python", "cuda-graph"])
@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_diffusion_command_steps_make_no_host_transfers(monkeypatch, tmp_path, fast, graph):
    """The command's own step (v-prediction, clipping, lr schedule, EMA), kernels included."""
    transfers = HostTransfers(monkeypatch)
    argv = ["diffusion", "--device=cuda", "--steps=4", "--batch-size=8", "--hidden-c=8", "--T=20",
            "--n-samples=2", "--evaluate=false", "--progress=false", f"--out={tmp_path}"]
    try:
        copies = copies_in_each_cli_step(
            monkeypatch, argv + ["--fast-kernels"] * fast + ["--cuda-graph"] * graph,
            lambda: transfers.count)
    finally:
        use_fast_kernels(False)
    assert copies == [0, 0, 0, 0]


def test_training_step_with_gradient_clipping_makes_no_host_transfers(monkeypatch):
    """The CLI's step clips the gradient norm; the norm must stay on the device."""
    _, step = diffusion_step_parts()
    step(0, clip=True)
    transfers = HostTransfers(monkeypatch)
    step(1, clip=True)
    assert transfers.count == 0, "clip_grad_norm_ copied data to the host"


@pytest.mark.parametrize("graph", [False, True], ids=["python", "cuda-graph"])
@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_memory_pool_is_flat_across_steps(fast, graph):
    use_fast_kernels(fast)
    try:
        _, step = diffusion_step_parts(graph=graph)
        pool = cupy.get_default_memory_pool()
        used = []
        for k in range(8):
            step(k)
            cupy.cuda.Stream.null.synchronize()
            if k >= 3:
                used.append(pool.used_bytes())
        assert max(used) == min(used), f"pool usage grew across steps: {used}"
    finally:
        use_fast_kernels(False)


def test_fast_kernels_train_like_plain_cupy():
    check_fast_kernels_train_like_plain()


# --- CUDA graphs -------------------------------------------------------------------------------

def test_a_captured_call_replays_on_new_inputs(rng):
    check_captured_call_replays_on_new_inputs(cupy, rng)


def test_a_captured_call_bakes_in_host_numbers():
    check_captured_call_bakes_in_host_numbers()


def test_a_captured_call_keeps_the_plain_schedule_tables():
    check_captured_call_keeps_the_plain_schedule_tables()


def test_eager_products_match_numpy(rng, monkeypatch):
    check_eager_products_match_numpy(cupy, rng, monkeypatch)


def test_captured_products_use_minilean_kernel(rng):
    check_captured_products_use_minilean_kernel(cupy, rng)


def test_a_host_copy_while_capturing_is_a_clear_error():
    check_a_host_copy_while_capturing_is_a_clear_error()


def test_a_random_draw_on_the_device_is_refused_in_a_graph():
    check_a_random_draw_on_the_device_is_refused_in_a_graph()


def test_an_interrupted_capture_leaves_none_open():
    check_an_interrupted_capture_leaves_none_open()


def test_fused_clipping_in_a_graph_clips_the_graphs_own_gradients():
    check_fused_clipping_in_a_graph_clips_its_own_gradients()


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_cuda_graph_trains_like_the_python_step(tmp_path, fast):
    """The same kernels on the same inputs; the tolerance allows for the time features and
    schedule coefficients, computed on the GPU in graph mode and on the host otherwise
    (float64 sin/cos may differ in the last bit)."""
    check_cuda_graph_trains_like_eager(tmp_path, fast, rtol=1e-4, sample_atol=2)


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
def test_cuda_graph_sampling_replays_the_network(capsys, fast):
    check_graph_sampling_replays_the_network(capsys, fast)


# --- every model command -------------------------------------------------------------------------

@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
@pytest.mark.parametrize("command", sorted(MODEL_COMMAND_RUNS))
def test_model_command_runs_on_cuda(monkeypatch, tmp_path, command, fast):
    transfers = HostTransfers(monkeypatch)
    check_model_command_runs_on_cuda(monkeypatch, tmp_path, command, fast,
                                     lambda: transfers.count)


@pytest.mark.parametrize("fast", [False, True], ids=["cupy", "fast"])
@pytest.mark.parametrize("command", sorted(MODEL_COMMAND_RUNS))
def test_model_command_repeats_bit_for_bit_on_cuda(monkeypatch, tmp_path, command, fast):
    check_model_command_repeats_bit_for_bit(monkeypatch, tmp_path, command, fast)


# --- the headline command ------------------------------------------------------------------------

@pytest.mark.slow
def test_diffusion_command_on_cuda_with_fast_kernels(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "minilean", "diffusion", "--device=cuda", "--fast-kernels",
               "--steps=5", "--batch-size=8", "--hidden-c=8", "--T=20",
               "--n-samples=4", "--evaluate=false", "--progress=false", f"--out={out}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 5
    assert math.isfinite(summary["final_loss"])
