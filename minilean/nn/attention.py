"""MultiheadAttention: project to heads, attend in each, mix the heads back.

Inputs are (sequence, batch, embed_dim), PyTorch's default, or (batch, sequence, embed_dim)
with ``batch_first=True`` (keyword-only: PyTorch's fifth positional argument is
``add_bias_kv``); the attention weights are (batch, L, S) in both, as in PyTorch. Inputs are
3-D: PyTorch's unbatched (L, E) needs its batch axis here (``x.unsqueeze(1)``, or
``x.unsqueeze(0)`` with ``batch_first``).

Parameters match PyTorch's names and shapes, so weights copy across: ``in_proj_weight``
(3E, E) stacks the query, key and value projections, ``in_proj_bias`` (3E,), and
``out_proj`` a Linear(E, E). Init as PyTorch: xavier_uniform for ``in_proj_weight``, zero
biases. ``attn_mask`` and ``key_padding_mask`` follow *this module's* PyTorch convention,
which is the opposite of ``scaled_dot_product_attention``'s: a boolean True means "may NOT
attend"; a float mask is added to the scores. ``attn_mask``'s shape is (L, S) or
(N * num_heads, L, S), ``key_padding_mask``'s (N, S) (True marks the padding keys).
"""
import math

from minilean import backend
from minilean.autograd.tensor import Tensor
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.linear import Linear
from minilean.nn.module import Module, check_sizes, empty_parameter


