"""The VQ-VAE's codebook bookkeeping (``minilean.models.vqvae``): the moving-average codebook
of ``--ema-codebook`` (``VQVAE.ema_update``), the restart of dead codes (``--restart-every``,
``VQVAE.restart_dead_codes``) and the usage and perplexity the run reports
(``code_statistics``).

The EMA codebook is van den Oord et al. 2017, appendix A.1, with the Laplace smoothing of its
reference implementation (Sonnet's ``VectorQuantizerEMA``): for a batch assigning n_k of the
encodings z_j to code k,

    N_k <- d N_k + (1 - d) n_k,     m_k <- d m_k + (1 - d) sum_{j: idx_j = k} z_j,
    n = sum_k N_k,  N~_k = (N_k + eps) n / (n + K eps)  (eps = 1e-5),   e_k = m_k / N~_k.

N~ keeps the total n and lifts an empty code's count from 0 to eps n / (n + K eps), so e_k is
m_k / N~_k = 0 / positive for a code that never had an encoding, never 0/0. The hypothesis
n > 0 holds in training (every batch adds (1 - d) times its size; the buffers start at 1).

The engine runs in the model's dtype; its error is carried step by step (``running_error.py``)
in its order: d and 1 - d float64 scalars cast to the dtype (``optim._scalar``); the one-hot
column sum exact (integer counts); ``one_hot.T @ vectors`` a sum of the assigned vectors and
exact zeros, in any order (BLAS); the sum over K of the counts; the constants 1e-5 and K 1e-5
(float64, then cast) as the engine rounds them; then the smoothing and the division.

``code_statistics`` is float64 host arithmetic: p_k = c_k / S (S = sum c exact for integer
counts), log p_k and the final exp library calls (``library_roundings(float64)``), the K
products, their sum, the exp; usage = #{c_k > 0} / K one division.
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, gamma, library_roundings, mp, mp_tolerance,
                             real_array, reals, underflow)
from proofs.running_error import Carried
from proofs.statements.optim import _f64, _scalar

VQ = "minilean.models.vqvae"
F64 = numpy.float64
SMOOTHING = mpmath.mpf("1e-5")


# --- the EMA codebook -----------------------------------------------------------------------

@st.composite
def _ema_inputs(draw):
    """K codes of dimension D with their running counts N (some 0: codes never chosen) and
    sums m, then 1..3 batches of 1..6 encodings with their code numbers; decay in [0, 1]."""
    codes, dim = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    sizes = draw(st.lists(st.one_of(st.just(0.0), reals(0, 4)), min_size=codes,
                          max_size=codes))
    if sum(sizes) < 1:
        # n >= 1 even at decay 1, as in training (the counts start at 1 each, and a batch of
        # b >= 1 encodings moves n to d n + (1 - d) b): the hypothesis n > 0, within float32's
        # range (at n below 2e-37, e_k = m_k / N~_k can pass float32's largest value)
        sizes[0] = 1.0
    batches = []
    for _ in range(draw(st.integers(1, 3))):
        count = draw(st.integers(1, 6))
        batches.append((real_array(draw, (1, 1, count, dim), -3, 3),
                        numpy.asarray(draw(st.lists(st.integers(0, codes - 1), min_size=count,
                                                    max_size=count))).reshape(1, 1, count)))
    return {"sizes": numpy.asarray(sizes), "sums": real_array(draw, (codes, dim), -3, 3),
            "batches": batches, "decay": draw(st.one_of(reals(0, 1), reals(0.9, 1)))}


def _ema_reference(sizes, sums, batches, decay):
    """(N, m, e) after the batches, in mpmath."""
    d, size, total_sum = mp(decay), mp(sizes), [mp(row) for row in sums]
    codes = len(size)
    for vectors, indices in batches:
        rows, picks = vectors.reshape(-1, vectors.shape[-1]), indices.reshape(-1)
        for k in range(codes):
            assigned = [mp(row) for row, pick in zip(rows, picks) if pick == k]
            size[k] = d * size[k] + (1 - d) * len(assigned)
            total_sum[k] = [d * m + (1 - d) * mpmath.fsum(z[j] for z in assigned)
                            for j, m in enumerate(total_sum[k])]
    n = mpmath.fsum(size)
    smoothed = [(s + SMOOTHING) * n / (n + codes * SMOOTHING) for s in size]
    return size, total_sum, [[m / s for m in row] for row, s in zip(total_sum, smoothed)]


def _ema_replay(sizes, sums, batches, decay, dtype):
    """``ema_update``'s operations in its order, as Carried."""
    d, rate = _scalar(_f64(decay), dtype), _scalar(1 - _f64(decay), dtype)
    size = [Carried.exact(s, dtype) for s in sizes]
    total_sum = [[Carried.exact(m, dtype) for m in row] for row in sums]
    codes = len(size)
    eps = Carried.constant(SMOOTHING, dtype)
    eps_codes = _scalar(Carried.constant(SMOOTHING, F64) * codes, dtype)
    for vectors, indices in batches:
        rows, picks = vectors.reshape(-1, vectors.shape[-1]), indices.reshape(-1)
        for k in range(codes):
            size[k] = d * size[k] + rate * Carried.exact(int((picks == k).sum()), dtype)
            for j in range(len(total_sum[k])):
                column = Carried.total([Carried.exact(row[j] if pick == k else 0, dtype)
                                        for row, pick in zip(rows, picks)])
                total_sum[k][j] = d * total_sum[k][j] + rate * column
    n = Carried.total(size)
    smoothed = [(s + eps) / (n + eps_codes) * n for s in size]
    return size, total_sum, [[m / s for m in row] for row, s in zip(total_sum, smoothed)]


