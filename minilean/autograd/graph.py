"""The backward pass: walk the recorded graph in reverse topological order, without recursion.

Contract (as in PyTorch): gradients *accumulate* into ``.grad`` of leaf tensors, so call
``zero_grad()`` between steps; the graph is freed after ``backward`` unless
``retain_graph=True``, and walking a freed graph again is a clear error; so is a backward
through an op whose input was written in place since its forward (``writes.py``: an optimizer
step between them), and a backward that returns fewer gradients than its op has inputs, or
one of a shape its input cannot be summed back to.
"""
from minilean.autograd import tensor as tensor_module  # a module: tensor.py imports us
from minilean.autograd import writes
from minilean.autograd.function import unbroadcast


def topological_order(root):
    """Tensors reachable from ``root`` that need gradients, each after all of its inputs.

    An explicit stack instead of recursion, so a chain of 10,000 ops is fine.
    """
    order, visited = [], set()
    # (tensor, whether its inputs are done); pushed in input order, so the last input is
    # walked first
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
        node = tensor.grad_fn
        if node is not None:
            for parent in node.inputs:  # a loop, not a generator: this runs for every edge
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def run_backward(root, grad, retain_graph=False):
    """Propagate ``grad`` (d loss / d root, an array) to every leaf that requires grad."""
    # id(tensor) -> (its gradient so far, whether that array is held by this walk alone)
    pending = {id(root): (grad, False)}
    for tensor in reversed(topological_order(root)):
        grad, owned = pending.pop(id(tensor), (None, False))
        if grad is None:
            continue
        node = tensor.grad_fn
        if node is None:
            accumulate_leaf_grad(tensor, grad, owned)
            continue
        if node.ctx is None:
            raise RuntimeError("backward through a graph that was already freed: call the first "
                               "backward(retain_graph=True) to backpropagate twice")
        if writes.clock != node.made_at:  # something was written since: was it an input?
            for parent in node.inputs:
                if writes.last_written(parent) > node.made_at:
                    raise writes.written_after(node, parent)
            # or the result, which some ops keep (a leaf made of it by detach() and trained)
            if node.function.keeps_output and writes.last_written(tensor) > node.made_at:
                raise writes.written_after(node, tensor, "output")
        input_grads = node.function.backward(node.ctx, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.inputs):
            check_gradient_count(node, input_grads)
        fresh_grads = node.function.fresh_grads
        for parent, parent_grad in zip(node.inputs, input_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            shape = parent.shape
            if parent_grad.shape == shape:  # most gradients: nothing to sum
                summed = parent_grad
            elif broadcasts_to(shape, parent_grad.shape):
                summed = unbroadcast(parent_grad, shape)
            else:
                raise RuntimeError(f"{node.function.__name__}.backward returned a gradient of "
                                   f"shape {tuple(parent_grad.shape)} for an input of shape "
                                   f"{tuple(shape)}; expected that shape, or one it "
                                   f"broadcasts to")
            key = id(parent)
            earlier = pending.get(key)
            if earlier is None:  # a sum that unbroadcast made is new memory too
                pending[key] = (summed, fresh_grads or summed is not parent_grad)
            else:
                pending[key] = (earlier[0] + summed, True)
        if not retain_graph:
            node.release()


def check_gradient_count(node, input_grads):
    """A backward returns one gradient per input; more only where the extra ones are None
    (an optional input not given: Linear without a bias)."""
    given = len(node.inputs)
    if len(input_grads) < given or any(grad is not None for grad in input_grads[given:]):
        raise RuntimeError(f"{node.function.__name__}.backward returned {len(input_grads)} "
                           f"gradient(s) for {given} input(s); expected one per input (None "
                           f"for no gradient)")


def broadcasts_to(shape, target):
    """Whether NumPy broadcasting takes ``shape`` to ``target`` (the gradient of a broadcast
    input comes back in the output's shape, which ``unbroadcast`` sums back)."""
    extra = len(target) - len(shape)
    return extra >= 0 and all(size in (1, stretched)
                              for size, stretched in zip(shape, target[extra:]))


def accumulate_leaf_grad(tensor, grad, owned):
    """Add ``grad`` into the leaf's ``.grad``, in the leaf's dtype (a first one C-contiguous).

    Optimizers update ``.grad`` in place, so a first gradient that anything else may see
    (a read-only broadcast view, the seed, the array Add hands to both of its inputs) is
    copied. One that only this walk holds (``owned``: see ``Function.fresh_grads``) becomes
    ``.grad`` itself; for a model's weights that saves a device copy per parameter and step.
    """
    xp = tensor.xp
    if tensor.grad is None:
        reusable = (owned and isinstance(grad, xp.ndarray) and grad.dtype == tensor.dtype
                    and grad.flags.c_contiguous)
        data = grad if reusable else xp.array(grad, dtype=tensor.dtype, order="C")
        tensor._grad = tensor_module.Tensor._wrap(data, False)  # made to fit: no check
    else:
        # asarray: NumPy's sum of two 0-d arrays is a scalar, which in-place updates would miss
        tensor.grad.data = xp.asarray((tensor.grad.data + grad).astype(tensor.dtype, copy=False))
