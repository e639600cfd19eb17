#pragma once
// The AVX-512 backend of the vector loops: 16 float lanes, the AVX2 backend's operations one for
// one (so both give bitwise the same results). Include only from a file compiled for AVX-512 F,
// DQ, BW and VL (its own `#pragma GCC target`): no torch or standard headers.
#include <immintrin.h>

#include <cstdint>

namespace bce_ext::cpu {
namespace {

struct Avx512 {
  using T = float;
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
  static F min(F a, F b) { return _mm512_min_ps(a, b); }  // b where either is NaN
  static F abs(F a) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)));
  }
  static F neg(F a) {
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(int32_t(0x80000000u))));
  }
  static M eq(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M mand(M a, M b) { return _kand_mask16(a, b); }
  static M mor(M a, M b) { return _kor_mask16(a, b); }
  static bool all(M m) { return m == M(0xffff); }
  static bool any(M m) { return m != 0; }
  static F blend(M m, F a, F b) { return _mm512_mask_blend_ps(m, a, b); }
  static F zero_unless(M m, F v) { return _mm512_maskz_mov_ps(m, v); }
  static I as_i(F v) { return _mm512_castps_si512(v); }
  static F as_f(I v) { return _mm512_castsi512_ps(v); }
  static I add_i(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub_i(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I and_i(I a, I b) { return _mm512_and_si512(a, b); }
  static I srai23(I a) { return _mm512_srai_epi32(a, 23); }
  static I srai1(I a) { return _mm512_srai_epi32(a, 1); }
  static I slli23(I a) { return _mm512_slli_epi32(a, 23); }
  static I max_u32(I a, I b) { return _mm512_max_epu32(a, b); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static I cvt_round(F a) { return _mm512_cvtps_epi32(a); }  // to nearest, ties to even
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

  // Sixteen 16-bit values, widened to lanes and narrowed back (the half conversions).
  using H = __m256i;
  static H load_h(const uint16_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static void store_h(uint16_t* p, H v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  // AVX-512 BW + VL's masked 16-bit moves: no access past the lanes of m (zeros there).
  static H load_hn(const uint16_t* p, M m) { return _mm256_maskz_loadu_epi16(m, p); }
  static void store_hn(uint16_t* p, H v, M m) { _mm256_mask_storeu_epi16(p, m, v); }
  static F half_to_f(H h) { return _mm512_cvtph_ps(h); }
  static H f_to_half(F v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT); }
  static I widen_u16(H h) { return _mm512_cvtepu16_epi32(h); }
  static H narrow_u32(I v) { return _mm512_cvtepi32_epi16(v); }  // each lane < 2^16
  static I srli16(I a) { return _mm512_srli_epi32(a, 16); }
  static I slli16(I a) { return _mm512_slli_epi32(a, 16); }
  static I and1_i(I a) { return _mm512_and_si512(a, _mm512_set1_epi32(1)); }
  static I blend_i(M m, I a, I b) { return _mm512_mask_blend_epi32(m, a, b); }
  static M is_nan(F v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); }
};

}  // namespace
}  // namespace bce_ext::cpu
