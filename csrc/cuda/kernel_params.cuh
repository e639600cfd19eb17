#pragma once
// What a loss kernel (loss_cuda_driver.cuh) takes besides its operands' pointers (Params: the
// layout, the weight tables, label smoothing's factors, the loss's own scalars), and a thread's
// cursor into the tables its variant has (Cursor).
#include <cstdint>

#include "../losses/coefficients.h"
#include "kernel_variants.cuh"
#include "operand_layout.cuh"
#include "weight_cursor.cuh"

namespace bce_ext::cuda {

// What a kernel takes besides its operands' pointers, in the compute type T.
template <typename T>
struct Params {
  Layout layout;
  DeviceWeight<T> w, pw;
  T keep = T(1), shift = T(0);   // label smoothing: t * keep + shift
  losses::Coefficients<T> k;     // the loss's own scalars (the focal loss's alpha, gamma)
  T ignore = T(0);               // kIgnore: the ignored target value
  const double* kept = nullptr;  // kIgnore, backward of 'mean': its divisor, on the device
};

// A thread's positions in the tables that kFlags has.
template <typename T, int kFlags>
struct Cursor {
  typename DeviceWeight<T>::Pos w{}, pw{};

  __device__ __forceinline__ static Cursor at(const Params<T>& p, int64_t i) {
    Cursor c;
    if constexpr ((kFlags & kWeighted) != 0) c.w = p.w.at(i);
    if constexpr ((kFlags & kPosWeighted) != 0) c.pw = p.pw.at(i);
    return c;
  }
  // The tables' values for this element (1 where absent: unused), then steps to the next one.
  __device__ __forceinline__ void take(const Params<T>& p, T& w_value, T& pw_value) {
    w_value = pw_value = T(1);
    if constexpr ((kFlags & kWeighted) != 0) {
      w_value = p.w.value(w);
      p.w.next(w);
    }
    if constexpr ((kFlags & kPosWeighted) != 0) {
      pw_value = p.pw.value(pw);
      p.pw.next(pw);
    }
  }
  __device__ __forceinline__ void next_stride(const Params<T>& p) {
    if constexpr ((kFlags & kWeighted) != 0) p.w.next_stride(w);
    if constexpr ((kFlags & kPosWeighted) != 0) p.pw.next_stride(pw);
  }
};

}  // namespace bce_ext::cuda
