"""Every random draw of a run comes from a generator of its own purpose (minilean/data/streams.py):
each repeats, and no two purposes of a run share numbers."""
import collections
import os
import sys

import numpy
import pytest

import minilean
from minilean.cli import main
from minilean.data.streams import Purpose, stream

PACKAGE = os.path.dirname(minilean.__file__)


def test_a_stream_repeats_and_every_other_key_differs():
    # keyed by every name: a purpose given another's number would be an alias of it, sharing
    # its generator (iterating over Purpose skips aliases)
    draws = {(name, index, sub_index): stream(7, purpose, index, sub_index).random(4)
             for name, purpose in Purpose.__members__.items() for index in range(3)
             for sub_index in range(3)}
    for (name, index, sub_index), drawn in draws.items():
        numpy.testing.assert_array_equal(stream(7, Purpose[name], index, sub_index).random(4),
                                         drawn)
    assert len({tuple(drawn) for drawn in draws.values()}) == len(draws)
    weights = numpy.random.default_rng(7).random(4)  # backend.generator's seeding
    assert all(not numpy.array_equal(weights, drawn) for drawn in draws.values())


def _record_seed_keys(monkeypatch):
    """Patch numpy.random.default_rng to note, for each seed key (trailing zeros dropped, as
    NumPy's SeedSequence drops them), the minilean source lines that asked for it."""
    asked = collections.defaultdict(set)
    real = numpy.random.default_rng

    def recording(seed=None):
        if isinstance(seed, (int, list, tuple)):
            key = tuple(int(value) for value in numpy.atleast_1d(seed))
            while len(key) > 1 and key[-1] == 0:
                key = key[:-1]
            frame = sys._getframe(1)
            if frame.f_code.co_name == "stream":  # the purpose's caller, not streams.py
                frame = frame.f_back
            if frame.f_code.co_filename.startswith(PACKAGE):
                asked[key].add(f"{os.path.relpath(frame.f_code.co_filename, PACKAGE)}:"
                               f"{frame.f_lineno}")
        return real(seed)

    monkeypatch.setattr(numpy.random, "default_rng", recording)
    return asked


TINY = ["--n-total=40", "--steps=3", "--batch-size=4", "--progress=false"]
RUNS = {
    "diffusion": ["--cpu", "--hidden-c=4", "--T=10", "--n-samples=4",
                  "--evaluate=false"],
    "vae": ["--hidden=8", "--latent=2", "--iw-samples=2", "--n-eval=4"],
    "gan": ["--hidden=8", "--latent=2", "--n-samples=4", "--d-steps=2", "--evaluate=false"],
    "mae": ["--patch-size=8", "--width=16", "--depth=1", "--heads=2", "--decoder-width=16",
            "--decoder-depth=1", "--n-eval=4"],
    "vqvae": ["--codes=4", "--code-dim=2", "--hidden=2", "--restart-every=2", "--n-eval=4"],
}


def _run_recording_seed_keys(command, tmp_path, monkeypatch):
    """Run ``command`` (TINY, with RUNS' flags) and return its seed keys and their sites."""
    asked = _record_seed_keys(monkeypatch)
    argv = [command, *TINY, *RUNS[command], f"--out={tmp_path / 'run'}"]
    if command == "diffusion":
        argv.append(f"--noisy-ppm={tmp_path / 'noisy.ppm'}")
    main(argv)
    return asked


@pytest.mark.parametrize("seed, index, sub_index", [(2**32, 0, 0), (-1, 0, 0), (0, 2**32, 0),
                                                (0, 0, -3)])
def test_a_key_entry_outside_32_bits_is_refused(seed, index, sub_index):
    """NumPy's SeedSequence splits a larger integer into 32-bit words: (2**32, 3, 5, 7) and
    (0, 1, 3, 5 + 7 * 2**32) drew the same numbers."""
    with pytest.raises(ValueError, match=rf"^a stream's seed, index and sub-index must be in "
                                         rf"\[0, 2\*\*32\), got \(seed {seed}, index {index}, "
                                         rf"sub-index {sub_index}\)$"):
        stream(seed, Purpose.TRAINING_STEP, index, sub_index)
    stream(2**32 - 1, Purpose.TRAINING_STEP, 2**32 - 1, 2**32 - 1)  # the largest key


