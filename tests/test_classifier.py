"""The FD-classifier's Frechet distance between Gaussian fits, against SciPy's matrix root."""
import os
import tracemalloc

import numpy
import pytest


def test_frechet_distance_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    from minilean.models.classifier import frechet_distance, gaussian_fit
    rng = numpy.random.default_rng(0)
    (mean1, cov1), (mean2, cov2) = (gaussian_fit(rng.standard_normal((50, 4)) @ rng.random((4, 4)))
                                    for _ in range(2))
    cross = scipy_linalg.sqrtm(cov1 @ cov2).real
    expected = ((mean1 - mean2) ** 2).sum() + numpy.trace(cov1 + cov2 - 2 * cross)
    assert frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mean1, cov1, mean1, cov1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_singular_covariances_is_symmetric_and_0_on_itself():
    """Fewer images than features: rank-4 covariances of 32 features. The cross term once took
    square roots of rounding-sized eigenvalues, ~sqrt(u) of the traces: FD(a, a) came out
    -0.017 (traces 2.8e5) and FD(a, b) != FD(b, a) in the 9th digit."""
    from minilean.models.classifier import frechet_distance, gaussian_fit
    rng = numpy.random.default_rng(0)
    a, b = (gaussian_fit(rng.standard_normal((5, 32)) * 100) for _ in range(2))
    scale = numpy.trace(a[1]) + numpy.trace(b[1])
    assert abs(frechet_distance(*a, *a)) <= 1e-12 * scale
    assert frechet_distance(*a, *b) == pytest.approx(frechet_distance(*b, *a), rel=1e-13)


def test_frechet_distance_of_a_set_to_itself_is_never_below_0():
    """A squared distance: half of these came out a rounding below 0 (-2e-14; -1.3e-12 for
    the 500 held-out built-in images scored against themselves), and a NaN stays NaN."""
    from minilean.models.classifier import frechet_distance, gaussian_fit
    rng = numpy.random.default_rng(0)
    for rows, features in ((500, 32), (5, 32), (2, 4), (50, 4)):
        for _ in range(10):  # ReLU features, as the classifier's
            fit = gaussian_fit(numpy.maximum(rng.standard_normal((rows, features)), 0))
            assert 0.0 <= frechet_distance(*fit, *fit) <= 1e-12
    mean, cov = gaussian_fit(rng.standard_normal((5, 3)))
    assert numpy.isnan(frechet_distance(mean, cov, mean + numpy.nan, cov))


