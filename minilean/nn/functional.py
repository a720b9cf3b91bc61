"""minilean.nn.functional: every op under PyTorch's name, and the composites built from them.

The primitive ops live in ``minilean.autograd`` (one file per kind) and are re-exported here.
The functions defined below are *composites*: plain Python over those primitives, so their
backward comes for free from the primitives' and there is nothing extra to get wrong.
"""
import math
import numbers

from minilean import backend
from minilean.autograd.conv import conv2d, conv_transpose2d  # noqa: F401 (re-export)
from minilean.autograd.elementwise import (abs, exp, gelu, leaky_relu, log, relu,  # noqa: F401
                                           sigmoid, silu, softplus, tanh, where)
from minilean.autograd.elementwise import floating
from minilean.autograd.function import tensor_input
from minilean.autograd.linalg import linear, matmul  # noqa: F401
from minilean.autograd.loss import check_reduction, check_target_shape, mse_loss  # noqa: F401
from minilean.autograd.norm import group_norm, layer_norm  # noqa: F401
from minilean.autograd.pool import avg_pool2d, interpolate, max_pool2d  # noqa: F401
from minilean.autograd.reduce import log_softmax, logsumexp, softmax  # noqa: F401
from minilean.autograd.shape import pad, stack  # noqa: F401
from minilean.autograd.tensor import Tensor, is_int


def _reduce(loss, reduction):
    """Apply a loss's ``reduction``: the mean or sum over all elements, or none."""
    check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _constant(array):
    """An array as a tensor outside the graph (masks, one-hot targets)."""
    return Tensor._wrap(array, False)


# --- layers as functions ------------------------------------------------------------------

