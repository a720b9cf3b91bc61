"""VQ-VAE: nearest codes by brute force, the three loss terms, the straight-through gradients
(TorchLean's ``trainingGradients``), EMA codebook and dead-code restarts, a few training steps."""
import re
import tracemalloc

import numpy
import pytest

import minilean
from minilean import optim
from minilean.autograd.gradcheck import gradcheck
from minilean.models import vqvae


def t64(values, requires_grad=False):
    return minilean.tensor(numpy.asarray(values, numpy.float64), dtype=numpy.float64,
                           requires_grad=requires_grad)


def test_squared_l2_and_nearest_code_against_brute_force():
    rng = numpy.random.default_rng(0)
    z, book = rng.normal(size=(2, 5, 3)), rng.normal(size=(7, 3))
    numpy.testing.assert_allclose(vqvae.squared_l2(t64(z[0, 0]), t64(book[2])).item(),
                                  ((z[0, 0] - book[2]) ** 2).sum())
    expected = ((z[:, :, None, :] - book) ** 2).sum(-1).argmin(-1)
    numpy.testing.assert_array_equal(vqvae.nearest_code(t64(z), t64(book)).numpy(), expected)


def test_nearest_code_compares_in_passes_of_bounded_size(monkeypatch):
    """The differences to every code are taken a few encodings at a time: 2048 encodings of
    width 64 against 512 codes at once would hold 256 MiB (and about 8 GiB to evaluate 500
    64x64 images). Passes that end mid-array give each encoding its nearest code; ties
    go to the first code; no encodings give no indices, of their shape."""
    rng = numpy.random.default_rng(4)
    z = minilean.tensor(rng.normal(size=(8, 16, 16, 64)).astype(numpy.float32))
    book = minilean.tensor(rng.normal(size=(512, 64)).astype(numpy.float32))
    tracemalloc.start()
    try:
        indices = vqvae.nearest_code(z, book)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2 ** 20, f"{peak / 2 ** 20:.0f} MiB at once"
    assert indices.shape == (8, 16, 16)
    for n in range(0, 8, 3):  # the brute force, one image at a time
        brute = ((z.numpy()[n, :, :, None, :] - book.numpy()) ** 2).sum(-1).argmin(-1)
        numpy.testing.assert_array_equal(indices.numpy()[n], brute)
    small = rng.normal(size=(7, 3, 2))
    tied = numpy.concatenate([small[0, :1], small[0, :1], rng.normal(size=(3, 2))])
    monkeypatch.setattr(vqvae, "DISTANCE_ELEMENTS", 5 * 2 * 4)  # 4 rows a pass, the last 1
    expected = ((small[..., None, :] - tied) ** 2).sum(-1).argmin(-1)
    assert expected[0, 0] == 0  # the encoding equal to codes 0 and 1 takes the first
    numpy.testing.assert_array_equal(vqvae.nearest_code(t64(small), t64(tied)).numpy(),
                                     expected)
    assert vqvae.nearest_code(t64(numpy.zeros((0, 4, 2))), t64(tied)).shape == (0, 4)


def test_an_encoding_equal_to_a_code_selects_it_at_distance_zero():
    book = t64([[0.0, 0.0], [1.0, -0.5], [2.0, 2.0]])
    index = vqvae.nearest_code(t64([[1.0, -0.5]]), book).numpy()
    assert index.tolist() == [1]
    assert vqvae.squared_l2(vqvae.quantize(book, index)[0], t64([1.0, -0.5])).item() == 0.0


def test_loss_terms_and_straight_through_gradients():
    # identity encoder and decoder: TorchLean's trainingGradients with n coordinates
    x = t64([[1.0, -0.5]])
    encoded = t64([[0.8, -0.1]], requires_grad=True)
    book = t64([[0.0, 0.0], [1.0, 0.0], [3.0, 3.0]], requires_grad=True)
    beta, n = 0.25, 2
    quantized = vqvae.quantize(book, vqvae.nearest_code(encoded, book))
    reconstruction = vqvae.straight_through(encoded, quantized)
    loss = vqvae.vqvae_loss(x, reconstruction, encoded, quantized, beta)
    z, e = encoded.numpy(), numpy.array([[1.0, 0.0]])
    assert loss.reconstruction.item() == pytest.approx(((e - x.numpy()) ** 2).mean())
    assert loss.codebook.item() == pytest.approx(((e - z) ** 2).mean())
    assert loss.commitment.item() == loss.codebook.item()
    assert loss.total.item() == pytest.approx(
        loss.reconstruction.item() + loss.codebook.item() + beta * loss.commitment.item())
    loss.total.backward()
    reconstruction_grad = 2 / n * (e - x.numpy())  # d recon / d decoder input, copied onto z_e
    numpy.testing.assert_allclose(encoded.grad.numpy(),
                                  reconstruction_grad + beta * 2 / n * (z - e))
    numpy.testing.assert_allclose(book.grad.numpy()[1], (2 / n * (e - z))[0])
    assert not book.grad.numpy()[[0, 2]].any()  # codes nobody chose get nothing


