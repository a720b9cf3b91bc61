"""Fast conv2d: im2col and col2im kernels (``im2col.cu``) around CuPy's matmul.

Here images stay NCHW and the columns are (N, C, Kh, Kw, Ho, Wo): read as
(N, G, C/G Kh Kw, Ho Wo) they are the right factor of one batched GEMM per group,

    y   (N, G, O/G, Ho Wo) = w (G, O/G, C/G Kh Kw) @ columns
    dW  = sum_n  dy @ columns^T          dcolumns = w^T @ dy,  dx = col2im(dcolumns)

so the output is NCHW with no transpose. Padding is applied inside the kernels (reads outside
the image are zero), so no padded copy of x is made. ``im2col_reference`` and
``col2im_reference`` are the NumPy statements, looping over the Kh x Kw kernel offsets.
"""
import functools

import numpy

from minilean.cuda import compile as kernels
from minilean.cuda.fast_function import FastFunction

program = kernels.Program("im2col.cu", [
    f"{name}<{type_name}>" for name in ("im2col", "col2im") for type_name in ("float", "double")])


def output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(x_shape, kernel_size, stride, padding, dilation):
    """The 14 int64 numbers im2col.cu reads: N, C, H, W, Kh, Kw, Ho, Wo, strides, pads,
    dilations."""
    batch, channels, height, width = x_shape
    out = tuple(output_size(size, k, s, p, d) for size, k, s, p, d
                in zip((height, width), kernel_size, stride, padding, dilation))
    return (batch, channels, height, width) + tuple(kernel_size) + out + tuple(stride) + tuple(
        padding) + tuple(dilation)


