// multi_tensor.cuh: one launch over many tensors (all parameters of a model).
//
// The tensors are concatenated in a virtual flat index: tensor k covers
// [offsets[k], offsets[k+1]). A table holds each tensor's device address as a 64-bit integer.
// A thread with flat index i finds its tensor by binary search and its element j = i - offsets[k].
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

template <typename T> __device__ T* tensor_at(const unsigned long long* table, int k) {
  return reinterpret_cast<T*>(table[k]);
}
