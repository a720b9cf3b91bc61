"""Where every random number of a run comes from: one seeded NumPy generator per purpose.

A run draws random numbers for many purposes: the built-in data, the held-out split, each
epoch's data order and flips, each training step's noise, the sampler's noise, the
evaluation's baselines. Each draw comes from its own generator, ``stream(seed, purpose, index,
sub_index)``, so that

* a draw repeats exactly however the run is split: a resumed run draws step k's noise from the
  same generator as an uninterrupted one, whatever was drawn before it;
* no two purposes share numbers. The key always has four entries, because NumPy's
  SeedSequence ignores trailing zeros: with keys of different lengths, [seed, 1] and
  [seed, 1, 0] would be one stream (so were, before this module, epoch k's data order and
  step k's noise). Every purpose is at least 1, so no stream is the plain ``default_rng(seed)``
  that initialises the weights (``backend.generator``). The FD-classifier trains on data
  too, in an order of its own (``FD_CLASSIFIER_ORDER``), not in the model's.

The weights' initialisation and ``randn`` on a device use ``backend.generator``, seeded by
``manual_seed``, not these streams.
"""
import enum

import numpy


class Purpose(enum.IntEnum):
    """What a stream is for, and what its ``index`` and ``sub_index`` count."""
    BUILTIN_DATA = 1      # the built-in shapes or ring8 points
    HELD_OUT_SPLIT = 2    # which rows are held out (zoo commands)
    DATA_ORDER = 3        # index: the epoch
    FLIPS = 4             # index: the epoch, sub_index: the batch
    TRAINING_STEP = 5     # index: the step, sub_index: one per separate draw within the step
    SAMPLING_START = 6    # x_T of the sampler, the GAN's fixed latents, the VAE's prior z
    SAMPLING_NOISE = 7    # index: the sampler's timestep
    NOISY_IMAGES = 8      # the forward process's illustration (diffusion --noisy-ppm)
    PIXEL_BASELINE = 9    # the GAN's independent-pixel baseline
    NOISE_CEILING = 10    # the FD-classifier's Gaussian-noise ceiling
    EVALUATION = 11       # held-out scores (the MAE's masks, the VAE's draws); index: the chunk
    FD_REFERENCE = 12     # the real rows the FD-classifier compares with and holds out
    FD_CLASSIFIER_ORDER = 13  # the FD-classifier's own data order; index: its epoch


# Every entry of a key is one 32-bit word: SeedSequence splits a larger integer into several
# words, so (2**32, 3, 5, 7) and (0, 1, 3, 5 + 7 * 2**32) were one stream
KEY_LIMIT = 2**32


def stream(seed, purpose, index=0, sub_index=0):
    """The NumPy generator of (seed, purpose, index, sub_index): the same numbers every time.
    Each entry is in [0, 2**32)."""
    key = [seed, int(purpose), index, sub_index]
    if not all(0 <= entry < KEY_LIMIT for entry in key):
        raise ValueError(f"a stream's seed, index and sub-index must be in [0, 2**32), got "
                         f"(seed {seed}, index {index}, sub-index {sub_index})")
    return numpy.random.default_rng(key)
