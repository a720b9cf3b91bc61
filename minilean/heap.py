"""Keep freed memory in the process for the next training step (glibc's malloc thresholds).

A training step allocates the same arrays every time (activations, convolution columns,
gradients) and frees them all by the end of backward. By default glibc's malloc gives large
freed blocks back to the kernel: a block past the mmap threshold is unmapped when freed, and
free space past the trim threshold at the top of the heap is trimmed. The next step then
faults the same pages in again, each one zeroed by the kernel: 2,300-4,400 minor page faults
per default diffusion step on the CPU, 9,000-19,000 for a 32x32 U-Net. Raising both
thresholds keeps that memory for reuse: 3 or 4 faults per step, either step 5-7% faster, the
default step's peak memory unchanged and the 32x32 one's 4% higher (``benchmarks/RESULTS.md``,
"Freed memory kept in the process").

The command line calls ``keep_freed_memory`` once at start-up; a Python script may call it too.
Other C libraries (macOS, musl, Windows) keep their own policy: nothing changes there.
"""
import ctypes
import platform

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# Blocks up to glibc's own ceiling for its sliding mmap threshold (32 MiB on 64-bit systems;
# larger values are refused by some glibc versions) come from the heap and are reused.
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Free memory at the top of the heap is returned to the kernel only past 1 GiB.
TRIM_THRESHOLD_BYTES = 2**30


def keep_freed_memory():
    """Set glibc's mmap and trim thresholds so that freed blocks stay in the process.

    Returns True where both settings took effect, False where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
