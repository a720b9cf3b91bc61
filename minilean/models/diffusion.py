"""Denoising diffusion (DDPM/DDIM) and the probability-flow ODE: schedules, noising, samplers.

Conventions (those of the DDPM reference code):

* ``T`` timesteps indexed ``t = 0 .. T-1``; ``betas[t]`` is the noise added by step ``t``;
  ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` has T entries, and ``alpha_bar_{-1} := 1`` is the
  clean state (so the last reverse step lands on the data).
* forward marginal ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``;
* an *epsilon model* is any callable ``eps_model(x_t, t) -> eps_hat`` where ``t`` is a timestep
  (a Python number; the samplers may ask for a fractional one on the ODE path).

Schedule constants are float64 NumPy arrays on the host, as in the DDPM reference code; the
math functions take minilean Tensors or raw NumPy/CuPy arrays (``x``), so the same function
trains the model, samples on either device, and is checked by ``proofs/``. Every sampler with
zero steps returns its input unchanged.
"""
import math

import numpy

from minilean import backend
from minilean.autograd.elementwise import as_tensor
from minilean.autograd.function import Context, Function, unbroadcast
from minilean.autograd.tensor import Tensor
from minilean.backend import array_module, to_device
from minilean.cuda import graph

COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s: keeps beta_0 from being vanishingly small
MAX_COSINE_BETA = 0.999  # their cap, so the last step is not a division by zero


# --- schedules ----------------------------------------------------------------------------

def _check_T(T):
    if not isinstance(T, (int, numpy.integer)) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T (number of timesteps) must be an integer >= 1, got {T!r}")


def check_betas(betas):
    """Return ``betas`` as float64 after checking they are finite and each in [0, 1)."""
    betas = numpy.asarray(betas, dtype=numpy.float64)
    if betas.ndim != 1 or betas.size == 0:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    bad = ~(numpy.isfinite(betas) & (betas >= 0) & (betas < 1))
    if bad.any():
        index = int(numpy.argmax(bad))
        raise ValueError(f"betas must be finite and in [0, 1); "
                         f"beta[{index}] = {float(betas[index])!r}")
    return betas


def linear_beta_schedule(T, beta_start, beta_end):
    """``beta_t = beta_start + t/(T-1) (beta_end - beta_start)`` for t = 0..T-1 (float64).

    With ``T = 1`` the single beta is ``beta_start`` (TorchLean's current convention).
    """
    _check_T(T)
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value < 1):
            raise ValueError(f"{name} must be finite and in [0, 1), got {value!r}")
    if T == 1:
        return numpy.array([beta_start], dtype=numpy.float64)
    return check_betas(numpy.linspace(beta_start, beta_end, T, dtype=numpy.float64))


def cosine_beta_schedule(T, offset=COSINE_OFFSET, max_beta=MAX_COSINE_BETA):
    """Nichol & Dhariwal's cosine schedule (float64).

    ``f(u) = cos^2((u + s)/(1 + s) * pi/2)``, ``alpha_bar(u) = f(u)/f(0)`` on u in [0, 1], and
    ``beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta)``, so that
    ``prod_{s<=t}(1 - beta_s) = alpha_bar((t+1)/T)`` until the cap binds.
    """
    _check_T(T)
    u = numpy.arange(T + 1, dtype=numpy.float64) / T
    f = numpy.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2
    return check_betas(numpy.minimum(1 - f[1:] / f[:-1], max_beta))


def alpha_bars(betas):
    """``alpha_bar_t = prod_{s<=t} (1 - beta_s)``, T entries (the clean state is not stored)."""
    return numpy.cumprod(1.0 - check_betas(betas))


def make_betas(schedule, T, beta_start=1e-4, beta_end=0.02):
    """The betas of a schedule named ``linear`` or ``cosine``."""
    if schedule == "linear":
        return linear_beta_schedule(T, beta_start, beta_end)
    if schedule == "cosine":
        return cosine_beta_schedule(T)
    raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")


