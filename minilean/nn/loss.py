"""The losses as layers, for PyTorch's ``criterion = nn.CrossEntropyLoss()`` and
``loss = criterion(output, target)``: each calls its functional form with the reduction it
was built with."""
from minilean.nn import functional as F
from minilean.nn.activation import FunctionModule


class Loss(FunctionModule):
    # keyword-only: PyTorch's first argument is weight (CrossEntropyLoss), size_average (MSELoss)
    def __init__(self, *, reduction="mean"):
        # checked here, so that a bad one fails where the loss is built, not at the first step
        F.check_reduction(reduction)
        super().__init__(reduction=reduction)


class CrossEntropyLoss(Loss):
    function = staticmethod(F.cross_entropy)


class MSELoss(Loss):
    function = staticmethod(F.mse_loss)
