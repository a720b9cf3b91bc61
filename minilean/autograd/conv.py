"""Convolution: conv2d and conv_transpose2d (NCHW, PyTorch's semantics) as im2col + one GEMM.

A convolution with weight w (O, C/G, Kh, Kw) computes, for every output pixel (i, j),

    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x_pad[n, g(o) C/G + c, s i + d p, s j + d q]

(stride s, dilation d, G groups). Gather the input patch under every output pixel into one
row ("im2col") and this is a single matrix product per group: (pixels, Kh Kw C/G) @
(Kh Kw C/G, O/G). Its two gradients are matrix products too:

    dL/dw    = columns^T @ dL/dy                      (the same columns as forward)
    dL/dx    = col2im(dL/dy @ w^T)                    (scatter-add the patches back)

and the input gradient of a convolution *is* a transposed convolution, so ConvTranspose2d
runs the same three passes with forward and input-gradient exchanged.

Layout, for speed on the CPU: inside this file images are channels-last (N, H, W, C). Then
a patch row is (Kh, Kw, C) with C contiguous, im2col is one strided view (no index arrays)
whose reshape is the only copy, and the GEMM result (pixels, O) already *is* the NHWC output,
so it needs no transpose; it is handed back as an NCHW-shaped view of that memory (PyTorch's
"channels_last"). The batch goes through in slabs of about ``SLAB_BYTES`` of columns: the
9x-sized column buffer stays small enough to be reused by the allocator and to stay in cache,
instead of being page-faulted in at hundreds of MB per call.

Few output channels (the U-Net's 3-channel ``conv_out``), stride 1: there the column copy
(Kh Kw C numbers per pixel) costs more than the GEMM itself, so these convolutions skip it.
Flattened to rows (N Hp Wp, C), the padded batch already holds every patch *shifted*: the
input row under kernel offset (p, q) of padded-grid pixel r is row r + d_h p Wp + d_w q. So
one GEMM of all rows with all Kh Kw O weights followed by Kh Kw shifted row-sums gives y on the
padded grid (the rows past each image are computed and cropped; y comes out in NCHW memory,
see ``shifted_conv_forward``), and the weight gradient is Kh Kw GEMMs of shifted row blocks
with dL/dy laid on that grid ("shifted" helpers below).

At an infinite input or weight the gradients can be NaN where PyTorch's are finite: these
products meet the infinity with zeros that PyTorch never multiplies (the padded grid's extra
rows, the zeros around dL/dy), and inf * 0 is NaN. A loss that met an infinity is inf or NaN
already, and training's NaN guard stops there.
"""
from minilean import backend
from minilean.autograd import shape as shape_ops
from minilean.autograd.function import Function
from minilean.autograd.tensor import is_int
from minilean.backend import array_module

SLAB_BYTES = 2 << 20


def pair(value, name, low=0):
    """``value`` (an int, or a pair of ints, each at least ``low``) as a pair."""
    # first the forms a layer passes at every call, a pair of Python ints or one of them
    # (``type() is int`` is no bool), with no generator and no tuple made: a quarter of the
    # general form's time, which conv2d paid three times a call
    if type(value) is tuple and len(value) == 2:
        first, second = value
        if type(first) is int and type(second) is int and first >= low and second >= low:
            return value
    elif type(value) is int and value >= low:
        return value, value
    sizes = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(sizes) != 2 or not all(is_int(size) and size >= low for size in sizes):
        raise ValueError(f"{name} must be an int >= {low} or a pair of them, got {value!r}")
    return sizes


# The least each convolution size may be: a kernel, stride or dilation of 0 leaves no output
LEAST_SIZE = {"kernel_size": 1, "stride": 1, "dilation": 1, "padding": 0, "output_padding": 0}


def size_pair(value, name):
    """``pair`` for the convolution size ``name``, each at least ``LEAST_SIZE[name]``."""
    return pair(value, name, low=LEAST_SIZE[name])


def conv_padding(padding, stride):
    """conv2d's ``padding``: an int >= 0 or a pair of them, or PyTorch's strings, kept as they
    are: "valid" (no padding) and "same" (the output has the input's size; stride 1 only, as in
    PyTorch, since a stride would shrink it). Checked by the op and by the layer."""
    if not isinstance(padding, str):
        return size_pair(padding, "padding")
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same', 'valid', an int >= 0 or a pair of them, "
                         f"got {padding!r}")
    if padding == "same" and stride != (1, 1):
        raise ValueError(f"padding='same' is not supported for strided convolutions, got "
                         f"stride {stride}")
    return padding


