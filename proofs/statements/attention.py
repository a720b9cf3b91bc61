"""Scaled dot-product attention (the MAE's transformer blocks, the U-Net's attention), its
forward value: ``minilean.nn.functional.scaled_dot_product_attention``.

    o_ik = sum_j p_ij v_jk,   p_ij = softmax_j(s_ij),   s_ij = scale sum_m q_im k_jm + mask_ij

with scale = 1/sqrt(d), a float mask added to the scores and a boolean one removing the keys it
marks False (a query left with no key gets output 0, as in PyTorch). Bound, per output:
s_ij carries e_ij <= gamma_{d+5} (scale sum_m |q_im k_jm| + |mask_ij|) (the dot product, d
roundings; scale in float64, 2, and the cast, 1; the product, 1; the mask's addition, 1);
p_ij, as a function of the scores, then moves by a factor within e^{+-2 E_i}, E_i = max_j e_ij;
the softmax's own rounding is relative gamma_{S+2L+2} (1 + spread_i) (the shift x - max, whose
rounding the exp turns into a relative error of u |s_ij - max s_i|, exp (L), S - 1 additions,
the division; L = library_roundings); and the product with V, S terms, gamma_S.
"""
import itertools
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, library_roundings, mp, real_array

FUNCTIONAL = "minilean.nn.functional"


# leading axes before (L, d): none, the U-Net's batch (B, HW, C), and the MAE's batch and heads
# (N, H, L, D); an axis of 2 in front of (L, S) is where a softmax over axis 1 (the keys of
# one score matrix, but the queries or the heads of the models') differs from one over -1
LEADING_SHAPES = [(), (2,), (1, 2), (2, 2)]


@st.composite
def _attention_inputs(draw):
    """Q (..., L, d), K (..., S, d), V (..., S, dv) with leading axes from LEADING_SHAPES:
    L in 2..3 (one query is alone in any softmax over the queries), S in 1..3, d in 2..4 (so
    1/sqrt(d) is no 1/d), dv in 1..3, entries in [-2, 2]; no mask, a boolean one (a row may be
    all False) or a float one in [-3, 3], of shape (L, S), broadcast over the leading axes."""
    lead = draw(st.sampled_from(LEADING_SHAPES))
    length, source = draw(st.integers(2, 3)), draw(st.integers(1, 3))
    d, dv = draw(st.integers(2, 4)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["none", "bool", "float"]))
    mask = None
    if kind == "bool":
        mask = numpy.asarray(draw(st.lists(st.booleans(), min_size=length * source,
                                           max_size=length * source))).reshape(length, source)
    elif kind == "float":
        mask = real_array(draw, (length, source), -3, 3)
    return {"q": real_array(draw, lead + (length, d), -2, 2),
            "k": real_array(draw, lead + (source, d), -2, 2),
            "v": real_array(draw, lead + (source, dv), -2, 2), "mask": mask}


def _reference_and_bounds(q, k, v, mask, dtype):
    """The 50-digit output and the module docstring's bound of each (L, d) slice of the
    leading axes, in C order (lists of mpf): the attention of one slice sees no other."""
    outputs, bounds = [], []
    for index in numpy.ndindex(q.shape[:-2]):
        slice_outputs, slice_bounds = _slice_reference_and_bounds(q[index], k[index], v[index],
                                                                  mask, dtype)
        outputs += slice_outputs
        bounds += slice_bounds
    return outputs, bounds


