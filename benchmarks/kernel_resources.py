"""What each CUDA kernel of minilean/cuda asks of an SM, without a GPU: registers per thread,
spilled bytes, the occupancy that follows in blocks of 256 threads (the size of every launch,
the row kernels' at most), and the length of its machine code.

    pip install nvidia-cuda-nvcc-cu12            # ptxas (or have ptxas on PATH)
    python benchmarks/kernel_resources.py [--arch sm_90] [--files activations.cu,norm.cu]

Each kernel file is compiled to PTX with NVRTC (as the tests do), then to machine code for
``--arch`` by ptxas, which reports what it allocated. A memory-bound kernel needs enough
threads resident on each SM to keep enough loads in flight: occupancy (resident warps / the
SM's 64) is capped by registers per thread, so a kernel that needs more of them can stream
more slowly although its arithmetic is trivial. The machine code's length (static
instructions, 16 bytes each from sm_70 on; unrolled loops and routines count as written, not as
run) shows what an expensive operation such as 64-bit division adds. Counts, not timings.
"""
import argparse
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

REGISTERS_PER_SM = 65536   # sm_70 to sm_90: registers and warp slots per SM
WARPS_PER_SM = 64
BLOCKS_PER_SM = 32
REGISTER_UNIT = 256        # registers are given to a warp in units of 256


def occupancy(registers, threads_per_block):
    """Resident warps / WARPS_PER_SM for a kernel using ``registers`` per thread, launched in
    blocks of ``threads_per_block`` (shared memory is not the limit for these kernels)."""
    warps_per_block = -(-threads_per_block // 32)
    per_warp = -(-registers * 32 // REGISTER_UNIT) * REGISTER_UNIT
    blocks = min(REGISTERS_PER_SM // (per_warp * warps_per_block),
                 WARPS_PER_SM // warps_per_block, BLOCKS_PER_SM)
    return blocks * warps_per_block / WARPS_PER_SM


def find_ptxas():
    """ptxas from PATH or from the nvidia-cuda-nvcc-cu12 wheel, or None."""
    if shutil.which("ptxas"):
        return shutil.which("ptxas")
    try:
        import nvidia.cuda_nvcc
    except ImportError:
        return None
    for folder in nvidia.cuda_nvcc.__path__:
        for path in glob.glob(os.path.join(folder, "bin", "ptxas")):
            return path
    return None


def code_sizes(cubin):
    """{kernel: bytes of machine code}: the sizes of the ELF file's ``.text.<kernel>``
    sections (64-bit little-endian ELF, as ptxas writes it)."""
    section_table, = struct.unpack_from("<Q", cubin, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", cubin, 0x3A)
    # each section header: name offset (I), type (I), flags, address, offset, size (Q each)
    sections = [struct.unpack_from("<IIQQQQ", cubin, section_table + i * entry_size)
                for i in range(count)]
    names_at = sections[names_index][4]
    sizes = {}
    for name_offset, *_, size in sections:
        start = names_at + name_offset
        name = cubin[start:cubin.index(b"\0", start)].decode()
        if name.startswith(".text."):
            sizes[name[len(".text."):]] = size
    return sizes


def kernel_resources(ptxas, ptx, arch):
    """[(kernel, registers, spilled bytes, instructions)] as ptxas builds ``ptx`` for
    ``arch``."""
    with tempfile.TemporaryDirectory() as folder:
        source, binary = (os.path.join(folder, name) for name in ("kernels.ptx", "kernels.cubin"))
        with open(source, "w", encoding="utf-8") as file:
            file.write(ptx)
        report = subprocess.run([ptxas, "-v", f"-arch={arch}", source, "-o", binary],
                                capture_output=True, text=True, check=True).stderr
        with open(binary, "rb") as file:
            sizes = code_sizes(file.read())
    found, kernel, spilled = [], None, 0
    for line in report.splitlines():
        if match := re.search(r"Compiling entry function '(\w+)'", line):
            kernel = match.group(1)
        elif match := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line):
            spilled = int(match.group(1)) + int(match.group(2))
        elif match := re.search(r"Used (\d+) registers", line):
            found.append((kernel, int(match.group(1)), spilled, sizes[kernel] // 16))
    return found


def main(argv=None):
    from minilean.cuda import compile as kernels
    from minilean.cuda import matmul, registry  # noqa: F401  (they register every Program)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sm_90", help="a real architecture, e.g. sm_80")
    parser.add_argument("--files", default=",".join(sorted(kernels.PROGRAMS)))
    args = parser.parse_args(argv)
    ptxas = find_ptxas()
    if ptxas is None or kernels.find_libnvrtc() is None:
        print("kernel_resources: needs ptxas and NVRTC: pip install nvidia-cuda-nvcc-cu12 "
              "nvidia-cuda-nvrtc-cu12", file=sys.stderr)
        return 1
    virtual = "compute_" + args.arch.split("_")[1]
    print(f"{'kernel on ' + args.arch:<58} {'registers':>9} {'spilled':>8} {'occupancy':>9} "
          f"{'instructions':>12}")
    for filename in args.files.split(","):
        program = kernels.PROGRAMS[filename]
        ptx, lowered_names = kernels.nvrtc_compile(program, virtual)
        expressions = {lowered: expression for expression, lowered in lowered_names.items()}
        for kernel, registers, spilled, instructions in kernel_resources(ptxas, ptx, args.arch):
            name = f"{filename}: {expressions[kernel]}"
            print(f"{name:<58} {registers:>9} {spilled:>7}B "
                  f"{occupancy(registers, kernels.THREADS):>9.0%} {instructions:>12}")
    print(f"command: python benchmarks/kernel_resources.py {' '.join(argv or sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
