"""FD-classifier: a Frechet distance in the feature space of a small classifier trained here.

Without a pretrained Inception network (nothing is downloaded), sample quality is measured as
in FID but with our own feature extractor: a small CNN trained with minilean on the dataset's
labels (once; cached as a checkpoint keyed by the data, labels, seed and training recipe,
``_cache_path``). Its penultimate layer maps images to feature vectors; each image set is
summarised by the mean and covariance of its features, and

    FD = |mu_1 - mu_2|^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2)).

The generated samples are compared with held-out real images, next to two references computed
with the same number of images: real *training* images (the floor: what a perfect model would
score at this sample size, since the estimate is biased upward for small N) and Gaussian noise
images (the ceiling: what an untrained sampler emits). Numbers are comparable only with each
other, never with published FIDs.
"""
import hashlib
import json
import os
import sys

import numpy

from minilean.autograd.creation import tensor
from minilean.autograd.grad_mode import no_grad
from minilean.data.paths import creatable_problem
from minilean.data.streams import KEY_LIMIT, Purpose, stream
from minilean.errors import flag_error
from minilean.nn import Conv2d, Linear, Module
from minilean.nn import functional as F

FEATURES = 32
RUN_FD_IMAGES = 500  # real images in each reference set when a training run scores its samples
HELD_OUT_SEED_OFFSET = 1000
# The training recipe. 400 constant-lr steps stopped at the end of the initial plateau (75%
# held out on 16x16 shapes); 800 steps of warm-up + cosine at 5e-3 reach 94.6-97.4% over
# seeds 0-3 (16x16; 96.2% at seed 0, the README's) in 8-30 s of one CPU thread.
CLASSIFIER_STEPS, CLASSIFIER_LR, WARMUP_STEPS = 800, 5e-3, 50
# Image rows of the data the cache's key hashes, spread over all of them (Dataset.spread_rows).
# 1024 rows of 64x64 RGB are 12 MiB to read, a moment beside the training they may save, and
# they put one row in 1,250 of ImageNet-64's 1.28 million into the key (one in 20,000 with the
# 64 rows of a resumed run's fingerprint).
CACHE_KEY_ROWS = 1024
# Where the classifiers are cached (a training run's always, relative to the working folder),
# and the batch size they train with
CLASSIFIER_CACHE, CLASSIFIER_BATCH = "runs/classifiers", 64


class FeatureClassifier(Module):
    """conv 3x3 (C->16) / stride-2 convs (16->32->64) with ReLU, global mean pool,
    Linear(64 -> 32) + ReLU = the features, Linear(32 -> classes) = the logits."""

    def __init__(self, channels, classes):
        super().__init__()
        self.conv1 = Conv2d(channels, 16, 3, padding=1)
        self.conv2 = Conv2d(16, 32, 3, stride=2, padding=1)
        self.conv3 = Conv2d(32, 64, 3, stride=2, padding=1)
        self.hidden = Linear(64, FEATURES)
        self.head = Linear(FEATURES, classes)

    def features(self, x):
        h = self.conv3(self.conv2(self.conv1(x).relu()).relu()).relu()
        return self.hidden(h.mean(dim=(2, 3))).relu()

    def forward(self, x):
        return self.head(self.features(x))


