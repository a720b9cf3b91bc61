"""Adam / AdamW over all parameters in one kernel launch (``adam.cu``).

``fused_adam_update`` has the signature of ``minilean.optim.adam.adam_update`` and is what the
registry installs as ``Adam.fast_update``. ``reference`` is the NumPy statement of the kernel.
"""
import math

import numpy

from minilean.cuda import compile as kernels
from minilean.cuda.multi_tensor import launch_over_all

program = kernels.Program("adam.cu", ["adam_update<float>", "adam_update<double>"])


def _step_constants(step, lr, beta1, beta2):
    """step_size = lr / (1 - beta1^t) and sqrt(1 - beta2^t): the bias corrections."""
    return lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step)


def reference(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              decoupled):
    """One step on NumPy arrays: returns the new (param, exp_avg, exp_avg_sq)."""
    step_size, bias_correction2_sqrt = _step_constants(step, lr, beta1, beta2)
    if decoupled:
        param = param * (1 - lr * weight_decay)
    elif weight_decay:  # as the plain update: 0 * inf would make an infinite weight NaN
        grad = grad + weight_decay * param
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    param = param - exp_avg / (numpy.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps) * step_size
    return param, exp_avg, exp_avg_sq


def fused_adam_update(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps,
                      weight_decay, decoupled):
    """In place on CuPy arrays, every parameter in one launch (one dtype; the parameters and
    moments contiguous)."""
    step_size, bias_correction2_sqrt = _step_constants(step, lr, beta1, beta2)
    # the kernel reads flat memory; a .grad set by hand can be a strided view: copied
    launch_over_all(program, "adam_update", [list(params), list(grads), list(exp_avgs),
                                             list(exp_avg_sqs)],
                    # 1 - beta from the host in double: in float32, 1 - 0.999 is off by 1e-5
                    (lr, beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay, step_size,
                     bias_correction2_sqrt),
                    flags=(decoupled,), copied=(1,))
