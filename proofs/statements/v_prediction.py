"""v-prediction (Salimans & Ho), the default ``--prediction v``: ``v_target``,
``eps_model_from_v`` and ``v_prediction_loss`` of ``minilean.models.diffusion``, and beside
it the eps-prediction loss of ``--prediction eps`` (``eps_prediction_loss``).

With a = alpha_bar_t, s = sqrt(a), n = sqrt(1 - a) (s^2 + n^2 = 1) and x_t = s x0 + n eps:

    v = s eps - n x0,     eps = n x_t + s v,     x0 = s x_t - n v.

Rounding counts (numerics.py): s and n are computed in float64 from the schedule (1 - a: one
rounding, sqrt: one) and rounded to the engine's dtype (one), so each coefficient carries three
roundings; a product adds one and a sum or difference one. Schedules are float64 host arrays,
so mpmath takes the engine's own alpha_bar values as exact inputs.
"""
import itertools
import math

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.gradients import backward_name, upstream
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, host, mp, mp_tolerance, reals,
                             underflow)

DIFFUSION = "minilean.models.diffusion"


@st.composite
def _example(draw):
    """A schedule (T <= 6), one timestep per row of a batch (B <= 3 rows of n <= 4), x0, eps."""
    T = draw(st.integers(1, 6))
    betas = numpy.asarray(draw(st.lists(reals(2 ** -13, 0.5), min_size=T, max_size=T)))
    rows, n = draw(st.integers(1, 3)), draw(st.integers(1, 4))

    def matrix(low, high):
        values = draw(st.lists(reals(low, high), min_size=rows * n, max_size=rows * n))
        return numpy.asarray(values).reshape(rows, n)
    return {"betas": betas, "t": numpy.asarray(draw(st.lists(
        st.integers(0, T - 1), min_size=rows, max_size=rows))),
        "x0": matrix(-2, 2), "eps": matrix(-3, 3), "c": draw(reals(-2, 2))}


def _coefficients(alpha_bar, t):
    a = mp(alpha_bar[t])
    return mpmath.sqrt(a), mpmath.sqrt(1 - a)


def _engine_terms(alpha_bar, x0, t, eps, dtype):
    """(x_t, v) from the engine: q_sample and v_target with one timestep per row."""
    from minilean.models import diffusion
    x0_, eps_ = engine(x0, dtype), engine(eps, dtype)
    return (diffusion.q_sample(alpha_bar, x0_, t, eps_),
            diffusion.v_target(alpha_bar, x0_, t, eps_))


# error bounds of the engine's x_t (q_sample: coefficients 3, product 1, sum 1 -> gamma_5;
# the existing forwardGaussian_isGaussian allows gamma_7) and v (the same count, gamma_5),
# each plus the underflow of its two products in the dtype (tiny x0 or eps: s x0 ~ 1e-40 in
# float32 is subnormal, its rounding absolute, not relative)
def _xt_error(s, n, x0, eps, dtype):
    return gamma(7, dtype) * (s * abs(x0) + n * abs(eps)) + underflow(2, dtype)


def _v_error(s, n, x0, eps, dtype):
    return gamma(5, dtype) * (s * abs(eps) + n * abs(x0)) + underflow(2, dtype)


def _carried_errors(xt_weight, v_weight, s, n, x0, eps, dtype):
    """Per element, how far xt_weight x_t + v_weight v taken in mpmath on the engine's x_t and
    v can be from its exact value: their errors scaled by the weights, plus mpmath's own."""
    return [xt_weight * _xt_error(s, n, x, e, dtype) + v_weight * _v_error(s, n, x, e, dtype)
            + mp_tolerance(abs(x) + abs(e)) for x, e in zip(mp(x0), mp(eps))]


@statement("vTarget_value", about=(f"{DIFFUSION}.v_target", f"{DIFFUSION}.q_sample"),
           given=_example())
