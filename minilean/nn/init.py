"""Weight initialisation, in place, with PyTorch's formulas and the device's seeded generator.

Fans: for a weight of shape (out, in, *kernel) the fan-in is in * prod(kernel) and the fan-out
out * prod(kernel) (a ConvTranspose weight is (in, out, *kernel), so its "fan-in" counts
outputs: PyTorch does the same). ``default_weight_and_bias_`` is what Linear and Conv layers
use when built: kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
and the bias uniform on the same bound.
"""
import math
import numbers

from minilean import backend
from minilean.autograd import writes


def _fill(tensor, values):
    # only random() and standard_normal() are used: both NumPy's and CuPy's generators have them
    tensor.data[...] = values.astype(tensor.dtype, copy=False)
    writes.wrote([tensor])
    return tensor


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with samples from U(a, b)."""
    if not a <= b:  # b < a would fill from (b, a] silently; `not` also catches NaN
        raise ValueError(f"uniform_ needs a <= b, got a={a!r}, b={b!r}")
    return _fill(tensor, a + (b - a) * backend.generator(tensor.device).random(tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with samples from N(mean, std^2)."""
    if not std >= 0:  # a negative std would only flip the signs; `not` also catches NaN
        raise ValueError(f"normal_ needs std >= 0, got {std!r}")
    return _fill(tensor, mean + std * backend.generator(tensor.device).standard_normal(tensor.shape))


def constant_(tensor, val):
    """Fill with ``val`` (PyTorch's name for it, so ``constant_(w, val=0.1)`` ports)."""
    tensor.data[...] = val
    writes.wrote([tensor])
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError(f"fan in/out needs a tensor with at least 2 dims, got shape {tensor.shape}")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


# the names calculate_gain knows (PyTorch's): these with gain 1, then the ones it scales for
UNIT_GAIN = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
             "conv_transpose3d", "sigmoid")
NONLINEARITIES = UNIT_GAIN + ("tanh", "relu", "leaky_relu", "selu")


def calculate_gain(nonlinearity, param=None):
    """The factor that keeps activations' variance steady through ``nonlinearity``."""
    if nonlinearity in UNIT_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4  # PyTorch's: keeps SELU's self-normalising fixed point
    if nonlinearity == "leaky_relu":
        negative_slope = 0.01 if param is None else param
        # PyTorch's check (a ValueError): a string failed in ** with Python's words, True was 1
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
            raise ValueError(f"leaky_relu's param (negative_slope) must be a number, "
                             f"got {negative_slope!r}")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected one of {NONLINEARITIES}")


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    # a fan of 0 comes only with a dimension of 0, so no value to draw: any scale will do
    return max(fan_in if mode == "fan_in" else fan_out, 1)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan): variance gain^2 / fan (He et al.)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)))


def _fan_sum(tensor):
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return max(fan_in + fan_out, 1)  # 0 only for a tensor with no value to draw, as in _fan


def xavier_uniform_(tensor, gain=1.0):
    """U(-bound, bound) with bound = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio)."""
    bound = gain * math.sqrt(6.0 / _fan_sum(tensor))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / _fan_sum(tensor)))


def default_weight_and_bias_(weight, bias):
    """PyTorch's default for Linear and Conv layers (``reset_parameters``)."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)
