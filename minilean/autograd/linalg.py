"""Matrix multiplication: batched, broadcasting over leading axes, with 1-D operands as in
``torch.matmul`` (a 1-D left operand is a row vector, a 1-D right operand a column vector,
and the added axis is removed from the result); and the linear layer's x W^T + b as one op."""
import math

from minilean import backend
from minilean.autograd.function import Function, unbroadcast
from minilean.autograd.elementwise import as_tensor, as_tensors, check_broadcast, refuse_bool
from minilean.autograd.tensor import Tensor
from minilean.backend import array_module


def _rows(a):
    """a (..., k) as rows (prod(...), k): the row count named, since with k = 0 (or no
    rows) NumPy cannot infer a -1 from a size of 0."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _folded_matmul(xp, a, b):
    """a @ b, with the batch axes folded into the rows when the other operand is one matrix:
    one large BLAS call instead of a small one per batch element (NumPy's batched loop is
    several times slower for the linear-layer shapes)."""
    if b.ndim == 2 and a.ndim > 2:
        rows = _rows(a)  # (batch * n, k)
        return backend.matmul(rows, b).reshape(a.shape[:-1] + b.shape[-1:])  # (..., n, m)
    if a.ndim == 2 and b.ndim > 2:
        # (a b)^T = b^T a^T, the case above: (..., m, k) @ (k, n) -> (..., m, n) -> (..., n, m)
        return xp.swapaxes(_folded_matmul(xp, xp.swapaxes(b, -1, -2), a.T), -1, -2)
    return backend.matmul(a, b)


class Matmul(Function):
    """C = A B over the last two axes;  dA = dC B^T,  dB = A^T dC  (^T swaps the last two axes).

    Leading (batch) axes broadcast. An operand without batch axes (a weight matrix) gets its
    gradient summed over the batch inside one matmul; otherwise gradients come back in the
    broadcast batch shape and the graph walk sums them over the axes an operand was stretched on.
    """
    fresh_grads = True

    @staticmethod
    def forward(ctx, a, b):
        if ctx.recording:
            need_a, need_b = ctx.needs_input_grad
            # dA needs only B and dB only A: keep just the operand the other gradient uses
            ctx.a, ctx.b = (a if need_b else None), (b if need_a else None)
            ctx.a_vector, ctx.b_vector = a.ndim == 1, b.ndim == 1
            ctx.a_unbatched, ctx.b_unbatched = a.ndim <= 2, b.ndim <= 2
        return _folded_matmul(array_module(a), a, b)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        need_a, need_b = ctx.needs_input_grad
        a, b, a_vector, b_vector = ctx.a, ctx.b, ctx.a_vector, ctx.b_vector
        # Promote 1-D operands to matrices: a (k,) -> (1, k), b (k,) -> (k, 1), and give the
        # gradient the matching size-1 axes back: (..., n) -> (..., n, 1) for b, then
        # (..., m) -> (..., 1, m) for a (in this order, so that () -> (1,) -> (1, 1) works).
        if b_vector:
            b, grad = (None if b is None else b[:, None]), xp.expand_dims(grad, -1)
        if a_vector:
            a, grad = (None if a is None else a[None, :]), xp.expand_dims(grad, -2)
        batched = grad.ndim > 2
        grad_a = grad_b = None
        if need_a:
            b_t = xp.swapaxes(b, -1, -2)  # (..., m, k)
            if ctx.a_unbatched and batched:
                columns = xp.moveaxis(grad, -2, 0)  # (..., n, m) -> (n, ..., m)
                columns = columns.reshape(columns.shape[0], math.prod(columns.shape[1:]))
                grad_a = backend.matmul(columns, _rows(b_t))  # (n, B*m) @ (B*m, k)
            else:
                grad_a = _folded_matmul(xp, grad, b_t)  # (..., n, k)
            if a_vector:
                grad_a = grad_a[..., 0, :]  # (..., k)
        if need_b:
            if ctx.b_unbatched and batched:
                grad_b = backend.matmul(_rows(a).T, _rows(grad))  # (k, B*n) @ (B*n, m)
            else:
                grad_b = _folded_matmul(xp, xp.swapaxes(a, -1, -2), grad)  # (..., k, m)
            if b_vector:
                grad_b = grad_b[..., 0]  # (..., k)
        return grad_a, grad_b


def matmul(a, b):
    # an integer tensor with a float one is converted to the float's dtype, as in the binary
    # ops: NumPy alone would compute int64 @ float32 in float64
    a, b = as_tensors(*refuse_bool("matmul", a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs operands with at least one dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul shapes {a.shape} and {b.shape} do not fit: the last axis of "
                         f"the first must equal the {'second-to-' if b.ndim > 1 else ''}last "
                         f"axis of the second")
    if a.ndim > 2 or b.ndim > 2:  # the axes before the last two broadcast, as NumPy's
        check_broadcast(f"matmul of {a.shape} and {b.shape}, batch axes",
                        (a.shape[:-2], b.shape[:-2]))
    return Matmul.apply(a, b)


class Linear(Function):
    """y = x W^T + b over the last axis of x (W: (out, in), b: (out,));

        dx = dy W,    dW = dy^T x,    db = sum of dy,

    with dW and db summed over every leading axis of x (all rows share W and b). One op where
    the composite x @ W.T + b makes three (a transpose, a matmul, an add): the graph of an MLP
    shrinks by two thirds, and with it the Python work per step.
    """
    fresh_grads = True

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        rows = _rows(x)  # (..., in) -> (rows, in)
        out = backend.matmul(rows, weight.T)  # (rows, out)
        if bias is not None:
            out = out + bias
        if ctx.recording:
            need_x, need_weight = ctx.needs_input_grad[:2]
            # dx needs only W and dW only x: keep only what the needed gradients use
            ctx.rows, ctx.weight = (rows if need_weight else None), (weight if need_x else None)
            ctx.x_shape = x.shape
        return out.reshape(x.shape[:-1] + weight.shape[:1])  # (rows, out) -> (..., out)

    @staticmethod
    def backward(ctx, grad):
        need = ctx.needs_input_grad
        grad_rows = _rows(grad)  # (..., out) -> (rows, out)
        # (rows, out) @ (out, in) -> (rows, in) -> x's (..., in)
        grad_x = backend.matmul(grad_rows, ctx.weight).reshape(ctx.x_shape) if need[0] else None
        # (out, rows) @ (rows, in) -> (out, in)
        grad_weight = backend.matmul(grad_rows.T, ctx.rows) if need[1] else None
        # b is broadcast over the rows: its gradient is their sum
        grad_bias = unbroadcast(grad_rows, grad_rows.shape[1:]) if len(need) == 3 and need[2] \
            else None
        return grad_x, grad_weight, grad_bias


def linear(input, weight, bias=None):
    """y = x W^T + b, with W of shape (out_features, in_features) and x of shape
    (..., in_features)."""
    input, weight = as_tensors(input, weight)  # an integer input takes the weight's dtype
    if weight.ndim != 2 or input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {input.shape} and weight of shape "
                         f"{weight.shape} do not fit: expected weight (out_features, "
                         f"{input.shape[-1] if input.ndim else 'in_features'})")
    if bias is None:
        return Linear.apply(input, weight)
    bias = as_tensor(bias, input)
    if bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias of shape {bias.shape} does not fit weight of shape "
                         f"{weight.shape}: expected ({weight.shape[0]},)")
    return Linear.apply(input, weight, bias)
