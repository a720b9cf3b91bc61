"""The training-time updates of ``minilean.optim``, from their docstrings, run through the
classes the training loops call (``Adam`` / ``AdamW.step``, ``clip_grad_norm_``,
``EMA.update``, ``warmup_cosine`` and its scheduler, ``warmup_constant`` and the factor
diffusion training takes from it):

* Adam, at step t (from 1): g <- g + wd p (Adam's L2 penalty) or p <- p (1 - lr wd) (AdamW,
  decoupled); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
  p <- p - lr m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t);
* clipping: norm = sqrt(sum of every gradient element squared), each g <- g min(1, max_norm /
  (norm + eps));
* EMA: avg_0 = p_0, avg_j = decay avg_{j-1} + (1 - decay) p_j;
* warm-up + cosine: (s + 1) / W for s < W, then min + (1 - min) (1 + cos(pi (s - W) /
  max(1, T - W))) / 2, and min from s = T on;
* warm-up + constant: (s + 1) / W for s < W, then 1 (1 from step 0 when W = 0).

The reference is that formula in mpmath. The bound on the engine is a running error bound
(``running_error.py``): the engine's own operations replayed in its order, since over several
steps the moments, and p minus an update of nearly its size, are differences whose error a
bound on the formula's terms would not cover. The hyperparameters are Python floats: each
scalar the update forms (1 - b1, lr / (1 - b1^t), sqrt(1 - b2^t), 1 - lr wd) is computed in
float64, a power ``b ** t`` counting ``library_roundings(float64)`` (C's pow), and NumPy casts
it to the array's dtype (one more rounding in float32) before the array operation rounds.
The replayed value is also checked against the formula at 50 digits, so the replay is the
formula and not a copy of the code. The engine gets copies of the drawn arrays: these updates
work in place, and a float64 tensor of a float64 array shares its memory.
"""
import math
import types

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, library_roundings, mp, mp_tolerance,
                             real_array, reals, underflow)
from proofs.running_error import Carried

OPTIM = "minilean.optim"
F64 = numpy.float64
CLIP_EPS = mpmath.mpf(1e-6)  # clip_grad_norm_'s default eps, which training keeps


def _scalar(value, dtype):
    """A float64 scalar (Carried in float64) as NumPy applies it to an array of ``dtype``: cast
    to the dtype first (one more rounding in float32; none in float64)."""
    if numpy.dtype(dtype) == numpy.dtype(F64):
        return Carried(value.value, value.error, dtype)
    return Carried(value.value, value.error + gamma(1, dtype) * (abs(value.value) + value.error)
                   + underflow(1, dtype), dtype)


def _power(base, exponent):
    """Python's ``base ** exponent`` of an exact float (C's pow: a library call, float64)."""
    value = mpmath.mpf(base) ** exponent
    roundings = library_roundings(F64)
    return Carried(value, gamma(roundings, F64) * abs(value) + underflow(roundings, F64), F64)


def _f64(value):
    return Carried.exact(value, F64)


# --- Adam and AdamW -------------------------------------------------------------------------

@st.composite
def _adam_inputs(draw):
    """1 or 2 parameters of 1..3 elements, 1..4 steps of gradients, and the hyperparameters
    (betas as the zoo uses them: b1 0.5 or 0.9, b2 0.999, drawn around those)."""
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    steps = draw(st.integers(1, 4))
    return {"params": [real_array(draw, (n,), -10, 10) for n in sizes],
            "grads": [[real_array(draw, (n,), -10, 10) for n in sizes] for _ in range(steps)],
            "lr": draw(reals(1e-4, 0.1)), "beta1": draw(reals(0, 0.99)),
            "beta2": draw(reals(0.9, 0.9999)), "eps": draw(reals(1e-8, 1e-2)),
            "weight_decay": draw(reals(0, 0.5))}


