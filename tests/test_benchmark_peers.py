"""The PyTorch peers that ``benchmarks/`` times minilean against are the same models: with
minilean's weights copied in, the same forward output and the same gradients, in float64.
The benchmarks check this in float32 on every run; here it is exact, so a ratio that
``bench_models.py`` or ``bench_gpu.py`` prints compares like with like. PyTorch is an
optional oracle: skipped without it."""
import importlib
import pathlib

import numpy as np
import pytest

import minilean
from minilean import backend

torch = pytest.importorskip("torch")

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def benchmark_module(monkeypatch, name):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)


def copied_into_torch(model, torch_model):
    """``torch_model`` in float64 with ``model``'s weights; refuses other names or shapes."""
    ours, theirs = dict(model.named_parameters()), dict(torch_model.double().named_parameters())
    assert list(ours) == list(theirs)  # the same layers, registered in the same order
    with torch.no_grad():
        for name, param in theirs.items():
            assert tuple(param.shape) == ours[name].shape, name
            param.copy_(torch.from_numpy(ours[name].data.astype(np.float64)))
    return torch_model


def assert_same_function(model, torch_model, x, minilean_forward, torch_forward, rng):
    """Output, the input's gradient and every parameter's gradient agree for one random
    cotangent."""
    cotangent = rng.standard_normal(minilean_forward(minilean.tensor(x)).shape)
    ml_x = minilean.tensor(x, requires_grad=True)
    out = minilean_forward(ml_x)
    (out * minilean.tensor(cotangent)).sum().backward()
    t_x = torch.from_numpy(x).requires_grad_()
    t_out = torch_forward(t_x)
    (t_out * torch.from_numpy(cotangent)).sum().backward()
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ml_x.grad.data, t_x.grad.numpy(), rtol=1e-10, atol=1e-12)
    theirs = dict(torch_model.named_parameters())
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad.data, theirs[name].grad.numpy(), rtol=1e-9,
                                   atol=1e-11, err_msg=name)


@pytest.mark.parametrize("hidden_c, size", [(24, 8), (6, 4), (8, 4)])
def test_torch_unet_is_minilean_unet(monkeypatch, rng, hidden_c, size):
    """Architecture, GroupNorm groups, SiLU, time embedding, attention and skip joins: the
    peer of ``bench_models.py`` and ``bench_gpu.py``, given minilean's sinusoidal features."""
    from minilean.models.unet import UNet, sinusoidal_embedding

    torch_unet = benchmark_module(monkeypatch, "torch_unet")
    backend.manual_seed(0)
    model = UNet(3, hidden_c).to(dtype="float64")
    torch_model = copied_into_torch(model, torch_unet.TorchUNet(3, hidden_c))
    x = rng.standard_normal((3, 3, size, size))
    t = rng.integers(0, 200, 3)
    embedding = torch.from_numpy(sinusoidal_embedding(t, hidden_c, 3, minilean.tensor(x)).data)
    assert_same_function(model, torch_model, x, lambda x: model(x, t),
                         lambda x: torch_model(x, embedding), rng)


def test_torch_residual_net_is_minilean_residual_net(monkeypatch, rng):
    """``bench_models.py``'s residual eps-net, given minilean's time channel t / (T - 1)."""
    from minilean.models.residual import ResidualEpsNet

    bench_models = benchmark_module(monkeypatch, "bench_models")
    backend.manual_seed(0)
    model = ResidualEpsNet(3, 200, 16).to(dtype="float64")
    torch_model = copied_into_torch(model, bench_models.TorchResidualEpsNet(3, 16))
    x = rng.standard_normal((2, 3, 8, 8))
    t = rng.integers(0, 200, 2)
    plane = torch.from_numpy(model.time_channel(t, minilean.tensor(x)).data)
    assert_same_function(model, torch_model, x, lambda x: model(x, t),
                         lambda x: torch_model(x, plane), rng)


