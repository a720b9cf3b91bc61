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

``minilean.nn.MultiheadAttention`` (the MAE's blocks; the U-Net's attention is one head through
``scaled_dot_product_attention``), its output: the heads are blocks of d_h = E / H columns of
the projections, attended one by one and concatenated back in order,

    out = concat_h(softmax(Q_h K_h^T / sqrt(d_h)) V_h) W_o^T + b_o,   Q = X_q W_q^T + b_q, ...

Its bound is a running error bound (``running_error.py``): the projections and the scores carry
errors into the softmax, which the bound above takes as exact inputs.
"""
import itertools
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, host, library_roundings, mp,
                             mp_tolerance, real_array, underflow)
from proofs.running_error import Carried

FUNCTIONAL = "minilean.nn.functional"
F64 = numpy.float64


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


def _softmax_relative_error(largest, spread, count, dtype):
    """The relative error of each computed softmax weight over ``count`` scores whose errors
    are at most ``largest`` and whose exact values spread over ``spread``: the scores' errors
    move it by a factor within e^{+-2 largest}, and its own rounding is relative
    gamma_{count+2L+2} (1 + spread) (the module docstring's)."""
    return (mpmath.exp(2 * largest) * (1 + gamma(count + 2 * library_roundings(dtype) + 2, dtype)
                                       * (1 + spread)) - 1)


def _slice_reference_and_bounds(q, k, v, mask, dtype):
    """The 50-digit output and the module docstring's bound, row by row (lists of mpf)."""
    (length, d), source, dv = q.shape, k.shape[0], v.shape[1]
    scale = 1 / mpmath.sqrt(d)
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
        rel = _softmax_relative_error(largest, spread, source, dtype)
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


# --- multi-head attention: the heads split, attended and merged -----------------------------

LAYER = "minilean.nn.attention.MultiheadAttention"
# (embed_dim, num_heads): one head, heads of one column, and heads of two or three columns
HEAD_SPLITS = [(2, 1), (2, 2), (4, 1), (4, 2), (4, 4), (6, 2), (6, 3)]


@st.composite
def _multihead_inputs(draw):
    """The layer's weights and inputs, (N, L, E) in the batch-first layout: E and H from
    HEAD_SPLITS, N in 1..2, L in 1..3; self-attention (query = key = value, as the MAE's
    blocks call it) or keys and values of their own S in 1..3; inputs in [-1, 1], weights in
    [-1, 1], biases in [-1/2, 1/2] or none (bias=False); either layout of the call."""
    embed, heads = draw(st.sampled_from(HEAD_SPLITS))
    batch, length = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    query = real_array(draw, (batch, length, embed), -1, 1)
    key = value = query
    if not draw(st.booleans()):  # cross-attention
        source = draw(st.integers(1, 3))
        key = real_array(draw, (batch, source, embed), -1, 1)
        value = real_array(draw, (batch, source, embed), -1, 1)
    bias = draw(st.booleans())
    return {"heads": heads, "query": query, "key": key, "value": value,
            "in_weight": real_array(draw, (3 * embed, embed), -1, 1),
            "in_bias": real_array(draw, (3 * embed,), -0.5, 0.5) if bias else None,
            "out_weight": real_array(draw, (embed, embed), -1, 1),
            "out_bias": real_array(draw, (embed,), -0.5, 0.5) if bias else None,
            "batch_first": draw(st.booleans())}


def _affine_rows(x, weight, bias):
    """x W^T + b in mpmath, row by row (lists of mpf lists)."""
    return [[mpmath.fsum(mp(row[c]) * mp(weight[r, c]) for c in range(len(row)))
             + (0 if bias is None else mp(bias[r])) for r in range(weight.shape[0])]
            for row in x]


def _multihead_formula(heads, query, key, value, in_weight, in_bias, out_weight, out_bias):
    """The layer's output for one batch element (L rows of E mpf): concat_h(softmax(Q_h K_h^T
    / sqrt(d_h)) V_h) W_o^T + b_o, Q = X_q W_q^T + b_q (W_q the first E rows of in_proj, then
    W_k, W_v) and Q_h its h-th block of d_h = E / H columns."""
    embed = query.shape[-1]
    d = embed // heads
    thirds = [slice(i * embed, (i + 1) * embed) for i in range(3)]
    q, k, v = (_affine_rows(x, in_weight[rows], None if in_bias is None else in_bias[rows])
               for x, rows in zip((query, key, value), thirds))
    concat = [[] for _ in q]
    for h in range(heads):
        block = range(h * d, (h + 1) * d)
        for i, row in enumerate(q):
            scores = [mpmath.fsum(row[c] * kj[c] for c in block) / mpmath.sqrt(d) for kj in k]
            peak = max(scores)
            exps = [mpmath.exp(s - peak) for s in scores]
            weights = [e / mpmath.fsum(exps) for e in exps]
            concat[i] += [mpmath.fsum(p * vj[c] for p, vj in zip(weights, v)) for c in block]
    return [[mpmath.fsum(row[c] * mp(out_weight[r, c]) for c in range(embed))
             + (0 if out_bias is None else mp(out_bias[r])) for r in range(embed)]
            for row in concat]


def _carried_affine(x, weight, bias, dtype):
    """F.linear replayed: each output a sum of its E products and the bias, in any order."""
    return [[Carried.total([xc * Carried.exact(weight[r, c], dtype) for c, xc in enumerate(row)]
                           + ([] if bias is None else [Carried.exact(bias[r], dtype)]))
             for r in range(weight.shape[0])] for row in x]


def _carried_softmax(scores, dtype):
    """The engine's softmax of computed scores (Carried): p_j = softmax(exact scores)_j, moved
    by a factor within e^{+-2E} by the scores' errors (E the largest), then the softmax's own
    rounding, relative gamma_{S+2L+2} (1 + spread) (the module docstring's; the spread of the
    computed scores is within that of the exact ones plus 2E)."""
    values = [s.value for s in scores]
    peak = max(values)
    exps = [mpmath.exp(s - peak) for s in values]
    total = mpmath.fsum(exps)
    largest = max(s.error for s in scores)
    spread = max(peak - s for s in values) + 2 * largest
    rel = _softmax_relative_error(largest, spread, len(scores), dtype)
    return [Carried(e / total, e / total * rel + underflow(1, dtype), dtype) for e in exps]


def _carried_scale(d, dtype):
    """1.0 / math.sqrt(d) (two float64 roundings), then cast to the scores' dtype."""
    value = 1 / mpmath.sqrt(d)
    error = gamma(2, F64) * value
    if numpy.dtype(dtype) != numpy.dtype(F64):
        error += gamma(1, dtype) * (value + error)
    return Carried(value, error, dtype)


def _multihead_replay(heads, query, key, value, in_weight, in_bias, out_weight, out_bias, dtype):
    """The layer's arithmetic for one batch element replayed in ``Carried``: the projections
    (F.linear), each head's scores (a dot product of d_h terms, times the scale), softmax,
    the weighted sum of the values (S terms), the output projection (F.linear)."""
    embed = query.shape[-1]
    d = embed // heads
    thirds = [slice(i * embed, (i + 1) * embed) for i in range(3)]
    q, k, v = (_carried_affine(Carried.array(x, dtype), in_weight[rows],
                               None if in_bias is None else in_bias[rows], dtype)
               for x, rows in zip((query, key, value), thirds))
    scale = _carried_scale(d, dtype)
    concat = [[] for _ in q]
    for h in range(heads):
        block = range(h * d, (h + 1) * d)
        for i, row in enumerate(q):
            weights = _carried_softmax([Carried.total([row[c] * kj[c] for c in block]) * scale
                                        for kj in k], dtype)
            concat[i] += [Carried.total([p * vj[c] for p, vj in zip(weights, v)]) for c in block]
    return _carried_affine(concat, out_weight, out_bias, dtype)


_MHA_RNG = numpy.random.default_rng(7)


def _pinned_array(*shape):
    """Pinned entries in [-1, 1] on a grid of 1/16 (float32s), seeded: no two heads alike."""
    return _MHA_RNG.integers(-16, 17, size=shape) / 16.0


# the MAE's call (batch-first self-attention) with E = 4 in two heads of two columns and
# three tokens (a split into interleaved columns, a merge with the head axis last or left in
# place, sqrt(E) for sqrt(d_h) and V projected with K's weights all differ there); and a
# cross-attention of three heads of two columns, one query, two keys, the (L, N, E) layout,
# no biases
_PINNED_MHA = [
    {"heads": 2, "query": _pinned_array(2, 3, 4), "in_weight": _pinned_array(12, 4),
     "in_bias": _pinned_array(12) / 2, "out_weight": _pinned_array(4, 4),
     "out_bias": _pinned_array(4) / 2, "batch_first": True},
    {"heads": 3, "query": _pinned_array(1, 1, 6), "key": _pinned_array(1, 2, 6),
     "value": _pinned_array(1, 2, 6), "in_weight": _pinned_array(18, 6), "in_bias": None,
     "out_weight": _pinned_array(6, 6), "out_bias": None, "batch_first": False}]
_PINNED_MHA[0]["key"] = _PINNED_MHA[0]["value"] = _PINNED_MHA[0]["query"]


@statement("multiheadAttention_value", about=(f"{LAYER}:forward",), given=_multihead_inputs(),
           max_examples=15, examples=_PINNED_MHA)
def multihead_attention_value(check, heads, query, key, value, in_weight, in_bias, out_weight,
                              out_bias, batch_first):
    """MultiheadAttention(E, H)(X_q, X_k, X_v) = concat_h(softmax(Q_h K_h^T / sqrt(d_h)) V_h)
    W_o^T + b_o, Q_h the h-th block of d_h = E / H columns of X_q W_q^T + b_q (likewise K_h,
    V_h; W_q, W_k, W_v the thirds of in_proj_weight), per batch element, in either layout,
    against mpmath; bound: the layer's arithmetic replayed with a running error bound
    (projections, scores, softmax, the values' sum, the output projection)."""
    from minilean.nn import MultiheadAttention
    embed = query.shape[-1]
    state = {"in_proj_weight": in_weight, "out_proj.weight": out_weight}
    if in_bias is not None:
        state.update({"in_proj_bias": in_bias, "out_proj.bias": out_bias})
    arguments = (in_weight, in_bias, out_weight, out_bias)
    references = [_multihead_formula(heads, query[n], key[n], value[n], *arguments)
                  for n in range(query.shape[0])]
    for dtype in ENGINE_DTYPES:
        layer = MultiheadAttention(embed, heads, bias=in_bias is not None,
                                   batch_first=batch_first).to(dtype=dtype)
        layer.load_state_dict({name: array.astype(dtype) for name, array in state.items()})
        replays = [_multihead_replay(heads, query[n], key[n], value[n], *arguments, dtype)
                   for n in range(query.shape[0])]
        with check.reference():
            for n, (replay, reference) in enumerate(zip(replays, references)):
                values = [c.value for row in replay for c in row]
                check.close(values, [r for row in reference for r in row],
                            [mp_tolerance(r) for row in reference for r in row],
                            f"replay = formula, batch element {n}")
        # (N, L, E), or (L, N, E) without batch_first, as the layer reads it
        inputs = [engine(x if batch_first else x.transpose(1, 0, 2), dtype)
                  for x in (query, key, value)]
        if key is query:  # the MAE's self-attention: one tensor three times
            inputs = [inputs[0]] * 3
        out, weights = layer(*inputs, need_weights=False)
        what = f"multi-head attention, E = {embed}, H = {heads} ({dtype.__name__})"
        expected_shape = query.shape if batch_first else (query.shape[1], query.shape[0], embed)
        check.holds(weights is None and out.dtype == dtype
                    and tuple(out.shape) == expected_shape,
                    f"{what}: output is {out.dtype} {tuple(out.shape)}, weights {weights}")
        computed = host(out) if batch_first else host(out).transpose(1, 0, 2)
        check.close(computed, [[r for row in reference for r in row] for reference in references],
                    [[c.error for row in replay for c in row] for replay in replays], what)


def _split_heads(layout):
    """MultiheadAttention._heads with the projection split into heads by ``layout(projected,
    batch, length, heads, d)`` -> (N, H, T, D)."""
    def broken(self, x, which):
        from minilean.nn import functional as F
        rows = slice(which * self.embed_dim, (which + 1) * self.embed_dim)
        bias = None if self.in_proj_bias is None else self.in_proj_bias[rows]
        projected = F.linear(x, self.in_proj_weight[rows], bias)  # (N, T, E)
        batch, length, _ = x.shape
        return layout(projected, batch, length, self.num_heads, self.head_dim)
    return broken


@mutant("heads split from interleaved columns", f"{LAYER}._heads",
        caught_by=["multiheadAttention_value"])
def heads_interleaved(original):
    """MultiheadAttention's projection split as (N, T, D, H): head h takes the columns h, h + H,
    h + 2H, ... instead of the block h d_h .. (h + 1) d_h - 1 (one head, or heads of one
    column, hide it)."""
    return _split_heads(lambda projected, batch, length, heads, d: projected.reshape(
        batch, length, d, heads).permute(0, 3, 1, 2))  # (N, T, D, H) -> (N, H, T, D)


@mutant("heads split by reshaping tokens into heads", f"{LAYER}._heads",
        caught_by=["multiheadAttention_value"])
def heads_reshaped_across_tokens(original):
    """MultiheadAttention's projection (N, T, E) reshaped straight to (N, H, T, D), without
    the transpose: each head's rows mix the columns of several tokens (one head hides it)."""
    return _split_heads(lambda projected, batch, length, heads, d: projected.reshape(
        batch, heads, length, d))


@mutant("value projected with the key's weights", f"{LAYER}._heads",
        caught_by=["multiheadAttention_value"])
def value_with_key_weights(original):
    """MultiheadAttention's values projected with the second third of in_proj (the keys')
    instead of the third: V = X_v W_k^T + b_k."""
    def broken(self, x, which):
        return original(self, x, 1 if which == 2 else which)
    return broken


def _attended_forward(original, merge, scale):
    """MultiheadAttention.forward without masks or dropout (the MAE's call), the heads merged
    by ``merge(heads (N, H, L, D), batch, length, E)`` and the scores scaled by
    ``scale(layer)``; with a mask or dropout, the original."""
    def broken(self, query, key, value, *, attn_mask=None, key_padding_mask=None,
               need_weights=True, average_attn_weights=True):
        from minilean.nn import functional as F
        if attn_mask is not None or key_padding_mask is not None or (self.training
                                                                      and self.dropout):
            return original(self, query, key, value, attn_mask=attn_mask,
                            key_padding_mask=key_padding_mask, need_weights=need_weights,
                            average_attn_weights=average_attn_weights)
        if not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        batch, length, _ = query.shape
        q, k, v = self._heads(query, 0), self._heads(key, 1), self._heads(value, 2)
        weights = F.attention_weights(q, k, scale=scale(self))  # (N, H, L, S)
        output = self.out_proj(merge(weights @ v, batch, length, self.embed_dim))
        if not self.batch_first:
            output = output.transpose(0, 1)
        if not need_weights:
            return output, None
        return output, (weights.mean(dim=1) if average_attn_weights else weights)
    return broken


def _merged_in_order(heads, batch, length, embed):
    return heads.permute(0, 2, 1, 3).reshape(batch, length, embed)  # (N, L, H, D) -> (N, L, E)


def _head_scale(layer):
    return 1.0 / math.sqrt(layer.head_dim)


@mutant("heads merged with the head axis last", f"{LAYER}.forward",
        caught_by=["multiheadAttention_value"])
def heads_merged_interleaved(original):
    """MultiheadAttention's heads merged as (N, L, D, H): column c of head h lands at c H + h
    instead of h d_h + c (one head, or heads of one column, hide it)."""
    return _attended_forward(original, lambda heads, batch, length, embed: heads.permute(
        0, 2, 3, 1).reshape(batch, length, embed), _head_scale)  # (N, L, D, H) -> (N, L, E)


@mutant("heads merged without moving the head axis", f"{LAYER}.forward",
        caught_by=["multiheadAttention_value"])
def heads_merged_unpermuted(original):
    """MultiheadAttention's heads (N, H, L, D) reshaped straight to (N, L, E): each token's row
    mixes several tokens of one head (one head, or one token, hides it)."""
    return _attended_forward(original, lambda heads, batch, length, embed: heads.reshape(
        batch, length, embed), _head_scale)


@mutant("heads scaled by sqrt(d_model)", f"{LAYER}.forward",
        caught_by=["multiheadAttention_value"])
def heads_scaled_by_model_width(original):
    """MultiheadAttention's scores scaled by 1 / sqrt(E), the model's width, instead of
    1 / sqrt(d_h), the head's (one head hides it)."""
    return _attended_forward(original, _merged_in_order,
                             lambda layer: 1.0 / math.sqrt(layer.embed_dim))
