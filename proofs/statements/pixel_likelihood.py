"""The VAE's likelihood of 8-bit pixels, ``discretized_logistic_log_likelihood``, against its
definition in mpmath (PixelCNN++'s discretised logistic, one component).

For x = k/255, mean m, scale s = e^l, h = 1/510 (half a bin) and sigma the logistic sigmoid,
with U = (x + h - m)/s, L = (x - h - m)/s, M = (x - m)/s:

    log P(x) = log sigma(U)                 for x = 0   (the bin takes all mass below 0)
             = log(1 - sigma(L))            for x = 1   (all mass above 1)
             = log(sigma(U) - sigma(L))     otherwise, where that mass exceeds 1e-5;
             = M - l - 2 softplus(M) - log 255   (the density at the bin centre times the bin
                                                  width) where it does not.

Rounding (numerics.py: a library call, exp or log1p, counts L = library_roundings(dtype), 8 in
float32 and 4 in float64). The engine's U is inv (c + h) with inv = e^-l (L), c = x - m (1), h
rounded to the dtype (1), the sum (1) and the product (1): |U' - U| <= d_U = gamma_{L+4}
(|x| + |m| + h) e^-l, the same for L, and d_M = gamma_{L+2} (|x| + |m|) e^-l. softplus =
max(z, 0) + log1p(e^-|z|) is within gamma_{2L+1} softplus(z), the sigmoid within gamma_{2L+2}
sigma(z) (statements/autograd.py). Each function of U, L or M below has slope at most 1
(log sigma, softplus, M - 2 softplus(M)) or 1/4 (sigma), so an input error moves it by at most
that slope times the error.
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import DIGITS, statement
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, host, library_roundings, mp, reals

VAE = "minilean.models.vae"
# the definition's h, not the module's constant: computed at the working precision, since at
# import mpmath works at 15 digits, where 1/510 rounds to float64's 0.5 / 255, the module's
with mpmath.workdps(DIGITS):
    HALF_BIN = mpmath.mpf(1) / 510
THRESHOLD = mpmath.mpf("1e-5")  # minilean's switch to the density (a float64 1e-5: the same
# comparison up to its representation, far below every margin used below)


def _sigmoid(z):
    return 1 / (1 + mpmath.exp(-z))


def _softplus(z):
    return mpmath.log1p(mpmath.exp(z))


@st.composite
def _pixels(draw):
    """n <= 8 pixels: levels 0..255 with the edge levels 0 and 255 drawn often, a mean around
    [0, 1] and a log-scale in the decoder's range [MIN_LOG_SCALE, 1]; the ends of both ranges
    drawn often too, where (x - mean) / scale reaches ~1600 and softplus's e^x would overflow
    float32 (a trained decoder sits at MIN_LOG_SCALE)."""
    n = draw(st.integers(1, 8))
    level = st.one_of(st.sampled_from([0, 255]), st.integers(0, 255))
    mean = st.one_of(st.sampled_from([-0.5, 1.5]), reals(-0.5, 1.5))
    log_scale = st.one_of(st.just(-7.0), reals(-7, 1))
    return {"levels": numpy.asarray(draw(st.lists(level, min_size=n, max_size=n))),
            "mean": numpy.asarray(draw(st.lists(mean, min_size=n, max_size=n))),
            "log_scale": numpy.asarray(draw(st.lists(log_scale, min_size=n, max_size=n)))}


def _candidates(x, m, l, k, dtype):
    """[(reference, bound)]: the definition's value(s) the engine may compute for one pixel,
    each with its rounding bound (two where the engine's bin mass may fall on either side of
    the threshold)."""
    library = library_roundings(dtype)
    inverse = mpmath.exp(-l)
    U, L, M = (x + HALF_BIN - m) * inverse, (x - HALF_BIN - m) * inverse, (x - m) * inverse
    d_U = gamma(library + 4, dtype) * (abs(x) + abs(m) + HALF_BIN) * inverse
    if k == 0:  # -softplus(-U), within the bound of U - softplus(U) (the same number)
        return [(U - _softplus(U), d_U * (1 + gamma(1, dtype))
                 + gamma(2 * library + 2, dtype) * (abs(U) + _softplus(U)))]
    if k == 255:  # -softplus(L)
        return [(-_softplus(L), d_U + gamma(2 * library + 1, dtype) * _softplus(L))]
    # above the mean both sigmoids are near 1: their tails' difference keeps the digits
    mass = _sigmoid(-L) - _sigmoid(-U) if L > 0 else _sigmoid(U) - _sigmoid(L)
    # the engine's mass: the sigmoids' slopes (<= 1/4) times d_U, d_L, their own rounding,
    # and the subtraction
    spread = d_U / 2 + gamma(2 * library + 3, dtype) * (_sigmoid(U) + _sigmoid(L))
    found = []
    if mass + spread > THRESHOLD:  # the engine may take the log of its mass
        # It does only where its mass P' exceeds its 1e-5 (the dtype's), so P' lies in
        # (max(P - spread, 1e-5), P + spread]: |log P' - log P| is at most the log of the
        # farther end's ratio to P (finite even where the spread exceeds P), plus the log's
        # own rounding
        lowest = max(mass - spread, mpmath.mpf(float(dtype(1e-5))))
        limit = max(mpmath.log((mass + spread) / mass), mpmath.log(mass / lowest))
        found.append((mpmath.log(mass), limit + gamma(library + 1, dtype) * abs(mpmath.log(mass))))
    if mass - spread <= THRESHOLD:  # the engine may fall back to the density
        d_M = gamma(library + 2, dtype) * (abs(x) + abs(m)) * inverse
        density = M - l - 2 * _softplus(M) - mpmath.log(255)
        own = gamma(2 * library + 4, dtype) * (abs(M) + abs(l) + 2 * _softplus(M)
                                               + mpmath.log(255))
        found.append((density, d_M * (1 + gamma(1, dtype)) + own))
    return found


@statement("discretizedLogistic_value", about=(f"{VAE}.discretized_logistic_log_likelihood",),
           given=_pixels(), max_examples=30,
           # pinned, at the trained decoder's narrowest scale: an interior bin of mass 4.4e-4,
           # where float32's rounding of the mass (3e-4) is most of the mass itself; the edge
           # bins 0 and 255 with the mean at the far end ((x -+ h - m) / s near -+1600); an
           # interior bin far from the mean (the density fallback)
           examples=[{"levels": numpy.asarray([100, 0, 255, 100]),
                      "mean": numpy.asarray([100 / 255 + 0.009, 1.5, -0.5, 0.9]),
                      "log_scale": numpy.full(4, -7.0)}])
def discretized_logistic(check, levels, mean, log_scale):
    """log P(k/255) = log(sigmoid((x + h - m)/s) - sigmoid((x - h - m)/s)), h = 1/510, s = e^l,
    with the edge bins log sigmoid((h - m)/s) at x = 0 and log(1 - sigmoid((1 - h - m)/s)) at
    x = 1, and the density at the bin centre times 1/255 where the mass is below 1e-5 (mpmath
    against the engine, both dtypes; both branches accepted only where the engine's rounding
    could put the mass on either side of 1e-5)."""
    from minilean.models import vae
    for dtype in ENGINE_DTYPES:
        images = (levels / 255).astype(dtype)
        computed = host(vae.discretized_logistic_log_likelihood(
            engine(images, dtype), engine(mean, dtype), engine(log_scale, dtype)))
        for value, x, m, l, k in zip(computed, mp(images), mp(mean), mp(log_scale), levels):
            options = _candidates(x, m, l, int(k), dtype)
            reference, bound = min(options, key=lambda pair: abs(mp(value) - pair[0]) / pair[1])
            check.close(value, reference, bound, f"level {k}, mean {m}, log-scale {l} "
                        f"({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

@mutant("discretized logistic with bins twice as wide", f"{VAE}.HALF_BIN",
        caught_by=["discretizedLogistic_value"])
def bins_twice_as_wide(original):
    """HALF_BIN = 1/255: each pixel's bin is k/255 +- 1/255, two grey levels wide."""
    return 1.0 / 255


