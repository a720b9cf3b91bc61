"""Conv2d and ConvTranspose2d layers: weights, PyTorch's default init, and the functional op.

Conv2d's weight is (out_channels, in_channels / groups, kH, kW); ConvTranspose2d's is
(in_channels, out_channels / groups, kH, kW), as in PyTorch (so weights copy across).
"""
from minilean.autograd.conv import check_groups, conv_padding, size_pair
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.module import Module, check_sizes, empty_parameter


class _ConvNd(Module):
    def __init__(self, weight_channels, in_channels, out_channels, kernel_size, bias, groups,
                 padding, **options):
        """``weight_channels``: the weight's first two sizes before the second is divided by
        ``groups``."""
        super().__init__()
        check_sizes(in_channels=in_channels, out_channels=out_channels)
        check_groups(groups, in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        # checked here, so that a bad size fails at construction, and kept as pairs (as PyTorch)
        kernel_size = size_pair(kernel_size, "kernel_size")
        options = {name: size_pair(value, name) for name, value in options.items()}
        options["padding"] = self.checked_padding(padding, options["stride"])
        self.kernel_size, self.groups, self.options = kernel_size, groups, options
        self.weight = empty_parameter(weight_channels[0], weight_channels[1] // groups,
                                      *kernel_size)
        self.bias = empty_parameter(out_channels) if bias else None
        self.reset_parameters()

    @staticmethod
    def checked_padding(padding, stride):
        """``padding`` as its op takes it: a pair of ints."""
        return size_pair(padding, "padding")

    def reset_parameters(self):
        init.default_weight_and_bias_(self.weight, self.bias)

    def extra_repr(self):
        """PyTorch's words: the stride always, the other settings where they are not the
        default (a printed model reads as PyTorch's print of the same model)."""
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.options['stride']}")
        for name, default in (("padding", (0, 0)), ("dilation", (1, 1)),
                              ("output_padding", (0, 0))):
            if self.options.get(name, default) != default:
                text += f", {name}={self.options[name]}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text if self.bias is not None else text + ", bias=False"


class Conv2d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True):
        super().__init__((out_channels, in_channels), in_channels, out_channels,
                         kernel_size, bias, groups, padding,
                         stride=stride, dilation=dilation)

    @staticmethod
    def checked_padding(padding, stride):
        """A pair of ints, or "same" or "valid" kept as the string (as PyTorch keeps it, and
        prints it): "same" needs the weight's size, which the op reads at each call."""
        return conv_padding(padding, stride)

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, groups=self.groups, **self.options)


class ConvTranspose2d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1):
        super().__init__((in_channels, out_channels), in_channels, out_channels,
                         kernel_size, bias, groups, padding, stride=stride,
                         output_padding=output_padding, dilation=dilation)

    def forward(self, input):
        return F.conv_transpose2d(input, self.weight, self.bias, groups=self.groups,
                                  **self.options)
