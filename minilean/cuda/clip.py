"""Gradient clipping by the global norm over all parameters in two passes over the gradients
(``clip.cu``): four launches in all, the squared norm's partial sums, ``sum_rows`` adding them,
the scaling, and ``cupy.sqrt`` of the returned norm.

``fused_clip_arrays`` has the signature of ``minilean.optim.clip.clip_arrays`` and is what the
registry installs as ``minilean.optim.clip.fast_clip_arrays``. The plain version costs two
reductions, two casts and a multiply per parameter (about 450 launches for the diffusion U-Net,
a fifth of a GPU step's host time before this kernel). ``reference`` is the NumPy statement.
"""
import numpy

from minilean.cuda import compile as kernels
from minilean.cuda.multi_tensor import check_arrays, device_table
from minilean.cuda.reduce import sum_rows

program = kernels.Program("clip.cu", [
    f"{name}<{type_name}>" for name in ("squared_norm_partials", "scale_by_clip")
    for type_name in ("float", "double")])


def reference(grads, max_norm, eps):
    """(the clipped gradients, the norm before clipping), on NumPy arrays."""
    norm = numpy.sqrt(sum((grad.astype(numpy.float64) ** 2).sum() for grad in grads))
    scale = numpy.minimum(1.0, max_norm / (norm + eps))  # NaN for a NaN norm; min() would say 1
    return [grad * grad.dtype.type(scale) for grad in grads], norm


def fused_clip_arrays(grads, max_norm, eps):
    """Clip ``grads`` (C-contiguous CuPy arrays of one dtype: ``NotCovered`` otherwise, and
    nothing is changed) in place; return the norm before clipping as a 0-d float64 device
    array."""
    import cupy
    dtype, _ = check_arrays([grads])
    table = device_table([grads], dtype.itemsize)
    type_name = kernels.type_name(dtype)
    blocks = kernels.partial_sum_blocks(table.total, dtype.itemsize)
    partials = cupy.empty(blocks, dtype=numpy.float64)
    program.kernel(f"squared_norm_partials<{type_name}>")(
        (blocks,), (kernels.THREADS,), table.arguments() + (partials,))
    squared_norm = sum_rows(partials, 1, blocks, 1)
    kernels.launch_chunked(program, f"scale_by_clip<{type_name}>", table.total, dtype.itemsize,
                           table.arguments() + (squared_norm, numpy.float64(max_norm),
                                                numpy.float64(eps)))
    return cupy.sqrt(squared_norm.reshape(()))
