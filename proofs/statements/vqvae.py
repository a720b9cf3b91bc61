"""VQ-VAE statements (TorchLean ``Latent/VQVAE.lean``) on ``minilean.models.vqvae``.

squaredL2 is a sum of squares: on the engine every rounded square and partial sum of
non-negative numbers is non-negative, so ``squaredL2_nonneg`` holds exactly in floating point,
and x - x = 0 makes ``squaredL2_self`` exact. ``nearest_code`` takes the argmin of the
distances as computed, so ``IsNearestCode`` holds exactly for the computed distances; against
the exact (mpmath) distances it holds up to their rounding, gamma_{D+2} (d_idx + d_j): the
difference's rounding, squared (2), the square (1), D - 1 additions. The loss statements
compare ``vqvae_loss``'s total with its own three terms (bit for bit against
``weighted_three_term``) and with mpmath MSEs within gamma_{n+5} sum |terms|: each MSE through
n + 3 roundings (the difference's, squared, 2; the square, 1; n - 1 additions; the division,
1), then the weighted sum, at most 2 more on any term's path (beta's product and one addition,
or two additions).
"""
import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import statement
from proofs.gradients import backward_name
from proofs.mutation import mutant
from proofs.numerics import ENGINE_DTYPES, engine, gamma, host, mp, reals, underflow

VQ = "minilean.models.vqvae"


@st.composite
def _codebook_and_vectors(draw, match=False):
    """A codebook (K, D), vectors z (M, D) and, with match, z rows copied from codes."""
    codes, dim, count = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    values = lambda n: st.lists(reals(-2, 2), min_size=n, max_size=n)  # noqa: E731
    book = numpy.asarray(draw(values(codes * dim))).reshape(codes, dim)
    chosen = draw(st.lists(st.integers(0, codes - 1), min_size=count, max_size=count))
    z = book[chosen] if match else numpy.asarray(draw(values(count * dim))).reshape(count, dim)
    return {"book": book, "z": z, "chosen": numpy.asarray(chosen)}


def _distances(z, book):
    return [[mpmath.fsum((a - b) ** 2 for a, b in zip(mp(row), mp(code))) for code in book]
            for row in z]


@statement("squaredL2_nonneg", about=(f"{VQ}.squared_l2",),
           given=_codebook_and_vectors())
def squared_l2_nonneg(check, book, z, chosen):
    """0 <= squaredL2(x, y) = sum_k (x_k - y_k)^2."""
    from minilean.models import vqvae
    exact = [d for row in _distances(z, book) for d in row]
    check.holds(all(d >= 0 for d in exact), "mpmath")
    dim = book.shape[1]
    for dtype in ENGINE_DTYPES:
        computed = host(vqvae.squared_l2(engine(z, dtype)[:, None, :], engine(book, dtype)))
        check.holds((computed >= 0).all(), f"{dtype.__name__}: negative squared distance")
        # the difference's rounding is squared (2), the square (1), D - 1 additions
        check.close(computed, exact, [gamma(dim + 2, dtype) * d + underflow(dim + 2, dtype)
                                       for d in exact],
                    f"value ({dtype.__name__})")


@statement("squaredL2_self", about=(f"{VQ}.squared_l2",), given=_codebook_and_vectors())
def squared_l2_self(check, book, z, chosen):
    """squaredL2(x, x) = 0."""
    from minilean.models import vqvae
    for dtype in ENGINE_DTYPES:
        computed = host(vqvae.squared_l2(engine(book, dtype), engine(book, dtype)))
        check.close(computed, [mp(0)] * len(book), 0, f"engine ({dtype.__name__})")


def _nearest(z, book, dtype):
    from minilean.models import vqvae
    return host(vqvae.nearest_code(engine(z, dtype), engine(book, dtype))).astype(int)


@statement("exactCodeMatch_isNearestCode", about=(f"{VQ}.nearest_code",),
           given=_codebook_and_vectors(match=True), relaxed=_codebook_and_vectors())
