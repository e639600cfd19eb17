#pragma once
// The weight cursor of the loss kernels (loss_cuda_driver.cuh): a broadcast table (weight,
// positive weight) as the device reads it, element by element, with a thread's position in it
// stepped along its elements instead of computed by division at each one.
#include <cstdint>

namespace bce_ext::cuda {

// The weight of element i: values[(i / inner) % period] (loss_prepare.h: WeightTable). A thread
// keeps (i % inner, (i / inner) % period) for its position and steps it: by one element inside a
// group and by the grid's stride between groups, so no index is divided in the loop (a 64-bit
// division is a long subroutine on the GPU).
template <typename T>
struct DeviceWeight {
  const T* values = nullptr;
  int64_t inner = 1;
  int64_t period = 1;
  int64_t stride_rem = 0;   // (grid stride in elements) % inner
  int64_t stride_quot = 0;  // ((grid stride in elements) / inner) % period

  struct Pos {
    int64_t r, p;
  };
  __device__ __forceinline__ Pos at(int64_t i) const { return {i % inner, (i / inner) % period}; }
  __device__ __forceinline__ T value(const Pos& pos) const { return values[pos.p]; }
  __device__ __forceinline__ void next(Pos& pos) const {
    if (++pos.r == inner) {
      pos.r = 0;
      pos.p = pos.p + 1 == period ? 0 : pos.p + 1;
    }
  }
  __device__ __forceinline__ void next_stride(Pos& pos) const {
    pos.r += stride_rem;
    int64_t p = pos.p + stride_quot;
    if (pos.r >= inner) {
      pos.r -= inner;
      ++p;
    }
    pos.p = p >= period ? p - period : p;
  }
};

}  // namespace bce_ext::cuda
