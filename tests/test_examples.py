"""The teaching examples run as a user would run them, and say what they promise."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script):
    # One BLAS thread: the examples' products are small, and OpenBLAS's threads, waiting on
    # each other, made the ring example take 95 s instead of 5 on a machine busy with other
    # work (README, "Threads"); with one it takes 4-5 s either way.
    environment = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_autograd_from_scratch_gradients_agree_with_finite_differences():
    output = _run("autograd_from_scratch.py")
    pairs = re.findall(r"autograd ([-+.\d]+)\s+finite difference ([-+.\d]+)", output)
    assert len(pairs) == 8  # 6 weights and 2 biases
    for analytic, numeric in pairs:
        assert abs(float(analytic) - float(numeric)) < 1e-8
    assert float(re.search(r"largest difference: (\S+)", output).group(1)) < 1e-7
    assert output.rstrip().endswith("gradients agree")


def test_train_classifier_learns_the_spirals():
    output = _run("train_classifier.py")
    losses = [float(value) for value in re.findall(r"loss (\d+\.\d+)", output)]
    assert losses[-1] < 0.5 * losses[0]
    assert float(re.search(r"test accuracy: (\S+)", output).group(1)) > 0.9
    # the rate each printed step trained at: step 0 at the warm-up's first, 1e-2 / 30 (the
    # line once showed the next step's, 2e-2 / 30)
    assert re.search(r"step    0  loss \S+  lr 0\.00033\n", output)


def test_diffusion_on_a_ring_learns_the_modes():
    """Trained for its 3000 steps, the example's DDPM reaches every mode and puts most samples
    near one (0.84 within 3 std; the data: 0.99). After 100 steps 0.02 of them are that
    close, and with the sign of v flipped in the loss, or of eps in the sampler, none."""
    output = _run("diffusion_on_a_ring.py")
    losses = [float(value) for value in re.findall(r"mean loss (\d+\.\d+)", output)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert re.search(r"modes reached: 8 of 8", output)
    assert float(re.search(r"within 3 std of a mode: (\S+)", output).group(1)) > 0.7
