"""MaxPool2d and AvgPool2d: the pooling ops as layers (for Sequential), with PyTorch's
arguments and defaults (the stride is the kernel size unless given). PyTorch's options that
minilean's pooling does not have (``ceil_mode``, ``return_indices``, a ``dilation``,
``count_include_pad=False``, ``divisor_override``) are refused where the layer is built,
each at any value but its default, rather than accepted and ignored."""
from minilean.autograd.conv import pair
from minilean.autograd.pool import pool_sizes
from minilean.nn import functional as F
from minilean.nn.module import Module


def refuse_unsupported(layer, **options):
    """Each of ``options`` (name=(value given, the one value supported)) must be that value:
    a one-line ValueError naming the layer, the option and the value otherwise."""
    for name, (value, supported) in options.items():
        if value != supported:
            raise ValueError(f"{layer} supports {name}={supported!r} only, got "
                             f"{name}={value!r}")


class _Pool2d(Module):
    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        # checked here, so that a bad size fails where the layer is built; kept as given (an
        # int stays an int), as PyTorch keeps them, so that the layer prints as PyTorch's
        pool_sizes(type(self).__name__, kernel_size, stride, padding)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding


class MaxPool2d(_Pool2d):
    """y[n, c, i, j] = max_{p, q} x_pad[n, c, s i + p, s j + q] (padding -inf);
    dL/dx = dL/dy at each window's argmax (the first on ties), 0 elsewhere."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        if pair(dilation, "dilation", low=1) != (1, 1):  # or (1, 1), as PyTorch prints it back
            raise ValueError(f"MaxPool2d supports dilation=1 only, got dilation={dilation!r}")
        refuse_unsupported("MaxPool2d", return_indices=(return_indices, False),
                           ceil_mode=(ceil_mode, False))
        super().__init__(kernel_size, stride, padding)
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(_Pool2d):
    """y[n, c, i, j] = (1 / (Kh Kw)) sum_{p, q} x_pad[n, c, s i + p, s j + q] (zero padding
    counted); dL/dx_pad[window] += dL/dy[n, c, i, j] / (Kh Kw) for every window."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        refuse_unsupported("AvgPool2d", ceil_mode=(ceil_mode, False),
                           count_include_pad=(count_include_pad, True),
                           divisor_override=(divisor_override, None))
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
