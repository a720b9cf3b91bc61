"""``a @ b`` by minilean's own kernel (``matmul.cu``), for the products of a CUDA graph.

CuPy computes matmul with cuBLAS and refuses to call cuBLAS while a stream is captured
("calling cuBLAS API during stream capture is currently unsupported"), so a training step
could not be recorded as a graph. While ``minilean.cuda.graph`` records one, every
``backend.matmul`` comes here instead. The kernel is a plain shared-memory tiling, several
times slower than cuBLAS on large matrices; on the small model a graph is for, launch overhead
dominates and the product's own time hardly shows.

NumPy's rules hold: a 1-D left operand is a row vector and a 1-D right operand a column vector
(the added axis is removed again), and the batch axes broadcast.
"""
import numpy

from minilean.cuda import compile as kernels

program = kernels.Program("matmul.cu", [f"batched_matmul<{type_name}>"
                                        for type_name in ("float", "double")])

TILE = 16  # as in matmul.cu
MAX_BATCH_BLOCKS = 65535  # CUDA's limit on gridDim.z; the kernel loops over the rest


def reference(a, b):
    """The NumPy statement of the product."""
    return numpy.matmul(a, b)


def matmul(a, b, out=None):
    """``a @ b`` (float32 or float64 CuPy arrays), written into ``out`` when given."""
    import cupy
    a_vector, b_vector = a.ndim == 1, b.ndim == 1
    a = a[None, :] if a_vector else a
    b = b[:, None] if b_vector else b
    if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit (the last axis of "
                         f"the first must equal the second-to-last of the second)")
    dtype = numpy.result_type(a.dtype, b.dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"matmul: the CUDA-graph kernel takes float32 or float64, got {dtype}")
    batch_shape = numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    rows, inner, cols = a.shape[-2], a.shape[-1], b.shape[-1]
    a_batches, a_batch_stride = _as_batches(cupy, a, batch_shape, dtype)
    b_batches, b_batch_stride = _as_batches(cupy, b, batch_shape, dtype)
    batches = int(numpy.prod(batch_shape, dtype=numpy.int64))
    result = cupy.empty(batch_shape + (rows, cols), dtype)
    if result.size:
        tiles = -(-rows // TILE) * -(-cols // TILE)
        program.kernel(f"batched_matmul<{kernels.type_name(dtype)}>")(
            (tiles, 1, min(batches, MAX_BATCH_BLOCKS)), (TILE, TILE),
            (a_batches, b_batches, result, numpy.int64(batches), numpy.int32(rows),
             numpy.int32(inner), numpy.int32(cols), numpy.int64(a_batch_stride),
             numpy.int64(b_batch_stride)))
    if b_vector:
        result = result[..., 0]
    if a_vector:
        result = result[..., 0, :] if not b_vector else result[..., 0]
    if out is None:
        return result
    out[...] = result
    return out


def _as_batches(cupy, matrices, batch_shape, dtype):
    """(contiguous array, elements from one matrix to the next) for ``matrices`` broadcast over
    ``batch_shape``: a matrix shared by the whole batch is passed once, with stride 0."""
    if int(numpy.prod(matrices.shape[:-2], dtype=numpy.int64)) == 1:
        return cupy.ascontiguousarray(matrices.reshape(matrices.shape[-2:]), dtype=dtype), 0
    full = cupy.broadcast_to(matrices, batch_shape + matrices.shape[-2:])
    return cupy.ascontiguousarray(full, dtype=dtype), matrices.shape[-2] * matrices.shape[-1]
