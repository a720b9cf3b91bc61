"""Dropout as a module: active in training mode, the identity after ``eval()``."""
from minilean.nn import functional as F
from minilean.nn.module import Module


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        F.check_probability(p)
        self.p = p

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
