"""``a @ b`` by minilean's own kernel (``matmul.cu``), for the products of a CUDA graph.

CuPy computes matmul with cuBLAS and refuses to call cuBLAS while a stream is captured
("calling cuBLAS API during stream capture is currently unsupported"), so a training step
could not be recorded as a graph. While ``minilean.cuda.graph`` records one, every
``backend.matmul`` comes here instead. The kernel is a plain shared-memory tiling, several
times slower than cuBLAS on large matrices; on the small model a graph is for, launch overhead
dominates and the product's own time hardly shows. A product with few output tiles and a long
inner axis (a convolution's weight gradient sums over every pixel of the batch) splits that
axis over more blocks and adds the parts after (``inner_parts``).

NumPy's rules hold: a 1-D left operand is a row vector and a 1-D right operand a column vector
(the added axis is removed again), and the batch axes broadcast.
"""
import numpy

from minilean.cuda import compile as kernels

program = kernels.Program("matmul.cu", [f"batched_matmul<{type_name}>"
                                        for type_name in ("float", "double")])

TILE = 16  # as in matmul.cu
MAX_BATCH_BLOCKS = 65535  # CUDA's limit on gridDim.z; the kernel loops over the rest
ENOUGH_BLOCKS = 1024      # about 8 blocks per multiprocessor of a large GPU (132 on an H200)
MIN_SLABS_PER_PART = 8    # split the inner axis no finer than 8 TILE-wide slabs per part


def reference(a, b):
    """The NumPy statement of the product."""
    return numpy.matmul(a, b)


def inner_parts(tiles, batches, inner):
    """How many parts to split the inner axis into (matmul.cu's gridDim.y): enough for about
    ENOUGH_BLOCKS blocks when the output alone gives fewer, none shorter than
    MIN_SLABS_PER_PART slabs."""
    wanted = ENOUGH_BLOCKS // max(tiles * min(batches, MAX_BATCH_BLOCKS), 1)
    return max(1, min(wanted, inner // (TILE * MIN_SLABS_PER_PART)))


def matmul(a, b, out=None, parts=None):
    """``a @ b`` (float32 or float64 CuPy arrays), written into ``out`` when given; ``parts``:
    split the inner axis into that many parts, summed afterwards (default: ``inner_parts``)."""
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
    tiles = -(-rows // TILE) * -(-cols // TILE)
    parts = parts or inner_parts(tiles, batches, inner)
    result = cupy.empty((parts,) + batch_shape + (rows, cols), dtype)  # one sum per part
    if result.size:
        program.kernel(f"batched_matmul<{kernels.type_name(dtype)}>")(
            (tiles, parts, min(batches, MAX_BATCH_BLOCKS)), (TILE, TILE),
            (a_batches, b_batches, result, numpy.int64(batches), numpy.int32(rows),
             numpy.int32(inner), numpy.int32(cols), numpy.int64(a_batch_stride),
             numpy.int64(b_batch_stride)))
    result = result[0] if parts == 1 else result.sum(axis=0)
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
