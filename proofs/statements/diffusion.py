"""Diffusion statements (TorchLean ``Diffusion/{ForwardGaussian,Samplers}.lean`` and the spec
lemmas) on ``minilean.models.diffusion``, plus the multi-step forward law, the DDPM posterior
and the uniform law of the timesteps training draws.

Schedules are float64 host arrays, so mpmath takes the engine's own alpha_bar values as exact
inputs. minilean indexes timesteps 0..T-1 and writes the clean state as alpha_bar_{-1} = 1
(TorchLean's alphaBar 0 = 1). TorchLean's ``DynamicalSystem`` wrappers (ddimStepSystem,
pfOdeEulerSystem) have no separate object here: the samplers are the systems, so their
statements say that a one-step sampler run is the step function, bit for bit. The Lipschitz
and contraction statements use an epsilon field eps(x) = c tanh(x) (c-Lipschitz) or c x, for
which the hypotheses can be computed, and check the conclusion in mpmath (exact) and on the
engine up to the rounding of both sides. Engine values of an affine step are compared with
mpmath within gamma_10 sum |terms| (square roots of the coefficients computed in float64 and
rounded to the dtype, two products, one or two additions, the tanh field); the steps' bounds
add a smallest subnormal per rounding in the dtype, which a product of tiny values can lose
in float32 (x_t ~ 1e-39: its products are subnormal, their rounding absolute).
"""
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, host, mp, mp_tolerance, reals,
                             underflow)
from proofs.running_error import Carried
from proofs.statistics import (LAW_SAMPLES, engine_noise, gaussian_law_checks, pushforward_moments,
                               uniform_integers_check)

DIFFUSION = "minilean.models.diffusion"


def _betas(min_size=1, max_size=6):
    return st.lists(reals(2 ** -13, 0.5), min_size=min_size, max_size=max_size).map(numpy.asarray)


# The pinned examples' schedule: T = 3, alpha_bar = 0.9, 0.72, 0.504, so a step can skip a
# timestep (2 -> 0) and every coefficient differs from the others
PINNED_BETAS = numpy.asarray([0.1, 0.2, 0.3])


def _pinned(*values):
    return numpy.asarray(values, dtype=numpy.float64)


def _vector():
    return st.integers(1, 4).flatmap(lambda k: st.lists(
        reals(-2, 2), min_size=k, max_size=k).map(numpy.asarray))


def _tanh_field(c):
    return lambda x, t: c * x.tanh()


def _alpha_bar(betas):
    from minilean.models import diffusion
    return diffusion.alpha_bars(betas)


@statement("alphaBar_zero", about=(f"{DIFFUSION}.alpha_bars", f"{DIFFUSION}.ddim_step"),
           given={"betas": _betas(), "x": _vector(), "c": reals(-1, 1)},
           # pinned: eps_hat and x0_hat that differ
           examples=[{"betas": PINNED_BETAS, "x": _pinned(1.5, -0.5), "c": 0.5}])
def alpha_bar_zero(check, betas, x, c):
    """alpha_bar of the clean state is 1: alpha_bars[t] = prod_{s<=t} (1 - beta_s), and a DDIM
    step to the clean state (t_prev = -1, eta = 0) returns x0_hat itself (sqrt(1) x0_hat +
    sqrt(0) eps_hat)."""
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(betas)
    running = mpmath.mpf(1)
    for t, beta in enumerate(mp(betas)):
        running *= 1 - beta
        # t + 1 subtractions and t products in float64
        check.close(alpha_bar[t], running, gamma(2 * t + 2, numpy.float64) * running,
                    f"alpha_bar[{t}]")
    for dtype in ENGINE_DTYPES:
        x_t, t = engine(x, dtype), len(betas) - 1
        eps_hat = _tanh_field(c)(x_t, t)
        last = diffusion.ddim_step(alpha_bar, x_t, t, -1, eps_hat)
        x0_hat = diffusion.x0_from_eps(alpha_bar, x_t, t, eps_hat)
        check.close(host(last), mp(host(x0_hat)), 0, f"last DDIM step ({dtype.__name__})")


def _zero_step_statement(name, doc, sampler, run):
    """Register ``name``: ``run(x_T, 0, betas)`` (a call of ``sampler`` with zero steps) returns
    x_T bit for bit."""
    @statement(name, about=(f"{DIFFUSION}.{sampler}",),
               given={"steps": st.just(0), "x": _vector(), "betas": _betas()},
               relaxed={"steps": st.integers(1, 3), "x": _vector().filter(lambda v: v.any()),
                        "betas": _betas()})
    def zero_steps(check, steps, x, betas):
        for dtype in ENGINE_DTYPES:
            x_T = engine(x, dtype)
            check.close(host(run(x_T, steps, betas)), mp(x), 0, f"{name} ({dtype.__name__})")
    zero_steps.__doc__ = doc


def _run_ddpm_sample(x, steps, betas):
    from minilean.models import diffusion
    betas = numpy.resize(betas, steps)
    return diffusion.ddpm_sample(_tanh_field(0.5), betas, x, lambda t: x * 0 + 0.25)


def _run_ddim_sample(x, steps, betas):
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(numpy.resize(betas, max(steps, 1)))
    return diffusion.ddim_sample(_tanh_field(0.5), alpha_bar, x, list(range(steps - 1, -1, -1)))


def _run_pf_ode_sample_euler(x, steps, betas):
    from minilean.models import diffusion
    return diffusion.pf_ode_sample_euler(lambda x, t: -x, x, steps)


_zero_step_statement("ddpmSample_zero_steps", "T = 0  =>  ddpmSample(x_T) = x_T.", "ddpm_sample",
                     _run_ddpm_sample)
_zero_step_statement("ddimSample_zero_steps", "no timesteps  =>  ddimSample(x_T) = x_T.",
                     "ddim_sample", _run_ddim_sample)
_zero_step_statement("pfOdeSampleEuler_zero_steps", "n = 0  =>  pfOdeSampleEuler(n, x1) = x1.",
                     "pf_ode_sample_euler", _run_pf_ode_sample_euler)


def _etas():
    """eta in (0, 1], the stochastic DDIM samplers' (the command line refuses more than 1)."""
    return reals(0, 1).filter(lambda e: e > 0)


@statement("ddimStepSystem_eq_step", about=(f"{DIFFUSION}.ddim_sample", f"{DIFFUSION}.ddim_step"),
           given={"betas": _betas(2), "x": _vector(), "c": reals(-1, 1), "eta": _etas(),
                  "seed": st.integers(0, 2 ** 16)},
           # pinned: a run over [2, 0], which skips t = 1, with x0_hat = 1.66 at t = 2 (clipped)
           examples=[{"betas": PINNED_BETAS, "x": _pinned(1.5, -0.5), "c": 0.5, "eta": 0.5,
                      "seed": 1}])
def ddim_system_step(check, betas, x, c, eta, seed):
    """The DDIM sampler's transition from t to t' is ddimStep(t, t'): a run over [t, t'] equals
    ddim_step(t, t') followed by ddim_step(t', clean), bit for bit, with the sampler's eta and
    clip passed to each step and z_t = noise(t) drawn for it: at eta = 0 and at a drawn eta in
    (0, 1], with and without clip, on every example (noise(t) depends on t, so the pairing of
    steps with draws is seen)."""
    from minilean.models import diffusion
    alpha_bar, field = _alpha_bar(betas), _tanh_field(c)
    t, t_prev = len(betas) - 1, 0
    draws = numpy.random.default_rng(seed).standard_normal((len(betas), len(x)))
    for dtype in ENGINE_DTYPES:
        def noise(step):
            return engine(draws[step], dtype)
        x_t = engine(x, dtype)
        for run_eta, clip in ((0.0, False), (0.0, True), (eta, False), (eta, True)):
            sampled = diffusion.ddim_sample(field, alpha_bar, x_t, [t, t_prev], run_eta,
                                            noise, clip)
            stepped = x_t
            for step, to in ((t, t_prev), (t_prev, -1)):
                stepped = diffusion.ddim_step(alpha_bar, stepped, step, to, field(stepped, step),
                                              run_eta, noise(step), clip)
            check.close(host(sampled), mp(host(stepped)), 0,
                        f"eta = {run_eta}, clip = {clip} ({dtype.__name__})")


@statement("pfOdeEulerSystem_eq_step",
           about=(f"{DIFFUSION}.pf_ode_sample_euler", f"{DIFFUSION}.euler_step"),
           given={"x": _vector(), "c": reals(-1, 1), "steps": st.integers(1, 3)},
           # pinned: a field that is not 0 (x, c != 0), over two steps
           examples=[{"x": _pinned(1.0, -0.5), "c": 0.5, "steps": 2}])
def pf_ode_system_step(check, x, c, steps):
    """pfOdeSampleEuler(n) = n Euler steps x <- x + dt f(x, t) at t = 1 - k/n, k = 0..n-1
    (1, (n-1)/n, ..., 1/n: the corrected descending grid) with dt = -1/n, bit for bit."""
    from minilean.models import diffusion
    field = lambda x, t: (c * t) * x.tanh()  # noqa: E731  (time-dependent, to see the grid)
    for dtype in ENGINE_DTYPES:
        x1 = engine(x, dtype)
        expected = x1
        for k in range(steps):
            expected = expected + (-1.0 / steps) * field(expected, 1.0 - k / steps)
        sampled = diffusion.pf_ode_sample_euler(field, x1, steps)
        check.close(host(sampled), mp(host(expected)), 0, dtype.__name__)


def _with_step(extra, first_step=-1):
    """A schedule (T >= 2), t drawn from first_step + 1..T - 1 and t_prev from first_step..t - 1
    (-1 the clean state): sampling with respaced timesteps skips, so a step is not only to
    t - 1, and a step starts from every timestep, not only the last (where alpha_bar[t] and
    alpha_bar[-1] are one entry, so a step reading the wrong one passed); t = T - 1 about half
    the time, so that the longest steps (and gaps) are still drawn; plus the strategies in
    ``extra``."""
    def timesteps(betas):
        last = len(betas) - 1
        return st.one_of(st.just(last), st.integers(first_step + 1, last))
    return _betas(2).flatmap(lambda betas: timesteps(betas).flatmap(
        lambda t: st.fixed_dictionaries({"betas": st.just(betas), "t": st.just(t),
                                         "t_prev": st.integers(first_step, t - 1), **extra})))


def _alpha_bar_at(alpha_bar, t):
    """alpha_bar_t as an mpf, 1 for the clean state t = -1."""
    return mpmath.mpf(1) if t < 0 else mp(alpha_bar[t])


def _ddim_mp(a, a_prev, x, eps):
    """sqrt(a') (x - sqrt(1 - a) eps) / sqrt(a) + sqrt(1 - a') eps and its sum |terms|."""
    x0 = (x - mpmath.sqrt(1 - a) * eps) / mpmath.sqrt(a)
    value = mpmath.sqrt(a_prev) * x0 + mpmath.sqrt(1 - a_prev) * eps
    terms = (mpmath.sqrt(a_prev / a) * (abs(x) + mpmath.sqrt(1 - a) * abs(eps))
             + mpmath.sqrt(1 - a_prev) * abs(eps))
    return value, terms


@statement("ddimStep_eq_x0Pred", about=(f"{DIFFUSION}.ddim_step", f"{DIFFUSION}.x0_from_eps"),
           given=_with_step({"x": _vector(), "c": reals(-1, 1)}),
           # pinned: a step that skips a timestep (2 -> 0), and one from t = 1 < T - 1, where
           # alpha_bar[t] = 0.72 is not the schedule's last entry 0.504
           examples=[{"betas": PINNED_BETAS, "t": t, "t_prev": 0, "x": _pinned(1.5, -0.5),
                      "c": 0.5} for t in (2, 1)])
