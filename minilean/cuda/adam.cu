// adam.cu: one Adam / AdamW step over every parameter of a model in a single launch.
//
// For each element, with g the gradient and w the parameter (minilean/optim/adam.py, PyTorch):
//   AdamW (decoupled = 1):  w <- w (1 - lr * weight_decay)
//   Adam  (decoupled = 0):  g <- g + weight_decay * w
//   m <- beta1 m + (1 - beta1) g           v <- beta2 v + (1 - beta2) g^2
//   w <- w - step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
// with step_size = lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t) and 1 - beta1,
// 1 - beta2 from the host (computed in double: 1 - 0.999 in float32 is off by 1e-5 relative).
// The table holds the addresses of tensor k's param at [k], grad at [count + k], first moment m
// at [2 count + k] and second moment v at [3 count + k].
#include "multi_tensor.cuh"

template <typename T>
__global__ void adam_update(const unsigned long long* table, const long long* offsets, int count,
                            long long total, T lr, T beta1, T one_minus_beta1, T beta2,
                            T one_minus_beta2, T eps, T weight_decay, T step_size,
                            T bias_correction2_sqrt, int decoupled) {
  GRID_STRIDE_LOOP(i, total) {
    const int k = find_tensor(offsets, count, i);
    const long long j = i - offsets[k];
    T* param = tensor_at<T>(table, k);
    const T* grad = tensor_at<T>(table, count + k);
    T* exp_avg = tensor_at<T>(table, 2 * count + k);
    T* exp_avg_sq = tensor_at<T>(table, 3 * count + k);
    T w = param[j], g = grad[j];
    if (decoupled) w *= T(1) - lr * weight_decay; else g += weight_decay * w;
    const T m = beta1 * exp_avg[j] + one_minus_beta1 * g;
    const T v = beta2 * exp_avg_sq[j] + one_minus_beta2 * g * g;
    exp_avg[j] = m;
    exp_avg_sq[j] = v;
    param[j] = w - step_size * m / (sqrt(v) / bias_correction2_sqrt + eps);
  }
}