def _adam_reference(params, grads, lr, beta1, beta2, eps, weight_decay, decoupled):
    """(p, m, v) after the steps, in mpmath, flat over all parameters."""
    p = mp(numpy.concatenate(params))
    m, v = [mpmath.mpf(0)] * len(p), [mpmath.mpf(0)] * len(p)
    lr, b1, b2, eps, wd = mp(lr), mp(beta1), mp(beta2), mp(eps), mp(weight_decay)
    for t, step_grads in enumerate(grads, start=1):
        g = mp(numpy.concatenate(step_grads))
        if decoupled:
            p = [pi * (1 - lr * wd) for pi in p]
        else:
            g = [gi + wd * pi for gi, pi in zip(g, p)]
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi ** 2 for vi, gi in zip(v, g)]
        p = [pi - lr * (mi / (1 - b1 ** t)) / (mpmath.sqrt(vi / (1 - b2 ** t)) + eps)
             for pi, mi, vi in zip(p, m, v)]
    return p, m, v


def _adam_replay(params, grads, lr, beta1, beta2, eps, weight_decay, decoupled, dtype):
    """``adam_update``'s operations in its order, each element a Carried."""
    def exact(values):
        return [Carried.exact(x, dtype) for x in numpy.concatenate(values)]
    p = exact(params)
    m = [Carried.exact(0, dtype) for _ in p]
    v = [Carried.exact(0, dtype) for _ in p]
    one_minus_b1 = _scalar(1 - _f64(beta1), dtype)
    one_minus_b2 = _scalar(1 - _f64(beta2), dtype)
    b1, b2 = _scalar(_f64(beta1), dtype), _scalar(_f64(beta2), dtype)
    shrink = _scalar(1 - _f64(lr) * _f64(weight_decay), dtype)
    wd, eps_ = _scalar(_f64(weight_decay), dtype), _scalar(_f64(eps), dtype)
    for t, step_grads in enumerate(grads, start=1):
        step_size = _scalar(_f64(lr) / (1 - _power(beta1, t)), dtype)
        correction2 = _scalar((1 - _power(beta2, t)).sqrt(), dtype)
        g = exact(step_grads)
        if decoupled:
            p = [pi * shrink for pi in p]
        elif weight_decay:
            g = [gi + wd * pi for gi, pi in zip(g, p)]
        m = [mi * b1 + one_minus_b1 * gi for mi, gi in zip(m, g)]
        v = [vi * b2 + (gi * gi) * one_minus_b2 for vi, gi in zip(v, g)]
        p = [pi - mi / (vi.sqrt() / correction2 + eps_) * step_size
             for pi, mi, vi in zip(p, m, v)]
    return p, m, v