def exact_match_is_nearest(check, book, z, chosen):
    """z = e_idx  =>  IsNearestCode(e, z, idx): squaredL2(z, e_idx) <= squaredL2(z, e_j) for
    all j; and nearest_code returns a code at distance 0 (idx itself unless codes repeat)."""
    distances = _distances(z, book)
    for row, idx in zip(distances, chosen):
        check.holds(all(row[idx] <= d for d in row), f"mpmath: code {idx} is not nearest")
    for dtype in ENGINE_DTYPES:
        # the chosen code is at computed distance 0, so the argmin is a code at computed
        # distance 0: exactly 0 unless the squares of tiny differences underflowed
        for row, found in zip(distances, _nearest(z, book, dtype)):
            check.close(row[found], mp(0), underflow(book.shape[1] + 1, dtype),
                        f"distance to nearest_code ({dtype.__name__})")


@statement("exactCodeMatch_selected_distance_zero", about=(f"{VQ}.squared_l2",),
           given=_codebook_and_vectors(match=True), relaxed=_codebook_and_vectors())
def exact_match_distance_zero(check, book, z, chosen):
    """z = e_idx  =>  squaredL2(z, e_idx) = 0."""
    from minilean.models import vqvae
    for dtype in ENGINE_DTYPES:
        computed = host(vqvae.squared_l2(engine(z, dtype), engine(book[chosen], dtype)))
        check.close(computed, [mp(0)] * len(z), 0, f"engine ({dtype.__name__})")


@statement("nearestCode_minimizes_quantization_loss", about=(f"{VQ}.nearest_code",),
           given=_codebook_and_vectors(),
           # pinned: a near tie in float32 (squared_l2 0.8531199 and 0.85311985; the expanded
           # |z|^2 - 2 z.e + |e|^2 orders them the other way round), whose exact distances
           # differ by far more than float64's bound (a code picked by any other order fails)
           examples=[{"book": numpy.asarray([[1.455145001411438, 0.8062742352485657],
                                             [1.8555564880371094, -0.9970976114273071]]),
                      "z": numpy.asarray([[1.655350685119629, -0.09541171044111252]]),
                      "chosen": numpy.asarray([0])}])
def nearest_code_minimizes(check, book, z, chosen):
    """idx = nearest_code(z, e)  =>  for all j, squaredL2(z, e_idx) <= squaredL2(z, e_j)."""
    from minilean.models import vqvae
    distances, dim = _distances(z, book), book.shape[1]
    for dtype in ENGINE_DTYPES:
        found = _nearest(z, book, dtype)
        computed = host(vqvae.squared_l2(engine(z, dtype)[:, None, :], engine(book, dtype)))
        for row, computed_row, idx in zip(distances, computed, found):
            check.holds((computed_row[idx] <= computed_row).all(),
                        f"{dtype.__name__}: code {idx} not the argmin of computed distances")
            # exact distances: only a rounding-sized near-tie may be out of order; each
            # computed distance also carries the absolute error of underflow (tiny distances
            # round to subnormals or 0 and tie)
            floor = 2 * underflow(dim + 2, dtype)
            for d in row:
                check.close(max(row[idx] - d, 0), mp(0),
                            gamma(dim + 2, dtype) * (row[idx] + d) + floor,
                            f"exact distance of the chosen code over another ({dtype.__name__})")


@statement("quantized_is_codebook_lookup", about=(f"{VQ}.quantize",),
           given=_codebook_and_vectors())
def quantized_is_lookup(check, book, z, chosen):
    """quantize(e, idx) = e_idx (row idx of the codebook), exactly."""
    from minilean.models import vqvae
    import minilean
    for dtype in ENGINE_DTYPES:
        indices = minilean.tensor(chosen, dtype=numpy.int64)
        check.close(host(vqvae.quantize(engine(book, dtype), indices)), mp(book[chosen]), 0,
                    f"engine ({dtype.__name__})")


