"""The two denoisers (v or eps predictors): shapes, time conditioning, float64 gradients; v-prediction runs."""
import json
import math
import re

import numpy
import pytest

import minilean as ml
from minilean.autograd.gradcheck import gradcheck
from minilean.nn import functional as F
from minilean.models import diffusion as D
from minilean.models.residual import ResidualEpsNet
from minilean.models.unet import SelfAttention, UNet, norm_groups


def _float64(model):
    return model.to(dtype=numpy.float64)


def residual_parameter_count(channels, hidden_c):
    """The documented layout, every conv 3x3 with a bias: stem C+1 -> hc, two blocks of two
    hc -> hc, output hc -> C."""
    def conv(c_in, c_out):
        return 9 * c_in * c_out + c_out
    return (conv(channels + 1, hidden_c) + 4 * conv(hidden_c, hidden_c)
            + conv(hidden_c, channels))


def test_residual_net_matches_torchlean_layout_and_parameter_count():
    ml.manual_seed(0)
    model = ResidualEpsNet(3, T=100, hidden_c=16)
    assert residual_parameter_count(3, 16) == 10307   # TorchLean's hc=16 count
    for channels, hidden_c in ((3, 16), (3, 2), (1, 5)):
        assert sum(p.numel() for p in ResidualEpsNet(channels, 100, hidden_c).parameters()) == \
            residual_parameter_count(channels, hidden_c)
    channel = model.time_channel(numpy.array([0, 99]), ml.zeros(2, 3, 4, 4))
    assert channel.shape == (2, 1, 4, 4)
    numpy.testing.assert_allclose(channel.numpy()[:, 0, 0, 0], [0.0, 1.0])
    assert model(ml.randn(2, 3, 4, 4), 5).shape == (2, 3, 4, 4)


def test_residual_net_is_the_documented_layout():
    """stem conv, ReLU; twice h <- ReLU(h + conv(ReLU(conv(h)))); output conv; time as the
    extra input channel t / (T-1)."""
    ml.manual_seed(3)
    model = _float64(ResidualEpsNet(2, T=5, hidden_c=3))
    for block in (model.block1, model.block2):  # so that each block's output has negatives
        block.conv2.bias.data[...] = -0.1        # for its ReLU to take away (seed 3 had none)
    x, t = ml.randn(2, 2, 4, 4, dtype=numpy.float64), numpy.array([1, 4])
    time = numpy.broadcast_to((t / 4).reshape(2, 1, 1, 1), (2, 1, 4, 4))
    h = model.stem(ml.cat([x, ml.tensor(time)], dim=1)).relu()
    for block in (model.block1, model.block2):
        before_relu = h + block.conv2(block.conv1(h).relu())
        assert (before_relu.numpy() < 0).any() and (before_relu.numpy() > 0).any()
        h = before_relu.relu()
    numpy.testing.assert_allclose(model(x, t).numpy(), model.out(h).numpy(), rtol=1e-12)


@pytest.mark.parametrize("T, t, expected", [(1, 0, 0.0), (2, 1, 1.0), (3, 1, 0.5)])
def test_residual_net_time_channel_is_t_over_T_minus_1_and_0_for_one_step(T, t, expected):
    channel = ResidualEpsNet(1, T=T, hidden_c=2).time_channel(t, ml.zeros(2, 1, 3, 3))
    numpy.testing.assert_array_equal(channel.numpy(), numpy.full((2, 1, 3, 3), expected))


@pytest.mark.parametrize("channels, T, hidden_c", [(0, 10, 2), (1, 0, 2), (1, 10, 0)])
def test_residual_net_refuses_a_size_below_one(channels, T, hidden_c):
    with pytest.raises(ValueError, match=f"^channels, hidden_c and T must be >= 1, got "
                                         f"{channels}, {hidden_c}, {T}$"):
        ResidualEpsNet(channels, T, hidden_c)
    ResidualEpsNet(1, 1, 1)  # the smallest


