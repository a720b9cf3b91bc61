"""minilean.nn: Module and Parameter, the layers, their functional forms and initialisers, and
``utils`` (``clip_grad_norm_``, where PyTorch keeps it)."""
from minilean.nn import functional, init, utils
from minilean.nn.activation import (GELU, Flatten, Identity, LeakyReLU, ReLU, Sigmoid, SiLU,
                                    Softmax, Tanh)
from minilean.nn.attention import MultiheadAttention
from minilean.nn.container import ModuleDict, ModuleList, Sequential
from minilean.nn.conv import Conv2d, ConvTranspose2d
from minilean.nn.dropout import Dropout
from minilean.nn.embedding import Embedding
from minilean.nn.linear import Linear
from minilean.nn.loss import CrossEntropyLoss, MSELoss
from minilean.nn.module import Module, Parameter
from minilean.nn.norm import GroupNorm, LayerNorm
from minilean.nn.pool import AvgPool2d, MaxPool2d

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Linear", "Conv2d",
           "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "LayerNorm", "GroupNorm", "Embedding",
           "Dropout", "MultiheadAttention", "ReLU", "SiLU", "GELU", "Sigmoid", "Tanh", "LeakyReLU",
           "Softmax", "Identity", "Flatten", "CrossEntropyLoss", "MSELoss", "functional",
           "init", "utils"]
