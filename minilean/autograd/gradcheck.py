"""gradcheck: compare autograd with central finite differences in float64.

For a random cotangent v, the scalar L(x) = <v, f(x)> has gradient J^T v, which is exactly
what ``backward(v)`` computes. Each element of each input is nudged by +-eps and
(L(x + eps e_i) - L(x - eps e_i)) / (2 eps) is compared with the autograd value; inputs larger
than ``max_elements`` are checked along random directions d instead, comparing the
directional difference quotient with <grad, d>. Central differences have O(eps^2) error, so in
float64 with eps = 1e-6 agreement to ~1e-6 relative is expected for smooth functions.
"""
import numpy

from minilean.autograd.grad_mode import no_grad
from minilean.autograd.tensor import Tensor


def gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5, max_elements=64, seed=0):
    """Return True if autograd matches finite differences, else raise AssertionError naming
    the input and element that disagree. ``inputs`` are float64 tensors; those with
    ``requires_grad`` are checked. Afterwards their ``.grad`` holds the checked gradient
    (of <v, fn(inputs)> for the random cotangent v), replacing any they had. The default
    tolerances are tighter than ``torch.autograd.gradcheck``'s (atol 1e-5, rtol 1e-3) on
    purpose: every op here passes them in float64, and a looser check would hide errors."""
    for index, tensor in enumerate(inputs):
        if tensor.requires_grad and tensor.dtype != numpy.float64:
            raise TypeError(f"gradcheck needs float64 inputs, input {index} is {tensor.dtype}")
        if tensor.requires_grad and not tensor.is_leaf:  # backward leaves it no .grad
            raise ValueError(f"gradcheck needs leaf inputs, input {index} was computed by an op "
                             f"(pass it detached, with requires_grad=True)")
    if not any(tensor.requires_grad for tensor in inputs):
        raise ValueError("gradcheck needs at least one input with requires_grad=True")
    rng = numpy.random.default_rng(seed)
    output = fn(*inputs)
    if not isinstance(output, Tensor):  # else an AttributeError on .xp, naming no function
        raise TypeError(f"gradcheck needs fn to return one tensor, got {type(output).__name__} "
                        f"(check each output of a tuple on its own)")
    xp = output.xp
    cotangent = xp.asarray(rng.standard_normal(output.shape))

    def scalar_loss():
        with no_grad():
            return float((fn(*inputs).data * cotangent).sum())

    for tensor in inputs:
        tensor.grad = None
    output.backward(cotangent)

    for index, tensor in enumerate(inputs):
        if not tensor.requires_grad:
            continue
        analytic = numpy.zeros(tensor.shape) if tensor.grad is None else tensor.grad.numpy()
        size = tensor.data.size
        if size <= max_elements:
            directions = numpy.eye(size)
        else:
            directions = rng.standard_normal((max_elements, size))
        # Nudge the input array in place, whatever its strides (reshape(-1) of a transposed
        # array would be a copy, and nudging a copy would leave the input unchanged).
        original = tensor.data.copy()
        for direction in directions:
            # (size,) -> the input's shape
            step = xp.asarray(eps * direction.reshape(tensor.shape), dtype=tensor.dtype)
            tensor.data[...] = original + step
            plus = scalar_loss()
            tensor.data[...] = original - step
            minus = scalar_loss()
            tensor.data[...] = original
            numeric = (plus - minus) / (2 * eps)
            expected = float(analytic.reshape(-1) @ direction)  # (...) -> (size,), dotted
            if not abs(numeric - expected) <= atol + rtol * abs(numeric):
                where = "a random direction"
                if size <= max_elements:  # the index in plain ints, which print as (0, 1)
                    element = numpy.unravel_index(int(direction.argmax()), tensor.shape)
                    where = f"element {tuple(map(int, element))}"
                raise AssertionError(f"gradcheck failed for input {index} at {where}: "
                                     f"autograd {expected:.10g} vs finite difference {numeric:.10g}")
    return True
