"""What every zoo command (vae, vqvae, gan, autoencoder, mae) does around its own model.

    with start(config, locked=(...), value_range=(0, 1)) as session:  seed, data, held out
        fit(session, modules, optimizers, step_fn, description)    run dir, the loop, curve
        ...                                                        the command's evaluation
        session.finish(title, **summary)                           summary.json and TrainLog

Leaving the ``with`` block closes the run directory, so a run that stops anywhere (in its
training, its evaluation, on Ctrl-C) releases its lock: a resume in the same process (a
notebook's, a test's) must not find it held by a run that has stopped.

The data split is fixed by the seed: the last ``held_out_count`` rows (after a seeded
shuffle) are never trained on and are where every held-out number is measured. The held-out
rows (at most 1000) are copied; the training rows stay where the data are (a memory-mapped
``--x`` is never read whole): the Loader reads them a batch at a time, and the baselines fitted
to them ``TRAINING_CHUNK`` rows at a time.
"""
import os

import numpy

from minilean import backend
from minilean.autograd.creation import tensor
from minilean.data import load_dataset
from minilean.data.arrays import float_images, read_rows
from minilean.data.images import save_grid_everywhere
from minilean.data.loader import Loader
from minilean.data.streams import Purpose, stream
from minilean.train.loop import (TrainState, check_batch_fits, check_halved_twice, check_images,
                                 check_same_data, check_samples_finite, data_in_errors, data_source,
                                 default_interval, open_run, prepare_device, run_config,
                                 start_line, summary_line, train, write_trainlog)

HELD_OUT_SHARE, MAX_HELD_OUT = 0.1, 1000
TRAINING_CHUNK = 1024  # training rows read at a time by the baselines (12 MiB of 64x64 uint8)


def held_out_count(rows):
    """10% of the rows, at most 1000 and at least 1 (leaving at least one to train on)."""
    return min(max(1, int(rows * HELD_OUT_SHARE)), MAX_HELD_OUT, rows - 1)


class Session:
    """One run: its config, device, training rows (``train_index``: their indices in
    ``dataset.x``, in the seeded order), held-out rows (a copy) and run directory (opened by
    ``fit``; closed by ``finish`` or on leaving the session's ``with`` block)."""
    def __init__(self, config, dataset, train_index, held_out_rows, value_range):
        self.config, self.device, self.dataset, self.run = config, config.device, dataset, None
        self.train_index, self.held_out_rows = train_index, held_out_rows
        self.value_range = value_range

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if self.run is not None:  # a failed close gives way to the error that stopped the run
            self.run.__exit__(kind, error, traceback)

    def tensor(self, rows):
        """Rows of data as a float32 tensor on the device, in the model's value range."""
        return tensor(float_images(rows, self.value_range), device=self.device)

    def held_out(self, count=None):
        return self.tensor(self.held_out_rows[:count])

    def training_chunks(self):
        """The training rows as stored (uint8, or float in [0, 1]; points), ``TRAINING_CHUNK``
        at a time, each read in file order: what a baseline fits to, without a copy of them
        all (a memory-mapped file read whole, and 4 times that as float32)."""
        for start in range(0, len(self.train_index), TRAINING_CHUNK):
            yield read_rows(self.dataset.x, self.train_index[start:start + TRAINING_CHUNK])

    def mean_training_image(self):
        """The mean of the training images in [0, 1], (1, C, H, W) float32, summed in
        float64 a chunk at a time."""
        total = sum(float_images(chunk).sum(0, dtype=numpy.float64, keepdims=True)
                    for chunk in self.training_chunks())
        return (total / len(self.train_index)).astype(numpy.float32)

    def stream(self, purpose, index=0, sub_index=0):
        """The run's host generator (seed, purpose, index, sub_index) (``data/streams.py``)."""
        return stream(self.config.seed, purpose, index, sub_index)

    def normal(self, shape, purpose, index=0, sub_index=0):
        """A float32 standard normal tensor of ``shape`` on the device, from the host stream
        (seed, purpose, index, sub_index): a checkpoint holds only the CPU generator, so a draw
        from the device's own generator would not repeat after --resume on "cuda"."""
        draw = self.stream(purpose, index, sub_index).standard_normal(shape)
        return tensor(draw.astype(numpy.float32), device=self.device)

    def save_grid(self, name, images, nrow=None):
        """Write images (N, C, H, W), an array or a Tensor, as ``images/<name>.ppm``, and as
        ``.png`` too where Pillow is installed; return the paths written. The model made them:
        a NaN or an infinity among them means that its last steps diverged after the NaN guard
        last looked (a finite loss, then an update to weights that overflow), which the image
        writer's "images hold nan" would blame on the images."""
        images = images.numpy() if hasattr(images, "numpy") else images  # to the host once
        check_samples_finite(images, f"the model after step {self.config.steps} ({name})")
        return save_grid_everywhere(os.path.join(self.run.images_dir, name), images, nrow=nrow,
                                    value_range=self.value_range)

    def save_reconstructions(self, originals, reconstructions, count=16):
        """``images/reconstructions``: ``count`` originals (or all, where there are fewer)
        above their reconstructions."""
        rows = [images.numpy()[:count] for images in (originals, reconstructions)]
        return self.save_grid("reconstructions", numpy.concatenate(rows), nrow=len(rows[0]))

    def finish(self, title, **summary):
        """Write summary.json and the optional TrainLog; print the summary."""
        path = self.run.write_summary(**summary)
        if self.config.log:
            write_trainlog(self.config.log, title, self.run.metrics(),
                           notes=[f"dataset={data_source(self.config)}", f"device={self.device}",
                                  f"lr={self.config.lr:.6f}", f"steps={self.config.steps}"])
        self.run.close()
        # one line, as diffusion's: where the run went and what it measured
        print(f"minilean {self.config.command}: wrote {os.path.dirname(path)} "
              f"{summary_line(summary)}")


