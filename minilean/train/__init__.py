"""The shared training loop and the per-command training jobs."""