@pytest.mark.parametrize("shape", [(2, 2, 4, 4), (2, 4, 4, 4), (3, 4, 4)])
def test_residual_net_names_the_channels_it_was_built_for(shape):
    """2 channels given to a model built for 3 were reported as "input has 3 channels but
    weight expects 4", counting the time channel the model adds."""
    model = ResidualEpsNet(3, T=10, hidden_c=2)
    with pytest.raises(ValueError, match=rf"^ResidualEpsNet was built for images "
                                         rf"\(N, 3, H, W\), got shape "
                                         rf"{re.escape(str(shape))}$"):
        model(ml.zeros(*shape), 1)
    assert model(ml.zeros(2, 3, 4, 4), 1).shape == (2, 3, 4, 4)


def test_residual_net_gradcheck_float64():
    ml.manual_seed(1)
    model = _float64(ResidualEpsNet(2, T=10, hidden_c=3))
    x = ml.randn(2, 2, 4, 4, dtype=numpy.float64, requires_grad=True)
    params = list(model.parameters())
    assert gradcheck(lambda x, *p: model(x, numpy.array([1, 7])), [x] + params)


def test_unet_output_shape_and_time_dependence():
    ml.manual_seed(2)
    model = UNet(3, hidden_c=8)
    x = ml.randn(2, 3, 8, 8)
    out = model(x, numpy.array([3, 3]))
    assert out.shape == (2, 3, 8, 8)
    assert not numpy.allclose(out.numpy(), model(x, 150).numpy())  # the timestep matters
    with pytest.raises(ValueError, match="divisible by 4"):
        model(ml.randn(1, 3, 6, 6), 0)


