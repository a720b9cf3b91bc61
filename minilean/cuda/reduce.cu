// reduce.cu: sum and mean over one axis (or a run of adjacent axes merged into one).
//
// The input is viewed as (outer, length, inner), contiguous; output row r = (o, k) is
//   out[r] = scale * sum_j x[o, j, k],   scale = 1 for sum, 1/length for mean.
// One block per output row, its threads striding over j and summing across the block. Rows are
// handed out block-stride, so any number of rows works with a capped grid.
#include "common.cuh"

template <typename T>
__global__ void sum_rows(const T* x, T* out, long long rows, long long length, long long inner,
                         T scale) {
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const long long start = row_start(row, length, inner);
    T sum = T(0);
    for (long long j = threadIdx.x; j < length; j += blockDim.x) sum += x[start + j * inner];
    sum = block_reduce(sum, SumOp(), T(0));
    if (threadIdx.x == 0) out[row] = scale * sum;
  }
}