def ddim_eq_x0_pred(check, betas, t, t_prev, x, c):
    """ddimStep(t -> t') x = sqrt(alpha_bar_t') x0Pred(x, t) + sqrt(1 - alpha_bar_t') eps_hat,
    with x0Pred = (x - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t) (eta = 0, no clip)."""
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(betas)
    a, a_prev = mp(alpha_bar[t]), _alpha_bar_at(alpha_bar, t_prev)
    for dtype in ENGINE_DTYPES:
        x_t = engine(x, dtype)
        eps_hat = _tanh_field(c)(x_t, t)
        computed = host(diffusion.ddim_step(alpha_bar, x_t, t, t_prev, eps_hat))
        pairs = [_ddim_mp(a, a_prev, xi, ei) for xi, ei in zip(mp(x), mp(host(eps_hat)))]
        check.close(computed, [v for v, _ in pairs], [gamma(10, dtype) * m for _, m in pairs],
                    f"against mpmath ({dtype.__name__})")
        a_float = 1.0 if t_prev < 0 else float(alpha_bar[t_prev])
        shared = (math.sqrt(a_float) * diffusion.x0_from_eps(alpha_bar, x_t, t, eps_hat)
                  + math.sqrt(1 - a_float) * eps_hat)
        check.close(computed, mp(host(shared)), 0, f"shared eps_hat ({dtype.__name__})")


def _norm(values):
    return mpmath.sqrt(mpmath.fsum(v * v for v in values))


@st.composite
def _pair(draw):
    n = draw(st.integers(1, 4))
    vector = st.lists(reals(-2, 2), min_size=n, max_size=n).map(numpy.asarray)
    return draw(vector), draw(vector)


def _euler_lipschitz(check, x, y, dt, beta, sigma, c, claimed_fraction, use_pf_ode, t=0.5):
    """||E(x) - E(y)|| <= (1 + |dt| L) ||x - y|| for f(., t) L-Lipschitz; L claimed as a
    fraction of the true constant (1 in the statement, less to show the hypothesis matters)."""
    from minilean.models import diffusion
    b, s, cc = mp(beta), mp(sigma), mp(c)
    roundings = 10
    if use_pf_ode:  # f = -beta/2 (x - c tanh(x) / sigma): Lipschitz constant beta/2 (1 + |c|/s)
        f_mp = lambda v: -b / 2 * (v - cc * mpmath.tanh(v) / s)  # noqa: E731
        lipschitz = b / 2 * (1 + abs(cc) / s)

        def f_engine(v, time):
            return diffusion.pf_ode_rhs(v, c * v.tanh(), beta, sigma)
    else:  # f(., t) = c t tanh: |c t|-Lipschitz, a field that changes with t (as the PF-ODE's)
        f_mp, lipschitz = (lambda v: cc * mp(t) * mpmath.tanh(v)), abs(cc * mp(t))
        roundings = 12  # c t rounded in float64, then to the dtype

        def f_engine(v, time):
            return (c * time) * v.tanh()
    lipschitz *= claimed_fraction
    step = lambda v: [vi + mp(dt) * f_mp(vi) for vi in v]  # noqa: E731
    distance = _norm([p - q for p, q in zip(mp(x), mp(y))])
    moved = _norm([p - q for p, q in zip(step(mp(x)), step(mp(y)))])
    check.close(max(moved - (1 + abs(mp(dt)) * lipschitz) * distance, 0), mp(0),
                mpmath.mpf(10) ** -40, "mpmath: Lipschitz bound")
    for dtype in ENGINE_DTYPES:
        ex = host(diffusion.euler_step(f_engine, engine(x, dtype), t, dt))
        ey = host(diffusion.euler_step(f_engine, engine(y, dtype), t, dt))
        slack = gamma(roundings, dtype) * (_norm([abs(v) + abs(mp(dt) * f_mp(v)) for v in mp(x)])
                                    + _norm([abs(v) + abs(mp(dt) * f_mp(v)) for v in mp(y)]))
        engine_moved = _norm([p - q for p, q in zip(mp(ex), mp(ey))])
        check.close(max(engine_moved - (1 + abs(mp(dt)) * lipschitz) * distance, 0), mp(0),
                    slack, f"engine Lipschitz bound ({dtype.__name__})")


def _lipschitz_given(fraction):
    return {"pair": _pair(), "dt": reals(-0.5, 0.5), "beta": reals(0.1, 20),
            "sigma": reals(0.05, 1), "c": reals(-2, 2), "fraction": fraction}


@statement("eulerStep_l2_lipschitz_of_rhs_lipschitz", about=(f"{DIFFUSION}.euler_step",),
           given={**_lipschitz_given(st.just(1.0)), "t": reals(-1, 1)},
           relaxed={**_lipschitz_given(st.just(0.25)), "t": reals(-1, 1)},
           # pinned: near 0, where c t tanh has its steepest slope c t, so the bound is tight:
           # at t = 1, and at t = 1/2 with dt = 1/4, where f(., t + dt) has the slope 3/4
           # (1 + |dt| L then 1.1875 for the 1.125 claimed)
           examples=[{"pair": (_pinned(0.0), _pinned(0.125)), "dt": 0.25, "beta": 1.0,
                      "sigma": 1.0, "c": 1.0, "fraction": 1.0, "t": t} for t in (1.0, 0.5)])
def euler_lipschitz(check, pair, dt, beta, sigma, c, fraction, t):
    """f(., t) L-Lipschitz in L2  =>  x -> eulerStep f x t dt is (1 + |dt| L)-Lipschitz in L2,
    at every time t (f(x, t) = c t tanh(x), L = |c t|: the constant is f's at the step's own
    time t, drawn)."""
    _euler_lipschitz(check, *pair, dt, beta, sigma, c, fraction, use_pf_ode=False, t=t)


@statement("pfOdeEulerSystem_l2_lipschitz_of_rhs_lipschitz",
           about=(f"{DIFFUSION}.euler_step", f"{DIFFUSION}.pf_ode_rhs"),
           given=_lipschitz_given(st.just(1.0)), relaxed=_lipschitz_given(st.just(0.25)),
           # pinned: near 0 (tanh's steepest slope) with c / sigma = -1 and the sampler's
           # negative dt, where the bound is tight; and there with sigma = 0.75, where
           # eps_hat / sigma^2 for eps_hat / sigma steepens f by beta/2 |c| (1/sigma^2 - 1/sigma)
           # = 0.22, under the beta/2 that a constant L looser by beta/2 would hide
           examples=[{"pair": (_pinned(0.0), _pinned(0.125)), "dt": -0.5, "beta": 1.0,
                      "sigma": sigma, "c": -1.0, "fraction": 1.0} for sigma in (1.0, 0.75)])
def pf_ode_lipschitz(check, pair, dt, beta, sigma, c, fraction):
    """pfOdeRhs(., t) L-Lipschitz  =>  the PF-ODE Euler step is (1 + |dt| L)-Lipschitz; with
    eps_hat = c tanh(x), pfOdeRhs = -beta/2 (x - eps_hat / sigma) has L = beta/2 (1 + |c|/sigma)."""
    _euler_lipschitz(check, *pair, dt, beta, sigma, c, fraction, use_pf_ode=True)


@statement("eulerStep_l2_distance_bound", about=(f"{DIFFUSION}.euler_step",),
           given={"pair": _pair(), "dt": reals(-1, 1), "c": reals(-2, 2), "t": reals(-1, 1)},
           # pinned: points whose f differ and share a sign, at dt = 3/4 and t = 1: a step
           # without dt exceeds the bound by (1 - dt) |f(x) - f(y)| = 0.11 only, under the
           # 2 dt |f(y)| = 0.84 that |f(x) + f(y)| for |f(x) - f(y)| would add to it; and at
           # t = 0, where f(., t) = 0 bounds the step by ||x - y|| = 0.25 and f(., t + dt)
           # would move it by 0.25 more
           examples=[{"pair": (_pinned(1.0), _pinned(0.75)), "dt": 0.75, "c": 1.0, "t": t}
                     for t in (1.0, 0.0)])
def euler_distance(check, pair, dt, c, t):
    """||E(x) - E(y)|| <= ||x - y|| + |dt| ||f(x, t) - f(y, t)||, E = eulerStep f . t dt, any f
    and any time t (f(x, t) = c t x^2, not Lipschitz and changing with t, on purpose; t
    drawn)."""
    from minilean.models import diffusion
    x, y = pair
    field = lambda v, time: (c * time) * v * v  # noqa: E731
    fx, fy = [[mp(c) * mp(t) * v * v for v in mp(w)] for w in (x, y)]
    move = lambda v, f: [vi + mp(dt) * fi for vi, fi in zip(v, f)]  # noqa: E731
    lhs = _norm([p - q for p, q in zip(move(mp(x), fx), move(mp(y), fy))])
    rhs = _norm([p - q for p, q in zip(mp(x), mp(y))]) + abs(mp(dt)) * _norm(
        [p - q for p, q in zip(fx, fy)])
    check.close(max(lhs - rhs, 0), mp(0), mpmath.mpf(10) ** -40, "mpmath")
    for dtype in ENGINE_DTYPES:
        ex = mp(host(diffusion.euler_step(field, engine(x, dtype), t, dt)))
        ey = mp(host(diffusion.euler_step(field, engine(y, dtype), t, dt)))
        # c t (rounded in float64, then to the dtype), two products, dt's, the sum
        slack = gamma(6, dtype) * (_norm([abs(a) + abs(mp(dt) * b) for a, b in zip(mp(x), fx)])
                                   + _norm([abs(a) + abs(mp(dt) * b) for a, b in zip(mp(y), fy)]))
        check.close(max(_norm([p - q for p, q in zip(ex, ey)]) - rhs, 0), mp(0), slack,
                    f"engine ({dtype.__name__})")


def _ddim_lipschitz_constant(a, a_prev, c):
    """DDIM (eta = 0) is affine in (x, eps_hat): sqrt(a'/a) x + (sqrt(1-a') - sqrt(a'(1-a)/a))
    eps_hat, so with a c-Lipschitz field its constant is at most the sum below."""
    return (mpmath.sqrt(a_prev / a)
            + abs(mpmath.sqrt(1 - a_prev) - mpmath.sqrt(a_prev * (1 - a) / a)) * abs(c))


def _ddim_contraction_check(check, betas, t, t_prev, pair, c, linear):
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(betas)
    a, a_prev = mp(alpha_bar[t]), _alpha_bar_at(alpha_bar, t_prev)
    if linear:  # eps_hat = c x: the step is k x exactly, k below
        k = abs(mpmath.sqrt(a_prev / a) + (mpmath.sqrt(1 - a_prev)
                                           - mpmath.sqrt(a_prev * (1 - a) / a)) * mp(c))
        field = lambda v, step: c * v  # noqa: E731
    else:
        k = _ddim_lipschitz_constant(a, a_prev, mp(c))
        field = lambda v, step: c * v.tanh()  # noqa: E731
    x, y = pair
    distance = _norm([p - q for p, q in zip(mp(x), mp(y))])
    for dtype in ENGINE_DTYPES:
        moved = []
        for v in (x, y):
            v_t = engine(v, dtype)
            moved.append(mp(host(diffusion.ddim_step(alpha_bar, v_t, t, t_prev, field(v_t, t)))))
        slack = gamma(10, dtype) * (mpmath.sqrt(a_prev / a) + 2) * (
            _norm(mp(x)) + _norm(mp(y))) * (1 + abs(mp(c)))
        engine_moved = _norm([p - q for p, q in zip(*moved)])
        check.close(max(engine_moved - k * distance, 0), mp(0), slack,
                    f"engine ({dtype.__name__})")
    return k, engine_moved, distance, slack