def same_padding(kernel_size, dilation):
    """padding="same" as the (top, left) and (bottom, right) padding: d (K - 1) along each axis,
    split as PyTorch splits it, an odd one more after than before (floor(d (K - 1) / 2) before),
    so that a 2 x 2 kernel's top-left weight meets the pixel under it."""
    totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
    before = tuple(total // 2 for total in totals)
    return before, tuple(total - pad for total, pad in zip(totals, before))


def check_groups(groups, **channels):
    """A convolution's ``groups``: an int >= 1 (a bool is no count) that divides each of
    ``channels`` (name=count), checked by the ops at each call and by the layers at
    construction (they size the weight by it)."""
    if not is_int(groups) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    for name, count in channels.items():
        if count % groups:
            raise ValueError(f"groups must divide {name}={count}, got {groups!r}")


def im2col(x, kernel_size, stride, dilation):
    """The patches of a padded channels-last batch as a strided *view* (no copy).

    x: (N, Hp, Wp, *channels)  ->  (N, Ho, Wo, Kh, Kw, *channels), where
    out[n, i, j, p, q] = x[n, s_h i + d_h p, s_w j + d_w q].
    """
    xp = array_module(x)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    batch, height, width = x.shape[:3]
    out_h, out_w = output_size(height, kh, sh, dh), output_size(width, kw, sw, dw)
    s_n, s_h, s_w = x.strides[:3]
    return xp.lib.stride_tricks.as_strided(
        x, (batch, out_h, out_w, kh, kw) + x.shape[3:],
        (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw) + x.strides[3:])


def col2im(columns, stride, dilation, out):
    """Add patches back into a padded channels-last batch: the adjoint of ``im2col``.

    columns: (N, Ho, Wo, Kh, Kw, *channels) are added into out: (N, Hp, Wp, *channels), one
    strided slice per kernel offset (Kh Kw slices, each covering every output pixel).
    """
    (sh, sw), (dh, dw) = stride, dilation
    out_h, out_w, kh, kw = columns.shape[1:5]
    for p in range(kh):
        for q in range(kw):
            out[:, dh * p:dh * p + sh * (out_h - 1) + 1:sh,
                dw * q:dw * q + sw * (out_w - 1) + 1:sw] += columns[:, :, :, p, q]
    return out


def _slabs(batch, bytes_per_image):
    """Consecutive batch slices of about SLAB_BYTES of columns each."""
    step = max(1, SLAB_BYTES // max(1, bytes_per_image))
    return [slice(start, start + step) for start in range(0, batch, step)]


def _grouped_columns(x_pad, kernel_size, stride, dilation, groups):
    """im2col of one slab, copied into GEMM form: (G, n Ho Wo, Kh Kw C/G)."""
    batch, _, _, channels = x_pad.shape
    grouped = x_pad.reshape(x_pad.shape[:3] + (groups, channels // groups))  # (n, Hp, Wp, G, C/G)
    columns = im2col(grouped, kernel_size, stride, dilation)        # (n, Ho, Wo, Kh, Kw, G, C/G)
    pixels = batch * columns.shape[1] * columns.shape[2]
    # (G, n, Ho, Wo, Kh, Kw, C/G) -> (G, n Ho Wo, Kh Kw C/G): the one copy of im2col
    return columns.transpose(5, 0, 1, 2, 3, 4, 6).reshape(groups, pixels, -1)


def _weight_matrix(weight, groups):
    """Conv weight (O, C/G, Kh, Kw) as the GEMM's right factor (G, Kh Kw C/G, O/G)."""
    out_channels, group_channels, kh, kw = weight.shape
    per_group = weight.reshape(groups, out_channels // groups, group_channels, kh, kw)
    # (G, O/G, C/G, Kh, Kw) -> (G, Kh, Kw, C/G, O/G) -> (G, Kh Kw C/G, O/G)
    return per_group.transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * group_channels, -1)


def output_size(size, kernel, stride, dilation):
    """Positions of a dilated kernel in ``size`` (padding already added) at ``stride``."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def transposed_output_size(size, kernel, stride, padding, dilation, output_padding):
    """The side a transposed convolution makes of ``size``: the input side of the
    convolution it transposes (``output_padding`` picks among sides that stride rounds)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _per_group(y, groups):
    """A channels-last slab (n, Ho, Wo, O) as GEMM rows per group: (G, n Ho Wo, O/G) view."""
    return y.reshape(-1, groups, y.shape[-1] // groups).transpose(1, 0, 2)  # (G, pixels, O/G)


def _shifted_pays(channels, out_channels, stride, groups):
    """Whether the shifted-rows form beats im2col: stride 1, one group, and O <= C / 4 (the
    Kh Kw O partial sums per pixel it adds up are then few next to the Kh Kw C column
    entries it saves copying). Measured forward, batch 32 of 16x16, one thread: 2.7x faster
    at 32 -> 3, 6% at 96 -> 24; at 96 -> 32 and 64 -> 32 im2col wins, by 2% and 20%."""
    return stride == (1, 1) and groups == 1 and 4 * out_channels <= channels


def _row_shifts(padded_shape, kernel_size, dilation):
    """The row offset d_h p Wp + d_w q of every kernel offset (p, q), row-major, and the number
    of padded-grid rows L whose patches lie inside the flattened batch (N Hp Wp - last shift)."""
    (kh, kw), (dh, dw) = kernel_size, dilation
    batch, height, width = padded_shape[:3]
    shifts = [dh * p * width + dw * q for p in range(kh) for q in range(kw)]
    return shifts, batch * height * width - shifts[-1]


def shifted_conv_forward(x_pad, weight, dilation):
    """Stride-1 y = x * w without im2col: z = W rows(x_pad)^T, with W (Kh Kw O, C), then
    y_grid[:, r] = sum_{p, q} z[(p, q), :, r + shift(p, q)] on the padded grid, cropped to
    (Ho, Wo). Returned as (N, Ho, Wo, O) like ``conv_forward``, in NCHW memory: the product
    is taken with the pixels along its rows, so that each shifted sum adds O contiguous rows;
    with pixels down the columns, (N Hp Wp, Kh Kw O), each sum was a pass over runs of O
    numbers (the nine took 1.56 ms against 0.12 for (32, 32, 32, 16) -> 3, one thread)."""
    xp = array_module(x_pad)
    batch, height, width, channels = x_pad.shape
    out_channels, _, kh, kw = weight.shape
    shifts, rows = _row_shifts(x_pad.shape, (kh, kw), dilation)
    # (O, C, Kh, Kw) -> (Kh, Kw, O, C) -> (Kh Kw O, C)
    all_offsets = weight.transpose(2, 3, 0, 1).reshape(-1, channels)
    # (Kh Kw O, C) @ (C, N Hp Wp), the padded batch's rows transposed (a view), -> (Kh Kw, O,
    # N Hp Wp)
    partial = backend.matmul(all_offsets, x_pad.reshape(-1, channels).T).reshape(
        kh * kw, out_channels, -1)
    y_grid = xp.zeros((out_channels, batch * height * width), dtype=x_pad.dtype)
    for offset, shift in enumerate(shifts):
        y_grid[:, :rows] += partial[offset, :, shift:shift + rows]
    out_h = output_size(height, kh, 1, dilation[0])
    out_w = output_size(width, kw, 1, dilation[1])
    # (O, N Hp Wp) -> (O, N, Hp, Wp), cropped to the valid (Ho, Wo) corner, made contiguous as
    # (N, O, Ho, Wo) and handed back as an (N, Ho, Wo, O) view of it
    grid = y_grid.reshape(out_channels, batch, height, width)[:, :, :out_h, :out_w]
    return xp.ascontiguousarray(grid.transpose(1, 0, 2, 3)).transpose(0, 2, 3, 1)


def shifted_weight_grad(x_pad, grad_y, kernel_size, dilation):
    """Stride-1 dL/dw[:, :, p, q] = rows(x_pad)[shift(p, q):][:L]^T @ dL/dy_grid[:L], with dL/dy
    laid on the padded grid (zeros where no output pixel is): -> (O, C, Kh, Kw)."""
    xp = array_module(x_pad)
    batch, height, width, channels = x_pad.shape
    out_h, out_w, out_channels = grad_y.shape[1:]
    shifts, rows = _row_shifts(x_pad.shape, kernel_size, dilation)
    grad_grid = xp.zeros((batch, height, width, out_channels), dtype=grad_y.dtype)
    grad_grid[:, :out_h, :out_w] = grad_y
    grad_rows = grad_grid.reshape(-1, out_channels)[:rows]  # (N Hp Wp, O) -> first L rows
    x_rows = x_pad.reshape(-1, channels)  # (N, Hp, Wp, C) -> (N Hp Wp, C)
    grad_weight = xp.empty((len(shifts), channels, out_channels), dtype=x_pad.dtype)
    for offset, shift in enumerate(shifts):
        # (C, L) @ (L, O) -> (C, O): the rows of x this kernel offset meets, against dL/dy
        backend.matmul(x_rows[shift:shift + rows].T, grad_rows, out=grad_weight[offset])
    # (Kh Kw, C, O) -> (Kh, Kw, C, O) -> (O, C, Kh, Kw)
    return grad_weight.reshape(kernel_size + (channels, -1)).transpose(3, 2, 0, 1)


def conv_forward(x_pad, weight, stride, dilation, groups):
    """y = x * w on channels-last arrays: x_pad (N, Hp, Wp, C) -> y (N, Ho, Wo, O)."""
    if _shifted_pays(x_pad.shape[3], weight.shape[0], stride, groups):
        return shifted_conv_forward(x_pad, weight, dilation)
    xp = array_module(x_pad)
    batch, height, width, channels = x_pad.shape
    out_channels, _, kh, kw = weight.shape
    out_h = output_size(height, kh, stride[0], dilation[0])
    out_w = output_size(width, kw, stride[1], dilation[1])
    weight_matrix = _weight_matrix(weight, groups)
    y = xp.empty((batch, out_h, out_w, out_channels), dtype=x_pad.dtype)
    for slab in _slabs(batch, out_h * out_w * kh * kw * channels * x_pad.itemsize):
        columns = _grouped_columns(x_pad[slab], (kh, kw), stride, dilation, groups)
        backend.matmul(columns, weight_matrix, out=_per_group(y[slab], groups))
    return y


def conv_input_grad(grad_y, weight, input_size, padding, stride, dilation, groups):
    """dL/dx for dL/dy: grad_y (N, Ho, Wo, O) -> (N, H, W, C) channels-last, H, W = input_size.

    This is also the forward pass of a transposed convolution. In general it is
    col2im(dL/dy @ w^T) cropped by the padding. With stride 1 it is cheaper as a convolution
    itself: the full correlation of dL/dy (zero-padded by d (K - 1) - p) with the kernel
    flipped in space and with in/out channels swapped, which keeps the efficient GEMM shape
    (each product sums over Kh Kw O/G terms instead of O/G) and needs no scatter-add.
    """
    grad_y_pad = _adjoint_input(grad_y, weight.shape[2:], input_size, padding, stride, dilation)
    if grad_y_pad is not None:
        return conv_forward(grad_y_pad, _flipped_transpose(weight, groups), stride, dilation,
                            groups)
    xp = array_module(grad_y)
    batch, out_h, out_w, out_channels = grad_y.shape
    _, group_channels, kh, kw = weight.shape
    weight_matrix_t = _weight_matrix(weight, groups).transpose(0, 2, 1)  # (G, O/G, Kh Kw C/G)
    padded_shape = (batch,) + tuple(size + 2 * pad for size, pad in zip(input_size, padding)) \
        + (group_channels * groups,)
    grad_x = xp.zeros(padded_shape, dtype=grad_y.dtype)
    # (N, Hp, Wp, C) -> (N, Hp, Wp, G, C/G) view
    grouped_grad_x = grad_x.reshape(padded_shape[:3] + (groups, group_channels))
    for slab in _slabs(batch, out_h * out_w * kh * kw * padded_shape[3] * grad_y.itemsize):
        size = len(range(batch)[slab])
        # (G, pixels, O/G) @ (G, O/G, Kh Kw C/G) -> (G, pixels, Kh Kw C/G)
        columns = backend.matmul(_per_group(grad_y[slab], groups), weight_matrix_t)
        # (G, n, Ho, Wo, Kh, Kw, C/G) -> (n, Ho, Wo, Kh, Kw, G, C/G)
        columns = columns.reshape(groups, size, out_h, out_w, kh, kw, group_channels)
        col2im(columns.transpose(1, 2, 3, 4, 5, 0, 6), stride, dilation, grouped_grad_x[slab])
    (top, left), (height, width) = padding, input_size
    return grad_x[:, top:top + height, left:left + width]


def _adjoint_input(grad_y, kernel, input_size, padding, stride, dilation):
    """dL/dy zero-padded by d (K - 1) - p before (and to the input size after): the input of
    the flipped-kernel convolution that gives dL/dx. None where that form does not apply
    (stride > 1, or padding beyond d (K - 1))."""
    full = tuple(d * (k - 1) - pad for d, k, pad in zip(dilation, kernel, padding))
    if stride != (1, 1) or min(full) < 0:
        return None
    after = tuple(size + d * (k - 1) - out - before for size, d, k, out, before
                  in zip(input_size, dilation, kernel, grad_y.shape[1:3], full))
    return pad_nhwc(grad_y, full, after)


def conv_grads_stride1(x, grad_y, weight, padding, dilation, groups):
    """dL/dx and dL/dw of a stride-1 convolution of channels-last x (N, H, W, C) from ONE
    im2col, that of the padded dL/dy (None where ``_adjoint_input`` does not apply). dL/dx is
    the flipped-kernel convolution of ``conv_input_grad``; substituting i' = i + d p - p_h
    (and j' alike) shows that the same columns give

        dL/dw[o, c, p, q] = sum_{n, i', j'} x[n, i', j', c]
                                dy_pad[n, i' + d (Kh-1-p), j' + d (Kw-1-q), o]
                          = (X^T Cols(dy_pad))[c, (Kh-1-p, Kw-1-q, o)],

    so the columns of x (``conv_weight_grad``) are never built: one 9x copy fewer.
    Returns channels-last dL/dx (N, H, W, C) and dL/dw (O, C/G, Kh, Kw).
    """
    xp = array_module(grad_y)
    out_channels, group_channels, kh, kw = weight.shape
    batch, height, width, _ = x.shape
    grad_y_pad = _adjoint_input(grad_y, (kh, kw), (height, width), padding, (1, 1), dilation)
    if grad_y_pad is None:
        return None
    adjoint_matrix = _weight_matrix(_flipped_transpose(weight, groups), groups)
    grad_x = xp.empty(x.shape, dtype=grad_y.dtype)
    grad_matrix = xp.zeros((groups, group_channels, kh * kw * out_channels // groups),
                           dtype=grad_y.dtype)
    for slab in _slabs(batch, height * width * kh * kw * out_channels * grad_y.itemsize):
        columns = _grouped_columns(grad_y_pad[slab], (kh, kw), (1, 1), dilation, groups)
        backend.matmul(columns, adjoint_matrix, out=_per_group(grad_x[slab], groups))
        # (G, n H W, C/G) -> (G, C/G, n H W) @ (G, n H W, Kh Kw O/G)
        grad_matrix += backend.matmul(_per_group(x[slab], groups).transpose(0, 2, 1), columns)
    # (G, C/G, Kh, Kw, O/G) -> (G, O/G, C/G, Kh, Kw) -> (O, C/G, Kh, Kw), kernel axes reversed
    per_group = grad_matrix.reshape(groups, group_channels, kh, kw, out_channels // groups)
    grad_weight = per_group.transpose(0, 4, 1, 2, 3).reshape(weight.shape)
    return grad_x, grad_weight[:, :, ::-1, ::-1]


def _flipped_transpose(weight, groups):
    """(O, C/G, Kh, Kw) -> (C, O/G, Kh, Kw) flipped in space: the kernel of the adjoint."""
    out_channels, group_channels, kh, kw = weight.shape
    per_group = weight.reshape(groups, out_channels // groups, group_channels, kh, kw)
    # (G, O/G, C/G, Kh, Kw) -> (G, C/G, O/G, Kh, Kw) -> (C, O/G, Kh, Kw), reversed kernel axes
    swapped = per_group.transpose(0, 2, 1, 3, 4).reshape(groups * group_channels, -1, kh, kw)
    return swapped[:, :, ::-1, ::-1]


def conv_weight_grad(x_pad, grad_y, kernel_size, stride, dilation, groups):
    """dL/dw = columns^T @ dL/dy, summed over the batch: -> (O, C/G, Kh, Kw)."""
    if _shifted_pays(x_pad.shape[3], grad_y.shape[3], stride, groups):
        return shifted_weight_grad(x_pad, grad_y, kernel_size, dilation)
    xp = array_module(x_pad)
    batch, _, _, channels = x_pad.shape
    kh, kw = kernel_size
    out_channels = grad_y.shape[3]
    grad_matrix = xp.zeros((groups, kh * kw * channels // groups, out_channels // groups),
                           dtype=x_pad.dtype)
    pixels = grad_y.shape[1] * grad_y.shape[2]
    for slab in _slabs(batch, pixels * kh * kw * channels * x_pad.itemsize):
        columns = _grouped_columns(x_pad[slab], kernel_size, stride, dilation, groups)
        # (G, pixels, Kh Kw C/G) -> (G, Kh Kw C/G, pixels); @ (G, pixels, O/G)
        grad_matrix += backend.matmul(columns.transpose(0, 2, 1),
                                      _per_group(grad_y[slab], groups))
    # (G, Kh, Kw, C/G, O/G) -> (G, O/G, C/G, Kh, Kw) -> (O, C/G, Kh, Kw)
    per_group = grad_matrix.reshape(groups, kh, kw, channels // groups, out_channels // groups)
    return per_group.transpose(0, 4, 3, 1, 2).reshape(out_channels, channels // groups, kh, kw)


def pad_nhwc(x, before, after, value=0):
    """Pad the two spatial axes of a channels-last (N, H, W, C) array with ``value``:
    ``before`` = (top, left), ``after`` = (bottom, right). A free view without padding."""
    if not any(before) and not any(after):
        return x
    batch, height, width, channels = x.shape
    (top, left), (bottom, right) = before, after
    padded = array_module(x).full((batch, top + height + bottom, left + width + right, channels),
                                  value, dtype=x.dtype)
    padded[:, top:top + height, left:left + width] = x
    return padded


def to_padded_nhwc(x, padding, value=0):
    """NCHW -> channels-last (N, H + 2 ph, W + 2 pw, C) padded with ``value``."""
    return pad_nhwc(x.transpose(0, 2, 3, 1), padding, padding, value)  # (N, H, W, C) view first


def crop_to_nchw(y_pad, padding, size):
    """Cut ``padding`` off the top/left of a channels-last array, keep ``size``; NCHW view."""
    (top, left), (height, width) = padding, size
    return y_pad[:, top:top + height, left:left + width].transpose(0, 3, 1, 2)  # (N, C, H, W)


def pixel_sums(y):
    """sum_{n, i, j} y[n, i, j, :] of a channels-last array as one vector-matrix product
    (NumPy's sum over three leading axes is about ten times slower)."""
    xp = array_module(y)
    rows = y.reshape(-1, y.shape[-1])  # (N, H, W, C) -> (N H W, C)
    return backend.matmul(xp.ones(rows.shape[0], dtype=y.dtype), rows)


def channels_last(y):
    """An NCHW array as contiguous channels-last (N, H, W, C); free for our own outputs
    (a copy for the shifted form's, which lie in NCHW memory)."""
    return array_module(y).ascontiguousarray(y.transpose(0, 2, 3, 1))


class Conv2d(Function):
    """y = conv(x, w) + b  (cross-correlation, NCHW);  with the column matrix X of x,

        Y = X W            dL/dW = X^T dL/dY     dL/dX = dL/dY W^T  (then col2im)
        dL/db[o] = sum_{n, i, j} dL/dy[n, o, i, j].

    At stride 1, when both gradients are needed and the padding is at most d (K - 1), both
    come from the columns of the padded dL/dy alone (``conv_grads_stride1``); x itself is
    saved, not its padded copy.
    """
    fresh_grads = True

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                groups=1):
        x_pad = to_padded_nhwc(x, padding)
        y = conv_forward(x_pad, weight, stride, dilation, groups)
        if bias is not None:
            y += bias
        if ctx.recording:
            ctx.x, ctx.weight = x, weight
            ctx.params = stride, padding, dilation, groups
        # (N, O, Ho, Wo) view: of channels-last memory, or of NCHW memory from the shifted form
        return y.transpose(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        stride, padding, dilation, groups = ctx.params
        need_x, need_weight = ctx.needs_input_grad[:2]
        grad_y = channels_last(grad)
        grad_x = grad_weight = grad_bias = None
        if need_x and need_weight and stride == (1, 1):
            x_nhwc = ctx.x.transpose(0, 2, 3, 1)  # (N, H, W, C) view
            grad_x, grad_weight = conv_grads_stride1(x_nhwc, grad_y, ctx.weight, padding,
                                                     dilation, groups) or (None, None)
        if need_x and grad_x is None:
            grad_x = conv_input_grad(grad_y, ctx.weight, ctx.x.shape[2:], padding, stride,
                                     dilation, groups)
        if need_weight and grad_weight is None:
            grad_weight = conv_weight_grad(to_padded_nhwc(ctx.x, padding), grad_y,
                                           ctx.weight.shape[2:], stride, dilation, groups)
        if grad_x is not None:
            grad_x = grad_x.transpose(0, 3, 1, 2)  # (N, C, H, W) view
        if len(ctx.needs_input_grad) == 3 and ctx.needs_input_grad[2]:
            grad_bias = pixel_sums(grad_y)
        return grad_x, grad_weight, grad_bias


class ConvTranspose2d(Function):
    """y = conv_transpose(x, w) + b: the input-gradient map of conv2d applied to x, so

        y_pad = col2im(X W^T)     dL/dx = conv2d(dL/dy_pad, w)     dL/dw = conv weight-grad
        with the roles of input and output exchanged:  dL/dw = Cols(dL/dy_pad)^T X.

    w has shape (C_in, C_out/G, Kh, Kw), the conv2d weight of the convolution it transposes.
    """
    fresh_grads = True

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                groups=1, dilation=(1, 1)):
        x_nhwc = channels_last(x)
        out_size = tuple(map(transposed_output_size, x_nhwc.shape[1:3], weight.shape[2:],
                             stride, padding, dilation, output_padding))
        y = conv_input_grad(x_nhwc, weight, out_size, padding, stride, dilation, groups)
        if bias is not None:
            y += bias
        y = y.transpose(0, 3, 1, 2)  # (N, C_out, H_out, W_out) view
        if ctx.recording:
            ctx.x_nhwc, ctx.weight = x_nhwc, weight
            ctx.params = stride, padding, output_padding, groups, dilation
        return y

    @staticmethod
    def backward(ctx, grad):
        stride, padding, output_padding, groups, dilation = ctx.params
        need_x, need_weight = ctx.needs_input_grad[:2]
        # The rows/columns after the last kernel footprint (output_padding) received nothing
        # from x, so their gradient is dropped; then conv2d maps back to exactly x's size.
        used = tuple((size - 1) * s + d * (k - 1) + 1 for size, s, d, k
                     in zip(ctx.x_nhwc.shape[1:3], stride, dilation, ctx.weight.shape[2:]))
        grad_y_pad = to_padded_nhwc(grad, padding)[:, :used[0], :used[1]]
        grad_x = grad_weight = grad_bias = None
        if need_x:
            grad_x = conv_forward(grad_y_pad, ctx.weight, stride, dilation, groups)
            grad_x = grad_x.transpose(0, 3, 1, 2)  # (N, C_in, H, W) view
        if need_weight:
            grad_weight = conv_weight_grad(grad_y_pad, ctx.x_nhwc, ctx.weight.shape[2:], stride,
                                           dilation, groups)
        if len(ctx.needs_input_grad) == 3 and ctx.needs_input_grad[2]:
            # ``grad`` comes in the caller's layout, not ours: NumPy's sum reads NCHW as it
            # lies (4x faster there than pixel_sums after a copy to channels-last)
            grad_bias = grad.sum(axis=(0, 2, 3))
        return grad_x, grad_weight, grad_bias


# --- the functional forms (PyTorch's names), with the shape checks -------------------------

def _check_4d(name, x, weight):
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"{name} needs a 4-d input (N, C, H, W) and a 4-d weight, "
                         f"got input shape {x.shape} and weight shape {weight.shape}")


def _check_bias(name, bias, out_channels):
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"{name}: bias shape {bias.shape} does not match the "
                         f"{out_channels} output channels")


def _check_positive(name, size):
    if min(size) < 1:
        raise ValueError(f"{name}: output size {size} is empty; the input is too small for "
                         f"this kernel, padding, stride and dilation")


def same_dtype(x, weight):
    """x and weight in their product's dtype under the binary ops' rule (an integer operand
    takes the other's float dtype; float32 with float64 is float64). The products write into
    an output of x's dtype: an integer image failed there with a NumPy casting error, and a
    float64 weight was rounded to float32. The conversion is differentiable (``Tensor.to``)."""
    if x.dtype == weight.dtype or (x.dtype.kind != "f" and weight.dtype.kind != "f"):
        return x, weight
    dtype = x.xp.result_type(*(t.dtype for t in (x, weight) if t.dtype.kind == "f"))
    return x.to(dtype=dtype), weight.to(dtype=dtype)


def _no_input_channels(x, weight, bias, out_size):
    """PyTorch's conv2d of an input with no channels (its convolution's special case): an empty
    (N, 0, Ho, Wo), no output channels either, the bias unused, and gradients zero (empty for
    x and the weight). The GEMM's reshapes failed in NumPy's words. Built from sums over
    nothing (0) so that x, the weight and the bias stay in the graph."""
    nothing = x.sum() + weight.sum()
    if bias is not None:
        nothing = nothing + bias[:0].sum().to(dtype=nothing.dtype)
    return nothing.reshape(1, 1, 1, 1).expand(x.shape[0], 0, *out_size)  # (N, 0, Ho, Wo)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d cross-correlation of x (N, C, H, W) with weight (O, C/groups, Kh, Kw), plus bias (O,).

    ``padding="valid"`` is 0; ``padding="same"`` (stride 1) pads each axis by d (K - 1) in all,
    floor(d (K - 1) / 2) before and the rest after, as PyTorch does, so y has x's size. Where
    the two differ (an even kernel with an odd dilation) the convolution's padding, the same on
    both sides, cannot say it: the one extra row and column go onto x first with ``pad``,
    y = conv(pad(x, after - before), w) padded by ``before``, and dL/dx is dL/dpad(x) with that
    row and column cropped off (``pad``'s backward).
    """
    stride, dilation = size_pair(stride, "stride"), size_pair(dilation, "dilation")
    padding = conv_padding(padding, stride)
    _check_4d("conv2d", x, weight)
    x, weight = same_dtype(x, weight)
    if type(groups) is not int or groups != 1:  # one group divides every count
        check_groups(groups, in_channels=x.shape[1], out_channels=weight.shape[0])
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels but weight expects "
                         f"{weight.shape[1] * groups} (weight.shape[1]={weight.shape[1]} "
                         f"x groups={groups})")
    _check_bias("conv2d", bias, weight.shape[0])
    if weight.shape[0] == 0:  # the GEMM's reshapes failed in NumPy's words; PyTorch refuses it
        raise ValueError(f"conv2d: weight of shape {weight.shape} has no output channels")
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        padding, after = same_padding(weight.shape[2:], dilation)
        if after != padding:  # one more after: onto x, (left, right, top, bottom) as PyTorch's
            x = shape_ops.pad(x, (0, after[1] - padding[1], 0, after[0] - padding[0]))
    (height, width), (kernel_h, kernel_w) = x.shape[2:], weight.shape[2:]
    out_size = (output_size(height + 2 * padding[0], kernel_h, stride[0], dilation[0]),
                output_size(width + 2 * padding[1], kernel_w, stride[1], dilation[1]))
    _check_positive("conv2d", out_size)
    if x.shape[1] == 0:
        return _no_input_channels(x, weight, bias, out_size)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out/groups, Kh, Kw):
    the gradient of conv2d with respect to its input, applied to x; output side
    (H - 1) stride - 2 padding + dilation (K - 1) + output_padding + 1."""
    stride, padding = size_pair(stride, "stride"), size_pair(padding, "padding")
    output_padding = size_pair(output_padding, "output_padding")
    dilation = size_pair(dilation, "dilation")
    _check_4d("conv_transpose2d", x, weight)
    x, weight = same_dtype(x, weight)
    # the output channels, weight.shape[1] * groups, are a multiple of groups by construction
    check_groups(groups, in_channels=x.shape[1])
    if x.shape[1] != weight.shape[0]:
        raise ValueError(f"conv_transpose2d: input has {x.shape[1]} channels but weight "
                         f"expects {weight.shape[0]} (weight.shape[0])")
    if 0 in weight.shape[:2]:  # the GEMM's reshapes failed in NumPy's words; PyTorch fails too
        raise ValueError(f"conv_transpose2d: weight of shape {weight.shape} has no input or no "
                         f"output channels")
    for extra, s, d in zip(output_padding, stride, dilation):
        if not 0 <= extra < max(s, d):
            raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be "
                             f"smaller than stride {stride} or dilation {dilation}")
    _check_bias("conv_transpose2d", bias, weight.shape[1] * groups)
    _check_positive("conv_transpose2d", tuple(map(
        transposed_output_size, x.shape[2:], weight.shape[2:], stride, padding, dilation,
        output_padding)))
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return ConvTranspose2d.apply(*inputs, stride=stride, padding=padding,
                                 output_padding=output_padding, groups=groups, dilation=dilation)
