"""Compiling the ``.cu`` kernel files: lazily through CuPy on a GPU, or through NVRTC alone.

A ``Program`` is one ``.cu`` file plus the template instantiations its Python module launches
(``name_expressions`` such as ``"activation_forward<float, GELU>"``). On a GPU,
``Program.kernel`` compiles the file once per process with CuPy's ``RawModule`` (which also
caches the binary on disk) and hands out the kernels. Without a GPU, ``nvrtc_compile`` compiles
the same source with the NVRTC library called through ctypes, so the sources are checked on any
machine that has the ``nvidia-cuda-nvrtc-cu12`` wheel.
"""
import ctypes
import functools
import glob
import hashlib
import os
import typing

import numpy

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
THREADS = 256             # threads per block for the grid-stride kernels
MAX_BLOCKS = 65535 * 8    # enough blocks to fill any current GPU; the loops stride over the rest
PROGRAMS = {}             # file name -> Program, filled as the kernel modules are imported


class Program:
    """One kernel source file and the instantiations launched from Python."""

    def __init__(self, filename, name_expressions):
        self.filename = filename
        self.name_expressions = tuple(name_expressions)
        self.forget()
        PROGRAMS[filename] = self

    def forget(self):
        """Drop the compiled module (the next launch compiles again)."""
        self._module, self._kernels = None, {}

    @property
    def source(self):
        """The file's text, ending in a comment with a digest of the headers (``*.cuh``) beside
        it. CuPy keys its on-disk cache on this text alone, not on the files it includes: the
        digest makes an edited header compile again instead of loading a stale binary."""
        with open(os.path.join(SOURCE_DIR, self.filename), encoding="utf-8") as file:
            return file.read() + f"\n// headers: {_headers_digest()}\n"

    def kernel(self, name):
        """The compiled kernel ``name`` (one of ``name_expressions``); compiles on first use,
        then comes from a dict (CuPy makes a new kernel object per ``get_function``)."""
        if name not in self._kernels:
            if self._module is None:
                import cupy
                self._module = cupy.RawModule(code=self.source, options=("-I" + SOURCE_DIR,),
                                              name_expressions=self.name_expressions)
            self._kernels[name] = self._module.get_function(name)
        return self._kernels[name]


def _headers_digest():
    """SHA-256 over the names and texts of the headers in SOURCE_DIR."""
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(SOURCE_DIR, "*.cuh"))):
        with open(path, "rb") as file:
            digest.update(os.path.basename(path).encode() + b"\0" + file.read() + b"\0")
    return digest.hexdigest()


_TYPE_NAMES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}


def type_name(dtype):
    """The CUDA C type of a NumPy dtype, for template names: float32 -> 'float'."""
    name = _TYPE_NAMES.get(dtype)  # an array's dtype, as the launches pass: no conversion
    return name if name is not None else _TYPE_NAMES[numpy.dtype(dtype)]


