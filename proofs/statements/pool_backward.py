"""Pooling and resampling: avg_pool2d, max_pool2d and nearest interpolate (the U-Net's
Upsample), their backward against an mpmath vector-Jacobian product.

Hypothesis draws x (N, C, H, W) with a window (kernel 1..3 per axis, stride the kernel's or
1..3, padding up to half the kernel) or integer scale factors 1..3, and a seed for the upstream
gradient g. The reference J^T g is read off each op's definition:

* avg_pool2d: y[n, c, i, j] = (1 / (Kh Kw)) sum_{p, q} x_pad[n, c, s i + p, s j + q], the zero
  padding counted in the mean (PyTorch's count_include_pad=True): dx at a position is the sum
  of g / (Kh Kw) over the windows that hold it;
* max_pool2d: y = the maximum of each window, padded with -inf (which is never a window's
  maximum: padding at most half the kernel leaves an element of x in every window). Where the
  maximum is attained once, dy/dx is the one-hot at the maximiser. On a tie the max is not
  differentiable, and the engine picks one subgradient, the one-hot at the *first* maximiser
  in the window's row-major (p, q) order (PyTorch's max_pool2d does the same; minilean's
  ``max``/amax instead shares g equally among the ties). The reference states exactly that
  choice, comparing the exact values; overlapping windows add;
* interpolate (nearest, integer scales): y[n, c, i, j] = x[n, c, i // s_h, j // s_w], so dx
  is the sum of g over each s_h x s_w block.

Every gradient entry is thus a sum of k exact terms (g, or g / (Kh Kw)), added into 0 (col2im's
one slice per kernel offset; NumPy's block sums, in any order): k - 1 roundings, plus for
avg_pool2d the division g / (Kh Kw), one more; the bound is gamma_m sum |terms| (0 where no
window holds the position: exactly 0) plus a smallest subnormal per rounding.
"""
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.gradients import backward_name, check_gradient, upstream
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, mp_array, real_array, underflow

POOL = "minilean.autograd.pool"
TIE_GRID = (-1.0, 0.0, 1.0)  # a second x for max_pool2d on every example: windows with ties


@st.composite
def _pool_inputs(draw, ties=False):
    """x (N, C, H, W), N, C = 1..2, kernel 1..3 per axis, stride None (the kernel) or 1..3 per
    axis, padding 0..K//2 per axis, each side from the least that leaves an output to two more;
    with ``ties`` also tied, an x of the same shape with values from ``TIE_GRID``."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + tuple(
        draw(st.integers(least, least + 2))
        for least in (max(1, k - 2 * pad) for k, pad in zip(kernel, padding)))
    inputs = {"x": real_array(draw, shape, -4, 4), "kernel": kernel, "stride": stride,
              "padding": padding, "seed": draw(st.integers(0, 2 ** 16))}
    if ties:
        size = math.prod(shape)
        inputs["tied"] = numpy.asarray(draw(st.lists(st.sampled_from(TIE_GRID), min_size=size,
                                                     max_size=size))).reshape(shape)
    return inputs


def _windows(x_shape, kernel, stride, padding):
    """Each output position (n, c, i, j) with the positions of x its window holds, in the
    window's row-major (p, q) order: x_pad[s i + p, s j + q] is x[s i + p - pad_h, ...]."""
    (kh, kw), (pad_h, pad_w) = kernel, padding
    (sh, sw) = stride or kernel
    batch, channels, height, width = x_shape
    out_h, out_w = (height + 2 * pad_h - kh) // sh + 1, (width + 2 * pad_w - kw) // sw + 1
    for n, c, i, j in numpy.ndindex(batch, channels, out_h, out_w):
        held = [(n, c, sh * i + p - pad_h, sw * j + q - pad_w) for p, q in numpy.ndindex(kh, kw)]
        yield (n, c, i, j), [at for at in held if 0 <= at[2] < height and 0 <= at[3] < width]


def _scatter_reference(x_shape, g, picks, scale=1):
    """dx of y[b] = scale sum of x[a] over the (a, b) in ``picks``: per position of x, the sum
    of scale g[b], the sum of |terms| and how many terms."""
    g = mp_array(g)
    dx, terms = (numpy.full(x_shape, mpmath.mpf(0), dtype=object) for _ in range(2))
    count = numpy.zeros(x_shape, dtype=int)
    for at_x, at_y in picks:
        share = g[at_y] * scale
        dx[at_x] += share
        terms[at_x] += abs(share)
        count[at_x] += 1
    return dx, terms, count


