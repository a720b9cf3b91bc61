"""The schedule the PF-ODE sampler reads in continuous time (``ContinuousSchedule``,
``alpha_bar_at``) and the timestep list the DDIM sampler walks (``respaced_timesteps``), from
the definitions in ``minilean.models.diffusion``'s docstrings:

* ``log alpha_bar`` is linear between the knots t = k/T (k = 0..T), alpha_bar(0) = 1 and
  alpha_bar((k+1)/T) = alpha_bar_k = prod_{s<=k} (1 - beta_s); so with L_k = sum_{s<k}
  log(1 - beta_s), alpha_bar(t) = exp((1 - f) L_k + f L_{k+1}) for t T = k + f;
* beta(t) = -d log alpha_bar / dt = -T log(1 - beta_k) on the k-th interval k/T < t <= (k+1)/T
  (k = 0 for t = 0), sigma(t) = sqrt(1 - alpha_bar(t)), timestep(t) = t T - 1 clamped to
  [0, T - 1];
* alpha_bar_at(alpha_bar, t), t in [0, T - 1]: log alpha_bar interpolated linearly between the
  integer timesteps (alpha_bar[t] itself for an integer t);
* rhs(eps_model)(x, t), the drift pf_ode_sample_euler integrates: the probability-flow ODE
  dx/dt = f x - g^2 / 2 score of the VP SDE dx = f x dt + g dW whose marginals are
  N(sqrt(alpha_bar(t)) x0, 1 - alpha_bar(t)), score = -eps_hat / sigma(t). f and g^2 are
  derived here from those marginals by mpmath.diff (not from beta(t)): over the reals they
  come to -beta(t) / 2 and beta(t), so the drift is pf_ode_rhs's -beta/2 (x - eps_hat / sigma).

The schedule is float64 host arithmetic (rhs's last steps run in the engine's dtype). t is drawn
float32 and T <= 6, so t T is exact in float64 (a 24-bit significand times a 3-bit integer) and
the knot interval the engine picks is the exact one; at other times (the sampler's grid, the
knots) the reference takes the engine's float64 t T. Rounding counts (numerics.py): log1p, log
and exp LIBRARY = library_roundings(F64) each (4).
"""
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, host, library_roundings, mp,
                             mp_tolerance, reals)

DIFFUSION = "minilean.models.diffusion"
F64 = numpy.float64
LIBRARY = library_roundings(F64)  # one exp, log or log1p call (numerics.py)


def _betas(unique=False, min_size=1):
    return st.lists(reals(2 ** -13, 0.5), min_size=min_size, max_size=6, unique=unique).map(
        numpy.asarray)


def _log_knots(betas):
    """L_0 = 0, L_{k+1} = L_k + log(1 - beta_k), in mpmath."""
    knots = [mpmath.mpf(0)]
    for beta in mp(betas):
        knots.append(knots[-1] + mpmath.log(1 - beta))
    return knots


def _interpolated(knots, u):
    """exp of the piecewise-linear interpolation of ``knots`` at u (exact u in [0, len - 1]),
    with the two knots it lies between."""
    k = min(int(mpmath.floor(u)), len(knots) - 2)
    f = u - k
    return mpmath.exp((1 - f) * knots[k] + f * knots[k + 1]), knots[k], knots[k + 1]


def _exponent_bound(left, right, summed):
    """Relative error of exp(interpolated log): the knots' own error (``summed`` additions of
    log1p/log values, each a library call of LIBRARY roundings: gamma_{summed+LIBRARY} |L|),
    numpy.interp's (slope, offset, product, sum: 5 roundings on |L_k| + |L_{k+1}|) and the exp
    (LIBRARY). The exponent's error d moves exp by e^|d| - 1 <= 2 |d| for |d| <= 1."""
    d = gamma(summed + LIBRARY + 5, F64) * (abs(left) + abs(right))
    return 2 * d + gamma(LIBRARY, F64)


