"""``python -m minilean evaluate``: FD-classifier of generated images (a run directory's
``samples.npy`` or any .npy of images), with its floor and ceiling, by the classifier of
``minilean/models/classifier.py``."""
import json
import os
import sys

from minilean.data import load_dataset
from minilean.data.arrays import (DATA_FLAGS, check_pixel_values, check_within_cap, float_images,
                                  load_npy)
from minilean.data.builtin import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from minilean.data.runlog import read_run_config
from minilean.models.classifier import fd_classifier
from minilean.optim.checkpoint import load_checkpoint
from minilean.train.loop import CHECKPOINT, data_change, data_in_errors, prepare_device

DATA_FLAG_NAMES = {flag.name for flag in DATA_FLAGS}


def with_the_runs_data(config):
    """``config`` where ``--samples`` names a run directory: each data flag and ``--seed``
    not typed takes the run's value, so that its samples are scored against the data it
    trained on (an ``--x`` array, its ``--n-total``) and the FD repeats the one in its
    summary.json. The command line's defaults, the built-in shapes at seed 0, scored them
    against other data without a word; and one data flag typed (``--n-total 30``) took the
    defaults for all the others, the run's --x among them, without a word either. A
    ``--dataset`` or ``--x`` typed names other data: the run's --x (which would win over a
    typed --dataset) and its --y (the labels of its own array) are then not taken. Called as
    the flags are resolved, so that their checks and notes see the data that will be used."""
    if not os.path.isfile(os.path.join(config.samples, "config.json")):
        return config  # a file, or a folder of samples, not a run's: load_samples says more
    # a run's config.json that cannot be read is its error: read past, the samples were
    # scored against the default data, as a folder's
    saved = read_run_config(config.samples, flag="samples")
    typed = set(config.given_flags)
    names = DATA_FLAG_NAMES - typed - ({"x", "y"} if typed & {"dataset", "x"} else set())
    for name in sorted(names) + ([] if "seed" in typed else ["seed"]):
        if name in saved:
            setattr(config, name, saved[name])
    # the run's own data (its flags and seed, which draws the built-in shapes): what they held
    # then, for ``check_the_runs_data``
    if not typed & DATA_FLAG_NAMES and config.seed == saved.get("seed"):
        config.run_data_fingerprint = saved.get("data_fingerprint")
    return config


def check_the_runs_data(config, dataset):
    """Data taken from a run's flags must still be the data the run trained on: an --x file
    replaced or edited since was scored against without a word, and the FD was not the one
    of its summary.json. A run saved before fingerprints were kept has none to compare."""
    then = getattr(config, "run_data_fingerprint", None)
    now = dataset.fingerprint()
    if then is None or then == now:
        return
    raise ValueError(f"--samples {config.samples}: {data_in_errors(config)} is not the data "
                     f"the run trained on ({data_change(then, now)}); give those data, or type "
                     f"the data flags to score against these")


def _run_of(directory):
    """"COMMAND on DATASET" (or on its --x array) of the run whose config.json is in
    ``directory``, or None."""
    try:
        saved = read_run_config(directory)
        # an --x run's dataset is the unused default: the array is what it trained on
        return f"{saved['command']} on {saved.get('x') or saved['dataset']}"
    except (OSError, ValueError, KeyError):  # no run's config: say what it lacks
        return None


def _why_no_samples(run, directory):
    """Why a run's directory holds no samples.npy: its command writes none, or (diffusion, gan
    on images) it has not sampled yet."""
    command = run.split()[0]
    if command == "diffusion" or (command == "gan" and not run.endswith(" on ring8")):
        return (f"which has not drawn its samples yet (it is still training, or stopped "
                f"before it sampled: python -m minilean {command} --resume {directory} "
                f"finishes it)")
    return ("which writes none (diffusion and gan on images do); give an .npy array of images "
            "instead")


