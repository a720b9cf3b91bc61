"""The layers the models train through: their backward agrees with an mpmath vector-Jacobian
product. layer_norm (the MAE's transformer blocks), group_norm with and without its fused SiLU
(the U-Net's blocks), both also without weight and bias (elementwise_affine=False,
affine=False: the engine's own branch, no weight to scale dy, r alone as GroupNorm's scale),
conv2d (every convolutional network; also with a weight that needs no gradient, whose dx
takes paths of its own), conv_transpose2d (the autoencoder's, VAE's and VQ-VAE's decoders),
embedding (with the VQ-VAE's codebook lookup, quantize) and normalize_patches (the
MAE's per-patch normalisation; ``mae_loss`` applies it to targets, which carry no gradient, so
its backward, the composition of Sub, Div, Sqrt, Var and Mean, is checked for the uses that
differentiate through it).

Hypothesis draws small float32-representable inputs and a seed for the upstream gradient g. The
reference J^T g is computed at 50 digits from the op's mathematical form, not from the
derivative formula its backward uses: for the norms, standardisation's Jacobian written out
entry by entry, dxhat_i/dx_j = r (delta_ij - 1/n - xhat_i xhat_j / n); for conv2d and
conv_transpose2d, the adjoint sums of their definitions; for embedding, the sum of g over
each row's picks. The engine's gradients, in float64 and in float32, come back in each input's
dtype and shape and within:

* the norms and normalize_patches: a running error bound (``proofs.running_error``) carried
  through the engine's own operations, forward statistics and then the backward's closed form,
  in its order. x - mean(x) carries an absolute error ~ u |x| that r = 1/sqrt(var + eps), up
  to 1/sqrt(eps), magnifies; a bound on the formula's terms alone would not hold it. The
  replay's exact value must equal the reference too, at 50 digits (within 10^-45 of the bound
  over u): the bound is carried on the very formula the engine computes;
* the convolutions and embedding: sums of products of exact inputs, gamma_m sum |terms| where
  m bounds the roundings on one path: a product, then additions, the first into 0 exact.
Each bound adds a smallest subnormal per rounding (gradual underflow).
"""
import itertools
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.gradients import backward_name, check_against_replay, check_gradient, upstream
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, mp_array, mp_tolerance, real_array,
                             underflow, unit_roundoff)
from proofs.running_error import Carried

NORM = "minilean.autograd.norm"
CONV = "minilean.autograd.conv"
EPS = mpmath.mpf(1e-5)  # layer_norm's and group_norm's default eps, which the models keep
PATCH_EPS = mpmath.mpf(1e-6)  # normalize_patches' default


# --- standardisation: the reference and the engine's statistics -------------------------------

def _standardized(group, eps):
    """(xhat, r) of a group of mpf: xhat_i = (x_i - mean) r,
    r = 1/sqrt(mean((x - mean)^2) + eps)."""
    mean = mpmath.fsum(group) / len(group)
    centered = [v - mean for v in group]
    r = 1 / mpmath.sqrt(mpmath.fsum(c * c for c in centered) / len(group) + eps)
    return [c * r for c in centered], r


def _standardization_vjp(xhat, r, gxhat):
    """sum_i gxhat_i dxhat_i/dx_j for every j, with the Jacobian entry written out,
    dxhat_i/dx_j = r (delta_ij - 1/n - xhat_i xhat_j / n): the mean's share 1/n, and the
    variance's through dr/dx_j = -r^3 (x_j - mean) / n."""
    n = len(xhat)
    return [r * mpmath.fsum(gi * ((i == j) - mpmath.mpf(1) / n - xi * xj / n)
                            for i, (gi, xi) in enumerate(zip(gxhat, xhat)))
            for j, xj in enumerate(xhat)]


def _replayed_statistics(group, eps):
    """The fused norms' forward on a group of Carried inputs, as ``_standardize`` and
    GroupNorm.forward compute it: (centred values, r = 1 / sqrt(mean of squares + eps)).
    Centred as the engine centres, (x_i - x_1) - mean(x - x_1) (``Carried.centered``): the
    replay of x_i - mean(x) it had before bounded none of the shift's roundings u |x_i - x_1|,
    up to 2 max |x|, and layer_norm's float32 value was 1.07 times over it (pinned in
    layerNorm_value)."""
    centered = Carried.centered(group)
    return centered, 1 / (Carried.mean([c * c for c in centered]) + eps).sqrt()


def _affine_inputs(draw, shape):
    """weight and bias of ``shape`` in [-2, 2] (``_affine_forms`` passes them)."""
    return {name: real_array(draw, shape, -2, 2) for name in ("weight", "bias")}


def _affine_forms(weight, bias):
    """(weight, bias) as the statements pass them on every example: both, as the models'
    layers do, and either alone (None for the other), which the functional forms also take:
    each gradient must still reach its own input."""
    return [(weight, bias), (weight, None), (None, bias)]


def _affine_tensors(weight, bias, dtype):
    """Engine tensors needing a gradient for the affine inputs passed, None for the other."""
    return [None if a is None else engine(a, dtype, requires_grad=True) for a in (weight, bias)]


# --- layer_norm -----------------------------------------------------------------------------

@st.composite
def _layer_norm_inputs(draw, affine=True):
    """x (B, R, n), B = 1..2, R = 1..3, n = 2..5 (the MAE's (batch, tokens, width)),
    normalised over the last axis, as the MAE does, or the last two (n or R n elements
    together; one alone is always xhat = 0), and with ``affine`` weight and bias of that
    normalized_shape."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(2, 5)))
    normalized_shape = shape[-draw(st.integers(1, 2)):]
    inputs = {"x": real_array(draw, shape, -4, 4), "normalized_shape": normalized_shape,
              "seed": draw(st.integers(0, 2 ** 16))}
    if affine:
        inputs.update(_affine_inputs(draw, normalized_shape))
    return inputs


def _pinned_layer_norm(affine=True):
    """A pinned example: x (1, 2, 3) normalised over its last two axes, whose mean and
    variance a mean over the last axis alone would not give."""
    inputs = {"x": numpy.asarray([[[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]]]),
              "normalized_shape": (2, 3), "seed": 1}
    if affine:
        inputs.update(weight=numpy.asarray([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]),
                      bias=numpy.asarray([[0.25, 1.0, -0.5], [-2.0, 0.75, 0.125]]))
    return inputs


def _by_group(values, group_size):
    """x or g as rows of the elements normalised together: (groups, size)."""
    return values.reshape(-1, group_size)


def _layer_norm_reference(x, weight, g, normalized_shape):
    """dx (in x's order), dw, db (flat) of sum g * (w xhat + b), xhat standardised over each
    group of the last len(normalized_shape) axes (w = 1 for ``weight`` None: no affine)."""
    size = math.prod(normalized_shape)
    weight = mp_array(numpy.ones(size) if weight is None else weight).reshape(-1)
    x, g = (_by_group(mp_array(a), size) for a in (x, g))
    dx, xhats = [], []
    for group, grad in zip(x, g):
        xhat, r = _standardized(list(group), EPS)
        dx += _standardization_vjp(xhat, r, list(grad * weight))
        xhats.append(xhat)
    dw = (g * numpy.asarray(xhats, dtype=object)).sum(axis=0)
    return dx, list(dw), list(g.sum(axis=0))


def _layer_norm_replay(x, weight, g, normalized_shape, dtype):
    """LayerNorm's forward statistics and backward, in its order: dx = r ((gxhat -
    mean(gxhat)) - xhat mean(gxhat xhat)), gxhat = g w (g itself for ``weight`` None); dw and
    db summed over the groups."""
    size = math.prod(normalized_shape)
    x, g = (_by_group(Carried.array(a, dtype), size) for a in (x, g))
    weight = None if weight is None else Carried.array(weight, dtype).reshape(-1)
    eps = Carried.constant(EPS, dtype)
    dx, products = [], []
    for group, grad in zip(x, g):
        centered, r = _replayed_statistics(list(group), eps)
        xhat = [c * r for c in centered]
        gxhat = list(grad if weight is None else grad * weight)
        mean_g = Carried.mean(gxhat)
        mean_gx = Carried.mean([a * b for a, b in zip(gxhat, xhat)])
        dx += [r * ((a - mean_g) - b * mean_gx) for a, b in zip(gxhat, xhat)]
        products.append([gi * b for gi, b in zip(grad, xhat)])
    return (dx, [Carried.total(column) for column in zip(*products)],
            [Carried.total(column) for column in zip(*g)])


@statement(backward_name("layer_norm"), about=(f"{NORM}.layer_norm",), given=_layer_norm_inputs(),
           examples=[_pinned_layer_norm()])
def layer_norm_backward_matches_vjp(check, x, normalized_shape, weight, bias, seed):
    """layer_norm's backward, y = w xhat + b over the last axis or two (w and b, and either
    alone, every example): dx = J^T g from dxhat_i/dx_j = r (delta_ij - 1/n - xhat_i xhat_j
    / n), dw = sum g xhat, db = sum g; bound: the engine's steps carried (running error)."""
    from minilean.nn import functional as F
    g = upstream(seed, x.shape)
    for weight, bias in _affine_forms(weight, bias):
        references = _layer_norm_reference(x, weight, g, normalized_shape)
        for dtype in ENGINE_DTYPES:
            tensors = ([engine(x, dtype, requires_grad=True)]
                       + _affine_tensors(weight, bias, dtype))
            F.layer_norm(tensors[0], normalized_shape, tensors[1], tensors[2]).backward(
                engine(g, dtype))
            for name, tensor, reference, replayed in zip(
                    ("dx", "dw", "db"), tensors, references,
                    _layer_norm_replay(x, weight, g, normalized_shape, dtype)):
                if tensor is not None:  # an affine input not passed
                    check_against_replay(check, tensor, reference, replayed, dtype,
                                         f"layer_norm {normalized_shape} {name}, weight "
                                         f"{weight is not None}, bias {bias is not None} "
                                         f"({dtype.__name__})")


