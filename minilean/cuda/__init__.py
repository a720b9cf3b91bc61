"""minilean.cuda: hand-written CUDA kernels behind ``--fast-kernels``.

One ``.cu`` file per kernel family (activations, adam, ema, clip, noising, mse, reduce,
softmax, norm, im2col, and matmul for the products inside a CUDA graph) with a Python module
beside it holding the NumPy reference of what the kernel computes, the launcher, and (for
most) the fast Function that replaces an op. The ``.cuh`` headers hold what several files
share: grid-stride loops, the 16-byte chunks that elementwise kernels move as one vector, and
block reductions (``common.cuh``), the activation math
(``activation_math.cuh``, also used by ``norm.cu`` for a GroupNorm that ends in its SiLU), the
all-parameters table (``multi_tensor.cuh``). ``compile.py`` compiles
lazily through CuPy (or NVRTC alone, for checking sources without a GPU); ``registry.py``
says which op each fast Function replaces. ``graph.py`` captures a whole call (a training
step's forward and backward) as one CUDA graph for ``--cuda-graph``. Nothing here imports
CuPy until a kernel runs.
"""
from minilean.backend import cuda_available as is_available  # PyTorch's torch.cuda.is_available
from minilean.cuda import registry


def use_fast_kernels(enabled=True):
    """Route "cuda" tensors through the fast kernels (``enabled=False`` restores plain CuPy).

    Returns the ops and classes that could not be wired because they do not exist.
    """
    return registry.install(enabled)