def frechet_distance(mean1, cov1, mean2, cov2):
    """FD between N(mean1, cov1) and N(mean2, cov2), in float64 on the host.

    The cross term Tr sqrt(A cov2 A) with A = sqrt(cov1) is taken as the sum of the singular
    values of A B, B = sqrt(cov2): A cov2 A = (A B)(A B)^T. Only symmetric eigendecompositions
    are needed (eigenvalues below 0 are rounding: clipped), and no square root is taken of a
    rounding-sized eigenvalue of A cov2 A: with a singular covariance (fewer images than
    features, or a feature that is always 0) the older sqrt(eigvalsh(A cov2 A)) gave
    FD(a, a) < 0 and FD(a, b) != FD(b, a), by ~sqrt(u) of the traces.
    """
    def sqrtm_psd(matrix):
        values, vectors = numpy.linalg.eigh((matrix + matrix.T) / 2)
        return (vectors * numpy.sqrt(numpy.clip(values, 0, None))) @ vectors.T

    cov1, cov2 = numpy.asarray(cov1, numpy.float64), numpy.asarray(cov2, numpy.float64)
    cross = numpy.linalg.svd(sqrtm_psd(cov1) @ sqrtm_psd(cov2), compute_uv=False).sum()
    difference = numpy.asarray(mean1, numpy.float64) - numpy.asarray(mean2, numpy.float64)
    distance = float(difference @ difference + numpy.trace(cov1) + numpy.trace(cov2)
                     - 2.0 * cross)
    # a squared distance, >= 0: identical sets came out a rounding below 0 (-1e-12 for 500
    # held-out images scored against themselves); a NaN stays NaN (max(0, nan) would be 0)
    return 0.0 if distance < 0 else distance


def gaussian_fit(features):
    """Mean and unbiased covariance of feature rows (N, D), float64."""
    features = numpy.asarray(features, numpy.float64)
    return features.mean(axis=0), numpy.cov(features, rowvar=False)


def _signed(images_unit):
    return images_unit * 2.0 - 1.0  # [0, 1] -> [-1, 1], the models' range


# The bytes of the data's name a cache file's name holds: with "classifier-", the digest,
# ".npz" and the temporary name's extra bytes (atomic_open), well within 255
CACHE_NAME_BYTES = 100


def classes_of(dataset):
    """The classifier's outputs: every class the data name, also one whose rows all lie in a
    held-out tail or past --n-total (a converted folder's manifest names them all)."""
    return max(len(dataset.class_names), int(numpy.max(dataset.y)) + 1)


def _cache_path(cache, dataset, seed, steps, lr, batch_size, rows=None):
    """A file name from what the classifier depends on: the data's name and shape, the recipe
    (seed, steps, lr, warm-up and batch size), ``CACHE_KEY_ROWS`` image rows spread over all
    the data (``Dataset.spread_rows``, the first and the last among them), every label, and
    the rows it trains on, where not all.

    All the labels go in (8 bytes a row, cheap to hash): the classifier is trained on them, so
    the same images with other labels, or another number of classes, is another classifier
    (also where only the class names give it).
    The images are not all read (a memory-mapped file may be gigabytes): an edit confined to
    rows between the hashed ones keeps the key, and the classifier of the data as they were is
    reused (remove its file from ``cache`` to train it again).
    """
    digest = hashlib.sha256()
    # the order's purpose is named so that a file trained before the classifier had an order
    # of its own (in the model's, ``DATA_ORDER``) is not taken for this recipe's
    digest.update(json.dumps([dataset.name, list(dataset.x.shape), seed, steps, lr,
                              WARMUP_STEPS, batch_size, Purpose.FD_CLASSIFIER_ORDER.name])
                  .encode())
    digest.update(numpy.ascontiguousarray(dataset.x[dataset.spread_rows(CACHE_KEY_ROWS)])
                  .tobytes())
    labels = numpy.zeros(0, numpy.int64) if dataset.y is None else dataset.y
    digest.update(numpy.ascontiguousarray(labels, numpy.int64).tobytes())
    if rows is not None:
        digest.update(numpy.ascontiguousarray(rows, numpy.int64).tobytes())
    # the classes the labels do not reach (named by a manifest, or by the labels of rows
    # --n-total leaves out) are outputs of the classifier too: the same images and labels
    # with other class names was the same file, refused for its head's shape. Hashed only
    # then, so that every other cache file keeps its name.
    if len(labels) and len(dataset.class_names) > int(numpy.max(labels)) + 1:
        digest.update(json.dumps(["classes", classes_of(dataset)]).encode())
    # the data's name is in the digest; in the file's name only its first CACHE_NAME_BYTES, so
    # that a long --x file name (255 bytes are allowed; 70 CJK characters make 210) cannot make
    # the cache's name longer than its file system takes, which failed after the classifier
    # trained, and the run that wanted it, on every resume
    name = os.fsencode(dataset.name)[:CACHE_NAME_BYTES].decode(errors="ignore")
    return os.path.join(cache, f"classifier-{name}-{digest.hexdigest()[:16]}.npz")


