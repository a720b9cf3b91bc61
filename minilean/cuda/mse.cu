// mse.cu: the mean squared error loss and its gradient.
//
// forward, reduction "none":       out[i] = (x[i] - y[i])^2
// forward, reduction "sum"/"mean": partial[b] = sum of (x - y)^2 over the elements block b
//                                  visits; the host side sums the partials with reduce.cu and
//                                  scales by 1/n for "mean" (deterministic: no atomics).
// backward: dx = scale * 2 (x - y) * grad[i * grad_stride],  dy = -dx
// (grad_stride 0 for a scalar loss, whose gradient is one device value; scale 1/n for "mean").
#include "common.cuh"

template <typename T>
__global__ void squared_error(const T* __restrict__ x, const T* __restrict__ y, T* __restrict__ out,
                              long long n) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> xs = load_chunk(x, first, n), ys = load_chunk(y, first, n);
    Chunk<T> squares;
#pragma unroll
    for (int e = 0; e < Chunk<T>::size; ++e) {
      const T diff = xs.values[e] - ys.values[e];
      squares.values[e] = diff * diff;
    }
    store_chunk(out, first, n, squares);
  }
}

template <typename T>
__global__ void squared_error_partial_sums(const T* __restrict__ x, const T* __restrict__ y,
                                           T* __restrict__ partial, long long n) {
  T sum = T(0);
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> xs = load_chunk(x, first, n), ys = load_chunk(y, first, n);  // zeros past n
#pragma unroll
    for (int e = 0; e < Chunk<T>::size; ++e) {
      const T diff = xs.values[e] - ys.values[e];
      sum += diff * diff;
    }
  }
  sum = block_reduce(sum, SumOp(), T(0));
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

template <typename T>
__global__ void mse_backward(const T* __restrict__ x, const T* __restrict__ y,
                             const T* __restrict__ grad, long long grad_stride, T scale,
                             T* __restrict__ dx, T* __restrict__ dy, long long n) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> xs = load_chunk(x, first, n), ys = load_chunk(y, first, n);
    Chunk<T> dxs, dys;
#pragma unroll
    for (int e = 0; e < Chunk<T>::size; ++e) {
      const long long i = first + e < n ? first + e : first;  // past n: any element, unused
      dxs.values[e] = scale * T(2) * (xs.values[e] - ys.values[e]) * grad[i * grad_stride];
      dys.values[e] = -dxs.values[e];
    }
    store_chunk(dx, first, n, dxs);
    store_chunk(dy, first, n, dys);
  }
}
