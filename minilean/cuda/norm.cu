// norm.cu: layer_norm and group_norm, forward and backward, as one family.
//
// Both normalise rows of `length` contiguous elements: layer_norm's rows are the leading
// positions and `length` the normalised size; group_norm's rows are (sample, group) and
// `length` = channels_per_group * spatial. Element j of row r uses the affine parameters of
//   c = (r % groups) * channels_per_group + j / spatial
// (layer_norm: groups = 1, channels_per_group = length, spatial = 1, so c = j).
//
// forward:  mu = mean(x),  rstd = 1 / sqrt(mean((x - mu)^2) + eps),  xhat = (x - mu) rstd,
//           y = xhat w[c] + b[c];  mu and rstd are saved per row for backward.
// backward: with gw = g w[c] and means over the row,
//           dx = rstd (gw - mean(gw) - xhat mean(gw xhat)),
//           dw[c] = sum g xhat,  db[c] = sum g  over every (row, j) that uses c.
// Statistics are computed two-pass (mean first, then squared deviations) for accuracy.
#include "common.cuh"

__device__ inline long long parameter_index(long long row, long long j, long long groups,
                                            long long channels_per_group, long long spatial) {
  return (row % groups) * channels_per_group + j / spatial;
}

template <typename T>
__global__ void norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                             long long rows, long long length, long long groups,
                             long long channels_per_group, long long spatial, T eps,
                             int has_weight, int has_bias) {
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* x_row = x + row * length;
    T sum = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) sum += x_row[j];
    const T mu = block_reduce(sum, SumOp(), T(0)) / T(length);
    T squares = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x)
      squares += (x_row[j] - mu) * (x_row[j] - mu);
    const T inv_std = rsqrt(block_reduce(squares, SumOp(), T(0)) / T(length) + eps);
    if (threadIdx.x == 0) {
      mean[row] = mu;
      rstd[row] = inv_std;
    }
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long c = parameter_index(row, j, groups, channels_per_group, spatial);
      const T scaled = (x_row[j] - mu) * inv_std * (has_weight ? weight[c] : T(1));
      y[row * length + j] = scaled + (has_bias ? bias[c] : T(0));
    }
  }
}

template <typename T>
__global__ void norm_backward_input(const T* x, const T* weight, const T* grad, const T* mean,
                                    const T* rstd, T* dx, long long rows, long long length,
                                    long long groups, long long channels_per_group,
                                    long long spatial, int has_weight) {
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const long long start = row * length;
    const T mu = mean[row], inv_std = rstd[row];
    T sum_gw = T(0), sum_gw_xhat = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long c = parameter_index(row, j, groups, channels_per_group, spatial);
      const T gw = grad[start + j] * (has_weight ? weight[c] : T(1));
      sum_gw += gw;
      sum_gw_xhat += gw * (x[start + j] - mu) * inv_std;
    }
    const T mean_gw = block_reduce(sum_gw, SumOp(), T(0)) / T(length);
    const T mean_gw_xhat = block_reduce(sum_gw_xhat, SumOp(), T(0)) / T(length);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) {
      const long long c = parameter_index(row, j, groups, channels_per_group, spatial);
      const T gw = grad[start + j] * (has_weight ? weight[c] : T(1));
      const T xhat = (x[start + j] - mu) * inv_std;
      dx[start + j] = inv_std * (gw - mean_gw - xhat * mean_gw_xhat);
    }
  }
}

// One block per channel c, summing over the rows_per_group * spatial elements that use c.
template <typename T>
__global__ void norm_backward_affine(const T* x, const T* grad, const T* mean, const T* rstd,
                                     T* dweight, T* dbias, long long channels,
                                     long long rows_per_group, long long length,
                                     long long groups, long long channels_per_group,
                                     long long spatial) {
  for (long long c = blockIdx.x; c < channels; c += gridDim.x) {
    const long long group = c / channels_per_group, offset = (c % channels_per_group) * spatial;
    T sum_g_xhat = T(0), sum_g = T(0);
    for (long long k = threadIdx.x; k < rows_per_group * spatial; k += blockDim.x) {
      const long long row = (k / spatial) * groups + group;
      const long long at = row * length + offset + k % spatial;
      sum_g_xhat += grad[at] * (x[at] - mean[row]) * rstd[row];
      sum_g += grad[at];
    }
    sum_g_xhat = block_reduce(sum_g_xhat, SumOp(), T(0));
    sum_g = block_reduce(sum_g, SumOp(), T(0));
    if (threadIdx.x == 0) {
      dweight[c] = sum_g_xhat;
      dbias[c] = sum_g;
    }
  }
}