@st.composite
def _loss_inputs(draw, zero_quantization=False, beta=None):
    n, m = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    values = lambda k: st.lists(reals(-2, 2), min_size=k, max_size=k).map(numpy.asarray)  # noqa
    encoded = draw(values(m))
    return {"target": draw(values(n)), "reconstruction": draw(values(n)), "encoded": encoded,
            "quantized": encoded.copy() if zero_quantization else draw(values(m)),
            "beta": draw(reals(0, 4)) if beta is None else beta}


# pinned for the loss statements: three terms that differ, none 0, and beta = 0.25 (the
# VQ-VAE paper's)
PINNED_LOSS = {"target": numpy.asarray([0.5, -1.0, 1.5]),
               "reconstruction": numpy.asarray([0.25, 0.5, 1.0]),
               "encoded": numpy.asarray([1.0, -0.5]), "quantized": numpy.asarray([0.5, 1.5]),
               "beta": 0.25}


def _mse(a, b):
    return mpmath.fsum((x - y) ** 2 for x, y in zip(mp(a), mp(b))) / len(a)


def _vq_losses(dtype, target, reconstruction, encoded, quantized, beta):
    from minilean.models import vqvae
    return vqvae.vqvae_loss(engine(target, dtype), engine(reconstruction, dtype),
                            engine(encoded, dtype), engine(quantized, dtype), beta)


@statement("vqvae_loss_decomposition", about=(f"{VQ}.vqvae_loss",), given=_loss_inputs(),
           examples=[PINNED_LOSS])
def vq_decomposition(check, target, reconstruction, encoded, quantized, beta):
    """loss(beta) = MSE(dec, x) + MSE(e_idx, z_e) + beta MSE(z_e, e_idx)."""
    terms = [_mse(reconstruction, target), _mse(quantized, encoded), _mse(encoded, quantized)]
    exact = terms[0] + terms[1] + mp(beta) * terms[2]
    n = max(len(target), len(encoded))
    for dtype in ENGINE_DTYPES:
        losses = _vq_losses(dtype, target, reconstruction, encoded, quantized, beta)
        # each MSE: difference (2, squared), square, n - 1 additions, division: n + 3; then
        # the weighted sum, 2 more on any path: n + 5
        check.close(float(host(losses.total)), exact,
                    gamma(n + 5, dtype) * (terms[0] + terms[1] + mp(beta) * terms[2])
                    + underflow(n + 5, dtype),
                    f"total ({dtype.__name__})")


@statement("vqvae_loss_eq_weightedThreeTerm",
           about=(f"{VQ}.vqvae_loss", "minilean.models.objectives.weighted_three_term"),
           given=_loss_inputs(), examples=[PINNED_LOSS])
def vq_weighted(check, target, reconstruction, encoded, quantized, beta):
    """loss(beta) = weightedThreeTerm(beta, {recon, codebook, commitment}), bit for bit."""
    from minilean.models import objectives
    for dtype in ENGINE_DTYPES:
        losses = _vq_losses(dtype, target, reconstruction, encoded, quantized, beta)
        expected = objectives.weighted_three_term(losses.reconstruction, losses.codebook,
                                                  losses.commitment, beta)
        check.close(float(host(losses.total)), mp(float(host(expected))), 0, dtype.__name__)


@statement("vqvae_loss_zero_beta", about=(f"{VQ}.vqvae_loss",), given=_loss_inputs(beta=0.0),
           relaxed=_loss_inputs())
def vq_zero_beta(check, target, reconstruction, encoded, quantized, beta):
    """beta = 0  =>  loss = reconstruction + codebook."""
    for dtype in ENGINE_DTYPES:
        losses = _vq_losses(dtype, target, reconstruction, encoded, quantized, beta)
        check.close(float(host(losses.total)),
                    mp(float(host(losses.reconstruction + losses.codebook))), 0, dtype.__name__)


