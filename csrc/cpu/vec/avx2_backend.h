#pragma once
// The AVX2 + FMA backend of the vector loops: 8 float lanes, one-instruction wrappers (and F16C's
// half conversions). The list of what a backend provides is in vec/loops_impl.h. Include only from
// a file compiled for AVX2 and FMA (its own `#pragma GCC target`), and only there: no torch or
// standard headers.
#include <immintrin.h>

#include <cstdint>

namespace bce_ext::cpu {
namespace {

struct Avx2 {
  using T = float;
  static constexpr int kLanes = 8;
  using F = __m256;
  using I = __m256i;
  using M = __m256;  // all-ones lanes
  struct DAcc {
    __m256d lo, hi;
  };

  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static I set1i(int32_t v) { return _mm256_set1_epi32(v); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_n(const float* p, M m) { return _mm256_maskload_ps(p, _mm256_castps_si256(m)); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, F v, M m) { _mm256_maskstore_ps(p, _mm256_castps_si256(m), v); }
  static M tail_mask(int n) {
    return _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmsub(F a, F b, F c) { return _mm256_fnmsub_ps(a, b, c); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }  // b where either is NaN
  static F min(F a, F b) { return _mm256_min_ps(a, b); }  // b where either is NaN
  static F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static F neg(F a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  static M eq(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  static M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M mand(M a, M b) { return _mm256_and_ps(a, b); }
  static M mor(M a, M b) { return _mm256_or_ps(a, b); }
  static bool all(M m) { return _mm256_movemask_ps(m) == 0xff; }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static F blend(M m, F a, F b) { return _mm256_blendv_ps(a, b, m); }
  static F zero_unless(M m, F v) { return _mm256_and_ps(m, v); }
  static I as_i(F v) { return _mm256_castps_si256(v); }
  static F as_f(I v) { return _mm256_castsi256_ps(v); }
  static I add_i(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub_i(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I and_i(I a, I b) { return _mm256_and_si256(a, b); }
  static I srai23(I a) { return _mm256_srai_epi32(a, 23); }
  static I srai1(I a) { return _mm256_srai_epi32(a, 1); }
  static I slli23(I a) { return _mm256_slli_epi32(a, 23); }
  static I max_u32(I a, I b) { return _mm256_max_epu32(a, b); }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static I cvt_round(F a) { return _mm256_cvtps_epi32(a); }  // to nearest, ties to even
  static bool any_above_u(I a, uint32_t limit) {
    const I lim = _mm256_set1_epi32(int32_t(limit));
    return _mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_max_epu32(a, lim), lim)) != -1;
  }
  static DAcc dzero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static void dadd(DAcc& acc, F v) {
    acc.lo = _mm256_add_pd(acc.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    acc.hi = _mm256_add_pd(acc.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  static void dstore(const DAcc& acc, double* out) {
    _mm256_storeu_pd(out, acc.lo);
    _mm256_storeu_pd(out + 4, acc.hi);
  }

  // Eight 16-bit values, widened to lanes and narrowed back (the half conversions).
  using H = __m128i;
  static H load_h(const uint16_t* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  }
  static void store_h(uint16_t* p, H v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
  // AVX2 has no 16-bit masked moves: the lanes of m go through a buffer, so nothing past them is
  // read or written (zeros there). m must be a tail mask (its first lanes), as everywhere in the
  // loops.
  static int mask_count(M m) { return __builtin_ctz(~unsigned(_mm256_movemask_ps(m))); }
  static H load_hn(const uint16_t* p, M m) {
    alignas(16) uint16_t buf[kLanes] = {};
    for (int k = 0, n = mask_count(m); k < n; ++k) buf[k] = p[k];
    return load_h(buf);
  }
  static void store_hn(uint16_t* p, H v, M m) {
    alignas(16) uint16_t buf[kLanes];
    store_h(buf, v);
    for (int k = 0, n = mask_count(m); k < n; ++k) p[k] = buf[k];
  }
  static F half_to_f(H h) { return _mm256_cvtph_ps(h); }
  static H f_to_half(F v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT); }
  static I widen_u16(H h) { return _mm256_cvtepu16_epi32(h); }
  static H narrow_u32(I v) {  // each lane < 2^16
    return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  }
  static I srli16(I a) { return _mm256_srli_epi32(a, 16); }
  static I slli16(I a) { return _mm256_slli_epi32(a, 16); }
  static I and1_i(I a) { return _mm256_and_si256(a, _mm256_set1_epi32(1)); }
  static I blend_i(M m, I a, I b) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
  }
  static M is_nan(F v) { return _mm256_cmp_ps(v, v, _CMP_UNORD_Q); }
};

}  // namespace
}  // namespace bce_ext::cpu
