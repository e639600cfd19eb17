#pragma once
// The CPU kernels' inner loops, as seen by their host code (loss_cpu.cpp): one call handles one run
// of contiguous elements of one loss in one storage type (float, double, float16, bfloat16).
// Implementations: the portable loops (loops_portable.cpp) and the vectorised ones
// (loops_avx2.cpp, loops_avx512.cpp), all instances of one template (vec/loops_impl.h) over a
// backend and a loss's element formulas (csrc/losses/).
//
// Plain C++, no torch headers: an implementation for a wider instruction set lives in its own file,
// compiled with its own target flags, and must not share inline functions with the rest of the
// build.
#include <cstdint>

#include "../loss_types.h"

namespace bce_ext::cpu {

// The half types' storage as the loops see it: their raw 16 bits (the layout of c10::Half and
// c10::BFloat16, whose pointers the driver passes as these).
struct Float16Bits {
  uint16_t bits;
};
struct BFloat16Bits {
  uint16_t bits;
};

// The type a storage type computes in: float for float and the half types, double for double.
template <typename S>
struct ComputeOf {
  using type = float;
};
template <>
struct ComputeOf<double> {
  using type = double;
};

// One operand of a run that is not one value per element by necessity: `ptr` null means absent;
// `stride` 1 reads one value per element, stride 0 one value for the whole run (a broadcast
// weight).
template <typename T>
struct Operand {
  const T* ptr;
  int64_t stride;
};

// A run of n elements of storage type S: input x and target t (raw, before label smoothing), the
// weight w and the positive-class weight pw (losses without one ignore it) as tables in the compute
// type T, or, for a half type's weight of one value per element, in S (w_stored, pw_stored: then w
// or pw is absent). Half-type elements are converted to float and back in registers.
template <typename S>
struct Run {
  using T = typename ComputeOf<S>::type;
  const S* x;
  const S* t;
  Operand<T> w;
  Operand<T> pw;
  const S* w_stored;
  const S* pw_stored;
  int64_t n;
};

template <typename S>
struct Loops {
  using T = typename ComputeOf<S>::type;
  LossKind loss;    // whose loops these are: the tables are checked to be keyed by it
  const char* isa;  // "scalar", "avx2", "avx512": reported by bce_ext.info
  // Sum of w * loss over the run, accumulated in blocks of T and combined in double. Sets *bad
  // when the loss checks ranges and an x or t of the run is outside [0, 1] or NaN (the caller
  // finds which). Adds to *kept the number of elements not ignored (LossParams::ignore).
  double (*forward_sum)(const Run<S>& run, const LossParams& params, bool* bad, double* kept);
  // out[i] = w * loss; same *bad contract.
  void (*forward_none)(const Run<S>& run, const LossParams& params, S* out, bool* bad);
  // Writes gi and/or gt (either may be null): the gradient (g[i], or g_scalar where g is null)
  // times w, divided by divisor (N for 'mean', or the elements not ignored; 1 otherwise).
  void (*backward)(const Run<S>& run, const LossParams& params, const S* g, T g_scalar, T divisor,
                   S* gi, S* gt);
};

// Whether a table of every loss's loops holds each loss's at its LossKind (static_asserted where
// the tables are defined).
template <typename S>
constexpr bool keyed_by_loss(const Loops<S> (&table)[kLossCount]) {
  for (int k = 0; k < kLossCount; ++k) {
    if (table[k].loss != static_cast<LossKind>(k)) return false;
  }
  return true;
}

// One tile of the pairwise sigmoid (SigLIP) loss (csrc/siglip/): rows x cols products
// <image_i, text_j> at row stride ld, in the compute type T (vec/siglip_tile.h has the loop).
// A pair is positive where row_ids[r] == col_ids[c] (both given), else where row0 + r == col0 + c.
template <typename T>
struct SiglipTile {
  T* products;  // in; with grad, out: scale * grad_scale * d loss / d logit
  int64_t rows, cols, ld;
  const int64_t* row_ids;
  const int64_t* col_ids;
  int64_t row0, col0;
  T scale, bias, grad_scale;  // logit = scale * product + bias
  bool grad;
  T* scratch;  // cols elements the loop may write
};
// What a tile adds: the sum of its losses, of grad_scale * d loss / d logit, and of that times the
// product (the scale's gradient), each in double.
struct SiglipSums {
  double loss = 0.0, grad = 0.0, product_grad = 0.0;
  SiglipSums& operator+=(const SiglipSums& o) {
    loss += o.loss;
    grad += o.grad;
    product_grad += o.product_grad;
    return *this;
  }
};
template <typename T>
using SiglipTileFn = void (*)(const SiglipTile<T>& tile, SiglipSums* sums);

// The loops of every loss (each array keyed by LossKind) of one instruction set, for each
// storage type, and its SigLIP tile loops.
struct IsaLoops {
  const Loops<float>* f32;
  const Loops<double>* f64;
  const Loops<Float16Bits>* f16;
  const Loops<BFloat16Bits>* bf16;
  SiglipTileFn<float> siglip_f32;
  SiglipTileFn<double> siglip_f64;
};

// Conversions between the half types' storage (their raw 16-bit patterns) and float, n elements,
// rounding to nearest even as c10::Half and c10::BFloat16 do (the tests check them bitwise).
struct Converters {
  void (*half_to_float)(const uint16_t* in, float* out, int64_t n);
  void (*float_to_half)(const float* in, uint16_t* out, int64_t n);
  void (*bf16_to_float)(const uint16_t* in, float* out, int64_t n);
  void (*float_to_bf16)(const float* in, uint16_t* out, int64_t n);
};

// The loops for this CPU, chosen at first use (loops_dispatch.cpp): the widest instruction set this
// CPU and OS support, or the one named by BCE_EXT_CPU_ISA (scalar, avx2, avx512; an unsupported one
// falls back to the next narrower). One choice for every storage type. S: float, double,
// Float16Bits, BFloat16Bits (instantiated for those four in loops_dispatch.cpp).
template <typename S>
const Loops<S>& chosen_loops(LossKind loss);
// The SigLIP tile loop of that instruction set, T float or double.
template <typename T>
SiglipTileFn<T> chosen_siglip_tile();
const char* float_isa();

// The implementations: portable (valid on any CPU), and the vectorised ones (null where not
// compiled in; call them only where the CPU supports them).
const IsaLoops& portable_loops();
const IsaLoops* avx2_loops();
const IsaLoops* avx512_loops();
// The conversions of an instruction set (null where not compiled in), for the tests: the loops
// make the same conversions in registers.
const Converters& portable_converters();
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
// Re-selects the loops of every storage type (tests): the named set, or the widest supported one
// below it. Returns the name of the one chosen. Not for use while a kernel runs.
const char* select_cpu_isa(const char* name);

}  // namespace bce_ext::cpu
