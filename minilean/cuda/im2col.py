"""Fast conv2d and conv_transpose2d: im2col and col2im kernels (``im2col.cu``) around cuBLAS
GEMMs.

Images stay NCHW. The columns are (C, Kh, Kw, N, Ho, Wo), the batch inside each row, so read as
(G, C/G Kh Kw, N Ho Wo) they are the right factor of ONE GEMM per group for the whole batch:

    rows  (G, O/G, N Ho Wo) = w (G, O/G, C/G Kh Kw) @ columns          y = NCHW(rows) + b
    dW = dy_rows @ columns^T         dcolumns = w^T @ dy_rows,         dx = col2im(dcolumns)

where dy_rows is dL/dy with its batch axis moved inside, (O, N, Ho Wo). ``swap_leading_axes``
moves the batch axis both ways, adding the bias on the way out. Backward makes the columns of
x again for dW rather than keep them from forward: they are Kh Kw times the size of x, and
kept they held the default diffusion step's activations for backward at 4.2 times the memory
(117 instead of 28 MiB) to spare one launch per convolution. Why not keep the batch outside,
(N, G, C/G Kh Kw, Ho Wo), and skip the two swaps: then each product is a batched GEMM that
broadcasts the weights, which CuPy runs through device arrays of matrix addresses (built by
extra launches), and the weight gradient needs a sum over the batch after it. Here, with one
group, every product is one plain GEMM (``backend.matmul`` takes the shortest path CuPy has to
cuBLAS), and a training step on a small model is bound by host time per launch.

A transposed convolution is the same three maps with the roles exchanged (its forward is a
convolution's input gradient). Padding is applied inside the kernels (reads outside the image
are zero), so no padded copy of x is made. ``im2col_reference``, ``col2im_reference`` and
``swap_leading_axes_reference`` are the NumPy statements of the kernels.
"""
import functools
import math

import numpy

from minilean import backend
from minilean.autograd.conv import output_size, transposed_output_size
from minilean.cuda import compile as kernels
from minilean.cuda import graph
from minilean.cuda.fast_function import FastFunction
from minilean.cuda.reduce import sum_rows

program = kernels.Program("im2col.cu", [
    f"{name}<{type_name}, {index}>" for name in ("im2col", "col2im", "swap_leading_axes")
    for type_name in ("float", "double") for index in ("int", "long long")])


# Arrays of at most this many elements have every flat index in an int: im2col.cu's kernels
# then split indices with 32-bit division (a module constant, so that tests can run the 64-bit
# kernels on small arrays).
INT_INDEX_LIMIT = 2 ** 31


def _kernel_name(name, dtype, largest):
    """``name<T, int>``, or ``name<T, long long>`` when the largest array the kernel indexes,
    of ``largest`` elements, is too large for int indices."""
    return _instantiation(name, dtype, largest > INT_INDEX_LIMIT)


@functools.lru_cache(maxsize=64)
def _instantiation(name, dtype, long_indices):
    """The instantiation's name (remembered: the names are few, and launched often)."""
    return f"{name}<{kernels.type_name(dtype)}, {'long long' if long_indices else 'int'}>"


@functools.lru_cache(maxsize=256)
def _geometry(x_shape, kernel_size, stride, padding, dilation):
    """The 14 int64 numbers im2col.cu reads: N, C, H, W, Kh, Kw, Ho, Wo, strides, pads,
    dilations (remembered: a training step asks for the same few, several times each)."""
    batch, channels, height, width = x_shape
    out = tuple(output_size(size + 2 * p, k, s, d) for size, k, s, p, d
                in zip((height, width), kernel_size, stride, padding, dilation))
    return (batch, channels, height, width) + tuple(kernel_size) + out + tuple(stride) + tuple(
        padding) + tuple(dilation)


def _columns_shape(geometry):
    """(C, Kh, Kw, N, Ho, Wo) of a geometry."""
    batch, channels = geometry[:2]
    return (channels,) + geometry[4:6] + (batch,) + geometry[6:8]