def _sigma_and_bound(value, relative):
    """sigma = sqrt(1 - alpha_bar) for the exact alpha_bar ``value``, and a bound on the
    engine's sigma when its alpha_bar is within ``relative`` * value: |sqrt(x) - sqrt(y)| <=
    |x - y| / sqrt(y) and <= sqrt|x - y|; x = 1 - alpha_bar is off by alpha_bar's error plus
    the subtraction's rounding, then the sqrt rounds once."""
    sigma = mpmath.sqrt(1 - value)
    spread = relative * value + gamma(1, F64) * (1 - value)
    limit = min(spread / sigma, mpmath.sqrt(spread)) if sigma > 0 else mpmath.sqrt(spread)
    return sigma, limit + gamma(1, F64) * sigma


@statement("continuousSchedule_values",
           about=(f"{DIFFUSION}.ContinuousSchedule:alpha_bar",
                  f"{DIFFUSION}.ContinuousSchedule:beta", f"{DIFFUSION}.ContinuousSchedule:sigma",
                  f"{DIFFUSION}.ContinuousSchedule:timestep"),
           given={"betas": _betas(), "t": reals(0, 1)},
           # pinned: three knot intervals (one has no timestep below the clamp at 0)
           examples=[{"betas": numpy.asarray([0.1, 0.2, 0.3]), "t": 0.5}])
def continuous_schedule(check, betas, t):
    """ContinuousSchedule(betas) at t in [0, 1]: alpha_bar(t) = exp of log alpha_bar linear
    between the knots k/T (alpha_bar(0) = 1, alpha_bar((k+1)/T) = alpha_bars(betas)[k]),
    beta(t) = -T log(1 - beta_k) on k/T < t <= (k+1)/T, sigma(t) = sqrt(1 - alpha_bar(t)),
    timestep(t) = clamp(t T - 1, 0, T - 1), against mpmath, also at every knot."""
    from minilean.models import diffusion
    schedule, T = diffusion.ContinuousSchedule(betas), len(betas)
    knots = _log_knots(betas)
    for time in [t] + [k / T for k in range(T + 1)]:
        # the engine's t T: exact for the drawn t (module docstring); for a knot k/T, the
        # float64 product (k itself, or an ulp away, on which side the interval is taken)
        u = mp(time * T)
        value, left, right = _interpolated(knots, u)
        relative = _exponent_bound(left, right, T)
        check.close(schedule.alpha_bar(time), value, relative * value, f"alpha_bar({time})")
        sigma, limit = _sigma_and_bound(value, relative)
        check.close(schedule.sigma(time), sigma, limit, f"sigma({time})")
        k = min(max(int(mpmath.ceil(u)) - 1, 0), T - 1)
        rate = -T * mpmath.log(1 - mp(betas[k]))
        # -T log1p(-beta_k): the library call and the product
        check.close(schedule.beta(time), rate, gamma(LIBRARY + 1, F64) * rate,
                    f"beta({time}), k = {k}")
        step = min(max(u - 1, 0), T - 1)
        check.close(schedule.timestep(time), step, gamma(1, F64) * (u + 1),
                    f"timestep({time})")


@statement("alphaBarAt_log_linear",
           about=(f"{DIFFUSION}.alpha_bar_at", f"{DIFFUSION}.alpha_bars"),
           given={"betas": _betas(min_size=2), "k": st.integers(0, 5), "f": reals(0, 1)})
