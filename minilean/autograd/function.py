"""Function: the forward/backward pair every differentiable op is made of.

An op subclasses ``Function`` and writes two static methods on raw arrays (NumPy or CuPy):

* ``forward(ctx, *arrays, **params) -> array`` computes the result and saves on ``ctx`` what
  backward needs (only when ``ctx.recording``: under ``no_grad`` nothing is kept);
* ``backward(ctx, grad) -> array or tuple`` returns one gradient per input, ``None`` for an
  input that needs none (``ctx.needs_input_grad`` says which).

Gradients may come back in the broadcast shape of the output; ``unbroadcast`` (the only place
that undoes broadcasting) reduces them to each input's shape during the graph walk.

A fast CUDA kernel replaces a whole op by setting ``Op.fast`` to another Function with the same
contract (see ``minilean.cuda``), and ``unbroadcast``'s sums by filling ``fast_sum_kept``;
ops themselves never branch on the backend.
"""
import numpy

from minilean import backend
from minilean.autograd import grad_mode, writes
from minilean.autograd import tensor as tensor_module  # a module: Tensor is defined after us

fast_sum_kept = None  # set by minilean.cuda: x.sum(axis=axes, keepdims=True) for "cuda" x


class Context:
    """Scratch space an op's forward leaves for its backward."""

    def __init__(self, needs_input_grad, recording):
        self.needs_input_grad = needs_input_grad
        self.recording = recording


class Node:
    """The record of one op application: which op, its context, its input tensors, and the
    write clock when it was made (``writes``: an input written after it fails backward)."""

    __slots__ = ("function", "ctx", "inputs", "made_at")

    def __init__(self, function, ctx, inputs):
        self.function, self.ctx, self.inputs = function, ctx, inputs
        self.made_at = writes.clock

    def release(self):
        """Drop saved arrays and the links to the inputs, so memory is freed after backward."""
        self.ctx, self.inputs = None, ()

    def __repr__(self):
        return f"<{self.function.__name__}Backward>"


class Function:
    fast = None
    # True where backward returns only arrays it has just allocated (or views of them), none
    # of them shared with another returned gradient, the incoming ``grad``, the inputs or
    # ``ctx``: the graph walk may then make them leaves' ``.grad`` without copying them.
    fresh_grads = False
    # True where forward keeps its own result for backward (exp's is dy * y): a write into
    # that memory between the forward and its backward fails the backward, as one into an
    # input does (``writes.py``)
    keeps_output = False

    @staticmethod
    def forward(ctx, *arrays, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on tensors, recording a graph node when gradients are wanted."""
        try:
            device = inputs[0].device
            for other in inputs[1:]:
                if other.device != device:
                    raise devices_differ(cls.__name__, device, other.device)
            needs_input_grad = tuple([t.requires_grad for t in inputs])
        except AttributeError:  # checked only on failure: this runs for every op
            error = not_tensors(cls.__name__, inputs)
            if error is None:
                raise
            raise error from None
        recording = grad_mode.is_grad_enabled() and any(needs_input_grad)
        function = cls
        if cls.fast is not None and device == "cuda":
            function = cls.fast
        ctx = Context(needs_input_grad, recording)
        out = function.forward(ctx, *[t.data for t in inputs], **params)
        if isinstance(out, numpy.generic):
            # NumPy gives a scalar, not a 0-d array, for a full reduction or 0-d arithmetic:
            # immutable, so an optimizer's in-place step on a leaf made of it did nothing
            out = numpy.asarray(out)
        result = tensor_module.Tensor._wrap(out, recording)
        if recording:
            result.grad_fn = Node(function, ctx, inputs)
        return result


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``.

    NumPy broadcasting prepends size-1 axes and stretches size-1 axes; the gradient of a
    broadcast input is the sum of the output gradient over exactly those axes.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(extra + axis for axis, size in enumerate(shape)
                      if size == 1 and grad.shape[extra + axis] != 1)
    axes = tuple(range(extra)) + stretched
    # summed with keepdims: (1,) * extra + shape -> shape, dropping the prepended axes
    if fast_sum_kept is not None and backend.device_of(grad) == "cuda":
        return fast_sum_kept(grad, axes).reshape(shape)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def not_tensors(op, inputs):
    """The error for ``op`` given an input that is no Tensor (an array, a list, a number):
    it failed with "'numpy.ndarray' object has no attribute 'requires_grad'" from inside
    ``apply`` (``relu``, ``conv2d``, ``layer_norm`` of a NumPy batch; PyTorch's TypeError
    says "must be Tensor, not numpy.ndarray")."""
    for index, value in enumerate(inputs):
        if not isinstance(value, tensor_module.Tensor):
            return TypeError(f"{op}: input {index} must be a Tensor, got {type(value).__name__} "
                             f"(make one with ml.tensor(...); a custom Function takes its "
                             f"other arguments by keyword)")
    return None  # all are tensors: the AttributeError came from elsewhere


def tensor_input(value, op, role="input"):
    """``value``, which must be a Tensor, as the ``role`` of the op named ``op``: the entry
    points that read its shape or dtype before ``apply`` (the reductions, the shape ops,
    clamp, the losses, attention) failed on a list or an array with "'list' object has no
    attribute 'ndim'" and the like from inside, and ``reshape`` of an array said "shape must
    be a tuple of ints" of a good shape. PyTorch's TypeError says "must be Tensor, not list"."""
    if isinstance(value, tensor_module.Tensor):
        return value
    raise TypeError(f"{op}: {role} must be a Tensor, got {type(value).__name__} (make one "
                    f"with ml.tensor(...))")


def devices_differ(op, device, other_device):
    """The error for ``op`` given inputs on two devices (no op moves data between them)."""
    return RuntimeError(f"{op}: inputs are on different devices ({device} and {other_device}); "
                        f"move them with .to()")