def check_timesteps(t, T):
    """Refuse timesteps ``t`` (one, or one per example: a number, a list, a host array or a
    Tensor) that are not whole numbers in 0..T-1, naming the first. Read as indices, a negative
    one would count from the end of the schedule (t = -1, the clean state of ``ddim_step``,
    would noise to the last timestep) and a fractional one would be cut to the timestep below
    it (0.29 * 100 is 28.999999999999996: t = 28). Timesteps on the GPU are not read back to
    be checked: that would wait for a copy, which a training step never makes (there they
    wrap around, as CuPy's indexing does)."""
    if isinstance(t, (int, numpy.integer)) and 0 <= t < T:  # a sampler's one timestep, at once
        return
    values = t.data if isinstance(t, Tensor) else t
    if backend.device_of(values) == "cuda":
        return
    values = numpy.asarray(values)
    if values.dtype.kind not in "iuf":
        raise TypeError(f"timesteps must be integers, got {values.dtype} values")
    fractional = values != numpy.floor(values) if values.dtype.kind == "f" else False
    if numpy.any(fractional):
        raise ValueError(f"timestep {float(values[fractional].flat[0])!r} is not a whole number; "
                         f"expected an integer in 0..{T - 1} (alpha_bar_at reads fractional "
                         f"timesteps)")
    outside = (values < 0) | (values >= T)
    if numpy.any(outside):
        raise ValueError(f"timestep {values[outside].flat[0]} is outside the schedule's "
                         f"timesteps 0..{T - 1}")


def _alpha_bar_before(alpha_bar, t):
    """``alpha_bar_{t-1}`` with ``alpha_bar_{-1} = 1``."""
    return 1.0 if t <= 0 else float(alpha_bar[t - 1])


# --- coefficients that broadcast against x ------------------------------------------------

def _per_example(values, t, like):
    """``values[t]`` shaped to broadcast against ``like`` (a Tensor or an array).

    An integer ``t`` gives a Python float. A batch of timesteps (shape (B,): a host array, or
    an array or Tensor on the device) gives shape (B, 1, ..., 1) on ``like``'s device, so each
    example gets its own coefficient. The lookup happens where ``t`` lives: timesteps already
    on the GPU index a copy of the table kept there, with no host-device copy.
    """
    if isinstance(t, (int, numpy.integer)):
        return float(values[t])
    indices = _timestep_array(t)
    xp = array_module(indices)
    # kept by a CUDA graph being recorded (graph.held): its replays read the table, which the
    # cache of constants may drop (and its memory go to another array) while the graph lives
    table = graph.held(backend.constant(values, backend.device_of(indices)))
    picked = table[indices.astype(xp.int64)]
    picked = picked.reshape((-1,) + (1,) * (len(like.shape) - 1))  # (B,) -> (B, 1, ..., 1)
    if isinstance(like, Tensor):
        return Tensor(picked.astype(like.dtype), device=like.device)
    return array_module(like).asarray(to_device(picked, backend.device_of(like)),
                                      dtype=like.dtype)


def _timestep_array(t):
    """The array inside ``t`` (a Tensor, a host or device array, or a list), where it lives."""
    if isinstance(t, Tensor):
        return t.data
    return t if hasattr(t, "shape") else numpy.asarray(t)


def _clip_unit(x):
    """Clamp to [-1, 1] (a Tensor or an array)."""
    return x.clamp(-1.0, 1.0) if isinstance(x, Tensor) else array_module(x).clip(x, -1.0, 1.0)


# --- forward process and training objective ------------------------------------------------

def _signal_and_noise(alpha_bar, t, like):
    """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) per example, shaped to broadcast over ``like``."""
    return (_per_example(numpy.sqrt(alpha_bar), t, like),
            _per_example(numpy.sqrt(1.0 - alpha_bar), t, like))


class QSample(Function):
    """x_t = s x0 + n eps with s = sqrt(alpha_bar[t]) and n = sqrt(1 - alpha_bar[t]) per example;

        dx_t/dx0 = s,   dx_t/deps = n

    (the schedule and t are constants, not inputs). One op rather than three (two products
    and a sum) so that ``--fast-kernels`` can run it as one kernel each way
    (``minilean/cuda/noising.cu``).
    """
    @staticmethod
    def forward(ctx, x0, eps, alpha_bar=None, t=None):
        signal, noise = _signal_and_noise(alpha_bar, t, x0)
        if ctx.recording:
            ctx.signal, ctx.noise, ctx.shapes = signal, noise, (x0.shape, eps.shape)
        return signal * x0 + noise * eps

    @staticmethod
    def backward(ctx, grad):
        need_x0, need_eps = ctx.needs_input_grad
        x0_shape, eps_shape = ctx.shapes
        return (unbroadcast(grad * ctx.signal, x0_shape) if need_x0 else None,
                unbroadcast(grad * ctx.noise, eps_shape) if need_eps else None)