@statement("emaCodebook_update", about=(f"{VQ}.VQVAE:ema_update",), given=_ema_inputs(),
           # pinned: two codes with unequal counts (one code, or equal counts, make N~ = N),
           # one batch of three encodings
           examples=[{"sizes": numpy.asarray([2.0, 0.5]),
                      "sums": numpy.asarray([[1.0], [0.5]]),
                      "batches": [(numpy.asarray([0.5, -1.0, 2.0]).reshape(1, 1, 3, 1),
                                   numpy.asarray([0, 1, 0]).reshape(1, 1, 3))],
                      "decay": 0.9}])
def ema_codebook_update(check, sizes, sums, batches, decay):
    """VQVAE.ema_update over batches: N_k <- d N_k + (1 - d) n_k, m_k <- d m_k + (1 - d) sum of
    the z assigned to k, e_k = m_k / N~_k with N~_k = (N_k + 1e-5) n / (n + K 1e-5), n = sum N
    > 0 (Laplace smoothing), in float64 and float32."""
    from minilean.autograd.tensor import Tensor
    from minilean.models.vqvae import VQVAE
    codes, dim = sums.shape
    reference = _ema_reference(sizes, sums, batches, decay)
    for dtype in ENGINE_DTYPES:
        model = VQVAE((1, 4, 4), codes=codes, code_dim=dim, hidden=2, ema=True,
                      decay=decay).to(dtype=dtype)
        model.cluster_size.data = numpy.array(sizes, dtype=dtype)
        model.cluster_sum.data = numpy.array(sums, dtype=dtype)
        for vectors, indices in batches:
            model.ema_update(Tensor(numpy.array(vectors, dtype=dtype)), Tensor(indices.copy()))
        replay = _ema_replay(sizes, sums, batches, decay, dtype)
        name = numpy.dtype(dtype).name
        computed = (model.cluster_size.data, model.cluster_sum.data, model.codebook.data)
        for what, values, carried, exact in zip(("N", "m", "e"), computed, replay, reference):
            carried = numpy.ravel(numpy.asarray(carried, dtype=object))
            exact = [x for x in numpy.ravel(numpy.asarray(exact, dtype=object))]
            label = f"{name} {what} after {len(batches)} batches (decay {decay!r})"
            check.holds(values.dtype == dtype, f"{label}: stored as {values.dtype}")
            with check.reference():
                check.close([c.value for c in carried], exact, [mp_tolerance(x) for x in exact],
                            f"replay = formula, {label}")
            check.close(numpy.ravel(values), exact, [c.error for c in carried], label)


@mutant("EMA codebook without Laplace smoothing", f"{VQ}.VQVAE.ema_update",
        caught_by=["emaCodebook_update"])