def test_training_loss_features_and_gradients_agree_with_torch(rng):
    """The class docstring in PyTorch, float64: conv 3x3 (C -> 16), stride-2 convs 16 -> 32 ->
    64, ReLU after each, the spatial mean, Linear(64 -> 32) + ReLU = the features, Linear(32 ->
    classes) = the logits; the cross-entropy training loss, the features and every parameter's
    gradient (on an odd-sized image, where the stride-2 convs round up)."""
    torch = pytest.importorskip("torch")
    from torch.nn import functional as TF
    from torch_twins import assert_close, assert_same_loss_and_gradients, copied_into_torch

    import minilean
    from minilean.models.classifier import FEATURES, FeatureClassifier
    from minilean.nn import functional as F

    class TorchClassifier(torch.nn.Module):
        def __init__(self, channels, classes):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(channels, 16, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.conv3 = torch.nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.hidden, self.head = torch.nn.Linear(64, FEATURES), torch.nn.Linear(FEATURES,
                                                                                   classes)

        def features(self, x):
            h = self.conv3(self.conv2(self.conv1(x).relu()).relu()).relu()
            return self.hidden(h.mean((2, 3))).relu()

    minilean.manual_seed(0)
    model = FeatureClassifier(3, 5).to(dtype=numpy.float64)
    twin = copied_into_torch(model, TorchClassifier(3, 5))
    images, labels = rng.uniform(-1, 1, (4, 3, 7, 5)), rng.integers(0, 5, 4)
    assert_same_loss_and_gradients(
        model, twin,
        lambda: F.cross_entropy(model(minilean.tensor(images)), minilean.tensor(labels)),
        lambda: TF.cross_entropy(twin.head(twin.features(torch.from_numpy(images))),
                                 torch.from_numpy(labels)))
    assert_close(model.features(minilean.tensor(images)).numpy(),
                 twin.features(torch.from_numpy(images)).detach().numpy(), 1e-12)



def test_the_cached_classifier_depends_on_the_labels(tmp_path):
    from minilean.data.arrays import Dataset
    from minilean.models.classifier import _cache_path
    images = numpy.zeros((6, 3, 4, 4), numpy.uint8)

    def path(labels):
        dataset = Dataset(images, numpy.array(labels, numpy.int64), (), "set")
        return _cache_path(str(tmp_path), dataset, seed=0, steps=10, lr=1e-3, batch_size=64)

    assert path([0, 1, 0, 1, 0, 1]) == path([0, 1, 0, 1, 0, 1])
    assert path([0, 1, 0, 1, 0, 1]) != path([1, 0, 1, 0, 1, 0])  # same classes, other labels
    assert path([0, 1, 0, 1, 0, 1]) != path([0, 1, 2, 0, 1, 2])  # another class count


def test_a_classifier_with_classes_the_labels_do_not_reach_is_another_cache_file(tmp_path):
    """The number of classes sizes the classifier's head, and the class names (a converted
    folder's manifest, the labels of rows --n-total leaves out) can add classes the labels
    do not reach: the same images and labels with 3 class names and with 2 had one cache
    file, and the second was refused for its head's shape ("remove it")."""
    from minilean.data.arrays import Dataset
    from minilean.models.classifier import CLASSIFIER_LR, _cache_path, trained_classifier
    images = numpy.random.default_rng(0).integers(0, 256, (8, 3, 8, 8), numpy.uint8)
    labels = numpy.arange(8) % 2

    def train(class_names):
        return trained_classifier(Dataset(images, labels, class_names, "x.npy"), "cpu",
                                  steps=1, cache=str(tmp_path), batch_size=2)

    named, unnamed = train(("a", "b", "c")), train(("0", "1"))
    assert named[1] != unnamed[1]
    assert (named[0].head.weight.shape, unnamed[0].head.weight.shape) == ((3, 32), (2, 32))
    # names that add no class change nothing: the file is the one of the labels alone
    assert unnamed[1] == _cache_path(str(tmp_path), Dataset(images, labels, (), "x.npy"),
                                     seed=0, steps=1, lr=CLASSIFIER_LR, batch_size=2)


def test_the_classifier_draws_its_data_order_from_a_stream_of_its_own(tmp_path, monkeypatch):
    """The classifier's Loader drew its epochs' order from the run's (seed, DATA_ORDER)
    streams, the model's: the same permutation of the same rows, against streams.py's "no two
    purposes share numbers"."""
    from minilean.data import loader
    from minilean.data.arrays import Dataset
    from minilean.data.streams import Purpose, stream
    from minilean.models.classifier import trained_classifier
    drawn = []

    def recording(seed, purpose, index=0, sub_index=0):
        drawn.append((purpose, index))
        return stream(seed, purpose, index, sub_index)

    monkeypatch.setattr(loader, "stream", recording)
    images = numpy.random.default_rng(0).integers(0, 256, (6, 3, 8, 8), numpy.uint8)
    trained_classifier(Dataset(images, numpy.arange(6) % 2, (), "x.npy"), "cpu", steps=4,
                       cache=str(tmp_path), batch_size=2)
    assert drawn == [(Purpose.FD_CLASSIFIER_ORDER, 0), (Purpose.FD_CLASSIFIER_ORDER, 1)]


@pytest.mark.parametrize("name", ["d" * 212 + ".npy", "\u6570\u636e" * 35 + ".npy"],
                         ids=["ascii", "cjk"])
def test_a_long_data_file_name_still_gives_a_cache_file_the_file_system_takes(tmp_path, name):
    """The cache's name held the whole --x file name: one of 210 bytes or more (70 CJK
    characters) made it longer than 255 bytes, and the classifier, trained after the whole run,
    failed to be saved with "File name too long" (on every resume too)."""
    from minilean.data.arrays import Dataset
    from minilean.data.paths import TEMPORARY_EXTRA_BYTES
    from minilean.models.classifier import trained_classifier
    rng = numpy.random.default_rng(0)
    images = rng.integers(0, 256, (8, 3, 16, 16), dtype=numpy.uint8)
    dataset = Dataset(images, numpy.arange(8, dtype=numpy.int64) % 2, (), name)
    assert len(name.encode()) <= 255
    _, path = trained_classifier(dataset, "cpu", steps=1, cache=str(tmp_path))
    assert os.path.isfile(path) and os.listdir(tmp_path) == [os.path.basename(path)]
    assert len(os.fsencode(os.path.basename(path))) + TEMPORARY_EXTRA_BYTES <= 255
    assert os.path.basename(path).startswith(f"classifier-{name[:20]}")
    assert trained_classifier(dataset, "cpu", steps=1, cache=str(tmp_path))[1] == path  # reused


def samples_file(tmp_path, kind):
    path = tmp_path / f"{kind}.npy"
    arrays = {"255": numpy.full((4, 3, 16, 16), 200.0, numpy.float32),
              "nan": numpy.full((4, 3, 16, 16), numpy.nan, numpy.float32),
              "int64": numpy.zeros((4, 3, 16, 16), numpy.int64),
              "bool": numpy.zeros((4, 3, 16, 16), bool),
              "complex128": numpy.zeros((4, 3, 16, 16), numpy.complex128)}
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "npz":
        numpy.savez(tmp_path / "archive.npz", numpy.zeros((4, 3, 16, 16), numpy.uint8))
        (tmp_path / "archive.npz").rename(path)
    else:
        numpy.save(path, arrays[kind])
    return str(path)


@pytest.mark.parametrize("kind, message", [
    ("255", r"expected float images in \[0, 1\], found values in \[200.0, 200.0\] \(from "
            r"row 0 on\)"),
    ("nan", r"expected float images in \[0, 1\], found nan at row 0"),
    ("int64", r"expected dtype uint8 in \[0, 255\] or float in \[0, 1\], found int64"),
    ("bool", r"expected dtype uint8 in \[0, 255\] or float in \[0, 1\], found bool"),
    ("complex128", r"expected dtype uint8 in \[0, 255\] or float in \[0, 1\], found complex128"),
    ("empty", r"the file is empty; expected a .npy array file \(numpy.save\)"),
    ("npz", r"the file is an .npz archive; expected a .npy array file \(numpy.save, not "
            r"numpy.savez\)"),
])
def test_samples_follow_the_rules_of_x(tmp_path, kind, message):
    from minilean.train.evaluate import load_samples
    with pytest.raises(ValueError, match=f"^--samples .*{kind}.npy: {message}$"):
        load_samples(samples_file(tmp_path, kind))


@pytest.mark.parametrize("shape", [(4, 16, 16, 3), (4,)])
def test_samples_that_are_not_nchw_are_refused_by_their_shape(tmp_path, shape):
    """NHWC samples were refused only later, as images of side 16x3."""
    from minilean.train.evaluate import load_samples
    numpy.save(tmp_path / "s.npy", numpy.zeros(shape, numpy.uint8))
    with pytest.raises(ValueError) as error:
        load_samples(str(tmp_path / "s.npy"))
    assert str(error.value) == (f"--samples {tmp_path / 's.npy'}: expected images (N, C, H, W) "
                                f"with C = 1 or 3, found shape {shape}")


def test_samples_in_range_come_back_as_float32_in_0_1(tmp_path):
    from minilean.train.evaluate import load_samples
    numpy.save(tmp_path / "u8.npy", numpy.full((2, 3, 16, 16), 255, numpy.uint8))
    numpy.save(tmp_path / "f64.npy", numpy.full((2, 3, 16, 16), 0.5))
    for name, value in (("u8", 1.0), ("f64", 0.5)):
        samples = load_samples(str(tmp_path / f"{name}.npy"))
        assert samples.dtype == numpy.float32 and numpy.all(samples == value)


def evaluate_config(tmp_path, samples, **flags):
    """The config of ``evaluate --samples=SAMPLES.npy`` (saved in ``tmp_path``) and ``flags``:
    the command's declared defaults under them, so a flag added to the command is there too."""
    from types import SimpleNamespace
    from minilean.cli import EVALUATE
    numpy.save(tmp_path / "samples.npy", samples)
    defaults = {name: flag.default for name, flag in EVALUATE.flags.items()}
    return SimpleNamespace(**{
        **defaults, "device": "cpu", "samples": str(tmp_path / "samples.npy"), "image_size": 32,
        "n_eval": 2, "classifier_steps": 1, "cache": str(tmp_path / "c"), **flags})


def test_samples_of_a_size_builtin_lacks_name_samples_not_image_size(tmp_path):
    from minilean.train.evaluate import run as evaluate_command
    config = evaluate_config(tmp_path, numpy.zeros((4, 3, 15, 15), numpy.uint8))
    with pytest.raises(ValueError, match=r"^--samples .*samples.npy: images are 15x15; the "
                                         r"built-in shapes they are compared with come square, "
                                         r"16 to 64 pixels"):
        evaluate_command(config)


def test_samples_of_another_image_shape_than_the_data_name_the_flag_and_the_data(tmp_path):
    """Grey samples against colour --x images: said in the flags' words before a classifier is
    trained (fd_classifier's own check says neither)."""
    from minilean.train import evaluate
    numpy.save(tmp_path / "x.npy", numpy.zeros((4, 3, 8, 8), numpy.uint8))
    numpy.save(tmp_path / "y.npy", numpy.arange(4))
    config = evaluate_config(tmp_path, numpy.zeros((4, 1, 8, 8), numpy.uint8),
                             x=str(tmp_path / "x.npy"), y=str(tmp_path / "y.npy"))
    with pytest.raises(ValueError, match=r"^--samples .*samples.npy: expected images of shape "
                                         r"\(3, 8, 8\), as --x .*x.npy holds, found \(1, 8, 8\)$"):
        evaluate.run(config)
    assert not (tmp_path / "c").exists()


def test_samples_scored_against_x_need_no_builtin_size(tmp_path, monkeypatch, capsys):
    """The built-in shapes' sizes bind only samples compared with them: 8x8 samples are scored
    against --x images of 8x8."""
    from minilean.train import evaluate
    images = numpy.zeros((4, 3, 8, 8), numpy.uint8)
    numpy.save(tmp_path / "x.npy", images)
    numpy.save(tmp_path / "y.npy", numpy.arange(4))
    scored = []
    monkeypatch.setattr(evaluate, "fd_classifier", lambda samples, dataset, *settings:
                        scored.append((samples.shape, dataset.image_shape)) or {"fd": 1.5})
    report = evaluate.run(evaluate_config(tmp_path, images, x=str(tmp_path / "x.npy"),
                                          y=str(tmp_path / "y.npy")))
    assert scored == [((2, 3, 8, 8), (3, 8, 8))]  # the first --n-eval 2, all it scores
    # the report, returned to a Python caller and printed as indented JSON
    assert report == {"fd": 1.5} and capsys.readouterr().out == '{\n  "fd": 1.5\n}\n'


def test_fd_classifier_refuses_what_it_cannot_score_before_training(tmp_path):
    """No labels to train on, samples of another shape, one sample (no covariance) or too few
    real rows for two reference sets: each is refused before a classifier is trained."""
    from minilean.data.arrays import Dataset
    from minilean.models.classifier import fd_classifier, reference_sets
    images = numpy.zeros((6, 3, 4, 4), numpy.uint8)
    labelled = Dataset(images, numpy.zeros(6, numpy.int64), (), "set")
    samples = numpy.zeros((4, 3, 4, 4), numpy.float32)
    cache = str(tmp_path / "classifiers")
    with pytest.raises(ValueError, match=r"^FD-classifier trains a classifier on labels; this "
                                         r"dataset has none \(give --y with --x\)$"):
        fd_classifier(samples, Dataset(images, None, (), "set"), "cpu", cache=cache)
    with pytest.raises(ValueError, match=r"^samples have shape \(3, 8, 8\), the dataset's "
                                         r"images \(3, 4, 4\)$"):
        fd_classifier(numpy.zeros((4, 3, 8, 8), numpy.float32), labelled, "cpu", cache=cache)
    with pytest.raises(ValueError, match="^FD-classifier needs at least 2 samples, got 1$"):
        fd_classifier(samples[:1], labelled, "cpu", cache=cache)
    with pytest.raises(ValueError, match=r"^FD-classifier needs 8 real images \(n=4 twice\), "
                                         r"the dataset has 6$"):
        reference_sets(labelled, 4, seed=0)
    assert not (tmp_path / "classifiers").exists()


def test_gaussian_fit_is_the_mean_and_unbiased_covariance():
    from minilean.models.classifier import gaussian_fit
    rows = numpy.random.default_rng(0).standard_normal((5, 3))
    mean, cov = gaussian_fit(rows)
    centred = rows - rows.sum(axis=0) / 5
    numpy.testing.assert_allclose(mean, rows.sum(axis=0) / 5, rtol=1e-12)
    numpy.testing.assert_allclose(cov, centred.T @ centred / (5 - 1), rtol=1e-12)


def test_the_cached_classifier_depends_on_the_images_and_the_lr(tmp_path):
    from minilean.data.arrays import Dataset
    from minilean.models.classifier import _cache_path
    labels = numpy.array([0, 1, 0, 1], numpy.int64)

    def path(images, lr=1e-3):
        return _cache_path(str(tmp_path), Dataset(images, labels, (), "set"), seed=0, steps=10,
                           lr=lr, batch_size=64)

    black, grey = numpy.zeros((4, 3, 4, 4), numpy.uint8), numpy.full((4, 3, 4, 4), 9, numpy.uint8)
    assert path(black) == path(black.copy())
    assert path(black) != path(grey)  # same shape and labels, other images
    assert path(black) != path(black, lr=2e-3)


def test_the_cached_classifier_depends_on_rows_past_the_first_256(tmp_path):
    """Editing the end of a data file reused the classifier of the data before the edit: the
    key hashed the first 256 image rows alone. It hashes rows spread over all of them."""
    from minilean.data.arrays import Dataset
    from minilean.models.classifier import _cache_path
    images = numpy.random.default_rng(0).integers(0, 256, (3000, 1, 2, 2), dtype=numpy.uint8)
    labels = numpy.arange(3000) % 3

    def path(images):
        return _cache_path(str(tmp_path), Dataset(images, labels, (), "set"), seed=0, steps=10,
                           lr=1e-3, batch_size=64)

    edited = images.copy()
    edited[-1] ^= 1  # the last row, far past the first 256
    assert path(images) == path(images.copy())
    assert path(images) != path(edited)


def test_a_classifier_trained_with_another_batch_size_is_not_reused(tmp_path):
    """The batch size is part of the recipe: a classifier trained with batches of 2 was
    loaded as the one of batches of 4 (the cache's name left it out)."""
    from minilean.data import load_dataset
    from minilean.models.classifier import trained_classifier
    dataset = load_dataset("builtin", n_total=4, image_size=16, seed=0)
    paths = [trained_classifier(dataset, "cpu", steps=1, cache=str(tmp_path), batch_size=size)[1]
             for size in (2, 4)]
    assert paths[0] != paths[1]


def tiny_model(classes=3):
    import minilean
    from minilean.models.classifier import FeatureClassifier
    minilean.manual_seed(0)
    return FeatureClassifier(1, classes).eval()


def test_features_of_images_in_0_1_are_the_models_features_of_2x_minus_1():
    import minilean
    from minilean.models.classifier import features_of
    model = tiny_model()
    images = numpy.random.default_rng(0).random((5, 1, 8, 8)).astype(numpy.float32)
    with minilean.no_grad():
        expected = model.features(minilean.tensor(images * 2 - 1)).numpy()
    got = features_of(model, images, "cpu", batch_size=2)
    assert got.dtype == numpy.float64 and got.shape == (5, 32)
    numpy.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


class BrightestPixel:
    """A stand-in classifier: the logits of an image (N, 1, 1, K) are its pixels."""

    def __call__(self, x):
        return x.flatten(1)


def test_accuracy_is_the_share_of_argmax_logits_equal_to_the_labels():
    from minilean.models.classifier import accuracy
    images = numpy.eye(3, dtype=numpy.float32)[[0, 1, 2, 2, 1]].reshape(5, 1, 1, 3)
    assert accuracy(BrightestPixel(), images, [0, 1, 2, 2, 1], "cpu") == 1.0
    # predicted 0 1 2 2 1 against 0 1 2 0 0: three of five right
    assert accuracy(BrightestPixel(), images, [0, 1, 2, 0, 0], "cpu") == pytest.approx(0.6)


def test_accuracy_scores_the_images_in_batches():
    """As features_of does: the held-out set was scored in one batch, its activations growing
    with --n-eval (gigabytes for 10,000 64x64 images)."""
    from minilean.models.classifier import accuracy
    seen = []

    def model(x):
        seen.append(len(x))
        return BrightestPixel()(x)

    images = numpy.eye(3, dtype=numpy.float32)[numpy.arange(7) % 3].reshape(7, 1, 1, 3)
    assert accuracy(model, images, numpy.arange(7) % 3, "cpu", batch_size=3) == 1.0
    assert seen == [3, 3, 1]


def test_reference_sets_of_a_given_dataset_are_rows_drawn_from_the_seed():
    """n rows each, apart, by a permutation of the seed's FD_REFERENCE stream; image i is
    i * 30, so each set's values say which rows it holds, and each label matches its image."""
    from minilean.data.arrays import Dataset
    from minilean.data.streams import Purpose, stream
    from minilean.models.classifier import reference_rows, reference_sets
    images = numpy.arange(7, dtype=numpy.uint8).reshape(7, 1, 1, 1) * 30
    dataset = Dataset(images, numpy.arange(7, dtype=numpy.int64), (), "set")
    for seed in (0, 5):
        order = stream(seed, Purpose.FD_REFERENCE).permutation(7)
        train_rows, held_out_rows = reference_rows(dataset, 3, seed)
        numpy.testing.assert_array_equal(train_rows, numpy.sort(order[:3]))
        numpy.testing.assert_array_equal(held_out_rows, numpy.sort(order[4:]))
        train, held_out, held_out_labels = reference_sets(dataset, 3, seed)
        numpy.testing.assert_allclose(train.ravel(), train_rows * 30 / 255, rtol=1e-6)
        numpy.testing.assert_allclose(held_out.ravel(), held_out_rows * 30 / 255, rtol=1e-6)
        numpy.testing.assert_array_equal(held_out_labels, held_out_rows)


def test_reference_sets_of_class_sorted_data_hold_every_class():
    """A converted image folder lists its images class by class: the first and the last rows
    (the rule before) were two different classes, and the floor lay above the ceiling."""
    from minilean.data.arrays import Dataset
    from minilean.models.classifier import reference_rows
    labels = numpy.repeat(numpy.arange(4), 100)
    dataset = Dataset(numpy.zeros((400, 1, 1, 1), numpy.uint8), labels, (), "sorted")
    for rows in reference_rows(dataset, 100, 0):
        assert set(labels[rows]) == {0, 1, 2, 3}


def test_a_floor_of_fewer_images_than_n_eval_is_not_the_first_class_of_class_sorted_data(
        tmp_path):
    """20 samples scored with n_eval=100 on data sorted by class: the floor's 20 training
    images are the first 20 rows of the seed's permutation, all classes among them; they were
    the 20 lowest of the 100 sorted training rows, one class, and the floor lay far above the
    FD of real images."""
    from minilean.data.arrays import Dataset
    from minilean.data.streams import Purpose, stream
    from minilean.models.classifier import fd_classifier
    labels = numpy.repeat(numpy.arange(4), 100)
    rng = numpy.random.default_rng(0)
    images = (labels[:, None, None, None] * 60 + rng.integers(0, 40, (400, 3, 8, 8))).astype(
        numpy.uint8)
    dataset = Dataset(images, labels, ("a", "b", "c", "d"), "sorted.npy")
    samples = rng.random((20, 3, 8, 8)).astype(numpy.float32)
    report = fd_classifier(samples, dataset, "cpu", seed=0, n_eval=100, steps=2,
                           cache=str(tmp_path))
    floor_rows = numpy.sort(stream(0, Purpose.FD_REFERENCE).permutation(400)[:20])
    assert set(labels[floor_rows]) == {0, 1, 2, 3}
    real = fd_classifier(dataset.images_float(floor_rows), dataset, "cpu", seed=0, n_eval=100,
                         steps=2, cache=str(tmp_path))
    assert report["n_images"] == 20
    assert real["fd_classifier"] == report["floor_real_train"]


def test_reference_sets_of_the_builtin_shapes_hold_out_other_images():
    from minilean.data import load_dataset, make_shapes
    from minilean.models.classifier import HELD_OUT_SEED_OFFSET, reference_sets
    dataset = load_dataset("builtin", n_total=6, image_size=16, seed=3)  # = make_shapes(6, 16, 3)
    train, held_out, labels = reference_sets(dataset, 6, seed=3)
    numpy.testing.assert_allclose(train * 255.0, dataset.x, atol=1e-4)
    assert not numpy.allclose(train, held_out)
    fresh, fresh_labels = make_shapes(6, 16, 3 + HELD_OUT_SEED_OFFSET)
    assert held_out.dtype == numpy.float32
    numpy.testing.assert_allclose(held_out * 255.0, fresh, atol=1e-4)
    numpy.testing.assert_array_equal(labels, fresh_labels)


def test_reference_sets_take_every_seed_the_command_line_takes():
    """The held-out shapes' seed is the run's plus 1000: for --seed 4294967295 (the largest
    --seed) that is no seed, and the run stopped after training, before its summary."""
    from minilean.data import load_dataset, make_shapes
    from minilean.models.classifier import reference_sets
    largest = 2**32 - 1
    dataset = load_dataset("builtin", n_total=4, image_size=16, seed=largest)
    _, held_out, labels = reference_sets(dataset, 4, seed=largest)
    fresh, fresh_labels = make_shapes(4, 16, 999)  # wrapped around
    numpy.testing.assert_allclose(held_out * 255.0, fresh, atol=1e-4)
    numpy.testing.assert_array_equal(labels, fresh_labels)


def test_noise_images_are_the_standard_normal_mapped_to_0_1():
    from minilean.models.classifier import noise_images
    images = noise_images(2000, (1, 4, 4), seed=0)
    assert images.shape == (2000, 1, 4, 4) and images.dtype == numpy.float32
    assert images.min() == 0.0 and images.max() == 1.0
    # (z + 1) / 2 clipped: symmetric about 0.5, clipped to 0 where z < -1 (15.9%)
    assert images.mean() == pytest.approx(0.5, abs=0.01)
    assert (images == 0).mean() == pytest.approx(0.1587, abs=0.01)


def test_fd_report_reads_uint8_samples_as_0_1(monkeypatch):
    from types import SimpleNamespace

    from minilean.models import classifier
    seen = {}
    monkeypatch.setattr(classifier, "fd_classifier", lambda samples, *args, **kwargs:
                        seen.setdefault("samples", samples))
    config = SimpleNamespace(device="cpu", seed=0)
    classifier.fd_report(config, None, numpy.array([[[[0, 51, 255]]]], numpy.uint8))
    numpy.testing.assert_allclose(seen["samples"].ravel(), [0.0, 0.2, 1.0], rtol=1e-6)


@pytest.mark.parametrize("rows, refused", [(600, True), (999, True), (1000, False)])
def test_evaluate_needs_twice_the_run_reference_size(rows, refused):
    from types import SimpleNamespace

    from minilean.data.arrays import Dataset
    from minilean.errors import FlagError
    from minilean.models.classifier import check_fd_report
    dataset = Dataset(numpy.zeros((rows, 1, 2, 2), numpy.uint8), numpy.zeros(rows, numpy.int64),
                      (), "set")
    config = SimpleNamespace(evaluate=True, n_samples=128, seed=0)  # as diffusion and gan have
    if refused:
        with pytest.raises(FlagError, match=r"^--evaluate: got True; expected false for this "
                                            r"dataset: FD-classifier needs 1000 real images"):
            check_fd_report(config, dataset)
    else:
        check_fd_report(config, dataset)


def _diffusion_run_on_an_x_array(tmp_path):
    """A one-step diffusion run with --seed 5 on 24 images of 3 classes (x.npy, y.npy in
    ``tmp_path``); its folder."""
    from minilean.cli import main
    images = numpy.random.default_rng(0).integers(0, 256, (24, 3, 16, 16), numpy.uint8)
    numpy.save(tmp_path / "x.npy", images)
    numpy.save(tmp_path / "y.npy", numpy.arange(24) % 3)
    run = tmp_path / "run"
    main(["diffusion", "--cpu", "--steps=1", "--batch-size=4", "--hidden-c=4", "--T=4",
          "--n-samples=2", "--sampler=ddim", "--sample-steps=1", "--evaluate=false",
          "--progress=false", "--seed=5", f"--x={tmp_path / 'x.npy'}",
          f"--y={tmp_path / 'y.npy'}", f"--out={run}"])
    return run


def test_evaluate_of_a_run_scores_against_the_runs_data_unless_told_otherwise(tmp_path,
                                                                           monkeypatch, capsys):
    """``evaluate --samples RUN`` of a run on an --x array with --seed 5 compared its samples
    with the built-in shapes at seed 0 (the command line's defaults), without a word, and so
    did not repeat the run's own FD. A data flag or a --seed typed still chooses."""
    from minilean.cli import main
    from minilean.train import evaluate
    scored = []
    monkeypatch.setattr(evaluate, "fd_classifier", lambda samples, dataset, device, seed, *rest:
                        scored.append((dataset.name, len(dataset), seed)) or {})
    run = _diffusion_run_on_an_x_array(tmp_path)
    for typed, expected in (([], ("x.npy", 24, 5)), (["--seed=1"], ("x.npy", 24, 1)),
                            (["--dataset=builtin", "--n-total=8"], ("builtin", 8, 5))):
        main(["evaluate", "--cpu", f"--samples={run}", *typed])
        assert scored.pop() == expected
    # a run that has not sampled yet (still training, or stopped before it sampled)
    (run / "samples.npy").unlink()
    with pytest.raises(SystemExit):
        main(["evaluate", "--cpu", f"--samples={run}"])
    assert capsys.readouterr().err.endswith(
        f"minilean evaluate: error: samples file {run / 'samples.npy'} not found: that "
        f"directory holds a run of diffusion on {tmp_path / 'x.npy'}, which has not drawn its "
        f"samples yet (it is still training, or stopped before it sampled: python -m minilean "
        f"diffusion --resume {run} finishes it)\n")


def test_evaluate_of_a_run_takes_each_data_flag_not_typed_from_the_run(tmp_path, monkeypatch,
                                                                      capsys):
    """``evaluate --samples RUN --n-total 8`` of a run on an --x array scored the samples
    against the built-in shapes: one data flag typed took the defaults for all the others, the
    run's --x among them, without a word. Each flag not typed is the run's now (its --y with a
    typed --y too), a --dataset typed takes neither its --x nor its --y, and the notes of flags
    to no effect are judged with the run's data (--image-size with its --x)."""
    from minilean.cli import main
    from minilean.train import evaluate
    scored = []
    monkeypatch.setattr(evaluate, "fd_classifier", lambda samples, dataset, device, seed, *rest:
                        scored.append((dataset.name, len(dataset), dataset.class_names, seed))
                        or {})
    run = _diffusion_run_on_an_x_array(tmp_path)
    numpy.save(tmp_path / "y2.npy", numpy.arange(24) % 2)
    capsys.readouterr()
    for typed, expected in ((["--n-total=12"], ("x.npy", 12, 3)),
                            ([f"--y={tmp_path / 'y2.npy'}"], ("x.npy", 24, 2)),
                            (["--dataset=builtin", "--n-total=8"], ("builtin", 8, 5))):
        main(["evaluate", "--cpu", f"--samples={run}", *typed])
        name, rows, class_names, seed = scored.pop()
        assert (name, rows, len(class_names)) == expected and seed == 5
    assert capsys.readouterr().err == ""
    main(["evaluate", "--cpu", f"--samples={run}", "--image-size=48"])
    assert scored.pop()[:2] == ("x.npy", 24)
    assert capsys.readouterr().err == ("minilean evaluate: --image-size has no effect with --x "
                                       "(its images keep their own size)\n")


def test_evaluate_of_a_builtin_run_with_another_seed_typed_scores_that_seeds_shapes(tmp_path,
                                                                                   monkeypatch):
    """A --seed typed for a run on the built-in shapes chooses the shapes drawn at that seed:
    they are not the run's data, and are not refused for differing from them (the check that
    the data are still the run's holds for the run's own seed)."""
    from minilean.cli import main
    from minilean.train import evaluate
    scored = []
    monkeypatch.setattr(evaluate, "fd_classifier", lambda samples, dataset, device, seed, *rest:
                        scored.append((dataset.name, len(dataset), seed)) or {})
    run = tmp_path / "run"
    main(["diffusion", "--cpu", "--steps=1", "--batch-size=4", "--hidden-c=4", "--T=4",
          "--n-samples=2", "--sampler=ddim", "--sample-steps=1", "--evaluate=false",
          "--progress=false", "--seed=5", "--n-total=8", f"--out={run}"])
    main(["evaluate", "--cpu", f"--samples={run}", "--seed=1"])
    assert scored == [("builtin", 8, 1)]


def test_evaluate_converts_only_the_samples_it_scores(tmp_path, monkeypatch):
    """FD-classifier scores the first --n-eval samples: a samples file of 29 MiB (uint8) was
    converted to float32 whole (117 MiB, 4 GiB for a 1 GiB file) to score 500 of them."""
    from minilean.cli import main
    from minilean.train import evaluate
    scored = []
    monkeypatch.setattr(evaluate, "fd_classifier", lambda samples, *rest:
                        scored.append(samples) or {})
    samples = numpy.lib.format.open_memmap(tmp_path / "s.npy", mode="w+", dtype=numpy.uint8,
                                           shape=(40_000, 3, 16, 16))
    samples[:] = numpy.random.default_rng(0).integers(0, 256, samples.shape, numpy.uint8)
    samples.flush()
    flags = ["evaluate", "--cpu", f"--samples={tmp_path / 's.npy'}", "--n-total=40", "--n-eval=8"]
    main(flags)  # imports and sets up what any evaluation does, once a process
    tracemalloc.start()
    try:
        main(flags)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < samples.nbytes / 4, f"{peak / 2 ** 20:.1f} MiB at once"
    numpy.testing.assert_array_equal(scored[-1], samples[:8] / numpy.float32(255.0))


def test_a_runs_fd_report_converts_only_the_samples_it_scores(monkeypatch):
    """A training run scores its first RUN_FD_IMAGES samples: 40,000 uint8 samples (29 MiB)
    were converted to float32 whole (117 MiB, and as much again for the division)."""
    from types import SimpleNamespace
    from minilean.models import classifier
    scored = []
    monkeypatch.setattr(classifier, "fd_classifier", lambda samples, *rest, **named:
                        scored.append(samples) or {})
    samples = numpy.random.default_rng(0).integers(0, 256, (40_000, 3, 16, 16), numpy.uint8)
    tracemalloc.start()
    try:
        classifier.fd_report(SimpleNamespace(device="cpu", seed=0), None, samples)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < samples.nbytes / 4, f"{peak / 2 ** 20:.1f} MiB at once"
    numpy.testing.assert_array_equal(
        scored[0], samples[:classifier.RUN_FD_IMAGES].astype(numpy.float32) / 255.0)


def test_evaluate_of_a_run_whose_x_was_replaced_since_says_so(tmp_path, monkeypatch, capsys):
    """The run's --x file rewritten with other images after the run: ``evaluate --samples
    RUN`` scored the samples against them without a word (not the FD of its summary.json).
    The data typed choose, as for any .npy."""
    from minilean.cli import main
    from minilean.train import evaluate
    scored = []
    monkeypatch.setattr(evaluate, "fd_classifier", lambda samples, dataset, *rest:
                        scored.append(dataset.name) or {})
    rng = numpy.random.default_rng(0)
    x = tmp_path / "x.npy"
    numpy.save(x, rng.integers(0, 256, (24, 3, 16, 16), numpy.uint8))
    numpy.save(tmp_path / "y.npy", numpy.arange(24) % 3)
    run = tmp_path / "run"
    main(["diffusion", "--cpu", "--steps=1", "--batch-size=4", "--hidden-c=4", "--T=4",
          "--n-samples=2", "--sampler=ddim", "--sample-steps=1", "--evaluate=false",
          "--progress=false", f"--x={x}", f"--y={tmp_path / 'y.npy'}", f"--out={run}"])
    main(["evaluate", "--cpu", f"--samples={run}"])
    assert scored.pop() == "x.npy"
    numpy.save(x, rng.integers(0, 256, (24, 3, 16, 16), numpy.uint8))
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--cpu", f"--samples={run}"])
    assert stop.value.code == 1 and not scored
    assert capsys.readouterr().err.endswith(
        f"minilean evaluate: error: --samples {run}: --x {x} is not the data the run trained "
        f"on (the same shape (24, 3, 16, 16) uint8, other contents); give those data, or type "
        f"the data flags to score against these\n")
    main(["evaluate", "--cpu", f"--samples={run}", f"--x={x}", f"--y={tmp_path / 'y.npy'}"])
    assert scored.pop() == "x.npy"


def test_evaluate_of_a_run_whose_config_json_is_damaged_says_so(tmp_path, monkeypatch, capsys):
    """Read past as a folder of samples, the run's samples were scored against the default
    data (another FD than its summary.json's) without a word."""
    from minilean.cli import main
    from minilean.train import evaluate
    scored = []
    monkeypatch.setattr(evaluate, "fd_classifier", lambda samples, dataset, *rest:
                        scored.append(dataset.name) or {})
    run = tmp_path / "run"
    main(["diffusion", "--cpu", "--steps=1", "--batch-size=4", "--hidden-c=4", "--T=4",
          "--n-samples=2", "--sampler=ddim", "--sample-steps=1", "--evaluate=false",
          "--progress=false", "--n-total=40", f"--out={run}"])
    (run / "config.json").write_text("{")
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--cpu", f"--samples={run}"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and not scored
    assert err.startswith(f"minilean evaluate: error: --samples {run}: config.json is not a "
                          f"config minilean wrote (it is not JSON: ") and err.count("\n") == 1


def test_evaluate_on_one_builtin_image_is_refused_before_the_run():
    """diffusion --n-total 1 trained its whole run, then failed on the floor's covariance."""
    from types import SimpleNamespace

    from minilean.data import load_dataset
    from minilean.errors import FlagError
    from minilean.models.classifier import check_fd_report
    dataset = load_dataset("builtin", n_total=1, image_size=16, seed=0)
    config = SimpleNamespace(evaluate=True, n_samples=128, n_total=1, seed=0)
    with pytest.raises(FlagError, match=r"^--n-total: got 1; expected an integer >= 2 with "
                                        r"--evaluate"):
        check_fd_report(config, dataset)
    check_fd_report(config, load_dataset("builtin", n_total=2, image_size=16, seed=0))


def test_every_row_of_the_samples_is_range_checked(tmp_path):
    from minilean.train.evaluate import load_samples
    samples = numpy.zeros((1100, 1, 2, 2), numpy.float32)
    samples[-1] = 2.0
    numpy.save(tmp_path / "late.npy", samples)
    with pytest.raises(ValueError, match=r"found values in \[0.0, 2.0\] \(from row 1099 on\)$"):
        load_samples(str(tmp_path / "late.npy"))


def test_non_square_samples_are_refused_for_the_builtin_shapes():
    from minilean.train.evaluate import builtin_image_size
    with pytest.raises(ValueError, match=r"^--samples s.npy: images are 16x32; the built-in "
                                         r"shapes they are compared with come square"):
        builtin_image_size(numpy.zeros((2, 3, 16, 32), numpy.float32), "s.npy")
    assert builtin_image_size(numpy.zeros((2, 3, 24, 24), numpy.float32), "s.npy") == 24
    for side in (16, 64):  # the smallest and largest the built-in shapes are drawn at
        assert builtin_image_size(numpy.zeros((1, 3, side, side), numpy.float32), "s.npy") == side


def test_the_classifier_follows_warmup_then_cosine(tmp_path, monkeypatch):
    import math

    from minilean import optim
    from minilean.data import load_dataset
    from minilean.models.classifier import trained_classifier
    lrs, step = [], optim.Adam.step
    monkeypatch.setattr(optim.Adam, "step", lambda self: lrs.append(self.lr) or step(self))
    dataset = load_dataset("builtin", n_total=4, image_size=16, seed=0)
    trained_classifier(dataset, "cpu", steps=60, cache=str(tmp_path), batch_size=2, lr=0.1)
    warmup = [0.1 * (k + 1) / 50 for k in range(50)]
    cosine = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(10)]
    assert lrs == pytest.approx(warmup + cosine, rel=1e-9)