@statement("vqvae_loss_eq_reconstruction_of_zero_quantization", about=(f"{VQ}.vqvae_loss",),
           given=_loss_inputs(zero_quantization=True), relaxed=_loss_inputs())
def vq_zero_quantization(check, target, reconstruction, encoded, quantized, beta):
    """codebook = 0 and commitment = 0 (z_e = e_idx)  =>  loss(beta) = reconstruction."""
    for dtype in ENGINE_DTYPES:
        losses = _vq_losses(dtype, target, reconstruction, encoded, quantized, beta)
        check.close(float(host(losses.total)), mp(float(host(losses.reconstruction))), 0,
                    dtype.__name__)


@statement("vqvae_loss_mono_beta_of_commitment_nonneg", about=(f"{VQ}.vqvae_loss",),
           given=st.tuples(_loss_inputs(), reals(-4, 4), reals(-4, 4)).map(
               lambda drawn: {"example": {**drawn[0], "beta": drawn[1]}, "other": drawn[2]}),
           # pinned: three terms that differ, a negative beta against a positive one (|beta|
           # for beta is monotone on beta >= 0 alone)
           examples=[{"example": {**PINNED_LOSS, "beta": -2.0}, "other": 0.25}])
def vq_mono(check, example, other):
    """beta1 <= beta2 and 0 <= commitment  =>  loss(beta1) <= loss(beta2), for all real betas
    as the theorem has them, negative ones included (the command line refuses beta < 0, but
    vqvae_loss takes any). The commitment is an MSE, so its hypothesis always holds here
    (objective-level mono shows it matters)."""
    low, high = sorted([example["beta"], other])
    for dtype in ENGINE_DTYPES:
        totals = [float(host(_vq_losses(dtype, **{**example, "beta": b}).total))
                  for b in (low, high)]
        check.holds(totals[0] <= totals[1], f"{dtype.__name__}: {totals}")


@st.composite
def _gradient_inputs(draw):
    """Encodings z_e, codes e, decoder weights w and targets x of one length n, and beta."""
    n = draw(st.integers(1, 6))
    values = st.lists(reals(-2, 2), min_size=n, max_size=n).map(numpy.asarray)
    return {"encoded": draw(values), "quantized": draw(values), "weights": draw(values),
            "target": draw(values), "beta": draw(reals(0, 4))}


@statement("vqvae_trainingGradients", about=(f"{VQ}.vqvae_loss", f"{VQ}.straight_through"),
           given=_gradient_inputs())