def q_sample(alpha_bar, x0, t, eps):
    """Forward noising: ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``.

    ``t`` is one timestep or one per example (shape (B,)). Tensors in, a Tensor out (with
    gradients for x0 and eps); arrays in, an array out.
    """
    check_timesteps(t, len(alpha_bar))  # here, not in the op: --fast-kernels replaces the op
    if not isinstance(x0, Tensor):
        return QSample.forward(Context((False, False), False), x0, eps, alpha_bar=alpha_bar, t=t)
    return QSample.apply(x0, as_tensor(eps, x0), alpha_bar=alpha_bar,
                        t=t.data if isinstance(t, Tensor) else t)


def x0_from_eps(alpha_bar, x_t, t, eps):
    """Invert ``q_sample`` for x0:
    ``x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)``."""
    check_timesteps(t, len(alpha_bar))
    noise = _per_example(numpy.sqrt(1.0 - alpha_bar), t, x_t)
    inverse_signal = _per_example(1.0 / numpy.sqrt(alpha_bar), t, x_t)
    return (x_t - noise * eps) * inverse_signal


def v_target(alpha_bar, x0, t, eps):
    """The "velocity" ``v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0`` (Salimans & Ho).

    With ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``, ``x0 = sqrt(a) x_t - sqrt(1 - a) v`` and
    ``eps = sqrt(1 - a) x_t + sqrt(a) v``: neither divides by sqrt(a), so a v-predicting network's
    errors are not amplified near alpha_bar = 0 the way ``x0_from_eps`` amplifies eps errors.
    """
    check_timesteps(t, len(alpha_bar))
    signal, noise = _signal_and_noise(alpha_bar, t, x0)
    return signal * eps - noise * x0


def alpha_bar_at(alpha_bar, t):
    """``alpha_bar`` at a timestep t in [0, T-1] that may be fractional (the ODE sampler's).

    ``log alpha_bar`` is interpolated linearly between integer timesteps, as in
    ``ContinuousSchedule``; an integer t gives ``alpha_bar[t]`` itself. A t outside [0, T-1]
    is refused: interpolation would hold the end's value there, and an integer index would
    count from the end.
    """
    last = len(alpha_bar) - 1
    if not 0 <= t <= last:
        raise ValueError(f"timestep {t!r} is outside the schedule's timesteps 0..{last}")
    if isinstance(t, (int, numpy.integer)):
        return float(alpha_bar[t])
    return math.exp(numpy.interp(t, numpy.arange(len(alpha_bar)), numpy.log(alpha_bar)))


class EpsFromV:
    """The epsilon model ``eps_hat(x_t, t) = sqrt(1 - a) x_t + sqrt(a) v_model(x_t, t)`` of a
    v-predicting network (``eps_model_from_v``), which the DDPM and DDIM samplers also ask for
    its x0 prediction, ``sqrt(a) x_t - sqrt(1 - a) v_hat``, computed from v_hat directly.

    ``x0_from_eps(eps_hat)`` is the same number in exact arithmetic but not in float32: it
    subtracts sqrt(1 - a) eps_hat from x_t, where eps_hat ~ x_t holds v_hat only in
    sqrt(a) v_hat, and divides by sqrt(a). Below a ~ 1e-15 that term is under eps_hat's last
    bit, so the network's x0 is lost, and below a ~ 1e-76 (``--schedule linear --T 4000``)
    1 / sqrt(a) overflows float32: 0 * inf made every sample NaN.
    """

    def __init__(self, v_model, alpha_bar):
        self.v_model, self.alpha_bar = v_model, alpha_bar

    def coefficients(self, t):
        """(sqrt(a), sqrt(1 - a)) with a = alpha_bar at ``t``, fractional ones too."""
        a = alpha_bar_at(self.alpha_bar, t)
        return math.sqrt(a), math.sqrt(1.0 - a)

    def __call__(self, x_t, t):
        signal, noise = self.coefficients(t)
        return noise * x_t + signal * self.v_model(x_t, t)

    def eps_and_x0(self, x_t, t):
        """(eps_hat, x0_hat) from one call of the network."""
        signal, noise = self.coefficients(t)
        v_hat = self.v_model(x_t, t)
        return noise * x_t + signal * v_hat, signal * x_t - noise * v_hat


