"""The FD-classifier's Frechet distance between Gaussian fits, against SciPy's matrix root."""
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


def test_the_cached_classifier_depends_on_the_labels(tmp_path):
    from minilean.data.arrays import Dataset
    from minilean.models.classifier import _cache_path
    images = numpy.zeros((6, 3, 4, 4), numpy.uint8)

    def path(labels):
        dataset = Dataset(images, numpy.array(labels, numpy.int64), (), "set")
        return _cache_path(str(tmp_path), dataset, seed=0, steps=10, lr=1e-3)

    assert path([0, 1, 0, 1, 0, 1]) == path([0, 1, 0, 1, 0, 1])
    assert path([0, 1, 0, 1, 0, 1]) != path([1, 0, 1, 0, 1, 0])  # same classes, other labels
    assert path([0, 1, 0, 1, 0, 1]) != path([0, 1, 2, 0, 1, 2])  # another class count


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
    ("255", r"expected float images in \[0, 1\], found values in \[200.0, 200.0\]"),
    ("nan", r"expected float images in \[0, 1\], found values in \[nan, nan\]"),
    ("int64", r"expected dtype uint8 in \[0, 255\] or float in \[0, 1\], found int64"),
    ("bool", r"expected dtype uint8 in \[0, 255\] or float in \[0, 1\], found bool"),
    ("complex128", r"expected dtype uint8 in \[0, 255\] or float in \[0, 1\], found complex128"),
    ("empty", r"the file is empty; expected a .npy array file \(numpy.save\)"),
    ("npz", r"the file is an .npz archive; expected a .npy array file \(numpy.save, not "
            r"numpy.savez\)"),
])
def test_samples_follow_the_rules_of_x(tmp_path, kind, message):
    from minilean.models.classifier import _load_samples
    with pytest.raises(ValueError, match=f"^--samples .*{kind}.npy: {message}$"):
        _load_samples(samples_file(tmp_path, kind))


def test_samples_in_range_come_back_as_float32_in_0_1(tmp_path):
    from minilean.models.classifier import _load_samples
    numpy.save(tmp_path / "u8.npy", numpy.full((2, 3, 16, 16), 255, numpy.uint8))
    numpy.save(tmp_path / "f64.npy", numpy.full((2, 3, 16, 16), 0.5))
    for name, value in (("u8", 1.0), ("f64", 0.5)):
        samples = _load_samples(str(tmp_path / f"{name}.npy"))
        assert samples.dtype == numpy.float32 and numpy.all(samples == value)


def test_samples_of_a_size_builtin_lacks_name_samples_not_image_size(tmp_path):
    from types import SimpleNamespace

    from minilean.models.classifier import evaluate_command
    numpy.save(tmp_path / "small.npy", numpy.zeros((4, 3, 15, 15), numpy.uint8))
    config = SimpleNamespace(device="cpu", samples=str(tmp_path / "small.npy"),
                             dataset="builtin", x=None, y=None, n_total=None, image_size=32,
                             seed=0, n_eval=2, classifier_steps=1, cache=str(tmp_path / "c"),
                             fast_kernels=False)
    with pytest.raises(ValueError, match=r"^--samples .*small.npy: images are 15x15; the "
                                         r"built-in shapes they are compared with come square, "
                                         r"16 to 64 pixels"):
        evaluate_command(config)
