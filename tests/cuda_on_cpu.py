"""minilean's CUDA kernels run on the CPU: the ``RawModule`` of the CuPy stand-in (fake_cupy).

A ``RawModule`` here compiles its ``.cu`` source as C++ with the machine's C++ compiler, against
``cuda_on_cpu.h`` (blocks one after another; the threads of a block as fibers wherever the kernel
synchronises). For each kernel instantiation the module names (``"sum_rows<float>"``) it adds an
``extern "C"`` entry point that unpacks an argument array by the kernel's parameter list, read
from the source.

Calling a kernel first checks every argument against that parameter list, the check a real
``RawKernel`` never makes (it passes raw bytes, so a wrong scalar type is silent garbage on a
GPU): a pointer parameter takes a C-contiguous device array of its element type, a scalar
parameter a NumPy scalar of exactly its type. The block may have at most 1024 threads. A read or
write through a misaligned pointer (a 16-byte vector at an address that is not a multiple of
16) fails the launch, as it stops the kernel on a GPU, where x86-64 would do it or crash.
"""
import ctypes
import glob
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile

import numpy

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_on_cpu.h")
C_TYPES = {  # C type -> (NumPy type, ctypes type)
    "float": (numpy.float32, ctypes.c_float), "double": (numpy.float64, ctypes.c_double),
    "int": (numpy.int32, ctypes.c_int), "long long": (numpy.int64, ctypes.c_longlong),
    "unsigned long long": (numpy.uint64, ctypes.c_ulonglong)}
KERNEL = re.compile(r"template\s*<\s*((?:(?:typename|int)\s+\w+\s*,?\s*)+)>\s*"
                    r"__global__\s+void\s+"
                    r"(?:__launch_bounds__\((?:[^()]|\([^()]*\))*\)\s*)?"  # (one level of nesting)
                    r"(\w+)\s*\(([^)]*)\)")
SYNCHRONISING = ("__syncthreads", "__shfl", "warp_reduce", "block_reduce")
# compiled libraries, shared by every process of this user (named by a hash of their source)
BUILD_DIR = os.path.join(tempfile.gettempdir(), f"minilean-cuda-on-cpu-{os.getuid()}")
_libraries = {}  # hash of source and instantiations -> loaded library


def _build_dir():
    """BUILD_DIR, made private to this user; a fresh private folder if someone else owns it
    or can write to it (a library planted there would run inside the tests)."""
    global BUILD_DIR
    os.makedirs(BUILD_DIR, mode=0o700, exist_ok=True)
    status = os.stat(BUILD_DIR)
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        BUILD_DIR = tempfile.mkdtemp(prefix="minilean-cuda-on-cpu-")
    return BUILD_DIR


