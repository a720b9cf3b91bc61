"""The device table that lets one kernel launch update every parameter of a model.

``multi_tensor.cuh`` reads, for ``count`` tensors, a table of their device addresses (one row
of ``count`` per role: params, grads, ...) and the running element offsets. Each update of a
model reuses one table in device memory (one per number of roles and list of sizes): the
parameters and optimizer state never move, and when the gradients have moved (new arrays each
step, wherever the memory pool put them) the few kilobytes of addresses are rewritten in place,
so the table costs no new device memory, step after step.
"""
import collections

import numpy

from minilean.cuda import compile as kernels

_CACHE_SIZE = 8
_tables = collections.OrderedDict()  # (roles, sizes) -> [addresses, table, offsets, total]


def check_arrays(roles):
    """Every array of every role must be a contiguous CuPy array of the first one's dtype and
    of the matching parameter's size; returns that dtype."""
    first = roles[0]
    dtype = first[0].dtype
    if any(len(role) != len(first) for role in roles):
        raise ValueError(f"fused update needs one array per parameter in every role, got "
                         f"{[len(role) for role in roles]}")
    for role in roles:
        for array, param in zip(role, first):
            if array.dtype != dtype or array.size != param.size or not array.flags.c_contiguous:
                raise ValueError(f"fused update needs contiguous {dtype} arrays of the "
                                 f"parameters' sizes, got {array.dtype} {array.shape}")
    return dtype


def device_table(roles):
    """(table, offsets, total): ``table`` the uint64 addresses of ``roles`` (lists of arrays,
    each as long as the parameter list), ``offsets`` the int64 running sizes, ``total`` the
    number of elements of one role."""
    import cupy
    addresses = tuple(array.data.ptr for role in roles for array in role)
    key = (len(roles), tuple(array.size for array in roles[0]))
    if key in _tables:
        _tables.move_to_end(key)
    else:
        offsets = numpy.concatenate([[0], numpy.cumsum(key[1])]).astype(numpy.int64)
        _tables[key] = [None, cupy.empty(len(addresses), dtype=numpy.uint64),
                        cupy.asarray(offsets), int(offsets[-1])]
        if len(_tables) > _CACHE_SIZE:
            _tables.popitem(last=False)
    entry = _tables[key]
    if entry[0] != addresses:  # first use, or the arrays moved: rewrite the addresses in place
        # on the stream: without one, older CuPy copies synchronously, waiting for the GPU
        entry[1].set(numpy.array(addresses, dtype=numpy.uint64),
                     stream=cupy.cuda.get_current_stream())
        entry[0] = addresses
    return tuple(entry[1:])


def launch_over_all(program, name, roles, scalars, flags=()):
    """Launch ``name<T>`` once over every element of every tensor in ``roles``, passing
    ``scalars`` as T and then ``flags`` as int."""
    dtype = check_arrays(roles)
    table, offsets, total = device_table(roles)
    if total == 0:
        return
    kernels.launch(program, f"{name}<{kernels.type_name(dtype)}>", total,
                   (table, offsets, numpy.int32(len(roles[0])), numpy.int64(total))
                   + tuple(dtype.type(value) for value in scalars)
                   + tuple(numpy.int32(flag) for flag in flags))
