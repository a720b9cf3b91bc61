"""minilean.nn.functional: the composites (losses, dropout, embedding, attention) checked by
finite differences in float64 and against PyTorch's functional forms when torch is installed."""
import re

import numpy
import pytest

import minilean as ml
from minilean.autograd import gradcheck
from minilean.nn import functional as F


def _tensor(rng, *shape, requires_grad=True):
    return ml.tensor(rng.standard_normal(shape), requires_grad=requires_grad)


def test_reexports_are_the_primitive_ops():
    from minilean.autograd import conv, elementwise, norm, reduce, shape
    assert F.conv2d is conv.conv2d and F.relu is elementwise.relu
    assert F.softmax is reduce.softmax and F.layer_norm is norm.layer_norm and F.pad is shape.pad
    for name in ("silu", "gelu", "sigmoid", "tanh", "leaky_relu", "log_softmax", "group_norm",
                 "conv_transpose2d", "avg_pool2d", "max_pool2d", "interpolate", "mse_loss"):
        assert callable(getattr(F, name)), name


# --- gradients of the composites (float64 finite differences) ------------------------------

def _bool_mask(rng, shape):
    mask = rng.random(shape) < 0.4
    mask[..., 0] = True  # every query keeps at least one key, so no row is all -inf
    return mask


# constants drawn once, at import: gradcheck calls each function many times and they must not
# change; each from a seed of its own, so none depends on which others are drawn
TARGET_4D = ml.tensor(numpy.random.default_rng(1).integers(0, 3, (2, 2, 2)))
TARGET_PROBABILITIES = ml.tensor(numpy.random.default_rng(2).dirichlet(numpy.ones(3), 4))
BOOL_MASK = ml.tensor(_bool_mask(numpy.random.default_rng(3), (3, 5)))
FLOAT_MASK = ml.tensor(numpy.random.default_rng(4).standard_normal((2, 1, 3, 5)))


@pytest.mark.parametrize("name, fn, shapes", [
    ("cross_entropy 2d", lambda x: F.cross_entropy(x, ml.tensor([2, 0, 1, 2])), [(4, 3)]),
    ("cross_entropy 4d sum", lambda x: F.cross_entropy(x, TARGET_4D, reduction="sum"), [(2, 3, 2, 2)]),
    ("cross_entropy probabilities",
     lambda x: F.cross_entropy(x, TARGET_PROBABILITIES, reduction="none"),
     [(4, 3)]),
    ("bce_with_logits", lambda x, y: F.binary_cross_entropy_with_logits(x, y), [(3, 4), (3, 4)]),
    ("l1_loss", lambda x, y: F.l1_loss(x, y, reduction="sum"), [(3, 4), (3, 4)]),
    ("linear", lambda x, w, b: F.linear(x, w, b), [(2, 3, 4), (5, 4), (5,)]),
    ("attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(2, 3, 4), (2, 5, 4), (2, 5, 2)]),
    ("attention bool mask", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=BOOL_MASK), [(2, 3, 4), (2, 5, 4), (2, 5, 2)]),
    ("attention float mask", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=FLOAT_MASK),
     [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)]),
    ("attention causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     [(3, 4), (3, 4), (3, 2)]),
])
def test_composite_gradients_match_finite_differences(rng, name, fn, shapes):
    inputs = [_tensor(rng, *shape) for shape in shapes]
    assert gradcheck(fn, inputs), name


def test_cross_entropy_takes_class_probabilities_in_an_array_as_in_a_tensor(rng):
    """An array of them is a constant in the logits' dtype (as in the binary ops), and gives
    what a tensor of them in that dtype gives."""
    logits = ml.tensor(rng.standard_normal((4, 3)).astype(numpy.float32), requires_grad=True)
    from_array = F.cross_entropy(logits, TARGET_PROBABILITIES.numpy(), reduction="none")
    from_tensor = F.cross_entropy(logits, TARGET_PROBABILITIES.detach().to(dtype=ml.float32),
                                  reduction="none")
    assert from_array.dtype == numpy.float32
    numpy.testing.assert_array_equal(from_array.numpy(), from_tensor.numpy())


def test_embedding_gradient_matches_finite_differences(rng):
    weight = _tensor(rng, 5, 3)
    indices = ml.tensor(numpy.array([[0, 4], [4, 2]]))
    assert gradcheck(lambda w: F.embedding(indices, w), [weight])


# --- against PyTorch ------------------------------------------------------------------------

def _pair(rng, *shape):
    torch = pytest.importorskip("torch")
    values = rng.standard_normal(shape)
    return ml.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)