def test_the_floor_is_the_distance_of_training_images_to_held_out_ones(tmp_path):
    import minilean
    from minilean.data import load_dataset
    from minilean.models.classifier import (fd_classifier, frechet_distance, reference_sets,
                                            trained_classifier)
    dataset = load_dataset("builtin", n_total=24, image_size=16, seed=0)
    samples = numpy.random.default_rng(0).random((8, 3, 16, 16)).astype(numpy.float32)
    report = fd_classifier(samples, dataset, "cpu", seed=0, n_eval=8, steps=2,
                           cache=str(tmp_path))
    model, _ = trained_classifier(dataset, "cpu", 0, 2, str(tmp_path))
    train, held_out, _ = reference_sets(dataset, 8, 0)

    def fit(images):
        with minilean.no_grad():
            rows = model.features(minilean.tensor(images * 2 - 1)).numpy().astype(numpy.float64)
        return rows.mean(axis=0), numpy.cov(rows.T, ddof=1)

    expected = frechet_distance(*fit(train), *fit(held_out))
    assert expected > 0 and report["floor_real_train"] == pytest.approx(expected, rel=1e-5)


def test_samples_floor_and_ceiling_are_scored_with_as_many_images_as_the_data_have(tmp_path):
    """12 samples against built-in data of 6 images: the samples, the floor's training images
    and the ceiling's noise images are 6 each (the floor used to fit 6 against 12 samples)."""
    from minilean.data import load_dataset
    from minilean.models.classifier import fd_classifier
    dataset = load_dataset("builtin", n_total=6, image_size=16, seed=0)
    samples = numpy.random.default_rng(0).random((12, 3, 16, 16)).astype(numpy.float32)
    report = fd_classifier(samples, dataset, "cpu", seed=0, n_eval=8, steps=2,
                           cache=str(tmp_path))
    assert report["n_images"] == 6
    # the training images scored as samples: exactly the floor, as the same number of them
    real = fd_classifier(dataset.images_float(slice(0, 6)), dataset, "cpu", seed=0, n_eval=8,
                         steps=2, cache=str(tmp_path))
    assert real["fd_classifier"] == report["floor_real_train"]