def eps_model_from_v(v_model, alpha_bar):
    """The epsilon model ``eps_hat(x_t, t) = sqrt(1 - a) x_t + sqrt(a) v_model(x_t, t)``.

    Lets every sampler run a v-predicting network unchanged; its x0 prediction,
    ``sqrt(a) x_t - sqrt(1 - a) v_hat``, stays bounded at high noise (the samplers take it
    from ``EpsFromV.eps_and_x0``, not from ``x0_from_eps``: see ``EpsFromV``).
    """
    return EpsFromV(v_model, alpha_bar)


def eps_and_x0(eps_model, x_t, t):
    """(eps_hat, x0_hat) of ``eps_model`` at (x_t, t): x0_hat is the model's own where it
    gives one (``EpsFromV``), else None (the step computes ``x0_from_eps(eps_hat)``)."""
    if isinstance(eps_model, EpsFromV):
        return eps_model.eps_and_x0(x_t, t)
    return eps_model(x_t, t), None


def sample_timesteps(batch_size, T, generator):
    """Timesteps drawn uniformly from {0, ..., T-1}, one per example (int64 host array)."""
    return generator.integers(0, T, size=batch_size)


def eps_prediction_loss(eps_model, alpha_bar, x0, t, eps):
    """The DDPM "simple" loss: ``mean((eps_model(q_sample(x0, t, eps), t) - eps)^2)``."""
    from minilean.autograd.loss import mse_loss

    prediction = eps_model(q_sample(alpha_bar, x0, t, eps), t)
    return mse_loss(prediction, eps)


def v_prediction_loss(v_model, alpha_bar, x0, t, eps):
    """The v-prediction loss: ``mean((v_model(q_sample(x0, t, eps), t) - v_target)^2)``.

    Per example it is the eps loss weighted by ``1 / alpha_bar_t`` (``v - v_hat`` is
    ``(eps - eps_hat) / sqrt(a)``), i.e. the x0 error weighted by ``1 / (1 - alpha_bar_t)``.
    """
    from minilean.autograd.loss import mse_loss

    prediction = v_model(q_sample(alpha_bar, x0, t, eps), t)
    return mse_loss(prediction, v_target(alpha_bar, x0, t, eps))


# --- DDPM -----------------------------------------------------------------------------------

def posterior_mean_variance(betas, x0, x_t, t):
    """The DDPM posterior ``q(x_{t-1} | x_t, x0) = N(mean, variance I)`` for one timestep t.

    ``mean = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t) x0
           + (1 - alpha_bar_{t-1}) sqrt(1 - beta_t) / (1 - alpha_bar_t) x_t``,
    ``variance = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`` (0 at t = 0, and 0 when
    ``alpha_bar_t = 1``, where x_t already is x0).
    """
    check_timesteps(t, len(betas))
    alpha_bar = alpha_bars(betas)
    beta, one_minus = float(betas[t]), 1.0 - float(alpha_bar[t])
    previous = _alpha_bar_before(alpha_bar, t)
    if one_minus == 0.0:
        return x_t, 0.0
    x0_coefficient = beta * math.sqrt(previous) / one_minus
    xt_coefficient = (1.0 - previous) * math.sqrt(1.0 - beta) / one_minus
    variance = beta * (1.0 - previous) / one_minus
    return x0_coefficient * x0 + xt_coefficient * x_t, variance


def ddpm_step(betas, x_t, t, eps_hat, noise, clip=False, x0_hat=None):
    """One ancestral step ``x_t -> x_{t-1} = mean + sqrt(variance) * noise``.

    The mean is the posterior mean at ``x0_hat = x0_from_eps(x_t, eps_hat)`` (optionally
    clipped to [-1, 1]); without clipping it equals
    ``(x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(1 - beta_t)``. No noise at t = 0.
    An ``x0_hat`` given (a v-predicting model's, ``eps_and_x0``) is used instead.
    """
    check_timesteps(t, len(betas))
    if x0_hat is None and not clip and _x0_overflows(float(alpha_bars(betas)[t]), x_t):
        mean, variance = _eps_posterior_mean_variance(betas, x_t, t, eps_hat)
    else:
        if x0_hat is None:
            x0_hat = x0_from_eps(alpha_bars(betas), x_t, t, eps_hat)
        if clip:
            x0_hat = _clip_unit(x0_hat)
        mean, variance = posterior_mean_variance(betas, x0_hat, x_t, t)
    return mean if variance == 0.0 else mean + math.sqrt(variance) * noise


