"""Model-wiring statements (TorchLean ``sampleLatent``, ``forward``, ``generate``, ``fakeScore``):
the real model modules' forward methods compute the composition the theorems name.

TorchLean's wiring lemmas are definitional (``rfl``). Here they say something about code: each
is checked (a) bit for bit, where the model's forward must equal the named functions composed
by hand (e.g. the latent the VAE loss decodes is ``reparameterize_diag`` of the encoder's
outputs), and (b) against mpmath at 50 digits: the networks' layers are evaluated exactly on
the engine's own (float32-representable) parameters, and the engine's output must lie within a
running rounding bound (``Network.evaluate``).

The running bound, per output coordinate (Higham ch. 3, first order): an affine layer
y = M v + b whose row has n nonzero weights is computed through at most n + 1 roundings on
any path (n products, n - 1 additions, the bias), in any summation order, so with an input
error e it carries |M| e + gamma_{n+1} (|M| (|v| + e) + |b|). ReLU is exact and 1-Lipschitz;
leaky ReLU is 1-Lipschitz and rounds twice (the slope 0.2 rounded to the dtype, the product);
tanh is 1-Lipschitz and counts as one library call, L = ``numerics.library_roundings`` (8 in
float32, 4 in float64); sigmoid, computed as s = e^min(x,0) / (1 + e^-|x|), is 1/4-Lipschitz
and within gamma_{L+2} absolutely (x >= 0: the numerator is exactly 1, and an exp, a sum and a
quotient round L + 2 times; x < 0: within gamma_{2L+2} s, and s < 1/2). Models are tiny (1x2x2
or 1x4x4 images, widths 2-4) and built under a drawn seed; the float64 run casts the same
float32 parameters (exactly).
"""
import itertools

import mpmath
import numpy
from hypothesis import strategies as st

from proofs.framework import DIGITS, statement
from proofs.mutation import mutant
from proofs.numerics import (ENGINE_DTYPES, engine, gamma, host, library_roundings, mp, reals,
                             underflow)

VAE = "minilean.models.vae"
VQ = "minilean.models.vqvae"
GAN = "minilean.models.gan"


# --- exact evaluation of a small network, and its rounding envelope ----------------------

def _affine_map(layer, in_shape):
    """(M, b, out_shape) of a Linear / Conv2d / ConvTranspose2d on inputs of ``in_shape``:
    M read off the layer by probing one-hot inputs without the bias (each output is then a
    single weight times 1, exact in float64)."""
    from minilean import nn
    from minilean.nn import functional as F
    weight = engine(host(layer.weight), numpy.float64)
    if isinstance(layer, nn.Linear):
        matrix = host(weight)
        out_shape = (matrix.shape[0],)
    else:
        size = int(numpy.prod(in_shape))
        basis = engine(numpy.eye(size).reshape((size,) + tuple(in_shape)), numpy.float64)
        convolve = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv_transpose2d
        probed = host(convolve(basis, weight, None, groups=layer.groups, **layer.options))
        out_shape = probed.shape[1:]
        matrix = probed.reshape(size, -1).T  # (in, out...) -> (out, in)
    # one bias per output channel, repeated over (H, W) (a Linear's out_shape has no more axes)
    bias = numpy.repeat(host(layer.bias), int(numpy.prod(out_shape[1:])))
    return matrix, bias, tuple(out_shape)


