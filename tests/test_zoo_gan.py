"""LSGAN: the two objectives against TorchLean's numbers, their zeros, gradients in float64,
alternating steps, and ring8 mode coverage."""
import math

import numpy
import pytest

import minilean
from minilean import optim
from minilean.autograd.gradcheck import gradcheck
from minilean.data.builtin import RING8_MODES, RING8_STD
from minilean.data.images import make_grid, read_pnm
from minilean.models import gan


def test_objectives_match_the_worked_example():
    # TorchLean's guide: D(x) = -0.2697, D(G z) = -0.2933 -> L_G = 1.6727, L_D = 1.6982
    real, fake = minilean.tensor([-0.2697]), minilean.tensor([-0.2933])
    assert gan.generator_loss(fake).item() == pytest.approx(1.6727, abs=1e-4)
    assert gan.discriminator_loss(real, fake).item() == pytest.approx(1.6982, abs=1e-4)



def test_objectives_are_mean_squared_distances_to_their_targets():
    """L_D = mean (D(x) - 1)^2 + mean D(G z)^2 and L_G = mean (D(G z) - 1)^2, batches of
    different sizes, in NumPy."""
    real, fake = numpy.array([0.3, -1.2, 0.8, 2.0]), numpy.array([0.1, 0.5, -0.7])
    got = gan.discriminator_loss(minilean.tensor(real), minilean.tensor(fake)).item()
    assert got == pytest.approx(((real - 1) ** 2).mean() + (fake ** 2).mean(), rel=1e-12)
    got = gan.generator_loss(minilean.tensor(fake)).item()
    assert got == pytest.approx(((fake - 1) ** 2).mean(), rel=1e-12)

def test_perfect_scores():
    ones, zeros = minilean.ones(5), minilean.zeros(5)
    assert gan.discriminator_loss(ones, zeros).item() == 0.0
    assert gan.generator_loss(ones).item() == 0.0
    assert gan.generator_loss(zeros).item() == 1.0


def test_whole_losses_gradcheck_float64():
    minilean.manual_seed(0)
    generator = gan.Generator(3, (1, 2, 2), hidden=4).to(dtype=numpy.float64)
    discriminator = gan.Discriminator((1, 2, 2), hidden=4).to(dtype=numpy.float64)
    z = minilean.tensor(numpy.random.default_rng(0).normal(size=(3, 3)), dtype=numpy.float64)
    real = minilean.tensor(numpy.random.default_rng(1).uniform(-1, 1, (3, 1, 2, 2)),
                           dtype=numpy.float64)
    params = list(generator.parameters()) + list(discriminator.parameters())
    assert gradcheck(lambda *_: gan.discriminator_loss(discriminator(real),
                                                       discriminator(generator(z))), params)
    assert gradcheck(lambda *_: gan.generator_loss(discriminator(generator(z))), params)



