// common.cuh: what every kernel file shares. 64-bit grid-stride loops, and sums / maxima across
// a warp and across a block (used by the row kernels: reductions, softmax, norms, the MSE loss).
#pragma once

// Each thread visits i = first, first + stride, ... with 64-bit indices, so a tensor with more
// than 2^31 elements (batch x channel x space grows fast) is indexed correctly.
#define GRID_STRIDE_LOOP(i, n)                                                        \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);     \
       i += (long long)blockDim.x * gridDim.x)

// The same loop for memory-bound elementwise kernels, handing each thread UNROLL elements per
// pass (first + u * stride, u < UNROLL), which load_unrolled reads before any is used. With one
// 4-byte load per thread in flight an H200 streamed at about half its copy bandwidth (too few
// bytes in flight to cover the memory latency); UNROLL independent loads keep more in flight
// (benchmarks/RESULTS.md has the measurements).
// Launch it with UNROLL times fewer threads than elements (compile.launch_unrolled).
constexpr int UNROLL = 4;
#define UNROLLED_GRID_STRIDE_LOOP(first, stride, n)                                         \
  for (long long stride = (long long)blockDim.x * gridDim.x,                                \
                 first = (long long)blockIdx.x * blockDim.x + threadIdx.x;                  \
       first < (n); first += stride * UNROLL)

template <typename T>
__device__ void load_unrolled(T (&values)[UNROLL], const T* array, long long first,
                              long long stride, long long n) {
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {
    const long long i = first + u * stride;
    values[u] = i < n ? array[i] : T(0);
  }
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