def ema_unsmoothed(original):
    """ema_update sets e_k = m_k / N_k: the paper's formula as printed, without the smoothing
    that keeps a never-chosen code (N_k = 0) from 0/0, and 1e-5-relative off elsewhere."""
    def broken(self, encoded, indices):
        original(self, encoded, indices)  # the counts and sums as they should be, then:
        with numpy.errstate(divide="ignore", invalid="ignore"):
            self.codebook.data[...] = self.cluster_sum.data / self.cluster_size.data[:, None]
    return broken


@mutant("EMA codebook turned float64", f"{VQ}.VQVAE.ema_update",
        caught_by=["emaCodebook_update"])
def ema_float64(original):
    """ema_update with its one-hot in xp.eye's default dtype, float64, and its results bound
    to the buffers (``.data = ...``) instead of written into them (``.data[...] = ...``): a
    float32 model's counts, sums and codebook become float64, each value closer than float32's
    would be (only the dtype shows it), the model float32 no longer."""
    def broken(self, encoded, indices):
        codes, decay = self.codebook.shape[0], self.decay
        vectors = encoded.data.reshape(-1, encoded.shape[-1])
        one_hot = numpy.eye(codes)[indices.data.reshape(-1)]
        self.cluster_size.data = decay * self.cluster_size.data + (1 - decay) * one_hot.sum(0)
        self.cluster_sum.data = (decay * self.cluster_sum.data
                                 + (1 - decay) * (one_hot.T @ vectors))
        total = self.cluster_size.data.sum()
        smoothed = (self.cluster_size.data + 1e-5) / (total + codes * 1e-5) * total
        self.codebook.data = self.cluster_sum.data / smoothed[:, None]
    return broken


# --- the restart of dead codes -------------------------------------------------------------

@st.composite
def _restart_inputs(draw):
    """K codes of dimension D (and EMA buffers N, m for them), usage counts since the last
    restart (0 half the time: dead codes, at times all or none of them), a threshold 1..3
    (training passes 1), a batch of encodings (N, h, w, D) and a generator seed."""
    codes, dim = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3)), dim)
    return {"codebook": real_array(draw, (codes, dim), -3, 3),
            "sizes": numpy.asarray(draw(st.lists(reals(0.5, 4), min_size=codes,
                                                 max_size=codes))),
            "sums": real_array(draw, (codes, dim), -3, 3),
            "usage": numpy.asarray(draw(st.lists(st.one_of(st.just(0), st.integers(1, 4)),
                                                 min_size=codes, max_size=codes))),
            "threshold": draw(st.integers(1, 3)),
            "encoded": real_array(draw, shape, -3, 3),
            "seed": draw(st.integers(0, 2 ** 32 - 1))}


def _restarted(dtype, ema, codebook, sizes, sums, usage, threshold, encoded, generator):
    """(count returned, codebook, N, m, usage, encoded) after restart_dead_codes on a fresh
    model holding the drawn state; ``generator`` None: the default, backend's CPU one."""
    from minilean.autograd.tensor import Tensor
    from minilean.models.vqvae import VQVAE
    codes, dim = codebook.shape
    model = VQVAE((1, 4, 4), codes=codes, code_dim=dim, hidden=2, ema=ema).to(dtype=dtype)
    model.codebook.data = numpy.array(codebook, dtype=dtype)
    if ema:
        model.cluster_size.data = numpy.array(sizes, dtype=dtype)
        model.cluster_sum.data = numpy.array(sums, dtype=dtype)
    model.code_usage.data = numpy.array(usage, dtype=dtype)  # as training counts: a buffer
    batch = Tensor(numpy.array(encoded, dtype=dtype))
    count = model.restart_dead_codes(batch, model.code_usage.data, threshold, generator)
    buffers = ((model.cluster_size.data, model.cluster_sum.data) if ema else (None, None))
    return (count, model.codebook.data, *buffers, model.code_usage.data, batch.data)