def v_target_value(check, betas, t, x0, eps, c):
    """v_target(x0, t, eps) = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (one timestep per
    row, and t as one integer), and with x_t = q_sample(x0, t, eps) the docstring's inversion
    x0 = sqrt(a) x_t - sqrt(1 - a) v holds at 50 digits on the engine's own x_t and v, within
    their rounding carried through."""
    from minilean.models import diffusion
    alpha_bar = diffusion.alpha_bars(betas)
    for dtype in ENGINE_DTYPES:
        x_t, v = (host(value) for value in _engine_terms(alpha_bar, x0, t, eps, dtype))
        for row, step in enumerate(t):
            s, n = _coefficients(alpha_bar, step)
            exact = [s * e - n * x for x, e in zip(mp(x0[row]), mp(eps[row]))]
            bounds = [_v_error(s, n, x, e, dtype) for x, e in zip(mp(x0[row]), mp(eps[row]))]
            check.close(v[row], exact, bounds, f"v, row {row}, t = {step} ({dtype.__name__})")
            alone = diffusion.v_target(alpha_bar, engine(x0[row], dtype), int(step),
                                       engine(eps[row], dtype))
            check.close(host(alone), exact, bounds, f"v, t = {step} as one integer "
                        f"({dtype.__name__})")
            # x0 = s x_t - n v in mpmath on the engine's values
            recovered = [s * mp(a) - n * mp(b) for a, b in zip(x_t[row], v[row])]
            check.close(recovered, mp(x0[row]),
                        _carried_errors(s, n, s, n, x0[row], eps[row], dtype),
                        f"x0 = sqrt(a) x_t - sqrt(1-a) v, row {row} ({dtype.__name__})")


def _with_fractions(example):
    """``example`` with a fraction f in [0, 1] per row, each row's fractional timestep
    f (T - 1) (the PF-ODE sampler's: ContinuousSchedule.timestep is t T - 1, clamped)."""
    rows = len(example["t"])
    return st.lists(reals(0, 1), min_size=rows, max_size=rows).map(
        lambda fractions: dict(example, fractions=numpy.asarray(fractions)))


def _noised_and_velocity(alpha_bar, x0, eps, time):
    """(x_t, v) on the engine at the timestep ``time``: q_sample and v_target at an integer
    one; at a fractional one, which they do not take, sqrt(a) x0 + sqrt(1 - a) eps and
    sqrt(a) eps - sqrt(1 - a) x0 with a = alpha_bar_at(alpha_bar, time), rounded as theirs
    (the coefficients in float64 and cast to the dtype, two products and a sum)."""
    from minilean.models import diffusion
    if isinstance(time, (int, numpy.integer)):
        return (diffusion.q_sample(alpha_bar, x0, time, eps),
                diffusion.v_target(alpha_bar, x0, time, eps))
    a = diffusion.alpha_bar_at(alpha_bar, time)
    signal, noise = math.sqrt(a), math.sqrt(1.0 - a)
    return signal * x0 + noise * eps, signal * eps - noise * x0


@statement("epsModelFromV_recovers_eps",
           about=(f"{DIFFUSION}.eps_model_from_v", f"{DIFFUSION}.EpsFromV",
                  f"{DIFFUSION}.v_target", f"{DIFFUSION}.alpha_bar_at"),
           given=_example().flatmap(_with_fractions),
           # pinned: T = 3 and timesteps 2 and 1, each with a timestep below it, and the
           # fractional timesteps 1.5 and 0.5, between two
           examples=[{"betas": numpy.asarray([0.1, 0.2, 0.3]), "t": numpy.asarray([2, 1]),
                      "x0": numpy.asarray([[0.5, -1.0], [1.5, 0.25]]),
                      "eps": numpy.asarray([[1.0, 0.5], [-0.5, 2.0]]), "c": 0.5,
                      "fractions": numpy.asarray([0.75, 0.25])}])