@statement("ddimStepSystem_lipschitz_of_step_lipschitz", about=(f"{DIFFUSION}.ddim_step",),
           given=_with_step({"pair": _pair(), "c": reals(-2, 2)}),
           # pinned: near 0 (tanh's steepest slope), a step that skips a timestep; and one
           # from t = 1 < T - 1 with c = -2, where the step's slope sqrt(a'/a) + (sqrt(1 - a')
           # - sqrt(a'(1 - a)/a)) c is 1.67, the bound, and 2.59 with a read as alpha_bar[-1]
           examples=[{"betas": PINNED_BETAS, "t": t, "t_prev": 0,
                      "pair": (_pinned(0.0), _pinned(0.125)), "c": c}
                     for t, c in ((2, 2.0), (1, -2.0))])
def ddim_lipschitz(check, betas, t, t_prev, pair, c):
    """eps_hat c-Lipschitz  =>  ddimStep(t -> t') is L-Lipschitz in L2 with
    L = sqrt(a'/a) + |sqrt(1 - a') - sqrt(a'(1 - a)/a)| |c|."""
    _ddim_contraction_check(check, betas, t, t_prev, pair, c, linear=False)


def _ddim_contraction_given(require):
    return _with_step({"pair": _pair(), "c": reals(0.5, 3), "require": st.just(require)})


@statement("ddimStepSystem_contracts_of_step_contracts", about=(f"{DIFFUSION}.ddim_step",),
           given=_ddim_contraction_given(True), relaxed=_ddim_contraction_given(False),
           # pinned: a step to the clean state with factor |1 / sqrt(a) - sqrt((1 - a) / a) c|
           # = 0.575
           examples=[{"betas": PINNED_BETAS, "t": 2, "t_prev": -1,
                      "pair": (_pinned(1.0), _pinned(0.0)), "c": 2.0, "require": True}])
def ddim_contracts(check, betas, t, t_prev, pair, c, require):
    """The DDIM step is factor-Lipschitz with factor < 1  =>  it contracts distances by that
    factor, to below ||x - y|| (eps_hat = c x, so the step is v -> factor v; the hypothesis
    factor < 1 is computed, examples without it discarded)."""
    from hypothesis import assume
    factor, moved, distance, slack = _ddim_contraction_check(check, betas, t, t_prev, pair, c,
                                                             linear=True)
    if require:
        assume(factor < 1)
    check.close(max(moved - distance, 0), mp(0), slack, "the step contracts")


def _pf_ode_system_check(check, pair, beta, sigma, c, steps, linear, claimed_fraction=1.0):
    """Runs pf_ode_sample_euler for ``steps`` steps with f = pf_ode_rhs(x, eps_hat(x), beta,
    sigma) (beta, sigma constant in t) from x and from y, and checks
    ||run(x) - run(y)|| <= L^steps ||x - y|| in mpmath and on the engine. Every step
    (dt = -1/n) is the elementwise map phi(v) = a v + g eps(v) / c with a = 1 + beta / (2n),
    g = -beta c / (2 sigma n); its L2 Lipschitz constant is L = max(|a|, |a + g|) for
    eps = c tanh (phi' = a + g sech^2 lies between a and a + g) and L = |a + g| for eps = c x.
    Returns L."""
    from minilean.models import diffusion
    b, s, cc, n = mp(beta), mp(sigma), mp(c), steps
    a, g = 1 + b / (2 * n), -b * cc / (2 * s * n)
    lipschitz = abs(a + g) if linear else max(abs(a), abs(a + g))
    shape = (lambda v: v) if linear else mpmath.tanh
    eps_engine = (lambda v: c * v) if linear else (lambda v: c * v.tanh())
    claimed = (lipschitz * claimed_fraction) ** n
    x, y = pair
    trajectories = []
    for start in (mp(x), mp(y)):
        path = [start]
        for _ in range(n):
            path.append([a * v + g * shape(v) for v in path[-1]])
        trajectories.append(path)
    distance = _norm([p - q for p, q in zip(mp(x), mp(y))])
    moved = _norm([p - q for p, q in zip(trajectories[0][-1], trajectories[1][-1])])
    check.close(max(moved - claimed * distance, 0), mp(0), mpmath.mpf(10) ** -40 * (1 + distance),
                "mpmath: system Lipschitz bound")
    for dtype in ENGINE_DTYPES:
        def field(v, t):
            return diffusion.pf_ode_rhs(v, eps_engine(v), beta, sigma)
        ends = [mp(host(diffusion.pf_ode_sample_euler(field, engine(v, dtype), n))) for v in pair]
        # each end coordinate is within e_i of its exact value, e_i the running error bound of
        # the engine's run replayed in its order (_pf_ode_run_errors), so the engine's distance
        # is within ||e(x) + e(y)|| of the exact one, itself <= claimed ||x - y|| (checked
        # above; the relative 10^-45 covers mpmath's own rounding of both sides). The former
        # bound, gamma_10 (|v| + |dt f(v)|) per step carried on by L (first order), failed
        # the correct engine: dt f(v) = beta/(2n) (v - c eps(v) / sigma) cancels for c ~ sigma
        # while its terms, up to 10 |v| and more, carry the roundings (1.3 times over in
        # float32, 1.2 in float64 on the pinned c / sigma = 1 + 1/96); where L = 0 a step's
        # rounding carried on by L vanished (pinned); tanh is 8 roundings in float32, not 3;
        # and x ~ 1e-38 rounds c v and its products in the subnormals, absolutely
        errors = [_pf_ode_run_errors(v, beta, sigma, c, n, linear, dtype) for v in pair]
        slack = (_norm([ex + ey for ex, ey in zip(*errors)])
                 + mpmath.mpf(10) ** -(mpmath.mp.dps - 5) * claimed * distance)
        engine_moved = _norm([p - q for p, q in zip(*ends)])
        check.close(max(engine_moved - claimed * distance, 0), mp(0), slack,
                    f"engine system Lipschitz bound ({dtype.__name__})")
    return lipschitz, engine_moved, distance, slack


def _pf_ode_run_errors(start, beta, sigma, c, steps, linear, dtype):
    """Bounds on |engine - exact| of each coordinate of pf_ode_sample_euler's run from
    ``start`` (running_error.py): the engine's operations in its order, per step
    v + dt ((-beta/2) (v - (c eps(v)) (1/sigma))), with the constants 1/sigma and dt = -1/n
    rounded as the engine rounds them (a Python float, then the dtype)."""
    coefficient, inverse = Carried.constant(mp(c), dtype), Carried.constant(1 / mp(sigma), dtype)
    half_beta = Carried.constant(-mp(beta) / 2, dtype)
    dt = Carried.constant(mpmath.mpf(-1) / steps, dtype)
    state = list(Carried.array(start, dtype).reshape(-1))
    for _ in range(steps):
        state = [v + dt * (half_beta * (v - coefficient * (v if linear else v.tanh()) * inverse))
                 for v in state]
    return [v.error for v in state]


def _system_given(fraction):
    return {"pair": _pair(), "beta": reals(0.1, 20), "sigma": reals(0.05, 1), "c": reals(-2, 2),
            "steps": st.integers(1, 3), "fraction": fraction}


@statement("pfOdeEulerSystem_lipschitz_of_step_lipschitz",
           about=(f"{DIFFUSION}.pf_ode_sample_euler", f"{DIFFUSION}.pf_ode_rhs",
                  f"{DIFFUSION}.euler_step"),
           given=_system_given(st.just(1.0)), relaxed=_system_given(st.just(0.25)),
           # pinned: near 0 (tanh's steepest slope), where L = |a + g| = 2 is tight
           examples=[{"pair": (_pinned(0.0), _pinned(0.125)), "beta": 1.0, "sigma": 1.0,
                      "c": -1.0, "steps": 1, "fraction": 1.0}])
def pf_ode_system_lipschitz(check, pair, beta, sigma, c, steps, fraction):
    """x -> eulerStep(pfOdeRhs) x t dt L-Lipschitz  =>  the PF-ODE Euler system's step is
    L-Lipschitz, and its n-step run (pf_ode_sample_euler) is L^n-Lipschitz (L2; eps_hat =
    c tanh(x), L = max(|a|, |a + g|), a = 1 + beta/(2n), g = -beta c/(2 sigma n))."""
    _pf_ode_system_check(check, pair, beta, sigma, c, steps, linear=False,
                         claimed_fraction=fraction)


def _contraction_given(require):
    return {"pair": _pair(), "beta": reals(0.1, 20), "sigma": reals(0.05, 1),
            "c": reals(0.5, 3) if require else reals(-2, 3), "steps": st.integers(1, 3),
            "require": st.just(require)}


@statement("pfOdeEulerSystem_contracts_of_step_contracts",
           about=(f"{DIFFUSION}.pf_ode_sample_euler", f"{DIFFUSION}.pf_ode_rhs",
                  f"{DIFFUSION}.euler_step"),
           given=_contraction_given(True), relaxed=_contraction_given(False),
           # pinned: k = |1 + beta / 2 (1 - c / sigma)| = 0.5, the step overshooting 0, in one
           # step and in two (k = 1/4 each: a run of one step only is off by k); and k = 1/3 at
           # sigma = 0.75, where eps_hat / sigma^2 for eps_hat / sigma gives 5/9: still a
           # contraction, but by more than k (and less than 2k). Then two where the engine's
           # rounding is all the room there is (_pf_ode_system_check's bound): k = 0.896 with
           # c / sigma = 1 + 1/96, where dt f(v) cancels to a tenth of its terms (1.2 times
           # over the former bound, gamma_10 (|v| + |dt f(v)|), in both dtypes); and k = 0 in
           # each of two steps, where the first step's rounding is all the second step sees
           # (the former bound, carrying it on by k, was 0)
           examples=[{"pair": (_pinned(x), _pinned(0.0)), "beta": beta, "sigma": sigma,
                      "c": c, "steps": steps, "require": True}
                     for x, beta, sigma, c, steps in ((1.0, 3.0, 1.0, 2.0, 1),
                                                      (1.0, 3.0, 1.0, 2.0, 2),
                                                      (1.0, 4.0, 0.75, 1.0, 1),
                                                      (2.0, 20.0, 0.75, 0.7578125, 1),
                                                      (1.0, 12.0, 0.75, 1.0, 2))])
def pf_ode_system_contracts(check, pair, beta, sigma, c, steps, require):
    """The PF-ODE Euler step is k-Lipschitz with k < 1  =>  the system contracts: its n-step
    run moves x, y to within k^n ||x - y|| < ||x - y|| (eps_hat = c x, so the step is v -> k v
    with k = 1 + beta/(2n) (1 - c/sigma); the hypothesis k < 1 is computed, examples without
    it discarded)."""
    from hypothesis import assume
    factor, moved, distance, slack = _pf_ode_system_check(check, pair, beta, sigma, c, steps,
                                                          linear=True)
    if require:
        assume(factor < 1)
    check.close(max(moved - distance, 0), mp(0), slack, "the run contracts")


def _forward_given(law):
    return {"betas": _betas(2), "x0": reals(-2, 2), "seed": st.integers(0, 99),
            "law": st.just(law)}


@statement("forwardGaussian_isGaussian", about=(f"{DIFFUSION}.q_sample",),
           given=_forward_given("normal"), relaxed=_forward_given("uniform"), max_examples=4)