def alpha_bar_at(check, betas, k, f):
    """alpha_bar_at(alpha_bar, t) for t = k + f in [0, T - 1] is exp((1 - f) log alpha_bar[k]
    + f log alpha_bar[k + 1]) (log-linear between the integer timesteps), alpha_bar[t] itself
    for an integer t, and agrees with ContinuousSchedule.alpha_bar((t + 1) / T); at a drawn t
    and in the middle of every interval (T >= 2: one timestep has no interval)."""
    from minilean.models import diffusion
    alpha_bar, T = diffusion.alpha_bars(betas), len(betas)
    logs = [mpmath.log(a) for a in mp(alpha_bar)]
    for index, a in enumerate(alpha_bar):
        check.close(diffusion.alpha_bar_at(alpha_bar, index), mp(a), 0, f"integer t = {index}")
    # exact in float64: k <= 5 and f a float32 in [0, 1]; the midpoints, where the log-linear
    # curve and a linear one part most, on every example
    for time in [min(k + f, T - 1)] + [index + 0.5 for index in range(T - 1)]:
        value, left, right = _interpolated(logs, mp(time))
        # the logs are of float64 alpha_bar values (no summation: 0 additions)
        check.close(diffusion.alpha_bar_at(alpha_bar, time), value,
                    _exponent_bound(left, right, 0) * value, f"alpha_bar_at({time})")
        # the same curve as the continuous schedule's: alpha_bars carries 2T roundings of its
        # own
        continuous = diffusion.ContinuousSchedule(betas).alpha_bar((time + 1) / T)
        schedule = gamma(2 * T + 2, F64) + _exponent_bound(left, right, T) * 2
        check.close(continuous, value, schedule * value + mp_tolerance(value),
                    f"ContinuousSchedule.alpha_bar(({time} + 1) / T)")


@statement("respacedTimesteps_even_grid", about=(f"{DIFFUSION}.respaced_timesteps",),
           given=st.integers(1, 300).flatmap(lambda T: st.fixed_dictionaries(
               {"T": st.just(T), "steps": st.integers(1, T + 3)})),
           # pinned: 50 of 1000 timesteps, a sampler's respacing (steps < T, so skipping),
           # and one step, which must be T - 1, the noisy end
           examples=[{"T": 1000, "steps": 50}, {"T": 10, "steps": 1}])
def respaced(check, T, steps):
    """respaced_timesteps(T, steps) is strictly decreasing, starts at T - 1, has min(steps, T)
    entries, ends at 0 (for steps >= 2), and its i-th entry is a nearest integer to the even
    grid (T - 1)(1 - i / (steps - 1)) (every timestep when steps >= T), exactly."""
    from minilean.models import diffusion
    timesteps = diffusion.respaced_timesteps(T, steps)
    check.holds(len(timesteps) == min(steps, T), f"{len(timesteps)} timesteps for T = {T}, "
                f"steps = {steps}")
    check.holds(all(isinstance(t, int) for t in timesteps), "integer timesteps")
    check.holds(all(a > b for a, b in zip(timesteps, timesteps[1:])), "strictly decreasing")
    check.holds(timesteps[0] == T - 1, f"starts at {timesteps[0]}, not T - 1 = {T - 1}")
    if steps >= 2 or T == 1:
        check.holds(timesteps[-1] == 0, f"ends at {timesteps[-1]}, not 0")
    if steps >= T:
        check.holds(timesteps == list(range(T - 1, -1, -1)), "every timestep")
    elif steps >= 2:
        for i, t in enumerate(timesteps):
            grid = mpmath.mpf(T - 1) * (1 - mpmath.mpf(i) / (steps - 1))
            # a nearest integer: within 1/2 (a tie may go either way), plus linspace's own
            # rounding of the grid point (a few ulps of T)
            check.close(t, grid, 0.5 + gamma(4, F64) * T, f"timestep {i}")


def _vp_drift(knots, T, u):
    """(f, g^2, sigma) at t = u / T (u > 0) of the VP SDE dx = f(t) x dt + g(t) dW whose
    marginals are the schedule's q(x_t | x_0) = N(m(t) x_0, v(t)), m = sqrt(alpha_bar(t)),
    v = 1 - alpha_bar(t): f = m' / m and g^2 = v' - 2 f v, the derivatives taken by
    mpmath.diff from the left (the knot interval a backward step crosses), in the variable
    w = t T, whose knots are the integers (d/dt = T d/dw)."""
    def alpha(w):
        return _interpolated(knots, w)[0]

    def mean(w):
        return mpmath.sqrt(alpha(w))

    def variance(w):
        return 1 - alpha(w)
    f = T * mpmath.diff(mean, u, direction=-1) / mean(u)
    g2 = T * mpmath.diff(variance, u, direction=-1) - 2 * f * variance(u)
    return f, g2, mpmath.sqrt(variance(u))