@pytest.mark.parametrize("data_shape, bounded", [((2,), False), ((1, 4, 4), True)])
def test_both_steps_agree_with_torch(rng, data_shape, bounded):
    """The D step (reals to 1, detached fakes to 0) and the G step (fakes to 1) as training
    takes them, against PyTorch in float64 with the networks of the class docstrings: the
    generator Linear-ReLU-Linear-ReLU-Linear (tanh for images, linear for ring8's points), the
    discriminator two leaky-ReLU(0.2) layers and a linear score. Loss and every gradient: the
    D step's reach D only, the G step's reach G and D alike."""
    torch = pytest.importorskip("torch")
    from torch.nn import functional as TF
    from torch_twins import (assert_same_gradients, assert_same_loss_and_gradients,
                             copied_into_torch, mlp)

    class TorchGenerator(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp([3, 6, 6, math.prod(data_shape)])

        def forward(self, z):
            out = self.net(z).reshape((z.shape[0],) + data_shape)
            return out.tanh() if bounded else out

    class TorchDiscriminator(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden1 = torch.nn.Linear(math.prod(data_shape), 7)
            self.hidden2, self.score = torch.nn.Linear(7, 7), torch.nn.Linear(7, 1)

        def forward(self, x):
            h = TF.leaky_relu(self.hidden1(x.flatten(1)), 0.2)
            return self.score(TF.leaky_relu(self.hidden2(h), 0.2)).reshape(x.shape[0])

    minilean.manual_seed(0)
    generator = gan.Generator(3, data_shape, hidden=6, bounded=bounded).to(dtype=numpy.float64)
    discriminator = gan.Discriminator(data_shape, hidden=7).to(dtype=numpy.float64)
    torch_generator = copied_into_torch(generator, TorchGenerator())
    torch_discriminator = copied_into_torch(discriminator, TorchDiscriminator())
    real, d_noise, g_noise = (rng.uniform(-1, 1, (5,) + data_shape),
                              rng.standard_normal((5, 3)), rng.standard_normal((5, 3)))

    def torch_d_loss():
        real_scores = torch_discriminator(torch.from_numpy(real))
        fake_scores = torch_discriminator(torch_generator(torch.from_numpy(d_noise)).detach())
        return (TF.mse_loss(real_scores, torch.ones_like(real_scores))
                + TF.mse_loss(fake_scores, torch.zeros_like(fake_scores)))

    assert_same_loss_and_gradients(
        discriminator, torch_discriminator,
        lambda: gan.discriminator_loss(discriminator(minilean.tensor(real)),
                                       discriminator(generator(minilean.tensor(d_noise)).detach())),
        torch_d_loss)
    assert all(param.grad is None for param in generator.parameters())

    def torch_g_loss():
        fake_scores = torch_discriminator(torch_generator(torch.from_numpy(g_noise)))
        return TF.mse_loss(fake_scores, torch.ones_like(fake_scores))

    discriminator.zero_grad()
    torch_discriminator.zero_grad(set_to_none=True)
    assert_same_loss_and_gradients(
        generator, torch_generator,
        lambda: gan.generator_loss(discriminator(generator(minilean.tensor(g_noise)))),
        torch_g_loss)
    assert_same_gradients(discriminator, torch_discriminator)



@pytest.mark.parametrize("shape", [(4, 8, 8, 3), (4, 192), (4, 3, 16, 4)])
def test_the_discriminator_refuses_data_of_another_shape(shape):
    """flatten(1) took any shape of the right size: channels-last images were scored as if
    they were channels-first, without an error."""
    discriminator = gan.Discriminator((3, 8, 8), hidden=4)
    with pytest.raises(ValueError, match=rf"^Discriminator scores data of shape \(N, 3, 8, 8\), "
                                         rf"got \({', '.join(map(str, shape))}\)$"):
        discriminator(minilean.rand(*shape))
    assert discriminator(minilean.rand(4, 3, 8, 8)).shape == (4,)
    assert gan.Discriminator((2,), hidden=4)(minilean.rand(5, 2)).shape == (5,)

def test_alternating_steps_lower_each_players_loss():
    minilean.manual_seed(0)
    generator, discriminator = gan.Generator(2, (2,), hidden=16, bounded=False), \
        gan.Discriminator((2,), hidden=16)
    real = minilean.tensor(RING8_MODES[:4])
    z = minilean.randn(4, 2)
    d_opt = optim.Adam(discriminator.parameters(), lr=1e-2)
    before = gan.discriminator_loss(discriminator(real), discriminator(generator(z))).item()
    for _ in range(10):
        d_opt.zero_grad()
        gan.discriminator_loss(discriminator(real), discriminator(generator(z).detach())).backward()
        d_opt.step()
    assert gan.discriminator_loss(discriminator(real), discriminator(generator(z))).item() < before
    g_opt = optim.Adam(generator.parameters(), lr=1e-2)
    before = gan.generator_loss(discriminator(generator(z))).item()
    for _ in range(10):
        g_opt.zero_grad()
        gan.generator_loss(discriminator(generator(z))).backward()
        g_opt.step()
    assert gan.generator_loss(discriminator(generator(z))).item() < before


def test_ring8_coverage():
    modes, share = gan.ring8_coverage(RING8_MODES[:3] + 0.01, RING8_MODES, RING8_STD)
    assert (modes, share) == (3, 1.0)
    modes, share = gan.ring8_coverage(numpy.zeros((4, 2)), RING8_MODES, RING8_STD)
    assert (modes, share) == (0, 0.0)
    # the 3 std radius: 2.9 std out from mode 0 counts, 3.1 std out from mode 2 does not
    # (both radially outward, so each point's nearest mode is its own)
    outward = RING8_MODES[[0, 2]] / numpy.linalg.norm(RING8_MODES[[0, 2]], axis=1, keepdims=True)
    points = RING8_MODES[[0, 2]] + numpy.array([[2.9], [3.1]]) * RING8_STD * outward
    assert gan.ring8_coverage(points, RING8_MODES, RING8_STD) == (1, 0.5)


def test_ring8_coverage_measures_the_distance_to_each_mode():
    """Against modes with no symmetry (a sum in place of the difference would find other
    modes): distances of exactly 3 std count, 3.1 std do not."""
    modes = numpy.array([[0.0, 0.0], [10.0, 0.0]])
    points = numpy.array([[3.0, 0.0], [10.0, 3.0], [0.0, 3.1]])
    assert gan.ring8_coverage(points, modes, 1.0) == (2, pytest.approx(2 / 3))


def test_ring8_coverage_measures_float32_samples_in_float64():
    """A float32 sample (the generator's dtype, and the modes') 3.00000014 std from mode 2
    (float64 difference and norm) is outside 3 std; float32 arithmetic rounds its distance
    to 3 std and would count it."""
    point = numpy.array([[0.1439359039068222, 1.9577808380126953]], numpy.float32)
    distance = numpy.linalg.norm(point.astype(numpy.float64) - RING8_MODES[2].astype(numpy.float64))
    assert distance > 3 * RING8_STD
    assert gan.ring8_coverage(point, RING8_MODES, RING8_STD) == (0, 0.0)


def test_independent_pixel_baseline_draws_every_training_image_equally_often():
    """Each pixel's value comes from a uniformly drawn training image: with images of 0s and
    1s, half of all drawn pixels are 1 (16000 draws: 5 standard deviations is 0.02)."""
    rows = numpy.stack([numpy.zeros((1, 4, 4), numpy.uint8), numpy.ones((1, 4, 4), numpy.uint8)])
    samples = gan.independent_pixel_samples(rows, 1000, seed=0)
    assert samples.mean() == pytest.approx(0.5, abs=0.02)


def test_independent_pixel_baseline_draws_only_from_the_training_rows_it_is_given():
    """``rows`` names the training images among all of them: every drawn pixel comes from one
    of those rows (here image k holds the value k everywhere), never from a held-out image."""
    images = numpy.broadcast_to(numpy.arange(10, dtype=numpy.uint8).reshape(10, 1, 1, 1),
                                (10, 1, 3, 3))
    samples = gan.independent_pixel_samples(images, 200, seed=0, rows=[7, 2, 9])
    assert samples.shape == (200, 1, 3, 3)
    assert set(numpy.unique(samples).tolist()) == {2, 7, 9}


def test_independent_pixel_baseline_keeps_each_pixel_marginal_and_breaks_dependence():
    # two training images, each constant: pixel values come only from that pixel's column,
    # and a sample mixes the two images (the dependence between pixels is gone)
    rows = numpy.stack([numpy.full((1, 4, 4), 10, numpy.uint8), numpy.full((1, 4, 4), 200,
                                                                           numpy.uint8)])
    samples = gan.independent_pixel_samples(rows, 50, seed=0)
    assert samples.shape == (50, 1, 4, 4) and samples.dtype == numpy.uint8
    assert set(numpy.unique(samples)) == {10, 200}
    assert any(len(numpy.unique(sample)) == 2 for sample in samples)
    columns = numpy.arange(16).reshape(1, 1, 4, 4) * numpy.ones((3, 1, 1, 1), numpy.int64)
    per_column = gan.independent_pixel_samples(columns, 20, seed=1)
    numpy.testing.assert_array_equal(per_column, numpy.broadcast_to(columns[0], (20, 1, 4, 4)))


TINY_RUN = ["--batch-size=4", "--hidden=8", "--latent=3", "--n-samples=6",
            "--progress=false"]


def test_the_baseline_is_scored_in_the_range_of_the_data(tmp_path, monkeypatch):
    """Float --x in [0, 1]: the independent-pixel baseline handed to fd_report (uint8 images,
    divided by 255 there) has the training pixels' values, not values near 0."""
    from minilean.cli import main
    from minilean.models import classifier
    rng = numpy.random.default_rng(0)
    numpy.save(tmp_path / "x.npy", rng.uniform(0.5, 1.0, (40, 1, 16, 16)).astype(numpy.float32))
    numpy.save(tmp_path / "y.npy", numpy.arange(40) % 2)
    scored = []
    monkeypatch.setattr(classifier, "check_fd_report", lambda config, dataset: None)
    monkeypatch.setattr(classifier, "fd_report", lambda config, dataset, images: scored.append(
        numpy.asarray(images)) or {"fd_classifier": 0.0})
    main(["gan", *TINY_RUN, "--steps=2", f"--x={tmp_path / 'x.npy'}", f"--y={tmp_path / 'y.npy'}",
          f"--out={tmp_path / 'run'}"])
    samples, baseline = scored
    assert baseline.shape == (6, 1, 16, 16)
    unit = baseline.astype(numpy.float64) / 255.0  # as fd_report reads them
    assert unit.min() >= 0.5 - 1 / 255 and unit.max() <= 1.0


def test_the_saved_samples_are_the_generator_outputs_from_minus_1_1(tmp_path, monkeypatch):
    """samples.npy is G(fixed z) mapped from [-1, 1] to uint8 (value (v + 1) / 2 * 255,
    rounded), and the sample grid shows them; grids are written at the steps that are
    multiples of --sample-every."""
    import os

    from minilean.cli import main
    outputs = []
    forward = gan.Generator.forward
    monkeypatch.setattr(gan.Generator, "forward", lambda self, z: outputs.append(
        forward(self, z)) or outputs[-1])
    main(["gan", *TINY_RUN, "--steps=10", "--sample-every=5", "--evaluate=false",
          f"--out={tmp_path}"])
    last = outputs[-1].numpy().astype(numpy.float64)
    assert last.min() < -0.01 and last.max() > 0.01  # both signs: a wrong range shows
    expected = numpy.floor((last + 1.0) / 2.0 * 255.0 + 0.5)
    saved = numpy.load(tmp_path / "samples.npy")
    assert saved.dtype == numpy.uint8 and numpy.abs(saved - expected).max() <= 1
    # the grid shows those samples, mapped from [-1, 1] as they are
    numpy.testing.assert_array_equal(read_pnm(tmp_path / "images" / "samples.ppm"),
                                     make_grid(saved))
    names = {name.split(".")[0] for name in os.listdir(tmp_path / "images")}
    assert names == {"samples_step000005", "samples_step000010", "samples"}


@pytest.mark.parametrize("dataset", ["builtin", "ring8"])
def test_a_generator_that_diverged_is_said_to_have(tmp_path, monkeypatch, capsys, dataset):
    """NaN weights met the sample grid of a --sample-every step (drawn inside the step) before
    the NaN guard could name the step: "images hold 4608 nan or infinite values", as if the
    images were at fault (on ring8, a scatter plot of NaN points was drawn)."""
    from minilean.cli import main
    forward = gan.Generator.forward
    monkeypatch.setattr(gan.Generator, "forward", lambda self, z: forward(self, z) * math.nan)
    with pytest.raises(SystemExit) as exit_info:
        main(["gan", *TINY_RUN, "--steps=3", "--sample-every=1", "--evaluate=false",
              f"--dataset={dataset}", "--n-total=40", f"--out={tmp_path}"])
    values = 6 * (2 if dataset == "ring8" else 3 * 16 * 16)
    assert exit_info.value.code == 1 and capsys.readouterr().err.endswith(
        f"minilean gan: error: the generator at step 1 gave {values} nan or infinite values of "
        f"{values}: training or sampling diverged\n")


def test_each_training_draw_of_noise_is_fresh(tmp_path, monkeypatch):
    """Per step: d_steps D draws and one G draw, all different; the fixed latent of the grids
    is none of them."""
    from minilean.cli import main
    latents = []
    forward = gan.Generator.forward
    monkeypatch.setattr(gan.Generator, "forward", lambda self, z: latents.append(
        z.numpy().copy()) or forward(self, z))
    main(["gan", *TINY_RUN, "--steps=2", "--d-steps=3", "--evaluate=false", f"--out={tmp_path}"])
    assert len(latents) == 2 * 4 + 1  # 2 steps of (3 D draws + 1 G draw), then the grid
    *training, fixed = latents
    rows = min(len(fixed), len(training[0]))
    for i, first in enumerate(training):
        assert not numpy.allclose(first[:rows], fixed[:rows])
        for second in training[i + 1:]:
            assert not numpy.allclose(first, second)


def test_ring8_real_data_reference_is_held_out_points(tmp_path, monkeypatch):
    """The real-data coverage next to the generator's is measured on held-out points (never
    trained on), as many as samples, and the samples' on the samples."""
    from minilean.cli import main
    from minilean.train import gan as gan_command, zoo_run
    measured, trained_on = [], []
    coverage = gan_command.ring8_coverage
    monkeypatch.setattr(gan_command, "ring8_coverage", lambda points, *args: measured.append(
        numpy.asarray(points)) or coverage(points, *args))
    fit = zoo_run.fit
    monkeypatch.setattr(zoo_run, "fit", lambda session, *args: trained_on.append(
        session.dataset.x[session.train_index]) or fit(session, *args))
    main(["gan", "--dataset=ring8", "--n-total=200", "--steps=2", "--batch-size=8",
          "--hidden=8", "--latent=2", "--n-samples=12", "--progress=false",
          f"--out={tmp_path}"])
    samples, real = measured
    assert samples.shape == real.shape == (12, 2)
    training = {tuple(row) for row in trained_on[0]}
    assert not any(tuple(row) in training for row in real)