def forward_gaussian(check, betas, x0, seed, law):
    """eps ~ N(0, I)  =>  q_sample(x0, t, eps) = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t)
    eps ~ N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I), with one timestep per example as
    training calls it: a batch whose rows have distinct timesteps (T >= 2, in a drawn order),
    each row against its own alpha_bar_t, by value (against mpmath, in both dtypes, and with t
    given as one integer) and in law (statistical: seeded engine normals, moments and KS)."""
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(betas)
    timesteps = numpy.random.default_rng(seed).permutation(len(betas))
    eps = engine_noise(law, (len(betas), LAW_SAMPLES), seed)
    samples = host(diffusion.q_sample(alpha_bar, engine(numpy.full(eps.shape, x0),
                                                        numpy.float64), timesteps, eps))
    head = host(eps)[:, :8]  # the first few draws of every row, checked by value
    for dtype in ENGINE_DTYPES:
        x0_rows, eps_rows = engine(numpy.full(head.shape, x0), dtype), engine(head, dtype)
        batch = host(diffusion.q_sample(alpha_bar, x0_rows, timesteps, eps_rows))
        for row, t in enumerate(timesteps):
            a = mp(alpha_bar[t])
            exact = [mpmath.sqrt(a) * mp(x0) + mpmath.sqrt(1 - a) * e for e in mp(head[row])]
            # eps rounded to dtype (1), the coefficients (1 - a, sqrt, rounded to dtype: 3),
            # two products and the sum
            bounds = [gamma(7, dtype) * (mpmath.sqrt(a) * abs(mp(x0)) + mpmath.sqrt(1 - a)
                                         * abs(e)) for e in mp(head[row])]
            check.close(batch[row], exact, bounds, f"row {row}, t = {t} ({dtype.__name__})")
            alone = diffusion.q_sample(alpha_bar, x0_rows[row], int(t), eps_rows[row])
            check.close(host(alone), exact, bounds, f"t = {t} as one integer ({dtype.__name__})")
    a = mp(alpha_bar[-1])
    mean, variance = pushforward_moments(mpmath.sqrt(a) * mp(x0), mpmath.sqrt(1 - a))
    check.close(variance, 1 - a, 1e-40, "mpmath: pushforward variance")
    check.close(mean, mpmath.sqrt(a) * mp(x0), 1e-40, "mpmath: pushforward mean")
    for row, t in enumerate(timesteps):
        a = mp(alpha_bar[t])
        gaussian_law_checks(check, samples[row], float(mpmath.sqrt(a) * mp(x0)),
                            float(mpmath.sqrt(1 - a)), f"engine samples, row {row}, t = {t}")


@statement("forward_multistep_law", about=(f"{DIFFUSION}.q_sample", f"{DIFFUSION}.alpha_bars"),
           given={"betas": _betas(), "x0": reals(-2, 2), "seed": st.integers(0, 99)},
           max_examples=4)
def forward_multistep(check, betas, x0, seed):
    """Composing the one-step kernels q(x_s | x_{s-1}) = N(sqrt(1 - beta_s) x_{s-1}, beta_s)
    gives q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, 1 - alpha_bar_t) with alpha_bar_t =
    alpha_bars(betas)[t], the engine's schedule: mean and variance recursions in mpmath against
    it, and a chain of engine one-step noisings against N(sqrt(alpha_bar_t) x0, 1 - alpha_bar_t)."""
    from minilean.models import diffusion
    mean, variance = mp(x0), mpmath.mpf(0)
    for beta in mp(betas):
        mean, variance = mpmath.sqrt(1 - beta) * mean, (1 - beta) * variance + beta
    a = mp(_alpha_bar(betas)[-1])
    # alpha_bars: T subtractions and T - 1 products in float64
    schedule = gamma(2 * len(betas), numpy.float64)
    check.close(mean, mpmath.sqrt(a) * mp(x0), 1e-40 + schedule * abs(mp(x0)),
                "mean recursion against alpha_bars")
    check.close(variance, 1 - a, 1e-40 + schedule, "variance recursion against alpha_bars")
    x = engine(numpy.full(LAW_SAMPLES, x0), numpy.float64)
    for step, beta in enumerate(betas):
        x = diffusion.q_sample(numpy.asarray([1 - beta]), x, 0,
                               engine_noise("normal", (LAW_SAMPLES,), seed * 100 + step))
    gaussian_law_checks(check, host(x), float(mpmath.sqrt(a) * mp(x0)),
                        float(mpmath.sqrt(1 - a)), "chain")


# Draws per example of sampleTimesteps_uniform: its KS critical value is then 0.022. At T <= 16
# (drawn) the slips its mutants make move the CDF by at least 1/16 at k = 0 (no t = 0, so
# F_n(0) = 0 on every draw) or by (T - 1) / (T (T + 1)) >= 0.055 at k = T - 2 (t = T - 1 twice
# as likely), which 20000 draws miss with probability below 2 exp(-2 20000 0.033^2) = 3e-19
# (Hoeffding); a t = T, of probability 1/(T + 1), is missed by all of them with (16/17)^20000.
TIMESTEP_DRAWS = 20000


@statement("sampleTimesteps_uniform", about=(f"{DIFFUSION}.sample_timesteps",),
           given={"T": st.integers(2, 16), "seed": st.integers(0, 2 ** 32 - 1)}, max_examples=4)
def sample_timesteps_uniform(check, T, seed):
    """t = sample_timesteps(n, T, generator), the timesteps training draws, is uniform on
    {0, ..., T-1}: an int64 array of n timesteps, none outside 0..T-1 (exact), each k in
    0..T-1 drawn with probability 1/T (statistical: a seeded NumPy generator, as training's,
    and Kolmogorov-Smirnov against the CDF (k + 1) / T); at T = 1 every t is 0 (exact)."""
    from minilean.models import diffusion
    draws = diffusion.sample_timesteps(TIMESTEP_DRAWS, T, numpy.random.default_rng(seed))
    check.holds(isinstance(draws, numpy.ndarray) and draws.dtype == numpy.int64
                and draws.shape == (TIMESTEP_DRAWS,),
                f"T = {T}: {type(draws).__name__} {getattr(draws, 'dtype', '')} "
                f"{getattr(draws, 'shape', '')}, not int64 ({TIMESTEP_DRAWS},)")
    outside = sorted(set(draws[(draws < 0) | (draws >= T)].tolist()))
    check.holds(not outside, f"T = {T}: timesteps {outside[:4]} outside 0..{T - 1}")
    uniform_integers_check(check, draws, T, f"T = {T}")
    # T = 1 last: a slip that cannot draw there (integers(1, 1) raises) fails by its law first
    single = diffusion.sample_timesteps(8, 1, numpy.random.default_rng(seed))
    check.holds(numpy.array_equal(single, numpy.zeros(8, numpy.int64)),
                f"T = 1: timesteps {single}, not all 0")


def _posterior_given():
    """A schedule (T >= 2), a timestep t drawn from 0..T - 1 (every one, not only the last,
    where betas[t] and betas[-1] are one entry), x0 and x_t."""
    return _betas(2).flatmap(lambda betas: st.fixed_dictionaries(
        {"betas": st.just(betas), "t": st.integers(0, len(betas) - 1), "x0": reals(-2, 2),
         "x_t": reals(-3, 3)}))


@statement("ddpm_posterior_mean_variance", about=(f"{DIFFUSION}.posterior_mean_variance",
                                                  f"{DIFFUSION}.ddim_step"),
           given=_posterior_given(),
           # pinned: t = 1 of T = 3, whose beta_t = 0.2 and alpha_bar_{t-1} = 0.9 are not the
           # schedule's last (0.3, 0.72); and t = 0, where the posterior is x0 itself
           examples=[{"betas": PINNED_BETAS, "t": t, "x0": 0.5, "x_t": -1.5} for t in (1, 0)])
def ddpm_posterior(check, betas, t, x0, x_t):
    """q(x_{t-1} | x_t, x_0) by Bayes' rule from N(sqrt(alpha_bar_{t-1}) x0, 1 - alpha_bar_{t-1})
    and N(sqrt(1 - beta_t) x_{t-1}, beta_t) has the mean and variance of posterior_mean_variance
    at every timestep t (at t = 0, alpha_bar_{-1} = 1: the point mass at x0); DDIM with eta = 1
    on consecutive steps adds noise of exactly that variance."""
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(betas)
    beta, alpha_bar_prev = mp(betas[t]), _alpha_bar_at(alpha_bar, t - 1)
    if t == 0:  # the prior of x_{-1} = x0 is a point mass: the posterior is too
        variance, mean, magnitude = mpmath.mpf(0), mp(x0), abs(mp(x0))
    else:
        precision = 1 / (1 - alpha_bar_prev) + (1 - beta) / beta
        variance = 1 / precision
        mean = variance * (mpmath.sqrt(alpha_bar_prev) * mp(x0) / (1 - alpha_bar_prev)
                           + mpmath.sqrt(1 - beta) * mp(x_t) / beta)
        magnitude = variance * (mpmath.sqrt(alpha_bar_prev) * abs(mp(x0)) / (1 - alpha_bar_prev)
                                + mpmath.sqrt(1 - beta) * abs(mp(x_t)) / beta)
    for dtype in ENGINE_DTYPES:
        computed_mean, computed_variance = diffusion.posterior_mean_variance(
            betas, engine([x0], dtype), engine([x_t], dtype), t)
        # the schedule's own float64 rounding (alpha_bar recomputed, ~2T roundings) is
        # amplified by 1 / (1 - alpha_bar_t) at most
        schedule = gamma(2 * len(betas) + 8, numpy.float64) / (1 - mp(alpha_bar[t]))
        check.close(host(computed_mean), [mean], gamma(8, dtype) * magnitude
                    + schedule * magnitude + underflow(8, dtype), f"mean ({dtype.__name__})")
        check.close(computed_variance, variance, schedule * variance * 4, "variance")
        x = engine([x_t], dtype)
        eps = engine([0.5], dtype)
        with_noise = diffusion.ddim_step(alpha_bar, x, t, t - 1, eps, eta=1.0,
                                         noise=engine([1.0], dtype))
        without = diffusion.ddim_step(alpha_bar, x, t, t - 1, eps, eta=1.0,
                                      noise=engine([0.0], dtype))
        sigma = host(with_noise)[0] - host(without)[0]
        # sigma is read off as a difference of two outputs of size ~ |x_t| / sqrt(alpha_bar_t)
        # + 2 (error gamma * that, times 2 sigma for sigma^2); ddim_step forms
        # 1 - alpha_bar_t / alpha_bar_{t-1} (= beta_t) by cancellation in float64, a relative
        # error of about 3u / beta_t
        reading = 4 * mpmath.sqrt(variance) * (abs(mp(x_t)) / mpmath.sqrt(mp(alpha_bar[t])) + 2)
        cancellation = gamma(4, numpy.float64) / beta
        check.close(sigma * sigma, variance, gamma(12, dtype) * reading
                    + (schedule + cancellation) * variance,
                    f"DDIM eta=1 noise variance ({dtype.__name__})")


@st.composite
def _ancestral_example(draw, first_step=1, skips=False, etas=False):
    """A schedule (T >= 2), a step t -> t - 1 (t >= first_step; with ``skips`` t -> t_prev,
    t_prev drawn from 0..t - 1, as respaced sampling skips timesteps) and x_t, eps_hat, noise
    vectors of one length; with ``etas`` an eta drawn in (0, 1.5)."""
    betas = draw(_betas(2))
    n = draw(st.integers(1, 4))
    vector = st.lists(reals(-2, 2), min_size=n, max_size=n).map(numpy.asarray)
    t = draw(st.integers(first_step, len(betas) - 1))
    example = {"betas": betas, "t": t, "x": draw(vector), "eps": draw(vector),
               "noise": draw(vector)}
    if skips:
        example["t_prev"] = draw(st.integers(0, t - 1))
    if etas:
        example["eta"] = draw(reals(0, 1.5).filter(lambda e: 0 < e < 1.5))
    return example