def _slice_reference_and_bounds(q, k, v, mask, dtype):
    """The 50-digit output and the module docstring's bound, row by row (lists of mpf)."""
    (length, d), source, dv = q.shape, k.shape[0], v.shape[1]
    scale = 1 / mpmath.sqrt(d)
    library = library_roundings(dtype)
    outputs, bounds = [], []
    for i in range(length):
        scores, errors, keep = [], [], []
        for j in range(source):
            products = [mp(q[i, m]) * mp(k[j, m]) for m in range(d)]
            added = 0 if mask is None or mask.dtype == bool else mp(mask[i, j])
            scores.append(scale * mpmath.fsum(products) + added)
            errors.append(gamma(d + 5, dtype) * (scale * mpmath.fsum(abs(p) for p in products)
                                                 + abs(added)))
            keep.append(True if mask is None or mask.dtype != bool else bool(mask[i, j]))
        if not any(keep):  # no key to attend to: output 0, exactly
            outputs += [mpmath.mpf(0)] * dv
            bounds += [0] * dv
            continue
        kept = [s for s, kj in zip(scores, keep) if kj]
        peak = max(kept)
        exps = [mpmath.exp(s - peak) if kj else mpmath.mpf(0) for s, kj in zip(scores, keep)]
        total = mpmath.fsum(exps)
        p = [e / total for e in exps]
        largest = max(e for e, kj in zip(errors, keep) if kj)
        spread = max(peak - s for s in kept)
        rel = ((mpmath.exp(2 * largest)) * (1 + gamma(source + 2 * library + 2, dtype)
                                            * (1 + spread)) - 1)
        for m in range(dv):
            terms = [pj * abs(mp(v[j, m])) for j, pj in enumerate(p)]
            outputs.append(mpmath.fsum(pj * mp(v[j, m]) for j, pj in enumerate(p)))
            bounds.append(mpmath.fsum(terms) * ((1 + rel) * (1 + gamma(source, dtype)) - 1))
    return outputs, bounds


# two queries, three keys of d = 3 (1/d is no 1/sqrt(d)), pinned with no mask, a boolean one
# leaving the first query two keys and the second none, and a float one; and as the MAE's
# (N, H, L, D), a batch of two of two heads, no two alike
_PINNED = {"q": numpy.asarray([[1.0, -0.5, 2.0], [0.25, 1.5, -1.0]]),
           "k": numpy.asarray([[0.5, 1.0, -1.5], [-2.0, 0.25, 0.5], [1.0, 1.0, 1.0]]),
           "v": numpy.asarray([[1.0, -1.0], [0.5, 2.0], [-1.5, 0.25]])}
_PINNED_HEADS = {name: numpy.stack([numpy.stack([value, -value[::-1]]),
                                    numpy.stack([0.5 * value, value[:, ::-1]])])
                 for name, value in _PINNED.items()}


@statement("scaledDotProductAttention_value", about=(f"{FUNCTIONAL}.scaled_dot_product_attention",),
           given=_attention_inputs(), max_examples=15,
           examples=[{**_PINNED, "mask": None},
                     {**_PINNED, "mask": numpy.asarray([[True, False, True],
                                                        [False, False, False]])},
                     {**_PINNED, "mask": numpy.asarray([[0.5, -1.0, 2.0], [-2.0, 0.0, 1.5]])},
                     {**_PINNED_HEADS, "mask": None}])
def attention_value(check, q, k, v, mask):
    """scaled_dot_product_attention(Q, K, V, mask) = softmax(Q K^T / sqrt(d) + mask) V, the
    softmax over the keys (a boolean mask removes the keys it marks False, a row with none left
    gives 0; a float mask is added), each (L, d) slice of the leading axes (batch, heads) on
    its own, against mpmath, with the drawn mask and with none; bound: the score errors
    through the softmax (e^{2E} - 1), its own rounding and the product with V (module
    docstring)."""
    from minilean.nn import functional as F
    # without a mask too, every example: the models' attention, and the path on which a
    # softmax over the wrong axis is not masked away
    masks = [None] if mask is None else [None, mask]
    for dtype, used in itertools.product(ENGINE_DTYPES, masks):
        reference, bounds = _reference_and_bounds(q, k, v, used, dtype)
        out = F.scaled_dot_product_attention(
            engine(q, dtype), engine(k, dtype), engine(v, dtype),
            attn_mask=None if used is None else used if used.dtype == bool
            else used.astype(dtype))
        what = f"attention, mask {None if used is None else used.dtype} ({dtype.__name__})"
        check.holds(out.dtype == dtype and out.shape == q.shape[:-1] + v.shape[-1:],
                    f"{what}: output is {out.dtype} {out.shape}")
        check.close(out, reference, bounds, what)


@mutant("attention scaled by 1/d", f"{FUNCTIONAL}.attention_weights",
        caught_by=["scaledDotProductAttention_value"])
