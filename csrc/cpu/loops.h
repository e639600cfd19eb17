#pragma once
// The CPU kernels' inner loops, as seen by their host code (cpu_driver.h): one call handles one run
// of contiguous elements of one loss. Implementations: the portable loops (loops_portable.cpp, float
// and double) and the vectorised float and double loops (loops_avx2.cpp, loops_avx512.cpp), all
// instances of one template (vec/loops_impl.h) over a backend and a loss's element formulas
// (csrc/losses/).
//
// Plain C++, no torch headers: an implementation for a wider instruction set lives in its own file,
// compiled with its own target flags, and must not share inline functions with the rest of the build.
#include <cstdint>

#include "../loss_types.h"

namespace bce_ext::cpu {

// One operand of a run that is not one value per element by necessity: `ptr` null means absent;
// `stride` 1 reads one value per element, stride 0 one value for the whole run (a broadcast
// weight, or the scalar gradient of a reduced loss).
template <typename T>
struct Operand {
  const T* ptr;
  int64_t stride;
};

// A run of n elements: input x and target t (raw, before label smoothing), the weight w and the
// positive-class weight pw (losses without one ignore it).
template <typename T>
struct Run {
  const T* x;
  const T* t;
  Operand<T> w;
  Operand<T> pw;
  int64_t n;
};

template <typename T>
struct Loops {
  const char* isa;  // "scalar", "avx2", "avx512": reported by bce_ext.info
  // Sum of w * loss over the run, accumulated in blocks of T and combined in double. Sets *bad
  // when the loss checks ranges and an x or t of the run is outside [0, 1] or NaN (the caller
  // finds which).
  double (*forward_sum)(const Run<T>& run, const LossParams& params, bool* bad);
  // out[i] = w * loss; same *bad contract.
  void (*forward_none)(const Run<T>& run, const LossParams& params, T* out, bool* bad);
  // Writes gi and/or gt (either may be null): the gradient times g, times w, divided by divisor
  // (N for 'mean', 1 otherwise).
  void (*backward)(const Run<T>& run, const LossParams& params, Operand<T> g, T divisor, T* gi,
                   T* gt);
};

// Conversions between the half types' storage (their raw 16-bit patterns) and float, n elements,
// rounding to nearest even as c10::Half and c10::BFloat16 do.
struct Converters {
  void (*half_to_float)(const uint16_t* in, float* out, int64_t n);
  void (*float_to_half)(const float* in, uint16_t* out, int64_t n);
  void (*bf16_to_float)(const uint16_t* in, float* out, int64_t n);
  void (*float_to_bf16)(const float* in, uint16_t* out, int64_t n);
};

// The loops for this CPU, chosen at first use (loops_dispatch.cpp): the widest instruction set this
// CPU and OS support, or the one named by BCE_EXT_CPU_ISA (scalar, avx2, avx512; an unsupported one
// falls back to the next narrower). One choice for float and double.
const Loops<float>& float_loops(LossKind loss);
const Loops<double>& double_loops(LossKind loss);
const char* float_isa();
// The vectorised conversions of the chosen instruction set; null for the portable loops (the
// caller converts with c10's own types then).
const Converters* vector_converters();

// The implementations: portable (valid on any CPU), and the vectorised ones (null where not
// compiled in; call them only where the CPU supports them).
const Loops<float>& portable_float_loops(LossKind loss);
const Loops<double>& portable_double_loops(LossKind loss);
const Loops<float>* avx2_float_loops(LossKind loss);
const Loops<float>* avx512_float_loops(LossKind loss);
const Loops<double>* avx2_double_loops(LossKind loss);
const Loops<double>* avx512_double_loops(LossKind loss);
const Converters* avx2_converters();
const Converters* avx512_converters();

// For accuracy measurements (tests): an elementary function of one instruction set's vector math
// over n floats (vec/vec_math.h) or doubles (vec/vec_math_double.h); the names are those of
// vec_math::Math. Null where not compiled in or for an unknown name.
using MathEvalFn = void (*)(const float* in, float* out, int64_t n);
using MathEvalDoubleFn = void (*)(const double* in, double* out, int64_t n);
MathEvalFn avx2_math_eval(const char* name);
MathEvalFn avx512_math_eval(const char* name);
MathEvalDoubleFn avx2_math_eval_double(const char* name);
MathEvalDoubleFn avx512_math_eval_double(const char* name);

// Whether the loops of an instruction set ("scalar", "avx2", "avx512") are compiled in and can run
// on this CPU and OS.
bool cpu_isa_supported(const char* name);
// Re-selects the float and double loops (tests): the named set, or the widest supported one below it.
// Returns the name of the one chosen. Not for use while a kernel runs.
const char* select_cpu_isa(const char* name);

}  // namespace bce_ext::cpu