def _x0_overflows(a, x_t):
    """Whether ``x0_from_eps``'s ``1 / sqrt(a)`` may carry x0_hat beyond the largest number of
    x_t's dtype: past its square root, below a ~ 3e-39 in float32 (``--schedule linear --T
    4000`` ends at 1e-90). There x0_hat is +-inf, and the unclipped DDPM and DDIM steps,
    finite, came out as sqrt(a_prev) times that infinity (0 * inf where a_prev underflows
    too): every sample NaN, the ideal eps's too. The square root (1.8e19 in float32) leaves
    room for the factor x_t - sqrt(1 - a) eps_hat that 1 / sqrt(a) multiplies: tested against
    the largest number itself, the steps where 1 / sqrt(a) was just below it (a from 9e-78 to
    ~1e-75) still made +-inf wherever that factor passed 1. A step there takes the ratio of
    the two coefficients in float64 instead of x0_hat; elsewhere it goes through x0_hat as it
    always did (the same numbers, bit for bit)."""
    return 0.0 < a and 1.0 / math.sqrt(a) > math.sqrt(float(numpy.finfo(x_t.dtype).max))


def _eps_posterior_mean_variance(betas, x_t, t, eps_hat):
    """The posterior at ``x0_hat = x0_from_eps(x_t, eps_hat)`` without forming x0_hat (see
    ``_x0_overflows``): ``mean = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) /
    sqrt(1 - beta_t)``, ``variance = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)``."""
    alpha_bar = alpha_bars(betas)
    beta, one_minus = float(betas[t]), 1.0 - float(alpha_bar[t])
    mean = (x_t - (beta / math.sqrt(one_minus)) * eps_hat) * (1.0 / math.sqrt(1.0 - beta))
    return mean, beta * (1.0 - _alpha_bar_before(alpha_bar, t)) / one_minus


def ddpm_sample(eps_model, betas, x_T, noise, clip=False):
    """Ancestral sampling over every timestep T-1, ..., 0 (no steps: returns ``x_T``).

    ``noise(t)`` gives the standard normal draw of step t, shaped like x.
    """
    x = x_T
    for t in reversed(range(len(betas))):
        eps_hat, x0_hat = eps_and_x0(eps_model, x, t)
        x = ddpm_step(betas, x, t, eps_hat, noise(t) if t > 0 else None, clip, x0_hat=x0_hat)
    return x


# --- DDIM -----------------------------------------------------------------------------------

def respaced_timesteps(T, steps):
    """``steps`` distinct timesteps from T-1 down to 0, evenly spaced (all T if steps >= T).

    A sampler walks this list and takes each "previous timestep" from the list itself, never
    from ``t - T // steps`` (the bug diffusers fixed in #2076/#12633).
    """
    _check_T(T)
    if steps >= T:
        return list(range(T - 1, -1, -1))
    grid = numpy.round(numpy.linspace(T - 1, 0, steps)).astype(int)
    return sorted(set(grid.tolist()), reverse=True)