@statement("layerNorm_value", about=(f"{NORM}.layer_norm",), given=_layer_norm_inputs(),
           max_examples=15,
           # pinned: the backward's example; and a row whose last element lies near its mean,
           # its float32 shift x_3 - x_1 = 3.045 rounded, whose rounding the replay of
           # x - mean(x) did not carry (1.07 times over it; _replayed_statistics)
           examples=[_pinned_layer_norm(),
                     {"x": numpy.float32([[[-3.0, 3.15, 0.045]]]).astype(numpy.float64),
                      "normalized_shape": (3,), "seed": 1,
                      "weight": numpy.asarray([1.0, 1.0, -0.75]),
                      "bias": numpy.asarray([0.25, 1.0, -0.5])}])
def layer_norm_value(check, x, normalized_shape, weight, bias, seed):
    """layer_norm(x) = w (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) + b over each group
    of the last axis or two (eps = 1e-5; w and b, either alone and neither, every example),
    against its 50-digit value; bound: the engine's steps carried (running error: mean,
    x - mean, the mean of squares, + eps, sqrt, 1 /, xhat = c r, times w, plus b), the
    replay's exact value the reference's at 50 digits."""
    for weight, bias in _affine_forms(weight, bias) + [(None, None)]:
        _check_layer_norm_value(check, x, normalized_shape, weight, bias)


def _check_layer_norm_value(check, x, normalized_shape, weight, bias):
    from minilean.nn import functional as F
    size = math.prod(normalized_shape)
    w = mp_array(numpy.ones(size) if weight is None else weight).reshape(-1)
    b = mp_array(numpy.zeros(size) if bias is None else bias).reshape(-1)
    reference = []
    for group in _by_group(mp_array(x), size):
        xhat, _ = _standardized(list(group), EPS)
        reference += [wi * xi + bi for wi, xi, bi in zip(w, xhat, b)]
    for dtype in ENGINE_DTYPES:
        u = unit_roundoff(dtype)
        affine = [None if a is None else Carried.array(a, dtype).reshape(-1)
                  for a in (weight, bias)]
        replayed = []
        for group in _by_group(Carried.array(x, dtype), size):
            centered, r = _replayed_statistics(list(group), Carried.constant(EPS, dtype))
            for i, c in enumerate(centered):
                y = c * r
                y = y if affine[0] is None else y * affine[0][i]
                replayed.append(y if affine[1] is None else y + affine[1][i])
        what = (f"layer_norm {normalized_shape} value, weight {weight is not None}, bias "
                f"{bias is not None} ({dtype.__name__})")
        with check.reference():
            check.close([c.value for c in replayed], reference,
                        [mp_tolerance(c.error / u) for c in replayed], f"{what}: replay")
        y = F.layer_norm(engine(x, dtype), normalized_shape,
                         *(None if a is None else engine(a, dtype) for a in (weight, bias)))
        check.holds(y.dtype == dtype and y.shape == x.shape,
                    f"{what}: output is {y.dtype} {y.shape}")
        check.close(y, reference, [c.error for c in replayed], what)


@statement(backward_name("layer_norm_no_affine"), about=(f"{NORM}.layer_norm",),
           given=_layer_norm_inputs(affine=False), examples=[_pinned_layer_norm(affine=False)])
def layer_norm_no_affine_backward_matches_vjp(check, x, normalized_shape, seed):
    """layer_norm's backward without weight and bias (elementwise_affine=False), y = xhat over
    the last axis or two: dx = J^T g from dxhat_i/dx_j = r (delta_ij - 1/n - xhat_i xhat_j / n);
    bound: the engine's steps carried (running error)."""
    from minilean.nn import functional as F
    g = upstream(seed, x.shape)
    reference = _layer_norm_reference(x, None, g, normalized_shape)[0]
    for dtype in ENGINE_DTYPES:
        tensor = engine(x, dtype, requires_grad=True)
        F.layer_norm(tensor, normalized_shape).backward(engine(g, dtype))
        check_against_replay(check, tensor, reference,
                             _layer_norm_replay(x, None, g, normalized_shape, dtype)[0], dtype,
                             f"layer_norm {normalized_shape} without affine dx "
                             f"({dtype.__name__})")


# --- group_norm -----------------------------------------------------------------------------

@st.composite
def _group_norm_inputs(draw, affine=True):
    """x (N, C, H, W) with N = 1..2, G = 1..2 groups of 1..2 channels, H, W = 1..2, laid out
    NCHW or channels-last (a convolution's output, which GroupNorm keeps without a copy),
    and with ``affine`` weight and bias (C,)."""
    groups, per_group = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    shape = (draw(st.integers(1, 2)), groups * per_group, draw(st.integers(1, 2)),
             draw(st.integers(1, 2)))
    inputs = {"x": real_array(draw, shape, -4, 4), "groups": groups,
              "channels_last": draw(st.booleans()), "seed": draw(st.integers(0, 2 ** 16))}
    if affine:
        inputs.update(_affine_inputs(draw, shape[1:2]))
    return inputs


def _pinned_group_norm(affine=True):
    """A pinned example: x (1, 4, 1, 2) in channels-last memory, two groups of two channels
    (one group, one channel or one position would hide a reduction over the wrong axis)."""
    inputs = {"x": numpy.asarray([1.0, -2.0, 0.5, 3.0, 0.25, -1.5, 2.0, -0.75]).reshape(
        1, 4, 1, 2), "groups": 2, "channels_last": True, "seed": 1}
    if affine:
        inputs.update(weight=numpy.asarray([0.5, -1.0, 2.0, 1.5]),
                      bias=numpy.asarray([0.25, 1.0, -0.5, -2.0]))
    return inputs


def _silu_slope(y):
    """d silu / dy = sigma(y) (1 + y (1 - sigma(y)))."""
    sigma = 1 / (1 + mpmath.exp(-y))
    return sigma * (1 + y * (1 - sigma))


def _group_norm_reference(x, weight, bias, g, groups, activation):
    """dx, dw, db of sum g * act(w_c xhat + b_c), xhat standardised over each (sample, group)
    (w = 1 and b = 0 for ``weight`` and ``bias`` None: no affine)."""
    weight = numpy.ones(x.shape[1]) if weight is None else weight
    bias = numpy.zeros(x.shape[1]) if bias is None else bias
    x, weight, bias, g = mp_array(x), mp_array(weight), mp_array(bias), mp_array(g)
    batch, channels = x.shape[:2]
    per_group = channels // groups
    dx = numpy.empty(x.shape, dtype=object)
    dw, db = [mpmath.mpf(0)] * channels, [mpmath.mpf(0)] * channels
    for n in range(batch):
        for first in range(0, channels, per_group):
            group = slice(first, first + per_group)
            xhat, r = _standardized(list(x[n, group].reshape(-1)), EPS)
            xhat = numpy.asarray(xhat, dtype=object).reshape(x[n, group].shape)
            w, b = weight[group, None, None], bias[group, None, None]
            grad = g[n, group]
            if activation == "silu":  # dy at the norm's own output, before the SiLU
                grad = grad * numpy.vectorize(_silu_slope, otypes=[object])(w * xhat + b)
            dx[n, group] = numpy.asarray(_standardization_vjp(
                list(xhat.reshape(-1)), r, list((grad * w).reshape(-1))), dtype=object).reshape(
                    xhat.shape)
            for c in range(per_group):
                dw[first + c] += mpmath.fsum((grad[c] * xhat[c]).reshape(-1))
                db[first + c] += mpmath.fsum(grad[c].reshape(-1))
    return list(dx.reshape(-1)), dw, db