@pytest.mark.parametrize("script, flags, message", [
    ("bench_models.py", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got 0"),
    ("bench_models.py", ["--threads", "0"], "argument --threads: expected an integer >= 1, got 0"),
    ("bench_models.py", ["--warmup", "-1"], "argument --warmup: expected an integer >= 0, got -1"),
    ("profile_step.py", ["--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
    ("profile_step.py", ["--size", "6"], "argument --size: the U-Net needs a multiple of 4, got 6"),
    ("profile_step.py", ["--fast-kernels"],
     "--fast-kernels needs --device cuda (the CPU step has no fast kernels)"),
    ("blas_threads.py", ["--busy", "0,x"], "argument --busy: expected an integer >= 0, got 'x'"),
    ("memory_growth.py", ["--steps", "3"], "--since 50 is after the last step, --steps 3"),
    ("host_layer.py", ["--rounds", "0"], "argument --rounds: expected an integer >= 1, got 0"),
    # a KeyError and an IndexError traceback
    ("kernel_resources.py", ["--files", "noising.cu,x.cu"],
     "--files: no kernel source x.cu; expected some of activations.cu,adam.cu,clip.cu,ema.cu,"
     "im2col.cu,matmul.cu,mse.cu,noising.cu,norm.cu,reduce.cu,softmax.cu"),
    ("kernel_resources.py", ["--arch", "sm90"],
     "--arch: got 'sm90'; expected a real architecture such as sm_90"),
])
def test_a_bad_flag_value_is_one_line_before_any_work(script, flags, message):
    """Not a traceback after the models were built (``--repeats 0``: the median of nothing)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *flags],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == f"{script}: error: {message}"
    assert "Traceback" not in done.stderr


def test_bench_models_refuses_more_threads_than_numpys_blas_runs():
    """OpenBLAS caps its threads at the cores, torch does not: on 2 cores ``--threads 3``
    timed NumPy's 2 threads against torch's 3 under a header that said "BLAS 3, torch 3"."""
    import os
    import subprocess
    import sys

    too_many = os.cpu_count() + 1
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_models.py"), "--threads",
                           str(too_many), "--cases", "unet4", "--repeats", "1", "--warmup", "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    last = done.stderr.splitlines()[-1]
    assert last.startswith("bench_models.py: error: argument --threads: expected at most ")
    assert last.endswith(f" (the threads NumPy's BLAS library runs on this machine), got "
                         f"{too_many}")
    assert "Traceback" not in done.stderr


def test_torch_ema_is_minilean_ema(monkeypatch, rng):
    """The average ``bench_models.py``'s torch step keeps is minilean's EMA's."""
    from minilean import nn
    from minilean.optim import EMA

    bench_models = benchmark_module(monkeypatch, "bench_models")
    model = nn.Linear(4, 3).to(dtype="float64")
    torch_model = copied_into_torch(model, torch.nn.Linear(4, 3))
    ours, theirs = EMA(model, 0.9), bench_models.TorchEMA(torch_model, 0.9)
    for _ in range(3):
        for param, torch_param in zip(model.parameters(), torch_model.parameters()):
            step = rng.standard_normal(param.shape)
            param.data += step
            with torch.no_grad():
                torch_param += torch.from_numpy(step)
        ours.update(model)
        theirs.update()
    for name, average in zip(dict(model.named_parameters()), theirs.shadow):
        np.testing.assert_allclose(ours.shadow[name], average.numpy(), rtol=1e-12, atol=1e-14)


def test_profile_step_sums_each_ops_own_time_under_its_class():
    """cProfile names a method ``forward`` alone: GroupNorm's and LayerNorm's, every op of
    elementwise.py, were one row each."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(BENCHMARKS / "profile_step.py"), "--steps=1",
                           "--top=200", "--size=4", "--hidden-c=2", "--threads=1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.split("own time per function, summed (ms per step):\n")[1]
    names = {row.split("ms  ")[1] for row in rows.splitlines() if "ms  " in row}
    assert {"norm.py:GroupNorm.forward", "norm.py:GroupNorm.backward",
            "conv.py:Conv2d.forward"} <= names
    assert not {name for name in names if name.endswith((":forward", ":backward"))}


def test_profile_step_times_torch_convolutions_as_minilean_runs_them():
    """``--conv-shapes``: each torch row has a bias where minilean's convolution had one (all
    of the U-Net's), and no input gradient where minilean made none (only ``conv_in``'s, whose
    input is the noised image)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(BENCHMARKS / "profile_step.py"), "--steps=1",
                           "--top=1", "--size=4", "--hidden-c=2", "--threads=1",
                           "--conv-shapes"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.split("(ms per step)\n")[1].splitlines()[:-1]
    assert len(rows) > 5 and all(" +bias " in row for row in rows)
    no_input_gradient = [row.split(":")[0].strip() for row in rows if " no dx " in row]
    assert no_input_gradient == ["x(32, 3, 4, 4) w(2, 3, 3, 3) s1 +bias no dx x1"]


def test_bench_models_alternates_which_framework_goes_first(monkeypatch):
    """Warm-up for both, then each repeat times both, torch first on every other one; each
    turn waits (s) for the other's spinning threads to sleep, then runs one untimed step
    before its timed one (a turn of two steps back to back: the other framework's worker
    threads spinning beside PyTorch's step made it take 87 ms instead of 57)."""
    bench_models = benchmark_module(monkeypatch, "bench_models")
    calls = []
    monkeypatch.setattr(bench_models.time, "sleep", lambda seconds: calls.append(
        "s" if seconds == bench_models.SETTLE_SECONDS else "?"))
    ours, theirs = bench_models.alternate(lambda: calls.append("m"), lambda: calls.append("t"),
                                          repeats=4, warmup=1)
    assert "".join(calls) == "mt" + "smmstt" "sttsmm" "smmstt" "sttsmm"
    assert ours >= 0 and theirs >= 0


def micro_rows_run_once(monkeypatch, bench_models):
    """``bench_models.micro_cases()`` with each step run once instead of timed, and for each
    ``alternate`` call the ``minilean.tensor`` calls its minilean step made."""
    real_tensor, made, per_timed_step = minilean.tensor, [], []

    def counting_tensor(*args, **kwargs):
        made.append(args)
        return real_tensor(*args, **kwargs)

    def run_once(minilean_step, torch_step, repeats=None, warmup=None):
        before = len(made)
        minilean_step()
        per_timed_step.append(len(made) - before)
        torch_step()
        return 1.0, 1.0

    monkeypatch.setattr(bench_models, "alternate", run_once)
    monkeypatch.setattr(bench_models.minilean, "tensor", counting_tensor)
    return bench_models.micro_cases(), per_timed_step


def test_micro_rows_time_the_same_work_on_both_sides(monkeypatch):
    """A fwd+bwd row's minilean step made its cotangent afresh in every timed call
    (``minilean.tensor(seed)``, a copy as large as the op's output: 3 MB for the matmul),
    while torch's used one made before timing."""
    bench_models = benchmark_module(monkeypatch, "bench_models")
    rows, per_timed_step = micro_rows_run_once(monkeypatch, bench_models)
    assert len(per_timed_step) == len(rows) == 12
    assert per_timed_step == [0] * 12


def test_micro_rows_compare_outputs_and_every_input_gradient(monkeypatch):
    """The README: every row gives the output's relative error and the largest relative
    gradient error against PyTorch; the fwd+bwd rows gave neither."""
    bench_models = benchmark_module(monkeypatch, "bench_models")
    rows, _ = micro_rows_run_once(monkeypatch, bench_models)
    backward_rows = [row for row in rows if row["case"].endswith(" fwd+bwd")]
    assert len(backward_rows) == 6
    for row in backward_rows:
        errors = row["loss_error"], row["grad_error"]
        assert None not in errors and max(errors) < 1e-5, (row["case"], errors)


def lsgan_and_torch_peers(bench_models, latent, image_shape, hidden):
    """A float64 LSGAN generator and discriminator, and their torch peers holding the same
    weights."""
    from minilean.models.gan import Discriminator, Generator
    generator = Generator(latent, image_shape, hidden).to(dtype="float64")
    discriminator = Discriminator(image_shape, hidden).to(dtype="float64")
    torch_generator = bench_models.TorchGenerator(generator).double()
    torch_discriminator = bench_models.TorchDiscriminator(image_shape, hidden).double()
    bench_models.copy_weights(generator, torch_generator)
    bench_models.copy_weights(discriminator, torch_discriminator)
    return generator, discriminator, torch_generator, torch_discriminator


def test_hand_written_zoo_peers_compute_minilean_losses(monkeypatch, rng):
    """``bench_models.py``'s MAE (attention, LayerNorm, GELU, masking) and GAN peers, written
    by hand rather than read off minilean's layers: loss and every gradient, in float64."""
    from minilean.models.gan import generator_loss
    from minilean.models.mae import MaskedAutoencoder, mae_loss, patchify

    bench_models = benchmark_module(monkeypatch, "bench_models")
    images = rng.uniform(0, 1, (4, 3, 8, 8))
    backend.manual_seed(0)
    mae = MaskedAutoencoder((3, 8, 8), 4).to(dtype="float64")
    mask = mae.random_mask(4, 0.75)
    torch_mae = bench_models.TorchMAE(4, 48).double()
    bench_models.copy_weights(mae, torch_mae)
    keep, restore = torch.from_numpy(mask.keep), torch.from_numpy(mask.restore)
    hidden = torch.from_numpy(mask.hidden.data.astype(np.float64))

    def torch_mae_loss():
        target = torch.from_numpy(patchify(minilean.tensor(images), 4).data)
        difference = torch_mae(target, keep, restore) - target
        return ((difference * difference).mean(-1) * hidden).sum() / hidden.sum()

    assert max(bench_models.check_agreement(
        mae, torch_mae, lambda: mae_loss(mae, minilean.tensor(images), mask),
        torch_mae_loss)) < 1e-12

    generator, discriminator, torch_generator, torch_discriminator = lsgan_and_torch_peers(
        bench_models, 8, (3, 8, 8), 16)
    z = rng.standard_normal((4, 8))

    def torch_generator_loss():
        scores = torch_discriminator(torch_generator(torch.from_numpy(z)))
        return torch.nn.functional.mse_loss(scores, torch.ones_like(scores))

    assert max(bench_models.check_agreement(
        generator, torch_generator,
        lambda: generator_loss(discriminator(generator(minilean.tensor(z)))),
        torch_generator_loss)) < 1e-12


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_torch_encoder_decoders_are_minilean_autoencoder_and_vae(monkeypatch, rng, arch):
    """``bench_models.py``'s autoencoder and VAE peers (torch layers read off minilean's stacks)
    on a non-square image: the autoencoder's sigmoid(decoder(encoder(x))), and the VAE's
    encoder to (mu, logvar), z = mu + e^(logvar / 2) eps, decoder to the mean and the floored
    log-scale; output, input gradient and every parameter gradient."""
    from minilean.autograd.shape import stack
    from minilean.models.autoencoder import Autoencoder
    from minilean.models.vae import MIN_LOG_SCALE, VAE, reparameterize_diag

    bench_models = benchmark_module(monkeypatch, "bench_models")
    x = rng.uniform(0, 1, (3, 2, 8, 12))
    backend.manual_seed(0)
    model = Autoencoder((2, 8, 12), arch, 6, 3).to(dtype="float64")
    torch_model = copied_into_torch(model, bench_models.TorchEncoderDecoder(model))
    assert_same_function(model, torch_model, x, model,
                         lambda x: torch_model.run_decoder(torch_model.run_encoder(x))[:, 0]
                         .sigmoid(), rng)

    vae = VAE((2, 8, 12), arch, 6, 3).to(dtype="float64")
    vae.decoder[-1].bias.data.reshape(2, -1)[1] = MIN_LOG_SCALE  # about half are floored
    torch_vae = copied_into_torch(vae, bench_models.TorchEncoderDecoder(vae))
    eps = rng.standard_normal((3,) + vae.latent_shape)

    def minilean_vae(x):
        mu, logvar = vae.encode(x)
        return stack(vae.decode(reparameterize_diag(mu, logvar, minilean.tensor(eps))), 1)

    def torch_forward(x):
        mu, logvar = torch_vae.run_encoder(x).chunk(2, 1)
        outputs = torch_vae.run_decoder(mu + (0.5 * logvar).exp() * torch.from_numpy(eps))
        return torch.stack([outputs[:, 0], outputs[:, 1].clamp(min=MIN_LOG_SCALE)], 1)

    assert_same_function(vae, torch_vae, x, minilean_vae, torch_forward, rng)


def test_torch_vqvae_and_lsgan_discriminator_compute_minilean_losses(monkeypatch, rng):
    """``bench_models.py``'s VQ-VAE peer (nearest codes, straight-through, codebook and
    commitment terms) with every code in use, and the LSGAN discriminator's loss (reals to
    1, detached fakes to 0): loss and every gradient, in float64."""
    from minilean.models.gan import discriminator_loss
    from minilean.models.vqvae import VQVAE, vqvae_loss

    bench_models = benchmark_module(monkeypatch, "bench_models")
    images = rng.uniform(0, 1, (3, 2, 8, 8))
    backend.manual_seed(0)
    model = VQVAE((2, 8, 8), codes=5, code_dim=3, hidden=4).to(dtype="float64")
    for param in model.parameters():
        param.data[...] = 0.3 * rng.standard_normal(param.shape)
    # each code one of the encodings (N, h, w, D) -> (N h w, D): every code is chosen
    model.codebook.data[...] = model.encode(minilean.tensor(images)).data.reshape(-1, 3)[::2][:5]
    torch_model = bench_models.TorchVQVAE(model).double()
    bench_models.copy_weights(model, torch_model)

    def minilean_loss():
        reconstruction, encoded, quantized, indices = model(minilean.tensor(images))
        assert sorted(set(indices.numpy().ravel().tolist())) == [0, 1, 2, 3, 4]
        return vqvae_loss(minilean.tensor(images), reconstruction, encoded, quantized, 0.25).total

    assert max(bench_models.check_agreement(
        model, torch_model, minilean_loss,
        lambda: torch_model.loss(torch.from_numpy(images), 0.25))) < 1e-12

    generator, discriminator, torch_generator, torch_discriminator = lsgan_and_torch_peers(
        bench_models, 4, (2, 4, 4), 8)
    z, real = rng.standard_normal((3, 4)), rng.uniform(-1, 1, (3, 2, 4, 4))

    def torch_discriminator_loss():
        real_scores = torch_discriminator(torch.from_numpy(real))
        fake_scores = torch_discriminator(torch_generator(torch.from_numpy(z)).detach())
        return (torch.nn.functional.mse_loss(real_scores, torch.ones_like(real_scores))
                + torch.nn.functional.mse_loss(fake_scores, torch.zeros_like(fake_scores)))

    assert max(bench_models.check_agreement(
        discriminator, torch_discriminator,
        lambda: discriminator_loss(discriminator(minilean.tensor(real)),
                                   discriminator(generator(minilean.tensor(z)).detach())),
        torch_discriminator_loss)) < 1e-12