def ddim_step(alpha_bar, x_t, t, t_prev, eps_hat, eta=0.0, noise=None, clip=False,
              x0_hat=None):
    """One DDIM step from timestep ``t`` to ``t_prev`` (< t; -1 means the clean state).

    With ``a = alpha_bar_t`` and ``a' = alpha_bar_{t_prev}`` (1 for t_prev = -1)::

        x0_hat = (x_t - sqrt(1 - a) eps_hat) / sqrt(a)        (optionally clipped)
        sigma  = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a')
        x_prev = sqrt(a') x0_hat + sqrt(1 - a' - sigma^2) eps_hat + sigma noise

    ``eta = 0`` is deterministic; ``eta = 1`` on consecutive steps has the DDPM variance.
    Above 1, sigma^2 can exceed 1 - a' and the direction's coefficient is then taken as 0 (the
    command line refuses ``--eta`` above 1). An ``x0_hat`` given (a v-predicting model's,
    ``eps_and_x0``) is used instead of the first line's.
    """
    if not -1 <= t_prev < t < len(alpha_bar):  # a step back up would take a root of a < 0
        raise ValueError(f"a DDIM step goes from a timestep t in 0..{len(alpha_bar) - 1} to an "
                         f"earlier t_prev (-1: the clean state), got t = {t}, t_prev = {t_prev}")
    if eta > 0 and noise is None:
        raise ValueError(f"DDIM with eta = {eta} adds noise: expected a noise draw, got None")
    a = float(alpha_bar[t])
    a_prev = 1.0 if t_prev < 0 else float(alpha_bar[t_prev])
    sigma = 0.0
    if eta > 0 and a < 1.0:
        sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a)) * math.sqrt(1.0 - a / a_prev)
    direction = math.sqrt(max(1.0 - a_prev - sigma * sigma, 0.0))
    if x0_hat is None and not clip and _x0_overflows(a, x_t):
        # sqrt(a') x0_hat = sqrt(a' / a) (x_t - sqrt(1 - a) eps_hat), the ratio in float64
        x_prev = math.sqrt(a_prev / a) * (x_t - math.sqrt(1.0 - a) * eps_hat) + \
            direction * eps_hat
        return x_prev if sigma == 0.0 else x_prev + sigma * noise
    if x0_hat is None:
        x0_hat = x0_from_eps(alpha_bar, x_t, t, eps_hat)
    if clip:
        x0_hat = _clip_unit(x0_hat)
    x_prev = math.sqrt(a_prev) * x0_hat + direction * eps_hat
    return x_prev if sigma == 0.0 else x_prev + sigma * noise


def ddim_sample(eps_model, alpha_bar, x_T, timesteps, eta=0.0, noise=None, clip=False):
    """DDIM over a descending timestep list (``respaced_timesteps``); empty list: ``x_T``.

    Each step goes from ``timesteps[i]`` to ``timesteps[i+1]`` (to the clean state after the
    last). ``noise(t)`` is needed only when ``eta > 0``.
    """
    if any(later >= earlier for earlier, later in zip(timesteps, timesteps[1:])):
        raise ValueError(f"DDIM walks its timesteps down: expected a strictly decreasing "
                         f"list, got {list(timesteps)}")
    if eta > 0 and noise is None:
        raise ValueError(f"DDIM with eta = {eta} adds noise: expected noise(t), got None")
    x = x_T
    for index, t in enumerate(timesteps):
        t_prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        draw = noise(t) if eta > 0 else None
        eps_hat, x0_hat = eps_and_x0(eps_model, x, t)
        x = ddim_step(alpha_bar, x, t, t_prev, eps_hat, eta, draw, clip, x0_hat=x0_hat)
    return x


# --- probability-flow ODE -------------------------------------------------------------------

def pf_ode_rhs(x, eps_hat, beta_t, sigma_t):
    """The VP probability-flow ODE: ``dx/dt = -1/2 beta(t) [x - eps_hat / sigma(t)]``.

    (The score is ``-eps_hat / sigma``; the ODE drift is ``-1/2 beta (x + score)``.)
    Where ``beta(t) = 0`` the drift is 0, whatever sigma: on the continuous schedule sigma is
    0 there when every beta before t is 0 too (``--schedule linear --beta-start 0``), and
    dividing by it would stop the sampler (TorchLean guards the division, beta / (sigma + eps)).
    """
    if beta_t == 0:
        return 0.0 * x
    return (-0.5 * beta_t) * (x - eps_hat * (1.0 / sigma_t))


def euler_step(f, x, t, dt):
    """One explicit Euler step ``x + dt f(x, t)``."""
    return x + dt * f(x, t)


def pf_ode_sample_euler(f, x1, steps):
    """Integrate ``dx/dt = f(x, t)`` from t = 1 to 0 in ``steps`` Euler steps (0 steps: x1).

    The steps are taken at t = 1, (n-1)/n, ..., 1/n with dt = -1/n (TorchLean's corrected grid).
    """
    x = x1
    for index in range(steps):
        x = euler_step(f, x, 1.0 - index / steps, -1.0 / steps)
    return x


