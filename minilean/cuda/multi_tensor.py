"""The device table that lets one kernel launch update every parameter of a model.

``multi_tensor.cuh`` reads, for ``count`` tensors, a table of their device addresses (one row
of ``count`` per role: params, grads, ...) and the running element offsets. Building the table
is host work plus a small upload, so tables are cached by the addresses they hold: in a
training loop the parameters and optimizer state never move, and CuPy's memory pool hands the
gradients the same blocks step after step, so after warm-up no table is uploaded at all.
"""
import collections

import numpy

from minilean.cuda import compile as kernels

_CACHE_SIZE = 8
_tables = collections.OrderedDict()  # addresses and sizes -> (table, offsets, total)


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
    sizes = tuple(array.size for array in roles[0])
    key = addresses + sizes  # an address can be reused by an array of another size
    if key in _tables:
        _tables.move_to_end(key)
        return _tables[key]
    offsets = numpy.concatenate([[0], numpy.cumsum(sizes)]).astype(numpy.int64)
    entry = (cupy.asarray(numpy.array(addresses, dtype=numpy.uint64)), cupy.asarray(offsets),
             int(offsets[-1]))
    _tables[key] = entry
    if len(_tables) > _CACHE_SIZE:
        _tables.popitem(last=False)
    return entry


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