class MultiheadAttention(Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, *, batch_first=False):
        super().__init__()
        check_sizes(embed_dim=embed_dim, num_heads=num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        F.check_probability(dropout)
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = init.xavier_uniform_(empty_parameter(3 * embed_dim, embed_dim))
        self.in_proj_bias = init.zeros_(empty_parameter(3 * embed_dim)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        if bias:
            init.zeros_(self.out_proj.bias)

    def _heads(self, x, which):
        """Project ``x`` (N, T, E) with the ``which``-th third of in_proj: (N, heads, T, head_dim)."""
        rows = slice(which * self.embed_dim, (which + 1) * self.embed_dim)
        bias = None if self.in_proj_bias is None else self.in_proj_bias[rows]
        projected = F.linear(x, self.in_proj_weight[rows], bias)  # (N, T, E)
        batch, length, _ = x.shape
        split = projected.reshape(batch, length, self.num_heads, self.head_dim)  # (N, T, H, D)
        return split.permute(0, 2, 1, 3)  # (N, H, T, D)

    def _sdpa_mask(self, attn_mask, key_padding_mask, batch, length, source, dtype):
        """PyTorch's two MHA masks as one ``attention_weights`` mask broadcastable to
        (N, H, L, S): ``attn_mask`` (L, S) or (N * H, L, S) and ``key_padding_mask`` (N, S),
        each boolean (True = may NOT attend) or floating (added to the scores).

        Two boolean masks give one boolean mask of the keys kept. With a floating one, a
        boolean mask becomes -inf where it blocks and the two are added. Either way a query
        left with no key gets weights 0, as from ``scaled_dot_product_attention`` (PyTorch's
        MultiheadAttention gives it nan weights, which reach every gradient). A float mask
        given as a Tensor stays one (reshaped by tensor ops), so that a learned bias gets its
        gradient, as it does through ``scaled_dot_product_attention``. An integer mask is
        refused, as PyTorch refuses it.
        """
        masks = []
        # a list as an array (its .dtype and .shape were an AttributeError)
        attn_mask, key_padding_mask = (
            mask if mask is None or isinstance(mask, Tensor) or hasattr(mask, "dtype")
            else backend.xp_for(self.in_proj_weight.device).asarray(mask)
            for mask in (attn_mask, key_padding_mask))
        for name, mask in (("attn_mask", attn_mask), ("key_padding_mask", key_padding_mask)):
            if mask is not None and mask.dtype != bool and mask.dtype.kind != "f":
                # 0/1 could mean keep-or-block or a bias to add: PyTorch refuses it too
                raise TypeError(f"{name} must be boolean (True = may not attend) or floating "
                                f"(added to the scores), got {mask.dtype}")
        if attn_mask is not None:
            heads_and_batch = batch * self.num_heads
            if tuple(attn_mask.shape) not in ((length, source), (heads_and_batch, length, source)):
                raise ValueError(f"attn_mask must have shape (L, S) = ({length}, {source}) or "
                                 f"(batch * num_heads, L, S) = ({heads_and_batch}, {length}, "
                                 f"{source}), got {tuple(attn_mask.shape)}")
            if attn_mask.ndim == 3:  # (N*H, L, S) -> (N, H, L, S)
                attn_mask = attn_mask.reshape(batch, self.num_heads, length, source)
            masks.append(attn_mask)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (batch, source):
                raise ValueError(f"key_padding_mask must have shape (batch, S) = "
                                 f"({batch}, {source}), got {tuple(key_padding_mask.shape)}")
            masks.append(key_padding_mask.reshape(batch, 1, 1, source))  # (N, S) -> (N, 1, 1, S)
        # sdpa's boolean mask says where to KEEP
        masks = [~(mask.data if isinstance(mask, Tensor) else mask) if mask.dtype == bool
                 else mask for mask in masks]
        if len(masks) < 2:
            return masks[0] if masks else None
        first, second = masks
        if first.dtype == bool and second.dtype == bool:
            return first & second
        first, second = (_added_to_scores(mask, dtype) for mask in masks)
        return first + second

    def forward(self, query, key, value, *, attn_mask=None, key_padding_mask=None,
                need_weights=True, average_attn_weights=True):
        """Returns (output (L, N, E), or (N, L, E) when ``batch_first``; weights (N, L, S)
        averaged over heads, or (N, H, L, S) when not ``average_attn_weights``, or None when
        not ``need_weights``). The weights are those the output used: in training with
        dropout, after it (as in PyTorch).

        The masks are keyword-only: PyTorch's fourth positional argument is
        ``key_padding_mask``, not ``attn_mask``, and one taken for the other could fit."""
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.ndim != 3:  # PyTorch also takes one unbatched (L, E); the axes would mix here
                layout = "(batch, L, E)" if self.batch_first else "(L, batch, E)"
                raise ValueError(f"MultiheadAttention: {name} must be 3-D, {layout}, got shape "
                                 f"{tuple(x.shape)}")
        batch_axis = 0 if self.batch_first else 1
        if key.shape[:2] != value.shape[:2] or key.shape[batch_axis] != query.shape[batch_axis]:
            raise ValueError(f"MultiheadAttention: key and value must have the same batch and "
                             f"length, and the query that batch; got query "
                             f"{tuple(query.shape)}, key {tuple(key.shape)}, value "
                             f"{tuple(value.shape)}")
        if not self.batch_first:  # (L, N, E) -> (N, L, E), and the output back
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        batch, length, _ = query.shape
        q, k, v = self._heads(query, 0), self._heads(key, 1), self._heads(value, 2)
        mask = self._sdpa_mask(attn_mask, key_padding_mask, batch, length, key.shape[1], q.dtype)
        weights = F.attention_weights(q, k, mask)  # (N, H, L, S)
        dropped = F.dropout(weights, self.dropout, self.training)
        heads = dropped @ v  # (N, H, L, D)
        merged = heads.permute(0, 2, 1, 3).reshape(batch, length, self.embed_dim)  # (N, L, E)
        output = self.out_proj(merged)
        if not self.batch_first:
            output = output.transpose(0, 1)
        if not need_weights:
            return output, None
        return output, (dropped.mean(dim=1) if average_attn_weights else dropped)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")


def _added_to_scores(mask, dtype):
    """A mask as what it adds to the scores: a boolean one (True = keep) 0 or -inf."""
    if mask.dtype != bool:
        return mask
    return backend.array_module(mask).where(mask, 0.0, -math.inf).astype(dtype)