def _group_norm_replay(x, weight, bias, g, groups, activation, dtype):
    """GroupNorm's forward and backward, in its order, per (sample, group): the scale r w_c,
    out = (x - mean) (r w_c) + b_c (then dy through SiLU: ((1 - s) out + 1) s dy), sums over
    positions per channel of dy and of dy (x - mean), and
    dx = (dy r w_c - (x - mean) ((r r) mean(w dy xhat))) - r mean(w dy). Without a weight
    (``weight`` None) the scale is r itself and w drops out of the means; without a bias
    nothing is added."""
    x, g = Carried.array(x, dtype), Carried.array(g, dtype)
    weight, bias = (None if a is None else Carried.array(a, dtype) for a in (weight, bias))
    eps = Carried.constant(EPS, dtype)
    batch, channels = x.shape[:2]
    per_group = channels // groups
    count = x[0, :per_group].size  # elements per group, C/G x H W
    dx = numpy.empty(x.shape, dtype=object)
    grad_sums = numpy.empty((batch, channels), dtype=object)
    grad_xhat_sums = numpy.empty((batch, channels), dtype=object)
    for n in range(batch):
        for first in range(0, channels, per_group):
            group = slice(first, first + per_group)
            centered, r = _replayed_statistics(list(x[n, group].reshape(-1)), eps)
            centered = numpy.asarray(centered, dtype=object).reshape(x[n, group].shape)
            scale = numpy.asarray([r] * per_group if weight is None else
                                  [r * w for w in weight[group]], dtype=object)[:, None, None]
            grad = g[n, group]
            if activation == "silu":
                out = centered * scale
                out = out if bias is None else out + bias[group, None, None]
                sigma = numpy.vectorize(Carried.sigmoid, otypes=[object])(out)
                grad = (((1 - sigma) * out + 1) * sigma) * grad
            for c in range(per_group):
                grad_sums[n, first + c] = Carried.total(grad[c].reshape(-1))
                grad_xhat_sums[n, first + c] = r * Carried.total(
                    (grad[c] * centered[c]).reshape(-1))
            weighted_sums, weighted_xhat_sums = grad_sums[n, group], grad_xhat_sums[n, group]
            if weight is not None:
                weighted_sums = weighted_sums * weight[group]
                weighted_xhat_sums = weighted_xhat_sums * weight[group]
            mean_grad = Carried.total(weighted_sums) / count
            mean_grad_xhat = Carried.total(weighted_xhat_sums) / count
            dx[n, group] = ((grad * scale - centered * ((r * r) * mean_grad_xhat))
                            - r * mean_grad)
    return (list(dx.reshape(-1)), [Carried.total(column) for column in grad_xhat_sums.T],
            [Carried.total(column) for column in grad_sums.T])


def _engine_layout(x, dtype, channels_last):
    """x as an engine tensor in NCHW memory, or in channels-last memory (N, H, W, C) seen as
    NCHW, as a convolution returns it."""
    if not channels_last:
        return engine(x, dtype, requires_grad=True)
    nhwc = numpy.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=dtype)  # (N, H, W, C)
    return engine(nhwc.transpose(0, 3, 1, 2), dtype, requires_grad=True)  # (N, C, H, W) view


@statement(backward_name("group_norm"), about=(f"{NORM}.group_norm",), given=_group_norm_inputs(),
           examples=[_pinned_group_norm()])
def group_norm_backward_matches_vjp(check, x, weight, bias, groups, channels_last, seed):
    """group_norm's backward, y = act(w_c xhat + b_c) per (sample, group) (w and b, and either
    alone), act = identity and the fused SiLU: dx = J^T (w g act'), dw = sum g act' xhat,
    db = sum g act'; bound: the engine's steps carried (running error)."""
    from minilean.nn import functional as F
    g = upstream(seed, x.shape)
    # both forms every example: the U-Net's residual blocks fuse the SiLU, its attention
    # block's norm has none; and every affine form
    for activation, (weight, bias) in itertools.product((None, "silu"),
                                                        _affine_forms(weight, bias)):
        references = _group_norm_reference(x, weight, bias, g, groups, activation)
        for dtype in ENGINE_DTYPES:
            tensors = [_engine_layout(x, dtype, channels_last)] + _affine_tensors(weight, bias,
                                                                                  dtype)
            F.group_norm(tensors[0], groups, tensors[1], tensors[2],
                         activation=activation).backward(engine(g, dtype))
            replayed = _group_norm_replay(x, weight, bias, g, groups, activation, dtype)
            for name, tensor, reference, carried in zip(("dx", "dw", "db"), tensors,
                                                         references, replayed):
                if tensor is not None:  # an affine input not passed
                    check_against_replay(check, tensor, reference, carried, dtype,
                                         f"group_norm {activation} {name}, weight "
                                         f"{weight is not None}, bias {bias is not None} "
                                         f"({dtype.__name__})")


@statement(backward_name("group_norm_no_affine"), about=(f"{NORM}.group_norm",),
           given=_group_norm_inputs(affine=False), examples=[_pinned_group_norm(affine=False)])
def group_norm_no_affine_backward_matches_vjp(check, x, groups, channels_last, seed):
    """group_norm's backward without weight and bias (affine=False), y = act(xhat) per
    (sample, group), act = identity and the fused SiLU: dx = J^T (g act'); bound: the
    engine's steps carried (running error)."""
    from minilean.nn import functional as F
    g = upstream(seed, x.shape)
    for activation in (None, "silu"):  # both forms every example, as with the affine
        reference = _group_norm_reference(x, None, None, g, groups, activation)[0]
        for dtype in ENGINE_DTYPES:
            tensor = _engine_layout(x, dtype, channels_last)
            F.group_norm(tensor, groups, activation=activation).backward(engine(g, dtype))
            replayed = _group_norm_replay(x, None, None, g, groups, activation, dtype)[0]
            check_against_replay(check, tensor, reference, replayed, dtype,
                                 f"group_norm {activation} without affine dx "
                                 f"({dtype.__name__})")


@statement("groupNorm_value", about=(f"{NORM}.group_norm",), given=_group_norm_inputs(),
           max_examples=15, examples=[_pinned_group_norm()])
def group_norm_value(check, x, weight, bias, groups, channels_last, seed):
    """group_norm(x) = act(w_c (x - mean) / sqrt(mean((x - mean)^2) + eps) + b_c) over each
    (sample, group) of C/G channels and their positions (eps = 1e-5; act = identity and the
    fused SiLU, w and b, either alone and neither, both memory layouts: every example), against
    its 50-digit value; bound: the engine's steps carried (running error: mean, x - mean, the
    mean of squares, + eps, sqrt, 1 /, r w_c, times, plus b, then y sigma(y)). The backward
    statements check dy's way back only: the U-Net's forward through GroupNorm is its own
    code, not layer_norm's."""
    for activation, (weight, bias) in itertools.product(
            (None, "silu"), _affine_forms(weight, bias) + [(None, None)]):
        _check_group_norm_value(check, x, weight, bias, groups, channels_last, activation)


