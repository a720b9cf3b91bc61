"""Exponential moving average of a model's parameters (sampling uses the averaged weights).

After each optimizer step, ``ema.update(model)`` moves every averaged array towards the
current weights: avg <- decay * avg + (1 - decay) * p. The average starts as a copy of the
weights. ``with ema.average_parameters(model):`` swaps the averages in (for sampling or
evaluation) and puts the trained weights back afterwards.

The maths is one function over lists of arrays, ``ema_update``, named by
``EMA.update_arrays``; ``EMA.fast_update_arrays`` is the slot where ``minilean.cuda`` may put
a fused kernel with the same signature (used for "cuda" arrays with fast kernels on), the same
hook as the optimizers' ``fast_update`` (see ``minilean/optim/optimizer.py``).
"""
import contextlib

import numpy

from minilean.autograd import writes
from minilean.autograd.tensor import Tensor
from minilean.nn.module import copy_all_into
from minilean.optim.optimizer import fused_or_plain, is_number, moved, on_device_and_dtype_of


def ema_update(averages, params, decay):
    """In place: avg <- decay * avg + (1 - decay) * p, written as avg -= (1 - decay)(avg - p)."""
    for average, param in zip(averages, params):
        average -= (1 - decay) * (average - param)


class EMA:
    update_arrays = staticmethod(ema_update)
    fast_update_arrays = None  # a fused CUDA version with the same signature, set by minilean.cuda

    def __init__(self, model, decay=0.999):
        self.decay = self.checked_decay(decay)
        self.num_updates = 0
        self.shadow = {name: param.data.copy() for name, param in model.named_parameters()}
        self.placed = None  # the weights' arrays the averages were last put beside (``moved``)

    @staticmethod
    def checked_decay(decay):
        """``decay``, which must lie in [0, 1]: checked at construction and by
        ``load_state_dict``, so a loaded state meets the constructor's rule."""
        # a number, as the optimizers' settings: "0.999" (read from a config file) failed in
        # a comparison's words, naming no decay, and True was taken as 1, a frozen average
        if not is_number(decay):
            raise TypeError(f"EMA decay must be a number in [0, 1], got {decay!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay!r}")
        return decay

    def _pairs(self, model):
        params = dict(model.named_parameters())
        if set(params) != set(self.shadow):
            raise ValueError(f"EMA tracks {sorted(set(self.shadow) - set(params))} missing from the "
                             f"model and the model has {sorted(set(params) - set(self.shadow))} "
                             f"not tracked")
        return [(self.shadow[name], params[name]) for name in self.shadow]

    def update(self, model):
        """Fold the model's current weights into the average (call after each optimizer step)."""
        pairs = self._pairs(model)
        for name, (average, param) in zip(self.shadow, pairs):
            # a layer replaced since the EMA was made: NumPy would broadcast a (1, 3) weight
            # into a (2, 3) average without a word
            if average.shape != param.shape:
                raise ValueError(f"EMA: parameter {name!r} has shape {param.shape}, its average "
                                 f"{average.shape}; expected the model the EMA was made for")
        averages, arrays = [average for average, _ in pairs], [param.data for _, param in pairs]
        if moved(self.placed, arrays):  # the model moved (model.to): the averages follow it
            averages = [on_device_and_dtype_of(average, array)
                        for average, array in zip(averages, arrays)]
            self.shadow, self.placed = dict(zip(self.shadow, averages)), arrays
        fused_or_plain(self.fast_update_arrays, self.update_arrays, averages, arrays, self.decay)
        self.num_updates += 1

    def copy_to(self, model):
        """Overwrite the model's weights with the averages (every shape checked first: a
        model the averages do not fit is left as it was)."""
        pairs = self._pairs(model)
        copy_all_into((param.data, average, name)
                      for name, (average, param) in zip(self.shadow, pairs))
        writes.wrote(param for _, param in pairs)

    @contextlib.contextmanager
    def average_parameters(self, model):
        """Use the averaged weights inside the block; restore the trained ones after it."""
        trained = {name: param.data.copy() for name, param in model.named_parameters()}
        self.copy_to(model)
        try:
            yield model
        finally:
            for name, param in model.named_parameters():
                param.data[...] = trained[name]
            writes.wrote(param for _, param in model.named_parameters())

    def state_dict(self):
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state_dict):
        shadow = state_dict["shadow"]
        if set(shadow) != set(self.shadow):
            raise ValueError(f"EMA state has keys missing {sorted(set(self.shadow) - set(shadow))} "
                             f"and extra {sorted(set(shadow) - set(self.shadow))}")
        decay = self.checked_decay(float(state_dict["decay"]))
        num_updates = int(state_dict["num_updates"])
        # each average in the floating-point dtype it was saved in: the weights may have been
        # cast since this EMA was made (model.to(float64)), which its arrays follow only at the
        # next update, and copied into float32 arrays the saved float64 averages lost their
        # digits; the next update puts them beside the weights (``placed``)
        averages = {name: average.astype(_saved_dtype(shadow[name], average), copy=False)
                    for name, average in self.shadow.items()}
        # every shape checked before the first copy: a refused state changes nothing
        copy_all_into((average, shadow[name], name) for name, average in averages.items())
        self.shadow, self.placed = averages, None
        self.decay, self.num_updates = decay, num_updates


def _saved_dtype(value, average):
    """The dtype of a loaded average ``value`` where it is a floating-point one, else that of
    the ``average`` it replaces (``copy_all_into`` refuses a value that is no array)."""
    dtype = getattr(value.data if isinstance(value, Tensor) else value, "dtype", None)
    return dtype if dtype is not None and numpy.dtype(dtype).kind == "f" else average.dtype
