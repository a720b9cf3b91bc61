"""``python -m minilean diffusion``: train a denoiser, sample, write the run directory.

    config (checked flags) -> dataset -> Loader (images in [-1, 1]) -> UNet or ResidualEpsNet
    -> Adam (linear warm-up, then cosine decay or constant) + EMA, each step:
       t ~ U{0..T-1}, eps ~ N(0, I), loss = |model(q_sample) - v|^2 (--prediction v, the
       default; --prediction eps: |model(q_sample) - eps|^2), gradients clipped to global
       norm GRAD_CLIP, then the Adam update and the EMA's
       (with --cuda-graph the loss and gradients are one replayed CUDA graph; Adam, EMA after)
    -> samples from the EMA weights (ddpm | ddim | pf-euler; with --cuda-graph each step's
       network call is a replayed graph too) -> images, FD-classifier, summary

Every random draw of step k comes from the stream (seed, TRAINING_STEP, k), and sampling noise
from (seed, SAMPLING_NOISE, sampler step) (``minilean/data/streams.py``), so a resumed run
repeats an uninterrupted one exactly, on either device.
"""
import contextlib
import os
import sys
import time

import numpy

from minilean import backend
from minilean.atomic import save_npy
from minilean.autograd.creation import tensor
from minilean.autograd.grad_mode import no_grad
from minilean.autograd.tensor import Tensor
from minilean.data import Loader, load_dataset
from minilean.data.images import save_grid, save_grid_everywhere, to_uint8
from minilean.data.streams import Purpose, stream
from minilean.models import diffusion as D
from minilean.models.classifier import check_fd_report, fd_report
from minilean.optim import EMA, Adam, clip_grad_norm_, warmup_constant, warmup_cosine
from minilean.train.loop import (LOCKED_DATA_FLAGS, TrainState, check_batch_fits,
                                 check_halved_twice, check_images, check_same_data,
                                 check_samples_finite, check_samples_fit, data_source,
                                 default_interval, open_run, prepare_device, run_config,
                                 start_line, summary_line, train, write_trainlog)

# What defines the model and its data: a resumed run must keep these.
LOCKED_FLAGS = LOCKED_DATA_FLAGS + ("arch", "hidden_c", "T", "schedule", "beta_start", "beta_end",
                                    "ema", "prediction")
GRAD_CLIP = 1.0  # global gradient-norm clip of the DDPM recipe


def build_model(config, channels):
    if config.arch == "residual":
        from minilean.models.residual import ResidualEpsNet
        return ResidualEpsNet(channels, config.T, config.hidden_c)
    from minilean.models.unet import UNet
    return UNet(channels, config.hidden_c)


def lr_factor(config):
    """``factor(index)`` of the learning rate at optimizer update ``index`` (0-based).

    A function of the step alone (no scheduler state), so a resumed run continues the same
    curve; the cosine ends at ``--lr-decay-steps`` (default: this run's ``--steps``).
    """
    if config.lr_schedule == "constant":
        return lambda index: warmup_constant(index, config.warmup_steps)
    horizon = config.lr_decay_steps or config.steps
    return lambda index: warmup_cosine(index, config.warmup_steps, horizon)


def image_dataset(config):
    """The training images named by the data flags (images only: ring8 is 2-D points)."""
    dataset = load_dataset(config.dataset, config.x, config.y, config.n_total,
                           config.image_size, config.seed, config.data_root)
    check_images(config, dataset)
    return dataset


def sampling_noise(config, shape, device):
    """``noise(t)``: the standard normal draw of sampler step t (the same on every run)."""
    def noise(t):
        draw = stream(config.seed, Purpose.SAMPLING_NOISE, int(t)).standard_normal(shape)
        return tensor(draw.astype(numpy.float32), device=device)
    return noise


def uses_graph(config):
    """Whether ``--cuda-graph`` applies: on "cuda" (it does nothing on the CPU)."""
    return config.cuda_graph and config.device == "cuda"