def trained_classifier(dataset, device, seed=0, steps=CLASSIFIER_STEPS,
                       cache=CLASSIFIER_CACHE, batch_size=CLASSIFIER_BATCH, lr=CLASSIFIER_LR,
                       rows=None):
    """The feature classifier of ``dataset``'s ``rows`` (default: all of them): loaded from
    ``cache``, or trained and saved.

    Adam with a linear warm-up and a cosine decay to 0 over ``steps``.
    """
    from minilean import backend
    from minilean.data import Loader
    from minilean.optim import (Adam, load_checkpoint, minimize, save_checkpoint,
                                warmup_cosine_scheduler)

    classes = classes_of(dataset)
    path = _cache_path(cache, dataset, seed, steps, lr, batch_size, rows)
    if os.path.isfile(path):
        model = FeatureClassifier(dataset.image_shape[0], classes)
        try:
            model.load_state_dict(load_checkpoint(path)["model"])
        except (ValueError, KeyError) as error:  # damaged, or not written by this function
            # the message must say the file is a cache, which removing it rebuilds
            raise ValueError(f"cached classifier {path} cannot be used ({error}); remove it "
                             f"and it is trained again") from error
        return model.to(device).eval(), path
    check_cache_takes(path)
    backend.manual_seed(seed)
    model = FeatureClassifier(dataset.image_shape[0], classes).to(device)
    optimizer = Adam(model.parameters(), lr=lr)
    schedule = warmup_cosine_scheduler(optimizer, min(WARMUP_STEPS, steps), steps)
    trained_rows = len(dataset) if rows is None else len(rows)
    batches = Loader(dataset, min(batch_size, trained_rows), seed=seed, device=device,
                     rows=rows, order_purpose=Purpose.FD_CLASSIFIER_ORDER).batches()
    for _ in range(steps):
        batch = next(batches)
        minimize(optimizer, F.cross_entropy(model(batch.x), batch.y))
        schedule.step()
    os.makedirs(os.path.realpath(cache), exist_ok=True)  # through a link, as make_folder
    save_checkpoint(path, model=model.state_dict(), classes=classes, steps=steps)
    return model.eval(), path


def check_cache_takes(path):
    """Before a classifier is trained for the missing cache file ``path``: the file can be
    made there. A read-only cache folder (or working folder, for a training run's
    ``runs/classifiers``) failed only at the save, after the classifier had trained (and a
    run's whole training before it), and a training run said only "[Errno 30] Read-only file
    system: 'runs'". A read-only folder that already holds the classifier serves as it is."""
    problem = creatable_problem(path, file=True)
    if problem:
        raise OSError(f"cannot cache the FD-classifier's classifier at {path}: expected "
                      f"{problem}")


def _in_batches(function, images_unit, device, batch_size):
    """``function`` of images in [0, 1] (N, C, H, W), given as the models' [-1, 1] tensors
    ``batch_size`` at a time (the activations of all N at once grow with N: gigabytes for
    10,000 64x64 images), concatenated as a host array."""
    rows = []
    with no_grad():
        for start in range(0, len(images_unit), batch_size):
            chunk = _signed(numpy.asarray(images_unit[start:start + batch_size], numpy.float32))
            rows.append(function(tensor(chunk, device=device)).numpy())
    return numpy.concatenate(rows)


def features_of(model, images_unit, device, batch_size=256):
    """Penultimate features of images in [0, 1] (N, C, H, W), as a float64 host array."""
    return _in_batches(model.features, images_unit, device, batch_size).astype(numpy.float64)


