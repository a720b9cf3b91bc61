// common.cuh: what every kernel file shares. 64-bit grid-stride loops, the 16-byte chunks that
// the elementwise kernels move, and sums / maxima across a warp and across a block (used by the
// row kernels of reduce.cu, softmax.cu and norm.cu, and by the per-block partial sums of the
// MSE loss and of clipping's squared norm).
#pragma once

// Each thread visits i = first, first + stride, ... with 64-bit indices, so a tensor with more
// than 2^31 elements (batch x channel x space grows fast) is indexed correctly.
#define GRID_STRIDE_LOOP(i, n)                                                        \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);     \
       i += (long long)blockDim.x * gridDim.x)

// The loop for memory-bound elementwise kernels. Each thread takes, per pass, the elements of
// one 16-byte vector (a Chunk: 4 floats or 2 doubles), read and written as one load and one
// store. With one 4-byte load per thread in flight an H200 streamed at about half its copy
// bandwidth (too few bytes in flight to cover the memory latency); a 16-byte chunk keeps four
// times as many in flight, as four separate loads did before, but with one address and one
// bounds check instead of four, which had made up a third of the instructions per element of
// the transcendental activations (benchmarks/RESULTS.md has the counts and measurements).
// Launch it with one thread per chunk (compile.launch_chunked), in blocks of THREADS.
constexpr int CHUNK_BYTES = 16;
template <typename T> struct alignas(CHUNK_BYTES) Chunk {
  static constexpr int size = CHUNK_BYTES / sizeof(T);
  T values[size];
};

// What the activation kernels ask of ptxas (__launch_bounds__(THREADS, resident_blocks<T>)):
// for float, 8 blocks resident per SM, all 2048 threads, so at most 32 registers each. The
// activations' float kernels fit in that without spilling; left free, ptxas gave GELU's
// backward 40 registers, and so only 75% of the threads (and of the loads in flight).
// noising.cu asks for 6 blocks (40 registers) instead: held to 32 its float kernels spilled, and
// spilling cost more than the threads do (its header has the numbers). Double's kernels would
// spill at 32 registers and are left free, and so are the other chunked kernels (mse.cu, and
// the all-parameters updates of adam.cu, ema.cu and clip.cu).
constexpr int THREADS = 256;  // compile.THREADS
template <typename T> constexpr int resident_blocks = sizeof(T) == 4 ? 8 : 1;

#define CHUNKED_GRID_STRIDE_LOOP(T, first, n)                                                  \
  for (long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * Chunk<T>::size; \
       first < (n); first += (long long)blockDim.x * gridDim.x * Chunk<T>::size)

// A kernel whose outputs are arrays of its own (freshly allocated, overlapping no input)
// declares its pointers __restrict__: the compiler may then read the inputs through the
// read-only data path (ld.global.nc instead of ld.global). Same instructions, same registers;
// on an H200 the activation forwards gained 1 to 6 points of copy bandwidth against a
// reference kernel timed in the same run (benchmarks/RESULTS.md). Kernels that update arrays
// in place through a table of addresses (Adam, EMA, clipping) make no such promise.
//
// array[first], array[first + 1], ... as one vector load; the array's last chunk, if partial,
// element by element (zeros past n), and every chunk so where `vector` is false. A vector needs
// `array` on a CHUNK_BYTES boundary, as CuPy's allocations are (compile.chunk_aligned copies a
// view that starts inside one).
template <typename T>
__device__ Chunk<T> load_chunk(const T* array, long long first, long long n, bool vector = true) {
  if (vector && first + Chunk<T>::size <= n)
    return *reinterpret_cast<const Chunk<T>*>(array + first);
  Chunk<T> chunk;
#pragma unroll
  for (int k = 0; k < Chunk<T>::size; ++k)
    chunk.values[k] = first + k < n ? array[first + k] : T(0);
  return chunk;
}

template <typename T>
__device__ void store_chunk(T* array, long long first, long long n, const Chunk<T>& chunk,
                            bool vector = true) {
  if (vector && first + Chunk<T>::size <= n) {
    *reinterpret_cast<Chunk<T>*>(array + first) = chunk;
    return;
  }
#pragma unroll
  for (int k = 0; k < Chunk<T>::size; ++k)
    if (first + k < n) array[first + k] = chunk.values[k];
}

// -infinity of type T (NVRTC has no <cmath> INFINITY): the float bit pattern, widened as needed.
template <typename T> __device__ T negative_infinity() { return -T(__int_as_float(0x7f800000)); }

struct SumOp {
  template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <typename T> __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// Butterfly exchange: after five steps every lane of the warp holds op over all 32 lanes.
template <typename T, typename Op>
__device__ T warp_reduce(T value, Op op) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// op over all threads of the block; every thread gets the result. blockDim.x must be a
// multiple of 32 (at most 1024). Safe to call several times in a row.
template <typename T, typename Op>
__device__ T block_reduce(T value, Op op, T identity) {
  __shared__ T per_warp[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  value = warp_reduce(value, op);
  __syncthreads();  // readers of the previous call's per_warp[0] are done
  if (lane == 0) per_warp[warp] = value;
  __syncthreads();
  value = lane < warps ? per_warp[lane] : identity;
  value = warp_reduce(value, op);  // every warp reduces the per-warp results itself
  return value;
}

// One row of a tensor viewed as (outer, length, inner), contiguous: element j of row r is at
// row_start(r) + j * inner. Reducing over an axis makes the rows; the last axis has inner = 1.
__device__ inline long long row_start(long long row, long long length, long long inner) {
  return (row / inner) * length * inner + row % inner;
}