class GraphNetwork:
    """``network(x, t)`` as the samplers call it (one timestep for the batch), replayed as one
    CUDA graph: ``--cuda-graph`` sampling, where each step otherwise launches the network's
    hundred-odd kernels from Python.

    Captured at the first call for each shape of x (``--sample-batch`` makes two: the full
    batches and the last). The timestep goes in as an input array of per-example timesteps,
    so each replay reads it (a number would be baked into the graph as it was at the
    capture). Each call returns the graph's output array, which the next call of that shape
    overwrites: the samplers use it before they call again. A network that cannot be
    captured runs as it is, for every shape, after a one-line note.
    """

    def __init__(self, network):
        self.network, self.replays = network, {}

    def _run(self, x, times):
        return self.network(Tensor(x), times).data

    def __call__(self, x, t):
        times = D.timesteps_for_batch(t, x.shape[0])
        if x.shape not in self.replays:
            self.replays[x.shape] = self._replay_for(x.data, times)
        return Tensor(self.replays[x.shape](x.data, times))

    def _replay_for(self, x, times):
        """A graph captured for x's shape; the network as it is once a capture failed, for
        this shape and every later one (what stops a capture, a copy to the host or a sync,
        is in the network's code, not in a shape: one note says so, once)."""
        if self._run in self.replays.values():
            return self._run
        from minilean.cuda.graph import CapturedCall, GraphCaptureError
        try:
            return CapturedCall(self._run, (x, times))
        except GraphCaptureError as error:
            print(f"minilean: --cuda-graph: sampling without a graph: {error}", file=sys.stderr)
            return self._run


def sample(eps_model, config, betas, x_T):
    """Run the chosen sampler from ``x_T`` (no gradients)."""
    alpha_bar = D.alpha_bars(betas)
    noise = sampling_noise(config, x_T.shape, x_T.device)
    with no_grad():
        if config.sampler == "ddpm":
            return D.ddpm_sample(eps_model, betas, x_T, noise, clip=config.clip)
        if config.sampler == "ddim":
            timesteps = D.respaced_timesteps(config.T, config.sample_steps)
            return D.ddim_sample(eps_model, alpha_bar, x_T, timesteps, config.eta, noise,
                                 clip=config.clip)
        x = D.pf_ode_sample_euler(D.ContinuousSchedule(betas).rhs(eps_model), x_T,
                                  config.sample_steps)
        return x.clamp(-1.0, 1.0) if config.clip else x


def run(config):
    config = run_config(config, LOCKED_FLAGS)
    prepare_device(config)
    use_graph = uses_graph(config)
    if config.cuda_graph and not use_graph:
        print("minilean: --cuda-graph has no effect on the CPU", file=sys.stderr)

    dataset = image_dataset(config)
    check_same_data(config, dataset)
    if config.arch == "unet":
        check_halved_twice(config, dataset.image_shape, "--arch unet")
    check_fd_report(config, dataset)
    check_batch_fits(config.batch_size, len(dataset), "rows of the dataset")
    check_samples_fit(config.n_samples, dataset.image_shape)
    betas = D.make_betas(config.schedule, config.T, config.beta_start, config.beta_end)
    alpha_bar = D.alpha_bars(betas)
    backend.manual_seed(config.seed)
    channels = dataset.image_shape[0]
    model = build_model(config, channels).to(config.device)
    optimizer = Adam(model.parameters(), lr=config.lr)
    emas = {"model": EMA(model, config.ema)} if config.ema > 0 else {}
    state = TrainState({"model": model}, {"optimizer": optimizer}, emas)
    loader = Loader(dataset, config.batch_size, seed=config.seed, device=config.device)
    factor = lr_factor(config)
    prediction_loss = D.v_prediction_loss if config.prediction == "v" else D.eps_prediction_loss
    run_dir = open_run(config, state)
    print(start_line(config, [model], dataset.image_shape, state.step))

    def loss_and_clipped_grads(x0, t, eps):
        """Return the loss array and leave its clipped gradients in the parameters' ``.grad``,
        from arrays on the device (``t`` may be on the host): the part of a step that
        ``--cuda-graph`` captures and replays."""
        loss = prediction_loss(model, alpha_bar, Tensor(x0), t, Tensor(eps))
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), GRAD_CLIP)
        return loss.data

    replay = []  # with --cuda-graph: ``loss_and_clipped_grads`` captured at the first step

    def step_fn(batch, step):
        generator = stream(config.seed, Purpose.TRAINING_STEP, step)
        x0 = batch.x.data
        t = D.sample_timesteps(x0.shape[0], config.T, generator)
        eps = generator.standard_normal(x0.shape).astype(numpy.float32)
        if use_graph and not replay:
            from minilean.cuda.graph import CapturedCall, GraphCaptureError
            try:
                replay.append(CapturedCall(loss_and_clipped_grads, (x0, t, eps)))
            except GraphCaptureError as error:
                raise GraphCaptureError(f"--cuda-graph: {error} (continue without it: "
                                        f"--resume={config.out} --cuda-graph=false)") from error
        if replay:  # a copy of the loss: the next replay writes the same array again
            loss = tensor(replay[0](x0, t, eps))
        else:
            loss = Tensor(loss_and_clipped_grads(x0, t, backend.to_device(eps, config.device)))
        optimizer.lr = config.lr * factor(step - 1)
        optimizer.step()
        for ema in emas.values():
            ema.update(model)
        return {"loss": loss}

    with run_dir:
        train(state, step_fn, loader.batches(state.step), config.steps, run_dir,
              config.log_every or default_interval(config.steps, 100),
              config.checkpoint_every or default_interval(config.steps, 4),
              progress=config.progress, description="diffusion")
        run_dir.write_loss_curve()
        records = run_dir.metrics()
        if config.log:
            write_trainlog(config.log, "Diffusion", records,
                           [f"dataset={data_source(config)}", f"device={config.device}",
                            f"lr={config.lr:.6f}", f"T={config.T}", f"arch={config.arch}"])
        summary = write_images(config, model, emas, betas, dataset, run_dir)
        summary["final_loss"] = records[-1]["loss"] if records else None
        summary["steps"] = state.step
        # this process's CPU time, honest under shared cores (a resumed run: its last part)
        summary["cpu_seconds"] = round(time.process_time(), 1)
        run_dir.write_summary(**summary)
    print(f"minilean diffusion: wrote {run_dir.path} {summary_line(summary)}")
    return summary