def _ddim_eta_one_reference(check, alpha_bar, t, x, eps, noise, t_prev=None, eta=1):
    """ddim_step(t -> t_prev, eta) in mpmath (t_prev = t - 1 unless given), after checking, at
    eta = 1, that it is the posterior step by Bayes' rule (q(x_t' | x_t, x0) with the skip's
    beta = 1 - a / a'): (values, bounds) with bounds(dtype) the engine's rounding bounds."""
    t_prev = t - 1 if t_prev is None else t_prev
    a, a_prev = mp(alpha_bar[t]), mp(alpha_bar[t_prev])
    beta = 1 - a / a_prev  # the step's beta as the schedule's float64 alpha_bar carries it
    sigma2 = mp(eta) ** 2 * (1 - a_prev) / (1 - a) * beta
    direction = mpmath.sqrt(1 - a_prev - sigma2)
    variance = 1 / (1 / (1 - a_prev) + (1 - beta) / beta)
    if eta == 1:
        check.close(sigma2, variance, mp_tolerance(), "mpmath: sigma^2 = posterior variance")
        check.close(direction, (1 - a_prev) * mpmath.sqrt((1 - beta) / (1 - a)),
                    mp_tolerance(), "mpmath: direction coefficient")
    expected, magnitudes = [], []
    for xi, ei, zi in zip(mp(x), mp(eps), mp(noise)):
        x0 = (xi - mpmath.sqrt(1 - a) * ei) / mpmath.sqrt(a)
        mean = variance * (mpmath.sqrt(a_prev) * x0 / (1 - a_prev)
                           + mpmath.sqrt(1 - beta) * xi / beta)
        ddim = mpmath.sqrt(a_prev) * x0 + direction * ei + mpmath.sqrt(sigma2) * zi
        if eta == 1:
            check.close(ddim, mean + mpmath.sqrt(variance) * zi, mp_tolerance(ddim),
                        "mpmath: DDIM(eta = 1) = posterior mean + sqrt(variance) z")
        expected.append(ddim)
        magnitudes.append((mpmath.sqrt(a_prev / a) * (abs(xi) + mpmath.sqrt(1 - a) * abs(ei)),
                           abs(ei), abs(zi)))
    # ddim_step forms sigma in float64 from 1 - alpha_bar_t / alpha_bar_t' (= beta, by
    # cancellation: a relative error of about u / beta), then 1 - alpha_bar_t' - sigma^2
    # and its square root; 9 roundings: 1 - a', 1 - a, their quotient, its sqrt, a / a', the
    # 1 - (its error counted in gamma_2 / beta), the sqrt, the products by it and by eta
    sigma_error = gamma(9, numpy.float64) + gamma(2, numpy.float64) / beta
    inside_error = gamma(4, numpy.float64) * (1 + sigma2) + 3 * sigma_error * sigma2
    direction_error = inside_error / direction + gamma(1, numpy.float64) * direction

    def bounds(dtype):
        return [gamma(12, dtype) * (signal + direction * e + mpmath.sqrt(sigma2) * z)
                + direction_error * e + sigma_error * mpmath.sqrt(sigma2) * z
                + underflow(12, dtype) for signal, e, z in magnitudes]
    return expected, bounds


def _ddim_eta_one_engine(alpha_bar, t, x, eps, noise, dtype, t_prev=None, eta=1.0):
    from minilean.models import diffusion
    t_prev = t - 1 if t_prev is None else t_prev
    return host(diffusion.ddim_step(alpha_bar, engine(x, dtype), t, t_prev, engine(eps, dtype),
                                    eta=eta, noise=engine(noise, dtype)))


@statement("ddimStep_eta_one_eq_ddpm_posterior",
           about=(f"{DIFFUSION}.ddim_step", f"{DIFFUSION}.x0_from_eps"),
           given=_ancestral_example(skips=True),
           # pinned: a step that skips a timestep (2 -> 0)
           examples=[{"betas": PINNED_BETAS, "t": 2, "t_prev": 0, "x": _pinned(1.5, -0.5),
                      "eps": _pinned(0.5, 1.0), "noise": _pinned(-1.0, 0.25)}])
def ddim_eta_one_posterior(check, betas, t, x, eps, noise, t_prev):
    """DDIM at eta = 1 from t to t' < t is the ancestral step: ddimStep(x_t, eps_hat, z) =
    mu + sqrt(v) z with N(mu, v) the posterior q(x_t' | x_t, x0_hat) by Bayes' rule, x0_hat =
    x0Pred(x_t, eps_hat) (Song et al.), beta = 1 - alpha_bar_t / alpha_bar_t' (beta_t when
    t' = t - 1; t' drawn, as respaced sampling skips): sigma^2 = v and the direction
    coefficient is sqrt(1 - alpha_bar_t' - sigma^2) = (1 - alpha_bar_t') sqrt(1 - beta)
    / sqrt(1 - alpha_bar_t)."""
    alpha_bar = _alpha_bar(betas)
    expected, bounds = _ddim_eta_one_reference(check, alpha_bar, t, x, eps, noise, t_prev)
    for dtype in ENGINE_DTYPES:
        check.close(_ddim_eta_one_engine(alpha_bar, t, x, eps, noise, dtype, t_prev), expected,
                    bounds(dtype), f"engine ({dtype.__name__})")


@statement("ddimStep_eq_eta_formula",
           about=(f"{DIFFUSION}.ddim_step", f"{DIFFUSION}.x0_from_eps"),
           given=_ancestral_example(skips=True, etas=True),
           # pinned: a step that skips a timestep (2 -> 0), eta = 1/2
           examples=[{"betas": PINNED_BETAS, "t": 2, "t_prev": 0, "x": _pinned(1.5, -0.5),
                      "eps": _pinned(0.5, 1.0), "noise": _pinned(-1.0, 0.25), "eta": 0.5}])
def ddim_eta_formula(check, betas, t, x, eps, noise, t_prev, eta):
    """For every eta (drawn in (0, 1.5), not only 0 and 1): ddimStep(t -> t') = sqrt(a') x0_hat
    + sqrt(1 - a' - sigma^2) eps_hat + sigma z with sigma = eta sqrt((1 - a') / (1 - a))
    sqrt(1 - a / a') (eta scales the standard deviation, not the variance), a = alpha_bar_t,
    a' = alpha_bar_t'. Examples where 1 - a' - sigma^2 < (1 - a') / 16 are skipped (eta > 1
    can make it negative, where the engine clamps it to 0, and near 0 its square root
    amplifies rounding without bound)."""
    from hypothesis import assume
    alpha_bar = _alpha_bar(betas)
    a, a_prev = mp(alpha_bar[t]), mp(alpha_bar[t_prev])
    assume(1 - a_prev - mp(eta) ** 2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
           >= (1 - a_prev) / 16)
    expected, bounds = _ddim_eta_one_reference(check, alpha_bar, t, x, eps, noise, t_prev, eta)
    for dtype in ENGINE_DTYPES:
        check.close(_ddim_eta_one_engine(alpha_bar, t, x, eps, noise, dtype, t_prev, eta),
                    expected, bounds(dtype), f"engine ({dtype.__name__})")


def _ddpm_step_reference(betas, alpha_bar, t, x, eps, noise, clip=False):
    """posterior_mean_variance's documented step at x0_hat in mpmath, on the schedule's float64
    numbers beta_t, alpha_bar_t, alpha_bar_{t-1} (1 at t = 0): (values, sum |terms| each); with
    ``clip``, at x0_hat clipped to [-1, 1] (the terms still those of the unclipped x0_hat, whose
    rounding the clip passes on)."""
    beta, a = mp(betas[t]), mp(alpha_bar[t])
    a_prev = mp(alpha_bar[t - 1]) if t > 0 else mpmath.mpf(1)
    x0_coefficient = beta * mpmath.sqrt(a_prev) / (1 - a)
    xt_coefficient = (1 - a_prev) * mpmath.sqrt(1 - beta) / (1 - a)
    deviation = mpmath.sqrt(beta * (1 - a_prev) / (1 - a))
    values, magnitudes = [], []
    for xi, ei, zi in zip(mp(x), mp(eps), mp(noise)):
        x0 = (xi - mpmath.sqrt(1 - a) * ei) / mpmath.sqrt(a)
        x0 = _clip_mp(x0) if clip else x0
        values.append(x0_coefficient * x0 + xt_coefficient * xi + deviation * zi)
        magnitudes.append(x0_coefficient * (abs(xi) + mpmath.sqrt(1 - a) * abs(ei))
                          / mpmath.sqrt(a) + xt_coefficient * abs(xi) + deviation * abs(zi))
    return values, magnitudes


@statement("ddpmStep_eq_posterior_step",
           about=(f"{DIFFUSION}.ddpm_step", f"{DIFFUSION}.ddim_step"),
           given=_ancestral_example(first_step=0),
           # pinned: a step with noise (t > 0) of variance v = 0.17 (not 0 or 1), and the last
           # step t = 0, to the clean state's alpha_bar_{-1} = 1 (which only this check sees)
           examples=[{"betas": PINNED_BETAS, "t": t, "x": _pinned(1.5, -0.5),
                      "eps": _pinned(0.5, 1.0), "noise": _pinned(-1.0, 0.25)} for t in (2, 0)])
def ddpm_step_posterior(check, betas, t, x, eps, noise):
    """ddpmStep(x_t, eps_hat, z) = mu + sqrt(v) z with mu = beta_t sqrt(alpha_bar_{t-1})
    / (1 - alpha_bar_t) x0_hat + (1 - alpha_bar_{t-1}) sqrt(1 - beta_t) / (1 - alpha_bar_t) x_t
    and v = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) (the posterior at x0_hat =
    x0Pred(x_t, eps_hat); v = 0 at t = 0), and for t >= 1 it is ddimStep(t -> t - 1, eta = 1)
    with the same z, within both steps' rounding."""
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(betas)
    expected, magnitudes = _ddpm_step_reference(betas, alpha_bar, t, x, eps, noise)
    if t > 0:
        ddim_expected, ddim_bounds = _ddim_eta_one_reference(check, alpha_bar, t, x, eps, noise)
    for dtype in ENGINE_DTYPES:
        computed = host(diffusion.ddpm_step(betas, engine(x, dtype), t, engine(eps, dtype),
                                            engine(noise, dtype)))
        # x0_hat: two coefficients (float64 sqrt and division, rounded to dtype), two products,
        # a difference; the mean: two coefficients (up to six float64 roundings, rounded to
        # dtype), two products, a sum; sqrt(v) (four float64 roundings and the square root,
        # rounded to dtype), a product and the last sum: at most 12 roundings in dtype and 12
        # in float64 on any path
        bounds = [(gamma(12, dtype) + gamma(12, numpy.float64)) * m + underflow(12, dtype)
                  for m in magnitudes]
        check.close(computed, expected, bounds, f"posterior step ({dtype.__name__})")
        if t > 0:
            # the two steps differ by both roundings and by the schedule's: ddim_step carries
            # beta_t as 1 - alpha_bar_t / alpha_bar_{t-1}, ddpm_step as betas[t]
            ddim = _ddim_eta_one_engine(alpha_bar, t, x, eps, noise, dtype)
            check.close(computed, mp(ddim), [
                b + d + abs(v - w) for b, d, v, w in zip(bounds, ddim_bounds(dtype), expected,
                                                         ddim_expected)],
                f"ddpm_step = ddim_step(eta = 1) ({dtype.__name__})")


@statement("ddpmSample_eq_steps", about=(f"{DIFFUSION}.ddpm_sample", f"{DIFFUSION}.ddpm_step"),
           given={"betas": _betas(1, 4), "x": _vector(), "c": reals(-1, 1),
                  "seed": st.integers(0, 2 ** 16)},
           # pinned: x0_hat = 4.10 at t = 2 (clipped), each step with noise of its own
           examples=[{"betas": PINNED_BETAS, "x": _pinned(1.9, -0.3), "c": -0.5, "seed": 1}])
