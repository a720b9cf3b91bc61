"""Fast conv2d and conv_transpose2d: im2col and col2im kernels (``im2col.cu``) around CuPy's
matmul.

Here images stay NCHW and the columns are (N, C, Kh, Kw, Ho, Wo): read as
(N, G, C/G Kh Kw, Ho Wo) they are the right factor of one batched GEMM per group,

    y   (N, G, O/G, Ho Wo) = w (G, O/G, C/G Kh Kw) @ columns
    dW  = sum_n  dy @ columns^T          dcolumns = w^T @ dy,  dx = col2im(dcolumns)

so the output is NCHW with no transpose. A transposed convolution is the same three maps with
the roles exchanged (its forward is a convolution's input gradient). Padding is applied inside
the kernels (reads outside the image are zero), so no padded copy of x is made.
``im2col_reference`` and ``col2im_reference`` are the NumPy statements, looping over the Kh x Kw
kernel offsets.
"""
import functools

import numpy

from minilean import backend
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


def _weight_matrix(weight, groups):
    """(O, C/G, Kh, Kw) -> (G, O/G, C/G Kh Kw)."""
    import cupy
    return cupy.ascontiguousarray(weight).reshape(groups, weight.shape[0] // groups, -1)


def conv(x, weight, stride, padding, dilation, groups):
    """y = conv2d(x, w): x (N, C, H, W), w (O, C/G, Kh, Kw) -> y (N, O, Ho, Wo)."""
    out_channels, group_channels, kh, kw = weight.shape
    columns = im2col(x, (kh, kw), stride, padding, dilation)  # (N, C, Kh, Kw, Ho, Wo)
    batch, out_h, out_w = x.shape[0], columns.shape[4], columns.shape[5]
    # (N, C, Kh, Kw, Ho, Wo) -> (N, G, C/G Kh Kw, Ho Wo)
    columns = columns.reshape(batch, groups, group_channels * kh * kw, out_h * out_w)
    y = backend.matmul(_weight_matrix(weight, groups), columns)  # (N, G, O/G, Ho Wo)
    return y.reshape(batch, out_channels, out_h, out_w)


def conv_input_grad(grad_y, weight, x_shape, stride, padding, dilation, groups):
    """dL/dx = col2im(w^T @ dL/dy): grad_y (N, O, Ho, Wo) -> (N, C, H, W), x_shape (N, C, H, W)."""
    import cupy
    out_channels, _, kh, kw = weight.shape
    batch, _, out_h, out_w = grad_y.shape
    # (N, O, Ho, Wo) -> (N, G, O/G, Ho Wo)
    grad_y = cupy.ascontiguousarray(grad_y).reshape(batch, groups, out_channels // groups, -1)
    # (G, C/G Kh Kw, O/G) @ (N, G, O/G, Ho Wo) -> (N, G, C/G Kh Kw, Ho Wo)
    grad_columns = backend.matmul(_weight_matrix(weight, groups).transpose(0, 2, 1), grad_y)
    # (N, G, C/G Kh Kw, Ho Wo) -> (N, C, Kh, Kw, Ho, Wo)
    grad_columns = grad_columns.reshape(batch, -1, kh, kw, out_h, out_w)
    return col2im(grad_columns, x_shape, (kh, kw), stride, padding, dilation)


def conv_weight_grad(x, grad_y, weight_shape, stride, padding, dilation, groups):
    """dL/dw = sum_n dL/dy @ columns(x)^T: x (N, C, H, W), grad_y (N, O, Ho, Wo) -> (O, C/G, Kh,
    Kw)."""
    import cupy
    out_channels, _, kh, kw = weight_shape
    batch, _, out_h, out_w = grad_y.shape
    grad_y = cupy.ascontiguousarray(grad_y).reshape(batch, groups, out_channels // groups, -1)
    columns = im2col(x, (kh, kw), stride, padding, dilation)  # (N, C, Kh, Kw, Ho, Wo)
    # (N, C, Kh, Kw, Ho, Wo) -> (N, G, C/G Kh Kw, Ho Wo) -> (N, G, Ho Wo, C/G Kh Kw)
    columns = columns.reshape(batch, groups, -1, out_h * out_w).transpose(0, 1, 3, 2)
    grad_weight = backend.matmul(grad_y, columns).sum(axis=0)  # (G, O/G, C/G Kh Kw)
    return grad_weight.reshape(weight_shape)  # (O, C/G, Kh, Kw)


class FastConv2d(FastFunction):
    """Conv2d through im2col.cu and CuPy's matmul (the op's own contract)."""
    fresh_grads = True

    @staticmethod
    def kernel_forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0),
                       dilation=(1, 1), groups=1):
        y = conv(x, weight, stride, padding, dilation, groups)
        return _finish_forward(ctx, y, x, weight, bias, (stride, padding, dilation, groups))

    @staticmethod
    def kernel_backward(ctx, grad):
        x, weight, params = ctx.x, ctx.weight, ctx.params
        return _gradients(ctx, grad, lambda: conv_input_grad(grad, weight, x.shape, *params),
                          lambda: conv_weight_grad(x, grad, weight.shape, *params))


class FastConvTranspose2d(FastFunction):
    """ConvTranspose2d through the same three maps, with the roles exchanged: it is the input
    gradient of the conv2d (weight w, (C_in, C_out/G, Kh, Kw)) from (N, C_out, H_out, W_out)
    to x's (N, C_in, H, W), so

        y = conv_input_grad(x)      dL/dx = conv(dL/dy)      dL/dw = conv_weight_grad(dL/dy, x)
    """
    fresh_grads = True

    @staticmethod
    def covers(x, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
               groups=1, dilation=(1, 1)):
        # output_padding up to the dilation can leave the conv2d of y's size one longer than x
        return FastFunction.covers(x, weight) and all(
            output_size(size, k, s, p, d) == in_size for size, k, s, p, d, in_size in zip(
                _transposed_size(x.shape, weight.shape, stride, padding, output_padding,
                                 dilation)[2:], weight.shape[2:], stride, padding, dilation,
                x.shape[2:]))

    @staticmethod
    def kernel_forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0),
                       output_padding=(0, 0), groups=1, dilation=(1, 1)):
        y_shape = _transposed_size(x.shape, weight.shape, stride, padding, output_padding,
                                   dilation, groups)
        y = conv_input_grad(x, weight, y_shape, stride, padding, dilation, groups)
        return _finish_forward(ctx, y, x, weight, bias, (stride, padding, dilation, groups))

    @staticmethod
    def kernel_backward(ctx, grad):
        x, weight, params = ctx.x, ctx.weight, ctx.params
        return _gradients(ctx, grad, lambda: conv(grad, weight, *params),
                          lambda: conv_weight_grad(grad, x, weight.shape, *params))


def _finish_forward(ctx, y, x, weight, bias, params):
    """y plus the bias of each output channel; saves what either op's backward reads."""
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)  # (1, channels, 1, 1)
    if ctx.recording:
        ctx.x, ctx.weight, ctx.params = x, weight, params
    return y


def _gradients(ctx, grad, input_grad, weight_grad):
    """(dL/dx, dL/dw, dL/db) of either op, computing only those its inputs need."""
    need = ctx.needs_input_grad
    return (input_grad() if need[0] else None, weight_grad() if need[1] else None,
            grad.sum(axis=(0, 2, 3)) if len(need) == 3 and need[2] else None)


def _transposed_size(x_shape, weight_shape, stride, padding, output_padding, dilation,
                     groups=1):
    """(N, C_out, H_out, W_out) of a transposed convolution of x (N, C_in, H, W)."""
    batch, _, height, width = x_shape
    return (batch, weight_shape[1] * groups) + tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + 1 + extra for size, s, p, d, k, extra in zip(
            (height, width), stride, padding, dilation, weight_shape[2:], output_padding))