def tiny_model(ema=False):
    minilean.manual_seed(0)
    return vqvae.VQVAE((1, 8, 8), codes=4, code_dim=2, hidden=2, ema=ema)


def test_whole_loss_gradcheck_float64():
    """The straight-through loss is, by design, not the derivative of its own forward value
    (the argmin and the stop-gradients). It IS the derivative of the surrogate in which the
    stopped quantities are constants; gradcheck that surrogate, and the loss's autograd
    against the surrogate's."""
    model = tiny_model().to(dtype=numpy.float64)
    images = t64(numpy.random.default_rng(1).random((2, 1, 8, 8)))
    with minilean.no_grad():
        _, frozen_encoded, frozen_quantized, indices = model(images)
    frozen_shift = frozen_quantized - frozen_encoded

    def surrogate(*_):
        encoded_now = model.encode(images)
        quantized_now = vqvae.quantize(model.codebook, indices)
        reconstruction = model.decode(encoded_now + frozen_shift)
        return vqvae.weighted_three_term(
            vqvae.F.mse_loss(reconstruction, images),
            vqvae.F.mse_loss(quantized_now, frozen_encoded),
            vqvae.F.mse_loss(encoded_now, frozen_quantized), 0.25)

    params = list(model.parameters())
    assert gradcheck(surrogate, params, atol=1e-6)
    model.zero_grad()
    reconstruction, encoded, quantized, _ = model(images)
    vqvae.vqvae_loss(images, reconstruction, encoded, quantized, 0.25).total.backward()
    engine = [p.grad.numpy().copy() for p in params]
    model.zero_grad()
    surrogate().backward()
    for got, expected in zip(engine, (p.grad.numpy() for p in params)):
        numpy.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)



