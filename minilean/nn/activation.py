"""The parameter-free layers (for Sequential): activations and softmax, each forwarding to its
functional op, and Identity and Flatten."""
import inspect

from minilean.autograd.elementwise import check_gelu_approximate, check_negative_slope
from minilean.nn import functional as F
from minilean.nn.module import Module


class FunctionModule(Module):
    """A layer whose forward is ``function(*inputs, **settings)`` (the losses' too)."""
    function = None

    def __init__(self, **settings):
        super().__init__()
        # checked here, not at the first forward: nn.ReLU(inplace=True), PyTorch's memory
        # saving (minilean has no in-place ops), would fail inside a model's forward
        try:
            inspect.signature(self.function).bind_partial(**settings)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}: {error}") from None
        self.settings = settings

    def forward(self, *inputs):
        return self.function(*inputs, **self.settings)

    def extra_repr(self):
        return ", ".join(f"{name}={value!r}" for name, value in self.settings.items())


class ReLU(FunctionModule):
    function = staticmethod(F.relu)


class SiLU(FunctionModule):
    function = staticmethod(F.silu)


class Sigmoid(FunctionModule):
    function = staticmethod(F.sigmoid)


class Tanh(FunctionModule):
    function = staticmethod(F.tanh)


class GELU(FunctionModule):
    function = staticmethod(F.gelu)

    def __init__(self, approximate="none"):
        check_gelu_approximate(approximate)  # here, so that a bad one fails where it is built
        super().__init__(approximate=approximate)


class LeakyReLU(FunctionModule):
    function = staticmethod(F.leaky_relu)

    def __init__(self, negative_slope=0.01):
        check_negative_slope(negative_slope)  # here, so that a bad one fails where it is built
        super().__init__(negative_slope=negative_slope)


class Softmax(FunctionModule):
    function = staticmethod(F.softmax)

    def __init__(self, dim):
        super().__init__(dim=dim)


class Identity(Module):
    def forward(self, input):
        return input


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (by default all but the batch dim)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