@pytest.mark.parametrize("command", sorted(RUNS))
def test_no_two_purposes_of_a_run_share_a_generator(command, tmp_path, monkeypatch):
    """Before the streams module, the built-in images and the weights' initialisation both
    drew from default_rng(seed), and epoch k's data order from [seed, k], which is step k's
    noise generator [seed, k, 0]: one stream for two purposes."""
    asked = _run_recording_seed_keys(command, tmp_path, monkeypatch)
    if command == "gan":  # the evaluation's draws, with the run's seed
        from minilean.models import classifier, gan
        classifier.noise_images(2, (3, 16, 16), 0)
        gan.independent_pixel_samples(numpy.zeros((3, 1, 2, 2), numpy.uint8), 2, 0)
    assert len(asked) > 3
    shared = {key: sites for key, sites in asked.items() if len(sites) > 1}
    assert not shared, shared


STEPS = range(1, 4)  # TINY's --steps=3; the loop numbers steps from 1
ONCE = {(0, 0)}
DRAWS = {  # what each purpose's index and sub_index count in a TINY run (all of epoch 0)
    "diffusion": {Purpose.BUILTIN_DATA: ONCE, Purpose.DATA_ORDER: ONCE,
                  Purpose.TRAINING_STEP: {(step, 0) for step in STEPS},
                  Purpose.SAMPLING_START: ONCE,
                  Purpose.SAMPLING_NOISE: {(t, 0) for t in range(1, 10)},  # DDPM, --T=10
                  Purpose.NOISY_IMAGES: ONCE},
    "vae": {Purpose.BUILTIN_DATA: ONCE, Purpose.HELD_OUT_SPLIT: ONCE, Purpose.DATA_ORDER: ONCE,
            Purpose.TRAINING_STEP: {(step, 0) for step in STEPS},
            Purpose.EVALUATION: {(0, draw) for draw in range(2)},  # one chunk, --iw-samples=2
            Purpose.SAMPLING_START: ONCE},  # the prior samples' z
    "mae": {Purpose.BUILTIN_DATA: ONCE, Purpose.HELD_OUT_SPLIT: ONCE, Purpose.DATA_ORDER: ONCE,
            Purpose.TRAINING_STEP: {(step, 0) for step in STEPS},  # each step's mask
            Purpose.EVALUATION: ONCE},  # the held-out mask
    "vqvae": {Purpose.BUILTIN_DATA: ONCE, Purpose.HELD_OUT_SPLIT: ONCE,
              Purpose.DATA_ORDER: ONCE, Purpose.TRAINING_STEP: {(2, 0)}},  # --restart-every=2
    "gan": {Purpose.BUILTIN_DATA: ONCE, Purpose.HELD_OUT_SPLIT: ONCE, Purpose.DATA_ORDER: ONCE,
            Purpose.TRAINING_STEP: {(step, draw) for step in STEPS for draw in range(3)},
            Purpose.SAMPLING_START: ONCE},  # --d-steps=2: draws 1, 2 for D, 0 for G
}


@pytest.mark.parametrize("command", sorted(RUNS))
def test_each_purpose_counts_its_index_and_sub_index_as_documented(command, tmp_path,
                                                                   monkeypatch):
    """Each draw's key is the (purpose, index, sub_index) that ``Purpose`` documents for it.
    A stream asked for with a constant index (every step drawing one step's noise), with
    index and sub_index swapped, or under another purpose need share no key with another
    draw, so the test above would pass it."""
    asked = _run_recording_seed_keys(command, tmp_path, monkeypatch)
    drawn = collections.defaultdict(set)
    for key in asked:
        if len(key) > 1:  # (seed,) is backend.generator's; pad back the zeros NumPy drops
            _, purpose, index, sub_index = key + (0,) * (4 - len(key))
            drawn[Purpose(purpose)].add((index, sub_index))
    assert dict(drawn) == DRAWS[command]


def test_each_held_out_chunk_of_the_vae_draws_its_own_eps(tmp_path, monkeypatch):
    """The VAE's held-out bounds are taken EVAL_CHUNK rows at a time, each chunk's eps from
    (seed, EVALUATION, chunk, draw) as ``Purpose`` documents: with every chunk at index 0,
    the chunks would share their draws and no other test would see it (the runs above
    evaluate one chunk)."""
    from minilean.train import vae
    monkeypatch.setattr(vae, "EVAL_CHUNK", 2)  # --n-eval=4: two chunks
    asked = _run_recording_seed_keys("vae", tmp_path, monkeypatch)
    evaluation = {key[2:] + (0,) * (4 - len(key)) for key in asked
                  if len(key) > 1 and key[1] == Purpose.EVALUATION}
    assert evaluation == {(chunk, draw) for chunk in range(2) for draw in range(2)}