def im2col_reference(x, kernel_size, stride, padding, dilation):
    """x (N, C, H, W) -> columns (N, C, Kh, Kw, Ho, Wo), in NumPy."""
    batch, channels, _, _, kh, kw, out_h, out_w, sh, sw, ph, pw, dh, dw = _geometry(
        x.shape, kernel_size, stride, padding, dilation)
    padded = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    columns = numpy.empty((batch, channels, kh, kw, out_h, out_w), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            columns[:, :, p, q] = padded[:, :, dh * p:dh * p + sh * (out_h - 1) + 1:sh,
                                         dw * q:dw * q + sw * (out_w - 1) + 1:sw]
    return columns


def col2im_reference(columns, x_shape, kernel_size, stride, padding, dilation):
    """The adjoint of im2col_reference: columns -> dx (N, C, H, W), in NumPy."""
    _, _, height, width, kh, kw, out_h, out_w, sh, sw, ph, pw, dh, dw = _geometry(
        x_shape, kernel_size, stride, padding, dilation)
    padded = numpy.zeros(x_shape[:2] + (height + 2 * ph, width + 2 * pw), dtype=columns.dtype)
    for p in range(kh):
        for q in range(kw):
            padded[:, :, dh * p:dh * p + sh * (out_h - 1) + 1:sh,
                   dw * q:dw * q + sw * (out_w - 1) + 1:sw] += columns[:, :, p, q]
    return padded[:, :, ph:ph + height, pw:pw + width]


@functools.lru_cache(maxsize=64)
def _device_geometry(geometry):
    """The geometry as an int64 device array, uploaded once per distinct convolution shape
    (a training step repeats the same shapes, so after warm-up nothing is uploaded)."""
    import cupy
    return cupy.asarray(numpy.array(geometry, dtype=numpy.int64))


def _launch(name, source, out, geometry):
    import cupy
    dims = _device_geometry(geometry)
    kernels.launch(program, f"{name}<{kernels.type_name(out.dtype)}>", out.size,
                   (cupy.ascontiguousarray(source, dtype=out.dtype), out, dims,
                    numpy.int64(out.size)))
    return out


def im2col(x, kernel_size, stride, padding, dilation):
    """x (N, C, H, W) -> columns (N, C, Kh, Kw, Ho, Wo) on the GPU."""
    import cupy
    geometry = _geometry(x.shape, kernel_size, stride, padding, dilation)
    columns = cupy.empty(geometry[:2] + geometry[4:8], dtype=x.dtype)
    return _launch("im2col", x, columns, geometry)


def col2im(columns, x_shape, kernel_size, stride, padding, dilation):
    """columns (N, C, Kh, Kw, Ho, Wo) -> dx (N, C, H, W) on the GPU."""
    import cupy
    geometry = _geometry(x_shape, kernel_size, stride, padding, dilation)
    return _launch("col2im", columns, cupy.empty(x_shape, dtype=columns.dtype), geometry)


class FastConv2d(FastFunction):
    """Conv2d through im2col.cu and CuPy's matmul (the op's own contract)."""

    @staticmethod
    def kernel_forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0),
                       dilation=(1, 1), groups=1):
        import cupy
        out_channels, group_channels, kh, kw = weight.shape
        columns = im2col(x, (kh, kw), stride, padding, dilation)  # (N, C, Kh, Kw, Ho, Wo)
        batch, out_h, out_w = x.shape[0], columns.shape[4], columns.shape[5]
        # (N, C, Kh, Kw, Ho, Wo) -> (N, G, C/G Kh Kw, Ho Wo)
        columns = columns.reshape(batch, groups, group_channels * kh * kw, out_h * out_w)
        # (O, C/G, Kh, Kw) -> (G, O/G, C/G Kh Kw)
        weight_matrix = cupy.ascontiguousarray(weight).reshape(groups, out_channels // groups, -1)
        y = cupy.matmul(weight_matrix, columns)  # (N, G, O/G, Ho Wo)
        y = y.reshape(batch, out_channels, out_h, out_w)  # (N, O, Ho, Wo)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)  # (1, O, 1, 1)
        if ctx.recording:
            ctx.x, ctx.weight, ctx.params = x, weight, (stride, padding, dilation, groups)
        return y

    @staticmethod
    def kernel_backward(ctx, grad):
        import cupy
        stride, padding, dilation, groups = ctx.params
        x, weight = ctx.x, ctx.weight
        out_channels, group_channels, kh, kw = weight.shape
        batch, _, out_h, out_w = grad.shape
        need_x, need_weight = ctx.needs_input_grad[:2]
        # (N, O, Ho, Wo) -> (N, G, O/G, Ho Wo)
        grad_y = cupy.ascontiguousarray(grad).reshape(batch, groups, out_channels // groups, -1)
        # (O, C/G, Kh, Kw) -> (G, O/G, C/G Kh Kw)
        weight_matrix = cupy.ascontiguousarray(weight).reshape(groups, out_channels // groups, -1)
        grad_x = grad_weight = grad_bias = None
        if need_x:
            grad_columns = cupy.matmul(weight_matrix.transpose(0, 2, 1), grad_y)  # (N, G, C/G Kh Kw, Ho Wo)
            # (N, G, C/G Kh Kw, Ho Wo) -> (N, C, Kh, Kw, Ho, Wo)
            grad_columns = grad_columns.reshape(batch, -1, kh, kw, out_h, out_w)
            grad_x = col2im(grad_columns, x.shape, (kh, kw), stride, padding, dilation)
        if need_weight:
            columns = im2col(x, (kh, kw), stride, padding, dilation)  # (N, C, Kh, Kw, Ho, Wo)
            # (N, C, Kh, Kw, Ho, Wo) -> (N, G, C/G Kh Kw, Ho Wo) -> (N, G, Ho Wo, C/G Kh Kw)
            columns = columns.reshape(batch, groups, -1, out_h * out_w).transpose(0, 1, 3, 2)
            grad_weight = cupy.matmul(grad_y, columns).sum(axis=0)  # (G, O/G, C/G Kh Kw)
            grad_weight = grad_weight.reshape(weight.shape)  # (O, C/G, Kh, Kw)
        if len(ctx.needs_input_grad) == 3 and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(axis=(0, 2, 3))
        return grad_x, grad_weight, grad_bias
