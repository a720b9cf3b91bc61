"""minilean: a small array framework with reverse-mode autograd on NumPy or CuPy,
a zoo of generative models built on it, and checked mathematics about them."""
import sys as _sys

# ``python -m minilean`` imports this package before it runs minilean/__main__.py, whose
# handling of Ctrl-C starts only then (runpy finds the module through its package, and
# sys.argv[0] is "-m" meanwhile). These imports take half a second: a Ctrl-C during them
# printed a KeyboardInterrupt traceback instead of the command line's one line and 130
try:
    import numpy as _numpy

    from minilean.backend import DeviceError, cuda_available, manual_seed
    from minilean.autograd import (Function, Tensor, enable_grad, gradcheck, inference_mode,
                                   is_grad_enabled, no_grad, set_grad_enabled)
    from minilean.autograd.creation import (arange, from_numpy, full, linspace, ones,
                                            ones_like, rand, randint, randn, randn_like, tensor,
                                            zeros, zeros_like)
    from minilean.autograd.elementwise import (abs, clamp, cos, exp, log, maximum, minimum, relu,
                                               rsqrt, sigmoid, sin, sqrt, tanh, where)
    from minilean.autograd.linalg import matmul
    from minilean.autograd.conv import conv2d, conv_transpose2d
    from minilean.autograd.pool import avg_pool2d, max_pool2d
    from minilean.autograd.reduce import (amax, amin, argmax, argmin, log_softmax, logsumexp, max,
                                          mean, min, softmax, std, sum, var)
    from minilean.autograd.shape import (cat, chunk, clone, flatten, permute, reshape, split,
                                         squeeze, stack, transpose, unsqueeze)
    from minilean.cuda import use_fast_kernels
    from minilean.threads import get_num_threads, set_num_threads
    from minilean import nn, optim  # noqa: E402 (layers and optimizers, built on the above)
except KeyboardInterrupt:
    if _sys.argv[:1] != ["-m"]:  # imported by a program of its own: its Ctrl-C is its own
        raise
    from minilean.errors import exit_interrupted
    exit_interrupted("minilean")

float16 = _numpy.float16
float32 = _numpy.float32
float64 = _numpy.float64
uint8 = _numpy.uint8
int32 = _numpy.int32
int64 = _numpy.int64
long = _numpy.int64  # PyTorch's other name for int64, the dtype of class labels
bool = _numpy.bool_

__version__ = "0.1.0"
