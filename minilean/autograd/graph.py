"""The backward pass: walk the recorded graph in reverse topological order, without recursion.

Contract (as in PyTorch): gradients *accumulate* into ``.grad`` of leaf tensors, so call
``zero_grad()`` between steps; the graph is freed after ``backward`` unless
``retain_graph=True``, and walking a freed graph again is a clear error.
"""
from minilean.autograd.function import unbroadcast


def topological_order(root):
    """Tensors reachable from ``root`` that need gradients, each after all of its inputs.

    An explicit stack instead of recursion, so a chain of 10,000 ops is fine.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, inputs_done = stack.pop()
        if inputs_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor.grad_fn is not None:
            stack.extend((parent, False) for parent in tensor.grad_fn.inputs
                         if parent.requires_grad and id(parent) not in visited)
    return order


def run_backward(root, grad, retain_graph=False):
    """Propagate ``grad`` (d loss / d root, an array) to every leaf that requires grad."""
    from minilean.autograd.tensor import Tensor

    pending = {id(root): grad}
    for tensor in reversed(topological_order(root)):
        grad = pending.pop(id(tensor), None)
        if grad is None:
            continue
        node = tensor.grad_fn
        if node is None:
            if tensor.grad is None:
                # A fresh array: the one arriving may be a read-only broadcast view or shared
                # with another leaf (Add hands the same array to both inputs), and optimizers
                # update .grad in place.
                tensor.grad = Tensor._wrap(tensor.xp.array(grad, dtype=tensor.dtype), False)
            else:  # in the leaf's dtype, as the first gradient was
                tensor.grad.data = (tensor.grad.data + grad).astype(tensor.dtype, copy=False)
            continue
        if node.ctx is None:
            raise RuntimeError("backward through a graph that was already freed: call the first "
                               "backward(retain_graph=True) to backpropagate twice")
        input_grads = node.function.backward(node.ctx, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, parent_grad in zip(node.inputs, input_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            parent_grad = unbroadcast(parent_grad, parent.shape)
            earlier = pending.get(id(parent))
            pending[id(parent)] = parent_grad if earlier is None else earlier + parent_grad
        if not retain_graph:
            node.release()