def test_samples_past_n_eval_are_not_scored_and_the_flags_say_so(tmp_path):
    """12 samples with --n-eval 8: 8 are scored. A training run's FD has reference sets of
    RUN_FD_IMAGES, so its --n-samples above that are not scored; the help of diffusion's and
    the GAN's --n-samples promised FD-classifier on all of them."""
    from minilean.cli import DIFFUSION, EVALUATE, GAN
    from minilean.data import load_dataset
    from minilean.models.classifier import RUN_FD_IMAGES, fd_classifier
    dataset = load_dataset("builtin", n_total=24, image_size=16, seed=0)
    samples = numpy.random.default_rng(0).random((12, 3, 16, 16)).astype(numpy.float32)
    report = fd_classifier(samples, dataset, "cpu", seed=0, n_eval=8, steps=2,
                           cache=str(tmp_path))
    assert report["n_images"] == 8
    first = fd_classifier(samples[:8], dataset, "cpu", seed=0, n_eval=8, steps=2,
                          cache=str(tmp_path))
    assert first["fd_classifier"] == report["fd_classifier"]  # the first 8
    for command in (DIFFUSION, GAN):
        assert f"the first {RUN_FD_IMAGES} of them at most" in command.flags["n_samples"].help
    assert "the most samples scored" in EVALUATE.flags["n_eval"].help


