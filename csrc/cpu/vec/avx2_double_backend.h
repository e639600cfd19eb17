#pragma once
// The AVX2 + FMA backend of the float64 vector loops: 4 double lanes, one-instruction wrappers
// where AVX2 has the instruction, short emulations where it has not (unsigned 64-bit max and
// compare). What loops_impl.h needs, plus the integer lane operations of vec_math_double.h.
// Include only from a file compiled for AVX2 and FMA (loops_avx2.cpp): no torch or standard
// headers.
#include <immintrin.h>

#include <cstdint>

namespace bce_ext::cpu {
namespace {

struct Avx2Double {
  using T = double;
  static constexpr int kLanes = 4;
  using F = __m256d;
  using I = __m256i;
  using M = __m256d;     // all-ones lanes
  using DAcc = __m256d;  // the lanes are doubles already

  static F zero() { return _mm256_setzero_pd(); }
  static F set1(double v) { return _mm256_set1_pd(v); }
  static I set1i(int64_t v) { return _mm256_set1_epi64x(v); }
  static F load(const double* p) { return _mm256_loadu_pd(p); }
  static F load_n(const double* p, M m) { return _mm256_maskload_pd(p, _mm256_castpd_si256(m)); }
  static void store(double* p, F v) { _mm256_storeu_pd(p, v); }
  static void store_n(double* p, F v, M m) { _mm256_maskstore_pd(p, _mm256_castpd_si256(m), v); }
  static M tail_mask(int n) {
    return _mm256_castsi256_pd(
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  }
  static F add(F a, F b) { return _mm256_add_pd(a, b); }
  static F sub(F a, F b) { return _mm256_sub_pd(a, b); }
  static F mul(F a, F b) { return _mm256_mul_pd(a, b); }
  static F div(F a, F b) { return _mm256_div_pd(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_pd(a, b, c); }
  static F fnmsub(F a, F b, F c) { return _mm256_fnmsub_pd(a, b, c); }
  static F max(F a, F b) { return _mm256_max_pd(a, b); }  // b where either is NaN
  static F min(F a, F b) { return _mm256_min_pd(a, b); }  // b where either is NaN
  static F abs(F a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static F neg(F a) { return _mm256_xor_pd(a, _mm256_set1_pd(-0.0)); }
  static M eq(F a, F b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
  static M ge(F a, F b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
  static M gt(F a, F b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static M mand(M a, M b) { return _mm256_and_pd(a, b); }
  static M mor(M a, M b) { return _mm256_or_pd(a, b); }
  static bool all(M m) { return _mm256_movemask_pd(m) == 0xf; }
  static bool any(M m) { return _mm256_movemask_pd(m) != 0; }
  static F blend(M m, F a, F b) { return _mm256_blendv_pd(a, b, m); }
  static F zero_unless(M m, F v) { return _mm256_and_pd(m, v); }
  static I as_i(F v) { return _mm256_castpd_si256(v); }
  static F as_f(I v) { return _mm256_castsi256_pd(v); }
  static I add_i(I a, I b) { return _mm256_add_epi64(a, b); }
  static I sub_i(I a, I b) { return _mm256_sub_epi64(a, b); }
  static I and_i(I a, I b) { return _mm256_and_si256(a, b); }
  static I srli52(I a) { return _mm256_srli_epi64(a, 52); }
  static I slli52(I a) { return _mm256_slli_epi64(a, 52); }
  // The unsigned maximum of 64-bit lanes (the name is the float backends'): AVX2 compares 64-bit
  // lanes signed only, so both sides are offset by 2^63 first.
  static I max_u32(I a, I b) {
    const I bias = _mm256_set1_epi64x(INT64_MIN);
    const I a_gt = _mm256_cmpgt_epi64(_mm256_xor_si256(a, bias), _mm256_xor_si256(b, bias));
    return _mm256_blendv_epi8(b, a, a_gt);
  }
  static bool any_above_u(I a, uint64_t limit) {
    const I bias = _mm256_set1_epi64x(INT64_MIN);
    const I above = _mm256_cmpgt_epi64(_mm256_xor_si256(a, bias),
                                       _mm256_set1_epi64x(int64_t(limit ^ uint64_t(INT64_MIN))));
    return _mm256_movemask_pd(_mm256_castsi256_pd(above)) != 0;
  }
  static DAcc dzero() { return _mm256_setzero_pd(); }
  static void dadd(DAcc& acc, F v) { acc = _mm256_add_pd(acc, v); }
  static void dstore(const DAcc& acc, double* out) { _mm256_storeu_pd(out, acc); }
};

}  // namespace
}  // namespace bce_ext::cpu