def attention_scaled_by_d(original):
    """attention's scores scaled by 1/d instead of 1/sqrt(d) (the head size's square root
    forgotten)."""
    def broken(query, key, attn_mask=None, is_causal=False, scale=None):
        return original(query, key, attn_mask, is_causal,
                        1.0 / query.shape[-1] if scale is None else scale)
    return broken


@mutant("attention's softmax over the queries", f"{FUNCTIONAL}.attention_weights",
        caught_by=["scaledDotProductAttention_value"])
def attention_softmax_over_queries(original):
    """attention's softmax normalises over the query axis (dim=-2) instead of the keys (no
    mask: the slip a transposed score matrix makes)."""
    def broken(query, key, attn_mask=None, is_causal=False, scale=None):
        from minilean.autograd.reduce import softmax
        if attn_mask is not None or is_causal:
            return original(query, key, attn_mask, is_causal, scale)
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        return softmax((query @ key.transpose(-2, -1)) * scale, dim=-2)
    return broken


@mutant("attention's boolean mask read as True = masked", f"{FUNCTIONAL}.attention_weights",
        caught_by=["scaledDotProductAttention_value"])
def attention_mask_inverted(original):
    """a boolean mask's True read as "leave this key out" (nn.MultiheadAttention's
    key_padding_mask) instead of "attend" (scaled_dot_product_attention's)."""
    def broken(query, key, attn_mask=None, is_causal=False, scale=None):
        if attn_mask is not None and attn_mask.dtype == bool:
            attn_mask = ~attn_mask
        return original(query, key, attn_mask, is_causal, scale)
    return broken


@mutant("attention's query with no key left not zeroed", f"{FUNCTIONAL}.attention_weights",
        caught_by=["scaledDotProductAttention_value"])
def attention_no_key_not_zeroed(original):
    """a query that may attend to no key keeps its scores for the softmax (as the engine does,
    to stay clear of 0/0), and its weights are then not zeroed: it averages V by them."""
    def broken(query, key, attn_mask=None, is_causal=False, scale=None):
        if attn_mask is None or is_causal or attn_mask.dtype != bool:
            return original(query, key, attn_mask, is_causal, scale)
        attends = attn_mask.any(axis=-1, keepdims=True)
        return original(query, key, attn_mask | ~attends, is_causal, scale)
    return broken


@mutant("attention's float mask added before the scale", f"{FUNCTIONAL}.attention_weights",
        caught_by=["scaledDotProductAttention_value"])
def attention_mask_scaled(original):
    """a float mask added to Q K^T before the scaling, (Q K^T + mask) / sqrt(d), not to the
    scaled scores."""
    def broken(query, key, attn_mask=None, is_causal=False, scale=None):
        if attn_mask is None or attn_mask.dtype == bool:
            return original(query, key, attn_mask, is_causal, scale)
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        return original(query, key, attn_mask * scale, is_causal, scale)
    return broken


@mutant("attention's boolean mask promoting float32 to float64", f"{FUNCTIONAL}.attention_weights",
        caught_by=["scaledDotProductAttention_value"])
def attention_mask_promotes(original):
    """the 0/1 factor that zeroes a query with no key left made by astype(float): with a
    boolean mask, float32 attention comes back in float64 (its values as right)."""
    def broken(query, key, attn_mask=None, is_causal=False, scale=None):
        from minilean.autograd.tensor import Tensor
        weights = original(query, key, attn_mask, is_causal, scale)
        if attn_mask is None or attn_mask.dtype != bool:
            return weights
        return weights * Tensor(attn_mask.any(axis=-1, keepdims=True).astype(float))
    return broken


@mutant("attention's softmax over axis 1", f"{FUNCTIONAL}.attention_weights",
        caught_by=["scaledDotProductAttention_value"])
def attention_softmax_over_axis_1(original):
    """attention's softmax over axis 1, written for one (L, S) score matrix, where it is the
    keys' axis: the models' scores are (B, L, S) in the U-Net and (N, H, L, S) in the MAE, where
    axis 1 is the queries' or the heads' (no mask; one (L, S) matrix hides it)."""
    def broken(query, key, attn_mask=None, is_causal=False, scale=None):
        from minilean.autograd.reduce import softmax
        if attn_mask is not None or is_causal:
            return original(query, key, attn_mask, is_causal, scale)
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        return softmax((query @ key.transpose(-2, -1)) * scale, dim=1)
    return broken
