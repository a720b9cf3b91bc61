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
__global__ void squared_error(const T* x, const T* y, T* out, long long n) {
  GRID_STRIDE_LOOP(i, n) {
    const T diff = x[i] - y[i];
    out[i] = diff * diff;
  }
}

template <typename T>
__global__ void squared_error_partial_sums(const T* x, const T* y, T* partial, long long n) {
  T sum = T(0);
  GRID_STRIDE_LOOP(i, n) {
    const T diff = x[i] - y[i];
    sum += diff * diff;
  }
  sum = block_reduce(sum, SumOp(), T(0));
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

template <typename T>
__global__ void mse_backward(const T* x, const T* y, const T* grad, long long grad_stride,
                             T scale, T* dx, T* dy, long long n) {
  GRID_STRIDE_LOOP(i, n) {
    const T g = scale * T(2) * (x[i] - y[i]) * grad[i * grad_stride];
    dx[i] = g;
    dy[i] = -g;
  }
}
