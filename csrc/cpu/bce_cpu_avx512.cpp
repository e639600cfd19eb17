// AVX-512 float32 inner loops: 16 lanes. The loops themselves are in bce_cpu_vec.h; this file gives
// them the AVX-512 backend and is compiled for that target alone (the pragma below), whatever flags
// setup.py passes. Only called where the dispatcher found AVX-512 F, DQ, BW and VL with OS support
// (bce_cpu_dispatch.cpp). The operations are those of the AVX2 backend, one for one, so both give
// bitwise the same results (the sums included: bce_cpu_vec.h sums over 16 virtual lanes).
// No torch or standard headers (see bce_cpu_vec.h).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
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
#include <immintrin.h>
#endif

#include <cstdint>

#include "../bce_constants.h"
#include "bce_cpu_loops.h"
#include "bce_cpu_tuning.h"

#ifdef BCE_EXT_HAVE_AVX512
namespace bce_ext::cpu {
namespace {

struct Avx512 {
  static constexpr int kLanes = 16;
  using F = __m512;
  using I = __m512i;
  using M = __mmask16;
  struct DAcc {
    __m512d lo, hi;
  };

  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static I set1i(int32_t v) { return _mm512_set1_epi32(v); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_n(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, F v, M m) { _mm512_mask_storeu_ps(p, m, v); }
  static M tail_mask(int n) { return M((1u << n) - 1u); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmsub(F a, F b, F c) { return _mm512_fnmsub_ps(a, b, c); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }  // b where either is NaN
  static M eq(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M mand(M a, M b) { return _kand_mask16(a, b); }
  static M mor(M a, M b) { return _kor_mask16(a, b); }
  static bool all(M m) { return m == M(0xffff); }
  static F blend(M m, F a, F b) { return _mm512_mask_blend_ps(m, a, b); }
  static F zero_unless(M m, F v) { return _mm512_maskz_mov_ps(m, v); }
  static F fxor(F a, F b) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
  static I as_i(F v) { return _mm512_castps_si512(v); }
  static F as_f(I v) { return _mm512_castsi512_ps(v); }
  static I add_i(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub_i(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I and_i(I a, I b) { return _mm512_and_si512(a, b); }
  static I srai23(I a) { return _mm512_srai_epi32(a, 23); }
  static I max_u32(I a, I b) { return _mm512_max_epu32(a, b); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static bool any_above_u(I a, uint32_t limit) {
    return _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(int32_t(limit))) != 0;
  }
  static DAcc dzero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  static void dadd(DAcc& acc, F v) {
    acc.lo = _mm512_add_pd(acc.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    acc.hi = _mm512_add_pd(
        acc.hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  static void dstore(const DAcc& acc, double* out) {
    _mm512_storeu_pd(out, acc.lo);
    _mm512_storeu_pd(out + 8, acc.hi);
  }
};

}  // namespace
}  // namespace bce_ext::cpu

#include "bce_cpu_vec.h"

namespace bce_ext::cpu {
namespace {

constexpr bool kAvx512HardPath = true;

const Loops<float> kAvx512Loops{"avx512", &vec::forward_sum<Avx512, kAvx512HardPath>,
                                &vec::forward_none<Avx512, kAvx512HardPath>,
                                &vec::backward<Avx512>};

}  // namespace

const Loops<float>* avx512_float_loops() { return &kAvx512Loops; }
LogEvalFn avx512_log_eval() { return &vec::log_eval<Avx512>; }

}  // namespace bce_ext::cpu

#else  // not x86-64 with GCC or clang: no AVX-512 loops

namespace bce_ext::cpu {
const Loops<float>* avx512_float_loops() { return nullptr; }
LogEvalFn avx512_log_eval() { return nullptr; }
}  // namespace bce_ext::cpu

#endif