def eps_from_v(check, betas, t, x0, eps, c, fractions):
    """v_model(x, tau) = v_target(x0, tau, eps)  =>  eps_model_from_v(v_model)(x_t, t)
    = sqrt(1 - a_t) x_t + sqrt(a_t) v_model(x_t, t) = eps, at each row's integer timestep t
    and at a fractional one, f (T - 1) (the PF-ODE sampler's, ``--prediction v --sampler
    pf-euler``), with a_t = alpha_bar_at(alpha_bar, t), log alpha_bar linear between integer
    timesteps (there x_t and v are sqrt(a_t) x0 + sqrt(1 - a_t) eps and sqrt(a_t) eps
    - sqrt(1 - a_t) x0): the identity at 50 digits on the engine's x_t and v, and the engine's
    eps_hat against eps within the rounding of x_t, v and its own (float coefficients: sqrt
    in float64 and the cast, 3; product 1; sum 1 -> gamma_5). The v-model depends on the
    timestep it is called at (v_target at tau), so the model must be called at the very t
    whose a_t converts its output, and a_t read at a fractional t too. The x0 the DDPM and
    DDIM samplers take with it (``eps_and_x0``: sqrt(a_t) x_t - sqrt(1 - a_t) v_model(x_t, t),
    from v, since x0_from_eps of eps_hat loses v where a_t is tiny) recovers x0 alike, and
    its eps_hat is eps_model's to the bit."""
    from minilean.models import diffusion
    alpha_bar = diffusion.alpha_bars(betas)
    for dtype in ENGINE_DTYPES:
        for row, step in enumerate(t):
            x0_, eps_ = engine(x0[row], dtype), engine(eps[row], dtype)
            # the v-model is v_target at the time it is called with: right only at t itself,
            # so a conversion at one timestep of a model called at another shows
            eps_model = diffusion.eps_model_from_v(
                lambda x, time, x0_=x0_, eps_=eps_: _noised_and_velocity(
                    alpha_bar, x0_, eps_, time)[1], alpha_bar)
            for time in (int(step), float(fractions[row] * (len(betas) - 1))):
                a = mp(diffusion.alpha_bar_at(alpha_bar, time))
                s, n = mpmath.sqrt(a), mpmath.sqrt(1 - a)
                x_t, v = _noised_and_velocity(alpha_bar, x0_, eps_, time)
                eps_hat = host(eps_model(x_t, time))
                xs, vs = mp(host(x_t)), mp(host(v))
                exact_on_engine = [n * p + s * q for p, q in zip(xs, vs)]
                own = [gamma(5, dtype) * (n * abs(p) + s * abs(q)) + underflow(2, dtype)
                       for p, q in zip(xs, vs)]
                check.close(eps_hat, exact_on_engine, own,
                            f"eps_hat = sqrt(1-a) x_t + sqrt(a) v, t = {time} ({dtype.__name__})")
                carried = [o + inherited for o, inherited in
                           zip(own, _carried_errors(n, s, s, n, x0[row], eps[row], dtype))]
                check.close(eps_hat, mp(eps[row]), carried,
                            f"eps_hat recovers eps, t = {time} ({dtype.__name__})")
                paired_eps, x0_hat = (host(value) for value in eps_model.eps_and_x0(x_t, time))
                check.holds(numpy.array_equal(paired_eps, eps_hat),
                           f"eps_and_x0's eps_hat is eps_model's, t = {time} ({dtype.__name__})")
                own = [gamma(5, dtype) * (s * abs(p) + n * abs(q)) + underflow(2, dtype)
                       for p, q in zip(xs, vs)]
                check.close(x0_hat, [s * p - n * q for p, q in zip(xs, vs)], own,
                            f"x0_hat = sqrt(a) x_t - sqrt(1-a) v, t = {time} ({dtype.__name__})")
                carried = [o + inherited for o, inherited in
                           zip(own, _carried_errors(s, n, s, n, x0[row], eps[row], dtype))]
                check.close(x0_hat, mp(x0[row]), carried,
                            f"x0_hat recovers x0, t = {time} ({dtype.__name__})")


# two rows at two timesteps (a batch of one shows no pairing of coefficients with examples)
PINNED_ROWS = {"betas": numpy.asarray([0.1, 0.2, 0.3]), "t": numpy.asarray([2, 0]),
               "x0": numpy.asarray([[0.5, -1.0], [1.5, 0.25]]),
               "eps": numpy.asarray([[1.0, 0.5], [-0.5, 2.0]]), "c": 0.5}


@statement("vPredictionLoss_value",
           about=(f"{DIFFUSION}.v_prediction_loss", f"{DIFFUSION}.v_target",
                  f"{DIFFUSION}.q_sample"),
           given=_example(), examples=[PINNED_ROWS])
def v_loss_value(check, betas, t, x0, eps, c):
    """v_prediction_loss(v_model, x0, t, eps) = mean((v_model(x_t, t) - v)^2) with
    x_t = q_sample(x0, t, eps) and v = sqrt(a) eps - sqrt(1 - a) x0, one timestep per row, for
    the linear model v_model(x, t) = c x (mpmath against the engine)."""
    from minilean.models import diffusion
    _prediction_loss_check(check, diffusion.v_prediction_loss,
                           lambda s, n, x, e: s * e - n * x, _v_error, betas, t, x0, eps, c)


@statement("epsPredictionLoss_value",
           about=(f"{DIFFUSION}.eps_prediction_loss", f"{DIFFUSION}.q_sample"),
           given=_example(), examples=[PINNED_ROWS])