def accuracy(model, images_unit, labels, device, batch_size=256):
    """The share of images in [0, 1] whose largest logit is at their label."""
    logits = _in_batches(model, images_unit, device, batch_size)
    return float((logits.argmax(axis=1) == numpy.asarray(labels)).mean())


def reference_rows(dataset, n, seed, n_train=None):
    """(training reference rows, held-out rows) of a dataset other than the built-in shapes:
    ``n_train`` (default n) and n row indices, apart, drawn by a permutation from ``seed``
    (each sorted, so that a memory-mapped file is read in order). Not the first and the last
    n rows: a converted image folder lists its images class by class, so those would be two
    different classes. For the same reason fewer training rows than n are the first n_train
    of the permutation, not the first n_train of the n sorted ones (the lowest rows: one
    class)."""
    if len(dataset) < 2 * n:
        raise ValueError(f"FD-classifier needs {2 * n} real images (n={n} twice), the dataset "
                         f"has {len(dataset)}")
    order = stream(seed, Purpose.FD_REFERENCE).permutation(len(dataset))
    n_train = n if n_train is None else min(n_train, n)
    return numpy.sort(order[:n_train]), numpy.sort(order[len(dataset) - n:])


def reference_sets(dataset, n, seed, n_train=None):
    """(real training images, held-out real images, held-out labels) in [0, 1]: ``n_train``
    (default n; the floor's, as many as the samples scored) training rows and n held-out ones.

    Built-in shapes: the held-out set is freshly generated with another seed. Other datasets:
    ``reference_rows``; the held-out rows are kept from the classifier's training too
    (``classifier_rows``).
    """
    n_train = n if n_train is None else min(n_train, n)
    if dataset.name == "builtin":
        if len(dataset) < 2:  # the floor fits a covariance to its rows
            raise ValueError(f"FD-classifier needs at least 2 real images, the dataset has "
                             f"{len(dataset)}")
        from minilean.data import make_shapes
        # wrapped into the seeds' range: --seed 4294967295 is a seed, seed + 1000 is not
        held_out, labels = make_shapes(n, dataset.image_shape[1],
                                       (seed + HELD_OUT_SEED_OFFSET) % KEY_LIMIT)
        return (dataset.images_float(slice(0, n_train)),
                held_out.astype(numpy.float32) / 255.0, labels)
    train_rows, held_out_rows = reference_rows(dataset, n, seed, n_train)
    return (dataset.images_float(train_rows), dataset.images_float(held_out_rows),
            dataset.y[held_out_rows])


def classifier_rows(dataset, n, seed):
    """The rows the classifier trains on: None (every row) for the built-in shapes, whose
    held-out set is drawn afresh; else all but the held-out rows of ``reference_rows``: a
    classifier that had seen them would make their accuracy a training accuracy, and their
    features the ones it was fitted to."""
    if dataset.name == "builtin":
        return None
    return numpy.setdiff1d(numpy.arange(len(dataset)), reference_rows(dataset, n, seed)[1])


def noise_images(n, image_shape, seed):
    """The ceiling: standard Gaussian noise in the models' [-1, 1] space, clipped, in [0, 1]."""
    noise = stream(seed, Purpose.NOISE_CEILING).standard_normal((n,) + image_shape)
    return numpy.clip((noise + 1.0) / 2.0, 0.0, 1.0).astype(numpy.float32)


