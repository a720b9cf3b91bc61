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
// dilation_h, dilation_w} (int64).
//
// These kernels do little arithmetic besides splitting a flat index into coordinates, several
// divisions per element. A GPU has no divide instruction: 32-bit division is a short sequence
// of instructions, 64-bit division a long routine that would make the kernels bound by integer
// arithmetic instead of memory. So each kernel is instantiated twice, with Index = int (the
// host's choice whenever every flat index of its arrays fits in an int) and with Index = long
// long, for tensors of more than 2^31 elements.
#include "common.cuh"

template <typename Index> struct ConvDims {
  Index n, c, h, w, kh, kw, oh, ow, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

template <typename Index> __device__ ConvDims<Index> read_dims(const long long* d) {
  return ConvDims<Index>{Index(d[0]),  Index(d[1]),  Index(d[2]),  Index(d[3]), Index(d[4]),
                         Index(d[5]),  Index(d[6]),  Index(d[7]),  Index(d[8]), Index(d[9]),
                         Index(d[10]), Index(d[11]), Index(d[12]), Index(d[13])};
}

template <typename T, typename Index>
__global__ void im2col(const T* x, T* col, const long long* dims, long long total) {
  const ConvDims<Index> d = read_dims<Index>(dims);
  GRID_STRIDE_LOOP(i, total) {
    Index rest = Index(i);
    const Index ow = rest % d.ow; rest /= d.ow;
    const Index oh = rest % d.oh; rest /= d.oh;
    const Index n = rest % d.n; rest /= d.n;
    const Index kw = rest % d.kw; rest /= d.kw;
    const Index kh = rest % d.kh; rest /= d.kh;  // rest is now c
    const Index h = oh * d.stride_h - d.pad_h + kh * d.dilation_h;
    const Index w = ow * d.stride_w - d.pad_w + kw * d.dilation_w;
    const bool inside = h >= 0 && h < d.h && w >= 0 && w < d.w;
    col[i] = inside ? x[((n * d.c + rest) * d.h + h) * d.w + w] : T(0);
  }
}

template <typename T, typename Index>
__global__ void col2im(const T* col, T* dx, const long long* dims, long long total) {
  const ConvDims<Index> d = read_dims<Index>(dims);
  GRID_STRIDE_LOOP(i, total) {
    Index rest = Index(i);
    const Index w = rest % d.w; rest /= d.w;
    const Index h = rest % d.h; rest /= d.h;
    const Index c = rest % d.c;
    const Index n = rest / d.c;
    T sum = T(0);
    for (Index kh = 0; kh < d.kh; ++kh) {
      const Index top = h + d.pad_h - kh * d.dilation_h;  // = oh * stride_h when it read us
      if (top < 0 || top % d.stride_h != 0 || top / d.stride_h >= d.oh) continue;
      for (Index kw = 0; kw < d.kw; ++kw) {
        const Index left = w + d.pad_w - kw * d.dilation_w;
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
template <typename T, typename Index>
__global__ void swap_leading_axes(const T* src, T* dst, const T* bias, int add_bias,
                                  long long a, long long b, long long inner, long long total) {
  GRID_STRIDE_LOOP(i, total) {
    const Index k = Index(i) % Index(inner);
    const Index rest = Index(i) / Index(inner);
    const Index a_index = rest % Index(a);
    const Index b_index = rest / Index(a);
    const T value = src[(a_index * Index(b) + b_index) * Index(inner) + k];
    dst[i] = add_bias ? value + bias[a_index] : value;
  }
}