def test_a_damaged_cached_classifier_is_named_as_the_cache_to_remove(tmp_path):
    """Evaluating after a whole training run fails on it: the message must say what the file
    is and that removing it is the cure, not only that it is no readable checkpoint."""
    from minilean.data import load_dataset
    from minilean.models.classifier import trained_classifier
    dataset = load_dataset("builtin", n_total=4, image_size=16, seed=0)
    _, path = trained_classifier(dataset, "cpu", steps=1, cache=str(tmp_path), batch_size=2)
    with open(path, "r+b") as file:
        file.truncate(1000)
    with pytest.raises(ValueError) as error:
        trained_classifier(dataset, "cpu", steps=1, cache=str(tmp_path), batch_size=2)
    message = str(error.value)
    assert message.startswith(f"cached classifier {path} cannot be used ('{path}' is not a "
                              f"readable minilean checkpoint (")
    assert message.endswith("); remove it and it is trained again")


def test_a_cache_folder_that_cannot_take_the_classifier_is_refused_before_training(
        tmp_path, monkeypatch):
    """A read-only cache folder was found out at the save, after the classifier had trained
    (and, for a training run's runs/classifiers, after the whole run), with a message that
    did not name the cache; one that already holds the classifier still serves."""
    from types import SimpleNamespace

    from minilean.data import load_dataset
    from minilean.models import classifier
    dataset = load_dataset("builtin", n_total=4, image_size=16, seed=0)
    cache = tmp_path / "classifiers"
    cache.mkdir()
    _, cached = classifier.trained_classifier(dataset, "cpu", steps=1, cache=str(cache),
                                              batch_size=2)
    unwritable = {str(cache), str(tmp_path / "runs" / "classifiers")}
    real_access = os.access
    monkeypatch.setattr(os, "access",  # as a read-only folder answers, even to root
                        lambda path, mode: str(path) not in unwritable and real_access(path, mode))
    trained = []
    monkeypatch.setattr("minilean.optim.minimize", lambda *args: trained.append(1))
    with pytest.raises(OSError, match=rf"^cannot cache the FD-classifier's classifier at "
                                      rf"{cache}{os.sep}classifier-builtin-[0-9a-f]{{16}}\.npz: "
                                      rf"expected a path in a writable folder; {cache} is not "
                                      rf"writable$"):
        classifier.trained_classifier(dataset, "cpu", steps=2, cache=str(cache), batch_size=2)
    assert trained == [] and os.listdir(cache) == [os.path.basename(cached)]
    # the classifier already there is read, not written
    assert classifier.trained_classifier(dataset, "cpu", steps=1, cache=str(cache),
                                         batch_size=2)[1] == cached
    # a training run's cache, runs/classifiers in the working folder, before the run trains
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.join("runs", "classifiers"))
    config = SimpleNamespace(evaluate=True, n_samples=128, seed=0)
    with pytest.raises(OSError, match=r"^cannot cache the FD-classifier's classifier at "
                                      r"runs/classifiers/classifier-builtin-[0-9a-f]{16}\.npz: "
                                      r"expected a path in a writable folder; "):
        classifier.check_fd_report(config, dataset)