def compiler():
    """The C++ compiler to build with, or None (also on processors other than x86-64, whose
    fiber switch cuda_on_cpu.h does not have)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


class Parameter:
    """One kernel parameter (``const T* x`` with the template's types substituted): its name,
    C type, and whether it is a pointer. ``types``: {template parameter: C type}."""

    def __init__(self, declaration, types):
        declaration = declaration.replace("__restrict__", " ").strip()  # a promise, not a type
        for template_name, type_name in types.items():
            declaration = re.sub(rf"\b{template_name}\b", type_name, declaration)
        self.name = declaration.split()[-1].lstrip("*")
        c_type = declaration[: declaration.rindex(self.name)].replace("const", "").strip()
        self.pointer = c_type.endswith("*")
        self.c_type = c_type.rstrip("*").strip()
        self.numpy_type, self.ctypes_type = C_TYPES[self.c_type]
        self.declaration = declaration[: declaration.rindex(self.name)].strip()

    def storage(self, kernel, value):
        """The ctypes object holding ``value`` for the kernel, after checking its type."""
        from fake_cupy import ndarray
        if self.pointer:
            if not (isinstance(value, ndarray) and value.dtype == self.numpy_type):
                raise TypeError(f"{kernel}: parameter {self.name} is {self.declaration}, needs "
                                f"a device array of {numpy.dtype(self.numpy_type)}, got "
                                f"{_describe(value)}")
            if not value.flags.c_contiguous:
                raise TypeError(f"{kernel}: parameter {self.name} got a non-contiguous array "
                                f"(RawKernel ignores strides)")
            return ctypes.c_void_p(value._array.ctypes.data)
        if type(value) is not self.numpy_type:
            raise TypeError(f"{kernel}: parameter {self.name} is {self.c_type}, needs "
                            f"numpy.{self.numpy_type.__name__}, got {_describe(value)}")
        return self.ctypes_type(value)


def _describe(value):
    dtype = getattr(value, "dtype", None)
    return f"{type(value).__name__} of {dtype}" if dtype is not None else repr(type(value))


class Kernel:
    """One instantiation (``name<float>``, ``name<float, int>``, ``name<float, GELU>``): its
    parameters and its entry point. ``template_names``: the template's parameters
    (``typename T, typename Index`` or ``typename T, int KIND``)."""

    def __init__(self, expression, template_names, name, parameters, body):
        type_names = [t.strip() for t in expression[expression.index("<") + 1: -1].split(",")]
        kinds = re.findall(r"(typename|int)\s+(\w+)", template_names)
        types = {parameter: argument for (kind, parameter), argument in zip(kinds, type_names)
                 if kind == "typename"}
        self.expression = expression
        self.parameters = [Parameter(p, types) for p in parameters.split(",")]
        self.synchronises = any(word in body for word in SYNCHRONISING)
        self.call = f"{name}<{', '.join(type_names)}>"
        self.entry = None

    def wrapper(self, index):
        """The C++ entry point ``kernel_<index>(grid, block, args)`` (each a dim3)."""
        arguments = ", ".join(f"*static_cast<{p.declaration}*>(args[{i}])"
                              for i, p in enumerate(self.parameters))
        return (f'extern "C" int kernel_{index}(dim3 grid, dim3 block, void** args) {{\n'
                f"  try {{\n"
                f"    cuda_on_cpu::launch(grid, block, {str(self.synchronises).lower()},\n"
                f"                        [&] {{ {self.call}({arguments}); }});\n"
                f"  }} catch (const std::exception&) {{ return 1; }}\n"
                f"  return cuda_on_cpu::misaligned_address == nullptr ? 0 : 2;\n}}\n")

    def __call__(self, grid, block, args, shared_mem=0):
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.expression}: takes {len(self.parameters)} arguments, got "
                            f"{len(args)}")
        grid, block = _dim3(grid), _dim3(block)
        if not (0 < block.x * block.y * block.z <= 1024 and block.z <= 64 and
                0 < grid.x < 2 ** 31 and 0 < grid.y < 2 ** 16 and 0 < grid.z < 2 ** 16):
            raise ValueError(f"{self.expression}: launch of {tuple(grid)} blocks of "
                             f"{tuple(block)} threads is out of range")
        storage = [p.storage(self.expression, value) for p, value in zip(self.parameters, args)]
        pointers = (ctypes.c_void_p * len(storage))(*[ctypes.addressof(s) for s in storage])
        status = self.entry(grid, block, pointers)
        if status == 2:
            raise RuntimeError(f"{self.expression}: misaligned address (a GPU stops with "
                               f"cudaErrorMisalignedAddress)")
        if status != 0:
            raise RuntimeError(f"{self.expression}: the kernel synchronised in plain mode")


class Dim3(ctypes.Structure):
    """CUDA's dim3: a grid's or block's size (cuda_on_cpu.h's struct, passed by value)."""
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]

    def __iter__(self):
        return iter((self.x, self.y, self.z))


def _dim3(sizes):
    """A launch's grid or block, ``(x,)``, ``(x, y)`` or ``(x, y, z)``, as a ``Dim3``. Integers
    only: CuPy passes each size to a C integer parameter, which refuses a float."""
    sizes = tuple(sizes) + (1,) * (3 - len(tuple(sizes)))
    for size in sizes:
        if not isinstance(size, (int, numpy.integer)):
            raise TypeError(f"a launch's grid and block sizes are integers, got {size!r}")
    return Dim3(*(int(size) for size in sizes))


def _body(source, start):
    """The text of the function body that opens after ``start``."""
    opening = source.index("{", start)
    depth = 0
    for position in range(opening, len(source)):
        depth += {"{": 1, "}": -1}.get(source[position], 0)
        if depth == 0:
            return source[opening: position + 1]
    raise ValueError("unbalanced braces")


class RawModule:
    """``cupy.RawModule`` on the CPU (``code``, ``options`` with ``-I`` folders,
    ``name_expressions``)."""

    def __init__(self, code, options=(), name_expressions=()):
        found = {match.group(2): match for match in KERNEL.finditer(code)}
        self.kernels = {}
        for expression in name_expressions:
            match = found[expression[: expression.index("<")]]
            self.kernels[expression] = Kernel(expression, match.group(1), match.group(2),
                                              match.group(3), _body(code, match.end()))
        library = _build(code, [o[2:] for o in options if o.startswith("-I")],
                         list(self.kernels.values()))
        for index, kernel in enumerate(self.kernels.values()):
            kernel.entry = getattr(library, f"kernel_{index}")
            kernel.entry.restype = ctypes.c_int
            kernel.entry.argtypes = (Dim3, Dim3, ctypes.c_void_p)

    def get_function(self, name):
        return self.kernels[name]


def _build(code, include_dirs, kernels):
    """Compile ``code`` and the kernels' entry points into a shared library (cached)."""
    wrappers = "".join(kernel.wrapper(index) for index, kernel in enumerate(kernels))
    source = f'#include "{HEADER}"\n{code}\n{wrappers}'
    # the name covers everything the build reads: this source, the emulation, the headers
    headers = [HEADER] + sorted(path for folder in include_dirs
                                for path in glob.glob(os.path.join(folder, "*.cuh")))
    digest = hashlib.sha256(source.encode())
    for path in headers:
        with open(path, "rb") as file:
            digest.update(file.read())
    key = digest.hexdigest()[:16]
    if key not in _libraries:
        library_path = os.path.join(_build_dir(), f"{key}.so")
        if not os.path.exists(library_path):
            _compile(source, include_dirs, library_path, kernels[0].expression)
        _libraries[key] = ctypes.CDLL(library_path)
    return _libraries[key]


def _compile(source, include_dirs, library_path, what):
    """Build the library under a name of this process's, then rename it into place, so
    processes building the same library at once never load a half-written one."""
    partial = f"{library_path}.{os.getpid()}"
    source_path = partial + ".cpp"
    with open(source_path, "w", encoding="utf-8") as file:
        file.write(source)
    # compiled with the alignment check, linked without the sanitizer's runtime (cuda_on_cpu.h
    # has the one handler it calls)
    commands = [[compiler(), "-std=c++17", "-O1", "-fPIC", "-w", "-fsanitize=alignment", "-c",
                 source_path, "-o", partial + ".o"] + [f"-I{folder}" for folder in include_dirs],
                [compiler(), "-shared", partial + ".o", "-o", partial]]
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            break
    for path in (source_path, partial + ".o"):
        if os.path.exists(path):
            os.remove(path)
    if result.returncode != 0:
        raise RuntimeError(f"compiling {what}'s file on the CPU failed:\n{result.stderr[-3000:]}")
    os.replace(partial, library_path)
