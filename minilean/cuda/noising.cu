// noising.cu: the forward (noising) process of diffusion, q(x_t | x_0), for a batch at once.
//
//   x_t = sqrt(alpha_bar[t_s]) x0 + sqrt(1 - alpha_bar[t_s]) noise
// where sample s = i / per_sample has its own timestep t_s (int64, in [0, T): the host checks
// or wraps it) into the table of factors.
// backward: d x0 = sqrt(alpha_bar[t_s]) grad,  d noise = sqrt(1 - alpha_bar[t_s]) grad.
// The factors come from the host as one (T, 2) table, row t = (sqrt(alpha_bar[t]),
// sqrt(1 - alpha_bar[t])), computed in double and rounded once: near t = 0, 1 - alpha_bar taken
// in float from alpha_bar rounded to float keeps only a few correct bits (noising.py). A row is
// one aligned load through one pointer.
//
// The kernels ask for 6 resident blocks of THREADS (75% of an SM's threads), so 40 registers,
// not common.cuh's 8 blocks and 32 registers: at 32 the float kernels spilled 24 and 32 bytes
// a thread (benchmarks/kernel_resources.py, ptxas 13.0, sm_90), and on an H200 the backward
// moved 84% of copy bandwidth, the forward 98%. At 40 registers nothing spills, and both
// moved 96-104% (benchmarks/RESULTS.md, 2026-11-27). The double kernels take 40 either way.
#include "common.cuh"

constexpr int noising_resident_blocks = 6;

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

// A row of the table: the two factors of a timestep, read in one aligned load (the table
// comes as T*, a (T, 2) array, and CuPy's allocations are aligned far past 2 * sizeof(T)).
template <typename T> struct alignas(2 * sizeof(T)) Factors { T signal, noise; };
template <typename T> __device__ Factors<T> row(const T* factors, long long step) {
  return reinterpret_cast<const Factors<T>*>(factors)[step];
}

template <typename T>
__global__ void __launch_bounds__(THREADS, noising_resident_blocks)
    q_sample_forward(const T* __restrict__ x0, const T* __restrict__ noise,
                     const T* __restrict__ factors,
                     const long long* __restrict__ t, T* __restrict__ out, long long per_sample,
                     long long n) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> x0s = load_chunk(x0, first, n), noises = load_chunk(noise, first, n);
    Chunk<T> outs;
    SampleOf samples(first, per_sample);
#pragma unroll
    for (int e = 0; e < Chunk<T>::size && first + e < n; ++e) {
      const Factors<T> f = row(factors, t[samples.at(first + e)]);
      outs.values[e] = f.signal * x0s.values[e] + f.noise * noises.values[e];
    }
    store_chunk(out, first, n, outs);
  }
}

template <typename T>
__global__ void __launch_bounds__(THREADS, noising_resident_blocks)
    q_sample_backward(const T* __restrict__ grad, const T* __restrict__ factors,
                      const long long* __restrict__ t, T* __restrict__ grad_x0,
                      T* __restrict__ grad_noise, long long per_sample, long long n) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> grads = load_chunk(grad, first, n);
    Chunk<T> x0s, noises;
    SampleOf samples(first, per_sample);
#pragma unroll
    for (int e = 0; e < Chunk<T>::size && first + e < n; ++e) {
      const Factors<T> f = row(factors, t[samples.at(first + e)]);
      x0s.values[e] = f.signal * grads.values[e];
      noises.values[e] = f.noise * grads.values[e];
    }
    store_chunk(grad_x0, first, n, x0s);
    store_chunk(grad_noise, first, n, noises);
  }
}
