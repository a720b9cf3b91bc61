// im2col.cu: unfold image patches into columns for convolution as one matmul, fold them back,
// and move the batch axis between the GEMM's layout and NCHW.
//
// im2col: x (N, C, H, W) -> col (C, KH, KW, N, OH, OW) with
//   col[c, kh, kw, n, oh, ow] = x[n, c, oh*stride_h - pad_h + kh*dilation_h,
//                                       ow*stride_w - pad_w + kw*dilation_w]   (0 outside x)
// The batch sits inside each column row, so one plain GEMM with the weights covers the batch.
// col2im: the adjoint, col -> dx (N, C, H, W): each input pixel gathers every column entry
// that read it, summing over (kh, kw). Gathering (one thread per pixel) instead of scattering
// needs no atomics, so the result is deterministic.
// Shapes travel in `dims` = {N, C, H, W, KH, KW, OH, OW, stride_h, stride_w, pad_h, pad_w,
// dilation_h, dilation_w} (int64), and every flat index is 64-bit.
#include "common.cuh"

struct ConvDims {
  long long n, c, h, w, kh, kw, oh, ow, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

__device__ inline ConvDims read_dims(const long long* d) {
  return ConvDims{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11],
                  d[12], d[13]};
}

template <typename T>
__global__ void im2col(const T* x, T* col, const long long* dims, long long total) {
  const ConvDims d = read_dims(dims);
  GRID_STRIDE_LOOP(i, total) {
    long long rest = i;
    const long long ow = rest % d.ow; rest /= d.ow;
    const long long oh = rest % d.oh; rest /= d.oh;
    const long long n = rest % d.n; rest /= d.n;
    const long long kw = rest % d.kw; rest /= d.kw;
    const long long kh = rest % d.kh; rest /= d.kh;  // rest is now c
    const long long h = oh * d.stride_h - d.pad_h + kh * d.dilation_h;
    const long long w = ow * d.stride_w - d.pad_w + kw * d.dilation_w;
    const bool inside = h >= 0 && h < d.h && w >= 0 && w < d.w;
    col[i] = inside ? x[((n * d.c + rest) * d.h + h) * d.w + w] : T(0);
  }
}

template <typename T>
__global__ void col2im(const T* col, T* dx, const long long* dims, long long total) {
  const ConvDims d = read_dims(dims);
  GRID_STRIDE_LOOP(i, total) {
    long long rest = i;
    const long long w = rest % d.w; rest /= d.w;
    const long long h = rest % d.h; rest /= d.h;
    const long long c = rest % d.c;
    const long long n = rest / d.c;
    T sum = T(0);
    for (long long kh = 0; kh < d.kh; ++kh) {
      const long long top = h + d.pad_h - kh * d.dilation_h;  // = oh * stride_h when it read us
      if (top < 0 || top % d.stride_h != 0 || top / d.stride_h >= d.oh) continue;
      for (long long kw = 0; kw < d.kw; ++kw) {
        const long long left = w + d.pad_w - kw * d.dilation_w;
        if (left < 0 || left % d.stride_w != 0 || left / d.stride_w >= d.ow) continue;
        sum += col[((((c * d.kh + kh) * d.kw + kw) * d.n + n) * d.oh + top / d.stride_h) * d.ow +
                   left / d.stride_w];
      }
    }
    dx[i] = sum;
  }
}

// src (A, B, inner) -> dst (B, A, inner), plus bias[a] when add_bias (bias is not read
// otherwise, so any array may stand in for it). The GEMM's (O, N, Ho Wo) output becomes NCHW
// with the bias added in the same pass; NCHW's (N, O, Ho Wo) gradient becomes (O, N, Ho Wo).
template <typename T>
__global__ void swap_leading_axes(const T* src, T* dst, const T* bias, int add_bias,
                                  long long a, long long b, long long inner, long long total) {
  GRID_STRIDE_LOOP(i, total) {
    const long long k = i % inner;
    const long long rest = i / inner;
    const long long a_index = rest % a;
    const long long b_index = rest / a;
    const T value = src[(a_index * b + b_index) * inner + k];
    dst[i] = add_bias ? value + bias[a_index] : value;
  }
}