@pytest.mark.parametrize("ema", [False, True])
def test_training_step_agrees_with_torch(rng, ema):
    """The class docstring in PyTorch, float64: conv encoder, nearest codes (by torch.cdist),
    the straight-through decoder input, sigmoid, and reconstruction + codebook + beta *
    commitment with their stop-gradients; loss, reconstruction and every parameter's gradient
    (with ``ema=True`` the codebook is a buffer and gets none). With ``ema=True``, three
    ``ema_update`` calls then follow van den Oord et al.'s appendix as Sonnet's
    VectorQuantizerEMA writes it (counts and sums decayed, Laplace-smoothed counts)."""
    torch = pytest.importorskip("torch")
    from torch.nn import functional as TF
    from torch_twins import (assert_close, assert_same_loss_and_gradients, conv_decoder,
                             conv_encoder, copied_into_torch)

    image_shape, codes, dim, beta, decay = (2, 8, 4), 5, 3, 0.4, 0.9
    minilean.manual_seed(0)
    model = vqvae.VQVAE(image_shape, codes, dim, hidden=4, ema=ema, decay=decay)
    model.to(dtype=numpy.float64)
    for param in model.parameters():
        param.data[...] = 0.3 * rng.standard_normal(param.shape)
    images = rng.uniform(0, 1, (3,) + image_shape)
    # (3, 2, 1, 3) encodings -> (6, 3): each code near one of them, so that every code is used
    encodings = model.encode(t64(images)).numpy().reshape(-1, dim)
    model.codebook.data[...] = encodings[[0, 1, 2, 3, 5]] + 0.01
    if ema:
        model.cluster_sum.data[...] = model.codebook.data

    class TorchVQVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = conv_encoder(image_shape[0], 4, dim)
            self.decoder = conv_decoder(dim, 4, image_shape[0])
            codebook = torch.from_numpy(model.codebook.numpy().copy())
            if ema:
                self.register_buffer("codebook", codebook)
            else:
                self.codebook = torch.nn.Parameter(codebook)

        def loss(self, images):
            encoded = self.encoder(images).permute(0, 2, 3, 1)  # (N, D, h, w) -> (N, h, w, D)
            self.encoded = encoded.detach().reshape(-1, dim)
            self.indices = torch.cdist(self.encoded, self.codebook).argmin(1)
            quantized = self.codebook[self.indices].reshape(encoded.shape)
            decoder_input = encoded + (quantized - encoded).detach()
            self.reconstruction = self.decoder(decoder_input.permute(0, 3, 1, 2)).sigmoid()
            return (TF.mse_loss(self.reconstruction, images)
                    + TF.mse_loss(quantized, encoded.detach())
                    + beta * TF.mse_loss(encoded, quantized.detach()))

    twin = copied_into_torch(model, TorchVQVAE())
    outputs = []

    def minilean_loss():
        outputs[:] = model(t64(images))
        reconstruction, encoded, quantized, _ = outputs
        return vqvae.vqvae_loss(t64(images), reconstruction, encoded, quantized, beta).total

    assert_same_loss_and_gradients(model, twin, minilean_loss,
                                   lambda: twin.loss(torch.from_numpy(images)))
    reconstruction, encoded, _, indices = outputs
    assert sorted(set(indices.numpy().ravel().tolist())) == list(range(codes))
    numpy.testing.assert_array_equal(indices.numpy().reshape(-1), twin.indices.numpy())
    assert_close(reconstruction.numpy(), twin.reconstruction.detach().numpy(), 1e-12)
    if not ema:
        return
    counts, sums = torch.ones(codes, dtype=torch.float64), twin.codebook.clone()
    one_hot = TF.one_hot(twin.indices, codes).double()
    for _ in range(3):
        model.ema_update(encoded, indices)
        counts = decay * counts + (1 - decay) * one_hot.sum(0)
        sums = decay * sums + (1 - decay) * one_hot.T @ twin.encoded
        total = counts.sum()
        smoothed = (counts + 1e-5) / (total + codes * 1e-5) * total
        assert_close(model.codebook.numpy(), (sums / smoothed[:, None]).numpy(), 1e-12)



@pytest.mark.parametrize("ema", [False, True])
def test_a_forward_pass_changes_no_state_in_training_or_evaluation(ema):
    """The codebook, the EMA statistics and the code usage move only when training calls
    ``ema_update``, counts codes or restarts them: a held-out pass changes none of them."""
    model = tiny_model(ema)
    before = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    for training in (True, False):
        model.train(training)
        model(minilean.rand(2, 1, 8, 8))
    for name, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value.numpy(), before[name], err_msg=name)

def test_ema_update_moves_a_code_to_the_mean_of_its_encodings():
    model = tiny_model(ema=True)
    encoded = minilean.tensor(numpy.array([[[[1.0, 2.0], [3.0, 4.0]]]], numpy.float32))
    indices = minilean.tensor(numpy.array([[[0, 0]]]))
    model.decay = 0.0  # no memory: the code becomes exactly the mean of what chose it
    model.ema_update(encoded, indices)
    numpy.testing.assert_allclose(model.codebook.numpy()[0], [2.0, 3.0], rtol=1e-4)


def ema_reference(initial_codebook, steps, decay):
    """The EMA recursion of ``ema_update``'s docstring in float64, from the documented start
    (each code chosen once by an encoding equal to itself): per step
    n_k <- d n_k + (1 - d) count_k, s_k <- d s_k + (1 - d) sum_{i -> k} z_i, and
    e_k = s_k / n~_k with the Laplace-smoothed n~_k = (n_k + 1e-5) / (n + K 1e-5) n, n = sum n_k."""
    book = numpy.asarray(initial_codebook, numpy.float64)
    codes = len(book)
    size, total_sum = numpy.ones(codes), book.copy()
    for vectors, indices in steps:
        one_hot = numpy.eye(codes)[indices]
        size = decay * size + (1 - decay) * one_hot.sum(0)
        total_sum = decay * total_sum + (1 - decay) * one_hot.T @ vectors
        n = size.sum()
        book = total_sum / ((size + 1e-5) / (n + codes * 1e-5) * n)[:, None]
    return book


