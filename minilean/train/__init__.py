"""The shared training loop (``loop.py``), what every zoo command does around its model
(``zoo_run.py``), and one training job per command (``diffusion.py``, ``vae.py``, ...)."""