def test_unet_is_the_documented_layout():
    """The module docstring's wiring, written out with the layers' weights: the time MLP
    SiLU(Linear(SiLU(Linear(sinusoidal(t))))) shifting every ResBlock, a ResBlock
    conv(SiLU(GN(h + time))) + skip(x) with h = conv(SiLU(GN(x))), each upsample (nearest x2,
    then conv) concatenated with its skip, and GN -> SiLU -> conv_out. GroupNorm and SiLU are
    separate ops here (the model fuses them), the upsampling and the concatenations NumPy's;
    the self-attention is the layer's own (checked against NumPy on its own)."""
    from minilean.models.unet import sinusoidal_embedding
    model = _float64(UNet(2, hidden_c=4))
    rng = numpy.random.default_rng(5)
    for parameter in model.parameters():  # norm weights off 1 and biases off 0 as well
        parameter.data[...] = rng.normal(0.0, 0.5, parameter.shape)
    x, t = ml.tensor(rng.standard_normal((2, 2, 8, 8))), numpy.array([3, 40])

    def norm(layer, h):
        return F.group_norm(h, layer.num_groups, layer.weight, layer.bias, layer.eps)

    time = F.silu(model.time2(F.silu(model.time1(sinusoidal_embedding(t, 4, 2, x)))))

    def block(layer, h):
        inner = layer.conv1(F.silu(norm(layer.norm1, h)))
        shift = layer.time(time).numpy()[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        out = layer.conv2(F.silu(norm(layer.norm2, inner + ml.tensor(shift))))
        return out + (h if layer.skip is None else layer.skip(h))

    def up_and_skip(layer, h, skip):
        nearest = h.numpy().repeat(2, axis=2).repeat(2, axis=3)
        return ml.tensor(numpy.concatenate([layer.conv(ml.tensor(nearest)).numpy(),
                                            skip.numpy()], axis=1))

    skip0 = block(model.down0, model.conv_in(x))
    skip1 = block(model.down1, model.pool0(skip0))
    h = block(model.mid2, model.attention(block(model.mid1, model.pool1(skip1))))
    h = block(model.dec1, up_and_skip(model.up1, h, skip1))
    h = block(model.dec0, up_and_skip(model.up0, h, skip0))
    expected = model.conv_out(F.silu(norm(model.norm_out, h)))
    numpy.testing.assert_allclose(model(x, t).numpy(), expected.numpy(), rtol=1e-10,
                                  atol=1e-12)


@pytest.mark.parametrize("hidden_c", [2, 3, 4, 8])
def test_every_unet_block_sees_the_timestep_at_small_widths(hidden_c):
    """Every parameter, the time embedding's included, gets a gradient, and the output moves
    with t. A GroupNorm group of one channel subtracts the time shift added before it: at
    hidden_c 2 or 4 the whole time path had zero gradient and t changed nothing."""
    ml.manual_seed(4)
    model = _float64(UNet(3, hidden_c=hidden_c))
    x = ml.randn(2, 3, 8, 8, dtype=numpy.float64)
    weights = ml.randn(2, 3, 8, 8, dtype=numpy.float64)
    (model(x, numpy.array([3.0, 40.0])) * weights).sum().backward()
    blind = [name for name, param in model.named_parameters()
             if not numpy.abs(param.grad.numpy()).max() > 1e-12]
    assert blind == []
    change = numpy.abs(model(x, 0).numpy() - model(x, 150).numpy()).max()
    assert change > 1e-3


@pytest.mark.parametrize("dim", [2, 7, 8, 16])
def test_sinusoidal_embedding_is_the_docstring_formula(dim):
    """[sin(t w_k), cos(t w_k)] with w_k = 10000^(-k / half), k < half = dim // 2, in float64;
    an odd dim ends in a column of zeros."""
    from minilean.models.unet import sinusoidal_embedding
    t = numpy.array([0.0, 1.0, 7.5, 999.0])
    half = dim // 2
    w = 10000.0 ** (-numpy.arange(half) / half)
    expected = numpy.concatenate([numpy.sin(numpy.outer(t, w)), numpy.cos(numpy.outer(t, w)),
                                  numpy.zeros((4, dim % 2))], 1)
    like = ml.zeros(1, dtype=numpy.float64)
    numpy.testing.assert_allclose(sinusoidal_embedding(t, dim, 4, like).numpy(), expected,
                                  rtol=1e-12, atol=1e-12)
    one = sinusoidal_embedding(7.5, dim, 3, ml.zeros(1))  # one number for the batch, float32
    assert one.dtype == numpy.float32
    numpy.testing.assert_allclose(one.numpy(), numpy.tile(expected[2], (3, 1)), rtol=1e-6,
                                  atol=1e-6)


def test_norm_groups_keep_two_channels_in_each_group():
    assert [norm_groups(c) for c in (2, 3, 4, 6, 8, 12, 24, 48, 72)] == [1, 1, 2, 3, 4, 6, 8, 8, 8]


@pytest.mark.parametrize("channels, hidden_c", [(0, 4), (3, 1)])
def test_unet_refuses_sizes_it_cannot_build(channels, hidden_c):
    """hidden_c 1 would leave GroupNorm groups of one channel, which subtract the time shift."""
    with pytest.raises(ValueError, match=rf"^channels must be >= 1 and hidden_c >= 2, got "
                                         rf"{channels}, {hidden_c}$"):
        UNet(channels, hidden_c)


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 3, 8, 8, 1)])
def test_unet_names_the_image_layout_it_takes(shape):
    """A (C, H, W) image failed with "tuple index out of range"."""
    with pytest.raises(ValueError, match=rf"^the U-Net takes images \(N, C, H, W\), got "
                                         rf"shape {re.escape(str(shape))}$"):
        UNet(3, hidden_c=2)(ml.zeros(*shape), 0)


def test_unet_gradcheck_float64():
    ml.manual_seed(3)
    model = _float64(UNet(1, hidden_c=4))
    x = ml.randn(2, 1, 4, 4, dtype=numpy.float64, requires_grad=True)
    params = list(model.parameters())
    assert gradcheck(lambda x, *p: model(x, numpy.array([2.0, 9.0])), [x] + params,
                     max_elements=16)


