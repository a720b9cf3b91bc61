"""FastFunction: the base of every Function that runs a kernel from this package.

A fast Function stands in for one op (``replaces``, set by the registry) with the same
``forward(ctx, *arrays, **params)`` / ``backward(ctx, grad)`` contract. Where its kernel does
not cover a call (a dtype other than float32/float64, a layout the kernel was not written for)
it runs the replaced op instead, so switching fast kernels on never changes what is computable.
The fused all-parameters updates do the same by raising ``NotCovered``.
"""
import numpy

from minilean.autograd.function import Function

KERNEL_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


class NotCovered(ValueError):
    """Raised by a fused all-parameters update (Adam, EMA, clipping) for arrays its kernels are
    not written for, before it changes any of them: the optimizers then run the plain update
    (``minilean.optim.optimizer.fused_or_plain``), as an op runs the op it replaces."""


class FastFunction(Function):
    replaces = None         # the op this Function stands in for
    kernel_backward = None  # None: the replaced op's backward reads what kernel_forward saved

    @staticmethod
    def covers(*arrays, **params):
        """Whether the kernels handle this call; by default, float32/float64 inputs."""
        return all(array.dtype in KERNEL_DTYPES for array in arrays)

    @classmethod
    def forward(cls, ctx, *arrays, **params):
        ctx.by_kernel = cls.covers(*arrays, **params)
        if ctx.by_kernel:
            return cls.kernel_forward(ctx, *arrays, **params)
        return cls.replaces.forward(ctx, *arrays, **params)

    @classmethod
    def backward(cls, ctx, grad):
        if ctx.by_kernel and cls.kernel_backward is not None:
            return cls.kernel_backward(ctx, grad)
        return cls.replaces.backward(ctx, grad)

    @staticmethod
    def kernel_forward(ctx, *arrays, **params):
        raise NotImplementedError
