"""The device table that lets one kernel launch update every parameter of a model.

``multi_tensor.cuh`` reads, for ``count`` tensors, a table of their device addresses (one row
of ``count`` per role: params, grads, ...), the tensors' sizes, and where each starts in the
virtual flat index the kernel's threads walk in chunks (every tensor on a chunk boundary, so a
chunk is one tensor's, moved as one vector). Each update of a model reuses one table in device
memory (one per number of roles, list of sizes and chunk size): the parameters and optimizer
state never move, and when the gradients have moved (new arrays each step, wherever the memory
pool put them) the few kilobytes of addresses are rewritten in place, so the table costs no new
device memory, step after step. A CUDA graph gets tables of its own instead, made at its
warm-up and filled with the captured arrays' addresses once its capture has ended
(``graph.upload``): its replays read them long after the shared ones have been rewritten for
other arrays.
"""
import collections

import numpy

from minilean import backend
from minilean.cuda import compile as kernels
from minilean.cuda import graph
from minilean.cuda.fast_function import KERNEL_DTYPES, NotCovered

_CACHE_SIZE = 8
# (roles, sizes, chunk) -> Table
_tables = collections.OrderedDict()


class Table:
    """One table on the device: ``table`` the uint64 addresses, ``offsets`` (int64, count + 1)
    where each tensor starts in the virtual index, ``sizes`` (int64) its element counts,
    ``total`` the virtual index's length, ``vector`` whether every address is on a
    CHUNK_BYTES boundary (so the kernels may move whole chunks as vectors)."""

    def __init__(self, address_count, sizes, chunk):
        import cupy
        self.addresses = None
        self.table = cupy.empty(address_count, dtype=numpy.uint64)  # roles x tensors
        # each tensor's chunks: its size rounded up to a whole number of chunks
        padded = [-(-size // chunk) * chunk for size in sizes]
        offsets = numpy.concatenate([[0], numpy.cumsum(padded)]).astype(numpy.int64)
        self.offsets = cupy.empty(len(offsets), dtype=numpy.int64)
        self.sizes = cupy.empty(len(sizes), dtype=numpy.int64)
        graph.upload(self.offsets, offsets)
        graph.upload(self.sizes, numpy.array(sizes, dtype=numpy.int64))
        self.total = int(offsets[-1])
        self.vector = False

    def arguments(self):
        """What every kernel over all tensors takes first (multi_tensor.cuh): table, offsets,
        sizes, count, total, vector."""
        return (self.table, self.offsets, self.sizes, numpy.int32(len(self.sizes)),
                numpy.int64(self.total), numpy.int32(self.vector))


def contiguous(arrays):
    """``arrays``, each C-contiguous: itself where it is (most are), else a contiguous copy.
    A host array stays as it is, for ``check_arrays`` to refuse by name."""
    import cupy
    return [array if type(array) is numpy.ndarray else cupy.ascontiguousarray(array)
            for array in arrays]


def check_arrays(roles, copied=()):
    """Every array of every role must be a C-contiguous CuPy array of the first one's dtype
    (one the kernels are written for) and of the matching parameter's size; returns that
    dtype and the roles to launch with. The roles at the indices ``copied`` are only read by
    the kernels, so a strided array there (a ``.grad`` set by hand can be a view) is read from
    a contiguous copy, in the roles returned, rather than refused. The contiguity is read here
    for every array anyway, so the copy costs nothing where none is needed (not even a
    ``cupy.ascontiguousarray`` call per array, which would return the array itself).
    Raises ``NotCovered``, naming what failed, before anything is launched: a RawKernel checks
    no types and ignores strides, so it would read such arrays wrongly without a word. The
    optimizers then run the plain update (float16 parameters, float32 beside float64, a
    parameter made as a transposed view, parameters on both devices); a direct caller (the
    kernel tests, ``benchmarks/bench_gpu.py``) sees the error."""
    first = roles[0]
    dtype = first[0].dtype
    if dtype not in KERNEL_DTYPES:
        raise NotCovered(f"fused update takes float32 or float64 arrays, got {dtype}")
    if any(len(role) != len(first) for role in roles):
        raise NotCovered(f"fused update needs one array per parameter in every role, got "
                         f"{[len(role) for role in roles]}")
    checked = list(roles)
    for index, role in enumerate(roles):
        for array, param in zip(role, first):
            if type(array) is numpy.ndarray:  # a model partly moved to the GPU
                raise NotCovered(f"fused update needs arrays on the GPU, got a host array of "
                                 f"shape {array.shape}")
            if array.dtype != dtype:
                raise NotCovered(f"fused update needs arrays of one dtype, {dtype}; got "
                                 f"{array.dtype} of shape {array.shape}")
            if array.size != param.size:
                raise NotCovered(f"fused update needs arrays of the parameters' sizes, got "
                                 f"shape {array.shape} for a parameter of {param.size} elements")
            if not array.flags.c_contiguous:
                if index not in copied:
                    raise NotCovered(f"fused update needs C-contiguous arrays, got a strided "
                                     f"one of shape {array.shape}")
                if checked[index] is role:
                    checked[index] = contiguous(role)
    return dtype, checked


def check_written_once(arrays, addresses):
    """Raise ``NotCovered`` where one array appears twice among ``arrays``, those the update
    writes in place (``addresses`` starts with theirs): two entries of the table would send
    two threads to read, change and write the same memory at once, so on a GPU a change can
    be lost (``clip_grad_norm_([p, q, p])`` would scale p's gradient once or twice, as the
    threads happen to run, where the plain clipping, as PyTorch's, scales it twice). The plain
    update then runs. Checked when the addresses change (``device_table``): every step, as the
    gradients are new arrays, so the usual case, no address twice, is one set. An empty array
    writes nothing (it may share an address with another)."""
    written = addresses[:len(arrays)]
    if len(set(written)) == len(written):
        return
    first_at = {}
    for index, (array, address) in enumerate(zip(arrays, addresses)):
        if array.size == 0:
            continue
        if address in first_at:
            raise NotCovered(f"fused update writes each array once, got the array of shape "
                             f"{array.shape} as arrays {first_at[address]} and {index}")
        first_at[address] = index


def device_table(roles, itemsize):
    """The ``Table`` of ``roles`` (lists of arrays, each as long as the parameter list) for
    elements of ``itemsize`` bytes, with the arrays' current addresses."""
    addresses = tuple(array.data.ptr for role in roles for array in role)
    sizes = tuple(array.size for array in roles[0])
    key = (len(roles), sizes, kernels.CHUNK_BYTES // itemsize)
    if backend.recording_graph():
        # a table of the graph's own, made at its warm-up (graph.py says why): a later call
        # with the same sizes rewrites a shared one in place, changing what every replay reads
        table = graph.made_at_warm_up(key, lambda: Table(len(addresses), sizes, key[2]))
    else:
        if key in _tables:
            _tables.move_to_end(key)
        else:
            _tables[key] = Table(len(addresses), sizes, key[2])
            if len(_tables) > _CACHE_SIZE:
                _tables.popitem(last=False)
        table = _tables[key]
    if table.addresses != addresses:  # first use, or the arrays moved: rewrite them in place
        check_written_once(roles[0], addresses)
        host = numpy.array(addresses, dtype=numpy.uint64)
        graph.upload(table.table, host)
        table.addresses = addresses
        table.vector = int(numpy.bitwise_or.reduce(host, initial=0)) % kernels.CHUNK_BYTES == 0
    return table


def launch_over_all(program, name, roles, scalars, flags=(), copied=()):
    """Launch ``name<T>`` once over every element of every tensor in ``roles``, passing
    ``scalars`` as T and then ``flags`` as int; the roles at the indices ``copied`` are only
    read, and may be strided (``check_arrays``)."""
    dtype, roles = check_arrays(roles, copied)
    table = device_table(roles, dtype.itemsize)
    if table.total == 0:
        return
    kernels.launch_chunked(program, f"{name}<{kernels.type_name(dtype)}>", table.total,
                           dtype.itemsize, table.arguments()
                           + tuple(dtype.type(value) for value in scalars)
                           + tuple(numpy.int32(flag) for flag in flags))
