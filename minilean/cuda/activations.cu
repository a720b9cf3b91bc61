// activations.cu: the pointwise activations, forward and backward, one pass over memory each.
//
// forward:  y = f(x)                 (reads x, writes y)
// backward: dx = grad * f'(x)        (reads the saved x and grad, writes dx)
// `kind` picks f; `slope` is leaky_relu's negative slope. The formulas match
// minilean/autograd/elementwise.py (and activations.py's NumPy reference).
#include "common.cuh"

enum Activation { RELU = 0, LEAKY_RELU = 1, SILU = 2, GELU = 3, GELU_TANH = 4, SIGMOID = 5, TANH = 6 };

#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327
#define GELU_CUBIC 0.044715

// sigma(x) = (1 + tanh(x/2)) / 2: cannot overflow for large |x|, unlike 1 / (1 + e^-x).
template <typename T> __device__ T sigmoid_of(T x) { return T(0.5) * (T(1) + tanh(T(0.5) * x)); }

// sigma(x) to full relative precision in both tails, from e = e^-|x| (no overflow either). The
// tanh form above rounds the far left tail to 0; GELU's argument 2u grows like x^3 and gets
// there, so GELU (tanh) is written as x sigma(2u) with this one.
template <typename T> __device__ T tail_accurate_sigmoid(T x) {
  const T e = exp(-fabs(x));
  return (x >= T(0) ? T(1) : e) / (T(1) + e);
}

template <typename T> __device__ T gelu_two_u(T x) {
  return T(2 * SQRT_2_OVER_PI) * (x + T(GELU_CUBIC) * x * x * x);
}

// The kind is a template argument: each kernel picks it once per thread (with_kind), so its
// loop body is one activation in straight-line code, and the compiler can interleave the math
// of the UNROLL elements (on an H200 the transcendental kinds ran 3-7% faster than with a
// switch per element).
template <int KIND, typename T> __device__ T activation(T x, T slope) {
  switch (KIND) {
    case RELU: return x > T(0) ? x : T(0);
    case LEAKY_RELU: return x > T(0) ? x : slope * x;
    case SILU: return x * sigmoid_of(x);
    case GELU: return x * T(0.5) * (T(1) + erf(x * T(INV_SQRT_2)));
    case GELU_TANH: return x * tail_accurate_sigmoid(gelu_two_u(x));
    case SIGMOID: return sigmoid_of(x);
    default: return tanh(x);
  }
}

template <int KIND, typename T> __device__ T activation_derivative(T x, T slope) {
  switch (KIND) {
    case RELU: return x > T(0) ? T(1) : T(0);
    case LEAKY_RELU: return x > T(0) ? T(1) : slope;
    case SILU: {  // sigma (1 + x (1 - sigma))
      T s = sigmoid_of(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case GELU:  // Phi(x) + x phi(x)
      return T(0.5) * (T(1) + erf(x * T(INV_SQRT_2))) + x * T(INV_SQRT_2PI) * exp(T(-0.5) * x * x);
    case GELU_TANH: {  // s + x s (1 - s) 2u',  s = sigma(2u)
      const T s = tail_accurate_sigmoid(gelu_two_u(x));
      const T slope_two_u = T(2 * SQRT_2_OVER_PI) * (T(1) + T(3 * GELU_CUBIC) * x * x);
      return s + x * s * (T(1) - s) * slope_two_u;
    }
    case SIGMOID: {
      T s = sigmoid_of(x);
      return s * (T(1) - s);
    }
    default: {
      T y = tanh(x);
      return T(1) - y * y;
    }
  }
}

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
