"""Reverse-mode automatic differentiation: Tensor, Function, the graph walk and the ops."""
from minilean.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad
from minilean.autograd.tensor import Tensor
from minilean.autograd.function import Function
from minilean.autograd.gradcheck import gradcheck

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck"]