def start(config, locked, value_range):
    """Resume or start a run: seed, load and split the data (the run directory opens in
    ``fit``, once the checkpoint has said which step it resumes from).

    ``locked`` names the flags a resumed run may not change; ``value_range`` is (0, 1) or
    (-1, 1) for images and None for points, or a function of the run's config (as resumed: the
    data are the saved run's) that says which."""
    config = run_config(config, locked)
    if callable(value_range):
        value_range = value_range(config)
    prepare_device(config)  # checks the device; --fast-kernels switches the kernels on
    backend.manual_seed(config.seed)
    data = load_dataset(config.dataset, x=config.x, y=config.y, n_total=config.n_total,
                        image_size=config.image_size, data_root=config.data_root,
                        seed=config.seed)
    check_same_data(config, data)
    if len(data) < 2:
        kept = "" if config.n_total is None else f" (--n-total {config.n_total})"
        raise ValueError(f"{data_in_errors(config)}: {len(data)} row(s){kept}; a run needs at "
                         f"least 2 (training and held-out)")
    order = stream(config.seed, Purpose.HELD_OUT_SPLIT).permutation(len(data))
    split = len(data) - held_out_count(len(data))
    check_batch_fits(config.batch_size, split, "training rows")
    return Session(config, data, order[:split], read_rows(data.x, order[split:]), value_range)


def fit(session, modules, optimizers, step_fn, description):
    """Open the run directory and train with the shared loop from step 0, or from the
    checkpoint when resuming (with the learning rate of ``--lr``, given now or saved); then
    draw the loss curve. The run directory stays open for the evaluation: ``finish``, or
    leaving the session's ``with`` block, closes it.

    ``step_fn(batch, step) -> {name: float or 0-d Tensor}`` gets a float32 tensor batch of
    training rows."""
    config = session.config
    state = TrainState(modules, optimizers)
    session.run = open_run(config, state)
    print(start_line(config, list(modules.values()), session.dataset.x.shape[1:], state.step))
    for optimizer in optimizers.values():  # a checkpoint brings back its lr; --lr wins
        optimizer.lr = config.lr
    # the rows by index (a batch of them read at a time), in the seeded order: each epoch's
    # batches are the rows a copy of them in that order would give
    loader = Loader(session.dataset.x, config.batch_size, seed=config.seed,
                    value_range=session.value_range, device=session.device,
                    rows=session.train_index)
    batches = (batch.x for batch in loader.batches(state.step))
    for module in modules.values():
        module.train()
    train(state, step_fn, batches, config.steps, session.run,
          config.log_every or default_interval(config.steps, 100),
          config.checkpoint_every or default_interval(config.steps, 4),
          progress=config.progress, description=description)
    for module in modules.values():
        module.eval()
    # before the evaluation, as diffusion draws it before sampling: a failed evaluation (no
    # memory for it, Ctrl-C) leaves the curve of the training it follows
    session.run.write_loss_curve(keys=("loss", "d_loss", "g_loss"))


def image_shape(session, halved_twice_by=None):
    """(C, H, W) of the session's images; a one-line error for point data such as ring8, and,
    for a network that halves the side twice (``halved_twice_by``, in words), for a height or
    width that is not a multiple of 4."""
    check_images(session.config, session.dataset)
    shape = tuple(session.dataset.image_shape)
    if halved_twice_by:
        check_halved_twice(session.config, shape, halved_twice_by)
    return shape


def mean_over_chunks(score, rows, size):
    """The mean over ``rows`` of a per-row score, taken ``size`` rows at a time (evaluation
    passes): ``score(chunk, index)`` is the mean over the ``index``-th chunk of consecutive rows,
    and each chunk counts by its length (the last may be shorter)."""
    pieces = [rows[start:start + size] for start in range(0, len(rows), size)]
    return numpy.average([score(piece, index) for index, piece in enumerate(pieces)], axis=0,
                         weights=[len(piece) for piece in pieces])
