// multi_tensor.cuh: one launch over many tensors (all parameters of a model).
//
// The tensors lie end to end in a virtual flat index, each starting at a multiple of the chunk
// size (Chunk<T>::size elements, common.cuh), so that no chunk straddles two tensors: tensor k
// has sizes[k] elements and its chunks cover [offsets[k], offsets[k + 1]). A table holds each
// tensor's device address as a 64-bit integer. A kernel over all tensors takes (table, offsets,
// sizes, count, total, vector) first (multi_tensor.Table.arguments). Each thread takes one
// chunk per pass (CHUNKED_GRID_STRIDE_LOOP over total = offsets[count]), finds its tensor by
// binary search, once per chunk, and moves its elements as one vector per array where `vector`
// (from the host: every address in the table on a CHUNK_BYTES boundary) allows, else element
// by element.
#pragma once
#include "common.cuh"

// The k with offsets[k] <= i < offsets[k + 1] (offsets has count + 1 ascending entries).
__device__ inline int find_tensor(const long long* offsets, int count, long long i) {
  int low = 0, high = count - 1;
  while (low < high) {
    int middle = (low + high + 1) / 2;
    if (offsets[middle] <= i) low = middle; else high = middle - 1;
  }
  return low;
}

// The chunk at virtual index i: elements first .. of tensor k, which has `size` of them.
struct TensorChunk {
  int k;
  long long first, size;
};

__device__ inline TensorChunk tensor_chunk(const long long* offsets, const long long* sizes,
                                           int count, long long i) {
  const int k = find_tensor(offsets, count, i);
  return {k, i - offsets[k], sizes[k]};
}

template <typename T> __device__ T* tensor_at(const unsigned long long* table, int k) {
  return reinterpret_cast<T*>(table[k]);
}