class Network:
    """A chain of stages: affine layers (by their exact matrices) and named activations."""

    def __init__(self, stages, in_shape):
        from minilean import nn
        self.stages = []
        shape = tuple(in_shape)
        for stage in stages:
            if isinstance(stage, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                matrix, bias, shape = _affine_map(stage, shape)
                self.stages.append(("affine", (matrix, bias)))
            elif isinstance(stage, nn.ReLU):
                self.stages.append(("relu", None))
            else:
                self.stages.append(stage)  # ("leaky", slope), ("tanh", None), ("sigmoid", None)

    def evaluate(self, inputs, input_error, dtype):
        """(exact outputs as mpf list, rounding bound per output) for exact ``inputs`` (a
        flat list of mpf) when the engine's input differs from them by ``input_error``."""
        values = numpy.asarray(list(inputs), dtype=object)
        error = numpy.broadcast_to(numpy.asarray(input_error, dtype=numpy.float64),
                                   values.shape).copy()
        for kind, payload in self.stages:
            magnitude = numpy.abs(values.astype(numpy.float64)) + error
            if kind == "affine":
                matrix, bias = payload
                roundings = gamma(numpy.count_nonzero(matrix, axis=1) + 1, dtype)
                values = matrix.astype(object) @ values + bias.astype(object)
                error = numpy.abs(matrix) @ error + roundings * (numpy.abs(matrix) @ magnitude
                                                                 + numpy.abs(bias))
            elif kind == "relu":
                values = numpy.asarray([max(v, 0) for v in values], dtype=object)
            elif kind == "leaky":
                values = numpy.asarray([v if v > 0 else payload * v for v in values], dtype=object)
                error = error + gamma(2, dtype) * magnitude
            elif kind == "tanh":
                values = numpy.asarray([mpmath.tanh(v) for v in values], dtype=object)
                error = error + gamma(library_roundings(dtype), dtype) * numpy.minimum(
                    magnitude, 1)
            elif kind == "sigmoid":
                values = numpy.asarray([(1 + mpmath.tanh(v / 2)) / 2 for v in values],
                                       dtype=object)
                error = error / 4 + gamma(library_roundings(dtype) + 2, dtype)
        return list(values), error


def _seeded(build, seed, dtype):
    """A tiny model built under ``seed`` (float32 parameters), cast to ``dtype``."""
    import minilean
    minilean.manual_seed(seed)
    return build().to(dtype=dtype)


# --- VAE ---------------------------------------------------------------------------------

VAE_IMAGE = (1, 2, 2)
VAE_LATENT = 2


def _vae_example():
    pixels = int(numpy.prod(VAE_IMAGE))
    return {"images": st.lists(reals(0, 1), min_size=2 * pixels, max_size=2 * pixels).map(
                lambda v: numpy.asarray(v).reshape((2,) + VAE_IMAGE)),
            "eps": st.lists(reals(-3, 3), min_size=2 * VAE_LATENT, max_size=2 * VAE_LATENT).map(
                lambda v: numpy.asarray(v).reshape(2, VAE_LATENT)),
            "seed": st.integers(0, 2 ** 16)}


def _vae(seed, dtype):
    from minilean.models import vae
    return _seeded(lambda: vae.VAE(VAE_IMAGE, "mlp", hidden=3, latent=VAE_LATENT), seed, dtype)


def _sampled_latent(check, model, images, eps, dtype):
    """Engine (mu, logvar, z) of the loss's own wiring, z checked bit for bit against
    reparameterize_diag(encoder mean, encoder logvar, eps)."""
    from minilean.models import vae
    x, noise = engine(images, dtype), engine(eps, dtype)
    mu, logvar = model.encode(x)
    _, z = vae.draw_terms(model, x, mu, logvar, noise)
    check.close(host(z), mp(host(vae.reparameterize_diag(mu, logvar, noise))), 0,
                f"draw_terms latent = reparameterize_diag ({dtype.__name__})")
    return mu, logvar, z


@statement("sampleLatent_eq_reparameterize",
           about=(f"{VAE}.VAE:encode", f"{VAE}.draw_terms", f"{VAE}.reparameterize_diag"),
           given=_vae_example(), max_examples=8)
def sample_latent(check, images, eps, seed):
    """sampleLatent(x, eps) = reparameterizeDiag(encoder.mean x, encoder.logvar x, eps): the
    latent the VAE loss decodes is mu(x) + exp(logvar(x) / 2) eps, with (mu, logvar) the two
    halves of the encoder MLP's output (mpmath: the MLP evaluated exactly)."""
    for dtype in ENGINE_DTYPES:
        model = _vae(seed, dtype)
        encoder = Network(list(model.encoder), (int(numpy.prod(VAE_IMAGE)),))
        mu, logvar, z = _sampled_latent(check, model, images, eps, dtype)
        for row in range(len(images)):
            exact, error = encoder.evaluate(mp(images[row]), 0, dtype)
            check.close(host(mu)[row], exact[:VAE_LATENT], error[:VAE_LATENT],
                        f"encoder mean ({dtype.__name__})")
            check.close(host(logvar)[row], exact[VAE_LATENT:], error[VAE_LATENT:],
                        f"encoder logvar ({dtype.__name__})")
            # z = mu + e^(l/2) eps: the encoder's errors (d_mu, d_l) move it by at most
            # d_mu + e^(l/2) |eps| (e^(d_l/2) - 1), and it rounds L + 2 times (exp L, *, +)
            rounding = gamma(library_roundings(dtype) + 2, dtype)
            for j, noise in enumerate(mp(eps[row])):
                mean, log_variance = exact[j], exact[VAE_LATENT + j]
                scale = mpmath.exp(log_variance / 2) * abs(noise)
                bound = (error[j] + scale * mpmath.expm1(error[VAE_LATENT + j] / 2)
                         + rounding * (abs(mean) + scale) * mpmath.exp(
                             error[VAE_LATENT + j] / 2) + rounding * error[j])
                check.close(host(z)[row, j], mean + mpmath.exp(log_variance / 2) * noise,
                            bound, f"latent ({dtype.__name__})")


@statement("forward_eq_decoder_sampleLatent",
           about=(f"{VAE}.VAE:decode", f"{VAE}.draw_terms", f"{VAE}.vae_loss"),
           given={**_vae_example(), "beta": reals(0, 4)}, max_examples=8)
def vae_forward(check, images, eps, seed, beta):
    """forward(x, eps) = decoder(sampleLatent(x, eps)): the loss's log-likelihood is that of
    the decoder's (mean, log-scale) at the sampled latent (bit for bit), the decoder outputs
    are the decoder MLP at z (mpmath, log-scale clamped at MIN_LOG_SCALE), and vae_loss is
    beta_negative_elbo(-mean log-likelihood, KL_sum, beta) of those terms for the drawn beta
    (bit for bit)."""
    from minilean.models import vae
    for dtype in ENGINE_DTYPES:
        model = _vae(seed, dtype)
        decoder = Network(list(model.decoder), (VAE_LATENT,))
        x, noise = engine(images, dtype), engine(eps, dtype)
        mu, logvar, z = _sampled_latent(check, model, images, eps, dtype)
        log_likelihood, _ = vae.draw_terms(model, x, mu, logvar, noise)
        mean, log_scale = model.decode(z)
        by_hand = vae.flat_sum(vae.discretized_logistic_log_likelihood(x, mean, log_scale))
        check.close(host(log_likelihood), mp(host(by_hand)), 0,
                    f"log-likelihood of decoder(z) ({dtype.__name__})")
        pixels = int(numpy.prod(VAE_IMAGE))
        for row in range(len(images)):
            exact, error = decoder.evaluate(mp(host(z)[row]), 0, dtype)
            check.close(host(mean)[row], exact[:pixels], error[:pixels],
                        f"decoder mean ({dtype.__name__})")
            clamped = [max(v, mpmath.mpf(vae.MIN_LOG_SCALE)) for v in exact[pixels:]]
            check.close(host(log_scale)[row], clamped, error[pixels:],
                        f"decoder log-scale ({dtype.__name__})")
        kl = vae.diagonal_gaussian_kl_to_standard_sum(mu.flatten(1), logvar.flatten(1))
        loss = vae.vae_loss(model, x, beta, noise)
        check.close(host(loss), mp(host(vae.beta_negative_elbo(-log_likelihood.mean(), kl, beta))),
                    0, f"vae_loss = beta-negative ELBO of the terms, beta = {beta} "
                    f"({dtype.__name__})")


# --- VQ-VAE --------------------------------------------------------------------------------

VQ_IMAGE = (1, 4, 4)


def _vqvae(seed, dtype):
    from minilean.models import vqvae
    return _seeded(lambda: vqvae.VQVAE(VQ_IMAGE, codes=3, code_dim=2, hidden=2), seed, dtype)


@statement("forward_eq_decoder_codebook",
           about=(f"{VQ}.VQVAE:forward", f"{VQ}.straight_through", f"{VQ}.quantize"),
           given={"images": st.lists(reals(0, 1), min_size=16, max_size=16).map(
               lambda v: numpy.asarray(v).reshape((1,) + VQ_IMAGE)),
               "seed": st.integers(0, 2 ** 16), "spread": reals(0.5, 4)}, max_examples=8)
def vq_forward(check, images, seed, spread):
    """forward(x) = decoder(codebook[idx]): the reconstruction is the decoder (then sigmoid)
    at the chosen codes e = e_idx. The straight-through input z + (e - z) equals e over the
    reals but in floating point only within gamma_2 (|e| + |e - z|) elementwise
    (two roundings: e - z, then z + that; exact when z and e are within a factor 2 of each
    other, by Sterbenz), and that difference is carried through the decoder."""
    from minilean.models import vqvae
    for dtype in ENGINE_DTYPES:
        model = _vqvae(seed, dtype)
        # codes spread out so that different encodings pick different codes
        model.codebook.data = model.codebook.data * dtype(spread * 3)
        reconstruction, encoded, quantized, indices = model(engine(images, dtype))
        e, z = host(quantized), host(encoded)
        check.close(e, mp(host(model.codebook)[host(indices).astype(int)]), 0,
                    f"e = codebook[idx] ({dtype.__name__})")
        passed = host(vqvae.straight_through(encoded, quantized))
        rounding = gamma(2, dtype) * (numpy.abs(e) + numpy.abs(e - z))
        check.close(passed, mp(e), rounding, f"straight-through value ({dtype.__name__})")
        # decoder input layout: (N, h, w, D) -> (N, D, h, w)
        code_grid = e[0].transpose(2, 0, 1)
        decoder = Network(list(model.decoder) + [("sigmoid", None)], code_grid.shape)
        exact, error = decoder.evaluate(mp(code_grid), rounding[0].transpose(2, 0, 1).reshape(-1),
                                        dtype)
        check.close(host(reconstruction)[0], exact, error, f"decoder(e) ({dtype.__name__})")


# --- LSGAN ---------------------------------------------------------------------------------

GAN_LATENT, GAN_DATA = 2, (2,)
# the discriminator's leaky-ReLU slope 0.2, exactly: at the working precision, since at import
# mpmath works at 15 digits, where 1 / 5 rounds to float64's 0.2 (the engine's own rounding,
# which the leaky stage's bound counts)
with mpmath.workdps(DIGITS):
    SLOPE = mpmath.mpf(1) / 5


def _generator_network(generator):
    return Network(list(generator.net) + ([("tanh", None)] if generator.bounded else []),
                   (GAN_LATENT,))


def _gan_given():
    return {"z": st.lists(reals(-3, 3), min_size=3 * GAN_LATENT, max_size=3 * GAN_LATENT).map(
                lambda v: numpy.asarray(v).reshape(3, GAN_LATENT)),
            "seed": st.integers(0, 2 ** 16)}


# the generator for bounded (image) data, with its tanh, and for unbounded, every example
BOUNDED_AND_NOT = (True, False)


def _generator(seed, bounded, dtype):
    from minilean.models import gan
    return _seeded(lambda: gan.Generator(GAN_LATENT, GAN_DATA, hidden=4, bounded=bounded), seed,
                   dtype)


@statement("generate_eq_generator", about=(f"{GAN}.Generator:forward",), given=_gan_given(),
           max_examples=10)
def generate(check, z, seed):
    """generate(z) = G z: the Generator module's output is its MLP (Linear-ReLU-Linear-ReLU-
    Linear) at z, then tanh for bounded (image) data, evaluated exactly in mpmath (bounded and
    not, every example)."""
    for dtype, bounded in itertools.product(ENGINE_DTYPES, BOUNDED_AND_NOT):
        generator = _generator(seed, bounded, dtype)
        samples = host(generator(engine(z, dtype)))
        network = _generator_network(generator)
        for row in range(len(z)):
            exact, error = network.evaluate(mp(z[row]), 0, dtype)
            check.close(samples[row], exact, error, f"G(z), bounded {bounded} ({dtype.__name__})")


@statement("fakeScore_is_discriminator_after_generator",
           about=(f"{GAN}.Generator:forward", f"{GAN}.Discriminator:forward",
                  f"{GAN}.generator_loss"), given=_gan_given(), max_examples=10)
def fake_score(check, z, seed):
    """fakeScore(z) = D(G z): the discriminator's score of the generator's samples (as the
    LSGAN losses take it) is the leaky-ReLU MLP D at the MLP G(z) (bounded and not, every
    example), composed exactly in mpmath; the generator loss is mse(D(G z), 1) of those
    scores, bit for bit."""
    from minilean.models import gan
    for dtype, bounded in itertools.product(ENGINE_DTYPES, BOUNDED_AND_NOT):
        generator = _generator(seed, bounded, dtype)
        discriminator = _seeded(lambda: gan.Discriminator(GAN_DATA, hidden=4), seed + 1, dtype)
        critic = Network([discriminator.hidden1, ("leaky", SLOPE),
                          discriminator.hidden2, ("leaky", SLOPE), discriminator.score],
                         GAN_DATA)
        scores = discriminator(generator(engine(z, dtype)))
        for row in range(len(z)):
            sample, sample_error = _generator_network(generator).evaluate(mp(z[row]), 0, dtype)
            exact, error = critic.evaluate(sample, sample_error, dtype)
            check.close(host(scores)[row], exact, error,
                        f"D(G(z)), bounded {bounded} ({dtype.__name__})")
        check.close(host(gan.generator_loss(scores)),
                    mp(host(gan.mse_to_target(scores, gan.REAL_TARGET))), 0,
                    f"generator loss of the fake scores ({dtype.__name__})")


# --- mutants -------------------------------------------------------------------------------

@mutant("VAE loss decodes the mean, not a sample", f"{VAE}.draw_terms",
        caught_by=["sampleLatent_eq_reparameterize", "forward_eq_decoder_sampleLatent"])
def decodes_the_mean(original):
    """draw_terms decodes z = mu (no reparameterised noise)."""
    return lambda model, images, mu, logvar, eps: original(model, images, mu, logvar, eps * 0)


@mutant("VAE loss ignores beta", f"{VAE}.vae_loss", caught_by=["forward_eq_decoder_sampleLatent"])
def vae_loss_ignores_beta(original):
    """vae_loss trains the plain negative ELBO (beta = 1) whatever beta it is given."""
    return lambda model, images, beta, eps=None: original(model, images, 1.0, eps)


@mutant("VAE encoder halves swapped", f"{VAE}.VAE.encode",
        caught_by=["sampleLatent_eq_reparameterize"])
def encoder_halves_swapped(original):
    """VAE.encode returns (logvar, mu)."""
    def broken(self, images):
        mu, logvar = original(self, images)
        return logvar, mu
    return broken


@mutant("VAE encoder's log-variance halved", f"{VAE}.VAE.encode",
        caught_by=["sampleLatent_eq_reparameterize"])
def encoder_log_std(original):
    """VAE.encode returns log sigma = logvar / 2 where reparameterize_diag and the KL take the
    log-variance (the log-std and log-variance conventions mixed): every posterior width is
    the square root of the encoder's. Off by |logvar| / 2, under 1 for this small encoder."""
    def broken(self, images):
        mu, logvar = original(self, images)
        return mu, logvar / 2
    return broken


def _log_likelihood_at(model, images, z, swapped=False):
    """draw_terms' log p(x|z) per image; with ``swapped``, the decoder's (mean, log_scale)
    passed to the likelihood in each other's place."""
    from minilean.models import vae
    outputs = model.decode(z)
    mean, log_scale = reversed(outputs) if swapped else outputs
    return vae.flat_sum(vae.discretized_logistic_log_likelihood(images, mean, log_scale))


@mutant("VAE latent written out in draw_terms", f"{VAE}.draw_terms",
        caught_by=["sampleLatent_eq_reparameterize", "forward_eq_decoder_sampleLatent"])
def latent_written_out(original):
    """draw_terms forms z = mu + sqrt(e^logvar) eps itself instead of calling
    reparameterize_diag: the same z over the reals, off by a rounding or two in floating
    point, and a second copy of the formula to drift (only the bit-for-bit check sees it)."""
    def broken(model, images, mu, logvar, eps):
        z = mu + logvar.exp().sqrt() * eps
        return _log_likelihood_at(model, images, z), z
    return broken


@mutant("VAE likelihood with the decoder's outputs swapped", f"{VAE}.draw_terms",
        caught_by=["forward_eq_decoder_sampleLatent"])
def likelihood_outputs_swapped(original):
    """draw_terms scores the images under discretized_logistic_log_likelihood(x, log_scale,
    mean): the decoder's two outputs passed in each other's place."""
    from minilean.models import vae

    def broken(model, images, mu, logvar, eps):
        z = vae.reparameterize_diag(mu, logvar, eps)
        return _log_likelihood_at(model, images, z, swapped=True), z
    return broken


@mutant("VAE log-scale clamped from above", f"{VAE}.VAE.decode",
        caught_by=["forward_eq_decoder_sampleLatent"])
def log_scale_clamped_from_above(original):
    """VAE.decode clamps the log-scale with max=MIN_LOG_SCALE instead of min=: every pixel's
    logistic gets the narrowest scale e^-7, whatever the decoder says."""
    from minilean.models import vae

    def broken(self, latent):
        outputs = self.run_decoder(latent)
        return outputs[:, 0], outputs[:, 1].clamp(max=vae.MIN_LOG_SCALE)
    return broken


@mutant("VAE decoder mean clamped to [0, 1]", f"{VAE}.VAE.decode",
        caught_by=["forward_eq_decoder_sampleLatent"])
def mean_clamped(original):
    """VAE.decode clamps the mean to the pixel range, as sample_prior does for the images it
    shows: a mean outside [0, 1] then gets no gradient."""
    def broken(self, latent):
        mean, log_scale = original(self, latent)
        return mean.clamp(0.0, 1.0), log_scale
    return broken


@mutant("straight-through passes the encoding", f"{VQ}.straight_through",
        caught_by=["forward_eq_decoder_codebook"])
def straight_through_encoding(original):
    """straight_through returns z_e (the decoder never sees the code)."""
    return lambda encoded, quantized: encoded + 0 * quantized.detach()


@mutant("VQ-VAE decoding the encoding", f"{VQ}.VQVAE.forward",
        caught_by=["forward_eq_decoder_codebook"])
def vq_decodes_the_encoding(original):
    """VQVAE.forward decodes z_e itself, not the straight-through code: the reconstruction
    never depends on the codebook (straight_through itself is right)."""
    def broken(self, images):
        _, encoded, quantized, indices = original(self, images)
        return self.decode(encoded), encoded, quantized, indices
    return broken


@mutant("generator without its tanh", f"{GAN}.Generator.forward",
        caught_by=["generate_eq_generator", "fakeScore_is_discriminator_after_generator"])
def generator_without_tanh(original):
    """Generator.forward skips the tanh of bounded data."""
    def broken(self, z):
        return self.net(z).reshape((z.shape[0],) + self.data_shape)  # (N, P) -> (N, *shape)
    return broken


@mutant("generator with a tanh on unbounded data", f"{GAN}.Generator.forward",
        caught_by=["generate_eq_generator", "fakeScore_is_discriminator_after_generator"])
def generator_always_tanh(original):
    """Generator.forward squashes every output with tanh, bounded=False too: points beyond
    [-1, 1] (the 2-D toy data) can never be generated."""
    def broken(self, z):
        return self.net(z).reshape((z.shape[0],) + self.data_shape).tanh()  # (N, P) -> (N, *shape)
    return broken


@mutant("discriminator with plain ReLU", f"{GAN}.Discriminator.forward",
        caught_by=["fakeScore_is_discriminator_after_generator"])
def discriminator_plain_relu(original):
    """Discriminator.forward uses ReLU instead of leaky ReLU (slope 0 for negatives)."""
    def broken(self, x):
        h = self.hidden2(self.hidden1(x.flatten(1)).relu()).relu()
        return self.score(h).reshape(x.shape[0])  # (N, 1) -> (N,)
    return broken


# --- autoencoder ----------------------------------------------------------------------------

AE_IMAGE = (1, 2, 2)


@statement("autoencoder_loss_eq_mse_of_reconstruction",
           about=("minilean.models.autoencoder.reconstruction_loss",
                  "minilean.models.autoencoder.Autoencoder:forward"),
           given={"images": st.integers(1, 3).flatmap(lambda n: st.lists(
               reals(0, 1), min_size=n * 4, max_size=n * 4).map(
               lambda v: numpy.asarray(v).reshape((-1,) + AE_IMAGE))),
               "seed": st.integers(0, 2 ** 16)}, max_examples=10)
def autoencoder_loss(check, images, seed):
    """reconstruction_loss(model, x) = (1 / (N C H W)) sum over every pixel of every image of
    (model(x) - x)^2: one mean over the batch and the pixels (the autoencoder's training loss),
    against mpmath on the engine's own reconstruction, within gamma_{k+3} of the sum (the
    difference, the square, k - 1 additions, the division; k = N C H W)."""
    from minilean.models import autoencoder
    for dtype in ENGINE_DTYPES:
        model = _seeded(lambda: autoencoder.Autoencoder(AE_IMAGE, "mlp", hidden=3, latent=2),
                        seed, dtype)
        x = engine(images, dtype)
        output = mp(host(model(x)))
        squares = [(o - v) ** 2 for o, v in zip(output, mp(images))]
        k = len(squares)
        loss = float(host(autoencoder.reconstruction_loss(model, x)))
        check.close(loss, mpmath.fsum(squares) / k, gamma(k + 3, dtype) * mpmath.fsum(squares) / k
                    + underflow(k + 3, dtype), f"loss ({dtype.__name__})")


@mutant("autoencoder loss summed over the pixels",
        "minilean.models.autoencoder.reconstruction_loss",
        caught_by=["autoencoder_loss_eq_mse_of_reconstruction"])
def autoencoder_loss_summed(original):
    """reconstruction_loss = per-image sum of squared errors, averaged over the batch (a
    "sum over pixels" loss 4 times the mean here)."""
    def broken(model, images):
        difference = model(images) - images
        return (difference * difference).flatten(1).sum(1).mean()
    return broken