def _check_group_norm_value(check, x, weight, bias, groups, channels_last, activation):
    from minilean.nn import functional as F
    batch, channels = x.shape[:2]
    per_group = channels // groups
    w = mp_array(numpy.ones(channels) if weight is None else weight)
    b = mp_array(numpy.zeros(channels) if bias is None else bias)
    reference = numpy.empty(x.shape, dtype=object)
    for n, first in itertools.product(range(batch), range(0, channels, per_group)):
        group = slice(first, first + per_group)
        xhat, _ = _standardized(list(mp_array(x)[n, group].reshape(-1)), EPS)
        y = (numpy.asarray(xhat, dtype=object).reshape(x[n, group].shape) * w[group, None, None]
             + b[group, None, None])
        reference[n, group] = y if activation is None else y / (1 + numpy.vectorize(
            mpmath.exp, otypes=[object])(-y))
    reference = list(reference.reshape(-1))
    for dtype in ENGINE_DTYPES:
        u = unit_roundoff(dtype)
        carried = Carried.array(x, dtype)
        affine = [None if a is None else Carried.array(a, dtype) for a in (weight, bias)]
        replayed = numpy.empty(x.shape, dtype=object)
        for n, first in itertools.product(range(batch), range(0, channels, per_group)):
            group = slice(first, first + per_group)
            centered, r = _replayed_statistics(list(carried[n, group].reshape(-1)),
                                               Carried.constant(EPS, dtype))
            centered = numpy.asarray(centered, dtype=object).reshape(x[n, group].shape)
            scale = numpy.asarray([r] * per_group if affine[0] is None else
                                  [r * wc for wc in affine[0][group]], dtype=object)
            y = centered * scale[:, None, None]
            y = y if affine[1] is None else y + affine[1][group, None, None]
            replayed[n, group] = y if activation is None else y * numpy.vectorize(
                Carried.sigmoid, otypes=[object])(y)
        replayed = list(replayed.reshape(-1))
        what = (f"group_norm {activation} value, weight {weight is not None}, bias "
                f"{bias is not None}, channels-last {channels_last} ({dtype.__name__})")
        with check.reference():
            check.close([c.value for c in replayed], reference,
                        [mp_tolerance(c.error / u) for c in replayed], f"{what}: replay")
        y = F.group_norm(_engine_layout(x, dtype, channels_last), groups,
                         *(None if a is None else engine(a, dtype) for a in (weight, bias)),
                         activation=activation)
        check.holds(y.dtype == dtype and y.shape == x.shape,
                    f"{what}: output is {y.dtype} {y.shape}")
        check.close(y, reference, [c.error for c in replayed], what)


# --- normalize_patches ----------------------------------------------------------------------

@st.composite
def _patch_inputs(draw):
    """patches (N, L, P) of pixels in [0, 1], N = 1..2, L = 1..3, P = 2..4."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(2, 4)))
    return {"patches": real_array(draw, shape, 0, 1), "seed": draw(st.integers(0, 2 ** 16))}


def _normalize_patches_replay(patches, g, dtype):
    """The composite's own steps: mean m (Sum, then / P), the variance (Var: its own centring
    c, about the patch's first value, sum of squares / P), s = sqrt(var + eps),
    y = (x - m) / s; backward through Div (g / s, and -(g / s) y summed over the patch for s),
    Sub (-(g / s) summed, for m), Sqrt (/ (2 s)), Var ((. (2/P)) c) and Mean (/ P), the three
    contributions to x added in any order."""
    eps = Carried.constant(PATCH_EPS, dtype)
    dx = []
    for patch, grad in zip(Carried.array(patches, dtype).reshape(-1, patches.shape[-1]),
                           Carried.array(g, dtype).reshape(-1, patches.shape[-1])):
        size = len(patch)
        mean = Carried.mean(patch)
        centered = [v - mean for v in patch]
        var_centered = Carried.centered(list(patch))  # Var's own centring, about x_1
        std = (Carried.total([c * c for c in var_centered]) / size + eps).sqrt()
        out = [c / std for c in centered]
        grad_a = [gi / std for gi in grad]
        grad_var = Carried.total([-a * y for a, y in zip(grad_a, out)]) / (2 * std)
        grad_mean = Carried.total([-a for a in grad_a]) / size
        two_over_size = Carried.constant(mpmath.mpf(2) / size, dtype)
        dx += [Carried.total([a, grad_mean, (grad_var * two_over_size) * c])
               for a, c in zip(grad_a, var_centered)]
    return dx


@statement(backward_name("normalize_patches"), about=("minilean.models.mae.normalize_patches",),
           given=_patch_inputs())
def normalize_patches_backward_matches_vjp(check, patches, seed):
    """normalize_patches' backward, (x - mean) / sqrt(var + 1e-6) per patch, composed of
    primitives: dx = J^T g from dxhat_i/dx_j = r (delta_ij - 1/P - xhat_i xhat_j / P); bound:
    the composite's steps carried (running error)."""
    from minilean.models import mae
    g = upstream(seed, patches.shape)
    reference = []
    for patch, grad in zip(mp_array(patches).reshape(-1, patches.shape[-1]),
                           mp_array(g).reshape(-1, patches.shape[-1])):
        xhat, r = _standardized(list(patch), PATCH_EPS)
        reference += _standardization_vjp(xhat, r, list(grad))
    for dtype in ENGINE_DTYPES:
        tensor = engine(patches, dtype, requires_grad=True)
        mae.normalize_patches(tensor).backward(engine(g, dtype))
        check_against_replay(check, tensor, reference,
                             _normalize_patches_replay(patches, g, dtype), dtype,
                             f"normalize_patches dx ({dtype.__name__})")


# --- conv2d ---------------------------------------------------------------------------------

def _pair(size):
    """A convolution size given as an int or a pair (h, w), as a pair."""
    return size if isinstance(size, tuple) else (size, size)


def _kernel_sizes():
    """(Kh, Kw), each 1..4, never 1 x 1: one side above 1 shows a dilation read for the
    other's (with Kh = Kw = 1 no dilation is read at all)."""
    return st.tuples(st.integers(1, 4), st.integers(1, 4)).filter(lambda kernel: kernel != (1, 1))


def _mixed():
    """A stride or a dilation that differs between the axes, (1, 2) or (2, 1): where one axis's
    is read for the other's, that shows on every example."""
    return st.sampled_from([(1, 2), (2, 1)])


def _pinned_array(*shape):
    """Values (k mod 7 - 3) / 2 in [-1.5, 1.5], k the flat index: exact in float32, and no
    flip, transpose or axis swap of them gives them back (the pinned examples' inputs)."""
    return (numpy.arange(math.prod(shape)) % 7 - 3).reshape(shape) / 2