# how far (in intervals) t T may lie from a knot and count as on it: far above the float
# rounding of t = 1 - i/n times T (~1e-16 T), far below any interval a caller means
KNOT_TOLERANCE = 1e-9


class ContinuousSchedule:
    """The discrete schedule seen as continuous time t in [0, 1] for the ODE sampler.

    ``log alpha_bar`` is linear between knots ``t = k/T`` (k = 0..T) with ``alpha_bar(0) = 1``
    and ``alpha_bar((k+1)/T) = alpha_bar_k``, so ``beta(t) = -d log alpha_bar / dt`` is
    ``-T log(1 - beta_k)`` on the k-th interval, ``sigma(t) = sqrt(1 - alpha_bar(t))``, and the
    model's timestep at time t is ``t T - 1`` (clamped to [0, T-1]).
    """

    def __init__(self, betas):
        self.betas = check_betas(betas)
        self.T = len(self.betas)
        self.log_alpha_bar = numpy.concatenate([[0.0], numpy.cumsum(numpy.log1p(-self.betas))])

    def _interval(self, t):
        """The knot interval k with k/T < t <= (k+1)/T (the one a backward step crosses).

        A t T within ``KNOT_TOLERANCE`` of a knot is taken as on it: the sampler's times
        1 - i/n are rounded, and t T a hair above knot k (1 - 7/10 is 0.30000000000000004, t T
        = 3.0000000000000004 for T = 10) chose the interval above it, which the step does not
        cross: its beta came from the wrong timestep, and at t = 1/T with beta_0 = 0
        (``--beta-start 0``) beta_1 > 0 met sigma(t) = 0, a ZeroDivisionError for T = 20."""
        position = t * self.T
        knot = round(position)
        if abs(position - knot) <= KNOT_TOLERANCE:
            position = knot
        return min(max(math.ceil(position) - 1, 0), self.T - 1)

    def alpha_bar(self, t):
        return math.exp(numpy.interp(t * self.T, numpy.arange(self.T + 1), self.log_alpha_bar))

    def beta(self, t):
        return -self.T * math.log1p(-float(self.betas[self._interval(t)]))

    def sigma(self, t):
        return math.sqrt(max(1.0 - self.alpha_bar(t), 0.0))

    def timestep(self, t):
        return min(max(t * self.T - 1.0, 0.0), self.T - 1.0)

    def rhs(self, eps_model):
        """``f(x, t)`` of the probability-flow ODE for ``eps_model``."""
        return lambda x, t: pf_ode_rhs(x, eps_model(x, self.timestep(t)), self.beta(t),
                                       self.sigma(t))


def in_batches(network, batch_size):
    """``network(x, t)`` run on at most ``batch_size`` rows of x at a time, for sampling (no
    gradients), ``t`` one timestep for all rows (as the samplers call it).

    The network's activations are then held for one batch at a time, not for all of x: a
    sampler's memory grows with the number of samples only through x itself. Each row's result
    does not depend on the other rows of its batch, so the samples do not depend on
    ``batch_size`` (up to the rounding of products of other shapes).
    """
    def network_in_batches(x, t):
        if x.shape[0] <= batch_size:  # one batch (or none): x as it is
            return network(x, t)
        result = None
        for start in range(0, x.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            part = network(Tensor(x.data[rows]), t).data
            if result is None:
                result = array_module(part).empty(x.shape[:1] + part.shape[1:], part.dtype)
            result[rows] = part  # copied at once: a graph replay overwrites its output
        return Tensor(result)
    return network_in_batches


def timesteps_for_batch(t, batch_size):
    """Timesteps as a float64 array of shape (B,): one number for all, or one each. A number
    gives a host array; an array or Tensor of timesteps stays where it lives (a 0-d one, such
    as ``numpy.asarray(t)`` or ``ml.tensor(t)``, is one number for all)."""
    if isinstance(t, (int, float, numpy.integer, numpy.floating)):
        return numpy.full(batch_size, float(t))
    values = _timestep_array(t)
    values = values.astype(array_module(values).float64)
    if values.ndim == 0:  # read as one per row, it failed with "got shape (1,)"
        return values.reshape(1).repeat(batch_size)
    if values.size != batch_size:
        raise ValueError(f"expected one timestep or {batch_size} of them, got shape {values.shape}")
    return values.reshape(-1)