def grid_for(count, threads=THREADS):
    """(blocks,) covering ``count`` items with ``threads`` per block, capped at MAX_BLOCKS."""
    return (max(1, min(-(-count // threads), MAX_BLOCKS)),)


def launch(program, name, count, args):
    """Launch a grid-stride kernel over ``count`` items. Arguments must already be contiguous
    arrays and explicit NumPy scalars: RawKernel ignores strides and checks no types."""
    program.kernel(name)(grid_for(count), (THREADS,), args)


CHUNK_BYTES = 16  # bytes per thread and pass of CHUNKED_GRID_STRIDE_LOOP (common.cuh)


def chunk_aligned(array, dtype=None):
    """``array`` as the chunked kernels read it: C-contiguous, of ``dtype`` (its own if None),
    starting on a CHUNK_BYTES boundary. Itself where it already is, as CuPy's allocations are;
    else a copy (a view such as ``x[1:]`` starts inside an allocation). Of ``array``'s shape:
    ``ascontiguousarray`` makes a 0-d array 1-d (CuPy's rule, and NumPy's), and an output
    made ``empty_like`` it would then have shape (1,), not ()."""
    import cupy
    contiguous = cupy.ascontiguousarray(array, dtype=dtype)
    if array.ndim == 0:
        contiguous = contiguous.reshape(())
    return contiguous if contiguous.data.ptr % CHUNK_BYTES == 0 else contiguous.copy()


def chunks(count, itemsize):
    """How many chunks of CHUNK_BYTES cover ``count`` elements of ``itemsize`` bytes."""
    return -(-count // (CHUNK_BYTES // itemsize))


PARTIAL_BLOCKS = 1024  # blocks of a chunked sum's first pass: enough to stream memory at full speed


def partial_sum_blocks(count, itemsize):
    """Blocks for the first pass of a sum over ``count`` elements of ``itemsize`` bytes that
    walks chunks (one partial sum per block; the blocks stride over the rest)."""
    return min(grid_for(chunks(count, itemsize))[0], PARTIAL_BLOCKS)


def launch_chunked(program, name, count, itemsize, args):
    """Launch a kernel written with CHUNKED_GRID_STRIDE_LOOP over ``count`` elements of
    ``itemsize`` bytes: one thread per chunk. Arguments as for ``launch``, and every array
    ``chunk_aligned``."""
    launch(program, name, chunks(count, itemsize), args)


def threads_for(length):
    """Threads per row: a power of two from 32 to 256, no more than the row needs."""
    return min(256, max(32, 1 << (max(length, 1) - 1).bit_length()))


@functools.lru_cache(maxsize=256)
def _row_grid(rows, length):
    """(grid, block) of ``launch_rows`` (remembered: a training step launches the same few)."""
    return (min(max(rows, 1), MAX_BLOCKS),), (threads_for(length),)


def launch_rows(program, name, rows, length, args):
    """Launch a row kernel: one block per row of ``length`` elements (blocks stride over the
    rows beyond MAX_BLOCKS), its threads sharing the row. Arguments as for ``launch``."""
    program.kernel(name)(*_row_grid(rows, length), args)


# --- NVRTC without a GPU --------------------------------------------------------------------

class NvrtcError(RuntimeError):
    """NVRTC rejected a kernel source; the message carries its log."""


def find_libnvrtc():
    """Path of libnvrtc.so.12 inside the ``nvidia-cuda-nvrtc-cu12`` wheel, or None."""
    try:
        import nvidia.cuda_nvrtc
    except ImportError:
        return None
    for folder in nvidia.cuda_nvrtc.__path__:
        # (the pattern leaves out the wheel's libnvrtc.alt.so.12 and libnvrtc-builtins.so.12.*)
        found = sorted(glob.glob(os.path.join(folder, "lib", "libnvrtc.so.*[0-9]")))
        if found:
            return found[0]
    return None


class Compiled(typing.NamedTuple):
    """What NVRTC made of a Program: the PTX text, and each name expression's lowered (mangled)
    name, the name of its ``.entry`` in the PTX."""
    ptx: str
    lowered_names: dict


def nvrtc_compile(program, arch="compute_90"):
    """Compile ``program`` for virtual architecture ``arch`` with NVRTC: a ``Compiled``.

    Every name expression is instantiated, so template kernels are compiled, not just parsed.
    Raises NvrtcError with NVRTC's log when the source does not compile.
    """
    path = find_libnvrtc()
    if path is None:
        raise FileNotFoundError("libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12")
    nvrtc = ctypes.CDLL(path)
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(status):
        if status != 0:
            raise NvrtcError(f"{program.filename}: {nvrtc.nvrtcGetErrorString(status).decode()}")

    handle = ctypes.c_void_p()
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(handle), program.source.encode(),
                                   program.filename.encode(), 0, None, None))
    try:
        for name in program.name_expressions:
            check(nvrtc.nvrtcAddNameExpression(handle, name.encode()))
        options = [f"-arch={arch}".encode(), ("-I" + SOURCE_DIR).encode(), b"-std=c++14"]
        option_array = (ctypes.c_char_p * len(options))(*options)
        status = nvrtc.nvrtcCompileProgram(handle, len(options), option_array)
        if status != 0:
            log_size = ctypes.c_size_t()
            nvrtc.nvrtcGetProgramLogSize(handle, ctypes.byref(log_size))
            log = ctypes.create_string_buffer(log_size.value)
            nvrtc.nvrtcGetProgramLog(handle, log)
            raise NvrtcError(f"{program.filename} does not compile for {arch}:\n"
                             f"{log.value.decode(errors='replace')}")
        lowered_names = {}
        for name in program.name_expressions:  # each instantiation must exist in the output
            lowered = ctypes.c_char_p()
            check(nvrtc.nvrtcGetLoweredName(handle, name.encode(), ctypes.byref(lowered)))
            lowered_names[name] = lowered.value.decode()
        ptx_size = ctypes.c_size_t()
        check(nvrtc.nvrtcGetPTXSize(handle, ctypes.byref(ptx_size)))
        ptx = ctypes.create_string_buffer(ptx_size.value)
        check(nvrtc.nvrtcGetPTX(handle, ptx))
        return Compiled(ptx.value.decode(), lowered_names)
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(handle))