@mutant("discretized logistic NaN for small float32 bin masses",
        f"{VAE}.discretized_logistic_log_likelihood", caught_by=["discretizedLogistic_value"])
def nan_for_small_float32_masses(original):
    """float32 interior pixels whose bin mass is in (1e-5, 1e-3) at a narrow scale get NaN: where
    float32's rounding of the mass is most of it, an infinite bound once let any value pass."""
    from minilean.autograd.elementwise import where

    def broken(images, mean, log_scale):
        correct = original(images, mean, log_scale)
        if correct.dtype != numpy.float32:
            return correct
        upper, lower = _bin_edges(images, mean, log_scale)
        mass = (upper.sigmoid() - lower.sigmoid()).data
        small = (mass > 1e-5) & (mass < 1e-3) & (log_scale.data < -4)
        return where(small, correct * float("nan"), correct)
    return broken


def _bin_edges(images, mean, log_scale):
    """(U, L): the engine's (x + h - mean) / s and (x - h - mean) / s, as Tensors."""
    from minilean.models import vae
    inverse_scale = (-log_scale).exp()
    return (inverse_scale * (images - mean + vae.HALF_BIN),
            inverse_scale * (images - mean - vae.HALF_BIN))


@mutant("discretized logistic without the edge bins", f"{VAE}.discretized_logistic_log_likelihood",
        caught_by=["discretizedLogistic_value"])