@statement("restartDeadCodes_replaces_exactly_the_dead", about=(f"{VQ}.VQVAE:restart_dead_codes",),
           given=_restart_inputs(),
           # pinned: two codes dead and one live (all or none hide the count returned), EMA
           # counts other than 1 and sums other than the encodings, one image of six distinct
           # encodings (one image's picks all hit z_0 when drawn among N = 1)
           examples=[{"codebook": numpy.asarray([[0.25], [-0.75], [1.25]]),
                      "sizes": numpy.asarray([2.0, 3.0, 0.5]),
                      "sums": numpy.asarray([[1.5], [-1.0], [2.5]]),
                      "usage": numpy.asarray([0, 2, 0]), "threshold": 1,
                      "encoded": numpy.asarray([0.5, -1.5, 2.0, -0.25, 1.0, -2.5]).reshape(
                          1, 2, 3, 1),
                      "seed": 1}])
def restart_dead_codes_exact(check, codebook, sizes, sums, usage, threshold, encoded, seed):
    """restart_dead_codes(z, u, tau, g) sets e_k = z_{p_i} for the i-th dead code k (u_k < tau,
    ascending), p = g.integers(0, #z, #dead), and leaves every code with u_k >= tau bit for bit;
    returns #dead; with the EMA codebook N_k = 1, m_k = e_k = z_{p_i} there; bit for bit, both
    dtypes. Also: u and z are unchanged, the same seed gives the same codebook, and no generator
    means the seeded CPU one (backend.generator)."""
    from minilean import backend
    codes, dim = codebook.shape
    dead = [k for k in range(codes) if usage[k] < threshold]
    rows = encoded.reshape(-1, dim)
    picks = numpy.random.default_rng(seed).integers(0, len(rows), len(dead))
    for dtype, ema in ((d, e) for d in ENGINE_DTYPES for e in (False, True)):
        label = (f"{numpy.dtype(dtype).name}{' EMA' if ema else ''}, "
                 f"usage {usage.tolist()} < {threshold}")
        run = _restarted(dtype, ema, codebook, sizes, sums, usage, threshold, encoded,
                         numpy.random.default_rng(seed))
        count, book, size, total, usage_after, batch = run
        check.holds(isinstance(count, int) and count == len(dead),
                    f"{label}: returned {count!r}, {len(dead)} codes dead")
        check.holds(book.dtype == dtype and book.shape == codebook.shape,
                    f"{label}: codebook {book.dtype} {book.shape}")
        for k in range(codes):
            if k in dead:
                pick = picks[dead.index(k)]
                check.close(book[k], rows[pick], 0, f"{label}: dead code {k} = z_{pick}")
                if ema:
                    # against the code, not z_pick: each check shows one slip (the pick is the
                    # line above's), none hides behind another
                    check.close(size[k], 1, 0, f"{label}: N_{k} of restarted code")
                    check.close(total[k], book[k], 0, f"{label}: m_{k} of restarted code")
            else:
                check.close(book[k], codebook[k], 0, f"{label}: live code {k} moved")
                if ema:
                    check.close(size[k], sizes[k], 0, f"{label}: N_{k} of live code moved")
                    check.close(total[k], sums[k], 0, f"{label}: m_{k} of live code moved")
        check.close(usage_after, usage, 0, f"{label}: usage changed")
        check.close(batch, encoded, 0, f"{label}: encodings changed")
        again = _restarted(dtype, ema, codebook, sizes, sums, usage, threshold, encoded,
                           numpy.random.default_rng(seed))
        check.close(again[1], book, 0, f"{label}: same seed, another codebook")
        state = backend.get_rng_state()
        try:
            default = _restarted(dtype, ema, codebook, sizes, sums, usage, threshold, encoded,
                                 None)
            backend.set_rng_state(state)
            expected = _restarted(dtype, ema, codebook, sizes, sums, usage, threshold,
                                  encoded, backend.generator("cpu"))
        finally:
            backend.set_rng_state(state)  # the other statements' draws untouched
        check.close(default[1], expected[1], 0, f"{label}: default generator")


