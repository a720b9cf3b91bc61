"""minilean.nn.utils: where PyTorch code finds ``clip_grad_norm_`` (``torch.nn.utils``); the
function itself lives with the optimizers, in ``minilean/optim/clip.py``."""
from minilean.optim.clip import clip_grad_norm_

__all__ = ["clip_grad_norm_"]