def ema_step(model, vectors, indices):
    """One ``ema_update`` with the vectors (M, D) as encodings of shape (1, 1, M, D)."""
    encoded = minilean.tensor(numpy.asarray(vectors, numpy.float32)[None, None])
    model.ema_update(encoded, minilean.tensor(numpy.asarray(indices)[None, None]))


def test_ema_codebook_follows_the_documented_recursion_with_decay():
    """decay 0.9 over three updates: codes 0 and 2 chosen, codes 1 and 3 never. The used codes
    are the float64 recursion's running means; an unused code decays toward its own value, so
    it stays where it started (to the Laplace smoothing's ~1e-5)."""
    model = tiny_model(ema=True)
    model.decay = 0.9
    initial = model.codebook.numpy().astype(numpy.float64)
    rng = numpy.random.default_rng(3)
    steps = [(rng.normal(size=(5, 2)), numpy.array([0, 2, 2, 0, 0])),
             (rng.normal(size=(3, 2)), numpy.array([2, 2, 2])),
             (rng.normal(size=(4, 2)), numpy.array([0, 0, 2, 0]))]
    for vectors, indices in steps:
        ema_step(model, vectors, indices)
    expected = ema_reference(initial, steps, 0.9)
    numpy.testing.assert_allclose(model.codebook.numpy(), expected, rtol=1e-5, atol=1e-7)
    numpy.testing.assert_allclose(model.codebook.numpy()[[1, 3]], initial[[1, 3]], rtol=1e-4)
    # the used codes really moved away from where they started
    assert numpy.abs(expected[[0, 2]] - initial[[0, 2]]).min() > 1e-2


def test_a_restarted_ema_code_nobody_chooses_stays_at_its_encoding():
    """A restart makes code 1 as if chosen once by the encoding it restarted on (n_1 = 1,
    s_1 = that encoding), so an update in which nothing picks it keeps it there."""
    model = tiny_model(ema=True)
    model.decay = 0.9
    initial = model.codebook.numpy().astype(numpy.float64)
    restart_on = numpy.array([0.7, -0.4])
    encoded = minilean.tensor(numpy.tile(restart_on.astype(numpy.float32), (1, 2, 2, 1)))
    assert model.restart_dead_codes(encoded, numpy.array([3, 0, 1, 2]), threshold=1) == 1
    numpy.testing.assert_allclose(model.codebook.numpy()[1], restart_on, rtol=1e-6)
    vectors, indices = numpy.array([[0.2, 0.1], [-0.3, 0.5], [0.1, 0.1]]), numpy.array([0, 3, 0])
    ema_step(model, vectors, indices)
    restarted = initial.copy()
    restarted[1] = restart_on
    expected = ema_reference(restarted, [(vectors, indices)], 0.9)
    numpy.testing.assert_allclose(model.codebook.numpy(), expected, rtol=1e-5, atol=1e-7)
    numpy.testing.assert_allclose(model.codebook.numpy()[1], restart_on, rtol=1e-4)


def test_all_dead_codes_restart_on_encodings_of_a_small_batch():
    """64 dead codes and only two encodings: every code lands on one of them, the last one
    included (the picks range over all rows), with EMA statistics of one use."""
    minilean.manual_seed(0)
    model = vqvae.VQVAE((1, 8, 8), codes=64, code_dim=2, hidden=2, ema=True)
    rows = numpy.array([[1.5, -2.0], [-0.5, 3.0]], numpy.float32)
    encoded = minilean.tensor(rows[None, None])  # (1, 1, 2, 2): two encodings
    assert model.restart_dead_codes(encoded, numpy.zeros(64), threshold=1) == 64
    book = model.codebook.numpy()
    is_row = (book[:, None, :] == rows[None]).all(-1)  # (64, 2)
    assert is_row.any(1).all()
    assert is_row.any(0).tolist() == [True, True]
    numpy.testing.assert_array_equal(model.cluster_sum.numpy(), book)
    numpy.testing.assert_array_equal(model.cluster_size.numpy(), 1.0)


def test_dead_codes_restart_on_encodings():
    model = tiny_model()
    encoded = minilean.tensor(numpy.full((1, 2, 2, 2), 5.0, numpy.float32))
    assert model.restart_dead_codes(encoded, numpy.array([3, 0, 1, 0]), threshold=1) == 2
    numpy.testing.assert_array_equal(model.codebook.numpy()[[1, 3]], 5.0)


