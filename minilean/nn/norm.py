"""LayerNorm and GroupNorm layers: a learnable scale (ones) and shift (zeros) around the ops."""
from minilean.autograd.norm import check_eps, check_group_norm_activation
from minilean.autograd.tensor import is_int
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.module import Module, check_sizes, empty_parameter


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims of each sample."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        sizes = (normalized_shape,) if is_int(normalized_shape) else normalized_shape
        # checked here, as the other layers' sizes: -1 failed in NumPy's words ("negative
        # dimensions are not allowed"), or without affine only at the first forward
        if not isinstance(sizes, (tuple, list)) or not sizes or \
                not all(is_int(size) and size >= 1 for size in sizes):
            raise ValueError(f"normalized_shape must be an int >= 1 or a non-empty tuple of "
                             f"them, got {normalized_shape!r}")
        self.normalized_shape = tuple(sizes)
        check_eps(eps, "LayerNorm")  # here too, so that a bad one fails where it is built
        self.eps = eps
        self.weight = init.ones_(empty_parameter(*self.normalized_shape)) if elementwise_affine else None
        self.bias = init.zeros_(empty_parameter(*self.normalized_shape)) if elementwise_affine else None

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class GroupNorm(Module):
    """Normalise each sample over groups of ``num_channels / num_groups`` channels (and space);
    ``activation="silu"`` applies SiLU to the result in the same op (one kernel on the GPU);
    keyword-only, as PyTorch's fifth argument is ``device``."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, activation=None):
        super().__init__()
        check_sizes(num_groups=num_groups, num_channels=num_channels)
        if num_channels % num_groups:
            raise ValueError(f"num_channels={num_channels} is not divisible by num_groups={num_groups}")
        self.num_groups, self.num_channels = num_groups, num_channels
        check_eps(eps, "GroupNorm")  # here too, so that a bad one fails where it is built
        self.eps = eps
        self.activation = check_group_norm_activation(activation, "GroupNorm")
        self.weight = init.ones_(empty_parameter(num_channels)) if affine else None
        self.bias = init.zeros_(empty_parameter(num_channels)) if affine else None

    def forward(self, input):
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps,
                            self.activation)

    def extra_repr(self):
        activation = f", activation={self.activation!r}" if self.activation else ""
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.weight is not None}{activation}")