def fd_classifier(samples_unit, dataset, device, seed=0, n_eval=500, steps=CLASSIFIER_STEPS,
                  cache=CLASSIFIER_CACHE):
    """FD-classifier of samples (N, C, H, W) in [0, 1], with floor, ceiling and the details."""
    if dataset.y is None:
        raise ValueError("FD-classifier trains a classifier on labels; this dataset has none "
                         "(give --y with --x)")
    if samples_unit.shape[1:] != dataset.image_shape:
        raise ValueError(f"samples have shape {samples_unit.shape[1:]}, the dataset's images "
                         f"{dataset.image_shape}")
    if len(samples_unit) < 2:
        raise ValueError(f"FD-classifier needs at least 2 samples, got {len(samples_unit)}")
    # the samples, the floor and the ceiling are scored with the same number of images (a
    # Gaussian fit to fewer lies further away): a small built-in dataset has fewer real ones
    n = min(len(samples_unit), n_eval, len(dataset))
    train_real, held_out, held_out_labels = reference_sets(dataset, n_eval, seed, n)
    model, path = trained_classifier(dataset, device, seed, steps, cache,
                                     rows=classifier_rows(dataset, n_eval, seed))
    reference = gaussian_fit(features_of(model, held_out, device))

    def distance(images):
        return frechet_distance(*gaussian_fit(features_of(model, images[:n], device)), *reference)

    return {"fd_classifier": distance(samples_unit), "floor_real_train": distance(train_real),
            "ceiling_noise": distance(noise_images(n, dataset.image_shape, seed)),
            "n_images": n, "n_held_out": len(held_out),
            "classifier_accuracy_held_out": accuracy(model, held_out, held_out_labels, device),
            # absolute: a run's summary.json keeps the report, and a path from the working
            # folder (runs/classifiers, a relative --cache) names no file from anywhere else
            "classifier": os.path.abspath(path)}


def fd_report(config, dataset, images_uint8):
    """FD-classifier of a training run's samples (used by ``diffusion`` and the zoo): the first
    ``RUN_FD_IMAGES``, all it scores (a float32 copy of all --n-samples would be 4 times their
    bytes, and as much again for the division)."""
    first = images_uint8[:RUN_FD_IMAGES]
    return fd_classifier(first.astype(numpy.float32) / 255.0, dataset, config.device,
                         seed=config.seed, n_eval=RUN_FD_IMAGES)


def check_fd_report(config, dataset):
    """Before training, with ``--evaluate``: data without labels get a one-line notice that
    FD-classifier is skipped (it trains a classifier on them; the run goes on without it);
    otherwise ``fd_report`` must have what it needs, ``--n-samples`` of at least 2 (it fits a
    covariance) and the real images (2 for the built-in shapes, whose held-out set is drawn
    afresh: the floor fits a covariance to their training images), or it is a flag error now,
    not after the run. A ``CLASSIFIER_CACHE`` that cannot take the classifier it would train
    is refused now too (``check_cache_takes``)."""
    if not config.evaluate:
        return
    if dataset.y is None:
        print("minilean: --evaluate: FD-classifier is skipped, the data have no labels (give "
              "--y with --x; --noevaluate silences this)", file=sys.stderr)
        return
    if config.n_samples < 2:
        raise flag_error("n_samples", config.n_samples, "an integer >= 2 with --evaluate "
                                                        "(FD-classifier fits a covariance to the "
                                                        "samples), or --noevaluate")
    if dataset.name == "builtin" and len(dataset) < 2:
        raise flag_error("n_total", config.n_total, "an integer >= 2 with --evaluate (the floor "
                                                    "of FD-classifier fits a covariance to the "
                                                    "training images), or --noevaluate")
    if dataset.name != "builtin" and len(dataset) < 2 * RUN_FD_IMAGES:
        raise flag_error("evaluate", config.evaluate,
                         f"false for this dataset: FD-classifier needs {2 * RUN_FD_IMAGES} real "
                         f"images ({RUN_FD_IMAGES} twice), it has {len(dataset)}")
    # the classifier fd_report will use, or train and cache: a cache it cannot write into is
    # an error now, not after the run
    path = _cache_path(CLASSIFIER_CACHE, dataset, config.seed, CLASSIFIER_STEPS, CLASSIFIER_LR,
                       CLASSIFIER_BATCH, classifier_rows(dataset, RUN_FD_IMAGES, config.seed))
    if not os.path.isfile(path):
        check_cache_takes(path)
