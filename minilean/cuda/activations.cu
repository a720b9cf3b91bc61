// activations.cu: the pointwise activations, forward and backward, one pass over memory each.
//
// forward:  y = f(x)                 (reads x, writes y)
// backward: dx = grad * f'(x)        (reads the saved x and grad, writes dx)
// KIND picks f (an Activation of activation_math.cuh); `slope` is leaky_relu's negative slope.
// The formulas match minilean/autograd/elementwise.py (and activations.py's NumPy reference).
//
// The kind is a template parameter, so each (type, kind) is a kernel of its own: its loop body
// is that one activation in straight-line code, the compiler interleaves the math of a chunk's
// elements, and each kind gets the registers it needs, not those of the costliest kind (on an
// H200, picking the kind at compile time instead of per element made the transcendental kinds
// 3-7% faster).
#include "activation_math.cuh"
#include "common.cuh"

template <typename T, int KIND>
__global__ void __launch_bounds__(THREADS, resident_blocks<T>)
    activation_forward(const T* __restrict__ x, T* __restrict__ y, long long n, T slope) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> xs = load_chunk(x, first, n);
    Chunk<T> ys;
#pragma unroll
    for (int k = 0; k < Chunk<T>::size; ++k) ys.values[k] = activation<KIND>(xs.values[k], slope);
    store_chunk(y, first, n, ys);
  }
}

template <typename T, int KIND>
__global__ void __launch_bounds__(THREADS, resident_blocks<T>)
    activation_backward(const T* __restrict__ x, const T* __restrict__ grad,
                        T* __restrict__ dx, long long n, T slope) {
  CHUNKED_GRID_STRIDE_LOOP(T, first, n) {
    const Chunk<T> xs = load_chunk(x, first, n), grads = load_chunk(grad, first, n);
    Chunk<T> dxs;
#pragma unroll
    for (int k = 0; k < Chunk<T>::size; ++k)
      // relu's 0 slope is selected, not multiplied in: an infinite grad (from sqrt's slope at
      // 0 in x.relu().sqrt()) would give inf * 0 = NaN there, where the op gives 0
      dxs.values[k] = KIND == RELU && !(xs.values[k] > T(0))
                          ? T(0)
                          : grads.values[k] * activation_derivative<KIND>(xs.values[k], slope);
    store_chunk(dx, first, n, dxs);
  }
}
