"""Importing this package registers every statement, area by area."""
from proofs.statements import (autograd, diffusion, gan, mae, objective, vae, vqvae,  # noqa: F401
                                autograd_forward, likelihood, wiring, v_prediction,
                                continuous_schedule, beta_schedule, pixel_likelihood,
                                layer_backward, pool_backward, variance_backward, optim,
                                timestep_embedding, vq_codebook, frechet, attention)
