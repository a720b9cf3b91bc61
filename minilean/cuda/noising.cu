// noising.cu: the forward (noising) process of diffusion, q(x_t | x_0), for a batch at once.
//
//   x_t = sqrt(alpha_bar[t_s]) x0 + sqrt(1 - alpha_bar[t_s]) noise
// where sample s = i / per_sample has its own timestep t_s (int64, in [0, T): the host checks
// or wraps it) into the two tables.
// backward: d x0 = sqrt(alpha_bar[t_s]) grad,  d noise = sqrt(1 - alpha_bar[t_s]) grad.
// The tables of sqrt(alpha_bar) and sqrt(1 - alpha_bar) come from the host, computed in double
// and rounded once: near t = 0, 1 - alpha_bar taken in float from alpha_bar rounded to float
// keeps only a few correct bits (noising.py).
#include "common.cuh"

// The sample of each element of a chunk, i = sample * per_sample + r: one 64-bit division per
// chunk, then a step at each sample boundary (a GPU has no divide instruction: a 64-bit
// division is a long routine, which one per element would pay in every kernel of this file).
struct SampleOf {
  long long sample, next_start, per_sample;
  __device__ SampleOf(long long first, long long per_sample)
      : sample(first / per_sample), next_start((sample + 1) * per_sample),
        per_sample(per_sample) {}
  __device__ long long at(long long i) {  // for i from the chunk's first element up
    while (i >= next_start) {
      ++sample;
      next_start += per_sample;
    }
    return sample;
  }
};

template <typename T>
__global__ void __launch_bounds__(THREADS, resident_blocks<T>)
    q_sample_forward(const T* __restrict__ x0, const T* __restrict__ noise,
                     const T* __restrict__ sqrt_alpha_bar,
                     const T* __restrict__ sqrt_one_minus_alpha_bar,
                     const long long* __restrict__ t, T* __restrict__ out, long long per_sample,
                     long long n) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> x0s = load_chunk(x0, first, n), noises = load_chunk(noise, first, n);
    Chunk<T> outs;
    SampleOf samples(first, per_sample);
#pragma unroll
    for (int e = 0; e < Chunk<T>::size && first + e < n; ++e) {
      const long long step = t[samples.at(first + e)];
      outs.values[e] = sqrt_alpha_bar[step] * x0s.values[e] +
                       sqrt_one_minus_alpha_bar[step] * noises.values[e];
    }
    store_chunk(out, first, n, outs);
  }
}

template <typename T>
__global__ void __launch_bounds__(THREADS, resident_blocks<T>)
    q_sample_backward(const T* __restrict__ grad, const T* __restrict__ sqrt_alpha_bar,
                      const T* __restrict__ sqrt_one_minus_alpha_bar,
                      const long long* __restrict__ t, T* __restrict__ grad_x0,
                      T* __restrict__ grad_noise, long long per_sample, long long n) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> grads = load_chunk(grad, first, n);
    Chunk<T> x0s, noises;
    SampleOf samples(first, per_sample);
#pragma unroll
    for (int e = 0; e < Chunk<T>::size && first + e < n; ++e) {
      const long long step = t[samples.at(first + e)];
      x0s.values[e] = sqrt_alpha_bar[step] * grads.values[e];
      noises.values[e] = sqrt_one_minus_alpha_bar[step] * grads.values[e];
    }
    store_chunk(grad_x0, first, n, x0s);
    store_chunk(grad_noise, first, n, noises);
  }
}
