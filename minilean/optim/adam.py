"""Adam and AdamW (Kingma & Ba; Loshchilov & Hutter), as in PyTorch."""
import math

from minilean.backend import array_module
from minilean.optim.optimizer import Optimizer, check_non_negative, is_number


def adam_update(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps,
                weight_decay, decoupled):
    """In place, for each parameter p with gradient g, first moment m and second moment v,
    at step t (counting from 1):

        p <- p (1 - lr * weight_decay)           if decoupled (AdamW)
        g <- g + weight_decay * p                otherwise (Adam's L2 penalty)
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

    The two (1 - beta^t) factors undo the bias of moments that start at zero.
    """
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs):
        xp = array_module(param)
        if decoupled:
            param *= 1 - lr * weight_decay
        elif weight_decay:
            grad = grad + weight_decay * param
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        # (1 - beta2) g first, then times g (PyTorch's order, and adam.cu's): g * g first
        # overflows for |g| past sqrt(max) (1.8e19 in float32), and the infinite v then kept
        # that parameter from ever moving again
        squared = xp.asarray((1 - beta2) * grad)  # asarray: NumPy gives a scalar for 0-d arrays
        squared *= grad
        exp_avg_sq += squared
        # the step built in place in one scratch array (a few passes fewer than the formula)
        update = xp.sqrt(exp_avg_sq, out=squared)
        update /= bias_correction2_sqrt
        update += eps
        xp.divide(exp_avg, update, out=update)
        update *= step_size
        param -= update


class Adam(Optimizer):
    update = staticmethod(adam_update)
    decoupled = False  # AdamW sets this: weight decay shrinks p directly, not through g

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, self.checked(lr=lr, betas=betas, eps=eps,
                                              weight_decay=weight_decay),
                         ("exp_avg", "exp_avg_sq"))

    @staticmethod
    def checked(lr, betas, eps, weight_decay):
        check_non_negative("lr", lr)
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        betas = tuple(betas)
        if len(betas) != 2 or not all(is_number(beta) and 0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _step(self, update, params, grads, state, steps):
        """One ``update`` call per step count among the parameters (one call, one fused
        launch on "cuda", unless some parameter missed steps: frozen or unused)."""
        beta1, beta2 = self.betas
        arrays = (params, grads, state["exp_avg"], state["exp_avg_sq"])
        counts = set(steps)
        if len(counts) == 1:  # every parameter has trained every step: the arrays as they are
            groups = [(counts.pop(), arrays)]
        else:
            groups = [(count, [[values[i] for i, own in enumerate(steps) if own == count]
                               for values in arrays]) for count in sorted(counts)]
        for count, picked in groups:
            update(*picked, step=count, lr=self.lr, beta1=beta1, beta2=beta2, eps=self.eps,
                   weight_decay=self.weight_decay, decoupled=self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, PyTorch's)."""
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