def _assert_same(ours, theirs, inputs):
    numpy.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    for mine, reference in inputs:
        numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-6,
                                      atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_torch(rng, reduction):
    torch = pytest.importorskip("torch")
    logits, their_logits = _pair(rng, 2, 4, 3)
    target = rng.integers(0, 4, (2, 3))
    _assert_same(F.cross_entropy(logits, ml.tensor(target), reduction=reduction),
                 torch.nn.functional.cross_entropy(their_logits, torch.tensor(target),
                                                   reduction=reduction), [(logits, their_logits)])
    x, their_x = _pair(rng, 3, 5)
    y = rng.random((3, 5))
    _assert_same(F.binary_cross_entropy_with_logits(x, ml.tensor(y), reduction=reduction),
                 torch.nn.functional.binary_cross_entropy_with_logits(
                     their_x, torch.tensor(y), reduction=reduction), [(x, their_x)])
    a, their_a = _pair(rng, 3, 5)
    _assert_same(F.l1_loss(a, ml.tensor(y), reduction=reduction),
                 torch.nn.functional.l1_loss(their_a, torch.tensor(y), reduction=reduction),
                 [(a, their_a)])


@pytest.mark.parametrize("mask_kind", [None, "bool", "float", "causal"])
def test_attention_matches_torch(rng, mask_kind):
    torch = pytest.importorskip("torch")
    (q, tq), (k, tk), (v, tv) = (_pair(rng, 2, 2, *shape) for shape in ((3, 4), (5, 4), (5, 3)))
    mask = {None: None, "causal": None, "bool": _bool_mask(rng, (2, 1, 3, 5)),
            "float": rng.standard_normal((3, 5))}[mask_kind]
    causal = mask_kind == "causal"
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ml.tensor(mask),
                                          is_causal=causal)
    theirs = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=None if mask is None else torch.tensor(mask), is_causal=causal)
    _assert_same(ours, theirs, [(q, tq), (k, tk), (v, tv)])


# --- behaviour ------------------------------------------------------------------------------

def test_attention_of_a_query_masked_by_a_huge_finite_float_is_torchs(rng):
    """A float mask of a huge finite negative (PyTorch code masks with finfo.min) leaves finite
    scores: the query attends to its keys as in PyTorch (about alike), not to none (a mask
    of -inf does that)."""
    torch = pytest.importorskip("torch")
    (q, tq), (k, tk), (v, tv) = (_pair(rng, 2, *shape) for shape in ((3, 4), (5, 4), (5, 3)))
    mask = rng.standard_normal((3, 5))
    mask[1] = -1e300
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    theirs = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                              attn_mask=torch.tensor(mask))
    _assert_same(ours, theirs, [(q, tq), (k, tk), (v, tv)])
    assert (ours.numpy()[:, 1] != 0).all()


def test_attention_with_is_causal_and_a_boolean_mask_keeps_the_keys_both_keep(rng):
    """PyTorch refuses the two together; here they are one mask, each query attending to the
    keys both allow (neither is dropped: a causal model with a padding mask still may not see
    the keys after its query)."""
    q, k = ml.tensor(rng.standard_normal((2, 4, 3))), ml.tensor(rng.standard_normal((2, 4, 3)))
    mask = rng.random((4, 4)) < 0.7
    numpy.fill_diagonal(mask, True)  # a key for every query
    both = F.attention_weights(q, k, mask, is_causal=True)
    as_one = F.attention_weights(q, k, mask & numpy.tril(numpy.ones((4, 4), bool)))
    numpy.testing.assert_array_equal(both.numpy(), as_one.numpy())
    after_the_query = numpy.triu(numpy.ones((4, 4), bool), 1)
    assert (both.numpy()[..., after_the_query] == 0).all()

def test_bce_with_logits_gradient_is_sigmoid_minus_target_at_zero_too():
    """d/dx = sigma(x) - y everywhere, also at x = 0 (a zero-initialised head's logits), where
    a form through the kinks of max(x, 0) and |x| gives -y."""
    logits = ml.tensor(numpy.array([0.0, 0.0, 0.0, 3.0, -40.0]), requires_grad=True)
    target = numpy.array([0.0, 1.0, 0.3, 1.0, 0.0])
    F.binary_cross_entropy_with_logits(logits, ml.tensor(target), reduction="sum").backward()
    sigmoid = 1 / (1 + numpy.exp(-logits.numpy()))
    numpy.testing.assert_allclose(logits.grad.numpy(), sigmoid - target, rtol=1e-12, atol=1e-300)


