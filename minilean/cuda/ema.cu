// ema.cu: the exponential moving average of every parameter of a model in a single launch.
//
//   shadow <- decay * shadow + (1 - decay) * param,  written as shadow -= (1 - decay)(shadow - param)
// (the form of minilean/optim/ema.py), with 1 - decay from the host, computed in double as the
// plain update computes it: in float, 1 - 0.9999 is off by 1.7e-4 relative (adam.cu's 1 - beta).
// The table holds the addresses of the shadows of tensor k at [k] and of the params at [count + k].
#include "multi_tensor.cuh"

template <typename T>
__global__ void ema_update(const unsigned long long* table, const long long* offsets,
                           const long long* sizes, int count, long long total, int vector,
                           T one_minus_decay) {
  CHUNKED_GRID_STRIDE_LOOP(T, i, total) {
    const TensorChunk chunk = tensor_chunk(offsets, sizes, count, i);
    T* shadow = tensor_at<T>(table, chunk.k);
    const T* param = tensor_at<T>(table, count + chunk.k);
    Chunk<T> shadows = load_chunk(shadow, chunk.first, chunk.size, vector);
    const Chunk<T> params = load_chunk(param, chunk.first, chunk.size, vector);
#pragma unroll
    for (int e = 0; e < Chunk<T>::size; ++e)
      shadows.values[e] -= one_minus_decay * (shadows.values[e] - params.values[e]);
    store_chunk(shadow, chunk.first, chunk.size, shadows, vector);
  }
}
