"""Pooling and resampling of NCHW images: avg_pool2d, max_pool2d, interpolate (nearest).

Pooling reuses the convolution's window machinery (``conv.im2col`` / ``conv.col2im`` on a
channels-last view): forward reduces each K x K window, backward scatters each window's
gradient back with col2im. Outputs are NCHW-shaped views of channels-last memory, as most of
conv2d's are.
"""
import numbers

from minilean.autograd.conv import (channels_last, col2im, crop_to_nchw, im2col, output_size,
                                    pair, to_padded_nhwc)
from minilean.autograd.elementwise import floating, masked_gradient
from minilean.autograd.function import Function
from minilean.backend import array_module


class AvgPool2d(Function):
    """y[n, c, i, j] = (1 / (Kh Kw)) sum_{p, q} x_pad[n, c, s i + p, s j + q]  (zero padding
    counted, PyTorch's count_include_pad=True);  dL/dx_pad = col2im(dL/dy / (Kh Kw))."""
    @staticmethod
    def forward(ctx, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
        x_pad = to_padded_nhwc(x, padding)
        windows = im2col(x_pad, kernel_size, stride, (1, 1))  # (N, Ho, Wo, Kh, Kw, C) view
        if ctx.recording:
            ctx.padded_shape, ctx.input_size = x_pad.shape, x.shape[2:]
            ctx.params = kernel_size, stride, padding
        return windows.mean(axis=(3, 4)).transpose(0, 3, 1, 2)  # (N, C, Ho, Wo) view

    @staticmethod
    def backward(ctx, grad):
        (kh, kw), stride, padding = ctx.params
        xp = array_module(grad)
        share = channels_last(grad) / (kh * kw)  # (N, Ho, Wo, C)
        # every window position receives the same share: a broadcast view, never materialised
        columns = xp.broadcast_to(share[:, :, :, None, None, :], share.shape[:3] + (kh, kw)
                                  + share.shape[3:])  # (N, Ho, Wo, Kh, Kw, C)
        grad_x = col2im(columns, stride, (1, 1), xp.zeros(ctx.padded_shape, dtype=grad.dtype))
        return crop_to_nchw(grad_x, padding, ctx.input_size)


class MaxPool2d(Function):
    """y = max over each window (padding is the dtype's lowest value, -inf for floats);
    dL/dx = dL/dy at the window's argmax, 0 elsewhere (the first maximum on ties, as PyTorch),
    summed where windows overlap."""
    @staticmethod
    def forward(ctx, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
        xp = array_module(x)
        x_pad = to_padded_nhwc(x, padding, value=_lowest(x.dtype, xp))
        windows = im2col(x_pad, kernel_size, stride, (1, 1))  # (N, Ho, Wo, Kh, Kw, C) view
        # (N, Ho, Wo, Kh, Kw, C) -> (N, Ho, Wo, Kh Kw, C): one window per row, copied
        kh, kw = kernel_size
        windows = windows.reshape(windows.shape[:3] + (kh * kw,) + windows.shape[5:])
        argmax = windows.argmax(axis=3)  # (N, Ho, Wo, C)
        out = xp.take_along_axis(windows, argmax[:, :, :, None], axis=3)[:, :, :, 0]
        if ctx.recording:
            if any(padding):  # only the gradient depends on which -inf is taken
                argmax = _first_inside_where_all_minus_inf(argmax, out, x.shape[2:], kernel_size,
                                                           stride, padding)
            ctx.argmax, ctx.padded_shape, ctx.input_size = argmax, x_pad.shape, x.shape[2:]
            ctx.params = kernel_size, stride, padding
        return out.transpose(0, 3, 1, 2)  # (N, C, Ho, Wo) view

    @staticmethod
    def backward(ctx, grad):
        (kh, kw), stride, padding = ctx.params
        xp = array_module(grad)
        grad_y = channels_last(grad)  # (N, Ho, Wo, C)
        # (Kh Kw, 1) == (N, Ho, Wo, 1, C): a one-hot of the argmax along the window axis
        winner = xp.arange(kh * kw).reshape(-1, 1) == ctx.argmax[:, :, :, None, :]
        # selected, not multiplied by the one-hot: an infinite gradient (sqrt's slope at 0
        # after the pool) would make inf * 0 = nan at every other place of the window
        columns = masked_gradient(grad_y[:, :, :, None, :], winner)  # (N, Ho, Wo, Kh Kw, C)
        # (N, Ho, Wo, Kh Kw, C) -> (N, Ho, Wo, Kh, Kw, C)
        columns = columns.reshape(columns.shape[:3] + (kh, kw) + columns.shape[4:])
        grad_x = col2im(columns, stride, (1, 1), xp.zeros(ctx.padded_shape, dtype=grad.dtype))
        return crop_to_nchw(grad_x, padding, ctx.input_size)


def _lowest(dtype, xp):
    """The value no element of ``dtype`` is below, which padding must never beat: -inf for a
    float, the minimum for an integer, False for a bool. (-inf cast to int8 or int16 is 0,
    which beat every negative window; cast to bool it is True.)"""
    if dtype.kind == "f":
        return -xp.inf
    return False if dtype.kind == "b" else xp.iinfo(dtype).min


def _first_inside_where_all_minus_inf(argmax, window_max, size, kernel_size, stride, padding):
    """``argmax``, moved to the window's first position inside the image where no value
    there beats -inf: there the -inf padding ties with the input, and the argmax may sit in
    the padding, where the gradient would be lost (PyTorch gives it to that first position).
    argmax and window_max: (N, Ho, Wo, C). Always computed: asking first whether any window
    is stuck would make the host wait for a GPU at every such forward."""
    xp = array_module(window_max)
    stuck = window_max == -xp.inf  # (N, Ho, Wo, C)
    inside = xp.ones((1,) + tuple(size) + (1,), dtype=bool)  # (1, H, W, 1)
    inside = im2col(to_padded_nhwc(inside.transpose(0, 3, 1, 2), padding, value=False),
                    kernel_size, stride, (1, 1))  # (1, Ho, Wo, Kh, Kw, 1)
    first = inside.reshape(inside.shape[:3] + (-1,)).argmax(axis=3)  # (1, Ho, Wo)
    return xp.where(stuck, first[..., None], argmax)


class UpsampleNearest(Function):
    """y[n, c, i, j] = x[n, c, i // s_h, j // s_w] (integer scales);  dL/dx sums each
    s_h x s_w block of dL/dy."""
    @staticmethod
    def forward(ctx, x, scale=(2, 2)):
        xp = array_module(x)
        batch, channels, height, width = x.shape
        scale_h, scale_w = scale
        if ctx.recording:
            ctx.scale = scale
        nhwc = x.transpose(0, 2, 3, 1)[:, :, None, :, None, :]  # (N, H, 1, W, 1, C) view
        blocks = xp.broadcast_to(nhwc, (batch, height, scale_h, width, scale_w, channels))
        # (N, H, s_h, W, s_w, C) -> (N, H s_h, W s_w, C): the copy; then an NCHW view
        nhwc = blocks.reshape(batch, height * scale_h, width * scale_w, channels)
        return nhwc.transpose(0, 3, 1, 2)  # (N, C, H s_h, W s_w) view

    @staticmethod
    def backward(ctx, grad):
        scale_h, scale_w = ctx.scale
        batch, channels, out_height, out_width = grad.shape  # H s_h, W s_w
        grad_y = grad.transpose(0, 2, 3, 1)  # (N, H s_h, W s_w, C) view
        # (N, H s_h, W s_w, C) -> (N, H, s_h, W, s_w, C)
        blocks = grad_y.reshape(batch, out_height // scale_h, scale_h, out_width // scale_w,
                                scale_w, channels)
        return blocks.sum(axis=(2, 4)).transpose(0, 3, 1, 2)  # (N, C, H, W) view


def pool_sizes(name, kernel_size, stride, padding):
    """A pooling's ``kernel_size``, ``stride`` (None: the kernel size) and ``padding`` as
    checked pairs; checked by the ops at each call and by the layers where they are built."""
    kernel_size = pair(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if min(kernel_size) < 1 or min(stride) < 1:
        raise ValueError(f"{name}: kernel_size {kernel_size} and stride {stride} must be positive")
    if any(2 * pad > kernel for pad, kernel in zip(padding, kernel_size)):
        raise ValueError(f"{name}: padding {padding} must be at most half of kernel_size "
                         f"{kernel_size}")
    return kernel_size, stride, padding


def _pool_params(name, x, kernel_size, stride, padding):
    if x.ndim != 4:
        raise ValueError(f"{name} needs a 4-d input (N, C, H, W), got shape {x.shape}")
    kernel_size, stride, padding = pool_sizes(name, kernel_size, stride, padding)
    size = tuple(output_size(side + 2 * pad, kernel, step, 1) for side, pad, kernel, step
                 in zip(x.shape[2:], padding, kernel_size, stride))
    if min(size) < 1:
        raise ValueError(f"{name}: input of spatial size {x.shape[2:]} is smaller than "
                         f"kernel_size {kernel_size} with padding {padding}")
    return dict(kernel_size=kernel_size, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over K x K windows (stride defaults to kernel_size; zero padding is averaged in);
    of an integer x in float32, like the other real-valued ops (NumPy's mean gave float64)."""
    params = _pool_params("avg_pool2d", x, kernel_size, stride, padding)
    return AvgPool2d.apply(floating(x), **params)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Maximum over K x K windows (stride defaults to kernel_size); gradient to the argmax."""
    return MaxPool2d.apply(x, **_pool_params("max_pool2d", x, kernel_size, stride, padding))


def interpolate(x, *, scale_factor, mode="nearest"):
    """Upsample NCHW by an integer ``scale_factor`` (int or pair) with nearest neighbours.
    Keyword-only and required: PyTorch's second argument is the output ``size`` (and it has
    no default scale), so a ported ``interpolate(x, 2)`` is refused, not read as a scale."""
    if mode != "nearest":
        raise ValueError(f"interpolate supports mode='nearest' only, got mode={mode!r}")
    if x.ndim != 4:
        raise ValueError(f"interpolate needs a 4-d input (N, C, H, W), got shape {x.shape}")
    scales = (scale_factor, scale_factor) if not isinstance(scale_factor, (tuple, list)) \
        else tuple(scale_factor)
    # a number first: None or a string failed in float()'s or the comparison's words
    if len(scales) != 2 or not all(isinstance(s, numbers.Real) and not isinstance(s, bool)
                                   and float(s).is_integer() and s >= 1 for s in scales):
        raise ValueError(f"interpolate needs a positive integer scale_factor (or a pair), "
                         f"got {scale_factor!r}")
    return UpsampleNearest.apply(x, scale=tuple(int(s) for s in scales))