def test_cross_entropy_of_huge_logits_keeps_their_differences():
    """log_softmax subtracts the peak before adding log sum: log(sum) + 1e6 would round the
    differences of 1 between the logits away in float32."""
    logits = numpy.array([[1e6, 1e6 + 1, 1e6 - 1]], dtype=numpy.float32)
    expected = numpy.log(numpy.exp([0.0, 1.0, -1.0]).sum()) - 1.0  # -log softmax at class 1
    loss = F.cross_entropy(ml.tensor(logits), numpy.array([1]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    wide = ml.tensor(numpy.array([[1e30, 1e30, -1e30]])).log_softmax(1).numpy()
    numpy.testing.assert_allclose(wide[0, :2], [-numpy.log(2)] * 2, rtol=1e-15)


def test_embedding_indices_outside_the_table_are_an_error():
    weight = ml.tensor(numpy.arange(6.0).reshape(3, 2))
    for indices in ([-1], [0, 3]):
        with pytest.raises(IndexError, match=r"embedding indices must be in \[0, 3\), got values "
                                             rf"from {min(indices)} to {max(indices)}"):
            F.embedding(numpy.array(indices), weight)
    numpy.testing.assert_array_equal(F.embedding(numpy.array([2, 0]), weight).numpy(),
                                     [[4, 5], [0, 1]])


def test_embedding_takes_indices_given_as_a_list_or_an_int():
    """A list failed as "'list' object has no attribute 'dtype'" (and an Embedding layer with
    it); it is read as ``ml.tensor`` reads it, and checked as any indices."""
    weight = ml.tensor(numpy.arange(6.0).reshape(3, 2))
    numpy.testing.assert_array_equal(F.embedding([[2, 0]], weight).numpy(), [[[4, 5], [0, 1]]])
    numpy.testing.assert_array_equal(F.embedding(1, weight).numpy(), [2, 3])
    with pytest.raises(TypeError, match="^embedding indices must be integers, got float64$"):
        F.embedding([0.0, 1.0], weight)
    with pytest.raises(IndexError, match=r"^embedding indices must be in \[0, 3\), got values "
                                         r"from 0 to 3$"):
        F.embedding([0, 3], weight)


def test_embedding_takes_uint8_indices_as_positions():
    """Indices of any integer dtype pick rows: a uint8 index array, which PyTorch's x[...]
    reads as a mask and minilean's indexing refuses, is read as positions here."""
    weight = ml.tensor(numpy.arange(6.0).reshape(3, 2))
    numpy.testing.assert_array_equal(F.embedding(numpy.array([2, 0], numpy.uint8), weight).numpy(),
                                     [[4, 5], [0, 1]])


def test_embedding_refuses_a_weight_that_is_not_a_table():
    """A 1-D weight was accepted (its "rows" were scalars); PyTorch requires 2-D."""
    with pytest.raises(ValueError, match=r"^embedding weight must be 2-D \(num_embeddings, "
                                         r"embedding_dim\), got shape \(3,\)$"):
        F.embedding(ml.tensor([0]), ml.randn(3))


def test_a_learned_attention_bias_and_soft_targets_get_gradients(rng):
    """A float attn_mask tensor and a tensor of class probabilities are inputs of the graph,
    as in PyTorch (a relative-position bias is trained through its mask)."""
    q, k, v = (_tensor(rng, 1, 2, 4, requires_grad=False) for _ in range(3))
    bias = _tensor(rng, 2, 2)
    assert gradcheck(lambda b: F.scaled_dot_product_attention(q, k, v, attn_mask=b), [bias])
    probabilities = ml.tensor(numpy.full((2, 3), 1 / 3), requires_grad=True)
    logits = _tensor(rng, 2, 3, requires_grad=False)
    assert gradcheck(lambda p: F.cross_entropy(logits, p), [probabilities])


def test_a_query_with_no_key_to_attend_to_gets_zero_weights(rng):
    """Not the nan of a softmax over nothing, which would also reach v's gradient through the
    other rows' backward (PyTorch's attention gives 0 too)."""
    q, k, v = _tensor(rng, 1, 2, 4), _tensor(rng, 1, 3, 4), _tensor(rng, 1, 3, 4)
    keep = numpy.array([[True, False, True], [False, False, False]])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    numpy.testing.assert_array_equal(out.numpy()[0, 1], numpy.zeros(4))
    weights = F.attention_weights(q, k, keep).numpy()[0, 0]
    scores = (q.numpy()[0, 0] @ k.numpy()[0, [0, 2]].T) / 2.0
    numpy.testing.assert_allclose(weights[[0, 2]], numpy.exp(scores) / numpy.exp(scores).sum())
    out.sum().backward()
    assert all(numpy.isfinite(t.grad.numpy()).all() for t in (q, k, v))
    assert gradcheck(lambda *qkv: F.scaled_dot_product_attention(*qkv, attn_mask=keep), [q, k, v])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_query_a_float_mask_leaves_no_key_gets_zero_weights_as_in_pytorch(rng, as_tensor):
    """A float mask of -inf across a query's row gave that query nan (0/0), and nan gradients
    to everything; PyTorch's scaled_dot_product_attention gives 0, as for a boolean mask."""
    torch = pytest.importorskip("torch")
    (q, their_q), (k, their_k), (v, their_v) = (_pair(rng, 1, 2, length, 4)
                                                for length in (3, 5, 5))
    mask = rng.standard_normal((3, 5))
    mask[1] = -numpy.inf
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=ml.tensor(mask) if as_tensor
                                          else mask)
    theirs = torch.nn.functional.scaled_dot_product_attention(their_q, their_k, their_v,
                                                              attn_mask=torch.tensor(mask))
    numpy.testing.assert_array_equal(ours.numpy()[:, :, 1], numpy.zeros((1, 2, 4)))
    _assert_same(ours, theirs, [(q, their_q), (k, their_k), (v, their_v)])
    attention = ml.nn.MultiheadAttention(4, 2, batch_first=True)  # the same through its masks
    x = ml.tensor(rng.standard_normal((2, 3, 4)))
    padding = numpy.zeros((2, 3))
    padding[1] = -numpy.inf
    _, weights = attention(x, x, x, attn_mask=numpy.zeros((3, 3)), key_padding_mask=padding)
    numpy.testing.assert_array_equal(weights.numpy()[1], numpy.zeros((3, 3)))
    assert numpy.isfinite(weights.numpy()).all()
    # a boolean padding mask beside a float attn_mask blocks by -inf (a large negative number
    # would leave the fully padded sample uniform weights, 1/3 each)
    _, weights = attention(x, x, x, attn_mask=numpy.zeros((3, 3)),
                           key_padding_mask=numpy.isinf(padding))
    numpy.testing.assert_array_equal(weights.numpy()[1], numpy.zeros((3, 3)))


def test_multihead_attention_returns_the_weights_its_output_used(rng):
    """In training with dropout, the weights after dropout (as PyTorch's): they and the values
    give the output."""
    attention = ml.nn.MultiheadAttention(4, 2, dropout=0.5, batch_first=True)
    x = _tensor(rng, 2, 3, 4, requires_grad=False)
    ml.manual_seed(7)
    out, weights = attention(x, x, x, average_attn_weights=False)  # weights (N, H, L, S)
    assert (weights.numpy() == 0).any()  # 36 weights, each dropped with probability 1/2
    heads = weights @ attention._heads(x, 2)  # (N, H, L, D)
    merged = heads.permute(0, 2, 1, 3).reshape(2, 3, 4)
    numpy.testing.assert_allclose(attention.out_proj(merged).numpy(), out.numpy(), rtol=1e-12)
    ml.manual_seed(7)  # the same draws: the weights averaged over the heads are those too
    same_out, averaged = attention(x, x, x)
    numpy.testing.assert_array_equal(same_out.numpy(), out.numpy())
    numpy.testing.assert_allclose(averaged.numpy(), weights.numpy().mean(1), rtol=1e-6)
    attention.eval()  # no dropout: every query's weights are a softmax, none dropped
    _, weights = attention(x, x, x, average_attn_weights=False)
    assert (weights.numpy() > 0).all()
    numpy.testing.assert_allclose(weights.numpy().sum(-1), numpy.ones((2, 2, 3)), rtol=1e-6)


def test_attention_mask_errors(rng):
    x = ml.tensor(rng.standard_normal((2, 3, 4)))
    # an integer mask could mean keep-or-drop or an additive bias: refused, as in PyTorch
    with pytest.raises(TypeError, match="attn_mask must be boolean .* or floating .* got int64"):
        F.scaled_dot_product_attention(x, x, x, attn_mask=numpy.zeros((3, 3), dtype=numpy.int64))
    attention = ml.nn.MultiheadAttention(4, 2, batch_first=True)
    # (S,), (1, S), (L, 1) and (N * H, 1, S) broadcast: PyTorch refuses every shape but these
    for shape in ((2, 3, 3), (3,), (1, 3), (3, 1), (4, 1, 3)):
        with pytest.raises(ValueError, match=re.escape(
                f"attn_mask must have shape (L, S) = (3, 3) or (batch * num_heads, L, S) = "
                f"(4, 3, 3), got {shape}")):
            attention(x, x, x, attn_mask=numpy.zeros(shape, dtype=bool))
    # an integer key_padding_mask was added to the scores next to a float attn_mask: the keys
    # it meant to block got more weight
    for name, masks in (
            ("key_padding_mask", {"attn_mask": numpy.zeros((3, 3), numpy.float32),
                                  "key_padding_mask": numpy.zeros((2, 3), numpy.int64)}),
            ("attn_mask", {"attn_mask": numpy.zeros((3, 3), numpy.int64),
                           "key_padding_mask": numpy.zeros((2, 3), bool)})):
        with pytest.raises(TypeError, match=f"^{name} must be boolean .* or floating .*, got "
                                            f"int64$"):
            attention(x, x, x, **masks)
    # a key and value of batch 1 broadcast against a query of batch 2
    with pytest.raises(ValueError, match=re.escape(
            "MultiheadAttention: key and value must have the same batch and length, and the "
            "query that batch; got query (2, 3, 4), key (1, 5, 4), value (1, 5, 4)")):
        attention(x, ml.ones(1, 5, 4), ml.ones(1, 5, 4))
    with pytest.raises(ValueError, match=re.escape("got query (2, 3, 4), key (2, 5, 4), value "
                                                   "(2, 4, 4)")):
        attention(x, ml.ones(2, 5, 4), ml.ones(2, 4, 4))


@pytest.mark.parametrize("shape, dtype", [((3, 4), bool), ((3, 4), numpy.float32),
                                          ((3, 1, 5), numpy.float32), ((3, 2, 3, 5), bool)])
def test_attention_names_a_mask_that_does_not_broadcast_to_the_scores(rng, shape, dtype):
    """The error came from ``where`` or ``+`` with no word of attn_mask; a mask of more batch
    axes than the scores enlarged the output, where PyTorch refuses it."""
    query = ml.tensor(rng.standard_normal((2, 3, 4)))
    key = ml.tensor(rng.standard_normal((2, 5, 4)))
    with pytest.raises(ValueError, match=re.escape(
            f"attn_mask of shape {shape} does not broadcast to the scores' shape (..., L, S) = "
            f"(2, 3, 5)")):
        F.scaled_dot_product_attention(query, key, key, attn_mask=numpy.zeros(shape, dtype))


def test_attention_names_a_scale_that_is_no_number(rng):
    x = ml.tensor(rng.standard_normal((2, 3, 4)))
    with pytest.raises(TypeError, match="^attention scale must be a number, got 'a'$"):
        F.scaled_dot_product_attention(x, x, x, scale="a")


def test_attention_masks_given_as_lists_act_as_arrays(rng):
    """A list mask failed as "'list' object has no attribute 'dtype'"."""
    x = ml.tensor(rng.standard_normal((2, 3, 4)))
    keep = [[True, False, True], [False, True, True], [True, True, False]]
    for mask in (keep, [[0.5, -1.0, 0.0]] * 3):
        numpy.testing.assert_array_equal(
            F.scaled_dot_product_attention(x, x, x, attn_mask=mask).numpy(),
            F.scaled_dot_product_attention(x, x, x, attn_mask=numpy.array(mask)).numpy())
    attention = ml.nn.MultiheadAttention(4, 2, batch_first=True)
    masks = {"attn_mask": [[not k for k in row] for row in keep],
             "key_padding_mask": [[False, False, True], [False, False, False]]}
    out, weights = attention(x, x, x, **masks)
    expected = attention(x, x, x, **{name: numpy.array(mask) for name, mask in masks.items()})
    numpy.testing.assert_array_equal(out.numpy(), expected[0].numpy())
    numpy.testing.assert_array_equal(weights.numpy(), expected[1].numpy())


def test_attention_dropout_p_drops_the_weights_in_any_mode(rng):
    """dropout_p drops each attention weight where the seeded generator's draw is below p and
    scales the rest by 1 / (1 - p), with no training flag (PyTorch's scaled_dot_product_attention
    drops whenever dropout_p > 0); 0 drops none."""
    q, k, v = (rng.standard_normal(shape) for shape in ((2, 3, 4), (2, 5, 4), (2, 5, 3)))
    scores = q @ k.transpose(0, 2, 1) / 2.0  # 1 / sqrt(4)
    weights = numpy.exp(scores) / numpy.exp(scores).sum(-1, keepdims=True)
    kept = numpy.random.default_rng(9).random((2, 3, 5)) >= 0.4
    ml.manual_seed(9)
    out = F.scaled_dot_product_attention(ml.tensor(q), ml.tensor(k), ml.tensor(v), dropout_p=0.4)
    numpy.testing.assert_allclose(out.numpy(), (weights * kept / 0.6) @ v, rtol=1e-12)
    numpy.testing.assert_allclose(
        F.scaled_dot_product_attention(ml.tensor(q), ml.tensor(k), ml.tensor(v)).numpy(),
        weights @ v, rtol=1e-12)


def test_attention_over_no_tokens_is_empty():
    q = ml.tensor(numpy.zeros((2, 0, 8)), requires_grad=True)
    out = F.scaled_dot_product_attention(q, q, q)
    assert out.shape == (2, 0, 8)
    out.sum().backward()
    assert q.grad.shape == (2, 0, 8)


def test_attention_with_no_keys_gives_zeros(rng):
    """A weighted sum over no values is 0 (as in PyTorch), and so is its query's gradient."""
    q = ml.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    k, v = (ml.tensor(numpy.zeros((2, 0, size)), requires_grad=True) for size in (4, 5))
    out = F.scaled_dot_product_attention(q, k, v)
    numpy.testing.assert_array_equal(out.numpy(), numpy.zeros((2, 3, 5)))
    out.sum().backward()
    numpy.testing.assert_array_equal(q.grad.numpy(), numpy.zeros((2, 3, 4)))
    assert k.grad.shape == (2, 0, 4) and v.grad.shape == (2, 0, 5)


def test_attention_with_heads_of_size_0_averages_the_values_as_torch(rng):
    """Queries and keys of size 0 score every key 0: uniform weights, the values' mean (as in
    PyTorch); the default scale 1 / sqrt(0) raised ZeroDivisionError."""
    q = ml.tensor(numpy.zeros((2, 3, 0)), requires_grad=True)
    k = ml.tensor(numpy.zeros((2, 4, 0)), requires_grad=True)
    v = ml.tensor(rng.standard_normal((2, 4, 5)), requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v)
    expected = numpy.broadcast_to(v.numpy().mean(axis=1, keepdims=True), (2, 3, 5))
    numpy.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    out.sum().backward()
    numpy.testing.assert_allclose(v.grad.numpy(), numpy.full((2, 4, 5), 0.75), rtol=1e-12)
    assert q.grad.shape == (2, 3, 0) and k.grad.shape == (2, 4, 0)


def test_bce_with_logits_is_finite_for_huge_logits():
    logits = ml.tensor([1000.0, -1000.0, 1000.0, -1000.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(logits, ml.tensor([1.0, 0.0, 0.0, 1.0]),
                                              reduction="none")
    numpy.testing.assert_allclose(loss.numpy(), [0.0, 0.0, 1000.0, 1000.0])
    loss.sum().backward()
    numpy.testing.assert_allclose(logits.grad.numpy(), [0.0, 0.0, 1.0, -1.0])


def test_cross_entropy_of_huge_logits_is_finite():
    loss = F.cross_entropy(ml.tensor([[1000.0, 0.0], [0.0, 1000.0]]), ml.tensor([1, 1]),
                           reduction="none")
    numpy.testing.assert_allclose(loss.numpy(), [1000.0, 0.0])


def test_cross_entropy_takes_the_memory_of_its_one_hot_rows_not_of_a_c_by_c_identity():
    """Two class indices among 8192 classes: their one-hot rows are 16 KiB; picked from
    eye(8192) they held 64 MiB at once (2.5 GB, and seconds a call, at 50,000 classes). The
    loss and gradient are those of the picked log-probabilities."""
    import tracemalloc
    logits = ml.zeros(2, 8192, requires_grad=True)
    tracemalloc.start()
    try:
        loss = F.cross_entropy(logits, ml.tensor([0, 8191]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 20, f"{peak / 2 ** 20:.0f} MiB at once"
    loss.backward()
    numpy.testing.assert_allclose(loss.item(), numpy.log(8192), rtol=1e-6)
    expected = numpy.full((2, 8192), 1 / 8192 / 2, numpy.float32)
    expected[0, 0] -= 0.5
    expected[1, 8191] -= 0.5
    numpy.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("logits_dtype, target_dtype", [("float32", "float64"),
                                                        ("float64", "float32")])
def test_cross_entropy_of_probabilities_takes_the_wider_dtype_like_torch(rng, logits_dtype,
                                                                          target_dtype):
    """float64 probabilities with float32 logits were rounded to float32, and so was the loss;
    PyTorch promotes to float64 (log_softmax in the logits' dtype), each gradient in its
    input's dtype."""
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((4, 3)).astype(logits_dtype)
    target = rng.dirichlet(numpy.ones(3), 4).astype(target_dtype)
    ours = [ml.tensor(a, requires_grad=True) for a in (logits, target)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (logits, target)]
    loss = F.cross_entropy(*ours)
    expected = torch.nn.functional.cross_entropy(*theirs)
    loss.backward()
    expected.backward()
    assert loss.dtype == numpy.float64  # (a float32 log_softmax may differ in its last bit)
    numpy.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-6)
    for mine, reference in zip(ours, theirs):
        assert mine.grad.dtype == mine.dtype
        numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-6,
                                      atol=1e-7)  # float32 rounding, ~1e-8 at 0.01


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_of_probabilities_over_no_classes_is_torchs(reduction):
    """Each sample's loss is a sum over no classes, 0; PyTorch's mean divides by numel / C,
    0 / 0, and gives nan, where the mean of the per-sample zeros gave 0."""
    torch = pytest.importorskip("torch")
    with numpy.errstate(divide="ignore"):  # log_softmax over no classes takes log(0)
        loss = F.cross_entropy(ml.zeros(3, 0), ml.zeros(3, 0), reduction=reduction)
    expected = torch.nn.functional.cross_entropy(torch.zeros(3, 0), torch.zeros(3, 0),
                                                 reduction=reduction)
    numpy.testing.assert_array_equal(loss.numpy(), expected.numpy())
    assert loss.shape == tuple(expected.shape)


def test_cross_entropy_with_a_class_masked_to_minus_infinity_is_finite_like_torch():
    """A logit of -inf (a class masked out) has log-probability -inf; the target's term is
    picked, not multiplied by a one-hot, where -inf * 0 made the loss nan."""
    torch = pytest.importorskip("torch")
    logits = numpy.array([[0.0, -numpy.inf, 1.0], [2.0, 1.0, -numpy.inf]])
    target = numpy.array([0, 1])
    ours = ml.tensor(logits, dtype=ml.float64, requires_grad=True)
    theirs = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(ours, ml.tensor(target))
    expected = torch.nn.functional.cross_entropy(theirs, torch.tensor(target))
    loss.backward()
    expected.backward()
    assert numpy.isfinite(loss.item())
    numpy.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)
    numpy.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


def test_dropout_keeps_the_mean_zeroes_a_fraction_p_and_repeats_with_the_seed():
    x = ml.ones(100, 100)
    ml.manual_seed(5)
    first = F.dropout(x, 0.3).numpy()
    ml.manual_seed(5)
    numpy.testing.assert_array_equal(first, F.dropout(x, 0.3).numpy())
    assert abs((first == 0).mean() - 0.3) < 0.03
    assert abs(first.mean() - 1.0) < 0.05
    numpy.testing.assert_allclose(first[first != 0], 1 / 0.7, rtol=1e-6)
    # each element kept where the seeded generator's uniform draw is >= p (so kept with
    # probability 1 - p exactly): a wrong threshold passes the statistical bounds above
    kept = numpy.random.default_rng(5).random((100, 100)) >= 0.3
    numpy.testing.assert_array_equal(first != 0, kept)
    assert F.dropout(x, 0.3, training=False) is x
    assert (F.dropout(x, 1.0).numpy() == 0).all()


def test_dropout_with_p_zero_is_the_identity_and_draws_nothing_as_torchs():
    """p = 0 in training returns the input itself without a draw, as PyTorch's: the random
    numbers after it (the next layer's init, the next batch's noise) are those of a model
    without that dropout."""
    ml.manual_seed(5)
    x = ml.tensor([1, 2, 3])
    assert F.dropout(x, 0.0, training=True) is x
    after = ml.rand(4).numpy()
    ml.manual_seed(5)
    numpy.testing.assert_array_equal(ml.rand(4).numpy(), after)


@pytest.mark.parametrize("training", ["false", 0, None])
def test_dropout_refuses_a_training_flag_that_is_not_a_bool(training):
    """"false" (a flag read as text) is truthy: dropout ran. PyTorch refuses a non-bool."""
    with pytest.raises(TypeError, match=f"dropout's training must be a bool, got {training!r}"):
        F.dropout(ml.ones(4), 0.5, training=training)


@pytest.mark.parametrize("values", [[3] * 400, [True] * 400])
def test_dropout_of_integers_and_bools_is_float32_with_the_full_scale(values):
    """The scale 1/(1-p) was cast to the input's dtype: int(1/0.7) = 1, so an int64 input kept
    its values unscaled and lost 30% of its mean (PyTorch refuses integers here)."""
    ml.manual_seed(5)
    out = F.dropout(ml.tensor(values), 0.3).numpy()
    assert out.dtype == numpy.float32
    numpy.testing.assert_allclose(out[out != 0], float(values[0]) / 0.7, rtol=1e-6)


def test_dropout_gradient_is_the_mask():
    x = ml.ones(50, requires_grad=True)
    out = F.dropout(x, 0.5)
    out.sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), out.numpy())