def write_images(config, model, emas, betas, dataset, run_dir):
    """Samples (EMA weights), optional reference/noisy/reconstruction grids, FD-classifier."""
    shape = (config.n_samples,) + dataset.image_shape
    x_T = tensor(stream(config.seed, Purpose.SAMPLING_START).standard_normal(shape)
                 .astype(numpy.float32), device=config.device)
    model.eval()
    averaged = emas["model"].average_parameters(model) if emas else contextlib.nullcontext()

    def eps_model(network):
        return D.eps_model_from_v(network, D.alpha_bars(betas)) if config.prediction == "v" \
            else network

    with averaged:  # (the graph reads the parameters' arrays, which hold the averages here)
        sampler_network = GraphNetwork(model) if uses_graph(config) else model
        if config.n_samples > config.sample_batch:
            sampler_network = D.in_batches(sampler_network, config.sample_batch)
        images = check_samples_finite(sample(eps_model(sampler_network), config, betas,
                                             x_T).numpy(), f"the {config.sampler} sampler")
        reconstruction = _reconstruct(config, eps_model(model), betas, dataset) \
            if config.noisy_ppm or config.reconstruct_ppm else None
    samples = to_uint8(images, (-1.0, 1.0))
    save_npy(run_dir.file("samples.npy"), samples)  # for `minilean evaluate`
    # the grids in the run by their paths from its folder, where summary.json is: a path from
    # the working folder (--out relative) named no file once read from another, or once the
    # run was moved; the files flags name outside it by the absolute paths config.json saves
    written = [os.path.relpath(path, run_dir.path) for path in
               save_grid_everywhere(os.path.join(run_dir.images_dir, "samples"), samples[:64])]
    extra = {"sample_ppm": samples[:64], "reference_ppm": dataset.images_float(slice(0, 64))}
    if reconstruction is not None:
        extra.update(noisy_ppm=reconstruction[0], reconstruct_ppm=reconstruction[1])
    for flag, pictures in extra.items():
        path = getattr(config, flag)
        if path:
            save_grid(path, pictures)
            written.append(path)
    summary = {"images": written, "sampler": config.sampler}
    if config.evaluate and dataset.y is not None:
        summary["fd_classifier"] = fd_report(config, dataset, samples)
    return summary


def _reconstruct(config, eps_model, betas, dataset):
    """Real images noised to ``reconstruct_step`` and their DDIM reconstruction, in [0, 1]."""
    alpha_bar = D.alpha_bars(betas)
    step = config.T // 4 if config.reconstruct_step is None else config.reconstruct_step
    x0 = tensor(dataset.images_float(slice(0, 16)) * 2.0 - 1.0, device=config.device)
    generator = stream(config.seed, Purpose.NOISY_IMAGES)
    eps = tensor(generator.standard_normal(x0.shape).astype(numpy.float32), device=config.device)
    noisy = D.q_sample(alpha_bar, x0, step, eps)
    with no_grad():
        restored = D.ddim_sample(eps_model, alpha_bar, noisy, list(range(step, -1, -1)),
                                 clip=config.clip)
    return [numpy.clip((image.numpy() + 1.0) / 2.0, 0.0, 1.0) for image in (noisy, restored)]