def _older_than_the_checkpoint(directory):
    """A note when the run in ``directory`` trained on after its samples were drawn (a resume
    stopped before it sampled again: the samples and summary.json are the earlier step's),
    else None. summary.json's step alone would not say it: a resume stopped while it scored
    its new samples (written before summary.json) leaves that step behind too, so the samples
    must also be older than the checkpoint file."""
    checkpoint = os.path.join(directory, CHECKPOINT)
    try:
        with open(os.path.join(directory, "summary.json"), encoding="utf-8") as file:
            sampled = int(json.load(file)["steps"])
        trained = int(load_checkpoint(checkpoint)["step"])
        drawn_later = (os.path.getmtime(os.path.join(directory, "samples.npy"))
                       >= os.path.getmtime(checkpoint))
    except (OSError, ValueError, KeyError, TypeError):  # no summary or checkpoint to compare
        return None
    if trained <= sampled or drawn_later:
        return None
    return (f"note: {directory}'s samples were drawn at step {sampled}, and its checkpoint is "
            f"at step {trained} (a resume stopped before it sampled again: --resume "
            f"{directory} --steps={trained} draws them anew)")


def load_samples(path, count=None):
    """Generated images from a run directory (its samples.npy) or an .npy file, the first
    ``count`` of them (all: None; every one is checked), as float32 in [0, 1]; the same dtype
    and range rules as --x (uint8, or float already in [0, 1]). Samples older than their run's
    checkpoint are scored, with a note on stderr that says so."""
    if os.path.isdir(path):
        directory, run = path, _run_of(path)
        path = os.path.join(directory, "samples.npy")
        if run and not os.path.isfile(path):
            raise FileNotFoundError(f"samples file {path} not found: that directory holds a "
                                    f"run of {run}, {_why_no_samples(run, directory)}")
        note = _older_than_the_checkpoint(directory)
        if note:
            print(f"minilean evaluate: {note}", file=sys.stderr)
    if not os.path.exists(path):  # load_npy says what else is wrong with it
        raise FileNotFoundError(f"samples file {path} not found; train a model first "
                                f"(e.g. python -m minilean diffusion), or give an .npy array")
    where = f"--samples {path}"
    images = load_npy(path, where, "make it with: python -m minilean diffusion")
    # an NHWC array, read as NCHW, would be refused later as images of side C (16x3)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{where}: expected images (N, C, H, W) with C = 1 or 3, found shape "
                         f"{images.shape}")
    check_pixel_values(images, where)
    return float_images(images[:count])  # the file stays memory-mapped: no float32 copy of all


def builtin_image_size(samples, path):
    """The side of the samples, which the built-in shapes are drawn at to be compared with them."""
    height, width = samples.shape[2:]
    if height != width or not MIN_IMAGE_SIZE <= height <= MAX_IMAGE_SIZE:
        raise ValueError(f"--samples {path}: images are {height}x{width}; the built-in shapes "
                         f"they are compared with come square, {MIN_IMAGE_SIZE} to "
                         f"{MAX_IMAGE_SIZE} pixels (or give the real images with --x)")
    return height


def run(config):
    """``python -m minilean evaluate``: print FD-classifier with its floor and ceiling."""
    # the notes of flags typed to no effect (``Command.check``), as a training run prints them
    for note in vars(config).pop("unused_notes", ()):
        print(note, file=sys.stderr)
    prepare_device(config)  # checks the device; --fast-kernels switches the kernels on
    samples = load_samples(config.samples, config.n_eval)  # the most that FD-classifier scores
    # --image-size is ignored for the built-in shapes: they are drawn at the samples' size.
    on_builtin = config.x is None and config.dataset == "builtin"
    image_size = builtin_image_size(samples, config.samples) if on_builtin else config.image_size
    if on_builtin:  # its --n-eval held-out images are generated, then made float32, at once
        check_within_cap("n_eval", config.n_eval, 4 * 3 * image_size**2,
                         f"held-out images of the built-in shapes at {image_size}x{image_size}, "
                         f"as float32", "generated")
    dataset = load_dataset(config.dataset, config.x, config.y, config.n_total, image_size,
                           config.seed, config.data_root)
    check_the_runs_data(config, dataset)
    if samples.shape[1:] != dataset.image_shape:
        raise ValueError(f"--samples {config.samples}: expected images of shape "
                         f"{dataset.image_shape}, as {data_in_errors(config)} holds, found "
                         f"{samples.shape[1:]}")
    report = fd_classifier(samples, dataset, config.device, config.seed, config.n_eval,
                           config.classifier_steps, config.cache)
    print(json.dumps(report, indent=2))
    return report
