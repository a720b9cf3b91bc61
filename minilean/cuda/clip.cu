// clip.cu: clipping every gradient of a model by their global 2-norm, in two launches.
//
//   squared_norm_partials:  partials[block] = sum of g^2 over the block's elements (in double,
//                           so many float32 squares do not lose the small ones)
//   scale_by_clip:          g *= min(1, max_norm / (sqrt(squared_norm) + eps)), reading the
//                           squared norm from device memory (no copy to the host)
// The partials are added by reduce.cu's sum_rows in between (a fixed order: the same norm on
// every run). The table holds the address of gradient k at [k] (multi_tensor.cuh).
#include "multi_tensor.cuh"

template <typename T>
__global__ void squared_norm_partials(const unsigned long long* table, const long long* offsets,
                                      int count, long long total, double* partials) {
  double sum = 0;
  GRID_STRIDE_LOOP(i, total) {
    const int k = find_tensor(offsets, count, i);
    const double g = tensor_at<T>(table, k)[i - offsets[k]];
    sum += g * g;
  }
  sum = block_reduce(sum, SumOp(), 0.0);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

template <typename T>
__global__ void scale_by_clip(const unsigned long long* table, const long long* offsets,
                              int count, long long total, const double* squared_norm,
                              double max_norm, double eps) {
  const double clip = max_norm / (sqrt(*squared_norm) + eps);
  const T scale = T(clip < 1.0 ? clip : 1.0);
  GRID_STRIDE_LOOP(i, total) {
    const int k = find_tensor(offsets, count, i);
    tensor_at<T>(table, k)[i - offsets[k]] *= scale;
  }
}
