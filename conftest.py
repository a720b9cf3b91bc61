"""Shared test set-up: hypothesis profiles, the gpu marker, and random numbers that depend only
on the test that draws them."""
import importlib
import os
import pkgutil
import zlib

import numpy
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _pin_hypothesis_constants():
    """hypothesis draws, beside random values, the constants written in the local modules
    loaded so far (its "local constants"), and reads them again whenever sys.modules grows:
    what a test drew depended on the modules the tests before it had imported (``-k ddim``
    drew other examples than the whole run, and a strategy's rare case went unreached).
    Every minilean and proofs module is loaded here and the constants read once, so what a
    test draws depends on the test alone. (A private function of hypothesis: where it is
    gone, the draws are as before, never an error.)"""
    for package in ("minilean", "proofs"):
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__,
                                            package + "."):
            if not module.name.rpartition(".")[2].startswith(("test_", "__main__")):
                importlib.import_module(module.name)
    from hypothesis.internal.conjecture import providers
    read_constants = getattr(providers, "_get_local_constants", None)
    if read_constants is not None:
        constants = read_constants()
        providers._get_local_constants = lambda: constants


def _gpu_available():
    from minilean.backend import cuda_available
    return cuda_available()


def pytest_collection_modifyitems(config, items):
    # once the tests are collected (hypothesis reads its constants then too; earlier, while
    # pytest starts, it warns of the time taken)
    _pin_hypothesis_constants()
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CuPy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng(request):
    """A generator of this test's own, seeded from its node id (``path::name[params]``): what it
    draws does not depend on which tests ran before it, and a parametrized case gets data of
    its own. crc32 rather than hash(), which Python salts per process."""
    return numpy.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def fresh_draws():
    """The loaded hypothesis profile, but drawing new examples on every run (CI's derandomizes):
    for tests that show what stays the same from run to run, and what does not."""
    profile = settings.get_current_profile_name()
    settings.register_profile("fresh draws", settings.get_profile(profile), derandomize=False,
                              database=None)
    settings.load_profile("fresh draws")
    yield
    settings.load_profile(profile)


@pytest.fixture(autouse=True)
def fresh_minilean_generators():
    """Every test starts from the generators a fresh process has (backend's seed 0), so what
    minilean draws for it (parameter init, dropout, randn) is what it draws when run alone."""
    from minilean import backend
    backend.manual_seed(0)


@pytest.fixture
def folder_contents():
    """``contents(folder)``: {path under ``folder``: its bytes, or None for a folder}, all
    that is in it, to show that a refused command left a folder as it was."""
    def contents(folder):
        return {str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
                for path in sorted(folder.rglob("*"))}
    return contents
