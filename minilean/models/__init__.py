"""The models: one file per model (network, losses, samplers) and the functions proofs/ checks."""
