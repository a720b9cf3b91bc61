"""minilean.optim: optimizers, gradient clipping, parameter averaging, LR schedules, checkpoints.

Each optimizer's maths is a function over lists of arrays (``sgd_update``, ``adam_update``,
``ema_update``) that a class attribute names, with a ``fast_update`` slot beside it for a
fused CUDA kernel: see ``minilean/optim/optimizer.py``.
"""
from minilean.optim.adam import Adam, AdamW, adam_update
from minilean.optim.checkpoint import load_checkpoint, save_checkpoint
from minilean.optim.clip import clip_grad_norm_
from minilean.optim.ema import EMA, ema_update
from minilean.optim.optimizer import Optimizer, minimize
from minilean.optim.schedule import LambdaLR, warmup_constant, warmup_cosine, warmup_cosine_scheduler
from minilean.optim.sgd import SGD, sgd_update

__all__ = ["Optimizer", "minimize", "SGD", "Adam", "AdamW", "sgd_update", "adam_update",
           "clip_grad_norm_", "EMA", "ema_update", "LambdaLR", "warmup_constant", "warmup_cosine",
           "warmup_cosine_scheduler", "save_checkpoint", "load_checkpoint"]