def test_code_counts_count_every_code_used_or_not():
    indices = numpy.random.default_rng(0).integers(0, 5, size=(3, 4, 4))
    indices[indices == 2] = 4  # code 2 unused; the last code counted too
    counts = vqvae.code_counts(indices, 6)
    numpy.testing.assert_array_equal(counts, numpy.bincount(indices.reshape(-1), minlength=6))
    assert counts[2] == 0 and counts[5] == 0 and counts.sum() == indices.size


def test_code_one_hot_takes_the_memory_of_its_rows_not_of_a_k_by_k_identity():
    """The one-hot rows of a few indices among 4096 codes are 48 KiB; picked from eye(4096)
    they held 64 MiB at once (1 GiB and seconds a step at --codes 16384). Row i is 1 at its
    index alone, in the dtype asked for, whatever the indices' shape."""
    indices = numpy.array([[0, 4095, 17]])
    tracemalloc.start()
    try:
        one_hot = vqvae.code_one_hot(indices, 4096, numpy.float32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 20, f"{peak / 2 ** 20:.0f} MiB at once"
    assert one_hot.shape == (1, 3, 4096) and one_hot.dtype == numpy.float32
    numpy.testing.assert_array_equal(one_hot, numpy.eye(4096, dtype=numpy.float32)[indices])


def test_code_counts_count_in_passes_of_bounded_size(monkeypatch):
    """The comparison against every code is made a few rows at a time: N h w indices and K codes
    at once would take N h w K bytes (here 128 MB). Passes that end mid-array count every index
    once; no indices give K zeros; the counts are int64 whatever the indices' dtype."""
    indices = numpy.random.default_rng(1).integers(0, 64, size=2_000_000)
    tracemalloc.start()
    try:
        counts = vqvae.code_counts(indices, 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2 ** 20, f"{peak / 2 ** 20:.0f} MiB at once"
    numpy.testing.assert_array_equal(counts, numpy.bincount(indices, minlength=64))
    small = indices[:63].reshape(7, 3, 3)
    monkeypatch.setattr(vqvae, "COUNT_COMPARISONS", 64 * 4)  # 4 rows a pass, the last 3
    numpy.testing.assert_array_equal(vqvae.code_counts(small, 64),
                                     numpy.bincount(small.reshape(-1), minlength=64))
    for dtype in (numpy.int32, numpy.int64):
        assert vqvae.code_counts(small.astype(dtype), 64).dtype == numpy.int64
        empty = vqvae.code_counts(numpy.zeros((0, 4, 4), dtype), 3)
        assert empty.dtype == numpy.int64 and empty.tolist() == [0, 0, 0]


def test_code_statistics():
    assert vqvae.code_statistics([5, 5, 0, 0]) == (0.5, pytest.approx(2.0))
    # counts [3, 1, 0] -> p = (3/4, 1/4): perplexity = exp(-(3/4) ln(3/4) - (1/4) ln(1/4))
    # = (3/4)^(-3/4) (1/4)^(-1/4) = 4^(3/4) 4^(1/4) / 3^(3/4) = 4 / 3^(3/4) = 1.75476...,
    # between 1 and the 2 codes used (a count of codes used would say 2)
    assert vqvae.code_statistics([3, 1, 0]) == (pytest.approx(2 / 3),
                                                pytest.approx(4 / 3 ** 0.75, rel=1e-12))
    assert 4 / 3 ** 0.75 == pytest.approx(1.75476, abs=1e-5)


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    model = tiny_model()
    images = minilean.tensor(numpy.random.default_rng(2).random((4, 1, 8, 8)).astype(numpy.float32))

    def total():
        reconstruction, encoded, quantized, _ = model(images)
        return vqvae.vqvae_loss(images, reconstruction, encoded, quantized, 0.25).total

    before = total().item()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        total().backward()
        optimizer.step()
    assert total().item() < 0.8 * before


def test_image_sizes_the_network_cannot_give_back_are_named():
    """VQVAE((3, 15, 15)) reconstructed 12x12 images; images of another shape than the
    model's ran through its convolutions unchecked."""
    with pytest.raises(ValueError, match=r"multiples of 4, got image_shape \(3, 15, 15\)"):
        vqvae.VQVAE((3, 15, 15))
    model = vqvae.VQVAE((1, 8, 8), codes=4, code_dim=2, hidden=2)
    with pytest.raises(ValueError, match=r"images of shape \(N, 1, 8, 8\), got \(2, 1, 12, 12\)"):
        model(minilean.rand(2, 1, 12, 12))
    assert model(minilean.rand(2, 1, 8, 8))[0].shape == (2, 1, 8, 8)


def test_the_decoder_paints_each_latent_cell_where_the_encoder_read_it():
    """encode's (N, h, w, D) grid is decode's: a change of the top-right latent cell of a 4x4
    grid (16x16 images) moves pixels within the convolutions' reach of the top-right corner
    (rows < 11, columns >= 5) and none of the bottom-left ones. A decoder reading the grid
    transposed would paint it bottom-left. On a non-square image the grid keeps its shape."""
    minilean.manual_seed(5)
    model = vqvae.VQVAE((1, 16, 16), codes=4, code_dim=3, hidden=4).to(dtype=numpy.float64)
    vectors = numpy.random.default_rng(3).standard_normal((1, 4, 4, 3))
    changed = vectors.copy()
    changed[0, 0, 3] += 5.0
    with minilean.no_grad():
        moved = numpy.abs(model.decode(minilean.tensor(changed)).numpy()
                          - model.decode(minilean.tensor(vectors)).numpy())[0, 0]
    assert numpy.all(moved[11:, :5] == 0.0) and moved[:11, 5:].max() > 1e-6
    wide = vqvae.VQVAE((1, 8, 12), codes=4, code_dim=3, hidden=4)
    reconstruction, encoded, _, indices = wide(minilean.rand(2, 1, 8, 12))
    assert (reconstruction.shape, encoded.shape, indices.shape) == ((2, 1, 8, 12), (2, 2, 3, 3),
                                                                     (2, 2, 3))


def test_restarts_pick_among_all_encodings_whatever_their_shape():
    """Encodings (1, 1, 3, 2), not square: 64 dead codes land on all three of them, each code
    on one; with EMA its statistics become those of one use, however decayed they were."""
    minilean.manual_seed(0)
    model = vqvae.VQVAE((1, 8, 8), codes=64, code_dim=2, hidden=2, ema=True)
    model.decay = 0.5
    ema_step(model, [[9.0, 9.0]], [0])  # n_k: 0.5 for the codes not chosen, 1.5 for code 0
    rows = numpy.array([[1.5, -2.0], [-0.5, 3.0], [0.25, 0.75]], numpy.float32)
    assert model.restart_dead_codes(minilean.tensor(rows[None, None]), numpy.zeros(64),
                                    threshold=1) == 64
    book = model.codebook.numpy()
    is_row = (book[:, None, :] == rows[None]).all(-1)  # (64, 3)
    assert is_row.sum(1).tolist() == [1] * 64 and is_row.any(0).all()
    numpy.testing.assert_array_equal(model.cluster_sum.numpy(), book)
    numpy.testing.assert_array_equal(model.cluster_size.numpy(), 1.0)


def test_no_dead_codes_restart_nothing():
    model = tiny_model()
    before = model.codebook.numpy().copy()
    encoded = minilean.tensor(numpy.full((1, 2, 2, 2), 5.0, numpy.float32))
    assert model.restart_dead_codes(encoded, numpy.array([3, 1, 1, 2]), threshold=1) == 0
    numpy.testing.assert_array_equal(model.codebook.numpy(), before)


@pytest.mark.parametrize("width", [1, 4])
def test_a_codebook_of_another_width_than_the_encodings_is_refused(width):
    """A (K, 1) codebook was broadcast against encodings of width 5 and gave indices; a (K, 4)
    one failed in ``sub``, naming neither array."""
    encodings, book = minilean.rand(2, 3, 5), minilean.rand(7, width)
    with pytest.raises(ValueError, match=rf"^nearest_code needs a codebook \(K, 5\) for "
                                         rf"encodings of shape \(2, 3, 5\), got codebook "
                                         rf"shape \(7, {width}\)$"):
        vqvae.nearest_code(encodings, book)
    assert vqvae.nearest_code(encodings, minilean.rand(7, 5)).shape == (2, 3)


@pytest.mark.parametrize("size", ["codes", "code_dim", "hidden"])
def test_sizes_below_one_are_refused(size):
    """codes=0 failed with ZeroDivisionError in the codebook's init."""
    with pytest.raises(ValueError, match=f"^{size} must be an int >= 1, got 0$"):
        vqvae.VQVAE((1, 8, 8), **{size: 0})


@pytest.mark.parametrize("decay", [1.5, -0.1, float("nan")])
def test_an_ema_decay_outside_0_1_is_refused_as_the_optimizers_ema_refuses_it(decay):
    """decay 1.5 was taken: weights 1.5 and -0.5 make a code no average of encodings."""
    with pytest.raises(ValueError, match=rf"^EMA decay must be in \[0, 1\], got {decay}$"):
        vqvae.VQVAE((1, 8, 8), ema=True, decay=decay)
    with pytest.raises(ValueError, match=rf"^EMA decay must be in \[0, 1\], got {decay}$"):
        optim.EMA(tiny_model(), decay=decay)
    for edge in (0.0, 1.0):
        assert vqvae.VQVAE((1, 8, 8), codes=4, code_dim=2, hidden=2, ema=True,
                           decay=edge).decay == edge


def test_8_bit_images_are_refused_as_the_autoencoders_refuse_them():
    model = tiny_model()
    with pytest.raises(TypeError, match=r"^VQVAE takes float images in \[0, 1\], got uint8 "
                                        r"\(divide 8-bit pixels by 255\)$"):
        model(minilean.tensor(numpy.zeros((2, 1, 8, 8), numpy.uint8)))


def test_ema_update_without_an_ema_codebook_is_named():
    """It failed with "VQVAE has no attribute 'cluster_size'"."""
    model = tiny_model(ema=False)
    before = model.codebook.numpy().copy()
    with pytest.raises(ValueError, match=r"^ema_update needs a VQVAE built with ema=True"):
        ema_step(model, [[1.0, 2.0]], [0])
    numpy.testing.assert_array_equal(model.codebook.numpy(), before)


@pytest.mark.parametrize("usage", [numpy.zeros(3), numpy.zeros(5), numpy.zeros((4, 1))])
def test_usage_counts_of_another_shape_than_the_codebook_are_refused(usage):
    """Three counts for four codes restarted codes 0-2 and left code 3 alone, unchecked."""
    model = tiny_model()
    before = model.codebook.numpy().copy()
    encoded = minilean.tensor(numpy.full((1, 2, 2, 2), 5.0, numpy.float32))
    with pytest.raises(ValueError, match=rf"^restart_dead_codes needs usage of shape \(4,\), "
                                         rf"one count per code, got shape "
                                         rf"{re.escape(str(usage.shape))}$"):
        model.restart_dead_codes(encoded, usage, threshold=1)
    numpy.testing.assert_array_equal(model.codebook.numpy(), before)


@pytest.mark.parametrize("indices", [[0, 5, 1], [-1, 0, 2]])
def test_code_counts_refuse_indices_outside_the_codebook_on_the_host(indices):
    """Out of range indices were dropped from the counts without a word."""
    with pytest.raises(IndexError, match=r"^code_counts indices must be in \[0, 4\)"):
        vqvae.code_counts(numpy.array(indices), 4)


def test_an_unused_ema_code_keeps_its_value_only_while_its_count_is_above_the_smoothing():
    """The comment in VQVAE.__init__: n_k = d^t of a code nobody chooses meets the 1e-5
    Laplace smoothing after about log(1e-5) / log(d) updates (115 at d = 0.9), and the code
    then shrinks toward 0 by about n_k / (n_k + 1e-5): 0.9^100 = 2.7e-5 keeps 0.73 of it,
    0.9^200 = 7e-10 next to nothing."""
    model = tiny_model(ema=True)
    model.decay = 0.9
    initial = model.codebook.numpy().astype(numpy.float64)
    vectors, indices = numpy.array([[0.2, 0.1], [-0.3, 0.5]]), numpy.array([0, 2])
    kept = {}
    for step in range(1, 201):
        ema_step(model, vectors, indices)
        if step in (10, 100, 200):
            kept[step] = (numpy.linalg.norm(model.codebook.numpy()[[1, 3]], axis=1)
                          / numpy.linalg.norm(initial[[1, 3]], axis=1))
    numpy.testing.assert_allclose(kept[10], 1.0, rtol=1e-4)
    numpy.testing.assert_allclose(kept[100], 0.9 ** 100 / (0.9 ** 100 + 1e-5), rtol=1e-2)
    assert kept[200].max() < 1e-3
