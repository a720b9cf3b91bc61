"""TorchLean's compact residual denoiser (``--arch residual``): it predicts v or eps.

Every conv is 3x3 with padding 1 (the spatial size is kept) and a bias::

    input  [B, C+1, H, W]  = the noisy image, then one constant channel t / (T-1)
    stem   conv(C+1 -> hc), ReLU
    block  x + conv(hc -> hc)(ReLU(conv(hc -> hc)(x))), ReLU      (twice)
    output conv(hc -> C)                                           (linear)

Time enters only as that extra input channel (0 when T <= 1): no embedding, no down-sampling,
no attention. With C = 3 and hc = 16 it has 10,307 parameters.
"""
from minilean.autograd.creation import tensor
from minilean.autograd.shape import cat
from minilean.backend import array_module
from minilean.models.diffusion import timesteps_for_batch
from minilean.nn import Conv2d, Module


def _conv3x3(in_channels, out_channels):
    return Conv2d(in_channels, out_channels, 3, padding=1)


class ResidualBlock(Module):
    """``x + conv(relu(conv(x)))``."""

    def __init__(self, channels):
        super().__init__()
        self.conv1, self.conv2 = _conv3x3(channels, channels), _conv3x3(channels, channels)

    def forward(self, x):
        return x + self.conv2(self.conv1(x).relu())


class ResidualEpsNet(Module):
    def __init__(self, channels, T, hidden_c=16):
        super().__init__()
        if channels < 1 or hidden_c < 1 or T < 1:
            raise ValueError(f"channels, hidden_c and T must be >= 1, got {channels}, "
                             f"{hidden_c}, {T}")
        self.channels, self.T = channels, T
        self.stem = _conv3x3(channels + 1, hidden_c)
        self.block1, self.block2 = ResidualBlock(hidden_c), ResidualBlock(hidden_c)
        self.out = _conv3x3(hidden_c, channels)

    def time_channel(self, t, x):
        """The constant channel t / (T-1) (0 when T <= 1), shape (B, 1, H, W)."""
        batch, _, height, width = x.shape
        scale = 1.0 / (self.T - 1) if self.T > 1 else 0.0
        values = timesteps_for_batch(t, batch) * scale
        plane = array_module(values).broadcast_to(values.reshape(batch, 1, 1, 1),
                                                  (batch, 1, height, width))
        return tensor(plane.astype(x.dtype), device=x.device)  # (B,) -> (B, 1, H, W)

    def forward(self, x, t):
        # the stem's own check counts the time channel it adds ("3 channels but weight
        # expects 4" for 2 given to a model built for 3)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"ResidualEpsNet was built for images (N, {self.channels}, H, W), got "
                             f"shape {tuple(x.shape)}")
        h = self.stem(cat([x, self.time_channel(t, x)], dim=1)).relu()
        h = self.block1(h).relu()
        h = self.block2(h).relu()
        return self.out(h)
