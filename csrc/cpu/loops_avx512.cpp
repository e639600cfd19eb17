// The AVX-512 inner loops of every loss and storage type (float32, float64, and
// the half types converted in registers): the template of vec/loops_impl.h over
// the AVX-512 backends, compiled for that target alone (the pragma below). Only called where the
// dispatcher found AVX-512 F, DQ, BW and VL with OS support (loops_dispatch.cpp). The operations
// are those of the AVX2 backend, one for one, so both give bitwise the same results (the sums
// included: they run over 16 virtual lanes). No torch or standard headers.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
#ifdef __clang__
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
// GCC 12's avx512fintrin.h trips its own -Wmaybe-uninitialized (`__m512 __Y = __Y;` in
// _mm512_undefined_ps, GCC bug 105593, fixed in GCC 13): silence it for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define BCE_EXT_HAVE_AVX512 1
#endif

#include "loops.h"

#ifdef BCE_EXT_HAVE_AVX512
#include "vec/avx512_backend.h"
#include "vec/avx512_double_backend.h"
#include "vec/vec_math.h"
#include "vec/vec_math_double.h"
#define BCE_EXT_ISA_BACKEND Avx512
#define BCE_EXT_ISA_DOUBLE_BACKEND Avx512Double
#define BCE_EXT_ISA_NAME "avx512"
#include "vec/isa_entry.h"

namespace bce_ext::cpu {
const IsaLoops* avx512_loops() { return &isa_entry::kIsaLoops; }
MathEvalFn avx512_math_eval(const char* name) { return isa_entry::math_eval(name); }
MathEvalDoubleFn avx512_math_eval_double(const char* name) {
  return isa_entry::math_eval_double(name);
}
const Converters* avx512_converters() { return &isa_entry::kConverters; }
}  // namespace bce_ext::cpu

#else  // not x86-64 with GCC or clang: no AVX-512 loops

namespace bce_ext::cpu {
const IsaLoops* avx512_loops() { return nullptr; }
MathEvalFn avx512_math_eval(const char*) { return nullptr; }
MathEvalDoubleFn avx512_math_eval_double(const char*) { return nullptr; }
const Converters* avx512_converters() { return nullptr; }
}  // namespace bce_ext::cpu

#endif
