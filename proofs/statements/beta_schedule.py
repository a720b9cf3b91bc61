"""The beta schedules ``make_betas`` builds for training and sampling (``--schedule linear``
and ``--schedule cosine``, the default), from their definitions in
``minilean.models.diffusion``'s docstrings:

* linear: beta_t = beta_start + t / (T - 1) (beta_end - beta_start) for t = 0..T-1 (beta_start
  alone for T = 1);
* cosine (Nichol & Dhariwal): f(u) = cos^2((u + s) / (1 + s) pi / 2), s = 0.008,
  beta_t = min(1 - f((t + 1) / T) / f(t / T), 0.999), so that alpha_bar_t = prod_{s<=t}
  (1 - beta_s) = f((t + 1) / T) / f(0) until the cap binds (at t = T - 1, where f(1) = 0).

Everything is float64 host arithmetic, against mpmath with s = 0.008 and the cap 0.999 as
decimals (the engine's float64 constants are one rounding away from them). Rounding counts
(numerics.py): numpy.linspace forms (end - start) / (T - 1), times t, plus start (4
roundings); the cosine's argument carries 8 (t / T, s, the sum, 1 + s, the quotient, pi, the
product; the halving is exact), then cos (LIBRARY = library_roundings(F64)) and the square (1).
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import gamma, library_roundings, mp, mp_tolerance, reals

DIFFUSION = "minilean.models.diffusion"
F64 = numpy.float64
U = gamma(1, F64)  # one rounding, relative
LIBRARY = library_roundings(F64)


@statement("linearBetaSchedule_values",
           about=(f"{DIFFUSION}.make_betas", f"{DIFFUSION}.linear_beta_schedule"),
           given={"T": st.integers(1, 300), "start": reals(0, 0.999), "end": reals(0, 0.999)},
           # pinned: the DDPM paper's schedule (T = 1 or beta_start = beta_end is no line);
           # T = 1, whose convention the draws seldom reach; and a schedule whose line,
           # evaluated as written, ends a rounding past beta_end (the draws may find none)
           examples=[{"T": 1000, "start": 1e-4, "end": 0.02}, {"T": 1, "start": 0.25, "end": 0.5},
                     {"T": 8, "start": 1e-4, "end": 0.9}])
def linear_schedule(check, T, start, end):
    """make_betas("linear", T, beta_start, beta_end)[t] = beta_start + t / (T - 1) (beta_end -
    beta_start) for t = 0..T-1, T float64 values, exactly beta_start at t = 0 and beta_end at
    t = T - 1 (beta_start alone for T = 1)."""
    from minilean.models import diffusion
    betas = diffusion.make_betas("linear", T, start, end)
    check.holds(betas.shape == (T,) and betas.dtype == F64, f"{betas.dtype} {betas.shape}")
    check.close(betas[0], mp(start), 0, "beta_0 = beta_start")
    if T == 1:
        return
    check.close(betas[-1], mp(end), 0, "beta_{T-1} = beta_end")
    slope = (mp(end) - mp(start)) / (T - 1)
    check.close(betas, [mp(start) + t * slope for t in range(T)],
                [gamma(4, F64) * (mp(start) + t * abs(slope)) for t in range(T)],
                "beta_t on the line")


def _cosine_reference(T):
    """f(i / T) for i = 0..T in mpmath, with a bound on the engine's error in each: the
    argument theta within gamma_8 theta, cos moved by at most that (|sin| <= 1), the library
    cos relative to its value, the square."""
    offset = mpmath.mpf("0.008")
    values, errors = [], []
    for i in range(T + 1):
        theta = (mpmath.mpf(i) / T + offset) / (1 + offset) * mpmath.pi / 2
        cosine = mpmath.cos(theta)
        moved = theta * gamma(8, F64)
        error = moved + gamma(LIBRARY, F64) * (abs(cosine) + moved)
        values.append(cosine ** 2)
        errors.append(error * (2 * abs(cosine) + error) * (1 + U) + U * cosine ** 2)
    return values, errors


@statement("cosineBetaSchedule_alpha_bar",
           about=(f"{DIFFUSION}.make_betas", f"{DIFFUSION}.cosine_beta_schedule",
                  f"{DIFFUSION}.alpha_bars"),
           given={"T": st.integers(1, 200)})
def cosine_schedule(check, T):
    """make_betas("cosine", T)[t] = min(1 - f((t + 1) / T) / f(t / T), 0.999) with f(u) =
    cos^2((u + 0.008) / 1.008 pi / 2), and alpha_bars of it is f((t + 1) / T) / f(0) up to the
    first t where the cap binds (then the product of the capped 1 - beta_s), against mpmath."""
    from minilean.models import diffusion
    betas = diffusion.make_betas("cosine", T)
    alpha_bar = diffusion.alpha_bars(betas)
    f, f_error = _cosine_reference(T)
    cap = mpmath.mpf("0.999")
    product, relative, uncapped = mpmath.mpf(1), mpmath.mpf(0), True
    for t in range(T):
        ratio = f[t + 1] / f[t]
        # the engine's quotient of two values within f_error, and its rounding
        ratio_error = ((f_error[t + 1] + ratio * f_error[t]) / (f[t] - f_error[t]) * (1 + U)
                       + U * ratio)
        beta = min(1 - ratio, cap)
        # 1 - ratio rounds once; min is 1-Lipschitz, and the engine's cap is 0.999 rounded
        beta_error = ratio_error + U * (1 - ratio + ratio_error) + U * cap
        check.close(betas[t], beta, beta_error, f"beta_{t} (T = {T})")
        uncapped = uncapped and 1 - ratio < cap
        product *= 1 - beta
        # alpha_bars: 1 - beta_t (the error of beta_t, one rounding) and the running product
        relative = (1 + relative) * (1 + (beta_error + U * (1 - beta + beta_error))
                                     / (1 - beta)) * (1 + U) - 1
        if uncapped:
            check.close(product, f[t + 1] / f[0], mp_tolerance(product),
                        f"mpmath: prod (1 - beta_s) = f((t + 1) / T) / f(0), t = {t}")
        check.close(alpha_bar[t], product, relative * product, f"alpha_bar_{t} (T = {T})")


# --- mutants -------------------------------------------------------------------------------

@mutant("linear schedule never reaches beta_end", f"{DIFFUSION}.linear_beta_schedule",
        caught_by=["linearBetaSchedule_values"])
def linear_without_end(original):
    """linear_beta_schedule spaces T betas over [beta_start, beta_end) (linspace's
    endpoint=False): the last beta falls a step short of beta_end."""
    def broken(T, beta_start, beta_end):
        return numpy.linspace(beta_start, beta_end, T, endpoint=False, dtype=F64)
    return broken


@mutant("linear schedule by its formula", f"{DIFFUSION}.linear_beta_schedule",
        caught_by=["linearBetaSchedule_values"])
def linear_by_formula(original):
    """linear_beta_schedule evaluates beta_start + t ((beta_end - beta_start) / (T - 1)) as
    written: on the line within its roundings, but the last beta is beta_end only up to them
    (numpy.linspace sets its endpoint exactly)."""
    def broken(T, beta_start, beta_end):
        if T == 1:
            return numpy.array([beta_start], dtype=F64)
        return beta_start + numpy.arange(T, dtype=F64) * ((beta_end - beta_start) / (T - 1))
    return broken


@mutant("one-step linear schedule at beta_end", f"{DIFFUSION}.linear_beta_schedule",
        caught_by=["linearBetaSchedule_values"])
def one_step_at_end(original):
    """linear_beta_schedule(1, ...) is [beta_end] (the line's last value) where the docstring
    takes beta_start (TorchLean's convention)."""
    def broken(T, beta_start, beta_end):
        if T == 1:
            return numpy.array([beta_end], dtype=F64)
        return original(T, beta_start, beta_end)
    return broken


@mutant("cosine schedule without the square", f"{DIFFUSION}.cosine_beta_schedule",
        caught_by=["cosineBetaSchedule_alpha_bar"])
def cosine_not_squared(original):
    """cosine_beta_schedule takes f(u) = cos((u + s) / (1 + s) pi / 2), not its square:
    alpha_bar follows the cosine itself (about sqrt of the intended alpha_bar)."""
    import math

    from minilean.models import diffusion

    def broken(T, offset=diffusion.COSINE_OFFSET, max_beta=diffusion.MAX_COSINE_BETA):
        u = numpy.arange(T + 1, dtype=F64) / T
        f = numpy.cos((u + offset) / (1 + offset) * math.pi / 2)
        return numpy.minimum(1 - f[1:] / f[:-1], max_beta)
    return broken


@mutant("alpha_bars accumulated in float32", f"{DIFFUSION}.alpha_bars",
        caught_by=["cosineBetaSchedule_alpha_bar"])
def alpha_bars_float32(original):
    """alpha_bars multiplies the 1 - beta_s in float32 (a schedule kept as float32 tensors):
    each alpha_bar_t off by float32 roundings, ~1e-7 of itself."""
    from minilean.models import diffusion

    def broken(betas):
        factors = (1.0 - diffusion.check_betas(betas)).astype(numpy.float32)
        return numpy.cumprod(factors).astype(F64)
    return broken