def im2col_reference(x, kernel_size, stride, padding, dilation):
    """x (N, C, H, W) -> columns (C, Kh, Kw, N, Ho, Wo), in NumPy."""
    geometry = _geometry(x.shape, kernel_size, stride, padding, dilation)
    kh, kw, out_h, out_w, sh, sw, ph, pw, dh, dw = geometry[4:]
    padded = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).transpose(1, 0, 2, 3)
    columns = numpy.empty(_columns_shape(geometry), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            columns[:, p, q] = padded[:, :, dh * p:dh * p + sh * (out_h - 1) + 1:sh,
                                      dw * q:dw * q + sw * (out_w - 1) + 1:sw]
    return columns


def col2im_reference(columns, x_shape, kernel_size, stride, padding, dilation):
    """The adjoint of im2col_reference: columns -> dx (N, C, H, W), in NumPy."""
    _, _, height, width, kh, kw, out_h, out_w, sh, sw, ph, pw, dh, dw = _geometry(
        x_shape, kernel_size, stride, padding, dilation)
    padded = numpy.zeros((x_shape[1], x_shape[0], height + 2 * ph, width + 2 * pw),
                         dtype=columns.dtype)  # (C, N, ...), as the columns hold them
    for p in range(kh):
        for q in range(kw):
            padded[:, :, dh * p:dh * p + sh * (out_h - 1) + 1:sh,
                   dw * q:dw * q + sw * (out_w - 1) + 1:sw] += columns[:, p, q]
    return padded[:, :, ph:ph + height, pw:pw + width].transpose(1, 0, 2, 3)


def swap_leading_axes_reference(src, bias=None):
    """src (A, B, ...) -> (B, A, ...), plus bias (A,) along the result's axis 1, in NumPy."""
    swapped = numpy.swapaxes(src, 0, 1)
    if bias is not None:
        swapped = swapped + bias.reshape((1, -1) + (1,) * (src.ndim - 2))
    return numpy.ascontiguousarray(swapped)


@functools.lru_cache(maxsize=1024)
def _device_geometry(geometry):
    """The geometry as an int64 device array, uploaded once per distinct convolution shape
    (a training step repeats the same shapes, so after warm-up nothing is uploaded). Room
    for many: with 64, a model of more distinct shapes than that uploaded every one at every
    step, and could not be captured as a CUDA graph."""
    import cupy
    return cupy.asarray(numpy.array(geometry, dtype=numpy.int64))


def _launch(name, source, out, geometry):
    """Launch ``name`` from the contiguous ``source`` into ``out`` (of source's dtype)."""
    dims = graph.held(_device_geometry(geometry))
    kernels.launch(program, _kernel_name(name, out.dtype, max(source.size, out.size)), out.size,
                   (source, out, dims, numpy.int64(out.size)))
    return out


def im2col(x, kernel_size, stride, padding, dilation):
    """x (N, C, H, W) -> columns (C, Kh, Kw, N, Ho, Wo) on the GPU."""
    import cupy
    geometry = _geometry(x.shape, kernel_size, stride, padding, dilation)
    return _launch("im2col", cupy.ascontiguousarray(x),
                   cupy.empty(_columns_shape(geometry), dtype=x.dtype), geometry)


def col2im(columns, x_shape, kernel_size, stride, padding, dilation):
    """columns (C, Kh, Kw, N, Ho, Wo) -> dx (N, C, H, W) on the GPU."""
    import cupy
    return _col2im(cupy.ascontiguousarray(columns), x_shape, kernel_size, stride, padding,
                   dilation)


def _col2im(columns, x_shape, kernel_size, stride, padding, dilation):
    """``col2im`` of contiguous ``columns`` (a product just made is: no
    ``cupy.ascontiguousarray`` call to say so)."""
    import cupy
    geometry = _geometry(x_shape, kernel_size, stride, padding, dilation)
    return _launch("col2im", columns, cupy.empty(x_shape, dtype=columns.dtype), geometry)


@functools.lru_cache(maxsize=256)
def _swap_layout(shape):
    """(the result's shape, its size, the kernel's int64 arguments A, B, the product of the
    other axes, the size) of swapping the leading axes of ``shape`` (remembered: a training
    step swaps the same few shapes, several times each)."""
    a, b = shape[:2]
    size = math.prod(shape)
    return (b, a) + shape[2:], size, tuple(
        numpy.int64(v) for v in (a, b, math.prod(shape[2:]), size))


def swap_leading_axes(src, bias=None):
    """src (A, B, ...) -> a new contiguous (B, A, ...) on the GPU, plus bias (A,) along its
    axis 1 if given."""
    import cupy
    return _swap_leading_axes(cupy.ascontiguousarray(src), bias)


def _swap_leading_axes(src, bias=None):
    """``swap_leading_axes`` of a contiguous ``src`` (a product just made is: no
    ``cupy.ascontiguousarray`` call to say so)."""
    import cupy
    dst_shape, size, ints = _swap_layout(src.shape)
    dst = cupy.empty(dst_shape, dtype=src.dtype)
    add_bias = bias is not None
    bias = cupy.ascontiguousarray(bias, dtype=src.dtype) if add_bias else src  # src: unread
    kernels.launch(program, _kernel_name("swap_leading_axes", src.dtype, size), size,
                   (src, dst, bias, numpy.int32(add_bias)) + ints)
    return dst


def _grouped(array, groups, rows):
    """``array`` as ``groups`` matrices of ``rows`` rows, (G, rows, columns), a view; with one
    group as one matrix, (rows, columns), which ``backend.matmul`` hands to cuBLAS as it is (a
    batch of one it would reshape to a matrix and back: host time, which a small model's step
    is bound by). Rows are channels, never 0; columns run over the batch, which may be empty."""
    return array.reshape(groups, rows, -1) if groups > 1 else array.reshape(rows, -1)


def _transposed(matrices):
    """Each matrix of ``_grouped`` transposed (a view)."""
    return matrices.swapaxes(-1, -2)


def batch_rows(y, groups):
    """NCHW (N, O, Ho, Wo) -> (G, O/G, N Ho Wo) (``_grouped``): the layout of the GEMMs' rows."""
    return _grouped(swap_leading_axes(y), groups, y.shape[1] // groups)


def _column_matrix(columns, groups):
    """Columns (C, Kh, Kw, N, Ho, Wo) -> (G, C/G Kh Kw, N Ho Wo) (``_grouped``)."""
    return _grouped(columns, groups, math.prod(columns.shape[:3]) // groups)


def _weight_rows(weight, groups):
    """(O, C/G, Kh, Kw) -> (G, O/G, C/G Kh Kw) (``_grouped``)."""
    import cupy
    return _grouped(cupy.ascontiguousarray(weight), groups, weight.shape[0] // groups)


def conv(columns, weight, bias, groups):
    """y = conv2d(x, w) + b from x's columns (C, Kh, Kw, N, Ho, Wo) (``im2col``), w (O, C/G, Kh,
    Kw), b (O,) or None -> y (N, O, Ho, Wo)."""
    out_channels = weight.shape[0]
    batch, out_h, out_w = columns.shape[3:]
    rows = backend.matmul(_weight_rows(weight, groups), _column_matrix(columns, groups))
    # (G, O/G, N Ho Wo) -> (N, O, Ho Wo); rows, a new product, are contiguous
    y = _swap_leading_axes(rows.reshape(out_channels, batch, out_h * out_w), bias)
    return y.reshape(batch, out_channels, out_h, out_w)


def input_grad_from_rows(grad_rows, weight, x_shape, stride, padding, dilation, groups):
    """dL/dx = col2im(w^T @ dL/dy): grad_rows (G, O/G, N Ho Wo), dL/dy as ``batch_rows`` lays
    it out -> (N, C, H, W), x_shape (N, C, H, W)."""
    _, _, kh, kw = weight.shape
    # (G, C/G Kh Kw, O/G) @ (G, O/G, N Ho Wo) -> (G, C/G Kh Kw, N Ho Wo)
    grad_columns = backend.matmul(_transposed(_weight_rows(weight, groups)), grad_rows)
    geometry = _geometry(x_shape, (kh, kw), stride, padding, dilation)
    # (G, C/G Kh Kw, N Ho Wo) -> (C, Kh, Kw, N, Ho, Wo), as im2col lays out columns; a new
    # product, contiguous
    return _col2im(grad_columns.reshape(_columns_shape(geometry)), x_shape, (kh, kw), stride,
                  padding, dilation)


def weight_grad_from_rows(columns, grad_rows, weight_shape, groups):
    """dL/dw = dL/dy @ columns(x)^T, one GEMM over the whole batch: columns (C, Kh, Kw, N, Ho,
    Wo) of x (``im2col``), grad_rows (G, O/G, N Ho Wo) as ``batch_rows`` lays it out -> (O,
    C/G, Kh, Kw)."""
    # (G, O/G, N Ho Wo) @ (G, N Ho Wo, C/G Kh Kw) -> (G, O/G, C/G Kh Kw)
    grad_weight = backend.matmul(grad_rows, _transposed(_column_matrix(columns, groups)))
    return grad_weight.reshape(weight_shape)  # (G, O/G, C/G Kh Kw) -> (O, C/G, Kh, Kw)


class FastConv2d(FastFunction):
    """Conv2d through im2col.cu and cuBLAS GEMMs (the op's own contract)."""
    fresh_grads = True

    @staticmethod
    def kernel_forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0),
                       dilation=(1, 1), groups=1):
        if ctx.recording:
            ctx.x, ctx.weight, ctx.params = x, weight, (stride, padding, dilation, groups)
        return conv(im2col(x, weight.shape[2:], stride, padding, dilation), weight, bias, groups)

    @staticmethod
    def kernel_backward(ctx, grad):
        x, weight, (stride, padding, dilation, groups) = ctx.x, ctx.weight, ctx.params
        grad_rows = batch_rows(grad, groups)  # (G, O/G, N Ho Wo)
        return _gradients(
            ctx, lambda: input_grad_from_rows(grad_rows, weight, x.shape, *ctx.params),
            lambda: weight_grad_from_rows(im2col(x, weight.shape[2:], stride, padding,
                                                 dilation), grad_rows, weight.shape, groups),
            lambda: sum_rows(grad_rows, grad.shape[1], grad_rows.shape[-1], 1))


class FastConvTranspose2d(FastFunction):
    """ConvTranspose2d through the same three maps, with the roles exchanged: it is the input
    gradient of the conv2d (weight w, (C_in, C_out/G, Kh, Kw)) from (N, C_out, H_out, W_out)
    to x's (N, C_in, H, W), so, with rows(x) the GEMMs' layout of x (``batch_rows``),

        y = input_grad_from_rows(rows(x))        dL/dx = conv(columns(dL/dy))
        dL/dw = weight_grad_from_rows(columns(dL/dy), rows(x))

    Backward makes the columns of dL/dy once for both, and reads the rows of x that forward
    made (the same size as x, which it keeps instead).
    """
    fresh_grads = True

    @staticmethod
    def covers(x, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
               groups=1, dilation=(1, 1)):
        # output_padding up to the dilation can leave the conv2d of y's size one longer than x
        return FastFunction.covers(x, weight) and all(
            output_size(size + 2 * p, k, s, d) == in_size for size, k, s, p, d, in_size in zip(
                _transposed_size(x.shape, weight.shape, stride, padding, output_padding,
                                 dilation)[2:], weight.shape[2:], stride, padding, dilation,
                x.shape[2:]))

    @staticmethod
    def kernel_forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0),
                       output_padding=(0, 0), groups=1, dilation=(1, 1)):
        params = (stride, padding, dilation, groups)
        rows = batch_rows(x, groups)  # (G, C_in/G, N H W)
        if ctx.recording:
            ctx.weight, ctx.params = weight, params
            ctx.rows = rows if ctx.needs_input_grad[1] else None
        y_shape = _transposed_size(x.shape, weight.shape, stride, padding, output_padding,
                                   dilation, groups)
        y = input_grad_from_rows(rows, weight, y_shape, *params)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)  # (1, channels, 1, 1)
        return y

    @staticmethod
    def kernel_backward(ctx, grad):
        weight, (stride, padding, dilation, groups) = ctx.weight, ctx.params
        need_x, need_weight = ctx.needs_input_grad[:2]
        columns = (im2col(grad, weight.shape[2:], stride, padding, dilation)
                   if need_x or need_weight else None)
        return _gradients(ctx, lambda: conv(columns, weight, None, groups),
                          lambda: weight_grad_from_rows(columns, ctx.rows, weight.shape, groups),
                          lambda: grad.sum(axis=(0, 2, 3)))


def _gradients(ctx, input_grad, weight_grad, bias_grad):
    """(dL/dx, dL/dw, dL/db) of either op, computing only those its inputs need."""
    need = ctx.needs_input_grad
    return (input_grad() if need[0] else None, weight_grad() if need[1] else None,
            bias_grad() if len(need) == 3 and need[2] else None)


def _transposed_size(x_shape, weight_shape, stride, padding, output_padding, dilation,
                     groups=1):
    """(N, C_out, H_out, W_out) of a transposed convolution of x (N, C_in, H, W)."""
    batch, _, height, width = x_shape
    return (batch, weight_shape[1] * groups) + tuple(
        transposed_output_size(size, k, s, p, d, extra) for size, s, p, d, k, extra in zip(
            (height, width), stride, padding, dilation, weight_shape[2:], output_padding))