@statement("adam_adamW_update",
           about=(f"{OPTIM}.adam.adam_update", f"{OPTIM}.adam.Adam:update", f"{OPTIM}.adam.AdamW"),
           given=_adam_inputs(),
           # pinned: two steps with weight decay on parameters away from 0, where coupling
           # it into the gradient (Adam's L2) and shrinking p (AdamW) part
           examples=[{"params": [numpy.asarray([1.5, -2.0]), numpy.asarray([0.5])],
                      "grads": [[numpy.asarray([0.5, -0.25]), numpy.asarray([1.0])],
                                [numpy.asarray([1.0, 0.75]), numpy.asarray([-0.5])]],
                      "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                      "weight_decay": 0.1}])
def adam_update_steps(check, params, grads, lr, beta1, beta2, eps, weight_decay):
    """Adam and AdamW over k steps: m, v the biased moments, p <- p - lr m_hat / (sqrt(v_hat) +
    eps) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), weight decay as g + wd p (Adam)
    or p (1 - lr wd) before the step (AdamW), in float64 and float32 (both run on every
    example)."""
    from minilean.optim import adam
    for cls in (adam.Adam, adam.AdamW):
        decoupled = cls is adam.AdamW
        hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        reference = _adam_reference(params, grads, decoupled=decoupled, **hyper)
        for dtype in ENGINE_DTYPES:
            tensors = [engine(p.copy(), dtype, requires_grad=True) for p in params]
            optimizer = cls(tensors, lr=lr, betas=(beta1, beta2), eps=eps,
                            weight_decay=weight_decay)
            for step_grads in grads:
                for tensor, g in zip(tensors, step_grads):
                    tensor.grad = engine(g.copy(), dtype)
                optimizer.step()
            replay = _adam_replay(params, grads, decoupled=decoupled, dtype=dtype, **hyper)
            computed = ([t.data for t in tensors], optimizer.state["exp_avg"],
                        optimizer.state["exp_avg_sq"])
            for what, engine_values, carried, exact in zip(("p", "m", "v"), computed, replay,
                                                           reference):
                label = f"{cls.__name__} {numpy.dtype(dtype).name} {what} after {len(grads)} steps"
                with check.reference():
                    check.close([c.value for c in carried], exact,
                                [mp_tolerance(x) for x in exact], f"replay = formula, {label}")
                check.close(numpy.concatenate([numpy.ravel(a) for a in engine_values]), exact,
                            [c.error for c in carried], label)


def _broken_adam(bias_correction=True, eps_inside=False):
    """adam_update's formula written out, with one slip."""
    def broken(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps,
               weight_decay, decoupled):
        correction1 = 1 - beta1 ** step if bias_correction else 1.0
        correction2 = 1 - beta2 ** step if bias_correction else 1.0
        for param, grad, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
            grad = grad if decoupled else grad + weight_decay * param
            param *= 1 - lr * weight_decay if decoupled else 1.0
            m[...] = beta1 * m + (1 - beta1) * grad
            v[...] = beta2 * v + (1 - beta2) * grad ** 2
            v_hat = v / correction2
            denominator = numpy.sqrt(v_hat + eps) if eps_inside else numpy.sqrt(v_hat) + eps
            param -= lr * (m / correction1) / denominator
    return broken


@mutant("Adam without bias correction", f"{OPTIM}.adam.Adam.update",
        caught_by=["adam_adamW_update"])
def adam_uncorrected(original):
    """adam_update steps by lr m / (sqrt(v) + eps): the moments' 1 / (1 - beta^t) left out, so
    the first steps are (1 - b1) / sqrt(1 - b2) times too small (b1 = 0.9, b2 = 0.999: 3.2x)."""
    return _broken_adam(bias_correction=False)


@mutant("Adam with eps inside the sqrt", f"{OPTIM}.adam.Adam.update",
        caught_by=["adam_adamW_update"])
def adam_eps_inside(original):
    """adam_update divides by sqrt(v_hat + eps) instead of sqrt(v_hat) + eps (eps damps a
    small v_hat far less: a different optimizer wherever v_hat is near eps)."""
    return _broken_adam(eps_inside=True)


@mutant("AdamW with coupled weight decay", f"{OPTIM}.adam.Adam.update",
        caught_by=["adam_adamW_update"])
def adamw_coupled(original):
    """AdamW adds wd p to the gradient (Adam's L2 penalty, then scaled by 1 / sqrt(v_hat))
    instead of shrinking p by 1 - lr wd: Loshchilov & Hutter's point undone."""
    def broken(*args, decoupled, **kwargs):
        return original(*args, decoupled=False, **kwargs)
    return broken


# --- clip_grad_norm_ --------------------------------------------------------------------------

@st.composite
def _clip_inputs(draw):
    """1..3 gradients of 1..4 elements (a parameter without one beside them), max_norm from
    clipping hard to leaving them alone."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    return {"grads": [real_array(draw, (n,), -4, 4) for n in sizes],
            "max_norm": draw(reals(1e-3, 100))}


@statement("clipGradNorm_global_scale",
           about=(f"{OPTIM}.clip.clip_grad_norm_", f"{OPTIM}.clip.clip_arrays"),
           given=_clip_inputs(),
           # pinned: gradients of norm 1.15 inside a ball of 10, which clipping leaves alone,
           # and of norm 5 clipped to 2.5
           examples=[{"grads": [numpy.asarray([0.5, -1.0]), numpy.asarray([0.25])],
                      "max_norm": 10.0},
                     {"grads": [numpy.asarray([3.0]), numpy.asarray([-4.0, 0.0])],
                      "max_norm": 2.5}])
def clip_grad_norm(check, grads, max_norm):
    """clip_grad_norm_ returns norm = sqrt(sum_i g_i^2) over every gradient element (float64)
    and scales every gradient by min(1, max_norm / (norm + 1e-6)); a parameter without a
    gradient is left without one, in float64 and float32."""
    from minilean.optim import clip
    values = mp(numpy.concatenate(grads))
    norm = mpmath.sqrt(mpmath.fsum(x * x for x in values))
    scale = min(mpmath.mpf(1), mp(max_norm) / (norm + CLIP_EPS))
    # the engine's norm: squares of the (exact) float32 values in float64, summed in any
    # order, sqrt; then norm + eps (the constant eps rounded), max_norm / that, min(1, .)
    # (1-Lipschitz: the error carries over)
    squares = [x * x for x in Carried.array(numpy.concatenate(grads), F64)]
    carried_norm = Carried.total(squares).sqrt()
    ratio = Carried.exact(max_norm, F64) / (carried_norm + Carried.constant(CLIP_EPS, F64))
    for dtype in ENGINE_DTYPES:
        tensors = [engine(g.copy(), dtype, requires_grad=True) for g in grads]
        for tensor, g in zip(tensors, grads):
            tensor.grad = engine(g.copy(), dtype)
        idle = engine(numpy.ones(2), dtype, requires_grad=True)
        returned = clip.clip_grad_norm_(tensors + [idle], max_norm)
        name = numpy.dtype(dtype).name
        check.holds(returned.data.dtype == F64 and returned.data.shape == () and idle.grad is None,
                    f"{name}: the norm a 0-d float64 ({returned.data.dtype} {returned.data.shape}), "
                    f"the parameter without a gradient left alone")
        check.close(returned.data, norm, carried_norm.error, f"{name}: the norm")
        carried_scale = _scalar(Carried(scale, ratio.error, F64), dtype)
        bounds = [(Carried.exact(x, dtype) * carried_scale).error for x in numpy.concatenate(grads)]
        check.close(numpy.concatenate([t.grad.data for t in tensors]), [x * scale for x in values],
                    bounds, f"{name}: g min(1, max_norm / (norm + eps))")


@mutant("clipping without min(1, .)", f"{OPTIM}.clip.clip_arrays",
        caught_by=["clipGradNorm_global_scale"])
def clip_always_rescales(original):
    """clip_arrays scales by max_norm / (norm + eps) whatever the norm: gradients already
    inside the ball are blown up to norm max_norm instead of left alone."""
    def broken(grads, max_norm, eps):
        total_norm = numpy.sqrt(sum((g.astype(F64) ** 2).sum() for g in grads))
        for grad in grads:
            grad *= (max_norm / (total_norm + eps)).astype(grad.dtype)
        return total_norm
    return broken


@mutant("clip_grad_norm_ returning the clipped norm", f"{OPTIM}.clip.clip_arrays",
        caught_by=["clipGradNorm_global_scale"])
def clip_returns_clipped_norm(original):
    """clip_arrays returns the norm of the gradients after clipping (at most max_norm) instead
    of before it: a logged norm then never shows the spike that was clipped."""
    def broken(grads, max_norm, eps):
        original(grads, max_norm, eps)
        return numpy.sqrt(sum((g.astype(F64) ** 2).sum() for g in grads))
    return broken


# --- EMA ------------------------------------------------------------------------------------

@st.composite
def _ema_inputs(draw):
    """Weights of 1 or 2 parameters (1..3 elements) at the start and after each of 1..5
    optimizer steps; decay anywhere in [0, 1] (the zoo's 0.999 and 0.9999 inside)."""
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    steps = draw(st.integers(1, 5))
    return {"weights": [[real_array(draw, (n,), -10, 10) for n in sizes]
                        for _ in range(steps + 1)],
            "decay": draw(st.one_of(reals(0, 1), reals(0.99, 1)))}


@statement("ema_update_average",
           about=(f"{OPTIM}.ema.EMA:update", f"{OPTIM}.ema.ema_update"),
           given=_ema_inputs())
def ema_average(check, weights, decay):
    """EMA(model, decay) starts at the weights p_0 and after updates with p_1..p_k holds
    avg_k = decay avg_{k-1} + (1 - decay) p_k = decay^k p_0 + sum_j (1 - decay) decay^(k-j)
    p_j, in float64 and float32."""
    from minilean.nn.module import Module, Parameter
    from minilean.optim import ema

    d = mp(decay)
    reference = mp(numpy.concatenate(weights[0]))
    for step_weights in weights[1:]:
        reference = [d * a + (1 - d) * p for a, p in zip(reference, mp(numpy.concatenate(
            step_weights)))]
    k = len(weights) - 1
    closed = [d ** k * p0 + mpmath.fsum((1 - d) * d ** (k - j) * mp(numpy.concatenate(w))[i]
                                         for j, w in enumerate(weights[1:], start=1))
              for i, p0 in enumerate(mp(numpy.concatenate(weights[0])))]
    with check.reference():
        check.close(reference, closed, [mp_tolerance(x) for x in closed],
                    "the recursion = its closed form")
    for dtype in ENGINE_DTYPES:
        model = Module()
        for index, w in enumerate(weights[0]):
            setattr(model, f"w{index}", Parameter(numpy.array(w, dtype=dtype)))
        average = ema.EMA(model, decay)
        # avg -= (1 - decay) (avg - p): the scalar in float64, cast; three roundings
        rate = _scalar(1 - _f64(decay), dtype)
        carried = [Carried.exact(x, dtype) for x in numpy.concatenate(weights[0])]
        for step_weights in weights[1:]:
            for index, w in enumerate(step_weights):
                getattr(model, f"w{index}").data[...] = w
            average.update(model)
            carried = [a - rate * (a - Carried.exact(p, dtype))
                       for a, p in zip(carried, numpy.concatenate(step_weights))]
        name = numpy.dtype(dtype).name
        with check.reference():
            check.close([c.value for c in carried], reference,
                        [mp_tolerance(x) for x in reference], f"replay = formula, {name}")
        computed = numpy.concatenate([average.shadow[f"w{i}"] for i in range(len(weights[0]))])
        check.close(computed, reference, [c.error for c in carried],
                    f"{name}: the average after {k} updates (decay {decay!r})")


@mutant("EMA with decay and 1 - decay swapped", f"{OPTIM}.ema.EMA.update_arrays",
        caught_by=["ema_update_average"])
def ema_swapped(original):
    """ema_update moves the average by decay (avg - p), i.e. avg <- (1 - decay) avg + decay p:
    at decay 0.999 the 'average' is the latest weights."""
    def broken(averages, params, decay):
        for average, param in zip(averages, params):
            average -= decay * (average - param)
    return broken


# --- warm-up + cosine -----------------------------------------------------------------------

def _cos(theta):
    """cos of a float64 Carried: moved by at most theta's error (|sin| <= 1), then the library
    cos relative to its value."""
    value = mpmath.cos(theta.value)
    roundings = library_roundings(F64)
    return Carried(value, theta.error + gamma(roundings, F64) * (abs(value) + theta.error)
                   + underflow(roundings, F64), F64)


def _warmup_cosine_reference(step, warmup, total, min_factor):
    """(the factor in mpmath, a Carried replay of ``warmup_cosine``'s float64 arithmetic)."""
    low = mp(min_factor)
    if step >= total:
        return low, Carried.exact(min_factor, F64)
    if warmup > 0 and step < warmup:
        return mpmath.mpf(step + 1) / warmup, _f64(step + 1) / _f64(warmup)
    span = max(1, total - warmup)
    exact = low + (1 - low) * (1 + mpmath.cos(mpmath.pi * (step - warmup) / span)) / 2
    progress = _f64(step - warmup) / _f64(span)
    theta = Carried.constant(mpmath.pi, F64) * progress
    replay = _f64(min_factor) + (1 - _f64(min_factor)) * (0.5 * (_cos(theta) + 1))
    return exact, replay


@statement("warmupCosine_schedule",
           about=(f"{OPTIM}.schedule.warmup_cosine", f"{OPTIM}.schedule.warmup_cosine_scheduler"),
           given={"total": st.integers(0, 60), "warmup_share": st.floats(0, 1),
                  "min_factor": reals(0, 0.5), "base_lr": reals(1e-5, 1)})
def warmup_cosine_schedule(check, total, warmup_share, min_factor, base_lr):
    """warmup_cosine(s, W, T, min) = (s + 1) / W for s < W, min + (1 - min) (1 + cos(pi (s -
    W) / max(1, T - W))) / 2 for W <= s < T (1 at s = W), min for s >= T; the scheduler sets
    lr = base_lr times it after each step (float64 host arithmetic)."""
    from minilean.optim import schedule
    warmup = int(warmup_share * total)
    optimizer = types.SimpleNamespace(lr=base_lr)
    scheduler = schedule.warmup_cosine_scheduler(optimizer, warmup, total, min_factor)
    for step in range(total + 3):
        if step:
            scheduler.step()
        exact, replay = _warmup_cosine_reference(step, warmup, total, min_factor)
        what = f"step {step} of W = {warmup}, T = {total}"
        with check.reference():
            check.close(replay.value, exact, mp_tolerance(exact), f"replay = formula, {what}")
        check.close(schedule.warmup_cosine(step, warmup, total, min_factor), exact, replay.error,
                    f"the factor at {what}")
        lr = Carried.exact(base_lr, F64) * replay
        check.close(optimizer.lr, mp(base_lr) * exact, lr.error, f"the lr at {what}")


@mutant("cosine decay one step early", f"{OPTIM}.schedule.warmup_cosine",
        caught_by=["warmupCosine_schedule"])
def cosine_one_step_early(original):
    """warmup_cosine counts the cosine's progress from step - W + 1: the step after the
    warm-up never gets the peak factor 1, and the curve reaches min a step before T."""
    def broken(step, warmup_steps, total_steps, min_factor=0.0):
        if step >= total_steps:
            return min_factor
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps + 1) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    return broken


@mutant("cosine not held at min after total_steps", f"{OPTIM}.schedule.warmup_cosine",
        caught_by=["warmupCosine_schedule"])
def cosine_past_total(original):
    """warmup_cosine without its case s >= T: past total_steps the cosine's progress passes 1
    and the factor climbs back up from min instead of staying there (only steps past T show
    it: the statement runs to T + 2)."""
    def broken(step, warmup_steps, total_steps, min_factor=0.0):
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    return broken


@mutant("warm-up from 0", f"{OPTIM}.schedule.warmup_cosine", caught_by=["warmupCosine_schedule"])
def warmup_from_zero(original):
    """warmup_cosine's warm-up is s / W instead of (s + 1) / W: the first step trains at lr 0
    and the warm-up ends at (W - 1) / W, not 1 (W = 0 hides it)."""
    def broken(step, warmup_steps, total_steps, min_factor=0.0):
        if warmup_steps > 0 and step < warmup_steps:
            return step / warmup_steps
        return original(step, warmup_steps, total_steps, min_factor)
    return broken


@mutant("scheduler setting the lr a step late", f"{OPTIM}.schedule.LambdaLR.step",
        caught_by=["warmupCosine_schedule"])
def lr_a_step_late(original):
    """LambdaLR.step sets the lr of the step it leaves, then counts it: every lr is the
    previous step's factor (the first warm-up step's twice); warmup_cosine's own values
    are right, only the scheduler's lr shows it."""
    def broken(self):
        self._set_lr()
        self.last_step += 1
    return broken


# --- warm-up + constant ---------------------------------------------------------------------

def _warmup_constant_reference(step, warmup):
    """(the factor in mpmath, a Carried replay of ``warmup_constant``'s float64 arithmetic)."""
    if warmup > 0 and step < warmup:
        return mpmath.mpf(step + 1) / warmup, _f64(step + 1) / _f64(warmup)
    return mpmath.mpf(1), _f64(1)


# W = 0 (no warm-up), 1 (the full rate from step 0), 3 and 10 (1/3 and k/10 round in float64)
@statement("warmupConstant_schedule",
           about=(f"{OPTIM}.schedule.warmup_constant", "minilean.train.diffusion.lr_factor"),
           given={"warmup": st.integers(0, 60)},
           examples=[{"warmup": 0}, {"warmup": 1}, {"warmup": 3}, {"warmup": 10}])
def warmup_constant_schedule(check, warmup):
    """warmup_constant(s, W) = (s + 1) / W for 0 <= s < W and 1 for s >= W (1 from step 0
    when W = 0), at every step from 0 to W + 2, and so is ``lr_factor``'s factor, which
    diffusion training multiplies its lr by at (0-based) update s under ``--lr-schedule
    constant`` (float64 host arithmetic)."""
    from minilean.optim import schedule
    from minilean.train import diffusion
    config = types.SimpleNamespace(lr_schedule="constant", warmup_steps=warmup,
                                   lr_decay_steps=None, steps=warmup + 3)
    training_factor = diffusion.lr_factor(config)
    for step in range(warmup + 3):
        exact, replay = _warmup_constant_reference(step, warmup)
        what = f"step {step} of W = {warmup}"
        with check.reference():
            check.close(replay.value, exact, mp_tolerance(exact), f"replay = formula, {what}")
        check.close(schedule.warmup_constant(step, warmup), exact, replay.error,
                    f"the factor at {what}")
        check.close(training_factor(step), exact, replay.error,
                    f"training's factor (--lr-schedule constant) at {what}")


@mutant("constant warm-up from 0", f"{OPTIM}.schedule.warmup_constant",
        caught_by=["warmupConstant_schedule"])
def constant_warmup_from_zero(original):
    """warmup_constant's warm-up is s / W instead of (s + 1) / W: the first update trains at
    lr 0 and the warm-up ends at (W - 1) / W before the jump to 1 (W = 0 hides it)."""
    def broken(step, warmup_steps):
        if warmup_steps > 0 and step < warmup_steps:
            return step / warmup_steps
        return 1.0
    return broken


@mutant("constant reached one step late", f"{OPTIM}.schedule.warmup_constant",
        caught_by=["warmupConstant_schedule"])
def constant_reached_late(original):
    """warmup_constant climbs over W + 1 steps, (s + 1) / (W + 1) for s <= W: every warm-up
    factor is too small and 1 comes at step W, a step late (W = 0 hides it)."""
    def broken(step, warmup_steps):
        if warmup_steps > 0 and step <= warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return 1.0
    return broken


@mutant("constant warm-up past its end", f"{OPTIM}.schedule.warmup_constant",
        caught_by=["warmupConstant_schedule"])
def constant_warmup_overshoots(original):
    """warmup_constant's warm-up case taken while s <= W: the step at the boundary, s = W,
    trains at (W + 1) / W, above the full rate (only the boundary shows it; W = 0 hides it)."""
    def broken(step, warmup_steps):
        if warmup_steps > 0 and step <= warmup_steps:
            return (step + 1) / warmup_steps
        return 1.0
    return broken


@mutant("training's constant-rate factor a step ahead", "minilean.train.diffusion.lr_factor",
        caught_by=["warmupConstant_schedule"])
def constant_factor_a_step_ahead(original):
    """diffusion training's factor for ``--lr-schedule constant`` read at the 1-based step
    (index + 1): warmup_constant's own values are right, but the first update skips the
    warm-up's first factor 1/W (only training's factor shows it; W = 0 hides it)."""
    def broken(config):
        from minilean.train import diffusion
        if config.lr_schedule == "constant":
            return lambda index: diffusion.warmup_constant(index + 1, config.warmup_steps)
        return original(config)
    return broken
