"""Learning-rate schedules: factors as plain functions of the step, and a small scheduler.

``LambdaLR(optimizer, lr_lambda)`` sets ``optimizer.lr = base_lr * lr_lambda(step)`` each time its
``step()`` is called (once per optimizer step), as PyTorch's LambdaLR does: that is the "lr"
of the optimizer's one parameter group (``optimizer.param_groups[0]["lr"]``): a rate set
there before the scheduler is made is its base rate, one set after is replaced at its next step.
"""
import functools
import math

from minilean.autograd.tensor import is_int


def warmup_constant(step, warmup_steps):
    """Linear warm-up from 1/warmup_steps to 1 over the first ``warmup_steps`` steps, then 1."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return 1.0


def warmup_cosine(step, warmup_steps, total_steps, min_factor=0.0):
    """Linear warm-up, then a half cosine from 1 down to ``min_factor`` at ``total_steps``
    (and ``min_factor`` after it, even where the warm-up would not have ended by then)."""
    if step >= total_steps:
        return min_factor
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # < 1: step < total
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class LambdaLR:
    """PyTorch's names: ``lr_lambda`` is the factor of the base rate at each step, and
    ``get_last_lr()`` a list with one rate per parameter group (one here): the rate this
    scheduler set last, whatever was set by hand since."""

    def __init__(self, optimizer, lr_lambda):
        self.optimizer = optimizer
        self.lr_lambda = lr_lambda
        self.base_lr = optimizer.lr
        self.last_step = 0
        self._set_lr()

    def _set_lr(self):
        self.last_lr = self.base_lr * self.lr_lambda(self.last_step)
        self.optimizer.lr = self.last_lr

    def step(self):
        self.last_step += 1
        self._set_lr()

    def get_last_lr(self):
        return [self.last_lr]

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state_dict):
        self.base_lr = float(state_dict["base_lr"])
        self.last_step = int(state_dict["last_step"])
        self._set_lr()


def warmup_cosine_scheduler(optimizer, warmup_steps, total_steps, min_factor=0.0):
    """LambdaLR with ``warmup_cosine``: the usual schedule for training from scratch."""
    for name, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if not is_int(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps must be at most total_steps (the warm-up comes first), "
                         f"got {warmup_steps} > {total_steps}")
    # a factor below 0 ends the schedule on a negative rate: the optimizer climbs the loss
    if isinstance(min_factor, bool) or not isinstance(min_factor, (int, float)) or \
            not 0 <= min_factor <= 1:
        raise ValueError(f"min_factor must be a number in [0, 1], got {min_factor!r}")
    return LambdaLR(optimizer, functools.partial(warmup_cosine, warmup_steps=warmup_steps,
                                                 total_steps=total_steps, min_factor=min_factor))
