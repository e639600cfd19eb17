#pragma once
// Element formulas of the CUDA kernels, in the compute type T (float, or double for float64).
// Same operations in the same order as csrc/cpu/bce_cpu_scalar.cpp, so that the two devices differ
// only by the last-ulp differences of their log implementations. Built without --use_fast_math:
// log and log1p are CUDA's accurate (<= 1 ulp) functions, and division is IEEE.
#include <cmath>

#include "../bce_constants.h"

namespace bce_ext::cuda {

template <typename T>
__device__ __forceinline__ T clamped_log(T v) {
  const T r = ::log(v);
  return r < T(kLogClamp) ? T(kLogClamp) : r;
}

template <typename T>
__device__ __forceinline__ T clamped_log1p(T v) {
  const T r = ::log1p(v);
  return r < T(kLogClamp) ? T(kLogClamp) : r;
}

// NaN is out of range too: the comparisons are false for it.
template <typename T>
__device__ __forceinline__ bool out_of_range(T v) {
  return !(v >= T(0) && v <= T(1));
}

// loss = (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100); NaN for a bad x or t (where PyTorch
// fires a device-side assert, SPEC section 4).
template <typename T>
__device__ __forceinline__ T element_loss(T x, T t) {
  const T loss = (t - T(1)) * clamped_log1p(-x) - t * clamped_log(x);
  return out_of_range(x) || out_of_range(t) ? T(NAN) : loss;
}

// gi = g * (x - t) / max((1 - x) * x, eps) [* w] / d. The float epsilon widened for double, as
// PyTorch (bce_constants.h).
template <typename T>
__device__ __forceinline__ T grad_input(T g, T x, T t, bool weighted, T w, T divisor) {
  const T eps = static_cast<T>(kGradEpsilon);
  const T denom = (T(1) - x) * x;
  T v = g * (x - t) / (denom < eps ? eps : denom);
  if (weighted) v *= w;
  return v / divisor;
}

// gt = -logit(x) * g [* w] / d, with at::logit's log(x / (1 - x)) (no eps, no clamp; +inf at x == 1).
template <typename T>
__device__ __forceinline__ T grad_target(T g, T x, bool weighted, T w, T divisor) {
  const T logit = x == T(1) ? T(INFINITY) : ::log(x / (T(1) - x));
  T v = -logit * g;
  if (weighted) v *= w;
  return v / divisor;
}

}  // namespace bce_ext::cuda