def test_unet_self_attention_matches_a_float64_numpy_reference():
    """Each of the H*W positions (row-major, on a non-square grid) attends to all of them:
    x + proj(softmax(q k^T / sqrt(C)) v), q, k, v from the group-normalised channels at each
    position. Written over positions with NumPy alone, so a token laid out by a reshape
    where a transpose belongs would mix channels of different positions and differ."""
    ml.manual_seed(4)
    channels, height, width = 4, 2, 3
    attention = _float64(SelfAttention(channels))
    rng = numpy.random.default_rng(9)
    for parameter in attention.parameters():  # norm weights off 1 and biases off 0 as well
        parameter.data[...] = rng.normal(0.0, 0.5, parameter.shape)
    x = rng.standard_normal((2, channels, height, width))
    weights = {name: parameter.numpy() for name, parameter in attention.named_parameters()}
    groups = norm_groups(channels)
    grouped = x.reshape(2, groups, -1)
    normed = ((grouped - grouped.mean(-1, keepdims=True))
              / numpy.sqrt(grouped.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    normed = normed * weights["norm.weight"][:, None, None] + weights["norm.bias"][:, None, None]
    expected = x.copy()
    for n in range(2):
        positions = [(i, j) for i in range(height) for j in range(width)]
        tokens = numpy.array([normed[n, :, i, j] for i, j in positions])  # (HW, C)
        qkv = tokens @ weights["qkv.weight"].T + weights["qkv.bias"]
        query, key, value = numpy.split(qkv, 3, axis=1)
        scores = query @ key.T / numpy.sqrt(channels)
        probabilities = numpy.exp(scores - scores.max(1, keepdims=True))
        probabilities /= probabilities.sum(1, keepdims=True)
        out = (probabilities @ value) @ weights["proj.weight"].T + weights["proj.bias"]
        for (i, j), row in zip(positions, out):
            expected[n, :, i, j] += row
    numpy.testing.assert_allclose(attention(ml.tensor(x)).numpy(), expected, rtol=1e-10,
                                  atol=1e-12)


def test_v_prediction_trains_and_samples_on_the_ode_path(tmp_path):
    """--prediction v end to end; pf-euler asks the wrapped network for fractional timesteps."""
    from minilean.cli import main

    main(["diffusion", "--cpu", "--n-total=32", "--batch-size=4", "--hidden-c=4", "--T=10",
          "--steps=2", "--sampler=pf-euler", "--sample-steps=3", "--n-samples=4", "--noprogress",
          "--evaluate=false", "--prediction=v", f"--out={tmp_path}"])
    samples = numpy.load(tmp_path / "samples.npy")
    assert samples.shape == (4, 3, 16, 16) and samples.dtype == numpy.uint8
    assert json.loads((tmp_path / "config.json").read_text())["prediction"] == "v"


def torch_residual_net(torch, channels, T, hidden_c):
    """The module docstring of ``residual.py`` in PyTorch: the time channel t / (T - 1) (0 for
    T = 1) after the image, stem conv and ReLU, twice ReLU(h + conv(ReLU(conv(h)))), output
    conv; every conv 3x3 with padding 1."""
    nn = torch.nn

    def conv(c_in, c_out):
        return nn.Conv2d(c_in, c_out, 3, padding=1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = conv(hidden_c, hidden_c), conv(hidden_c, hidden_c)

    class TorchResidualNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.out = conv(channels + 1, hidden_c), conv(hidden_c, channels)
            self.block1, self.block2 = Block(), Block()

        def forward(self, x, t):
            batch, _, height, width = x.shape
            time = t.double() / (T - 1) if T > 1 else torch.zeros(batch, dtype=torch.float64)
            plane = time.reshape(batch, 1, 1, 1).expand(batch, 1, height, width)
            h = self.stem(torch.cat([x, plane], 1)).relu()
            for block in (self.block1, self.block2):
                h = (h + block.conv2(block.conv1(h).relu())).relu()
            return self.out(h)

    return TorchResidualNet()


def torch_sinusoidal_embedding(torch, t, dim):
    """[sin(t w_k), cos(t w_k)], w_k = 10000^(-k / half), k < half = dim // 2, and a zero
    column for an odd dim: the docstring of ``unet.sinusoidal_embedding``."""
    half = dim // 2
    frequencies = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / max(half, 1))
    angles = t.double()[:, None] * frequencies[None, :]
    features = torch.cat([angles.sin(), angles.cos()], 1)
    return torch.nn.functional.pad(features, (0, dim % 2))


def torch_alpha_bar(torch, schedule, T):
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) of the linear (1e-4 to 0.02) or the cosine
    schedule (Nichol & Dhariwal, s = 0.008, betas capped at 0.999), in torch."""
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    else:
        u = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.clamp(1 - f[1:] / f[:-1], max=0.999)
    return torch.cumprod(1 - betas, 0)


@pytest.mark.parametrize("arch, hidden_c", [("unet", 4), ("unet", 3), ("residual", 3)])
@pytest.mark.parametrize("schedule, prediction", [("cosine", "v"), ("linear", "eps"),
                                                  ("linear", "v")])
def test_training_loss_and_gradients_agree_with_torch(monkeypatch, rng, arch, hidden_c,
                                                      schedule, prediction):
    """The loss a training step takes (``v_prediction_loss`` or ``eps_prediction_loss`` at one
    timestep per example) and every parameter's gradient, against PyTorch in float64: the
    schedule, q_sample, the v target sqrt(a) eps - sqrt(1 - a) x0 and the network's time input
    (the sinusoidal features; the plane t / (T - 1)) all computed in torch from the docstrings.
    The U-Net is ``benchmarks/torch_unet.py``'s; hidden_c 3 gives an odd embedding and
    one-group norms."""
    import pathlib

    torch = pytest.importorskip("torch")
    from torch.nn import functional as TF
    from torch_twins import assert_same_loss_and_gradients, copied_into_torch

    T, channels = 30, 2
    ml.manual_seed(0)
    if arch == "unet":
        monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parent.parent / "benchmarks"))
        from torch_unet import TorchUNet

        model, unet = _float64(UNet(channels, hidden_c)), TorchUNet(channels, hidden_c)
        twin = copied_into_torch(model, unet)

        def network(x, t):
            return unet(x, torch_sinusoidal_embedding(torch, t, hidden_c))
    else:
        model = _float64(ResidualEpsNet(channels, T, hidden_c))
        twin = network = copied_into_torch(model, torch_residual_net(torch, channels, T,
                                                                     hidden_c))
    alpha_bar = D.alpha_bars(D.make_betas(schedule, T))
    x0 = rng.uniform(-1, 1, (3, channels, 4, 8))
    eps = rng.standard_normal(x0.shape)
    t = rng.integers(0, T, 3)
    loss = D.v_prediction_loss if prediction == "v" else D.eps_prediction_loss

    def torch_loss():
        a = torch_alpha_bar(torch, schedule, T)[torch.from_numpy(t)].reshape(-1, 1, 1, 1)
        t_x0, t_eps = torch.from_numpy(x0), torch.from_numpy(eps)
        target = t_eps if prediction == "eps" else a.sqrt() * t_eps - (1 - a).sqrt() * t_x0
        noised = a.sqrt() * t_x0 + (1 - a).sqrt() * t_eps
        return TF.mse_loss(network(noised, torch.from_numpy(t)), target)

    assert_same_loss_and_gradients(
        model, twin, lambda: loss(model, alpha_bar, ml.tensor(x0), t, ml.tensor(eps)),
        torch_loss)