def check_probability(p):
    """A dropout probability must lie in [0, 1]: layers check it where they are built too, so
    that a bad one fails there and not at the first training step."""
    if not (isinstance(p, numbers.Real) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
        raise ValueError(f"dropout probability must be a number in [0, 1], got {p!r}")


def dropout(input, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (so the mean is
    unchanged); the identity when not training. The mask comes from the device's generator."""
    check_probability(p)
    if not isinstance(training, bool):  # PyTorch's check: "false", read from a flag, is truthy
        raise TypeError(f"dropout's training must be a bool, got {training!r}")
    if not training or p == 0.0:
        return input
    input = floating(input)  # an integer x would be scaled by int(1/(1-p)), 1 for p < 1/2
    if p == 1.0:
        return input * 0.0
    keep = backend.generator(input.device).random(input.shape) >= p
    return input * _constant((keep / (1.0 - p)).astype(input.dtype))


def check_indices(indices, rows, name):
    """``indices`` (an array) must be integers in [0, rows) to pick rows of a table; ``name``
    says whose they are in the error. Out of range is an error (indexing would wrap a negative
    one around) where they are on the host; on a GPU they are not read back, which would stall
    every step."""
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{name} indices must be integers, got {indices.dtype}")
    if backend.device_of(indices) == "cpu" and indices.size and \
            (indices.min() < 0 or indices.max() >= rows):
        raise IndexError(f"{name} indices must be in [0, {rows}), got values from "
                         f"{indices.min()} to {indices.max()}")


def check_padding_idx(padding_idx, num_embeddings):
    """An embedding's ``padding_idx`` as the row it names: None, or an int in
    [-num_embeddings, num_embeddings), a negative one counting from the end, as in PyTorch
    (whose check is an assert); checked by the op and where the layer is built."""
    if padding_idx is None:
        return None
    if not is_int(padding_idx) or not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"padding_idx must be None or an int in [-{num_embeddings}, "
                         f"{num_embeddings}) for {num_embeddings} embeddings, got "
                         f"{padding_idx!r}")
    return int(padding_idx) % num_embeddings


def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer ``input``: shape input + (dim,).
    The backward adds each output row's gradient into the row it came from (``check_indices``
    says which indices are refused):

        dL/dW[r] = sum_{positions p with input[p] = r} dL/dy[p],

    except that the row ``padding_idx`` names (PyTorch's padding token) gets none, as in
    PyTorch: dL/dW[padding_idx] = 0, the rows of y picked from it being cut from the graph."""
    weight = tensor_input(weight, "embedding", "weight")
    if weight.ndim != 2:  # a 1-D table would give scalars as rows
        raise ValueError(f"embedding weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {weight.shape}")
    indices = input.data if isinstance(input, Tensor) else input
    if not hasattr(indices, "dtype"):  # a list or an int (a list of ints as int64, as ml.tensor)
        indices = weight.xp.asarray(indices)
    check_indices(indices, weight.shape[0], "embedding")
    padding_idx = check_padding_idx(padding_idx, weight.shape[0])
    # rows by position whatever the integer dtype: a uint8 index to x[...] is refused as one
    # that PyTorch reads as a mask
    rows = weight[indices if indices.dtype != "uint8" else indices.astype("int64")]
    if padding_idx is None:
        return rows
    # the same values, the padding's taken from outside the graph: where's gradient to the
    # detached branch goes nowhere. Compared on the indices' device (no read back to the host).
    # (input shape) -> (input shape, 1): one flag per picked row, broadcast over its dim
    is_padding = (indices == padding_idx)[..., None]
    return where(is_padding, rows.detach(), rows)


# --- losses -------------------------------------------------------------------------------
# ``reduction`` is keyword-only in each: PyTorch's third argument is ``weight`` (or the old
# ``size_average``), which would otherwise land on it

def cross_entropy(input, target, *, reduction="mean"):
    """-log softmax(input)[target], over class dim 1 of ``input`` (N, C) or (N, C, d1, ...).

    ``target`` holds class indices of shape (N,) / (N, d1, ...), or class probabilities with
    ``input``'s shape (a tensor of them gets a gradient too, as in PyTorch). log_softmax is the
    max-shifted primitive, so large logits are safe.

    Class indices outside [0, C) are an error where they are given on the host; on a GPU they
    are not read back (as in ``embedding``), which would make every training step wait for it.
    """
    input = tensor_input(input, "cross_entropy")
    if input.ndim < 2:  # PyTorch's unbatched (C,) logits: log_softmax would say only "dim 1"
        raise ValueError(f"cross_entropy needs input of shape (N, C) or (N, C, d1, ...), got "
                         f"{tuple(input.shape)} (add a batch axis: input[None], target[None])")
    log_probs = log_softmax(input, dim=1)
    if isinstance(target, Tensor):
        given = target_data = target.data
    else:  # a list or a host array: on the device with the logits
        given, target_data = target, input.xp.asarray(target)
    index_shape = input.shape[:1] + input.shape[2:]  # (N, d1, ...)
    if target_data.dtype.kind in "iu":
        classes = input.shape[1]
        # checked before the one-hot, whose shape is no shape the caller passed
        if target_data.shape != index_shape:
            raise ValueError(f"cross_entropy class-index target shape {target_data.shape} "
                             f"does not fit input shape {input.shape}: expected {index_shape}")
        if backend.device_of(given) == "cpu":
            indices = backend.xp_for("cpu").asarray(given)  # reading it costs nothing
            if indices.size and (indices.min() < 0 or indices.max() >= classes):
                raise ValueError(f"cross_entropy targets must be class indices in "
                                 f"[0, {classes}), got values from {int(indices.min())} to "
                                 f"{int(indices.max())}")
        xp = input.xp
        # compared with the class numbers, not picked from eye(C): that identity holds C * C
        # booleans whatever the batch (2.5 GB at C = 50,000), as ``vqvae.code_one_hot`` says
        # (N, d1, ...) -> (N, d1, ..., 1) == (C,) -> (N, d1, ..., C)
        one_hot = target_data[..., None] == xp.arange(classes)
        probabilities = _constant(xp.moveaxis(one_hot, -1, 1))  # (N, C, d1, ...)
    elif isinstance(target, Tensor):
        # the binary ops' rule, as in PyTorch: float64 probabilities with float32 logits give
        # a float64 loss (they were rounded to float32); log_softmax stays in the logits' dtype
        dtype = input.xp.result_type(log_probs.dtype, target_data.dtype)
        log_probs, probabilities = log_probs.to(dtype=dtype), target.to(dtype=dtype)
    else:  # a host array or list is a constant in the logits' dtype, as in the binary ops
        probabilities = _constant(target_data.astype(log_probs.dtype))
    if probabilities.shape != input.shape:
        # float targets of the indices' shape: class indices given as floats (PyTorch refuses
        # them too), which the shape alone would not say
        hint = (f" (class indices of shape {index_shape} must be integers, got "
                f"{target_data.dtype})" if probabilities.shape == index_shape else "")
        raise ValueError(f"cross_entropy target shape {probabilities.shape} does not fit "
                         f"input shape {input.shape}{hint}")
    if reduction == "mean" and input.shape[1] == 0:
        # no classes: each sample's loss is a sum over nothing (0, as with "none" and "sum"),
        # but PyTorch's mean divides by numel / C = 0 / 0 and gives nan, as a mean of no values
        return (-(log_probs * probabilities).sum()) * math.nan
    if probabilities.dtype == bool:
        # picked, not multiplied by the one-hot: a class masked out with a logit of -inf has
        # log-probability -inf, and -inf * 0 would make the loss nan (PyTorch picks too)
        return _reduce(-where(probabilities, log_probs, 0.0).sum(dim=1), reduction)
    return _reduce(-(log_probs * probabilities).sum(dim=1), reduction)


def binary_cross_entropy_with_logits(input, target, *, reduction="mean"):
    """-[y log sigma(x) + (1-y) log(1 - sigma(x))] for logits x and targets y in [0, 1].

    Written as softplus(x) - x y, since log sigma(x) = x - softplus(x) and
    log(1 - sigma(x)) = -softplus(x): the naive form takes the log of a sigmoid that rounds to
    1 from x ~ 17 (float32), making log(1 - sigma(x)) -inf, and to 0 where e^{-x} overflows
    (x below ~ -88), making log sigma(x) -inf; ``softplus`` overflows nowhere, and its slope
    sigma(x) gives d/dx = sigma(x) - y everywhere. A float64 target with float32 logits gives
    a float64 loss, as PyTorch's, whose softplus stays in the logits' float32 (as
    ``cross_entropy``'s log_softmax does): accurate to float32, not float64.
    """
    # PyTorch refuses another shape here; minilean broadcasts it (its gradients are checked
    # over broadcast targets), with the warning of mse_loss and l1_loss
    check_target_shape("binary_cross_entropy_with_logits", input, target)
    return _reduce(softplus(input) - input * target, reduction)


def l1_loss(input, target, *, reduction="mean"):
    """|input - target|, reduced."""
    check_target_shape("l1_loss", input, target)
    return _reduce(abs(input - target), reduction)


# --- attention ----------------------------------------------------------------------------

def _broadcasts_to(shape, target):
    """Whether ``shape`` broadcasts to ``target`` itself (axes aligned from the last; each of
    ``shape``'s equal to ``target``'s or 1), not to a larger shape."""
    return len(shape) <= len(target) and \
        all(size in (1, wanted) for size, wanted in zip(reversed(shape), reversed(target)))


def attention_weights(query, key, attn_mask=None, is_causal=False, scale=None):
    """softmax(Q K^T * scale + mask) over the key axis: shape (..., L, S).

    ``attn_mask`` broadcasts to (..., L, S): a boolean mask says which keys each query may
    attend to (True = keep), a float mask is added to the scores. ``scale`` defaults to
    1/sqrt(d) so the scores' variance does not grow with the head size d. A query that may
    attend to no key (every score -inf, by a boolean or a float mask) gets weights 0, as in
    PyTorch, not a softmax over nothing (0/0).
    """
    query, key = tensor_input(query, "attention", "query"), tensor_input(key, "attention", "key")
    if scale is not None and not isinstance(scale, (numbers.Real, Tensor)):
        raise TypeError(f"attention scale must be a number, got {scale!r}")  # was an operand error
    if scale is None:
        # heads of size 0 score every key 0 (an empty dot product), whatever the scale: their
        # weights are uniform, as in PyTorch, where 1 / sqrt(0) raised ZeroDivisionError
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, S)
    keep = None  # which keys each query may attend to
    if is_causal:
        length, source = scores.shape[-2:]
        keep = query.xp.tril(query.xp.ones((length, source), dtype=bool))
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor) and not hasattr(attn_mask, "dtype"):
            attn_mask = query.xp.asarray(attn_mask)  # a list: .dtype was an AttributeError
        mask = attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask
        if not _broadcasts_to(mask.shape, scores.shape):  # else `where` or `+` named no mask
            raise ValueError(f"attn_mask of shape {tuple(mask.shape)} does not broadcast to the "
                             f"scores' shape (..., L, S) = {tuple(scores.shape)}")
        if mask.dtype == bool:
            keep = mask if keep is None else keep & mask
        elif isinstance(attn_mask, Tensor) and mask.dtype.kind == "f":
            scores = scores + attn_mask.to(dtype=scores.dtype)  # a learned bias gets a gradient
        elif mask.dtype.kind == "f":
            scores = scores + _constant(mask.astype(scores.dtype))
        else:  # an integer mask could mean either: PyTorch refuses it too
            raise TypeError(f"attn_mask must be boolean (True = attend) or floating (added to "
                            f"the scores), got {mask.dtype}")
    if keep is None and attn_mask is None:
        return softmax(scores, dim=-1)
    if keep is not None:  # exp(-inf) = 0: a masked key gets no weight
        scores = where(keep, scores, -math.inf)
    # a query whose every score is -inf (masked, by a boolean or a float mask) attends to no
    # key: its scores become 0 for the softmax (not a softmax over nothing, 0/0) and its
    # weights 0 after it. A NaN score is not -inf, and stays NaN.
    attends = (scores.data != -math.inf).any(axis=-1, keepdims=True)
    weights = softmax(where(attends, scores, 0.0), dim=-1)
    return weights * _constant(attends.astype(weights.dtype))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(Q K^T / sqrt(d) + mask) V for Q (..., L, d), K (..., S, d), V (..., S, dv).

    The mask follows PyTorch's ``scaled_dot_product_attention``: boolean True = attend,
    float = added to the scores. ``dropout_p`` drops attention weights whenever it is above
    0, in eval mode too, as in PyTorch: pass 0 when not training.
    """
    weights = attention_weights(query, key, attn_mask, is_causal, scale)
    return dropout(weights, dropout_p, training=bool(dropout_p > 0)) @ value
