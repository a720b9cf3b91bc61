#!/usr/bin/env bash
# Every check that needs a GPU, in one run: first the eager --fast-kernels training step against
# PyTorch eager alone (bench_gpu.py --parity, the one target still unmeasured), then the GPU
# tests, the GPU benchmark, the host time per call of what an eager step is made of,
# minilean's own host time per step on this machine's CPU (host_layer.py, no GPU used), then a
# profile of the host's work in an eager --fast-kernels training step.
#
#   bash benchmarks/gpu_session.sh [RESULTS_DIR]      (default: $OUT, else gpu-results)
#
# Run from the repository root of a machine with an NVIDIA GPU and CuPy; minilean is used from
# the checkout (no install). python-fire (for the end-to-end command test) is taken from
# .gpu_site/ when the machine lacks it. Writes versions.txt, parity.log, gpu_tests.log,
# bench_gpu.log, host_costs.log, host_layer.log and profile_step.log. PARITY_ARGS passes flags
# to bench_gpu.py --parity, BENCH_ARGS to bench_gpu.py (a smaller card: BENCH_ARGS="--elements
# 16777216"), HOST_ARGS to host_costs.py, LAYER_ARGS to host_layer.py; PARITY_TIMEOUT,
# TESTS_TIMEOUT, BENCH_TIMEOUT, HOST_TIMEOUT, LAYER_TIMEOUT and PROFILE_TIMEOUT bound each part
# in seconds (defaults 120, 150, 150, 40, 30 and 60: 550 in all, under the 600 s one command
# gets on a lent machine), so a short lease still gets the results of all six;
# PYTEST_ADDOPTS reaches pytest (e.g. "-n 4 --timeout 120"), PROFILE_ARGS profile_step.py.
# Every part runs even when one before it failed; the exit status is the number that failed
# (timed out, or ended non-zero), and status.txt lists each part's.
set -uo pipefail
results=${1:-${OUT:-gpu-results}}
mkdir -p "$results" || { echo "gpu_session: cannot make the results folder $results" >&2; exit 1; }
failed=0
: >"$results/status.txt"

part() {  # part NAME SECONDS COMMAND...: run it bounded, its output to NAME.log and the screen
    local name=$1 seconds=$2 status
    shift 2
    timeout "$seconds" "$@" 2>&1 | tee "$results/$name.log"
    status=$?
    echo "$name: exit $status$([ "$status" = 124 ] && echo " (timed out after $seconds s)")" \
        | tee -a "$results/status.txt"
    [ "$status" = 0 ] || failed=$((failed + 1))
}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/.gpu_site:${PYTHONPATH:-}"
python=${PYTHON:-python3}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$python" -c "import cupy, numpy; v = cupy.cuda.runtime.runtimeGetVersion(); \
print(f'CuPy {cupy.__version__}, CUDA runtime {v // 1000}.{v % 1000 // 10}, NumPy {numpy.__version__}')"
    "$python" -c "import torch; print(f'PyTorch {torch.__version__}, CUDA {torch.version.cuda}')"
} >"$results/versions.txt" 2>&1
cat "$results/versions.txt"
"$python" -c "import fire" 2>/dev/null || echo "gpu_session: python-fire is missing, so the" \
    "command-line tests will fail; copy the fire and termcolor packages into .gpu_site/" >&2

# shellcheck disable=SC2086  # PARITY_ARGS is a list of flags, e.g. "--rounds 61"
part parity "${PARITY_TIMEOUT:-120}" "$python" benchmarks/bench_gpu.py --parity ${PARITY_ARGS:-}
part gpu_tests "${TESTS_TIMEOUT:-150}" "$python" -m pytest -q -m gpu -p no:cacheprovider \
    tests/test_cuda_gpu.py
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags, e.g. "--elements 1048576"
part bench_gpu "${BENCH_TIMEOUT:-150}" "$python" benchmarks/bench_gpu.py ${BENCH_ARGS:-}
# shellcheck disable=SC2086  # HOST_ARGS too
part host_costs "${HOST_TIMEOUT:-40}" "$python" benchmarks/host_costs.py ${HOST_ARGS:-}
# shellcheck disable=SC2086  # LAYER_ARGS too
part host_layer "${LAYER_TIMEOUT:-30}" "$python" benchmarks/host_layer.py ${LAYER_ARGS:-}
# shellcheck disable=SC2086  # PROFILE_ARGS too
part profile_step "${PROFILE_TIMEOUT:-60}" "$python" benchmarks/profile_step.py --device cuda \
    --fast-kernels --steps 20 --top 30 ${PROFILE_ARGS:-}
exit "$failed"