def eps_loss_value(check, betas, t, x0, eps, c):
    """eps_prediction_loss(eps_model, x0, t, eps) = mean((eps_model(x_t, t) - eps)^2) with
    x_t = q_sample(x0, t, eps) = sqrt(a) x0 + sqrt(1 - a) eps (the DDPM "simple" loss,
    ``--prediction eps``), one timestep per row, for the linear model eps_model(x, t) = c x
    (mpmath against the engine; eps itself is exact, so the target adds no rounding)."""
    from minilean.models import diffusion
    _prediction_loss_check(check, diffusion.eps_prediction_loss, lambda s, n, x, e: e,
                           lambda s, n, x, e, dtype: 0, betas, t, x0, eps, c)


def _prediction_loss_check(check, loss_function, target, target_error, betas, t, x0, eps, c):
    """``loss_function(model, alpha_bar, x0, t, eps)`` = mean((model(x_t, t) - target)^2) with
    x_t = q_sample(x0, t, eps), one timestep per row, for the linear model model(x, t) = c x,
    against mpmath; ``target(s, n, x0, eps)`` is the regression target in mpmath and
    ``target_error`` the engine's rounding bound on it. Each example runs twice: on rows
    (B, n) and on the same values as the models' images (B, C, H, W) = (B, 1, 1, n), whose
    per-example coefficients must broadcast as (B, 1, 1, 1) (one shaped (B, 1) for rows
    pairs them with the image's rows, H, instead)."""
    from minilean.models import diffusion
    alpha_bar = diffusion.alpha_bars(betas)
    for dtype, shape in itertools.product(ENGINE_DTYPES, (x0.shape, (len(t), 1, 1, -1))):
        loss = host(loss_function(lambda x, time: x * dtype(c), alpha_bar,
                                  engine(x0.reshape(shape), dtype), t,
                                  engine(eps.reshape(shape), dtype)))
        total, slack, count = mpmath.mpf(0), mpmath.mpf(0), x0.size
        for row, step in enumerate(t):
            s, n = _coefficients(alpha_bar, step)
            for x, e in zip(mp(x0[row]), mp(eps[row])):
                x_t, goal = s * x + n * e, target(s, n, x, e)
                d = mp(c) * x_t - goal
                # d's error: c times x_t's, the product c x_t (1), the target's, the
                # difference (1)
                e_d = (abs(mp(c)) * _xt_error(s, n, x, e, dtype)
                       + target_error(s, n, x, e, dtype)
                       + gamma(2, dtype) * (abs(mp(c) * x_t) + abs(goal)))
                total += d * d
                # d^2 from a d off by e_d: 2 |d| e_d + e_d^2; the square, the N - 1 additions
                # and the division by N: gamma_{N+1} relative
                slack += (2 * abs(d) * e_d + e_d * e_d) * (1 + gamma(count + 1, dtype)) \
                    + gamma(count + 1, dtype) * d * d
        check.close(float(loss), total / count, slack / count + mp_tolerance(total),
                    f"loss, x0 of shape {engine(x0.reshape(shape), dtype).shape} "
                    f"({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

@mutant("v_target with its sign flipped", f"{DIFFUSION}.v_target",
        caught_by=["vTarget_value", "vPredictionLoss_value"])
def v_target_sign(original):
    """v_target = sqrt(1 - a) x0 - sqrt(a) eps: the velocity with its sign flipped."""
    return lambda alpha_bar, x0, t, eps: -original(alpha_bar, x0, t, eps)


@mutant("eps_model_from_v with the coefficients swapped", f"{DIFFUSION}.eps_model_from_v",
        caught_by=["epsModelFromV_recovers_eps"])
def eps_from_v_swapped(original):
    """eps_model_from_v = sqrt(a) x_t + sqrt(1 - a) v_hat (sqrt(a) and sqrt(1 - a) swapped)."""
    import math

    from minilean.models import diffusion

    def broken(v_model, alpha_bar):
        def eps_model(x_t, t):
            a = diffusion.alpha_bar_at(alpha_bar, t)
            return math.sqrt(a) * x_t + math.sqrt(1.0 - a) * v_model(x_t, t)
        return eps_model
    return broken


@mutant("v-prediction loss regresses on eps", f"{DIFFUSION}.v_prediction_loss",
        caught_by=["vPredictionLoss_value"])
def v_loss_on_eps(original):
    """v_prediction_loss = mean((v_model(x_t, t) - eps)^2): the network's v scored against eps."""
    from minilean.models import diffusion
    return lambda v_model, alpha_bar, x0, t, eps: diffusion.eps_prediction_loss(
        v_model, alpha_bar, x0, t, eps)


@mutant("eps-prediction loss feeds the model x0", f"{DIFFUSION}.eps_prediction_loss",
        caught_by=["epsPredictionLoss_value"])
def eps_loss_on_clean(original):
    """eps_prediction_loss = mean((eps_model(x0, t) - eps)^2): the noising forgotten, the model
    shown the clean image."""
    from minilean.autograd.loss import mse_loss
    return lambda eps_model, alpha_bar, x0, t, eps: mse_loss(eps_model(x0, t), eps)


@mutant("eps-prediction loss regresses on v", f"{DIFFUSION}.eps_prediction_loss",
        caught_by=["epsPredictionLoss_value"])
def eps_loss_on_v(original):
    """eps_prediction_loss = mean((eps_model(x_t, t) - v)^2): the network's eps scored against
    the velocity target."""
    from minilean.models import diffusion
    return lambda eps_model, alpha_bar, x0, t, eps: diffusion.v_prediction_loss(
        eps_model, alpha_bar, x0, t, eps)


@mutant("q_sample and v_target on a float32 schedule", f"{DIFFUSION}._signal_and_noise",
        caught_by=["epsPredictionLoss_value", "vPredictionLoss_value", "vTarget_value"])
def signal_and_noise_float32(original):
    """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) taken of alpha_bar rounded to float32 (a
    schedule kept in float32): float64 runs see coefficients off by about 1e-7, far above their
    rounding but far below the size of the loss, so only a sharp bound sees it."""
    return lambda alpha_bar, t, like: original(
        numpy.asarray(alpha_bar, numpy.float32).astype(numpy.float64), t, like)


@mutant("per-example coefficients shaped for rows", f"{DIFFUSION}._per_example",
        caught_by=["epsPredictionLoss_value", "vPredictionLoss_value"])
def per_example_for_rows(original):
    """_per_example reshapes alpha_bar[t]'s (B,) to (B, 1), written for a batch of rows (B, n):
    on the models' images (B, C, H, W) it pairs the coefficients with the rows of each image
    (B = H: --image-size 32 at the default batch of 32), or broadcasts to another shape."""
    def broken(values, t, like):
        picked = original(values, t, like)
        return picked if isinstance(picked, float) else picked.reshape(-1, 1)
    return broken


# --- q_sample's backward ---------------------------------------------------------------------

@statement(backward_name("q_sample"), about=(f"{DIFFUSION}.q_sample", f"{DIFFUSION}.QSample"),
           given=st.tuples(_example(), st.integers(0, 2 ** 16), st.booleans()).map(
               lambda drawn: dict(drawn[0], seed=drawn[1], one_timestep=drawn[2])),
           # pinned: two rows at their own timesteps, 2 and 0 (a backward that scales every
           # row by the first row's coefficients is right on one row or one timestep)
           examples=[dict(PINNED_ROWS, seed=0, one_timestep=False)], max_examples=15)
def q_sample_backward(check, betas, t, x0, eps, c, seed, one_timestep):
    """backward of x_t = q_sample(x0, t, eps) = sqrt(a_t) x0 + sqrt(1 - a_t) eps at (x0, eps),
    applied to g, equals (sum_j g_j dx_t,j/dx0, sum_j g_j dx_t,j/deps) (mpmath.diff of the
    definition), one timestep per row or t as one integer: g sqrt(a_t) for x0 and
    g sqrt(1 - a_t) for eps. Bound gamma_4 |g| sqrt(a_t) (and sqrt(1 - a_t)): the coefficient
    in float64 (1 - a: 1, sqrt: 1), cast to the dtype (1), times g (1)."""
    from minilean.models import diffusion
    alpha_bar = diffusion.alpha_bars(betas)
    steps = [int(t[0])] * len(t) if one_timestep else list(t)
    g_values = upstream(seed, x0.shape)
    for dtype in ENGINE_DTYPES:
        x0_, eps_ = engine(x0, dtype, requires_grad=True), engine(eps, dtype, requires_grad=True)
        x_t = diffusion.q_sample(alpha_bar, x0_, steps[0] if one_timestep else t, eps_)
        x_t.backward(engine(g_values, dtype))
        for row, step in enumerate(steps):
            a = mp(alpha_bar[step])
            g = mp(g_values[row])
            for which, tensor in enumerate((x0_, eps_)):
                references = []
                for index in range(x0.shape[1]):
                    def loss(v, index=index, which=which):
                        x, e = mp(x0[row]), mp(eps[row])
                        (x if which == 0 else e)[index] = v
                        return mpmath.fsum(gj * (mpmath.sqrt(a) * xj + mpmath.sqrt(1 - a) * ej)
                                           for gj, xj, ej in zip(g, x, e))
                    references.append(mpmath.diff(loss, (x0 if which == 0 else eps)[row][index]))
                scale = mpmath.sqrt(a) if which == 0 else mpmath.sqrt(1 - a)
                bounds = [gamma(4, dtype) * abs(gj) * scale + underflow(4, dtype) for gj in g]
                check.holds(tensor.grad is not None, f"q_sample: no gradient for input {which}")
                check.holds(tensor.grad.dtype == tensor.dtype and
                            tensor.grad.shape == tensor.shape,
                            f"q_sample: gradient is {tensor.grad.dtype} {tensor.grad.shape}")
                check.close(host(tensor.grad)[row], references, bounds,
                            f"q_sample d/d{('x0', 'eps')[which]}, row {row}, t = {step} "
                            f"({dtype.__name__})")


@mutant("q_sample backward with the coefficients swapped", f"{DIFFUSION}.QSample.backward",
        caught_by=[backward_name("q_sample")])
def q_sample_backward_swapped(original):
    """QSample.backward returns (g sqrt(1 - a), g sqrt(a)): each input the other's slope (the
    forward right, so every value statement passes)."""
    def backward(ctx, grad):
        from minilean.autograd.function import unbroadcast
        need_x0, need_eps = ctx.needs_input_grad
        x0_shape, eps_shape = ctx.shapes
        return (unbroadcast(grad * ctx.noise, x0_shape) if need_x0 else None,
                unbroadcast(grad * ctx.signal, eps_shape) if need_eps else None)
    return backward


@mutant("q_sample backward uses t[0] for the whole batch", f"{DIFFUSION}.QSample.backward",
        caught_by=[backward_name("q_sample")])
def q_sample_backward_first_timestep(original):
    """QSample.backward scales every example's g by the first example's coefficients (the
    forward right, so every value statement passes; one timestep per row is what shows it)."""
    def backward(ctx, grad):
        signal, noise = ctx.signal, ctx.noise
        if not isinstance(signal, float):
            ctx.signal, ctx.noise = signal[:1], noise[:1]
        try:
            return original(ctx, grad)
        finally:
            ctx.signal, ctx.noise = signal, noise
    return backward


@mutant("eps_model_from_v calls the model at t - 1", f"{DIFFUSION}.eps_model_from_v",
        caught_by=["epsModelFromV_recovers_eps"])
def eps_from_v_previous_timestep(original):
    """eps_model_from_v converts with a_t but calls v_model(x_t, t - 1), the timestep the
    sampler steps to (t = 0 wraps to the last entry of the schedule, as an index does)."""
    return lambda v_model, alpha_bar: original(
        lambda x_t, t: v_model(x_t, t - 1), alpha_bar)


@mutant("eps_and_x0 adds sqrt(1 - a) v_hat to sqrt(a) x_t", f"{DIFFUSION}.EpsFromV.eps_and_x0",
        caught_by=["epsModelFromV_recovers_eps"])
def x0_from_v_sign(original):
    """x0_hat = sqrt(a) x_t + sqrt(1 - a) v_hat: the sign of v_target's x0 term carried over,
    where its inversion subtracts."""
    def broken(self, x_t, t):
        signal, noise = self.coefficients(t)
        v_hat = self.v_model(x_t, t)
        return noise * x_t + signal * v_hat, signal * x_t + noise * v_hat
    return broken


@mutant("eps_model_from_v reads alpha_bar at the integer part of t",
        f"{DIFFUSION}.EpsFromV.coefficients", caught_by=["epsModelFromV_recovers_eps"])
def eps_from_v_integer_part(original):
    """eps_model_from_v converts with a = alpha_bar[int(t)] for alpha_bar_at(alpha_bar, t):
    right at the integer timesteps the DDPM and DDIM samplers ask for, off between them, where
    the PF-ODE sampler asks (``--prediction v --sampler pf-euler``: ContinuousSchedule.timestep
    is t T - 1)."""
    def broken(self, t):
        a = float(self.alpha_bar[int(t)])
        return math.sqrt(a), math.sqrt(1.0 - a)
    return broken