@st.composite
def _conv_inputs(draw):
    """x (N, C, H, W), weight (O, C/G, Kh, Kw), bias (O,): N = 1..2, G = 1..2, 1..4 input and
    output channels per group (4 to 1 takes the shifted-rows weight gradient), kernels 1..4
    per axis but never 1 x 1 (which has no dilation to read), padding 0..1 and dilation 1..2
    per axis, each side from the least that leaves an output at either dilation to two more;
    and mixed_stride and mixed_dilation, each (1, 2) or (2, 1)."""
    groups = draw(st.integers(1, 2))
    in_channels, out_channels = (groups * draw(st.integers(1, 4)) for _ in range(2))
    kernel = draw(_kernel_sizes())
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    dilation, mixed_dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))), draw(_mixed())
    sides = tuple(draw(st.integers(least, least + 2)) for least in (
        max(1, max(d, m) * (k - 1) + 1 - 2 * pad)
        for k, pad, d, m in zip(kernel, padding, dilation, mixed_dilation)))
    return {"x": real_array(draw, (draw(st.integers(1, 2)), in_channels) + sides, -2, 2),
            "weight": real_array(draw, (out_channels, in_channels // groups) + kernel, -2, 2),
            "bias": real_array(draw, (out_channels,), -2, 2), "padding": padding,
            "dilation": dilation, "mixed_stride": draw(_mixed()),
            "mixed_dilation": mixed_dilation, "groups": groups,
            "seed": draw(st.integers(0, 2 ** 16))}


def _meetings(small_shape, big_shape, weight_shape, stride, padding, dilation, groups):
    """Every product of a convolution's defining sum, as (small index, big index, weight
    index): position (i, j) of channel k on the small side (conv2d's y, conv_transpose2d's x)
    meets position (s_h i + d_h p - pad_h, s_w j + d_w q - pad_w) of channel G(k) W_1 + c on
    the big side through w[k, c, p, q] (G(k) the group of k, W_1 = weight.shape[1]), where
    that position lies inside the big side. Stride, padding and dilation are pairs (h, w)."""
    (s_h, s_w), (pad_h, pad_w), (d_h, d_w) = stride, padding, dilation
    per_group = small_shape[1] // groups
    for n, k, i, j in numpy.ndindex(small_shape):
        for c, p, q in numpy.ndindex(weight_shape[1:]):
            row, column = s_h * i + d_h * p - pad_h, s_w * j + d_w * q - pad_w
            if 0 <= row < big_shape[2] and 0 <= column < big_shape[3]:
                channel = (k // per_group) * weight_shape[1] + c
                yield (n, k, i, j), (n, channel, row, column), (k, c, p, q)


def _convolution_reference(x, weight, g, meetings):
    """J^T g of y[b] = bias[channel of b] + sum of w[c] x[a] over the (a, b, c) of
    ``meetings``, straight from that sum: (dx, dw, dbias), each with the sum of |terms| of
    every entry."""
    x, weight, g = mp_array(x), mp_array(weight), mp_array(g)
    dx, dx_terms = (numpy.full(x.shape, mpmath.mpf(0), dtype=object) for _ in range(2))
    dw, dw_terms = (numpy.full(weight.shape, mpmath.mpf(0), dtype=object) for _ in range(2))
    for at_x, at_y, at_w in meetings:
        to_x, to_w = weight[at_w] * g[at_y], x[at_x] * g[at_y]
        dx[at_x] += to_x
        dx_terms[at_x] += abs(to_x)
        dw[at_w] += to_w
        dw_terms[at_w] += abs(to_w)
    db = g.sum(axis=(0, 2, 3))
    db_terms = numpy.vectorize(abs, otypes=[object])(g).sum(axis=(0, 2, 3))
    return [(list(a.reshape(-1)), list(b.reshape(-1)))
            for a, b in ((dx, dx_terms), (dw, dw_terms), (db, db_terms))]


def _conv_reference(x, weight, g, stride, padding, dilation, groups):
    """conv2d's J^T g, of y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q]
    x[n, G(o) C/G + c, s i + d p - pad_h, s j + d q - pad_w] (0 outside x): each output
    position is the small side of ``_meetings``, x the big one."""
    meetings = _meetings(g.shape, x.shape, weight.shape, stride, padding, dilation, groups)
    return _convolution_reference(x, weight, g, ((at_x, at_y, at_w)
                                                 for at_y, at_x, at_w in meetings))


def _check_convolution_grads(check, tensors, references, roundings, what):
    """The gradient of each tensor that needs one within gamma_m sum |terms| (m its entry of
    ``roundings``) of its reference. (One that needs none gets none whatever the op's
    backward returns: the graph walk drops it, which tests/test_autograd.py checks.)"""
    for name, tensor, (reference, terms), count in zip(("dx", "dw", "db"), tensors, references,
                                                       roundings):
        if tensor.requires_grad:
            check_gradient(check, tensor, reference, [gamma(count, tensor.dtype) * t
                                                      + underflow(count, tensor.dtype)
                                                      for t in terms], f"{what} {name}")


def _check_conv2d_backward(check, x, weight, bias, options, seed,
                           needs=((True, True), (False, True))):
    """conv2d's gradients at one stride, against ``_conv_reference``, in both dtypes, for each
    (x needs a gradient, the weight needs one) of ``needs``; the bias (None: no bias) always
    needs one. By default x needing a gradient and not (a first layer's images: then dw takes
    the columns of x or the shifted rows, not the one im2col of dy that dx shares at stride 1)."""
    from minilean.nn import functional as F
    stride, padding, dilation = (_pair(options[size]) for size in ("stride", "padding",
                                                                  "dilation"))
    batch, _, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = ((side + 2 * pad - d * (k - 1) - 1) // s + 1 for side, pad, k, s, d in zip(
        (height, width), padding, (kh, kw), stride, dilation))
    g = upstream(seed, (batch, out_channels, out_h, out_w))
    references = _conv_reference(x, weight, g, stride, padding, dilation, options["groups"])
    roundings = (kh * kw * out_channels // options["groups"],
                 batch * (height + 2 * padding[0]) * (width + 2 * padding[1]),
                 max(batch * out_h * out_w - 1, 0))
    for dtype, (input_needs_grad, weight_needs_grad) in itertools.product(ENGINE_DTYPES, needs):
        tensors = [engine(x, dtype, requires_grad=input_needs_grad),
                   engine(weight, dtype, requires_grad=weight_needs_grad)]
        tensors += [] if bias is None else [engine(bias, dtype, requires_grad=True)]
        F.conv2d(*tensors, **options).backward(engine(g, dtype))
        _check_convolution_grads(check, tensors, references, roundings,
                                 f"conv2d {weight.shape} stride {stride} ({dtype.__name__})")


@statement(backward_name("conv2d"), about=(f"{CONV}.conv2d",), given=_conv_inputs(),
           # pinned: a batch of two (dw sums over both images), a 2 x 3 kernel, padding and
           # dilation that differ between the axes; and 4 channels to 1, whose dw with x
           # needing no gradient takes the shifted rows
           examples=[{"x": _pinned_array(2, 2, 4, 5), "weight": _pinned_array(3, 2, 2, 3),
                      "bias": _pinned_array(3), "padding": (1, 0), "dilation": (1, 2),
                      "mixed_stride": (1, 2), "mixed_dilation": (2, 1), "groups": 1,
                      "seed": 1},
                     {"x": _pinned_array(1, 4, 3, 4), "weight": _pinned_array(1, 4, 2, 3),
                      "bias": _pinned_array(1), "padding": (0, 1), "dilation": (1, 1),
                      "mixed_stride": (2, 1), "mixed_dilation": (1, 2), "groups": 1,
                      "seed": 2}])
def conv2d_backward_matches_vjp(check, x, weight, bias, padding, dilation, mixed_stride,
                                mixed_dilation, groups, seed):
    """conv2d's backward: dx, dw, db = J^T g of the convolution's defining sum (mpmath), at
    stride 1 and 2 with the drawn dilation and at stride and dilation (1, 2) or (2, 1), x
    needing a gradient or not; bound gamma_m sum |terms|, m = Kh Kw O/G for dx (one dot
    product; or O/G, then Kh Kw - 1 additions of col2im), N Hp Wp for dw (padded positions),
    N Ho Wo - 1 additions for db."""
    # both strides the models use, every example: their backwards take different paths (the
    # flipped kernel at stride 1, col2im at stride 2); and a stride and a dilation, as the
    # padding may, that differ between the axes, where one read for the other shows (dx by
    # col2im, dw by the columns of x)
    for stride, spacing in (((1, 1), dilation), ((2, 2), dilation),
                            (mixed_stride, mixed_dilation)):
        _check_conv2d_backward(check, x, weight, bias, {
            "stride": stride, "padding": padding, "dilation": spacing, "groups": groups}, seed)


@st.composite
def _frozen_conv_inputs(draw):
    """As ``_conv_inputs``, with 1..3 output channels per group (never the four times the
    input channels that the shifted-rows form of the adjoint takes) and per-axis padding
    0..min(1, d (K - 1)), so that dL/dx is always the flipped-kernel convolution, plus
    fan_weight (4, 1, Kh, Kw): x's first channel fanned out to 4, the shifted-rows form."""
    groups = draw(st.integers(1, 2))
    in_channels, out_channels = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = draw(st.integers(1, 2))
    padding = tuple(draw(st.integers(0, min(1, dilation * (k - 1)))) for k in kernel)
    sides = tuple(draw(st.integers(least, least + 2)) for least in (
        max(1, dilation * (k - 1) + 1 - 2 * pad) for k, pad in zip(kernel, padding)))
    return {"x": real_array(draw, (draw(st.integers(1, 2)), in_channels) + sides, -2, 2),
            "weight": real_array(draw, (out_channels, in_channels // groups) + kernel, -2, 2),
            "bias": real_array(draw, (out_channels,), -2, 2),
            "fan_weight": real_array(draw, (4, 1) + kernel, -2, 2), "padding": padding,
            "dilation": dilation, "groups": groups, "seed": draw(st.integers(0, 2 ** 16))}


@statement(backward_name("conv2d_frozen_weight"), about=(f"{CONV}.conv2d",),
           given=_frozen_conv_inputs(),
           # pinned: a 3 x 2 kernel (a 1 x 1 one has nothing to flip), padding on one axis
           examples=[{"x": _pinned_array(2, 2, 4, 4), "weight": _pinned_array(3, 2, 3, 2),
                      "bias": _pinned_array(3), "fan_weight": _pinned_array(4, 1, 3, 2),
                      "padding": (1, 0), "dilation": 1, "groups": 1, "seed": 1}])
def conv2d_frozen_weight_backward_matches_vjp(check, x, weight, bias, fan_weight, padding,
                                              dilation, groups, seed):
    """conv2d's backward with a weight that needs no gradient: dx = J^T g of the defining sum
    (mpmath) through the flipped-kernel convolution, by im2col and (1 -> 4 channels) by
    shifted rows, and no dw; bound gamma_m sum |terms|, m = Kh Kw O/G for dx (one dot
    product; or O, then Kh Kw - 1 shifted-row additions), N Ho Wo - 1 for db."""
    # Stride 1, every example: only here does dx go alone through conv_input_grad's
    # flipped-kernel convolution (with the weight's gradient it shares conv_grads_stride1's
    # im2col of dy; at stride 2 it takes col2im either way, which the conv2d statement runs)
    options = {"stride": 1, "padding": padding, "dilation": dilation}
    _check_conv2d_backward(check, x, weight, bias, dict(options, groups=groups), seed,
                           needs=((True, False),))
    _check_conv2d_backward(check, x[:, :1], fan_weight, None, dict(options, groups=1), seed,
                           needs=((True, False),))


# --- conv_transpose2d -----------------------------------------------------------------------

@st.composite
def _conv_transpose_inputs(draw):
    """x (N, C_in, H, W), weight (C_in, C_out/G, Kh, Kw), bias (C_out,): N = 1..2, G = 1..2,
    1..3 input and output channels per group, kernels 1..4 per axis but never 1 x 1, padding
    0..1, dilation 1..2 and output_padding 0..1 per axis (the last taken where it is allowed,
    below max(stride, dilation)), each side from the least that leaves an output at stride 1
    and either dilation to one more; fan_weight (1, 4, Kh, Kw): x's first channel to 4, which
    takes the shifted-rows forms; and mixed_stride and mixed_dilation, each (1, 2) or (2, 1)."""
    groups = draw(st.integers(1, 2))
    in_channels, out_per_group = groups * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = draw(_kernel_sizes())
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    dilation, mixed_dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))), draw(_mixed())
    sides = tuple(draw(st.integers(least, least + 1)) for least in (
        max(1, 1 + 2 * pad - min(d, m) * (k - 1))
        for k, pad, d, m in zip(kernel, padding, dilation, mixed_dilation)))
    return {"x": real_array(draw, (draw(st.integers(1, 2)), in_channels) + sides, -2, 2),
            "weight": real_array(draw, (in_channels, out_per_group) + kernel, -2, 2),
            "bias": real_array(draw, (groups * out_per_group,), -2, 2),
            "fan_weight": real_array(draw, (1, 4) + kernel, -2, 2), "padding": padding,
            "dilation": dilation, "output_padding": (draw(st.integers(0, 1)),
                                                     draw(st.integers(0, 1))),
            "mixed_stride": draw(_mixed()), "mixed_dilation": mixed_dilation, "groups": groups,
            "seed": draw(st.integers(0, 2 ** 16))}


def _check_conv_transpose2d_backward(check, x, weight, bias, options, seed):
    """conv_transpose2d's gradients at one stride, every input needing one, in both dtypes,
    against J^T g of y[n, G(k) C_out/G + o, s_h i + d_h p - pad_h, s_w j + d_w q - pad_w] +=
    w[k, o, p, q] x[n, k, i, j] (each input position the small side of ``_meetings``, the
    output, H_out = (H - 1) s_h - 2 pad_h + d_h (Kh - 1) + output_padding_h + 1 high, the big
    one)."""
    from minilean.nn import functional as F
    stride, padding, dilation = (_pair(options[size]) for size in ("stride", "padding",
                                                                  "dilation"))
    batch, _, height, width = x.shape
    _, out_per_group, kh, kw = weight.shape
    # the rows of dy that x reaches, H_u = (H - 1) s_h + d_h (Kh - 1) + 1, and the output's
    reached = [(side - 1) * s + d * (k - 1) + 1
               for side, k, s, d in zip((height, width), (kh, kw), stride, dilation)]
    out_h, out_w = (side - 2 * pad + extra
                    for side, pad, extra in zip(reached, padding, options["output_padding"]))
    g = upstream(seed, (batch, options["groups"] * out_per_group, out_h, out_w))
    references = _convolution_reference(x, weight, g, _meetings(
        x.shape, g.shape, weight.shape, stride, padding, dilation, options["groups"]))
    roundings = (kh * kw * out_per_group, batch * reached[0] * reached[1],
                 max(batch * out_h * out_w - 1, 0))
    for dtype in ENGINE_DTYPES:
        tensors = [engine(a, dtype, requires_grad=True)
                   for a in ((x, weight) if bias is None else (x, weight, bias))]
        F.conv_transpose2d(*tensors, **options).backward(engine(g, dtype))
        _check_convolution_grads(check, tensors, references, roundings, f"conv_transpose2d "
                                 f"{weight.shape} stride {stride} ({dtype.__name__})")


@statement(backward_name("conv_transpose2d"), about=(f"{CONV}.conv_transpose2d",),
           given=_conv_transpose_inputs(),
           # pinned: a batch of two (dw sums over both images), a 2 x 3 kernel, padding and
           # dilation that differ between the axes
           examples=[{"x": _pinned_array(2, 2, 3, 3), "weight": _pinned_array(2, 2, 2, 3),
                      "bias": _pinned_array(2), "fan_weight": _pinned_array(1, 4, 2, 3),
                      "padding": (1, 0), "dilation": (1, 2), "output_padding": (1, 1),
                      "mixed_stride": (2, 1), "mixed_dilation": (1, 2), "groups": 1,
                      "seed": 1}])
def conv_transpose2d_backward_matches_vjp(check, x, weight, bias, fan_weight, padding, dilation,
                                          output_padding, mixed_stride, mixed_dilation, groups,
                                          seed):
    """conv_transpose2d's backward: dx, dw, db = J^T g of its defining sum (mpmath), at stride
    1 and 2 with the drawn dilation and at stride and dilation (1, 2) or (2, 1), with
    output_padding; bound gamma_m sum |terms|, m = Kh Kw C_out/G for dx (one dot product; or
    C_out, then Kh Kw - 1 shifted-row additions), N H_u W_u for dw (the positions of dy that x
    reaches), N H_out W_out - 1 additions for db."""
    # both strides every example: the decoders' stride 2 (im2col of dy at stride 2), and
    # stride 1 (the im2col and, for x's first channel fanned out to 4, the shifted rows); and
    # a stride and a dilation, as the padding may, that differ between the axes (the im2col
    # of dy, for dx and dw, reading one axis's dilation for the other's shows)
    for stride, spacing in (((1, 1), dilation), ((2, 2), dilation),
                            (mixed_stride, mixed_dilation)):
        # output_padding below max(stride, dilation) per axis: at stride 1 only with dilation 2
        extra = tuple(min(pad, max(s, d) - 1)
                      for pad, s, d in zip(output_padding, stride, spacing))
        options = {"stride": stride, "padding": padding, "output_padding": extra,
                   "dilation": spacing}
        _check_conv_transpose2d_backward(check, x, weight, bias, dict(options, groups=groups),
                                         seed)
        if stride == (1, 1):
            _check_conv_transpose2d_backward(check, x[:, :1], fan_weight, None,
                                             dict(options, groups=1), seed)


# --- embedding ------------------------------------------------------------------------------

@st.composite
def _embedding_inputs(draw):
    """weight (rows, dim), rows = 1..4, dim = 1..3, and integer indices of shape (k,) or
    (a, b), k = 1..6, a, b = 1..3 (the VQ-VAE's code maps), rows picked any number of times."""
    rows, dim = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape = draw(st.one_of(st.tuples(st.integers(1, 6)),
                           st.tuples(st.integers(1, 3), st.integers(1, 3))))
    picks = draw(st.lists(st.integers(0, rows - 1), min_size=math.prod(shape),
                          max_size=math.prod(shape)))
    return {"weight": real_array(draw, (rows, dim), -4, 4),
            "indices": numpy.asarray(picks, dtype=numpy.int64).reshape(shape),
            "seed": draw(st.integers(0, 2 ** 16))}


@statement(backward_name("embedding"),
           about=("minilean.nn.functional.embedding", "minilean.models.vqvae.quantize"),
           given=_embedding_inputs(),
           # pinned: row 0 picked twice
           examples=[{"weight": _pinned_array(3, 2), "indices": numpy.asarray([0, 2, 0]),
                      "seed": 1}])
def embedding_backward_matches_vjp(check, weight, indices, seed):
    """embedding's backward, and quantize's (the VQ-VAE's lookup, as one_hot(idx) @ e): dw[r] =
    sum of g over the positions that picked row r (mpmath); bound gamma_{k-1} sum |g| for a row
    picked k times (k - 1 additions; 0 for k <= 1). quantize's product adds 0 * g for the other
    positions, exactly 0, which leaves the sum and its rounding as they were."""
    import minilean
    from minilean.models import vqvae
    from minilean.nn import functional as F
    g = upstream(seed, indices.shape + weight.shape[1:])
    flat_indices, flat_g = indices.reshape(-1), mp_array(g).reshape(-1, weight.shape[1])
    reference, terms, picks = [], [], []
    for row in range(weight.shape[0]):
        chosen = flat_g[flat_indices == row]
        reference += [mpmath.fsum(column) for column in chosen.T]
        terms += [mpmath.fsum(abs(v) for v in column) for column in chosen.T]
        picks += [len(chosen)] * weight.shape[1]
    # quantize takes its indices as nearest_code gives them, in a tensor
    lookups = {"embedding": F.embedding,
               "quantize": lambda idx, w: vqvae.quantize(w, minilean.tensor(idx))}
    for (name, lookup), dtype in itertools.product(lookups.items(), ENGINE_DTYPES):
        tensor = engine(weight, dtype, requires_grad=True)
        lookup(indices, tensor).backward(engine(g, dtype))
        check_gradient(check, tensor, reference,
                       [gamma(max(k - 1, 0), dtype) * t + underflow(max(k - 1, 0), dtype)
                        for k, t in zip(picks, terms)], f"{name} dw ({dtype.__name__})")


# --- mutants: broken backwards of these layers ----------------------------------------------

@mutant("layer_norm backward without the variance's term", f"{NORM}._standardize_backward",
        caught_by=[backward_name("layer_norm"), backward_name("layer_norm_no_affine")])
def standardize_backward_without_variance_term(original):
    """LayerNorm's dx is r (gxhat - mean(gxhat)), without - xhat mean(gxhat xhat): r treated
    as a constant, the path through the variance dropped."""
    return lambda grad_xhat, xhat, inv_std, axes: inv_std * (
        grad_xhat - grad_xhat.mean(axis=axes, keepdims=True))


@mutant("layer_norm backward over the last axis only", f"{NORM}._standardize_backward",
        caught_by=[backward_name("layer_norm"), backward_name("layer_norm_no_affine")])
def standardize_backward_last_axis_only(original):
    """LayerNorm's dx takes mean(gxhat) and mean(gxhat xhat) over the last axis alone, not over
    every axis of normalized_shape: alike for the MAE's (width,), wrong for a shape of two."""
    return lambda grad_xhat, xhat, inv_std, axes: original(grad_xhat, xhat, inv_std, axes[-1:])


@mutant("norm affine gradients in the wrong order", f"{NORM}._affine_grads",
        caught_by=[backward_name("layer_norm"), backward_name("group_norm")])
def affine_grads_swapped(original):
    """LayerNorm's and GroupNorm's backward return sum dy where the weight's gradient belongs
    and sum dy xhat where the bias's does."""
    return lambda ctx, needs, weight_grad, bias_grad: original(ctx, needs, bias_grad, weight_grad)


@mutant("norm affine gradients paired as (weight, bias) whatever was passed",
        f"{NORM}._affine_grads",
        caught_by=[backward_name("layer_norm"), backward_name("group_norm")])
def affine_grads_weight_first_always(original):
    """The norms' backward pairs the affine inputs passed with (weight's gradient, bias's) in
    that order, whichever were passed: right with both, but a bias passed alone gets
    sum dy xhat."""
    return lambda ctx, needs, weight_grad, bias_grad: tuple(
        make() if need else None for make, need in zip((weight_grad, bias_grad), needs))


@mutant("layer_norm without affine applying r twice", f"{NORM}.LayerNorm.backward",
        caught_by=[backward_name("layer_norm_no_affine")])
def layer_norm_no_affine_r_twice(original):
    """LayerNorm's backward without a weight takes gxhat = r dy, GroupNorm's folded scale r w
    copied with w = 1, and the standardisation's backward multiplies by r again."""
    def backward(ctx, grad):
        if ctx.weight is None:
            ctx.weight = ctx.inv_std
        return original(ctx, grad)
    return backward


@mutant("group_norm without affine forgetting r in dy's term", f"{NORM}.GroupNorm.backward",
        caught_by=[backward_name("group_norm_no_affine")])
def group_norm_no_affine_without_r(original):
    """GroupNorm's backward without a weight takes dx's first term as dy, not r dy (LayerNorm's
    gxhat = dy copied, where GroupNorm folds r into its scale)."""
    def backward(ctx, grad):
        if ctx.weight is None:
            ctx.scale = 1
        return original(ctx, grad)
    return backward


@mutant("group_norm backward without the fused SiLU", f"{NORM}.GroupNorm.backward",
        caught_by=[backward_name("group_norm"), backward_name("group_norm_no_affine")])
def group_norm_backward_without_silu(original):
    """GroupNorm.backward takes dy as the gradient at the norm's own output even when a SiLU
    was fused after it (the activation's slope forgotten)."""
    def backward(ctx, grad):
        ctx.silu_saved = None
        return original(ctx, grad)
    return backward


@mutant("var backward dividing by n - 1 whatever unbiased",
        "minilean.autograd.reduce.Var.backward",
        caught_by=[backward_name("normalize_patches"), backward_name("var"), backward_name("std")])
def var_backward_bessel_always(original):
    """Var.backward gives 2 (x_i - m) / (n - 1) also for the population variance
    (unbiased=False, normalize_patches'), Bessel's correction kept where it does not belong."""
    def backward(ctx, grad):
        count = ctx.centered.size // grad.size  # the elements each variance summarises
        return original(ctx, grad) * (ctx.divisor / (count - 1))
    return backward


@mutant("conv2d input gradient with the kernel unflipped", f"{CONV}._flipped_transpose",
        caught_by=[backward_name("conv2d"), backward_name("conv2d_frozen_weight")])
def adjoint_kernel_unflipped(original):
    """The stride-1 dx correlates dy with w's channels swapped but its space not reversed: the
    adjoint of a correlation taken as a correlation with the same kernel."""
    return lambda weight, groups: original(weight, groups)[:, :, ::-1, ::-1]


@mutant("conv2d shifted rows paired with the kernel offsets reversed",
        f"{CONV}.shifted_conv_forward",
        caught_by=[backward_name("conv2d_frozen_weight"), backward_name("conv_transpose2d")])
def shifted_rows_offsets_reversed(original):
    """shifted_conv_forward adds the row block of shift (p, q) times the weights of offset
    (Kh - 1 - p, Kw - 1 - q): the row shifts walked from the last offset while the kernel's
    columns go from the first, a flipped kernel (conv2d's stride-1 dx from few input channels
    to many, with the weight needing no gradient, goes through it, and conv_transpose2d's
    stride-1 dx from many to few)."""
    return lambda x_pad, weight, dilation: original(x_pad, weight[:, :, ::-1, ::-1], dilation)


@mutant("conv2d stride-1 weight gradient with the kernel axes left unreversed",
        f"{CONV}.conv_grads_stride1", caught_by=[backward_name("conv2d")])
def stride1_weight_grad_unreversed(original):
    """conv_grads_stride1 returns X^T Cols(dy_pad) reshaped to (O, C/G, Kh, Kw) without the
    [::-1, ::-1] that its flipped columns call for: dw at stride 1 with x also needing a
    gradient (every layer but a network's first) pairs each offset with its mirror's sum."""
    def broken(*args):
        grads = original(*args)
        if grads is None:  # a shape this route declines: the caller takes another
            return None
        grad_x, grad_weight = grads
        return grad_x, grad_weight[:, :, ::-1, ::-1]
    return broken


@mutant("shifted-rows weight gradient with the kernel offsets reversed",
        f"{CONV}.shifted_weight_grad",
        caught_by=[backward_name("conv2d"), backward_name("conv_transpose2d")])
def shifted_weight_grad_offsets_reversed(original):
    """shifted_weight_grad files the sum of shift (p, q) under offset (Kh - 1 - p, Kw - 1 - q):
    conv2d's stride-1 dw from many input channels to few (O <= C / 4, one group) with x
    needing no gradient (a network's first layer), and conv_transpose2d's stride-1 dw from
    few to many, go through it."""
    return lambda x_pad, grad_y, kernel_size, dilation: original(
        x_pad, grad_y, kernel_size, dilation)[:, :, ::-1, ::-1]


@mutant("col2im with the stride's axes swapped", f"{CONV}.col2im",
        caught_by=[backward_name("conv2d")])
def col2im_stride_axes_swapped(original):
    """col2im steps its rows by the column stride and its columns by the row stride, (s_w, s_h)
    for (s_h, s_w): alike for every square stride the models use; conv2d's dx at stride
    (1, 2) or (2, 1) scatters to the wrong positions or off the padded grid."""
    return lambda columns, stride, dilation, out: original(columns, stride[::-1], dilation, out)


@mutant("col2im with the dilation's axes swapped", f"{CONV}.col2im",
        caught_by=[backward_name("conv2d")])
def col2im_dilation_axes_swapped(original):
    """col2im spaces the kernel's rows by the column dilation and its columns by the row
    dilation: alike for a dilation the same on both axes; conv2d's dx by col2im (a stride
    above 1) with d_h != d_w adds the patches in at the wrong offsets."""
    return lambda columns, stride, dilation, out: original(columns, stride, dilation[::-1], out)


@mutant("im2col with the dilation's axes swapped", f"{CONV}.im2col",
        caught_by=[backward_name("conv2d"), backward_name("conv_transpose2d")])
def im2col_dilation_axes_swapped(original):
    """im2col spaces a patch's rows by the column dilation and its columns by the row dilation:
    alike for a dilation the same on both axes; the columns of x (conv2d's weight gradient)
    and of dy (conv_transpose2d's input gradient) then pair the wrong positions."""
    return lambda x, kernel_size, stride, dilation: original(x, kernel_size, stride,
                                                            dilation[::-1])


@mutant("conv2d weight gradient of the first image only", f"{CONV}.conv_weight_grad",
        caught_by=[backward_name("conv2d"), backward_name("conv_transpose2d")])
def weight_grad_first_image(original):
    """conv_weight_grad (the columns' path: stride 2, padding beyond d (K - 1), or an input
    needing no gradient) sums X^T dL/dY over the first image, not over the batch."""
    return lambda x_pad, grad_y, *sizes: original(x_pad[:1], grad_y[:1], *sizes)


@mutant("conv2d bias gradient averaged over the positions", f"{CONV}.pixel_sums",
        caught_by=[backward_name("conv2d"), backward_name("conv2d_frozen_weight")])
def bias_grad_averaged(original):
    """pixel_sums, conv2d's dL/db = sum over n, i, j of dy, divides by the N Ho Wo positions:
    the bias's gradient as the mean of dy, as if the bias were shared out among them."""
    return lambda y: original(y) / (y.size // y.shape[-1])


@mutant("conv_transpose2d bias gradient of the first image only",
        f"{CONV}.ConvTranspose2d.backward", caught_by=[backward_name("conv_transpose2d")])
def conv_transpose_bias_grad_first_image(original):
    """ConvTranspose2d.backward sums dL/dy over the first image's positions for db, not over
    the batch's."""
    def backward(ctx, grad):
        grad_x, grad_weight, grad_bias = original(ctx, grad)
        return grad_x, grad_weight, None if grad_bias is None else grad[:1].sum(axis=(0, 2, 3))
    return backward


@mutant("conv_transpose2d weight gradient with the kernel flipped",
        f"{CONV}.ConvTranspose2d.backward", caught_by=[backward_name("conv_transpose2d")])
def conv_transpose_weight_grad_flipped(original):
    """ConvTranspose2d.backward returns dL/dw with its kernel axes reversed: the [::-1, ::-1]
    that conv2d's stride-1 weight gradient needs (conv_grads_stride1 reads it off the flipped
    columns of dy) carried over to Cols(dy_pad)^T X, which needs none."""
    def backward(ctx, grad):
        grad_x, grad_weight, grad_bias = original(ctx, grad)
        return grad_x, None if grad_weight is None else grad_weight[:, :, ::-1, ::-1], grad_bias
    return backward


@mutant("embedding backward keeping one pick of a repeated row",
        "minilean.autograd.shape.GetItem.backward", caught_by=[backward_name("embedding")])
def getitem_backward_assigning(original):
    """GetItem.backward stores dy at the picked rows (dx[index] = dy) instead of adding it: a
    row the lookup picks several times keeps only the last pick's gradient."""
    def backward(ctx, grad):
        from minilean.backend import array_module
        grad_x = array_module(grad).zeros(ctx.shape, dtype=grad.dtype)
        grad_x[ctx.index] = grad
        return grad_x
    return backward


@mutant("layer_norm with the unbiased variance", f"{NORM}._standardize",
        caught_by=["layerNorm_value"])
def standardize_unbiased(original):
    """layer_norm standardises by sqrt(sum (x - mean)^2 / (n - 1) + eps), torch.var's
    default, instead of the biased variance (/ n) that LayerNorm uses."""
    from minilean.backend import array_module

    def broken(x, axes, eps):
        xp = array_module(x)
        x = x.astype(xp.promote_types(x.dtype, xp.float32), copy=False)
        centered = x - x.mean(axis=axes, keepdims=True)
        count = math.prod(x.shape[a] for a in axes)
        inv_std = 1 / xp.sqrt((centered * centered).sum(axis=axes, keepdims=True)
                              / (count - 1) + eps)
        return centered * inv_std, inv_std
    return broken


@mutant("layer_norm in float64 for a float32 input", f"{NORM}.LayerNorm.forward",
        caught_by=["layerNorm_value"])
def layer_norm_float64(original):
    """LayerNorm.forward standardises a float32 x in float64 (promote_types with float64, not
    float32) and returns the float64 result: better values than float32's, the wrong dtype
    (the rest of a float32 model then runs in float64, at twice the memory)."""
    return lambda ctx, x, *affine, **options: original(ctx, x.astype(numpy.float64), *affine,
                                                       **options)


@mutant("layer_norm with eps outside the square root", f"{NORM}._standardize",
        caught_by=["layerNorm_value"])
def standardize_eps_outside(original):
    """layer_norm divides by sqrt(var) + eps instead of sqrt(var + eps)."""
    from minilean.backend import array_module

    def broken(x, axes, eps):
        xp = array_module(x)
        x = x.astype(xp.promote_types(x.dtype, xp.float32), copy=False)
        centered = x - x.mean(axis=axes, keepdims=True)
        inv_std = 1 / (xp.sqrt((centered * centered).mean(axis=axes, keepdims=True)) + eps)
        return centered * inv_std, inv_std
    return broken


@mutant("layer_norm returning its groups as rows", f"{NORM}.LayerNorm.forward",
        caught_by=["layerNorm_value"])
def layer_norm_rows(original):
    """LayerNorm.forward returns y as rows of the elements normalised together, (groups, n),
    the reshape back to x's shape forgotten: the right values in the right order, in another
    shape."""
    def forward(ctx, x, *affine, axes=(), **options):
        out = original(ctx, x, *affine, axes=axes, **options)
        return out.reshape(-1, math.prod(x.shape[axis] for axis in axes))
    return forward


@mutant("group_norm forward without its fused SiLU", f"{NORM}.GroupNorm.forward",
        caught_by=["groupNorm_value"])
def group_norm_forward_without_silu(original):
    """GroupNorm.forward with activation="silu" returns the norm's output before the SiLU,
    while its backward still takes dy through it (so every gradient is right, of a function
    the forward does not compute)."""
    from minilean.autograd.norm import _ungrouped

    def forward(ctx, x, *affine, **options):
        out = original(ctx, x, *affine, **options)
        if options.get("activation") != "silu" or not ctx.recording:
            return out
        normalized = ctx.silu_saved[0]  # the SiLU's input, on the grouped view
        return _ungrouped(normalized.astype(x.dtype, copy=False), x.shape, ctx.layout[0])
    return forward


@mutant("group_norm on channels-last memory reducing over the groups' axis", f"{NORM}._grouped",
        caught_by=[backward_name("group_norm"), backward_name("group_norm_no_affine")])
def grouped_channels_last_over_groups(original):
    """GroupNorm's channels-last view (N, S, G, C/G) names axis 2, the groups', as the one of a
    group's channels (3, as NCHW's (N, G, C/G, S) names 2): the statistics of a convolution's
    output then mix its groups and leave out a group's other channels (NCHW memory right)."""
    def broken(a, num_groups, channels_last):
        view, spatial, within = original(a, num_groups, channels_last)
        return view, spatial, 2 if channels_last else within
    return broken


@mutant("conv2d input gradient's kernel reshaped, not transposed", f"{CONV}._flipped_transpose",
        caught_by=[backward_name("conv2d"), backward_name("conv2d_frozen_weight")])
def adjoint_kernel_reshaped(original):
    """The stride-1 dx's kernel (O, C/G, Kh, Kw) -> (C, O/G, Kh, Kw) by a reshape where the
    in and out channels' transpose belongs: right where either side has one channel per group
    (x's first channel fanned out to 4), wrong where both have several."""
    def broken(weight, groups):
        out_channels, group_channels, kh, kw = weight.shape
        return weight.reshape(groups * group_channels, out_channels // groups, kh, kw)[
            :, :, ::-1, ::-1]
    return broken
