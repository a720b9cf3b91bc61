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

    pip install nvidia-cuda-nvdisasm             # nvdisasm (or have it on PATH)
    python benchmarks/kernel_resources.py --per-element --files activations.cu

adds, for each kernel that moves 16-byte chunks (common.cuh), the instructions one pass of its
loop runs for a whole chunk, per element (``whole_chunk_path``, read from ``nvdisasm``):
what the SMs must issue per element, which bounds the bandwidth of a kernel with much math.
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

from arguments import description  # beside this script

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

CHUNK_ELEMENTS = {"float": 4, "double": 2}  # elements of a 16-byte chunk (common.cuh)
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


def find_tool(name):
    """CUDA tool ``name`` (ptxas, nvdisasm) from PATH, else from an NVIDIA wheel's bin folder
    (``nvidia/cuda_nvcc/bin/ptxas``, ``nvidia/cu13/bin/nvdisasm``), or None."""
    if shutil.which(name):
        return shutil.which(name)
    try:
        import nvidia
    except ImportError:
        return None
    for folder in nvidia.__path__:
        for path in sorted(glob.glob(os.path.join(folder, "*", "bin", name))):
            return path
    return None


def sass(nvdisasm, cubin_path):
    """{kernel: [(address, instruction)]}: the machine code of a cubin, as ``nvdisasm`` shows
    it, with each branch's target label replaced by its address."""
    text = subprocess.run([nvdisasm, "-c", cubin_path], capture_output=True, text=True,
                          check=True).stdout
    labels, pending = {}, []
    for line in text.splitlines():  # a label names the address of the next instruction
        if match := re.match(r"(\.L_x_\d+):", line.strip()):
            pending.append(match.group(1))
        elif match := re.match(r"\s*/\*([0-9a-f]{4,})\*/", line):
            labels.update((label, int(match.group(1), 16)) for label in pending)
            pending = []
    functions, code = {}, None
    for line in text.splitlines():
        if match := re.match(r"\.text\.(\w+):", line):
            code = functions[match.group(1)] = []
        elif (match := re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+([^;]*);", line)) and code is not None:
            instruction = re.sub(r"`\((\.L_x_\d+)\)", lambda m: hex(labels[m.group(1)]),
                                 match.group(2).strip())
            code.append((int(match.group(1), 16), instruction))
    return functions


# global loads and stores, or generic ones (through a pointer read from memory, as the
# multi-tensor kernels' table holds them); ".128" marks a 16-byte vector
VECTOR_ACCESS = re.compile(r"\b(LDG|STG|LD|ST)\.E\.128\b")
ONE_ELEMENT_ACCESS = re.compile(r"\b(LDG|STG|LD|ST)\.E\b(?!\.128)")
# "@P0 BRA 0x260", "BRA 0x3a0", "@!P0 BRA P2, 0x650" (a second predicate also conditions it)
BRANCH = re.compile(r"^(@!?U?P\w+ )?BRA (?:!?U?P\w+, )?(0x[0-9a-f]+)")


def whole_chunk_path(code):
    """The instructions one pass of a chunked kernel's loop runs when its chunk is whole, or
    None for a kernel without 16-byte accesses. The pass runs from the loop's head (the
    target of the last backward branch) to that branch, follows unconditional branches, and at
    a conditional forward branch jumps when the code it would skip moves elements one by one
    (the partial chunk's path), else falls through. An inner loop (the multi-tensor kernels'
    binary search) counts one trip."""
    if not any(VECTOR_ACCESS.search(instruction) for _, instruction in code):
        return None
    index = {address: i for i, (address, _) in enumerate(code)}
    backward = [(i, int(match.group(2), 16)) for i, (address, instruction) in enumerate(code)
                if (match := BRANCH.match(instruction)) and match.group(1)
                and int(match.group(2), 16) < address]
    end, head = backward[-1]
    i, count = index[head], 0
    while i <= end and count <= len(code):
        count += 1
        match = BRANCH.match(code[i][1])
        if match and i != end:
            target = index[int(match.group(2), 16)]
            skipped = code[i + 1:target]
            if match.group(1) is None or any(ONE_ELEMENT_ACCESS.search(text)
                                             for _, text in skipped):
                i = target
                continue
        i += 1
    return count if count <= len(code) else None


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


def kernel_resources(ptxas, ptx, arch, nvdisasm=None):
    """[(kernel, registers, spilled bytes (ptxas's spill stores), instructions, whole-chunk
    path)] as ptxas builds
    ``ptx`` for ``arch``; the path (``whole_chunk_path``) is None without ``nvdisasm``."""
    with tempfile.TemporaryDirectory() as folder:
        source, binary = (os.path.join(folder, name) for name in ("kernels.ptx", "kernels.cubin"))
        with open(source, "w", encoding="utf-8") as file:
            file.write(ptx)
        report = subprocess.run([ptxas, "-v", f"-arch={arch}", source, "-o", binary],
                                capture_output=True, text=True, check=True).stderr
        with open(binary, "rb") as file:
            sizes = code_sizes(file.read())
        code = sass(nvdisasm, binary) if nvdisasm else {}
    found, kernel, spilled = [], None, 0
    for line in report.splitlines():
        if match := re.search(r"Compiling entry function '(\w+)'", line):
            kernel = match.group(1)
        elif match := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line):
            # the bytes spilled: what is stored, and read back by the loads (counted once)
            spilled = int(match.group(1))
        elif match := re.search(r"Used (\d+) registers", line):
            path = whole_chunk_path(code[kernel]) if kernel in code else None
            found.append((kernel, int(match.group(1)), spilled, sizes[kernel] // 16, path))
    return found


def main(argv=None):
    from minilean.cuda import compile as kernels
    from minilean.cuda import matmul, registry  # noqa: F401  (they register every Program)
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--arch", default="sm_90", help="a real architecture, e.g. sm_80")
    parser.add_argument("--files", default=",".join(sorted(kernels.PROGRAMS)))
    parser.add_argument("--per-element", action="store_true",
                        help="also each chunked kernel's instructions per element (nvdisasm)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.files.split(",")) - set(kernels.PROGRAMS))
    if unknown:
        parser.error(f"--files: no kernel source {', '.join(unknown)}; expected some of "
                     f"{','.join(sorted(kernels.PROGRAMS))}")
    if not re.fullmatch(r"sm_\d+", args.arch):
        parser.error(f"--arch: got {args.arch!r}; expected a real architecture such as sm_90")
    ptxas, nvdisasm = find_tool("ptxas"), find_tool("nvdisasm") if args.per_element else None
    if ptxas is None or kernels.find_libnvrtc() is None:
        print("kernel_resources: needs ptxas and NVRTC: pip install nvidia-cuda-nvcc-cu12 "
              "nvidia-cuda-nvrtc-cu12", file=sys.stderr)
        return 1
    if args.per_element and nvdisasm is None:
        print("kernel_resources: --per-element needs nvdisasm: pip install nvidia-cuda-nvdisasm",
              file=sys.stderr)
        return 1
    virtual = "compute_" + args.arch.split("_")[1]
    print(f"{'kernel on ' + args.arch:<58} {'registers':>9} {'spilled':>8} {'occupancy':>9} "
          f"{'instructions':>12}" + (f" {'per element':>11}" if args.per_element else ""))
    for filename in args.files.split(","):
        program = kernels.PROGRAMS[filename]
        ptx, lowered_names = kernels.nvrtc_compile(program, virtual)
        expressions = {lowered: expression for expression, lowered in lowered_names.items()}
        for kernel, registers, spilled, instructions, path in kernel_resources(
                ptxas, ptx, args.arch, nvdisasm):
            expression = expressions[kernel]
            per_element = "-" if path is None else \
                f"{path / CHUNK_ELEMENTS[expression.split('<')[1].split(',')[0].rstrip('>')]:.1f}"
            print(f"{filename + ': ' + expression:<58} {registers:>9} {spilled:>7}B "
                  f"{occupancy(registers, kernels.THREADS):>9.0%} {instructions:>12}"
                  + (f" {per_element:>11}" if args.per_element else ""))
    print(f"command: python benchmarks/kernel_resources.py {' '.join(argv or sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
