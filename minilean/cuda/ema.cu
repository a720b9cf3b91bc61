// ema.cu: the exponential moving average of every parameter of a model in a single launch.
//
//   shadow <- decay * shadow + (1 - decay) * param,  written as shadow -= (1 - decay)(shadow - param)
// (the form of minilean/optim/ema.py).
// The table holds the addresses of the shadows of tensor k at [k] and of the params at [count + k].
#include "multi_tensor.cuh"

template <typename T>
__global__ void ema_update(const unsigned long long* table, const long long* offsets, int count,
                           long long total, T decay) {
  GRID_STRIDE_LOOP(i, total) {
    const int k = find_tensor(offsets, count, i);
    const long long j = i - offsets[k];
    T* shadow = tensor_at<T>(table, k);
    const T* param = tensor_at<T>(table, count + k);
    shadow[j] -= (T(1) - decay) * (shadow[j] - param[j]);
  }
}
