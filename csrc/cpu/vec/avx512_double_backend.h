#pragma once
// The AVX-512 backend of the float64 vector loops: 8 double lanes, the operations of the AVX2
// double backend one for one (so both give bitwise the same results). Include only from a file
// compiled for AVX-512 F, DQ, BW and VL (loops_avx512.cpp): no torch or standard headers.
#include <immintrin.h>

#include <cstdint>

namespace bce_ext::cpu {
namespace {

struct Avx512Double {
  using T = double;
  static constexpr int kLanes = 8;
  using F = __m512d;
  using I = __m512i;
  using M = __mmask8;
  using DAcc = __m512d;  // the lanes are doubles already

  static F zero() { return _mm512_setzero_pd(); }
  static F set1(double v) { return _mm512_set1_pd(v); }
  static I set1i(int64_t v) { return _mm512_set1_epi64(v); }
  static F load(const double* p) { return _mm512_loadu_pd(p); }
  static F load_n(const double* p, M m) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(double* p, F v) { _mm512_storeu_pd(p, v); }
  static void store_n(double* p, F v, M m) { _mm512_mask_storeu_pd(p, m, v); }
  static M tail_mask(int n) { return M((1u << n) - 1u); }
  static F add(F a, F b) { return _mm512_add_pd(a, b); }
  static F sub(F a, F b) { return _mm512_sub_pd(a, b); }
  static F mul(F a, F b) { return _mm512_mul_pd(a, b); }
  static F div(F a, F b) { return _mm512_div_pd(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_pd(a, b, c); }
  static F fnmsub(F a, F b, F c) { return _mm512_fnmsub_pd(a, b, c); }
  static F max(F a, F b) { return _mm512_max_pd(a, b); }  // b where either is NaN
  static F min(F a, F b) { return _mm512_min_pd(a, b); }  // b where either is NaN
  static F abs(F a) {
    return _mm512_castsi512_pd(
        _mm512_and_si512(_mm512_castpd_si512(a), _mm512_set1_epi64(INT64_MAX)));
  }
  static F neg(F a) {
    return _mm512_castsi512_pd(
        _mm512_xor_si512(_mm512_castpd_si512(a), _mm512_set1_epi64(INT64_MIN)));
  }
  static M eq(F a, F b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
  static M ge(F a, F b) { return _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ); }
  static M gt(F a, F b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static M mand(M a, M b) { return _kand_mask8(a, b); }
  static M mor(M a, M b) { return _kor_mask8(a, b); }
  static bool all(M m) { return m == M(0xff); }
  static bool any(M m) { return m != 0; }
  static F blend(M m, F a, F b) { return _mm512_mask_blend_pd(m, a, b); }
  static F zero_unless(M m, F v) { return _mm512_maskz_mov_pd(m, v); }
  static I as_i(F v) { return _mm512_castpd_si512(v); }
  static F as_f(I v) { return _mm512_castsi512_pd(v); }
  static I add_i(I a, I b) { return _mm512_add_epi64(a, b); }
  static I sub_i(I a, I b) { return _mm512_sub_epi64(a, b); }
  static I and_i(I a, I b) { return _mm512_and_si512(a, b); }
  static I srli52(I a) { return _mm512_srli_epi64(a, 52); }
  static I slli52(I a) { return _mm512_slli_epi64(a, 52); }
  // The unsigned maximum of 64-bit lanes (the name is the float backends').
  static I max_u32(I a, I b) { return _mm512_max_epu64(a, b); }
  static bool any_above_u(I a, uint64_t limit) {
    return _mm512_cmpgt_epu64_mask(a, _mm512_set1_epi64(int64_t(limit))) != 0;
  }
  static DAcc dzero() { return _mm512_setzero_pd(); }
  static void dadd(DAcc& acc, F v) { acc = _mm512_add_pd(acc, v); }
  static void dstore(const DAcc& acc, double* out) { _mm512_storeu_pd(out, acc); }
};

}  // namespace
}  // namespace bce_ext::cpu
