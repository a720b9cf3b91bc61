// activations.cu: the pointwise activations, forward and backward, one pass over memory each.
//
// forward:  y = f(x)                 (reads x, writes y)
// backward: dx = grad * f'(x)        (reads the saved x and grad, writes dx)
// `kind` picks f; `slope` is leaky_relu's negative slope. The formulas match
// minilean/autograd/elementwise.py (and activations.py's NumPy reference).
#include "activation_math.cuh"
#include "common.cuh"

// loop.run<kind>() with the kind as a compile-time constant.
template <typename Loop> __device__ void with_kind(int kind, const Loop& loop) {
  switch (kind) {
    case RELU: return loop.template run<RELU>();
    case LEAKY_RELU: return loop.template run<LEAKY_RELU>();
    case SILU: return loop.template run<SILU>();
    case GELU: return loop.template run<GELU>();
    case GELU_TANH: return loop.template run<GELU_TANH>();
    case SIGMOID: return loop.template run<SIGMOID>();
    default: return loop.template run<TANH>();
  }
}

template <typename T> struct ForwardLoop {
  const T* x;
  T* y;
  long long n;
  T slope;
  template <int KIND> __device__ void run() const {
    UNROLLED_GRID_STRIDE_LOOP(first, stride, n) {
      T xs[UNROLL];
      load_unrolled(xs, x, first, stride, n);
#pragma unroll
      for (int u = 0; u < UNROLL; ++u)
        if (first + u * stride < n) y[first + u * stride] = activation<KIND>(xs[u], slope);
    }
  }
};

template <typename T> struct BackwardLoop {
  const T* x;
  const T* grad;
  T* dx;
  long long n;
  T slope;
  template <int KIND> __device__ void run() const {
    UNROLLED_GRID_STRIDE_LOOP(first, stride, n) {
      T xs[UNROLL], grads[UNROLL];
      load_unrolled(xs, x, first, stride, n);
      load_unrolled(grads, grad, first, stride, n);
#pragma unroll
      for (int u = 0; u < UNROLL; ++u)
        if (first + u * stride < n)
          dx[first + u * stride] = grads[u] * activation_derivative<KIND>(xs[u], slope);
    }
  }
};

template <typename T>
__global__ void activation_forward(const T* x, T* y, long long n, int kind, T slope) {
  with_kind(kind, ForwardLoop<T>{x, y, n, slope});
}

template <typename T>
__global__ void activation_backward(const T* x, const T* grad, T* dx, long long n, int kind,
                                    T slope) {
  with_kind(kind, BackwardLoop<T>{x, grad, dx, n, slope});
}
