// Portable inner loops (see bce_cpu_loops.h for the formulas). Same operation order as PyTorch's
// CPU kernels, so float32 and float64 results match PyTorch to the last bit element by element.
#include <cmath>

#include "../bce_constants.h"
#include "bce_cpu_loops.h"
#include "bce_cpu_tuning.h"

namespace bce_ext::cpu {
namespace {

// Elements summed in T before the partial goes into the double accumulator: keeps a float32 sum's
// relative error near 1e-7 whatever N is.
constexpr int64_t kSumBlock = tuning::kScalarSumBlock;

template <typename T>
inline T clamped_log(T v) {
  const T r = std::log(v);
  return r < T(kLogClamp) ? T(kLogClamp) : r;
}

template <typename T>
inline T clamped_log1p(T v) {
  const T r = std::log1p(v);
  return r < T(kLogClamp) ? T(kLogClamp) : r;
}

template <typename T>
inline T element_loss(T x, T t) {
  return (t - T(1)) * clamped_log1p(-x) - t * clamped_log(x);
}

template <typename T>
inline bool out_of_range(T v) {
  return !(v >= T(0) && v <= T(1));
}

template <typename T>
double forward_sum(const T* x, const T* t, Operand<T> w, int64_t n, bool* bad) {
  double total = 0.0;
  bool any_bad = false;
  for (int64_t b = 0; b < n; b += kSumBlock) {
    const int64_t e = b + kSumBlock < n ? b + kSumBlock : n;
    T block = T(0);
    for (int64_t i = b; i < e; ++i) {
      any_bad |= out_of_range(x[i]) | out_of_range(t[i]);
      T l = element_loss(x[i], t[i]);
      if (w.ptr) l *= w.ptr[i * w.stride];
      block += l;
    }
    total += static_cast<double>(block);
  }
  *bad |= any_bad;
  return total;
}

template <typename T>
void forward_none(const T* x, const T* t, Operand<T> w, T* out, int64_t n, bool* bad) {
  bool any_bad = false;
  for (int64_t i = 0; i < n; ++i) {
    any_bad |= out_of_range(x[i]) | out_of_range(t[i]);
    T l = element_loss(x[i], t[i]);
    if (w.ptr) l *= w.ptr[i * w.stride];
    out[i] = l;
  }
  *bad |= any_bad;
}

// grad_input over a run with the operands' strides fixed at compile time, so that the compiler
// vectorises it (no libm call in it): float64 has no hand-written vector loops.
template <typename T, int64_t kGStride, bool kWeighted, int64_t kWStride>
void grad_input_run(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ t,
                    const T* __restrict__ w, T divisor, T* __restrict__ gi, int64_t n) {
  const T eps = static_cast<T>(kGradEpsilon);
  for (int64_t i = 0; i < n; ++i) {
    const T xv = x[i];
    const T denom = (T(1) - xv) * xv;
    T v = g[i * kGStride] * (xv - t[i]) / (denom < eps ? eps : denom);
    if constexpr (kWeighted) v *= w[i * kWStride];
    gi[i] = v / divisor;
  }
}

template <typename T, int64_t kGStride>
void grad_input(const T* g, const T* x, const T* t, Operand<T> w, T divisor, T* gi, int64_t n) {
  if (!w.ptr) {
    grad_input_run<T, kGStride, false, 0>(g, x, t, nullptr, divisor, gi, n);
  } else if (w.stride) {
    grad_input_run<T, kGStride, true, 1>(g, x, t, w.ptr, divisor, gi, n);
  } else {
    grad_input_run<T, kGStride, true, 0>(g, x, t, w.ptr, divisor, gi, n);
  }
}

template <typename T>
void backward(Operand<T> g, const T* x, const T* t, Operand<T> w, T divisor, T* gi, T* gt,
              int64_t n) {
  if (gi) {
    if (g.stride) {
      grad_input<T, 1>(g.ptr, x, t, w, divisor, gi, n);
    } else {
      grad_input<T, 0>(g.ptr, x, t, w, divisor, gi, n);
    }
  }
  if (gt) {
    for (int64_t i = 0; i < n; ++i) {
      const T xv = x[i];
      // at::logit without eps: log(x / (1 - x)), and +inf at x == 1.
      const T logit = xv == T(1) ? T(INFINITY) : std::log(xv / (T(1) - xv));
      T v = -logit * g.ptr[i * g.stride];
      if (w.ptr) v *= w.ptr[i * w.stride];
      gt[i] = v / divisor;
    }
  }
}

template <typename T>
const Loops<T> kScalarLoops{"scalar", &forward_sum<T>, &forward_none<T>, &backward<T>};

}  // namespace

const Loops<float>& scalar_float_loops() { return kScalarLoops<float>; }
const Loops<double>& double_loops() { return kScalarLoops<double>; }

}  // namespace bce_ext::cpu