def ddpm_sample_steps(check, betas, x, c, seed):
    """ddpmSample over T steps is the composition of its steps: x <- ddpmStep(x, t,
    eps_hat(x, t), z_t) for t = T - 1, ..., 0 (no noise at t = 0), bit for bit, with the
    sampler's clip passed to each step: without and with clip on every example (eps_hat and
    z_t depend on t, so the order and the pairing of steps with draws are seen)."""
    from minilean.models import diffusion
    field = lambda v, t: (c * (t + 1)) * v.tanh()  # noqa: E731
    draws = numpy.random.default_rng(seed).standard_normal((len(betas), len(x)))
    for dtype in ENGINE_DTYPES:
        def noise(t):
            return engine(draws[t], dtype)
        x_T = engine(x, dtype)
        for clip in (False, True):
            expected = x_T
            for t in range(len(betas) - 1, -1, -1):
                expected = diffusion.ddpm_step(betas, expected, t, field(expected, t),
                                               noise(t) if t > 0 else None, clip)
            sampled = diffusion.ddpm_sample(field, betas, x_T, noise, clip)
            check.close(host(sampled), mp(host(expected)), 0,
                        f"clip = {clip} ({dtype.__name__})")


def _clip_mp(value):
    """min(max(value, -1), 1): the samplers' --clip of x0_hat to the data range."""
    return min(max(value, mpmath.mpf(-1)), mpmath.mpf(1))


@st.composite
def _clip_example(draw):
    """A schedule (T >= 2), a DDPM step t (0..T - 1), a DDIM step t -> t' (t' from the clean
    state -1 up to t - 1) with eta 0 or drawn in (0, 1), and x_t, eps_hat, z of one length;
    x_t and eps_hat in [-2, 2] put x0_hat = (x_t - sqrt(1 - a) eps_hat) / sqrt(a) outside
    [-1, 1] on most examples (1 / sqrt(a) >= 1) and inside it on some."""
    betas = draw(_betas(2))
    n = draw(st.integers(1, 4))
    vector = st.lists(reals(-2, 2), min_size=n, max_size=n).map(numpy.asarray)
    t = draw(st.integers(0, len(betas) - 1))
    ddim_t = draw(st.integers(1, len(betas) - 1))
    return {"betas": betas, "t": t, "ddim_t": ddim_t,
            "t_prev": draw(st.integers(-1, ddim_t - 1)),
            "eta": draw(st.one_of(st.just(0.0), reals(0, 1).filter(lambda e: 0 < e < 1))),
            "x": draw(vector), "eps": draw(vector), "noise": draw(vector)}


@statement("samplerStep_clip_x0Pred",
           about=(f"{DIFFUSION}.ddpm_step", f"{DIFFUSION}.ddim_step", f"{DIFFUSION}.x0_from_eps"),
           given=_clip_example(),
           # pinned: x0_hat = 4.16 and 0.07 (one clipped, one not), x_t = 1.9 outside [-1, 1],
           # a DDIM step that skips a timestep (2 -> 0)
           examples=[{"betas": PINNED_BETAS, "t": 2, "ddim_t": 2, "t_prev": 0, "eta": 0.0,
                      "x": _pinned(1.9, -0.3), "eps": _pinned(-1.5, -0.5),
                      "noise": _pinned(0.75, -1.25)}])
def sampler_step_clip(check, betas, t, ddim_t, t_prev, eta, x, eps, noise):
    """With clip (the samplers' default, ``--clip``), only x0_hat = x0Pred(x_t, eps_hat) is
    clipped, to c = min(max(x0_hat, -1), 1), and the step is otherwise unchanged:
    ddpmStep = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t) c + (1 - alpha_bar_{t-1})
    sqrt(1 - beta_t) / (1 - alpha_bar_t) x_t + sqrt(v) z (the posterior mean at c, not the eps
    form (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(1 - beta_t), which equals it only
    unclipped; v = 0 at t = 0), and ddimStep(t -> t') = sqrt(a') c + sqrt(1 - a' - sigma^2)
    eps_hat + sigma z (the direction keeps eps_hat; sigma = eta sqrt((1 - a') / (1 - a))
    sqrt(1 - a / a'), a' = 1 at the clean state t' = -1), against mpmath. Clipping is
    1-Lipschitz, so x0_hat's rounding carries through it unchanged and the unclipped steps'
    bounds hold."""
    from minilean.models import diffusion
    alpha_bar = _alpha_bar(betas)
    # DDPM: _ddpm_step_reference with x0_hat clipped (its magnitudes bound the unclipped
    # x0_hat's rounding, which clipping does not increase)
    values, magnitudes = _ddpm_step_reference(betas, alpha_bar, t, x, eps, noise, clip=True)
    # DDIM, as _ddim_eta_one_reference, with a' = 1 at the clean state (then sigma = 0 and
    # the direction 0, both exact in float64)
    a, a_prev = mp(alpha_bar[ddim_t]), _alpha_bar_at(alpha_bar, t_prev)
    beta = 1 - a / a_prev
    sigma2 = mp(eta) ** 2 * (1 - a_prev) / (1 - a) * beta
    direction = mpmath.sqrt(1 - a_prev - sigma2)
    ddim_values, ddim_terms = [], []
    for xi, ei, zi in zip(mp(x), mp(eps), mp(noise)):
        x0 = (xi - mpmath.sqrt(1 - a) * ei) / mpmath.sqrt(a)
        ddim_values.append(mpmath.sqrt(a_prev) * _clip_mp(x0) + direction * ei
                           + mpmath.sqrt(sigma2) * zi)
        ddim_terms.append((mpmath.sqrt(a_prev / a) * (abs(xi) + mpmath.sqrt(1 - a) * abs(ei)),
                           abs(ei), abs(zi)))
    if t_prev < 0:
        sigma_error = direction_error = 0
    else:
        sigma_error = gamma(9, numpy.float64) + gamma(2, numpy.float64) / beta
        inside_error = gamma(4, numpy.float64) * (1 + sigma2) + 3 * sigma_error * sigma2
        direction_error = inside_error / direction + gamma(1, numpy.float64) * direction
    for dtype in ENGINE_DTYPES:
        computed = host(diffusion.ddpm_step(betas, engine(x, dtype), t, engine(eps, dtype),
                                            engine(noise, dtype), clip=True))
        check.close(computed, values, [(gamma(12, dtype) + gamma(12, numpy.float64)) * m
                                       + underflow(12, dtype) for m in magnitudes],
                    f"DDPM step ({dtype.__name__})")
        computed = host(diffusion.ddim_step(alpha_bar, engine(x, dtype), ddim_t, t_prev,
                                            engine(eps, dtype), eta=eta,
                                            noise=engine(noise, dtype), clip=True))
        bounds = [gamma(12, dtype) * (signal + direction * e + mpmath.sqrt(sigma2) * z)
                  + direction_error * e + sigma_error * mpmath.sqrt(sigma2) * z
                  + underflow(12, dtype) for signal, e, z in ddim_terms]
        check.close(computed, ddim_values, bounds, f"DDIM step, eta = {eta} ({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

@mutant("Euler step with the wrong sign of dt", f"{DIFFUSION}.euler_step",
        caught_by=["pfOdeEulerSystem_eq_step"])
def euler_wrong_sign(original):
    """euler_step = x - dt f(x, t)."""
    return lambda f, x, t, dt: x - dt * f(x, t)


@mutant("Euler step evaluating f at the step's end", f"{DIFFUSION}.euler_step",
        caught_by=["pfOdeEulerSystem_eq_step", "eulerStep_l2_distance_bound",
                   "eulerStep_l2_lipschitz_of_rhs_lipschitz"])
def euler_at_step_end(original):
    """euler_step = x + dt f(x, t + dt): the field read at the time the step arrives at (an
    implicit Euler step's time without its implicit x). The Euler statements drew f constant in
    t, at a fixed t, and passed it."""
    return lambda f, x, t, dt: x + dt * f(x, t + dt)


@mutant("DDIM with the alphas swapped", f"{DIFFUSION}.ddim_step",
        caught_by=["ddimStep_eq_x0Pred", "alphaBar_zero",
                   "ddimStepSystem_contracts_of_step_contracts"])
def ddim_alphas_swapped(original):
    """ddim_step uses sqrt(1 - a') for x0_hat and sqrt(a') for the direction."""
    from minilean.models import diffusion

    def broken(alpha_bar, x_t, t, t_prev, eps_hat, eta=0.0, noise=None, clip=False):
        a_prev = 1.0 if t_prev < 0 else float(alpha_bar[t_prev])
        x0_hat = diffusion.x0_from_eps(alpha_bar, x_t, t, eps_hat)
        return math.sqrt(1 - a_prev) * x0_hat + math.sqrt(a_prev) * eps_hat
    return broken


@mutant("DDIM reads alpha_bar_t at the schedule's end", f"{DIFFUSION}.ddim_step",
        caught_by=["ddimStep_eq_x0Pred", "ddimStepSystem_lipschitz_of_step_lipschitz"])
def ddim_alpha_bar_at_end(original):
    """ddim_step takes a = alpha_bar[-1], the schedule's last entry, for alpha_bar_t (x0_hat's
    too): right for a step from t = T - 1 alone, where the DDIM statements drew every step."""
    def broken(alpha_bar, x_t, t, t_prev, eps_hat, *args, **kwargs):
        shifted = numpy.array(alpha_bar, dtype=numpy.float64)
        shifted[t] = shifted[-1]
        return original(shifted, x_t, t, t_prev, eps_hat, *args, **kwargs)
    return broken


@mutant("q_sample with the coefficients swapped", f"{DIFFUSION}.q_sample",
        caught_by=["forwardGaussian_isGaussian", "vTarget_value", "epsModelFromV_recovers_eps"])
def q_sample_swapped(original):
    """q_sample = sqrt(1 - alpha_bar_t) x0 + sqrt(alpha_bar_t) eps."""
    return lambda alpha_bar, x0, t, eps: original(1.0 - alpha_bar, x0, t, eps)


@mutant("q_sample uses t[0] for the whole batch", f"{DIFFUSION}.q_sample",
        caught_by=["forwardGaussian_isGaussian"])
def q_sample_first_timestep(original):
    """q_sample looks up the first example's timestep and uses it for every example."""
    def broken(alpha_bar, x0, t, eps):
        if not isinstance(t, (int, numpy.integer)):
            t = int(numpy.asarray(getattr(t, "data", t)).reshape(-1)[0])
        return original(alpha_bar, x0, t, eps)
    return broken


@mutant("q_sample's noise scaled by the variance", f"{DIFFUSION}._signal_and_noise",
        caught_by=["forwardGaussian_isGaussian", "forward_multistep_law"])
def q_sample_noise_variance(original):
    """q_sample = sqrt(alpha_bar_t) x0 + (1 - alpha_bar_t) eps: the variance where its square
    root belongs (docs/reading-guide.md has a reader make this slip)."""
    def broken(alpha_bar, t, like):
        signal, noise = original(alpha_bar, t, like)
        return signal, noise * noise
    return broken


@mutant("timesteps drawn from 1..T-1", f"{DIFFUSION}.sample_timesteps",
        caught_by=["sampleTimesteps_uniform"])
def timesteps_from_one(original):
    """sample_timesteps draws from {1, ..., T-1} (TorchLean's 1-based timesteps, 0 read as the
    clean state): the least noisy timestep, t = 0, is never trained."""
    return lambda batch_size, T, generator: generator.integers(1, T, size=batch_size)


@mutant("timesteps drawn from 0..T", f"{DIFFUSION}.sample_timesteps",
        caught_by=["sampleTimesteps_uniform"])
def timesteps_to_T(original):
    """sample_timesteps draws from {0, ..., T} (the upper end taken as inclusive): t = T lies
    past the schedule's last index."""
    return lambda batch_size, T, generator: generator.integers(0, T, size=batch_size,
                                                               endpoint=True)


@mutant("timesteps drawn from 0..T and clamped to T-1", f"{DIFFUSION}.sample_timesteps",
        caught_by=["sampleTimesteps_uniform"])
def timesteps_clamped(original):
    """sample_timesteps draws from {0, ..., T} and clamps to T - 1 (the previous slip made to
    stop indexing past the schedule): every t in range, but t = T - 1 twice as likely as each
    other timestep."""
    return lambda batch_size, T, generator: numpy.minimum(
        generator.integers(0, T + 1, size=batch_size), T - 1)


@mutant("alpha_bars off by one", f"{DIFFUSION}.alpha_bars",
        caught_by=["forward_multistep_law", "alphaBar_zero"])
def alpha_bars_off_by_one(original):
    """alpha_bars[t] = prod_{s<t} (1 - beta_s): the product stops a step early."""
    return lambda betas: numpy.concatenate([[1.0], original(betas)[:-1]])


@mutant("posterior variance uses beta_t", f"{DIFFUSION}.posterior_mean_variance",
        caught_by=["ddpm_posterior_mean_variance"])
def posterior_variance_beta(original):
    """posterior_mean_variance returns beta_t as the variance (the upper DDPM choice)."""
    def broken(betas, x0, x_t, t):
        mean, _ = original(betas, x0, x_t, t)
        return mean, float(betas[t])
    return broken


@mutant("posterior at the schedule's last timestep", f"{DIFFUSION}.posterior_mean_variance",
        caught_by=["ddpm_posterior_mean_variance", "ddpmStep_eq_posterior_step"])
def posterior_at_last_timestep(original):
    """posterior_mean_variance takes beta_t, alpha_bar_t and alpha_bar_{t-1} from the
    schedule's end (betas[-1], alpha_bar[-1], alpha_bar[-2]) whatever t: right at t = T - 1
    alone, the one timestep the statement used to check."""
    from minilean.models import diffusion

    def broken(betas, x0, x_t, t):
        alpha_bar = diffusion.alpha_bars(betas)
        beta, one_minus = float(betas[-1]), 1.0 - float(alpha_bar[-1])
        previous = float(alpha_bar[-2])
        mean = (beta * math.sqrt(previous) / one_minus * x0
                + (1.0 - previous) * math.sqrt(1.0 - beta) / one_minus * x_t)
        return mean, beta * (1.0 - previous) / one_minus
    return broken


@mutant("sampler ignores zero steps", f"{DIFFUSION}.pf_ode_sample_euler",
        caught_by=["pfOdeSampleEuler_zero_steps", "pfOdeEulerSystem_eq_step"])
def sampler_always_steps(original):
    """pf_ode_sample_euler takes one step more than asked (the legacy off-by-one)."""
    return lambda f, x1, steps: original(f, x1, steps + 1)


@mutant("PF-ODE rhs without the 1/2", f"{DIFFUSION}.pf_ode_rhs",
        caught_by=["pfOdeEulerSystem_l2_lipschitz_of_rhs_lipschitz"])
def pf_ode_without_half(original):
    """pf_ode_rhs = -beta x + beta eps_hat / sigma (legacy's missing 1/2, and on x too)."""
    return lambda x, eps_hat, beta_t, sigma_t: (-beta_t) * (x - eps_hat * (1.0 / sigma_t))


@mutant("PF-ODE sampler doubles dt", f"{DIFFUSION}.pf_ode_sample_euler",
        caught_by=["pfOdeEulerSystem_lipschitz_of_step_lipschitz",
                   "pfOdeEulerSystem_contracts_of_step_contracts"])
def pf_ode_double_dt(original):
    """pf_ode_sample_euler integrates from t = 1 to -1 (dt = -2/n): twice the flow."""
    from minilean.models import diffusion

    def broken(f, x1, steps):
        x = x1
        for index in range(steps):
            x = diffusion.euler_step(f, x, 1.0 - index / steps, -2.0 / steps)
        return x
    return broken


def _ddim_step_variant(a_prev_of=None, sigma_of=None, x0_of=None):
    """ddim_step with alpha_bar_t' read by ``a_prev_of(alpha_bar, t, t_prev)``, sigma computed
    by ``sigma_of(eta, a, a_prev)`` and/or x0_hat by ``x0_of(alpha_bar, x_t, t, eps_hat)`` (each
    the engine's own when None)."""
    from minilean.models import diffusion

    def sigma_as_engine(eta, a, a_prev):
        return eta * math.sqrt((1.0 - a_prev) / (1.0 - a)) * math.sqrt(1.0 - a / a_prev)

    def broken(alpha_bar, x_t, t, t_prev, eps_hat, eta=0.0, noise=None, clip=False):
        a = float(alpha_bar[t])
        a_prev = (a_prev_of(alpha_bar, t, t_prev) if a_prev_of else
                  1.0 if t_prev < 0 else float(alpha_bar[t_prev]))
        x0_hat = (x0_of or diffusion.x0_from_eps)(alpha_bar, x_t, t, eps_hat)
        sigma = 0.0
        if eta > 0 and a < 1.0:
            sigma = (sigma_of or sigma_as_engine)(eta, a, a_prev)
        direction = math.sqrt(max(1.0 - a_prev - sigma * sigma, 0.0))
        x_prev = math.sqrt(a_prev) * x0_hat + direction * eps_hat
        return x_prev if sigma == 0.0 else x_prev + sigma * noise
    return broken


@mutant("x0_from_eps adding the noise", f"{DIFFUSION}.x0_from_eps",
        caught_by=["ddimStep_eq_x0Pred", "ddimStepSystem_lipschitz_of_step_lipschitz",
                   "ddimStepSystem_contracts_of_step_contracts",
                   "ddimStep_eta_one_eq_ddpm_posterior", "ddimStep_eq_eta_formula",
                   "ddpmStep_eq_posterior_step"])
def x0_from_eps_plus(original):
    """x0_from_eps = (x_t + sqrt(1 - a) eps) / sqrt(a): the noise added, not removed. The DDIM
    step's eps coefficient becomes sqrt(1 - a') + sqrt(a' (1 - a) / a), above the Lipschitz
    statement's |sqrt(1 - a') - sqrt(a' (1 - a) / a)| (the swapped-alphas mutant, now that
    t' is drawn down to the clean state, mostly contracts instead, and passes it)."""
    from minilean.models import diffusion

    def broken(alpha_bar, x_t, t, eps):
        noise = diffusion._per_example(numpy.sqrt(1.0 - alpha_bar), t, x_t)
        inverse_signal = diffusion._per_example(1.0 / numpy.sqrt(alpha_bar), t, x_t)
        return (x_t + noise * eps) * inverse_signal
    return broken


@mutant("DDIM steps to t - 1 whatever t_prev", f"{DIFFUSION}.ddim_step",
        caught_by=["ddimStep_eq_x0Pred", "ddimStep_eta_one_eq_ddpm_posterior",
                   "ddimStep_eq_eta_formula"])
def ddim_prev_is_t_minus_one(original):
    """ddim_step reads a' = alpha_bar[t - 1] instead of alpha_bar[t_prev] (right only between
    neighbouring timesteps; respaced sampling skips)."""
    return _ddim_step_variant(
        a_prev_of=lambda alpha_bar, t, t_prev: 1.0 if t_prev < 0 else float(alpha_bar[t - 1]))


@mutant("DDIM eta on the variance", f"{DIFFUSION}.ddim_step",
        caught_by=["ddimStep_eq_eta_formula"])
def ddim_eta_on_variance(original):
    """ddim_step takes sigma = sqrt(eta (1 - a') / (1 - a) (1 - a / a')): eta scaling the
    variance, not the standard deviation (the same at eta = 0 and eta = 1)."""
    return _ddim_step_variant(sigma_of=lambda eta, a, a_prev: math.sqrt(
        eta * (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)))


@mutant("DDIM direction without the -sigma^2", f"{DIFFUSION}.ddim_step",
        caught_by=["ddimStep_eta_one_eq_ddpm_posterior", "ddimStep_eq_eta_formula"])
def ddim_direction_without_sigma(original):
    """ddim_step points along eps_hat with sqrt(1 - a') instead of sqrt(1 - a' - sigma^2)."""
    from minilean.models import diffusion

    def broken(alpha_bar, x_t, t, t_prev, eps_hat, eta=0.0, noise=None, clip=False):
        a = float(alpha_bar[t])
        a_prev = 1.0 if t_prev < 0 else float(alpha_bar[t_prev])
        x0_hat = diffusion.x0_from_eps(alpha_bar, x_t, t, eps_hat)
        sigma = 0.0
        if eta > 0 and a < 1.0:
            sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a)) * math.sqrt(1.0 - a / a_prev)
        x_prev = math.sqrt(a_prev) * x0_hat + math.sqrt(1.0 - a_prev) * eps_hat
        return x_prev if sigma == 0.0 else x_prev + sigma * noise
    return broken


