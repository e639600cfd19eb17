// The AVX2 + FMA inner loops of every loss and storage type (float32, float64, and
// the half types converted in registers): the template of vec/loops_impl.h
// over the AVX2 backends, compiled for that target alone (the pragma below), whatever flags
// setup.py passes. Only called where the dispatcher found AVX2 and FMA (loops_dispatch.cpp). No
// torch or standard headers (see vec/loops_impl.h): this file must not emit inline functions that
// others also emit.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,f16c")
// a * b - c * d must not become an FMA: the formulas round as their scalar references do.
#ifdef __clang__
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif
#define BCE_EXT_HAVE_AVX2 1
#endif

#include "loops.h"

#ifdef BCE_EXT_HAVE_AVX2
#include "vec/avx2_backend.h"
#include "vec/avx2_double_backend.h"
#include "vec/vec_math.h"
#include "vec/vec_math_double.h"
#define BCE_EXT_ISA_BACKEND Avx2
#define BCE_EXT_ISA_DOUBLE_BACKEND Avx2Double
#define BCE_EXT_ISA_NAME "avx2"
#include "vec/isa_entry.h"

namespace bce_ext::cpu {
const IsaLoops* avx2_loops() { return &isa_entry::kIsaLoops; }
MathEvalFn avx2_math_eval(const char* name) { return isa_entry::math_eval(name); }
MathEvalDoubleFn avx2_math_eval_double(const char* name) {
  return isa_entry::math_eval_double(name);
}
const Converters* avx2_converters() { return &isa_entry::kConverters; }
}  // namespace bce_ext::cpu

#else  // not x86-64 with GCC or clang: no AVX2 loops

namespace bce_ext::cpu {
const IsaLoops* avx2_loops() { return nullptr; }
MathEvalFn avx2_math_eval(const char*) { return nullptr; }
MathEvalDoubleFn avx2_math_eval_double(const char*) { return nullptr; }
const Converters* avx2_converters() { return nullptr; }
}  // namespace bce_ext::cpu

#endif
