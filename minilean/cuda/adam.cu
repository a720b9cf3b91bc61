// adam.cu: one Adam / AdamW step over every parameter of a model in a single launch.
//
// For each element, with g the gradient and w the parameter (minilean/optim/adam.py, PyTorch):
//   AdamW (decoupled = 1):  w <- w (1 - lr * weight_decay)
//   Adam  (decoupled = 0):  g <- g + weight_decay * w
//   m <- beta1 m + (1 - beta1) g           v <- beta2 v + (1 - beta2) g^2
//   w <- w - (m / (sqrt(v) / bias_correction2_sqrt + eps)) * step_size
// with step_size = lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t) and 1 - beta1,
// 1 - beta2 from the host (computed in double: 1 - 0.999 in float32 is off by 1e-5 relative).
// The table holds the addresses of tensor k's param at [k], grad at [count + k], first moment m
// at [2 count + k] and second moment v at [3 count + k].
#include "multi_tensor.cuh"

template <typename T>
__global__ void adam_update(const unsigned long long* table, const long long* offsets,
                            const long long* sizes, int count, long long total, int vector,
                            T lr, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps,
                            T weight_decay, T step_size, T bias_correction2_sqrt, int decoupled) {
  CHUNKED_GRID_STRIDE_LOOP(T, i, total) {
    const TensorChunk chunk = tensor_chunk(offsets, sizes, count, i);
    T* param = tensor_at<T>(table, chunk.k);
    const T* grad = tensor_at<T>(table, count + chunk.k);
    T* exp_avg = tensor_at<T>(table, 2 * count + chunk.k);
    T* exp_avg_sq = tensor_at<T>(table, 3 * count + chunk.k);
    Chunk<T> w = load_chunk(param, chunk.first, chunk.size, vector),
             g = load_chunk(grad, chunk.first, chunk.size, vector),
             m = load_chunk(exp_avg, chunk.first, chunk.size, vector),
             v = load_chunk(exp_avg_sq, chunk.first, chunk.size, vector);
#pragma unroll
    for (int e = 0; e < Chunk<T>::size; ++e) {
      if (decoupled) w.values[e] *= T(1) - lr * weight_decay;
      else if (weight_decay != T(0)) g.values[e] += weight_decay * w.values[e];  // 0 * inf
      m.values[e] = beta1 * m.values[e] + one_minus_beta1 * g.values[e];
      v.values[e] = beta2 * v.values[e] + one_minus_beta2 * g.values[e] * g.values[e];
      // divided before it is scaled, as the plain update and PyTorch's addcdiv: step_size * m
      // first passes float32's largest number for a huge m at a large lr, inf where the step
      // is finite (and inf / inf = NaN where v overflowed, whose step is 0)
      w.values[e] -= m.values[e] / (sqrt(v.values[e]) / bias_correction2_sqrt + eps) * step_size;
    }
    store_chunk(param, chunk.first, chunk.size, w, vector);
    store_chunk(exp_avg, chunk.first, chunk.size, m, vector);
    store_chunk(exp_avg_sq, chunk.first, chunk.size, v, vector);
  }
}