def _broken_ddpm_step(scale_noise, swap):
    """ddpm_step with its noise scaled by ``scale_noise(variance)`` and, with ``swap``, x_t and
    x0_hat exchanged in the posterior mean."""
    from minilean.models import diffusion

    def broken(betas, x_t, t, eps_hat, noise, clip=False):
        x0_hat = diffusion.x0_from_eps(diffusion.alpha_bars(betas), x_t, t, eps_hat)
        if clip:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        first, second = (x_t, x0_hat) if swap else (x0_hat, x_t)
        mean, variance = diffusion.posterior_mean_variance(betas, first, second, t)
        return mean if variance == 0.0 else mean + scale_noise(variance) * noise
    return broken


@mutant("DDPM step adds variance * noise", f"{DIFFUSION}.ddpm_step",
        caught_by=["ddpmStep_eq_posterior_step"])
def ddpm_step_variance_noise(original):
    """ddpm_step = mean + v z: the variance where its square root belongs."""
    return _broken_ddpm_step(lambda variance: variance, swap=False)


@mutant("DDPM step swaps x0 and x_t in the mean", f"{DIFFUSION}.ddpm_step",
        caught_by=["ddpmStep_eq_posterior_step"])
def ddpm_step_swapped_mean(original):
    """ddpm_step's posterior mean weighs x_t with x0_hat's coefficient and x0_hat with x_t's."""
    return _broken_ddpm_step(math.sqrt, swap=True)


@mutant("DDPM sampler skips t = 0", f"{DIFFUSION}.ddpm_sample", caught_by=["ddpmSample_eq_steps"])
def ddpm_sample_skips_last(original):
    """ddpm_sample stops after t = 1: the last (noise-free) step to the data is never taken."""
    from minilean.models import diffusion

    def broken(eps_model, betas, x_T, noise, clip=False):
        x = x_T
        for t in reversed(range(1, len(betas))):
            x = diffusion.ddpm_step(betas, x, t, eps_model(x, t), noise(t), clip)
        return x
    return broken


@mutant("DDPM sampler starts from fresh noise", f"{DIFFUSION}.ddpm_sample",
        caught_by=["ddpmSample_zero_steps"])
def ddpm_sample_fresh_noise(original):
    """ddpm_sample starts from the draw noise(T) instead of the x_T it is given."""
    return lambda eps_model, betas, x_T, noise, clip=False: original(
        eps_model, betas, noise(len(betas)), noise, clip)


@mutant("DDPM sampler drops clip", f"{DIFFUSION}.ddpm_sample", caught_by=["ddpmSample_eq_steps"])
def ddpm_sample_drops_clip(original):
    """ddpm_sample accepts clip and never passes it to its steps: x0_hat goes unclipped."""
    return lambda eps_model, betas, x_T, noise, clip=False: original(eps_model, betas, x_T, noise)


@mutant("DDIM sampler drops clip", f"{DIFFUSION}.ddim_sample",
        caught_by=["ddimStepSystem_eq_step"])
def ddim_sample_drops_clip(original):
    """ddim_sample accepts clip and never passes it to its steps: x0_hat goes unclipped."""
    def broken(eps_model, alpha_bar, x_T, timesteps, eta=0.0, noise=None, clip=False):
        return original(eps_model, alpha_bar, x_T, timesteps, eta, noise)
    return broken


@mutant("DDIM sampler ignores eta", f"{DIFFUSION}.ddim_sample",
        caught_by=["ddimStepSystem_eq_step"])
