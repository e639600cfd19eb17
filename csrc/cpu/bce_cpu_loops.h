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

// The implementations for this CPU, chosen at first use (bce_cpu_dispatch.cpp): the widest
// instruction set this CPU and OS support, or the one named by BCE_EXT_CPU_ISA (scalar, avx2,
// avx512; an unsupported one falls back to the next narrower).
const Loops<float>& float_loops();
const Loops<double>& double_loops();

// The portable implementation, valid on any CPU; the reference for the vectorised ones.
const Loops<float>& scalar_float_loops();

// The vectorised float32 implementations (bce_cpu_avx2.cpp, bce_cpu_avx512.cpp, both from
// bce_cpu_vec.h); null where not compiled in. Call them only where the CPU supports them.
const Loops<float>* avx2_float_loops();
const Loops<float>* avx512_float_loops();

// For accuracy measurements: the vector logs, unclamped, of one instruction set: log(x) and
// log1p(-x) as the forward computes them, log(x) as the backward's grad_target does.
using LogEvalFn = void (*)(const float* x, float* log_x, float* log1m_x, float* log_x_any,
                           int64_t n);
LogEvalFn avx2_log_eval();
LogEvalFn avx512_log_eval();

// Whether the float32 loops of an instruction set ("scalar", "avx2", "avx512") are compiled in
// and can run on this CPU and OS.
bool cpu_isa_supported(const char* name);
// Re-selects the float32 loops (tests): the named set, or the widest supported one below it.
// Returns the name of the one chosen. Not for use while a kernel runs.
const char* select_cpu_isa(const char* name);

}  // namespace bce_ext::cpu