def _check_scatter(check, call, x, g, reference, extra, what):
    """The gradient of ``call`` at x, in both dtypes, within gamma_m |terms| of ``reference``
    (dx, |terms|, count): m = count - 1 additions, plus ``extra`` roundings of each term."""
    dx, terms, count = (list(a.reshape(-1)) for a in reference)
    roundings = [k - 1 + extra if k else 0 for k in count]
    for dtype in ENGINE_DTYPES:
        tensor = engine(x, dtype, requires_grad=True)
        call(tensor).backward(engine(g, dtype))
        check_gradient(check, tensor, dx, [gamma(m, dtype) * t + underflow(m, dtype)
                                           for m, t in zip(roundings, terms)],
                       f"{what} ({dtype.__name__})")


def _output_shape(x, kernel, stride, padding):
    """The pooled shape (N, C, Ho, Wo)."""
    return x.shape[:2] + tuple((side + 2 * pad - k) // s + 1 for side, k, s, pad in zip(
        x.shape[2:], kernel, stride or kernel, padding))


@statement(backward_name("avg_pool2d"), about=(f"{POOL}.avg_pool2d",), given=_pool_inputs(),
           # pinned: one 1 x 3 window, where g / 3 and g * fl(1/3) round apart (seed 3's g)
           examples=[{"x": numpy.asarray([[[[0.5, -1.0, 2.0]]]]), "kernel": (1, 3),
                      "stride": None, "padding": (0, 0), "seed": 3}])
def avg_pool2d_backward_matches_vjp(check, x, kernel, stride, padding, seed):
    """avg_pool2d's backward (zero padding counted in the mean): dx = sum over the windows
    holding x of g / (Kh Kw); bound gamma_k sum |g| / (Kh Kw) for k windows (the division,
    then k - 1 additions), 0 where no window reaches."""
    from minilean.nn import functional as F
    g = upstream(seed, _output_shape(x, kernel, stride, padding))
    picks = ((at_x, at_y) for at_y, held in _windows(x.shape, kernel, stride, padding)
             for at_x in held)
    reference = _scatter_reference(x.shape, g, picks, 1 / mpmath.mpf(kernel[0] * kernel[1]))
    _check_scatter(check, lambda t: F.avg_pool2d(t, kernel, stride, padding), x, g, reference,
                   1, f"avg_pool2d {kernel} stride {stride} padding {padding}")


def _first_maximiser(x, held):
    """The first of the positions ``held`` (row-major in the window) where x is largest."""
    best = held[0]
    for at in held[1:]:
        if x[at] > x[best]:  # strictly: a tie keeps the earlier position
            best = at
    return best


@statement(backward_name("max_pool2d"), about=(f"{POOL}.max_pool2d",),
           given=_pool_inputs(ties=True),
           # pinned: one 2 x 2 window whose maximum 1 is tied between its first two positions
           examples=[{"x": numpy.asarray([[[[0.5, -1.0], [2.0, 1.5]]]]),
                      "tied": numpy.asarray([[[[1.0, 1.0], [0.0, -1.0]]]]), "kernel": (2, 2),
                      "stride": None, "padding": (0, 0), "seed": 1}])
def max_pool2d_backward_matches_vjp(check, x, tied, kernel, stride, padding, seed):
    """max_pool2d's backward: g to each window's maximiser, on ties to the first in row-major
    window order (a subgradient, PyTorch's choice), summed over windows; bound
    gamma_{k-1} sum |g| for a position k windows pick."""
    from minilean.nn import functional as F
    g = upstream(seed, _output_shape(x, kernel, stride, padding))
    for values in (x, tied):  # every example: reals, and values from three (windows tie)
        exact = mp_array(values)
        picks = ((_first_maximiser(exact, held), at_y)
                 for at_y, held in _windows(x.shape, kernel, stride, padding))
        _check_scatter(check, lambda t: F.max_pool2d(t, kernel, stride, padding), values, g,
                       _scatter_reference(x.shape, g, picks), 0,
                       f"max_pool2d {kernel} stride {stride} padding {padding}")


@st.composite
def _upsample_inputs(draw):
    """x (N, C, H, W), N, C = 1..2, H, W = 1..3, and a scale factor: an int 1..3 (the U-Net's
    is 2) or a pair of them."""
    shape = tuple(draw(st.integers(1, 2)) for _ in range(2)) + tuple(
        draw(st.integers(1, 3)) for _ in range(2))
    scale = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return {"x": real_array(draw, shape, -4, 4), "scale": scale,
            "seed": draw(st.integers(0, 2 ** 16))}


@statement(backward_name("interpolate_nearest"), about=(f"{POOL}.interpolate",),
           given=_upsample_inputs(),
           # pinned: x of 2 x 3 (with one row and one column, tile and repeat agree)
           examples=[{"x": numpy.asarray([[[[0.5, -1.0, 2.0], [1.5, -0.25, 3.0]]]]),
                      "scale": (2, 3), "seed": 1}])