def ddim_sample_ignores_eta(original):
    """ddim_sample runs every step at eta = 0, without noise, whatever eta it is given: the
    deterministic sampler in place of the stochastic one."""
    def broken(eps_model, alpha_bar, x_T, timesteps, eta=0.0, noise=None, clip=False):
        return original(eps_model, alpha_bar, x_T, timesteps, 0.0, None, clip)
    return broken


@mutant("DDIM sampler runs every timestep when given none", f"{DIFFUSION}.ddim_sample",
        caught_by=["ddimSample_zero_steps"])
def ddim_sample_empty_means_all(original):
    """ddim_sample reads an empty timestep list as "all of them" (``timesteps or ...``)."""
    def broken(eps_model, alpha_bar, x_T, timesteps, eta=0.0, noise=None, clip=False):
        timesteps = timesteps or list(range(len(alpha_bar) - 1, -1, -1))
        return original(eps_model, alpha_bar, x_T, timesteps, eta, noise, clip)
    return broken


@mutant("DDIM sampler steps to t - T // steps", f"{DIFFUSION}.ddim_sample",
        caught_by=["ddimStepSystem_eq_step"])
def ddim_sample_fixed_stride(original):
    """ddim_sample steps from t to t - T // steps instead of the list's next timestep (the
    diffusers bug #2076)."""
    from minilean.models import diffusion

    def broken(eps_model, alpha_bar, x_T, timesteps, eta=0.0, noise=None, clip=False):
        stride, x = len(alpha_bar) // max(len(timesteps), 1), x_T
        for t in timesteps:
            draw = noise(t) if eta > 0 else None
            x = diffusion.ddim_step(alpha_bar, x, t, t - stride, eps_model(x, t), eta, draw, clip)
        return x
    return broken


@mutant("Euler step without dt", f"{DIFFUSION}.euler_step",
        caught_by=["eulerStep_l2_lipschitz_of_rhs_lipschitz", "eulerStep_l2_distance_bound"])
def euler_without_dt(original):
    """euler_step = x + f(x, t): the step size never multiplies the slope."""
    return lambda f, x, t, dt: x + f(x, t)


@mutant("DDPM step ignores clip", f"{DIFFUSION}.ddpm_step", caught_by=["samplerStep_clip_x0Pred"])
def ddpm_step_ignores_clip(original):
    """ddpm_step never clips x0_hat (the flag accepted and dropped on the way down)."""
    return lambda betas, x_t, t, eps_hat, noise, clip=False: original(betas, x_t, t, eps_hat,
                                                                       noise)


@mutant("DDPM step clips x_t instead of x0_hat", f"{DIFFUSION}.ddpm_step",
        caught_by=["samplerStep_clip_x0Pred"])
def ddpm_step_clips_x_t(original):
    """ddpm_step clips the noisy x_t to [-1, 1] before predicting x0 from it."""
    from minilean.models import diffusion

    def broken(betas, x_t, t, eps_hat, noise, clip=False):
        return original(betas, diffusion._clip_unit(x_t) if clip else x_t, t, eps_hat, noise)
    return broken


@mutant("DDPM step's clipped mean in the eps form", f"{DIFFUSION}.ddpm_step",
        caught_by=["samplerStep_clip_x0Pred"])
def ddpm_step_eps_form(original):
    """ddpm_step takes the mean as (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat)
    / sqrt(1 - beta_t) (the DDPM paper's form, equal to the posterior mean at x0_hat only
    unclipped), so clip changes nothing."""
    from minilean.models import diffusion

    def broken(betas, x_t, t, eps_hat, noise, clip=False):
        beta, a = float(betas[t]), float(diffusion.alpha_bars(betas)[t])
        mean = (x_t - (beta / math.sqrt(1.0 - a)) * eps_hat) * (1.0 / math.sqrt(1.0 - beta))
        _, variance = diffusion.posterior_mean_variance(betas, x_t, x_t, t)
        return mean if variance == 0.0 else mean + math.sqrt(variance) * noise
    return broken


@mutant("DDIM step ignores clip", f"{DIFFUSION}.ddim_step", caught_by=["samplerStep_clip_x0Pred"])
def ddim_step_ignores_clip(original):
    """ddim_step never clips x0_hat."""
    return lambda alpha_bar, x_t, t, t_prev, eps_hat, eta=0.0, noise=None, clip=False: original(
        alpha_bar, x_t, t, t_prev, eps_hat, eta, noise)


@mutant("DDIM step clips its output instead of x0_hat", f"{DIFFUSION}.ddim_step",
        caught_by=["samplerStep_clip_x0Pred"])
def ddim_step_clips_output(original):
    """ddim_step clips x_t' to [-1, 1] after the step instead of x0_hat before it."""
    from minilean.models import diffusion

    def broken(alpha_bar, x_t, t, t_prev, eps_hat, eta=0.0, noise=None, clip=False):
        stepped = original(alpha_bar, x_t, t, t_prev, eps_hat, eta, noise)
        return diffusion._clip_unit(stepped) if clip else stepped
    return broken


@mutant("DDIM reads the clean state's alpha_bar at the last index", f"{DIFFUSION}.ddim_step",
        caught_by=["alphaBar_zero", "ddimStepSystem_contracts_of_step_contracts"])
def ddim_clean_state_at_index_minus_one(original):
    """ddim_step reads a' = alpha_bar[t_prev] for the clean state t_prev = -1 too, where
    Python's index -1 gives the last alpha_bar_{T-1}, not 1: the last step from t = T - 1
    returns x_t itself, off x0_hat by |x_t - x0_hat| (under 1 at the pinned examples)."""
    return _ddim_step_variant(a_prev_of=lambda alpha_bar, t, t_prev: float(alpha_bar[t_prev]))


@mutant("PF-ODE rhs dividing eps_hat by sigma^2", f"{DIFFUSION}.pf_ode_rhs",
        caught_by=["pfOdeEulerSystem_l2_lipschitz_of_rhs_lipschitz",
                   "pfOdeEulerSystem_contracts_of_step_contracts"])
def pf_ode_eps_over_variance(original):
    """pf_ode_rhs = -beta/2 (x - eps_hat / sigma^2): the score as -(x - mean) / sigma^2 with
    eps_hat put for x - mean, where -eps_hat / sigma belongs (the same at sigma = 1)."""
    return lambda x, eps_hat, beta_t, sigma_t: original(x, eps_hat, beta_t, sigma_t * sigma_t)


@mutant("DDIM step with its own x0_hat", f"{DIFFUSION}.ddim_step",
        caught_by=["ddimStep_eq_x0Pred"])
def ddim_step_own_x0_hat(original):
    """ddim_step computes x0_hat itself, (x_t - sqrt(1 - a) eps_hat) / sqrt(a), dividing where
    x0_from_eps multiplies by 1/sqrt(a): a copy of x0Pred, equal over the reals and within
    rounding of mpmath, but not the x0_hat the step is stated to share (off by an ulp at the
    pinned example)."""
    return _ddim_step_variant(x0_of=lambda alpha_bar, x_t, t, eps: (
        x_t - math.sqrt(1.0 - float(alpha_bar[t])) * eps) / math.sqrt(float(alpha_bar[t])))


@mutant("PF-ODE sampler returns after its first step",
        f"{DIFFUSION}.pf_ode_sample_euler",
        caught_by=["pfOdeEulerSystem_eq_step", "pfOdeEulerSystem_contracts_of_step_contracts"])
def pf_ode_first_step_only(original):
    """pf_ode_sample_euler returns inside its loop (an indentation slip): one Euler step of
    dt = -1/n, whatever n."""
    from minilean.models import diffusion
    return lambda f, x1, steps: original(f, x1, 0) if steps == 0 else diffusion.euler_step(
        f, x1, 1.0, -1.0 / steps)


@mutant("q_sample reads the previous alpha_bar for one integer t", f"{DIFFUSION}.q_sample",
        caught_by=["forwardGaussian_isGaussian"])
def q_sample_integer_t_one_based(original):
    """q_sample given one integer timestep reads alpha_bar[t - 1] (TorchLean's 1-based alphaBar
    t; the last alpha_bar at t = 0), a batch of timesteps the right ones: only the statement's
    check with t as one integer sees it, its law tests draw with a batch."""
    def broken(alpha_bar, x0, t, eps):
        # alpha_bar rolled by one: entry t is alpha_bar[t - 1], entry 0 the last (q_sample
        # itself refuses t - 1 = -1)
        one_based = numpy.roll(alpha_bar, 1) if isinstance(t, (int, numpy.integer)) else alpha_bar
        return original(one_based, x0, t, eps)
    return broken


@mutant("a batch of timesteps reads a float32 copy of the schedule",
        f"{DIFFUSION}._per_example", caught_by=["forwardGaussian_isGaussian"])
def per_example_float32_schedule(original):
    """_per_example gathers a batch of timesteps from a float32 copy of the table (as a device
    copy made in the model's dtype would be): float64 coefficients off by ~1e-8, which only
    the batch's check by value sees (one integer t reads the float64 table; the law tests
    cannot resolve 1e-8)."""
    def broken(values, t, like):
        if not isinstance(t, (int, numpy.integer)):
            values = numpy.asarray(values, dtype=numpy.float32).astype(numpy.float64)
        return original(values, t, like)
    return broken


@mutant("posterior mean weighs x0 by sqrt(alpha_bar_t)", f"{DIFFUSION}.posterior_mean_variance",
        caught_by=["ddpm_posterior_mean_variance", "ddpmStep_eq_posterior_step"])
def posterior_mean_current_alpha_bar(original):
    """posterior_mean_variance's x0 coefficient is beta_t sqrt(alpha_bar_t) / (1 - alpha_bar_t):
    the current timestep's alpha_bar where the previous one's belongs."""
    from minilean.models import diffusion

    def broken(betas, x0, x_t, t):
        alpha_bar = diffusion.alpha_bars(betas)
        ratio = float(alpha_bar[t]) / diffusion._alpha_bar_before(alpha_bar, t)
        return original(betas, math.sqrt(ratio) * x0, x_t, t)
    return broken


@mutant("DDIM noise with the step's beta as variance", f"{DIFFUSION}.ddim_step",
        caught_by=["ddpm_posterior_mean_variance", "ddimStep_eta_one_eq_ddpm_posterior",
                   "ddimStep_eq_eta_formula", "ddpmStep_eq_posterior_step"])
def ddim_sigma_is_beta(original):
    """ddim_step takes sigma = eta sqrt(1 - a / a'): at eta = 1 the step's beta as the noise
    variance (DDPM's upper choice sigma_t^2 = beta_t), without the factor (1 - a') / (1 - a)
    that makes it the posterior variance."""
    return _ddim_step_variant(sigma_of=lambda eta, a, a_prev: eta * math.sqrt(1.0 - a / a_prev))


@mutant("DDPM step clips x_t too", f"{DIFFUSION}.ddpm_step", caught_by=["samplerStep_clip_x0Pred"])
def ddpm_step_clips_x_t_too(original):
    """ddpm_step with clip clamps the noisy x_t to [-1, 1] as well as x0_hat (the flag read as
    "keep everything in the data range"): the posterior mean then weighs a clipped x_t, which
    only an x_t outside [-1, 1] shows."""
    from minilean.models import diffusion

    def broken(betas, x_t, t, eps_hat, noise, clip=False):
        return original(betas, diffusion._clip_unit(x_t) if clip else x_t, t, eps_hat, noise, clip)
    return broken


@mutant("the clean state's alpha_bar read as the last timestep's", f"{DIFFUSION}._alpha_bar_before",
        caught_by=["ddpmStep_eq_posterior_step"])
def alpha_bar_before_wraps(original):
    """_alpha_bar_before(t) = alpha_bar[t - 1] whatever t: at t = 0 Python's index -1 reads the
    last timestep's alpha_bar, not the clean state's 1, so the last DDPM step adds noise and
    misses x0_hat (ddpm_step = ddim_step(eta = 1) is checked for t >= 1 only)."""
    return lambda alpha_bar, t: float(alpha_bar[t - 1])
