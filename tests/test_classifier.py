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
