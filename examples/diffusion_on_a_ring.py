"""A denoising diffusion model (DDPM) in one page: learn the 8-Gaussian ring, then sample it.

The same functions the CLI's image model trains with (``minilean/models/diffusion.py``), on
2-D points instead of images, so every piece is in view and the whole run takes seconds:

1. the forward process noises a clean point x0 to x_t = sqrt(alpha_bar_t) x0 + sqrt(1 -
   alpha_bar_t) eps for a random timestep t (``q_sample``), on a cosine schedule;
2. a small MLP learns, from x_t and t, to predict v = sqrt(alpha_bar_t) eps - sqrt(1 -
   alpha_bar_t) x0 (``v_prediction_loss``: the CLI's default; predicting eps itself works
   too, less precisely here);
3. ancestral sampling starts from pure noise x_T ~ N(0, I) and runs the reverse chain
   x_t -> x_{t-1}, each step with the noise eps that the predicted v implies
   (``eps_model_from_v``, ``ddpm_sample``).

The data are the GAN's ring of 8 Gaussians (radius 2, std 0.05; ``minilean.data.make_ring8``).
The script prints the loss as it trains (its floor is far from 0: at high noise x_t says
little about x0, and v is then mostly -x0), then how many of the 8 modes the samples reach and
what share of them lands within 3 standard deviations of a mode (for the data itself: 99%).

Run:  python examples/diffusion_on_a_ring.py
"""
import numpy

import minilean as ml
from minilean import nn, optim
from minilean.data import RING8_STD, make_ring8, nearest_ring8_mode
from minilean.models import diffusion
from minilean.models.unet import sinusoidal_embedding

T = 100  # timesteps of the forward process
TIME_FEATURES = 16  # width of the timestep's sinusoidal embedding


class VModel(nn.Module):
    """v_hat(x_t, t): an MLP over the point and a sinusoidal embedding of the timestep (the
    U-Net's), which tells the timesteps apart far better than t itself as one input."""

    def __init__(self, hidden=128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 + TIME_FEATURES, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x, t):
        # t: one timestep (sampling) or one per point (training). The embedding's frequencies
        # (1 down to 10000^(-7/8) = 3e-4 radians per unit at 16 features) were made for
        # thousands of positions: on 0..999 instead of 0..99 its slow features tell early from
        # late timesteps (0.56 of the samples near a mode without the stretch, 0.84 with it)
        time = sinusoidal_embedding(numpy.asarray(t) * (1000 / T), TIME_FEATURES, x.shape[0], x)
        return self.net(ml.cat([x, time], dim=1))  # (B, 2 + TIME_FEATURES) -> (B, 2)


def main(steps=3000, batch_size=256, n_samples=1000, seed=0):
    # The products here are small (256 x 128): split among the BLAS library's threads, each
    # waits for the slowest, which on a machine busy with other work stretched the run from 9 s
    # to nearly 3 minutes (README, "Threads"). One thread is as fast here when the machine idles.
    ml.set_num_threads(1)
    ml.manual_seed(seed)
    points, _ = make_ring8(10_000, seed)
    betas = diffusion.make_betas("cosine", T)
    alpha_bar = diffusion.alpha_bars(betas)
    model = VModel()
    optimizer = optim.Adam(model.parameters(), lr=2e-3)
    scheduler = optim.warmup_cosine_scheduler(optimizer, warmup_steps=100, total_steps=steps)
    rng = numpy.random.default_rng(seed)

    def standard_normal(*shape):
        return ml.tensor(rng.standard_normal(shape).astype(numpy.float32))

    losses = []

    for step in range(steps):
        x0 = ml.tensor(points[rng.integers(0, len(points), batch_size)])
        t = diffusion.sample_timesteps(batch_size, T, rng)
        eps = standard_normal(batch_size, 2)
        loss = diffusion.v_prediction_loss(model, alpha_bar, x0, t, eps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if (step + 1) % 500 == 0:
            print(f"steps {step - 498:4d}-{step + 1:4d}  mean loss {numpy.mean(losses):.4f}")
            losses = []

    with ml.no_grad():
        eps_model = diffusion.eps_model_from_v(model, alpha_bar)
        samples = diffusion.ddpm_sample(eps_model, betas, standard_normal(n_samples, 2),
                                        noise=lambda t: standard_normal(n_samples, 2)).numpy()
    mode, distance = nearest_ring8_mode(samples)
    close = distance < 3 * RING8_STD
    print(f"modes reached: {len(numpy.unique(mode[close]))} of 8")
    print(f"samples within 3 std of a mode: {close.mean():.3f}")


if __name__ == "__main__":
    main()
