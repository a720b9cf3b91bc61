"""The U-Net's timestep embedding ``sinusoidal_embedding`` (``minilean.models.unet``), from its
docstring: row b is [sin(t_b w_k), cos(t_b w_k)] for k < half = dim // 2, w_k = 10000^(-k /
half), then a column of zeros for an odd dim.

The engine computes in float64 and casts to the model's dtype. Its error, carried step by step
(``running_error.py``): math.log(10000) and NumPy's exp, sin and cos each
``library_roundings(float64)``; -log(10000) k / half two roundings; exp moves by
e^a (e^{e_a} - 1) for an argument within e_a; t w_k one rounding; sin and cos move by at most
the angle's error (|sin'|, |cos'| <= 1); then the cast, one rounding in float32. At t up to
1000 the angle's error, ~ t u times the argument's roundings, dominates in float64.
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, library_roundings, mp_tolerance, reals,
                             underflow)
from proofs.running_error import Carried
from proofs.statements.optim import _scalar

UNET = "minilean.models.unet"
F64 = numpy.float64
LIBRARY = library_roundings(F64)


def _library(value, moved):
    """A float64 library call's result ``value`` at an argument moved by at most ``moved``
    in its value."""
    return Carried(value, moved + gamma(LIBRARY, F64) * (abs(value) + moved)
                   + underflow(LIBRARY, F64), F64)


def _embedding_row(t, dim):
    """Row of the embedding at t as Carried (float64), the engine's steps."""
    half = dim // 2
    log = _library(mpmath.log(10000), 0)
    row_sin, row_cos = [], []
    for k in range(half):
        argument = (-log * k) / max(half, 1)
        value = mpmath.exp(argument.value)
        frequency = _library(value, value * mpmath.expm1(argument.error))
        angle = Carried.exact(t, F64) * frequency
        row_sin.append(_library(mpmath.sin(angle.value), angle.error))
        row_cos.append(_library(mpmath.cos(angle.value), angle.error))
    return row_sin + row_cos + [Carried.exact(0, F64)] * (dim % 2)


@statement("sinusoidalEmbedding_values",
           about=(f"{UNET}.sinusoidal_embedding",),
           given={"times": st.lists(reals(0, 1000), min_size=1, max_size=3),
                  "shared": st.booleans(), "dim": st.integers(1, 40)},
           # pinned: dim 8, four frequencies (below 4 the spacings over half and half - 1
           # agree), at times above 0, one per row; and an odd dim (its zero column, and
           # dim / 2 no longer half) at a fractional time for the batch
           examples=[{"times": [10.0, 500.0], "shared": False, "dim": 8},
                     {"times": [10.5, 3.0], "shared": True, "dim": 9}])
def sinusoidal_embedding(check, times, shared, dim):
    """sinusoidal_embedding(t, dim)[b] = [sin(t_b w_k) for k < half, cos(t_b w_k) for k <
    half, 0 if dim is odd], w_k = 10000^(-k / half), half = dim // 2, one t for the batch or
    one per row, in the model's float64 or float32."""
    from minilean.models import unet
    half = dim // 2
    exact_rows = []
    for t in times:
        frequencies = [mpmath.mpf(10000) ** (-mpmath.mpf(k) / half) for k in range(half)]
        exact_rows.append([mpmath.sin(t * w) for w in frequencies]
                          + [mpmath.cos(t * w) for w in frequencies] + [mpmath.mpf(0)] * (dim % 2))
    rows = [_embedding_row(t, dim) for t in times]
    for dtype in ENGINE_DTYPES:
        like = engine(numpy.zeros(1), dtype)
        name = numpy.dtype(dtype).name
        if shared:
            t, references, carried = times[0], exact_rows[:1] * len(times), rows[:1] * len(times)
        else:
            t, references, carried = numpy.asarray(times), exact_rows, rows
        computed = unet.sinusoidal_embedding(t, dim, len(times), like)
        check.holds(computed.data.dtype == dtype and computed.shape == (len(times), dim),
                    f"{name}: {computed.data.dtype} {computed.shape}, not ({len(times)}, {dim})")
        for row, reference, replay in zip(computed.data, references, carried):
            check.close(row, reference, [_scalar(c, dtype).error for c in replay],
                        f"{name}: the embedding of t = {t!r}, dim {dim}")
            with check.reference():
                check.close([c.value for c in replay], reference,
                            [mp_tolerance(max(times))] * dim, "replay = formula")


def _embedding_spaced(spacing, cast=True):
    """sinusoidal_embedding with the frequencies 10000^(-k / spacing(dim)), cast to the
    model's dtype or (cast False) left in float64."""
    import math

    from minilean.autograd.creation import tensor
    from minilean.models.diffusion import timesteps_for_batch

    def broken(t, dim, batch_size, like):
        times = timesteps_for_batch(t, batch_size)
        frequencies = numpy.exp(-math.log(10000.0) * numpy.arange(dim // 2) / spacing(dim))
        angles = times[:, None] * frequencies[None, :]  # (B, half)
        features = numpy.concatenate([numpy.sin(angles), numpy.cos(angles)], axis=1)
        features = numpy.pad(features, ((0, 0), (0, dim % 2)))
        return tensor(features.astype(like.dtype) if cast else features, device=like.device)
    return broken


@mutant("timestep frequencies over half - 1", f"{UNET}.sinusoidal_embedding",
        caught_by=["sinusoidalEmbedding_values"])
def frequencies_over_half_minus_one(original):
    """sinusoidal_embedding spaces the frequencies as 10000^(-k / (half - 1)) (the original
    DDPM code's convention), so the slowest one is 1/10000 exactly: not the docstring's."""
    return _embedding_spaced(lambda dim: max(dim // 2 - 1, 1))


@mutant("timestep frequencies over dim / 2", f"{UNET}.sinusoidal_embedding",
        caught_by=["sinusoidalEmbedding_values"])
def frequencies_over_half_dim(original):
    """sinusoidal_embedding spaces the frequencies as 10000^(-k / (dim / 2)): half for an even
    dim, half + 1/2 for an odd one (only odd dims at t > 0 show it)."""
    return _embedding_spaced(lambda dim: dim / 2)


@mutant("timestep embedding left in float64", f"{UNET}.sinusoidal_embedding",
        caught_by=["sinusoidalEmbedding_values"])
def embedding_not_cast(original):
    """sinusoidal_embedding returns its float64 features without the cast to the model's
    dtype: right values, a float64 tensor in a float32 model."""
    return _embedding_spaced(lambda dim: max(dim // 2, 1), cast=False)


@mutant("one timestep floored to an integer", "minilean.models.diffusion.timesteps_for_batch",
        caught_by=["sinusoidalEmbedding_values"])
def timestep_floored(original):
    """timesteps_for_batch turns one number t into int(t) for the batch (timesteps taken as
    integers): the ODE sampler's fractional timesteps lose their fraction."""
    def broken(t, batch_size):
        if isinstance(t, (int, float, numpy.integer, numpy.floating)):
            return numpy.full(batch_size, float(int(t)))
        return original(t, batch_size)
    return broken
