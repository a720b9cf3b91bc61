// clip.cu: clipping every gradient of a model by their global 2-norm, in two passes over them.
//
//   squared_norm_partials:  partials[block] = sum of g^2 over the block's elements (in double,
//                           so many float32 squares do not lose the small ones)
//   scale_by_clip:          g *= min(1, max_norm / (sqrt(squared_norm) + eps)), reading the
//                           squared norm from device memory (no copy to the host); a NaN
//                           norm makes the scale, and so every gradient, NaN, as the plain
//                           clip_arrays' xp.minimum does (the training loop's NaN guard
//                           then sees it)
// The partials are added by reduce.cu's sum_rows in between (a fixed order: the same norm on
// every run). The table holds the address of gradient k at [k] (multi_tensor.cuh).
#include "multi_tensor.cuh"

template <typename T>
__global__ void squared_norm_partials(const unsigned long long* table, const long long* offsets,
                                      const long long* sizes, int count, long long total,
                                      int vector, double* partials) {
  double sum = 0;
  CHUNKED_GRID_STRIDE_LOOP(T, i, total) {
    const TensorChunk chunk = tensor_chunk(offsets, sizes, count, i);
    const Chunk<T> grads = load_chunk(tensor_at<T>(table, chunk.k), chunk.first, chunk.size,
                                      vector);  // zeros past the tensor's end
#pragma unroll
    for (int e = 0; e < Chunk<T>::size; ++e) sum += double(grads.values[e]) * grads.values[e];
  }
  sum = block_reduce(sum, SumOp(), 0.0);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

template <typename T>
__global__ void scale_by_clip(const unsigned long long* table, const long long* offsets,
                              const long long* sizes, int count, long long total, int vector,
                              const double* squared_norm, double max_norm, double eps) {
  const double clip = max_norm / (sqrt(*squared_norm) + eps);
  const T scale = T(clip >= 1.0 ? 1.0 : clip);  // NaN >= 1 is false: NaN stays
  CHUNKED_GRID_STRIDE_LOOP(T, i, total) {
    const TensorChunk chunk = tensor_chunk(offsets, sizes, count, i);
    T* grad = tensor_at<T>(table, chunk.k);
    Chunk<T> grads = load_chunk(grad, chunk.first, chunk.size, vector);
#pragma unroll
    for (int e = 0; e < Chunk<T>::size; ++e) grads.values[e] *= scale;
    store_chunk(grad, chunk.first, chunk.size, grads, vector);
  }
}