def interpolate_nearest_backward_matches_vjp(check, x, scale, seed):
    """nearest interpolate's backward, y[i, j] = x[i // s_h, j // s_w]: dx = the sum of g over
    each s_h x s_w block; bound gamma_{s_h s_w - 1} sum |g|."""
    from minilean.nn import functional as F
    for factor in (2, scale):  # every example: the U-Net's 2, and the drawn factor
        scale_h, scale_w = factor if isinstance(factor, tuple) else (factor, factor)
        batch, channels, height, width = x.shape
        g = upstream(seed, (batch, channels, height * scale_h, width * scale_w))
        picks = (((n, c, i // scale_h, j // scale_w), (n, c, i, j))
                 for n, c, i, j in numpy.ndindex(g.shape))
        _check_scatter(check, lambda t: F.interpolate(t, scale_factor=factor), x, g,
                       _scatter_reference(x.shape, g, picks), 0, f"interpolate x{factor}")


# --- mutants: broken backwards of these ops -------------------------------------------------

@mutant("avg_pool2d backward without the 1/(Kh Kw)", f"{POOL}.AvgPool2d.backward",
        caught_by=[backward_name("avg_pool2d")])
def avg_pool_backward_summing(original):
    """AvgPool2d.backward hands each window's whole dy to every position in it, the gradient
    of a sum pool: the mean's 1 / (Kh Kw) forgotten."""
    def backward(ctx, grad):
        kh, kw = ctx.params[0]
        return original(ctx, grad) * (kh * kw)
    return backward


@mutant("avg_pool2d backward scaling by a rounded 1/(Kh Kw)", f"{POOL}.AvgPool2d.backward",
        caught_by=[backward_name("avg_pool2d")])
def avg_pool_backward_reciprocal(original):
    """AvgPool2d.backward multiplies dy by 1 / (Kh Kw), itself rounded, where it divides: two
    roundings per share where the bound counts one (a slip where Kh Kw is 3, 6 or 9)."""
    def backward(ctx, grad):
        from minilean.autograd.conv import channels_last, col2im, crop_to_nchw
        (kh, kw), stride, padding = ctx.params
        share = channels_last(grad) * (1 / (kh * kw))  # (N, Ho, Wo, C)
        columns = numpy.broadcast_to(share[:, :, :, None, None, :], share.shape[:3] + (kh, kw)
                                     + share.shape[3:])  # (N, Ho, Wo, Kh, Kw, C)
        grad_x = col2im(columns, stride, (1, 1), numpy.zeros(ctx.padded_shape, dtype=grad.dtype))
        return crop_to_nchw(grad_x, padding, ctx.input_size)
    return backward


@mutant("max_pool2d gradient to the last maximum on ties", f"{POOL}.MaxPool2d.forward",
        caught_by=[backward_name("max_pool2d")])
def max_pool_last_maximiser(original):
    """MaxPool2d saves the *last* maximiser of each window (argmax of the reversed window), so
    on a tie g goes to another subgradient's vertex than the one its docstring and PyTorch
    state."""
    def forward(ctx, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
        from minilean.autograd.conv import im2col, to_padded_nhwc
        out = original(ctx, x, kernel_size, stride, padding)
        if ctx.recording:
            x_pad = to_padded_nhwc(x, padding, value=-numpy.inf)
            windows = im2col(x_pad, kernel_size, stride, (1, 1))  # (N, Ho, Wo, Kh, Kw, C)
            # (N, Ho, Wo, Kh, Kw, C) -> (N, Ho, Wo, Kh Kw, C), reversed along the window
            flat = windows.reshape(windows.shape[:3] + (-1,) + windows.shape[5:])[:, :, :, ::-1]
            ctx.argmax = flat.shape[3] - 1 - flat.argmax(axis=3)
        return out
    return forward


@mutant("nearest upsampling backward summing the tiled layout", f"{POOL}.UpsampleNearest.backward",
        caught_by=[backward_name("interpolate_nearest")])
def upsample_backward_tiled(original):
    """UpsampleNearest.backward sums dy over the positions of numpy.tile's layout, x[i mod H],
    instead of numpy.repeat's, x[i // s]: the blocks read as (s_h, H) where they are (H, s_h)."""
    def backward(ctx, grad):
        scale_h, scale_w = ctx.scale
        batch, channels, out_height, out_width = grad.shape
        # (N, C, H s_h, W s_w) -> (N, C, s_h, H, s_w, W), summed over the copies
        tiles = grad.reshape(batch, channels, scale_h, out_height // scale_h, scale_w,
                             out_width // scale_w)
        return tiles.sum(axis=(2, 4))
    return backward
