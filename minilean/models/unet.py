"""A small U-Net denoiser (``--arch unet``, the default): it predicts v or eps (``--prediction``).

    t -> sinusoidal features (hc) -> Linear -> SiLU -> Linear   = time embedding (4 hc)
    x -> conv_in (C -> hc)
      level 0 (H x W):       ResBlock(hc -> hc)          --skip0-->
      downsample (stride-2 conv)
      level 1 (H/2 x W/2):   ResBlock(hc -> 2hc)         --skip1-->
      downsample
      middle (H/4 x W/4):    ResBlock, self-attention, ResBlock  (2hc)
      upsample (nearest x2 + conv), concat skip1, ResBlock(4hc -> 2hc)
      upsample,                     concat skip0, ResBlock(3hc -> hc)
    -> GroupNorm -> SiLU -> conv_out (hc -> C)

A ResBlock is ``conv(SiLU(GN(h + time))) + skip(x)`` where ``h = conv(SiLU(GN(x)))`` and
``time`` is a per-channel shift projected from SiLU(embedding) (the DDPM design, in miniature;
the SiLU is taken once for all six blocks). Each GN -> SiLU pair is one GroupNorm op with
``activation="silu"``: the same function, one kernel under ``--fast-kernels``.
H and W must be multiples of 4.
"""
import math

from minilean.autograd.creation import tensor
from minilean.autograd.shape import cat
from minilean.backend import array_module
from minilean.models.diffusion import timesteps_for_batch
from minilean.nn import Conv2d, GroupNorm, Linear, Module
from minilean.nn import functional as F


def norm_groups(channels):
    """The GroupNorm group count: the most, up to 8, that divide ``channels`` and leave each
    group two channels or more. A group of one channel would subtract that channel's own mean,
    and with it the time embedding's per-channel shift: the network could not see t."""
    return max(groups for groups in range(1, 9)
               if channels % groups == 0 and channels // groups >= min(channels, 2))


def _norm(channels, activation=None):
    return GroupNorm(norm_groups(channels), channels, activation=activation)


def sinusoidal_embedding(t, dim, batch_size, like):
    """``[sin(t w_k), cos(t w_k)]`` with ``w_k = 10000^(-k / half)`` for k < half = dim // 2,
    shape (B, dim) (an odd dim ends in one column of zeros).

    The transformer position encoding, used for the timestep (t needs no gradient). Computed
    in float64 where t lives: on the host for numbers and host arrays, on the GPU for
    timesteps already there (no host-device copy).
    """
    half = dim // 2
    times = timesteps_for_batch(t, batch_size)
    xp = array_module(times)
    frequencies = xp.exp(-math.log(10000.0) * xp.arange(half) / max(half, 1))
    angles = times[:, None] * frequencies[None, :]  # (B, half)
    features = xp.concatenate([xp.sin(angles), xp.cos(angles)], axis=1)
    if dim % 2:
        features = xp.pad(features, ((0, 0), (0, 1)))
    return tensor(features.astype(like.dtype), device=like.device)


class ResBlock(Module):
    def __init__(self, in_channels, out_channels, time_channels):
        super().__init__()
        self.norm1 = _norm(in_channels, activation="silu")
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = Linear(time_channels, out_channels)
        self.norm2 = _norm(out_channels, activation="silu")
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x, time_features):
        """``time_features``: SiLU of the time embedding, (B, time_channels)."""
        h = self.conv1(self.norm1(x))  # norm1 and norm2 end in the SiLU
        shift = self.time(time_features)
        h = h + shift.reshape(shift.shape[0], shift.shape[1], 1, 1)  # (B, C) -> (B, C, 1, 1)
        h = self.conv2(self.norm2(h))
        return h + (x if self.skip is None else self.skip(x))


class SelfAttention(Module):
    """Single-head self-attention over the H*W positions, with a residual connection."""

    def __init__(self, channels):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = Linear(channels, 3 * channels)
        self.proj = Linear(channels, channels)

    def forward(self, x):
        batch, channels, height, width = x.shape
        tokens = self.norm(x).reshape(batch, channels, height * width).transpose(1, 2)
        # tokens: (B, C, H, W) -> (B, C, HW) -> (B, HW, C)
        query, key, value = self.qkv(tokens).chunk(3, dim=2)
        attended = self.proj(F.scaled_dot_product_attention(query, key, value))
        # (B, HW, C) -> (B, C, HW) -> (B, C, H, W)
        return x + attended.transpose(1, 2).reshape(batch, channels, height, width)


class Upsample(Module):
    """Nearest-neighbour x2, then a 3x3 conv (avoids the checkerboard of transposed convs)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(Module):
    def __init__(self, channels, hidden_c=32):
        super().__init__()
        if channels < 1 or hidden_c < 2:
            raise ValueError(f"channels must be >= 1 and hidden_c >= 2, got {channels}, {hidden_c}")
        hc, wide, time_c = hidden_c, 2 * hidden_c, 4 * hidden_c
        self.hidden_c = hc
        self.time1, self.time2 = Linear(hc, time_c), Linear(time_c, time_c)
        self.conv_in = Conv2d(channels, hc, 3, padding=1)
        self.down0 = ResBlock(hc, hc, time_c)
        self.pool0 = Conv2d(hc, hc, 3, stride=2, padding=1)
        self.down1 = ResBlock(hc, wide, time_c)
        self.pool1 = Conv2d(wide, wide, 3, stride=2, padding=1)
        self.mid1, self.attention, self.mid2 = (ResBlock(wide, wide, time_c), SelfAttention(wide),
                                                ResBlock(wide, wide, time_c))
        self.up1, self.dec1 = Upsample(wide), ResBlock(2 * wide, wide, time_c)
        self.up0, self.dec0 = Upsample(wide), ResBlock(wide + hc, hc, time_c)
        self.norm_out = _norm(hc, activation="silu")
        self.conv_out = Conv2d(hc, channels, 3, padding=1)

    def forward(self, x, t):
        if x.ndim != 4:  # (C, H, W) failed with "tuple index out of range"
            raise ValueError(f"the U-Net takes images (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"the U-Net needs height and width divisible by 4, got {x.shape}")
        embedding = sinusoidal_embedding(t, self.hidden_c, x.shape[0], x)
        time_features = F.silu(self.time2(F.silu(self.time1(embedding))))
        skip0 = self.down0(self.conv_in(x), time_features)
        skip1 = self.down1(self.pool0(skip0), time_features)
        h = self.mid1(self.pool1(skip1), time_features)
        h = self.mid2(self.attention(h), time_features)
        h = self.dec1(cat([self.up1(h), skip1], dim=1), time_features)
        h = self.dec0(cat([self.up0(h), skip0], dim=1), time_features)
        return self.conv_out(self.norm_out(h))
