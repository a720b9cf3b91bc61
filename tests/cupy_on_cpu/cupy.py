"""``import cupy`` gives the CPU stand-in (tests/fake_cupy.py): put this folder first on
PYTHONPATH to dry-run GPU code without a GPU, e.g. the GPU tests themselves:

    PYTHONPATH=tests/cupy_on_cpu python -m pytest -m gpu tests/test_cuda_gpu.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fake_cupy  # noqa: E402  (needs the tests folder on the path first)

sys.modules["cupy"] = fake_cupy
