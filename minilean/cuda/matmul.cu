// matmul.cu: a batched matrix product C[b] = A[b] B[b] of row-major matrices, for CUDA graphs
// (CuPy refuses to call cuBLAS while a stream is captured; see minilean/cuda/matmul.py).
//
// The classic shared-memory tiling: a block computes one TILE x TILE tile of C; for each
// TILE-wide slab of the inner axis it stages the matching tiles of A and B in shared memory
// (every thread loads one element of each) and each thread adds their row-by-column product to
// its element. Each element of A is read from global memory cols/TILE times and each of B
// rows/TILE times, instead of cols and rows times. Blocks: x over the tiles of one C, z over the batch,
// y over `gridDim.y` consecutive parts of the inner axis ("split-K"): block y writes its
// partial sums to C + y * batches * rows * cols, and the caller adds the parts. A small C with
// a long inner axis (a weight gradient summed over N Ho Wo pixels) would otherwise be a few
// blocks, each walking the whole inner axis alone.
// A batch stride of 0 broadcasts one matrix over the batch.
#include "common.cuh"

constexpr int TILE = 16;

template <typename T>
__global__ void batched_matmul(const T* a, const T* b, T* c, long long batches, int rows,
                               int inner, int cols, long long a_batch_stride,
                               long long b_batch_stride) {
  __shared__ T a_tile[TILE][TILE];
  __shared__ T b_tile[TILE][TILE + 1];  // +1: a column of the tile spreads over the banks
  const int col_tiles = (cols + TILE - 1) / TILE;
  const int row = (blockIdx.x / col_tiles) * TILE + threadIdx.y;
  const int col = (blockIdx.x % col_tiles) * TILE + threadIdx.x;
  // this block's part of the inner axis: whole slabs, the last part possibly shorter or empty
  const int part = ((inner + gridDim.y - 1) / gridDim.y + TILE - 1) / TILE * TILE;
  const int begin = blockIdx.y * part;
  const int end = begin + part < inner ? begin + part : inner;
  T* c_part = c + blockIdx.y * batches * rows * cols;
  for (long long batch = blockIdx.z; batch < batches; batch += gridDim.z) {
    const T* a_rows = a + batch * a_batch_stride;
    const T* b_rows = b + batch * b_batch_stride;
    T sum = 0;
    for (int start = begin; start < end; start += TILE) {
      const int a_col = start + threadIdx.x, b_row = start + threadIdx.y;
      a_tile[threadIdx.y][threadIdx.x] =
          row < rows && a_col < end ? a_rows[(long long)row * inner + a_col] : T(0);
      b_tile[threadIdx.y][threadIdx.x] =
          b_row < end && col < cols ? b_rows[(long long)b_row * cols + col] : T(0);
      __syncthreads();
      for (int k = 0; k < TILE; ++k) sum += a_tile[threadIdx.y][k] * b_tile[k][threadIdx.x];
      __syncthreads();  // the tiles are overwritten by the next slab
    }
    if (row < rows && col < cols) c_part[(batch * rows + row) * cols + col] = sum;
  }
}
