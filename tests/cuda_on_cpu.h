// cuda_on_cpu.h: just enough CUDA to run minilean's kernels (minilean/cuda/*.cu) on the CPU, so
// the tests can execute the kernel bodies where there is no GPU (see tests/cuda_on_cpu.py).
//
// A launch runs the grid's blocks one after another. A kernel that never synchronises runs each
// of a block's threads as a plain call. In a kernel that does (__syncthreads, warp shuffles),
// every CUDA thread of the block is a fiber with its own stack, all on one OS thread:
// the fibers run in turn, each up to its next synchronisation point, so every thread reaches the
// point before any goes past it. Shared memory is static storage (one block runs at a time).
// Runs are deterministic. Like the kernels themselves, this assumes that every thread of a block
// meets the same synchronisation points (true of common.cuh's warp_reduce and block_reduce).
//
// A GPU stops a kernel that reads or writes through a misaligned pointer (a 16-byte Chunk of
// common.cuh at an address that is not a multiple of 16), where x86-64 would do it or crash. So
// the library is built with -fsanitize=alignment, whose check, before the access, lands in the
// handler below: it notes the address and throws, the launch stops, and cuda_on_cpu.py raises.
#pragma once
#if !defined(__x86_64__)
#error "cuda_on_cpu.h switches fibers with x86-64 assembly"
#endif

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace cuda_on_cpu {
// volatile: the compiler may not assume the handler, called through the sanitizer, leaves it be
__attribute__((visibility("hidden"))) inline const void* volatile misaligned_address = nullptr;
struct MisalignedAccess {};  // what the handler throws; caught where a thread's run starts
}  // namespace cuda_on_cpu

// -fsanitize=alignment's check calls this for every misaligned typed access (hidden: each
// library of kernels has its own; it is linked without libubsan).
extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_type_mismatch_v1(
    void*, void* pointer) {
  cuda_on_cpu::misaligned_address = pointer;
  throw cuda_on_cpu::MisalignedAccess{};
}

namespace cuda_on_cpu {

inline dim3 thread_index, block_index, block_dim, grid_dim;
inline const std::function<void()>* kernel_body = nullptr;
inline double lanes[1024];  // values a warp shuffle exchanges, one per thread
constexpr size_t kStackBytes = 64 * 1024;

// Switching fibers: save the callee-saved registers on the current stack, store its stack
// pointer in *save, continue on the stack `next` (x86-64 System V; a few nanoseconds, where
// ucontext's swapcontext makes a system call per switch).
extern "C" void cuda_on_cpu_switch(void** save, void* next);
asm(R"(
    .text
    .globl cuda_on_cpu_switch
    .type cuda_on_cpu_switch, @function
cuda_on_cpu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
)");

inline std::vector<void*> fiber_stack_pointers;
inline std::vector<char> finished;
inline std::vector<char> stacks;
inline void* scheduler_stack_pointer = nullptr;
inline int running_fiber = -1;  // -1: threads run as plain calls

// Called by a thread at a synchronisation point: give the turn to the next thread.
inline void arrive() {
  if (running_fiber < 0)
    throw std::logic_error("kernel synchronises but was launched without fibers");
  cuda_on_cpu_switch(&fiber_stack_pointers[running_fiber], scheduler_stack_pointer);
}

[[noreturn]] inline void fiber_main() {
  try {
    (*kernel_body)();
  } catch (const MisalignedAccess&) {  // this thread stops; misaligned_address fails the launch
  }
  finished[running_fiber] = 1;
  void* unused;
  cuda_on_cpu_switch(&unused, scheduler_stack_pointer);  // never resumed
  __builtin_unreachable();
}

// A fresh stack whose first switch "returns" into fiber_main: six zeroed registers, then
// fiber_main's address; 16-byte aligned as if fiber_main had just been called.
inline void* fresh_stack(char* bottom) {
  auto top = reinterpret_cast<uintptr_t>(bottom + kStackBytes) & ~uintptr_t(15);
  auto* slots = reinterpret_cast<void**>(top) - 8;
  std::fill(slots, slots + 8, nullptr);
  slots[6] = reinterpret_cast<void*>(&fiber_main);
  return slots;
}

// Thread t of a block, by CUDA's numbering: x varies fastest, then y, then z.
inline void set_thread_index(unsigned t) {
  thread_index.x = t % block_dim.x;
  thread_index.y = t / block_dim.x % block_dim.y;
  thread_index.z = t / (block_dim.x * block_dim.y);
}

inline void run_block_as_fibers(unsigned threads) {
  fiber_stack_pointers.resize(threads);
  finished.assign(threads, 0);
  stacks.resize(threads * kStackBytes);
  for (unsigned t = 0; t < threads; ++t)
    fiber_stack_pointers[t] = fresh_stack(&stacks[t * kStackBytes]);
  for (bool all_finished = false; !all_finished;) {  // one round: every thread to its next point
    all_finished = true;
    for (unsigned t = 0; t < threads; ++t) {
      if (finished[t]) continue;
      running_fiber = static_cast<int>(t);
      set_thread_index(t);
      cuda_on_cpu_switch(&scheduler_stack_pointer, fiber_stack_pointers[t]);
      all_finished = all_finished && finished[t];
    }
  }
  running_fiber = -1;
}

inline void launch(dim3 grid, dim3 block, bool synchronises, const std::function<void()>& body) {
  misaligned_address = nullptr;
  grid_dim = grid;
  block_dim = block;
  kernel_body = &body;
  const unsigned threads = block.x * block.y * block.z;
  for (block_index.z = 0; block_index.z < grid.z; ++block_index.z)
    for (block_index.y = 0; block_index.y < grid.y; ++block_index.y)
      for (block_index.x = 0; block_index.x < grid.x; ++block_index.x) {
        if (synchronises) {
          run_block_as_fibers(threads);
        } else {
          for (unsigned t = 0; t < threads; ++t) {
            set_thread_index(t);
            try {
              body();
            } catch (const MisalignedAccess&) {  // misaligned_address fails the launch
              return;
            }
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
#define __launch_bounds__(...)
#define __device__
#define __shared__ static

inline void __syncthreads() { cuda_on_cpu::arrive(); }

// Every lane writes its value, all arrive, each reads its partner's, all arrive again (so no
// lane overwrites a value before its partner has read it).
template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask) {
  const unsigned self = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
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
using std::erfc;
using std::exp;
using std::fabs;
using std::isfinite;
using std::log;
using std::max;
using std::sqrt;
using std::tanh;