def without_edge_bins(original):
    """The pixels 0 and 255 get only their own bin's mass, not the tails below 0 and above 1."""
    from minilean.autograd.elementwise import where
    from minilean.models import vae

    def broken(images, mean, log_scale):
        upper, lower = _bin_edges(images, mean, log_scale)
        interior = (upper.sigmoid() - lower.sigmoid()).clamp(min=1e-12).log()
        edge = (images.data < vae.HALF_BIN) | (images.data > 1 - vae.HALF_BIN)
        return where(edge, interior, original(images, mean, log_scale))
    return broken


@mutant("discretized logistic's x = 0 bin as log(sigmoid)",
        f"{VAE}.discretized_logistic_log_likelihood", caught_by=["discretizedLogistic_value"])
def edge_bin_log_of_sigmoid(original):
    """The x = 0 bin as log(sigmoid(U)), not -softplus(-U): -inf once sigmoid(U) underflows
    (a mean near 1 at MIN_LOG_SCALE puts U near -1600)."""
    from minilean.autograd.elementwise import where
    from minilean.models import vae

    def broken(images, mean, log_scale):
        upper, _ = _bin_edges(images, mean, log_scale)
        with numpy.errstate(divide="ignore"):
            bottom = upper.sigmoid().log()
        return where(images.data < vae.HALF_BIN, bottom, original(images, mean, log_scale))
    return broken


@mutant("discretized logistic's density over PixelCNN++'s bins",
        f"{VAE}.discretized_logistic_log_likelihood", caught_by=["discretizedLogistic_value"])
def density_over_wide_bins(original):
    """The density stand-in as log pdf - log 127.5 (PixelCNN++'s bin width 2/255, for pixels
    in [-1, 1]), not - log 255: log 2 too high wherever an interior bin's mass is below 1e-5."""
    import math

    from minilean.autograd.elementwise import where
    from minilean.models import vae

    def broken(images, mean, log_scale):
        upper, lower = _bin_edges(images, mean, log_scale)
        rare = ((upper.sigmoid() - lower.sigmoid()).data <= 1e-5) & (images.data > vae.HALF_BIN) \
            & (images.data < 1 - vae.HALF_BIN)
        likelihood = original(images, mean, log_scale)
        return where(rare, likelihood + math.log(2.0), likelihood)
    return broken


@mutant("softplus as log(1 + e^x)", "minilean.autograd.elementwise.Softplus.forward",
        caught_by=["discretizedLogistic_value", "autograd_forward_eq_mpmath_value[softplus]"])
def softplus_naive(original):
    """Softplus.forward computes log(1 + e^x) as written: right in float64 up to x = 709, inf
    in float32 from x = 88.7 (the likelihood's edge bins and density fallback take softplus of
    (x - mean) / scale, up to ~1600 at MIN_LOG_SCALE)."""
    from minilean.backend import array_module

    def forward(ctx, x):
        xp = array_module(x)
        with numpy.errstate(over="ignore"):
            out = xp.log(1 + xp.exp(x))
        if ctx.recording:
            ctx.x = x
        return out
    return forward
