// softmax.cu: softmax and log_softmax over one axis, forward and backward.
//
// The input is viewed as (outer, length, inner); each row (o, k) is normalised over j.
// Forward, shifted by the row maximum m so that exp never overflows:
//   s = sum_j e^(x_j - m);   softmax y_j = e^(x_j - m) / s;   log_softmax y_j = x_j - m - log s
// Backward from the saved output y:
//   softmax:      dx_j = y_j (g_j - sum_i g_i y_i)
//   log_softmax:  dx_j = g_j - e^(y_j) sum_i g_i
// One block per row, rows handed out block-stride; `take_log` picks log_softmax.
#include "common.cuh"

template <typename T>
__global__ void softmax_forward(const T* x, T* y, long long rows, long long length,
                                long long inner, int take_log) {
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const long long start = row_start(row, length, inner);
    T maximum = negative_infinity<T>();
    for (long long j = threadIdx.x; j < length; j += blockDim.x)
      maximum = max(maximum, x[start + j * inner]);
    maximum = block_reduce(maximum, MaxOp(), negative_infinity<T>());
    // a maximum that is not finite shifts by 0, as the plain op's _shifted_exp does: a row with
    // +inf then gives softmax [0, nan, 0] (log_softmax [-inf, nan, -inf]) rather than NaN
    // everywhere from inf - inf. An all -inf row still gives NaN everywhere, as the plain op
    // does: the shift avoids -inf - -inf, but s = 0 then makes 0 / 0 (and -inf - log 0).
    if (!isfinite(maximum)) maximum = T(0);
    T sum = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x)
      sum += exp(x[start + j * inner] - maximum);
    sum = block_reduce(sum, SumOp(), T(0));
    const T log_sum = log(sum);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long at = start + j * inner;
      const T shifted = x[at] - maximum;
      y[at] = take_log ? shifted - log_sum : exp(shifted) / sum;
    }
  }
}

template <typename T>
__global__ void softmax_backward(const T* y, const T* grad, T* dx, long long rows,
                                 long long length, long long inner, int take_log) {
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const long long start = row_start(row, length, inner);
    T total = T(0);  // sum g (log_softmax) or sum g y (softmax)
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long at = start + j * inner;
      total += take_log ? grad[at] : grad[at] * y[at];
    }
    total = block_reduce(total, SumOp(), T(0));
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long at = start + j * inner;
      dx[at] = take_log ? grad[at] - exp(y[at]) * total : y[at] * (grad[at] - total);
    }
  }
}