def _restart_with(dead_of=numpy.less, pool=None, default=None, reset=("N", "m"),
                  count=lambda dead, usage: dead.size):
    """restart_dead_codes on the CPU, one piece of it given: ``dead_of(usage, threshold)`` the
    codes restarted, ``pool(encoded, vectors)`` how many encodings the picks range over,
    ``default()`` the generator when none is passed, ``reset`` the EMA buffers a restart sets,
    ``count(dead, usage)`` what it returns."""
    def broken(self, encoded, usage, threshold, generator=None):
        from minilean import backend
        usage = backend.to_device(usage, "cpu")
        dead = numpy.flatnonzero(dead_of(usage, threshold))
        if dead.size == 0:
            return 0
        vectors = encoded.data.reshape(-1, encoded.shape[-1])
        picks = (generator or (default or (lambda: backend.generator("cpu")))()).integers(
            0, (pool or (lambda encoded, vectors: vectors.shape[0]))(encoded, vectors), dead.size)
        self.codebook.data[dead] = vectors[picks]
        if self.ema and "N" in reset:
            self.cluster_size.data[dead] = 1.0
        if self.ema and "m" in reset:
            self.cluster_sum.data[dead] = vectors[picks]
        return int(count(dead, usage))
    return broken


@mutant("the live codes restarted instead of the dead", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_live_codes(original):
    """restart_dead_codes with the comparison turned round (usage >= threshold): the codes the
    batch uses are thrown onto random encodings, the dead ones kept where nothing chooses them."""
    return _restart_with(dead_of=numpy.greater_equal)


@mutant("a restarted code keeps its EMA count", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_keeps_count(original):
    """restart_dead_codes sets a dead code and its EMA sum m_k to the encoding but leaves its
    count N_k: the next ema_update gives e_k = m_k / N~_k with the old count, not the encoding
    (a count below 1 throws the code past it)."""
    return _restart_with(reset=("m",))


@mutant("a restarted code keeps its EMA sum", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_keeps_sum(original):
    """restart_dead_codes sets a dead code to the encoding and its EMA count N_k to 1 but
    leaves its sum m_k: the next ema_update pulls the code back to m_k, where it died."""
    return _restart_with(reset=("N",))


@mutant("restart counts every code", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_counts_every_code(original):
    """restart_dead_codes returns the size of the dead codes' boolean mask (K) instead of how
    many are dead: the codes restarted right, the "restarted" a training run logs wrong."""
    return _restart_with(count=lambda dead, usage: usage.size)


@mutant("restart picks among the first N encodings", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_picks_by_batch_size(original):
    """restart_dead_codes draws its picks in 0..N-1, the batch size encoded.shape[0], not the
    N h w encodings: the dead codes all go to encodings of the first images' first rows."""
    return _restart_with(pool=lambda encoded, vectors: encoded.shape[0])


@mutant("restart reseeds its default generator", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_reseeds_default(original):
    """restart_dead_codes without a generator draws from numpy.random.default_rng(0), made
    afresh on every call, not the seeded CPU generator: every such restart picks the same
    encodings, whatever minilean.manual_seed was given."""
    return _restart_with(default=lambda: numpy.random.default_rng(0))


@mutant("restart only with the EMA codebook", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_only_with_ema(original):
    """restart_dead_codes with the codebook's write indented into ``if self.ema:``: a codebook
    learnt by gradient (the default) never has its dead codes restarted, though the count of
    them is returned."""
    def broken(self, encoded, usage, threshold, generator=None):
        if self.ema:
            return original(self, encoded, usage, threshold, generator)
        from minilean import backend
        return int(numpy.count_nonzero(backend.to_device(usage, "cpu") < threshold))
    return broken


@mutant("restart resets every EMA count", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_resets_every_count(original):
    """restart_dead_codes writes N = 1 with ``[...]`` (as ema_update writes its buffers) where
    ``[dead]`` belongs: every code's EMA count is reset, the live codes' history lost."""
    def broken(self, encoded, usage, threshold, generator=None):
        restarted = original(self, encoded, usage, threshold, generator)
        if restarted and self.ema:
            self.cluster_size.data[...] = 1.0
        return restarted
    return broken


@mutant("restart resyncs the codebook to m / N", f"{VQ}.VQVAE.restart_dead_codes",
        caught_by=["restartDeadCodes_replaces_exactly_the_dead"])
def restart_resyncs_codebook(original):
    """restart_dead_codes, with the EMA codebook, recomputes every code as m_k / N_k after
    setting the dead codes' buffers (right for those: z / 1): the live codes move off the
    values training gave them (ema_update's are m_k / N~_k, smoothed)."""
    def broken(self, encoded, usage, threshold, generator=None):
        restarted = original(self, encoded, usage, threshold, generator)
        if self.ema:
            self.codebook.data[...] = self.cluster_sum.data / self.cluster_size.data[:, None]
        return restarted
    return broken


# --- usage and perplexity -------------------------------------------------------------------

def _library(value, moved):
    """A float64 library call's result ``value`` at an argument whose effect on the exact
    result is at most ``moved``."""
    roundings = library_roundings(F64)
    return Carried(value, moved + gamma(roundings, F64) * (abs(value) + moved)
                   + underflow(roundings, F64), F64)


def _log(x):
    """log of a positive Carried: moved by at most -log(1 - e / x) (log's slope 1 / x below x),
    then the library call."""
    moved = -mpmath.log(1 - x.error / x.value) if x.error < x.value else mpmath.inf
    return _library(mpmath.log(x.value), moved)


def _exp(x):
    """exp of a Carried: moved by at most e^x (e^{e_x} - 1), then the library call."""
    value = mpmath.exp(x.value)
    return _library(value, value * mpmath.expm1(x.error))


@statement("codeStatistics_usage_perplexity", about=(f"{VQ}.code_statistics",),
           given={"counts": st.lists(st.one_of(st.just(0), st.integers(1, 10 ** 6)), min_size=1,
                                     max_size=16).filter(any)},
           # pinned: three used codes and an unused one
           examples=[{"counts": [3, 1, 0, 4]}])
def code_statistics_values(check, counts):
    """code_statistics(c) = (#{k: c_k > 0} / K, exp(-sum_k p_k log p_k)) with p = c / sum c
    (0 log 0 = 0) for counts with sum c > 0; 1 <= perplexity <= #{c_k > 0} (float64). Unused
    codes (c_k = 0) are drawn half the time: st.integers(0, 10^6) alone drew a 0 in about 1
    example of 100, leaving the usage below 1 and 0 log 0 nearly unchecked."""
    from minilean.models.vqvae import code_statistics
    used = sum(1 for c in counts if c)
    total = mpmath.fsum(counts)
    p = [mpmath.mpf(c) / total for c in counts if c]
    perplexity = mpmath.exp(-mpmath.fsum(x * mpmath.log(x) for x in p))
    check.holds(1 - mp_tolerance() <= perplexity <= used * (1 + mp_tolerance()),
                f"mpmath: perplexity {mpmath.nstr(perplexity, 17)} outside [1, {used}]")
    # the engine's order: p_k = c_k / S, log, products, their sum, -, exp
    terms = []
    for c in counts:
        if c:
            share = Carried.exact(c, F64) / Carried.exact(int(total), F64)
            terms.append(share * _log(share))
    entropy = -Carried.total(terms)
    replay = _exp(entropy)
    computed_usage, computed_perplexity = code_statistics(numpy.asarray(counts))
    check.close(computed_usage, mpmath.mpf(used) / len(counts),
                gamma(1, F64) * mpmath.mpf(used) / len(counts), "usage")
    check.close(computed_perplexity, perplexity, replay.error, f"perplexity of {counts}")


@mutant("perplexity in bits", f"{VQ}.code_statistics",
        caught_by=["codeStatistics_usage_perplexity"])
def perplexity_in_bits(original):
    """code_statistics takes exp of the entropy in bits (-sum p log2 p): the bases mixed, so
    K equally used codes report K^(1/ln 2) = K^1.44 instead of K."""
    def broken(counts):
        counts = numpy.asarray(counts, numpy.float64)
        probabilities = counts / counts.sum()
        nonzero = probabilities[probabilities > 0]
        return (float((counts > 0).mean()),
                float(numpy.exp(-(nonzero * numpy.log2(nonzero)).sum())))
    return broken


@mutant("usage counts every code", f"{VQ}.code_statistics",
        caught_by=["codeStatistics_usage_perplexity"])
def usage_of_every_code(original):
    """code_statistics counts the codes with c_k >= 0 as used: the usage is 1 whatever the
    counts, so a collapsed codebook reports full use."""
    def broken(counts):
        return (float((numpy.asarray(counts) >= 0).mean()), original(counts)[1])
    return broken
