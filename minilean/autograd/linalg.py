"""Matrix multiplication: batched, broadcasting over leading axes, with 1-D operands as in
``torch.matmul`` (a 1-D left operand is a row vector, a 1-D right operand a column vector,
and the added axis is removed from the result)."""
from minilean.autograd.function import Function
from minilean.autograd.elementwise import as_tensor
from minilean.autograd.tensor import Tensor
from minilean.backend import array_module


class Matmul(Function):
    """C = A B over the last two axes;  dA = dC B^T,  dB = A^T dC  (^T swaps the last two axes).

    Leading (batch) axes broadcast; the gradients come back in the broadcast batch shape and
    the graph walk sums them over the batch axes an operand was broadcast along.
    """
    @staticmethod
    def forward(ctx, a, b):
        if ctx.recording:
            need_a, need_b = ctx.needs_input_grad
            # dA needs only B and dB only A: keep just the operand the other gradient uses
            ctx.a, ctx.b = (a if need_b else None), (b if need_a else None)
            ctx.a_vector, ctx.b_vector = a.ndim == 1, b.ndim == 1
            ctx.b_unbatched = b.ndim <= 2
        return array_module(a).matmul(a, b)

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
        grad_a = grad_b = None
        if need_a:
            grad_a = xp.matmul(grad, xp.swapaxes(b, -1, -2))  # (..., n, k)
            if a_vector:
                grad_a = grad_a[..., 0, :]  # (..., k)
        if need_b:
            if ctx.b_unbatched and grad.ndim > 2:
                # b is shared by every batch element (a linear layer): sum over the batch
                # inside one matmul instead of building a (batch, k, m) array and summing it.
                grad_b = xp.matmul(a.reshape(-1, a.shape[-1]).T,  # (k, batch * n)
                                   grad.reshape(-1, grad.shape[-1]))  # (batch * n, m)
            else:
                grad_b = xp.matmul(xp.swapaxes(a, -1, -2), grad)  # (..., k, m)
            if b_vector:
                grad_b = grad_b[..., 0]  # (..., k)
        return grad_a, grad_b


def matmul(a, b):
    if not isinstance(a, Tensor):
        a = as_tensor(a, b)
    b = as_tensor(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs operands with at least one dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul shapes {a.shape} and {b.shape} do not fit: the last axis of "
                         f"the first must equal the {'second-to-' if b.ndim > 1 else ''}last "
                         f"axis of the second")
    return Matmul.apply(a, b)
