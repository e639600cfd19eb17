#pragma once
// Inner loops of the CPU kernels: one call handles one run of contiguous elements.
//
// Python reference of what every implementation computes, element by element (x input, t target,
// w weight, g incoming gradient, d the divisor: N for 'mean', 1 otherwise):
//   loss = (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100)          # then * w
//   gi   = g * (x - t) / max((1 - x) * x, 1e-12) * w / d
//   gt   = -log(x / (1 - x)) * g * w / d                                    # at::logit, no clamp
//   bad  = not (0 <= x <= 1) or not (0 <= t <= 1)                           # NaN is bad
//
// Plain C++, no torch headers: an implementation for a wider instruction set lives in its own file,
// compiled with its own target flags, and must not share inline functions with the rest of the build.
#include <cstdint>

namespace bce_ext::cpu {

// One operand of a run: `ptr` null means absent; `stride` 1 reads one value per element, stride 0
// one value for the whole run (a broadcast weight, or the scalar gradient of a reduced loss).
template <typename T>
struct Operand {
  const T* ptr;
  int64_t stride;
};

template <typename T>
struct Loops {
  const char* isa;  // "scalar", "avx2", "avx512": reported by bce_ext.info
  // Sum of w * loss over the run, accumulated in blocks of T and combined in double.
  // Sets *bad when any x or t of the run is outside [0, 1] or NaN (the caller finds which).
  double (*forward_sum)(const T* x, const T* t, Operand<T> w, int64_t n, bool* bad);
  // out[i] = w * loss; same *bad contract.
  void (*forward_none)(const T* x, const T* t, Operand<T> w, T* out, int64_t n, bool* bad);
  // Writes gi and/or gt (either may be null); divisor is N for 'mean' and 1 otherwise.
  void (*backward)(Operand<T> g, const T* x, const T* t, Operand<T> w, T divisor, T* gi, T* gt,
                   int64_t n);
};

// The implementations for this CPU, chosen once at first use.
const Loops<float>& float_loops();
const Loops<double>& double_loops();

// The portable implementation, valid on any CPU; the reference for the vectorised ones.
const Loops<float>& scalar_float_loops();

}  // namespace bce_ext::cpu
