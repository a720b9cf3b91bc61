// norm.cu: layer_norm and group_norm, forward and backward, as one family.
//
// Both normalise rows of `length` contiguous elements: layer_norm's rows are the leading
// positions and `length` the normalised size; group_norm's rows are (sample, group) and
// `length` = channels_per_group * spatial. Element j of row r uses the affine parameters of
//   c = (r % groups) * channels_per_group + j / spatial
// (layer_norm: groups = 1, channels_per_group = length, spatial = 1, so c = j).
//
// forward:  mu = mean(x),  rstd = 1 / sqrt(mean((x - mu)^2) + eps),  xhat = (x - mu) rstd,
//           z = xhat w[c] + b[c],  y = z, or y = silu(z) when `silu` is set (group_norm's
//           activation="silu": a ResBlock's GroupNorm -> SiLU in one pass);
//           m (below) and rstd are saved per row for backward.
// x - mu is computed as (x - x_1) - m, x_1 the row's first element and m = mean(x - x_1) (what
// `mean` holds), as the plain ops and Var compute it: a constant row gives exact zeros, where
// the rounding of a float mean (a sum of 100 values of 12345.678 is off by 2^-9 in the mean),
// times 1 / sqrt(eps), standardised it to +-0.5; and the centred values of a row far from 0
// (1000 + 0.01 noise) keep the digits that rounding mu to a float drops.
// backward: with g = dL/dz (the incoming gradient, times silu'(z) when `silu` is set; z is
//           recomputed from x, mu and rstd), gw = g w[c] and means over the row,
//           dx = rstd (gw - mean(gw) - xhat mean(gw xhat)),
//           dw[c] = sum g xhat,  db[c] = sum g  over every (row, j) that uses c.
// Statistics are computed two-pass (mean first, then squared deviations) for accuracy.
#include "activation_math.cuh"
#include "common.cuh"

// x - mu of element `at` of a row that starts at `start`, m being the row's shifted mean
template <typename T> __device__ T centered(const T* x, long long start, long long at, T m) {
  return (x[at] - x[start]) - m;
}

__device__ inline long long parameter_index(long long row, long long j, long long groups,
                                            long long channels_per_group, long long spatial) {
  return (row % groups) * channels_per_group + j / spatial;
}

// What comes after the standardisation: the affine map (weight and bias each optional), then
// the SiLU if `silu` is set.
template <typename T> struct Output {
  const T* weight;
  const T* bias;
  int has_weight, has_bias, silu;

  __device__ T scale(long long c) const { return has_weight ? weight[c] : T(1); }
  __device__ T affine(T xhat, long long c) const {  // z
    return xhat * scale(c) + (has_bias ? bias[c] : T(0));
  }
  __device__ T value(T xhat, long long c) const {  // y
    const T z = affine(xhat, c);
    return silu ? activation<SILU>(z, T(0)) : z;
  }
  __device__ T grad_of_affine(T grad, T xhat, long long c) const {  // g = dL/dz from dL/dy
    return silu ? grad * activation_derivative<SILU>(affine(xhat, c), T(0)) : grad;
  }
};

template <typename T>
__global__ void norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                             long long rows, long long length, long long groups,
                             long long channels_per_group, long long spatial, T eps,
                             int has_weight, int has_bias, int silu) {
  const Output<T> output{weight, bias, has_weight, has_bias, silu};
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const long long start = row * length;
    T sum = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) sum += x[start + j] - x[start];
    const T m = block_reduce(sum, SumOp(), T(0)) / T(length);  // mean(x - x_1)
    T squares = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const T d = centered(x, start, start + j, m);
      squares += d * d;
    }
    const T inv_std = rsqrt(block_reduce(squares, SumOp(), T(0)) / T(length) + eps);
    if (threadIdx.x == 0) {
      mean[row] = m;
      rstd[row] = inv_std;
    }
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long c = parameter_index(row, j, groups, channels_per_group, spatial);
      y[start + j] = output.value(centered(x, start, start + j, m) * inv_std, c);
    }
  }
}

template <typename T>
__global__ void norm_backward_input(const T* x, const T* weight, const T* bias, const T* grad,
                                    const T* mean, const T* rstd, T* dx, long long rows,
                                    long long length, long long groups,
                                    long long channels_per_group, long long spatial,
                                    int has_weight, int has_bias, int silu) {
  const Output<T> output{weight, bias, has_weight, has_bias, silu};
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const long long start = row * length;
    const T m = mean[row], inv_std = rstd[row];
    T sum_gw = T(0), sum_gw_xhat = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long c = parameter_index(row, j, groups, channels_per_group, spatial);
      const T xhat = centered(x, start, start + j, m) * inv_std;
      const T gw = output.grad_of_affine(grad[start + j], xhat, c) * output.scale(c);
      sum_gw += gw;
      sum_gw_xhat += gw * xhat;
    }
    const T mean_gw = block_reduce(sum_gw, SumOp(), T(0)) / T(length);
    const T mean_gw_xhat = block_reduce(sum_gw_xhat, SumOp(), T(0)) / T(length);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long c = parameter_index(row, j, groups, channels_per_group, spatial);
      const T xhat = centered(x, start, start + j, m) * inv_std;
      const T gw = output.grad_of_affine(grad[start + j], xhat, c) * output.scale(c);
      dx[start + j] = inv_std * (gw - mean_gw - xhat * mean_gw_xhat);
    }
  }
}

// One block per channel c, summing over the rows_per_group * spatial elements that use c.
template <typename T>
__global__ void norm_backward_affine(const T* x, const T* weight, const T* bias, const T* grad,
                                     const T* mean, const T* rstd, T* dweight, T* dbias,
                                     long long channels, long long rows_per_group,
                                     long long length, long long groups,
                                     long long channels_per_group, long long spatial,
                                     int has_weight, int has_bias, int silu) {
  const Output<T> output{weight, bias, has_weight, has_bias, silu};
  for (long long c = blockIdx.x; c < channels; c += gridDim.x) {
    const long long group = c / channels_per_group, offset = (c % channels_per_group) * spatial;
    T sum_g_xhat = T(0), sum_g = T(0);
    for (long long k = threadIdx.x; k < rows_per_group * spatial; k += blockDim.x) {
      const long long row = (k / spatial) * groups + group;
      const long long at = row * length + offset + k % spatial;
      const T xhat = centered(x, row * length, at, mean[row]) * rstd[row];
      const T g = output.grad_of_affine(grad[at], xhat, c);
      sum_g_xhat += g * xhat;
      sum_g += g;
    }
    sum_g_xhat = block_reduce(sum_g_xhat, SumOp(), T(0));
    sum_g = block_reduce(sum_g, SumOp(), T(0));
    if (threadIdx.x == 0) {
      dweight[c] = sum_g_xhat;
      dbias[c] = sum_g;
    }
  }
}
