// activation_math.cuh: the pointwise activations and their derivatives as device functions,
// shared by activations.cu (one activation per pass) and norm.cu (a SiLU fused after a norm).
// The formulas match minilean/autograd/elementwise.py (and activations.py's NumPy reference).
#pragma once

enum Activation { RELU = 0, LEAKY_RELU = 1, SILU = 2, GELU = 3, GELU_TANH = 4, SIGMOID = 5, TANH = 6 };

#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327
#define GELU_CUBIC 0.044715

// sigma(x) to full relative precision in both tails, from e = e^-|x|: no overflow, unlike
// 1 / (1 + e^-x), and no cancellation, unlike (1 + tanh(x/2)) / 2, which rounds sigma(x) to 0
// from x = -20 in float32 (where sigma(x) ~ e^x is far from 0). SiLU and sigmoid reach that
// tail on ordinary inputs, and GELU (tanh), written as x sigma(2u), below about x = -5.5.
template <typename T> __device__ T tail_accurate_sigmoid(T x) {
  const T e = exp(-fabs(x));
  return (x >= T(0) ? T(1) : e) / (T(1) + e);
}

template <typename T> __device__ T gelu_two_u(T x) {
  return T(2 * SQRT_2_OVER_PI) * (x + T(GELU_CUBIC) * x * x * x);
}

// The kind is a template argument, known where the kernel is compiled (activations.cu has a
// kernel per kind, norm.cu names SILU): each use compiles to that one formula, no switch.
// NaN goes through every formula as through the plain op: relu is max(x, 0), which keeps NaN
// (so the comparison is the one that is false for NaN), and leaky_relu's slope * NaN is NaN.
template <int KIND, typename T> __device__ T activation(T x, T slope) {
  switch (KIND) {
    case RELU: return x <= T(0) ? T(0) : x;
    case LEAKY_RELU: return x > T(0) ? x : slope * x;
    case SILU: return x * tail_accurate_sigmoid(x);
    case GELU: return x * T(0.5) * erfc(x * T(-INV_SQRT_2));  // Phi(x): no 1 + erf to cancel
    case GELU_TANH: return x * tail_accurate_sigmoid(gelu_two_u(x));
    case SIGMOID: return tail_accurate_sigmoid(x);
    default: return tanh(x);
  }
}

template <int KIND, typename T> __device__ T activation_derivative(T x, T slope) {
  switch (KIND) {
    case RELU: return x > T(0) ? T(1) : T(0);
    case LEAKY_RELU: return x > T(0) ? T(1) : slope;
    case SILU: {  // sigma (1 + x (1 - sigma))
      T s = tail_accurate_sigmoid(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case GELU:  // Phi(x) + x phi(x)
      return T(0.5) * erfc(x * T(-INV_SQRT_2)) + x * T(INV_SQRT_2PI) * exp(T(-0.5) * x * x);
    case GELU_TANH: {  // s + x s (1 - s) 2u',  s = sigma(2u)
      const T s = tail_accurate_sigmoid(gelu_two_u(x));
      const T slope_two_u = T(2 * SQRT_2_OVER_PI) * (T(1) + T(3 * GELU_CUBIC) * x * x);
      return s + x * s * (T(1) - s) * slope_two_u;
    }
    case SIGMOID: {
      T s = tail_accurate_sigmoid(x);
      return s * (T(1) - s);
    }
    default: {
      T y = tanh(x);
      return T(1) - y * y;
    }
  }
}