def test_the_classifier_never_trains_on_the_held_out_rows_of_real_data(tmp_path, monkeypatch):
    """On data other than the built-in shapes the held-out set is n_eval rows drawn from the
    seed (``reference_rows``): the classifier's batches hold every other row and none of
    them, so their accuracy and features are of unseen images."""
    from minilean.data.arrays import Dataset
    from minilean.data.loader import Loader
    from minilean.models import classifier
    rng = numpy.random.default_rng(0)
    images = rng.integers(0, 256, (20, 3, 8, 8), dtype=numpy.uint8)
    labels = numpy.arange(20) % 3
    dataset = Dataset(images, labels, ("a", "b", "c", "d"), "x.npy")
    held_out = classifier.reference_rows(dataset, 6, seed=0)[1]
    labels[held_out] = [2, 2, 2, 2, 2, 3]  # class 3 lives in the held-out rows alone
    batch_rows, drawn = Loader.batch_rows, []
    monkeypatch.setattr(Loader, "batch_rows", lambda self, epoch, index: (
        drawn.append(batch_rows(self, epoch, index)), drawn[-1])[1])
    report = classifier.fd_classifier(images[:6] / 255.0, dataset, "cpu", n_eval=6, steps=14,
                                      cache=str(tmp_path))
    assert set(numpy.concatenate(drawn)) == set(range(20)) - set(held_out)
    assert report["n_held_out"] == 6
    model, _ = classifier.trained_classifier(dataset, "cpu", 0, 14, str(tmp_path),
                                             rows=classifier.classifier_rows(dataset, 6, 0))
    assert model.head.weight.shape[0] == 4  # every class the data name, 3 included
