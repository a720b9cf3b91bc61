// noising.cu: the forward (noising) process of diffusion, q(x_t | x_0), for a batch at once.
//
//   x_t = sqrt(alpha_bar[t_s]) x0 + sqrt(1 - alpha_bar[t_s]) noise
// where sample s = i / per_sample has its own timestep t_s (int64) into the alpha_bar table.
// backward: d x0 = sqrt(alpha_bar[t_s]) grad,  d noise = sqrt(1 - alpha_bar[t_s]) grad.
#include "common.cuh"

template <typename T>
__global__ void q_sample_forward(const T* x0, const T* noise, const T* alpha_bar,
                                 const long long* t, T* out, long long per_sample, long long n) {
  GRID_STRIDE_LOOP(i, n) {
    const T alpha = alpha_bar[t[i / per_sample]];
    out[i] = sqrt(alpha) * x0[i] + sqrt(T(1) - alpha) * noise[i];
  }
}

template <typename T>
__global__ void q_sample_backward(const T* grad, const T* alpha_bar, const long long* t,
                                  T* grad_x0, T* grad_noise, long long per_sample, long long n) {
  GRID_STRIDE_LOOP(i, n) {
    const T alpha = alpha_bar[t[i / per_sample]];
    grad_x0[i] = sqrt(alpha) * grad[i];
    grad_noise[i] = sqrt(T(1) - alpha) * grad[i];
  }
}
