"""Linear: y = x W^T + b, the fully connected layer."""
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.module import Module, check_sizes, empty_parameter


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        check_sizes(in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = empty_parameter(out_features, in_features)
        self.bias = empty_parameter(out_features) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.default_weight_and_bias_(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