def vq_training_gradients(check, encoded, quantized, weights, target, beta):
    """TorchLean trainingGradients, through the straight-through estimator: with a decoder
    dec(q) = w q (elementwise) on q = straight_through(z_e, e) and g = d reconstruction / d q
    = (2/n) w (w e - x), d loss / d z_e = g + beta (2/n)(z_e - e) (the decoder's gradient
    copied onto the encoder, plus the commitment term; the codebook term sees stop_grad(z_e))
    and d loss / d e = (2/n)(e - z_e) (codebook term only: e reaches the decoder through the
    stop_grad alone)."""
    from minilean.models import vqvae
    n = len(encoded)
    z, e, w, x, b = mp(encoded), mp(quantized), mp(weights), mp(target), mp(beta)
    exact_z = [2 * wi * (wi * ei - xi) / n + b * 2 * (zi - ei) / n
               for zi, ei, wi, xi in zip(z, e, w, x)]
    exact_e = [2 * (ei - zi) / n for zi, ei in zip(z, e)]
    # the straight-through value z + (e - z) is e within gamma_2 (|e| + |e - z|); the decoder
    # product, the difference, the MSE's 2/n factor and the chain of products, the product by w
    # and the sum with the commitment gradient (which has difference, 2/n, products, beta)
    magnitudes_z = [2 * abs(wi) * (abs(wi) * (2 * abs(ei) + abs(ei - zi)) + abs(xi)) / n
                    + b * 2 * abs(zi - ei) / n for zi, ei, wi, xi in zip(z, e, w, x)]
    for dtype in ENGINE_DTYPES:
        z_e, e_ = engine(encoded, dtype, requires_grad=True), engine(quantized, dtype,
                                                                     requires_grad=True)
        reconstruction = engine(weights, dtype) * vqvae.straight_through(z_e, e_)
        vqvae.vqvae_loss(engine(target, dtype), reconstruction, z_e, e_, beta).total.backward()
        # a result in the subnormal range also carries the absolute error of underflow, scaled
        # by the factors after it (2/n <= 2, |w| <= 2 and beta)
        floor = underflow(8, dtype) * 4 * max(1, beta)
        check.close(host(z_e.grad), exact_z, [gamma(8, dtype) * m + floor for m in magnitudes_z],
                    f"encoder gradient ({dtype.__name__})")
        check.close(host(e_.grad), exact_e, [gamma(6, dtype) * abs(v) + floor for v in exact_e],
                    f"codebook gradient ({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

def _recombined(original, total):
    """vqvae_loss with its total recomputed as total(reconstruction, codebook, commitment, beta)
    from its own (correct) terms."""
    def broken(target, reconstruction, encoded, quantized, beta):
        losses = original(target, reconstruction, encoded, quantized, beta)
        return losses._replace(total=total(*losses[1:], beta))
    return broken


@mutant("commitment weight on the codebook term", f"{VQ}.vqvae_loss",
        caught_by=["vqvae_trainingGradients"])
def commitment_weight_on_codebook(original):
    """total = recon + beta codebook + commitment: the same value (the two MSEs are equal),
    but the gradients of encoder and codebook swap their weights."""
    return _recombined(original, lambda recon, codebook, commitment, beta:
                       recon + beta * codebook + commitment)


@mutant("VQ-VAE loss without the commitment term", f"{VQ}.vqvae_loss",
        caught_by=["vqvae_loss_decomposition", "vqvae_loss_eq_weightedThreeTerm"])
def commitment_dropped(original):
    """total = recon + codebook: the commitment term computed but left out of the total."""
    return _recombined(original, lambda recon, codebook, commitment, beta: recon + codebook)


@mutant("beta on both VQ terms", f"{VQ}.vqvae_loss",
        caught_by=["vqvae_trainingGradients", "vqvae_loss_decomposition",
                   "vqvae_loss_eq_weightedThreeTerm"])
def beta_on_both_vq_terms(original):
    """total = recon + beta (codebook + commitment): the codebook term weighted too, so the
    codes learn beta times slower (the encoder's gradient unchanged)."""
    return _recombined(original, lambda recon, codebook, commitment, beta:
                       recon + beta * (codebook + commitment))


@mutant("beta on the VQ-VAE reconstruction", f"{VQ}.vqvae_loss",
        caught_by=["vqvae_loss_decomposition", "vqvae_loss_eq_weightedThreeTerm",
                   "vqvae_loss_zero_beta", "vqvae_loss_eq_reconstruction_of_zero_quantization"])
def beta_on_vq_reconstruction(original):
    """total = beta recon + codebook + commitment: the weight on the first term, not the third."""
    return _recombined(original, lambda recon, codebook, commitment, beta:
                       beta * recon + codebook + commitment)


@mutant("commitment subtracted", f"{VQ}.vqvae_loss",
        caught_by=["vqvae_loss_mono_beta_of_commitment_nonneg", "vqvae_loss_decomposition",
                   "vqvae_loss_eq_weightedThreeTerm"])
def commitment_subtracted(original):
    """total = recon + codebook - beta commitment: the commitment's sign flipped, so a larger
    beta lowers the loss and pushes the encoder away from its codes."""
    return _recombined(original, lambda recon, codebook, commitment, beta:
                       recon + codebook - beta * commitment)


@mutant("commitment weighted by |beta|", f"{VQ}.vqvae_loss",
        caught_by=["vqvae_loss_mono_beta_of_commitment_nonneg"])
def commitment_beta_magnitude(original):
    """total = recon + codebook + |beta| commitment (a weight "made safe" by abs): the same
    total for every beta >= 0, so only a negative beta below a positive one shows that it is
    not monotone in beta (the statement drew betas in [0, 4] alone and passed it)."""
    return _recombined(original, lambda recon, codebook, commitment, beta:
                       recon + codebook + abs(beta) * commitment)


@mutant("squared L2 of the sum", f"{VQ}.squared_l2",
        caught_by=["squaredL2_nonneg", "squaredL2_self", "exactCodeMatch_selected_distance_zero"])
def squared_l2_of_sum(original):
    """squared_l2 = sum_k (x_k + y_k)^2: a + where the difference belongs (nonzero at x = y)."""
    return lambda x, y: ((x + y) * (x + y)).sum(-1)


@mutant("squared L2 without the square", f"{VQ}.squared_l2",
        caught_by=["squaredL2_nonneg", "nearestCode_minimizes_quantization_loss"])
def squared_l2_unsquared(original):
    """squared_l2 = sum_k (x_k - y_k): the differences summed unsquared (negative when y > x)."""
    return lambda x, y: (x - y).sum(-1)


@mutant("squared L2 plus an epsilon", f"{VQ}.squared_l2",
        caught_by=["squaredL2_self", "exactCodeMatch_selected_distance_zero", "squaredL2_nonneg"])
def squared_l2_epsilon(original):
    """squared_l2 = sum_k (x_k - y_k)^2 + 1e-12, an epsilon such as a distance under a sqrt
    takes: an exact match is no longer at distance 0 (off by far less than 1)."""
    return lambda x, y: original(x, y) + 1e-12


@mutant("nearest code by the expanded distance", f"{VQ}.nearest_code",
        caught_by=["nearestCode_minimizes_quantization_loss"])
def nearest_code_expanded(original):
    """nearest_code takes the argmin of |z|^2 - 2 z.e + |e|^2 (the usual fast form) instead of
    squared_l2's: at a near tie it picks a code whose computed squared_l2 is not the least, as
    nearest_code's docstring says it must not (its exact distance still within rounding)."""
    def broken(z, book):
        z, book = z.detach(), book.detach()
        return ((z * z).sum(-1).unsqueeze(-1) - 2.0 * (z @ book.T)
                + (book * book).sum(-1)).argmin(-1)
    return broken


@mutant("quantize with 1-based code numbers", f"{VQ}.quantize",
        caught_by=["quantized_is_codebook_lookup", "forward_eq_decoder_codebook",
                   backward_name("embedding")])
def quantize_one_based(original):
    """quantize(e, idx) = e_(idx - 1): code numbers read as 1-based (code 0 wraps to the last
    row), so every lookup returns the code before the chosen one."""
    return lambda codebook, indices: codebook[indices.data - 1]


@mutant("nearest code is the farthest", f"{VQ}.nearest_code",
        caught_by=["nearestCode_minimizes_quantization_loss", "exactCodeMatch_isNearestCode"])
def farthest_code(original):
    """nearest_code returns argmax of the distances."""
    from minilean.models import vqvae
    return lambda z, book: vqvae.squared_l2(z.unsqueeze(-2), book).argmax(-1)


@mutant("straight-through without a gradient", f"{VQ}.straight_through",
        caught_by=["vqvae_trainingGradients"])
def straight_through_no_gradient(original):
    """straight_through returns e_idx itself: the right value, but no gradient reaches z_e."""
    return lambda encoded, quantized: quantized


@mutant("straight-through doubles the gradient", f"{VQ}.straight_through",
        caught_by=["vqvae_trainingGradients"])
def straight_through_doubled(original):
    """straight_through = 2 z_e + stop_grad(e_idx - 2 z_e): value e_idx, gradient 2 g."""
    return lambda encoded, quantized: 2.0 * encoded + (quantized - 2.0 * encoded).detach()
