// cuda_on_cpu.h: just enough CUDA to run minilean's kernels (minilean/cuda/*.cu) on the CPU, so
// the tests can execute the kernel bodies where there is no GPU (see tests/cuda_on_cpu.py).
//
// A launch runs the grid's blocks one after another. A kernel that never synchronises runs each
// of a block's threads as a plain call. In a kernel that does (__syncthreads, warp shuffles),
// every CUDA thread of the block is a fiber (ucontext) with its own stack, all on one OS thread:
// the fibers run in turn, each up to its next synchronisation point, so every thread reaches the
// point before any goes past it. Shared memory is static storage (one block runs at a time).
// Runs are deterministic. Like the kernels themselves, this assumes that every thread of a block
// meets the same synchronisation points (true of common.cuh's warp_reduce and block_reduce).
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace cuda_on_cpu {

inline dim3 thread_index, block_index, block_dim, grid_dim;
inline const std::function<void()>* kernel_body = nullptr;
inline std::vector<ucontext_t> fibers;
inline std::vector<char> finished;
inline std::vector<char> stacks;
inline ucontext_t scheduler;
inline int running_fiber = -1;  // -1: threads run as plain calls
inline double lanes[1024];      // values a warp shuffle exchanges, one per thread
constexpr size_t kStackBytes = 64 * 1024;

// Called by a thread at a synchronisation point: give the turn to the next thread.
inline void arrive() {
  if (running_fiber < 0)
    throw std::logic_error("kernel synchronises but was launched without fibers");
  swapcontext(&fibers[running_fiber], &scheduler);
}

inline void fiber_main() {
  (*kernel_body)();
  finished[running_fiber] = 1;  // returning switches to uc_link, the scheduler
}

inline void run_block_as_fibers(unsigned threads) {
  fibers.resize(threads);
  finished.assign(threads, 0);
  stacks.resize(threads * kStackBytes);
  for (unsigned t = 0; t < threads; ++t) {
    getcontext(&fibers[t]);
    fibers[t].uc_stack.ss_sp = &stacks[t * kStackBytes];
    fibers[t].uc_stack.ss_size = kStackBytes;
    fibers[t].uc_link = &scheduler;
    makecontext(&fibers[t], fiber_main, 0);
  }
  for (bool all_finished = false; !all_finished;) {  // one round: every thread to its next point
    all_finished = true;
    for (unsigned t = 0; t < threads; ++t) {
      if (finished[t]) continue;
      running_fiber = static_cast<int>(t);
      thread_index.x = t;
      swapcontext(&scheduler, &fibers[t]);
      all_finished = all_finished && finished[t];
    }
  }
  running_fiber = -1;
}

inline void launch(unsigned grid, unsigned block, bool synchronises,
                   const std::function<void()>& body) {
  grid_dim.x = grid;
  block_dim.x = block;
  kernel_body = &body;
  for (unsigned b = 0; b < grid; ++b) {
    block_index.x = b;
    if (synchronises) {
      run_block_as_fibers(block);
    } else {
      for (unsigned t = 0; t < block; ++t) {
        thread_index.x = t;
        body();
      }
    }
  }
}

}  // namespace cuda_on_cpu

#define threadIdx cuda_on_cpu::thread_index
#define blockIdx cuda_on_cpu::block_index
#define blockDim cuda_on_cpu::block_dim
#define gridDim cuda_on_cpu::grid_dim
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { cuda_on_cpu::arrive(); }

// Every lane writes its value, all arrive, each reads its partner's, all arrive again (so no
// lane overwrites a value before its partner has read it).
template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask) {
  const unsigned self = threadIdx.x;
  cuda_on_cpu::lanes[self] = static_cast<double>(value);
  cuda_on_cpu::arrive();
  const T partner = static_cast<T>(cuda_on_cpu::lanes[self ^ static_cast<unsigned>(lane_mask)]);
  cuda_on_cpu::arrive();
  return partner;
}

inline float __int_as_float(int bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

template <typename T>
T rsqrt(T x) {
  return T(1) / std::sqrt(x);
}

// CUDA's math functions are overloaded for float and double in the global namespace.
using std::erf;
using std::exp;
using std::log;
using std::max;
using std::min;
using std::sqrt;
using std::tanh;