@pytest.mark.parametrize("loss", [F.cross_entropy, F.binary_cross_entropy_with_logits,
                                  F.l1_loss, F.mse_loss])
def test_losses_refuse_pytorch_positional_weight(loss):
    """PyTorch's third argument is weight (or size_average): never read as the reduction."""
    logits = ml.randn(2, 3)
    target = ml.tensor([0, 2]) if loss is F.cross_entropy else ml.rand(2, 3)
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        loss(logits, target, ml.ones(3))


@pytest.mark.parametrize("name", ["l1_loss", "binary_cross_entropy_with_logits"])
def test_loss_shapes_that_do_not_broadcast_name_the_loss(name):
    """The error named the op inside the loss (sub, mul), which the caller never called."""
    with pytest.raises(ValueError, match=rf"^{name}: shapes \(3, 4\), \(5,\) do not broadcast "
                                         rf"together \(each axis, counted from the last, needs "
                                         rf"equal sizes or 1\)$"):
        getattr(F, name)(ml.randn(3, 4), ml.rand(5))


def test_functional_errors_name_the_bad_value():
    logits = ml.randn(2, 3)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\), got values from 0 to 3"):
        F.cross_entropy(logits, ml.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\), got values from -1 to 2"):
        F.cross_entropy(logits, ml.tensor([-1, 2]))
    with pytest.raises(ValueError, match="reduction must be one of .* got 'avg'"):
        F.l1_loss(logits, logits, reduction="avg")
    with pytest.raises(ValueError,
                       match="dropout probability must be a number in \\[0, 1\\], got -0.1"):
        F.dropout(logits, -0.1)
    with pytest.raises(TypeError, match="embedding indices must be integers, got float32"):
        F.embedding(logits, ml.randn(4, 2))
    with pytest.raises(ValueError, match=r"target shape \(2, 4\) does not fit input shape \(2, 3\)"):
        F.cross_entropy(logits, ml.randn(2, 4))
    with pytest.raises(ValueError, match=r"^cross_entropy target shape \(2,\) does not fit input "
                                         r"shape \(2, 3\) \(class indices of shape \(2,\) must "
                                         r"be integers, got float32\)$"):
        F.cross_entropy(logits, ml.tensor([0.0, 2.0]))


