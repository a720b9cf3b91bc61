"""The U-Net of ``minilean.models.unet``, layer for layer and with the same attribute names,
in PyTorch: the peer that the benchmarks time against (weights copy across by name)."""
import torch
import torch.nn as tnn
import torch.nn.functional as TF

from minilean.models.unet import norm_groups  # the same GroupNorm groups


def torch_norm(channels):
    return tnn.GroupNorm(norm_groups(channels), channels)


class TorchResBlock(tnn.Module):
    def __init__(self, in_channels, out_channels, time_channels):
        super().__init__()
        self.norm1, self.conv1 = torch_norm(in_channels), tnn.Conv2d(in_channels, out_channels,
                                                                     3, padding=1)
        self.time = tnn.Linear(time_channels, out_channels)
        self.norm2 = torch_norm(out_channels)
        self.conv2 = tnn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = tnn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels \
            else None

    def forward(self, x, time_features):
        h = self.conv1(TF.silu(self.norm1(x)))
        h = h + self.time(time_features)[:, :, None, None]
        h = self.conv2(TF.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class TorchSelfAttention(tnn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm, self.qkv, self.proj = torch_norm(channels), tnn.Linear(channels, 3 * channels), \
            tnn.Linear(channels, channels)

    def forward(self, x):
        batch, channels, height, width = x.shape
        tokens = self.norm(x).reshape(batch, channels, height * width).transpose(1, 2)
        query, key, value = self.qkv(tokens).chunk(3, dim=2)
        attended = self.proj(TF.scaled_dot_product_attention(query, key, value))
        return x + attended.transpose(1, 2).reshape(batch, channels, height, width)


class TorchUpsample(tnn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = tnn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(TF.interpolate(x, scale_factor=2, mode="nearest"))


class TorchUNet(tnn.Module):
    def __init__(self, channels, hidden_c=32):
        super().__init__()
        hc, wide, time_c = hidden_c, 2 * hidden_c, 4 * hidden_c
        self.time1, self.time2 = tnn.Linear(hc, time_c), tnn.Linear(time_c, time_c)
        self.conv_in = tnn.Conv2d(channels, hc, 3, padding=1)
        self.down0 = TorchResBlock(hc, hc, time_c)
        self.pool0 = tnn.Conv2d(hc, hc, 3, stride=2, padding=1)
        self.down1 = TorchResBlock(hc, wide, time_c)
        self.pool1 = tnn.Conv2d(wide, wide, 3, stride=2, padding=1)
        self.mid1, self.attention, self.mid2 = (TorchResBlock(wide, wide, time_c),
                                                TorchSelfAttention(wide),
                                                TorchResBlock(wide, wide, time_c))
        self.up1, self.dec1 = TorchUpsample(wide), TorchResBlock(2 * wide, wide, time_c)
        self.up0, self.dec0 = TorchUpsample(wide), TorchResBlock(wide + hc, hc, time_c)
        self.norm_out, self.conv_out = torch_norm(hc), tnn.Conv2d(hc, channels, 3, padding=1)

    def forward(self, x, embedding):
        """``embedding``: the sinusoidal features (B, hc), computed on the host like minilean's."""
        time_features = TF.silu(self.time2(TF.silu(self.time1(embedding))))
        skip0 = self.down0(self.conv_in(x), time_features)
        skip1 = self.down1(self.pool0(skip0), time_features)
        h = self.mid1(self.pool1(skip1), time_features)
        h = self.mid2(self.attention(h), time_features)
        h = self.dec1(torch.cat([self.up1(h), skip1], dim=1), time_features)
        h = self.dec0(torch.cat([self.up0(h), skip0], dim=1), time_features)
        return self.conv_out(TF.silu(self.norm_out(h)))
