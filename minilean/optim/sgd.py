"""SGD with optional momentum, Nesterov momentum and (L2) weight decay, as in PyTorch."""
from minilean.optim.optimizer import Optimizer, check_non_negative


def sgd_update(params, grads, momentum_buffers, lr, momentum, nesterov, weight_decay):
    """In place, for each parameter p with gradient g (and momentum buffer b when momentum > 0):

        g <- g + weight_decay * p
        b <- momentum * b + g
        d  = g + momentum * b   (Nesterov)   or   d = b   (plain momentum)   or   d = g
        p <- p - lr * d
    """
    for index, (param, grad) in enumerate(zip(params, grads)):
        if weight_decay:
            grad = grad + weight_decay * param
        if momentum:
            buffer = momentum_buffers[index]
            buffer *= momentum
            buffer += grad
            grad = grad + momentum * buffer if nesterov else buffer
        param -= lr * grad


class SGD(Optimizer):
    update = staticmethod(sgd_update)

    # keyword-only past momentum: PyTorch's next ones are dampening, weight_decay, nesterov
    def __init__(self, params, lr=1e-3, momentum=0.0, *, nesterov=False, weight_decay=0.0):
        super().__init__(params, self.checked(lr=lr, momentum=momentum, nesterov=nesterov,
                                              weight_decay=weight_decay),
                         ("momentum_buffer",) if momentum else ())

    @staticmethod
    def checked(lr, momentum, nesterov, weight_decay):
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            check_non_negative(name, value)
        if nesterov and momentum <= 0:
            raise ValueError(f"Nesterov momentum needs momentum > 0, got {momentum}")
        return dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def step(self):
        if self.momentum and "momentum_buffer" not in self.state:
            # momentum set after construction: its buffers start now, at zero (b <- g at the
            # first step, as PyTorch's start from the first gradient)
            self.state["momentum_buffer"] = self.zeros_beside_params()
        super().step()

    def load_state_dict(self, state_dict):
        """``Optimizer.load_state_dict``, taking the saved momentum buffers, or their lack,
        whatever momentum this SGD was built with (the momentum comes with them, as in
        PyTorch): an SGD whose momentum was set after construction saves buffers that one
        built as it was lacks, and its state was refused. A refused state changes nothing."""
        saved = state_dict.get("state") if isinstance(state_dict, dict) else None
        before = dict(self.state)
        if isinstance(saved, dict):
            if "momentum_buffer" not in saved:
                self.state.pop("momentum_buffer", None)
            elif "momentum_buffer" not in self.state:
                self.state["momentum_buffer"] = self.zeros_beside_params()
        try:
            super().load_state_dict(state_dict)
        except BaseException:
            self.state = before
            raise

    def _step(self, update, params, grads, state, steps):  # SGD needs no step count
        update(params, grads, state.get("momentum_buffer"), lr=self.lr, momentum=self.momentum,
               nesterov=self.nesterov, weight_decay=self.weight_decay)