def _rhs_given():
    """Distinct betas (a schedule with two equal neighbours cannot tell their intervals
    apart), and the model's scale c at least 1/4 from 0 (eps_hat = 0 would hide the score)."""
    return {"betas": _betas(unique=True), "t": reals(2 ** -16, 1), "steps": st.integers(1, 4),
            "x": st.lists(reals(-3, 3), min_size=1, max_size=4).map(numpy.asarray),
            "c": st.one_of(reals(-2, -0.25), reals(0.25, 2))}


@statement("continuousSchedule_rhs_pf_ode_drift",
           about=(f"{DIFFUSION}.ContinuousSchedule:rhs", f"{DIFFUSION}.pf_ode_rhs",
                  f"{DIFFUSION}.ContinuousSchedule:beta",
                  f"{DIFFUSION}.ContinuousSchedule:sigma",
                  f"{DIFFUSION}.ContinuousSchedule:timestep"),
           given=_rhs_given(),
           # pinned: two knot intervals, t = 3/4 in the second, its model timestep 1/2 in the
           # first
           examples=[{"betas": numpy.asarray([0.1, 0.3]), "t": 0.75, "steps": 2,
                      "x": numpy.asarray([1.0, -0.5]), "c": 1.0}])
def continuous_rhs(check, betas, t, steps, x, c):
    """ContinuousSchedule(betas).rhs(eps_model)(x, t) = f(t) x + g(t)^2 / 2 eps_hat / sigma(t),
    the probability-flow ODE of the VP SDE dx = f x dt + g dW whose marginals are the
    schedule's N(sqrt(alpha_bar(t)) x0, 1 - alpha_bar(t)): f = d/dt log sqrt(alpha_bar),
    g^2 = d/dt (1 - alpha_bar) - 2 f (1 - alpha_bar) (mpmath.diff, from the left), score
    -eps_hat / sigma, with eps_hat = eps_model(x, timestep(t)), timestep(t) = clamp(t T - 1,
    0, T - 1), at a drawn t in (0, 1], at the sampler's t = 1 - k/n (k < n <= 4) and in the
    middle of every knot interval."""
    from minilean.models import diffusion
    schedule, T = diffusion.ContinuousSchedule(betas), len(betas)
    knots = _log_knots(betas)
    for dtype in ENGINE_DTYPES:
        seen = []

        def eps_model(v, timestep):  # depends on the timestep, so a wrong one shows; never 0
            eps_hat = (v.tanh() + 2.0) * (c * (timestep + 1.0))
            seen.append((timestep, host(eps_hat)))
            return eps_hat
        drift = schedule.rhs(eps_model)
        grid = [1.0 - k / steps for k in range(steps)]  # pf_ode_sample_euler's times
        for time in [t] + grid + [(k + 0.5) / T for k in range(T)]:
            computed = host(drift(engine(x, dtype), time))
            timestep, eps_hat = seen[-1]
            # t T as the engine forms it (exact for the drawn t), as continuousSchedule_values
            u = mp(time * T)
            check.close(timestep, min(max(u - 1, 0), T - 1), gamma(1, F64) * (u + 1),
                        f"the model's timestep at t = {time} ({dtype.__name__})")
            f, g2, sigma = _vp_drift(knots, T, u)
            eps_hat = mp(eps_hat)  # the model's own output, exact: rhs's input
            exact = [f * xi + g2 / 2 * ei / sigma for xi, ei in zip(mp(x), eps_hat)]
            # beta(t): log1p and the product by T (gamma_{LIBRARY+1} in float64, relative);
            # -beta/2 rounded to the dtype (1); sigma within its bound, 1/sigma (1 in float64,
            # rounded to the dtype: 1); eps_hat times it (1), x minus that (1), the product
            # (1): 3 roundings in the dtype on x's path, 5 on eps_hat's
            value, left, right = _interpolated(knots, u)
            _, sigma_limit = _sigma_and_bound(value, _exponent_bound(left, right, T))
            relative_sigma = sigma_limit / sigma
            rate = 1 + gamma(LIBRARY + 1, F64)
            x_path = rate * (1 + gamma(3, dtype)) - 1
            eps_path = (rate * (1 + gamma(1, F64)) * (1 + relative_sigma / (1 - relative_sigma))
                        * (1 + gamma(5, dtype)) - 1)
            bounds = [g2 / 2 * (x_path * abs(xi) + eps_path * abs(ei) / sigma)
                      for xi, ei in zip(mp(x), eps_hat)]
            check.close(computed, exact, bounds, f"rhs at t = {time} ({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

@mutant("continuous beta without the log1p", f"{DIFFUSION}.ContinuousSchedule.beta",
        caught_by=["continuousSchedule_values"])
def beta_without_log(original):
    """ContinuousSchedule.beta(t) = T beta_k: -T log(1 - beta_k) to first order only."""
    def broken(self, t):
        return self.T * float(self.betas[self._interval(t)])
    return broken


@mutant("continuous timestep t T", f"{DIFFUSION}.ContinuousSchedule.timestep",
        caught_by=["continuousSchedule_values"])
def timestep_off_by_one(original):
    """ContinuousSchedule.timestep(t) = t T (clamped): off by one from the knot t = (k+1)/T."""
    def broken(self, t):
        return min(max(t * self.T, 0.0), self.T - 1.0)
    return broken


@mutant("continuous sigma is the variance", f"{DIFFUSION}.ContinuousSchedule.sigma",
        caught_by=["continuousSchedule_values"])
def sigma_variance(original):
    """ContinuousSchedule.sigma(t) = 1 - alpha_bar(t): the variance, not its square root."""
    def broken(self, t):
        return max(1.0 - self.alpha_bar(t), 0.0)
    return broken


@mutant("alpha_bar_at interpolates linearly", f"{DIFFUSION}.alpha_bar_at",
        caught_by=["alphaBarAt_log_linear"])
def alpha_bar_at_linear(original):
    """alpha_bar_at interpolates alpha_bar itself, not its log, between integer timesteps."""
    def broken(alpha_bar, t):
        if isinstance(t, (int, numpy.integer)):
            return float(alpha_bar[t])
        return float(numpy.interp(t, numpy.arange(len(alpha_bar)), alpha_bar))
    return broken


@mutant("alpha_bar_at without its integer case", f"{DIFFUSION}.alpha_bar_at",
        caught_by=["alphaBarAt_log_linear"])
def alpha_bar_at_always_interpolated(original):
    """alpha_bar_at takes exp(log alpha_bar[t]) at an integer t too: an ulp or so off
    alpha_bar[t], which the docstring gives itself."""
    def broken(alpha_bar, t):
        return math.exp(numpy.interp(t, numpy.arange(len(alpha_bar)), numpy.log(alpha_bar)))
    return broken


def _respaced(fewer):
    """respaced_timesteps with ``fewer(T, steps)`` giving the timesteps for steps < T (every
    timestep otherwise, as the engine), distinct and in decreasing order."""
    def broken(T, steps):
        if steps >= T:
            return list(range(T - 1, -1, -1))
        return sorted(set(fewer(T, steps)), reverse=True)
    return broken


@mutant("respaced timesteps without t = 0", f"{DIFFUSION}.respaced_timesteps",
        caught_by=["respacedTimesteps_even_grid"])
def respaced_without_zero(original):
    """respaced_timesteps spaces ``steps`` points over [T-1, 0) (linspace's endpoint=False
    slip): the last step never reaches t = 0."""
    return _respaced(lambda T, steps: numpy.round(
        numpy.linspace(T - 1, 0, steps, endpoint=False)).astype(int).tolist())


@mutant("respaced timesteps truncated", f"{DIFFUSION}.respaced_timesteps",
        caught_by=["respacedTimesteps_even_grid"])
def respaced_truncated(original):
    """respaced_timesteps casts the grid to int without rounding it: each timestep up to one
    below the nearest integer (the ends, T - 1 and 0, exact)."""
    return _respaced(lambda T, steps: numpy.linspace(T - 1, 0, steps).astype(int).tolist())


@mutant("respaced timesteps as floats", f"{DIFFUSION}.respaced_timesteps",
        caught_by=["respacedTimesteps_even_grid"])
def respaced_floats(original):
    """respaced_timesteps rounds the grid without the cast to int: the right values as floats,
    which NumPy refuses as indices (alpha_bar[t])."""
    return _respaced(lambda T, steps: numpy.round(numpy.linspace(T - 1, 0, steps)).tolist())


@mutant("respaced timesteps spaced from 0 up", f"{DIFFUSION}.respaced_timesteps",
        caught_by=["respacedTimesteps_even_grid"])
def respaced_from_zero(original):
    """respaced_timesteps spaces the grid from 0 up to T - 1 (then sorts it down): the same
    list but for one step, which is timestep 0, the clean end, not T - 1."""
    return _respaced(lambda T, steps: numpy.round(
        numpy.linspace(0, T - 1, steps)).astype(int).tolist())


def _broken_rhs(beta_at=None, score_sign=-1, model_time=None):
    """ContinuousSchedule.rhs with beta read at ``beta_at(self, t)``, the score's sign
    ``score_sign`` (-1 is right: the score is -eps_hat / sigma) and the model asked at
    ``model_time(self, t)`` (each the engine's own when None)."""
    from minilean.models import diffusion

    def broken(self, eps_model):
        def f(x, t):
            eps_hat = eps_model(x, model_time(self, t) if model_time else self.timestep(t))
            beta = self.beta(beta_at(self, t) if beta_at else t)
            return diffusion.pf_ode_rhs(x, (-score_sign) * eps_hat, beta, self.sigma(t))
        return f
    return broken


@mutant("PF-ODE drift with the score's sign flipped", f"{DIFFUSION}.ContinuousSchedule.rhs",
        caught_by=["continuousSchedule_rhs_pf_ode_drift"])
def rhs_score_sign(original):
    """ContinuousSchedule.rhs = -beta/2 (x + eps_hat / sigma): the score taken as +eps_hat /
    sigma (the drift -beta/2 (x + score) with eps_hat for the score)."""
    return _broken_rhs(score_sign=1)


@mutant("PF-ODE drift with beta at the model's timestep", f"{DIFFUSION}.ContinuousSchedule.rhs",
        caught_by=["continuousSchedule_rhs_pf_ode_drift"])
def rhs_beta_at_timestep(original):
    """ContinuousSchedule.rhs reads beta at the model's timestep t T - 1 (the discrete clock)
    where beta(t) takes t in [0, 1]: beta at the wrong time."""
    return _broken_rhs(beta_at=lambda self, t: self.timestep(t))


@mutant("PF-ODE drift asks the model at t", f"{DIFFUSION}.ContinuousSchedule.rhs",
        caught_by=["continuousSchedule_rhs_pf_ode_drift"])
def rhs_model_at_t(original):
    """ContinuousSchedule.rhs calls eps_model(x, t) with t in [0, 1], not its timestep t T - 1:
    the network is asked about (almost) clean images all along."""
    return _broken_rhs(model_time=lambda self, t: t)