def test_cross_entropy_index_target_of_another_shape_is_named_as_given():
    """The error named the one-hot's shape, (2, 4) for a target of shape (2,), a value the
    caller never passed."""
    logits = ml.randn(3, 4)
    with pytest.raises(ValueError, match=r"^cross_entropy class-index target shape \(2,\) does "
                                         r"not fit input shape \(3, 4\): expected \(3,\)$"):
        F.cross_entropy(logits, ml.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^cross_entropy class-index target shape \(3, 4\) "
                                         r"does not fit input shape \(3, 4\): expected \(3,\)$"):
        F.cross_entropy(logits, numpy.zeros((3, 4), dtype=numpy.int64))
    with pytest.raises(ValueError, match=r"target shape \(2, 4\) does not fit input shape "
                                         r"\(2, 3, 5\): expected \(2, 5\)$"):
        F.cross_entropy(ml.randn(2, 3, 5), numpy.zeros((2, 4), dtype=numpy.int64))


# --- hypothesis-drawn shapes (size-1 dims and broadcasting included) ----------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SIZES = st.integers(1, 3)


@settings(max_examples=10)
@given(batch=SIZES, classes=st.integers(1, 4), extra=st.lists(SIZES, min_size=0, max_size=2),
       seed=st.integers(0, 2**16))
