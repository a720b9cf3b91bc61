"""Reverse-mode automatic differentiation: Tensor, Function, the graph walk and the ops."""
from minilean.autograd.grad_mode import (enable_grad, inference_mode, is_grad_enabled, no_grad,
                                         set_grad_enabled)
from minilean.autograd.tensor import Tensor
from minilean.autograd.function import Function
from minilean.autograd.gradcheck import gradcheck

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "set_grad_enabled", "inference_mode",
           "is_grad_enabled", "gradcheck"]