def test_cross_entropy_gradients_over_drawn_shapes(batch, classes, extra, seed):
    """(N, C) and (N, C, d1[, d2]) logits, N drawn (cross_entropy takes one batch axis)."""
    rng = numpy.random.default_rng(seed)
    logits = ml.tensor(rng.standard_normal([batch, classes] + extra), requires_grad=True)
    target = ml.tensor(rng.integers(0, classes, [batch] + extra))
    assert gradcheck(lambda x: F.cross_entropy(x, target, reduction="none"), [logits])


@settings(max_examples=10)
@given(shape=st.lists(SIZES, min_size=1, max_size=3), broadcast_dims=st.sets(st.integers(0, 2)),
       seed=st.integers(0, 2**16))
@pytest.mark.filterwarnings("ignore:.* target shape .* differs:UserWarning")  # broadcast on purpose
def test_elementwise_losses_over_drawn_broadcast_shapes(shape, broadcast_dims, seed):
    rng = numpy.random.default_rng(seed)
    target_shape = [1 if axis in broadcast_dims else size for axis, size in enumerate(shape)]
    target = rng.random(target_shape)
    # x - y at least 0.1 from 0, away from the kink of |.| that finite differences would straddle
    offset = (0.1 + rng.random(shape)) * rng.choice([-1.0, 1.0], shape)
    x = ml.tensor(target + offset, requires_grad=True)
    y = ml.tensor(target, requires_grad=True)
    assert gradcheck(lambda a: F.binary_cross_entropy_with_logits(a, y), [x])
    assert gradcheck(lambda a, b: F.l1_loss(a, b, reduction="sum"), [x, y])


@settings(max_examples=10)
@given(batch=st.lists(SIZES, min_size=0, max_size=2), length=SIZES, source=SIZES, dim=SIZES,
       mask_kind=st.sampled_from([None, "bool", "float"]), seed=st.integers(0, 2**16))
def test_attention_gradients_over_drawn_shapes(batch, length, source, dim, mask_kind, seed):
    rng = numpy.random.default_rng(seed)
    q, k, v = (ml.tensor(rng.standard_normal(batch + shape), requires_grad=True)
               for shape in ([length, dim], [source, dim], [source, dim]))
    mask = None
    if mask_kind == "bool":
        keep = rng.random((length, source)) < 0.5
        keep[:, 0] = True
        mask = ml.tensor(keep)
    elif mask_kind == "float":
        mask = ml.tensor(rng.standard_normal((1, source)))
    assert gradcheck(lambda *qkv: F.scaled_dot_product_attention(*qkv, attn_mask=mask), [q, k, v])


@settings(max_examples=10)
@given(index_shape=st.lists(SIZES, min_size=0, max_size=2), rows=st.integers(1, 4),
       leading=st.lists(SIZES, min_size=0, max_size=2), seed=st.integers(0, 2**16))
def test_embedding_and_linear_over_drawn_shapes(index_shape, rows, leading, seed):
    rng = numpy.random.default_rng(seed)
    weight = ml.tensor(rng.standard_normal((rows, 3)), requires_grad=True)
    indices = ml.tensor(rng.integers(0, rows, index_shape))
    assert gradcheck(lambda w: F.embedding(indices, w), [weight])
    x = ml.tensor(rng.standard_normal(leading + [3]), requires_grad=True)
    bias = ml.tensor(rng.standard_normal(2), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.linear(x, w, b),
                     [x, ml.tensor(rng.standard_normal((2, 3)), requires_grad=True), bias])


@pytest.mark.parametrize("loss", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits"])
def test_a_target_of_another_shape_warns_as_in_pytorch(loss):
    """(N, 1) predictions against (N,) targets broadcast to an (N, N) loss: no error, so a
    warning (PyTorch's) is the only sign of it."""
    with pytest.warns(UserWarning, match=r"target shape \(3,\) differs from input shape \(3, 1\)"):
        getattr(F, loss)(ml.ones(3, 1), ml.ones(3))
    assert getattr(F, loss)(ml.ones(3, 1), ml.ones(3, 1)).shape == ()  # no warning: checked


def test_cross_entropy_of_unbatched_logits_says_what_shape_it_needs():
    """(C,) logits, which PyTorch takes unbatched, failed with log_softmax's 'dim 1 is out of
    range', which names neither cross_entropy nor the shape it needs."""
    with pytest.raises(ValueError, match=r"input of shape \(N, C\) or \(N, C, d1, \.\.\.\), "
                                         r"got \(5,\) \(add a batch axis"):
        F.cross_entropy(ml.randn(5), ml.tensor(2))
