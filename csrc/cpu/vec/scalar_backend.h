#pragma once
// The portable backend of the vector loops: one lane of float or double, valid on any CPU, and its
// Math from libm. With it the loops are the reference for the vectorised backends, and the
// float64 kernels: same operations in the same order as PyTorch's CPU kernels (std::log, std::log1p
// and IEEE division), so float32 and float64 element values match PyTorch's to the last bit.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace bce_ext::cpu {
namespace {

template <typename Scalar>
struct Portable {
  using T = Scalar;
  using F = Scalar;
  using M = bool;
  // Bits of a value, for the range check (see RangeAcc in vec/loops_impl.h).
  using I = std::conditional_t<std::is_same_v<Scalar, double>, uint64_t, uint32_t>;
  using DAcc = double;
  static constexpr int kLanes = 1;

  static F zero() { return F(0); }
  static F set1(T v) { return v; }
  static F load(const T* p) { return *p; }
  static F load_n(const T* p, M m) { return m ? *p : F(0); }
  static void store(T* p, F v) { *p = v; }
  static void store_n(T* p, F v, M m) {
    if (m) *p = v;
  }
  static M tail_mask(int n) { return n > 0; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  // Not fused: the portable loops round as PyTorch's scalar code does.
  static F fma(F a, F b, F c) { return a * b + c; }
  static F max(F a, F b) { return a > b ? a : b; }  // b where either is NaN, as maxps
  static F min(F a, F b) { return a < b ? a : b; }  // b where either is NaN, as minps
  static F abs(F a) { return std::fabs(a); }
  static F neg(F a) { return -a; }
  static M eq(F a, F b) { return a == b; }
  static M ge(F a, F b) { return a >= b; }
  static M gt(F a, F b) { return a > b; }
  static M mand(M a, M b) { return a && b; }
  static M mor(M a, M b) { return a || b; }
  static bool all(M m) { return m; }
  static bool any(M m) { return m; }
  static F blend(M m, F a, F b) { return m ? b : a; }
  static F zero_unless(M m, F v) { return m ? v : F(0); }
  static I as_i(F v) {
    I bits;
    std::memcpy(&bits, &v, sizeof(bits));
    return bits;
  }
  static I max_u32(I a, I b) { return a > b ? a : b; }
  static bool any_above_u(I a, I limit) { return a > limit; }
  static DAcc dzero() { return 0.0; }
  static void dadd(DAcc& acc, F v) { acc += static_cast<double>(v); }
  static void dstore(DAcc acc, double* out) { *out = acc; }

  // One 16-bit value (the half types, float loops only), and the integer operations of the
  // bfloat16 conversion (half_convert.h).
  using H = uint16_t;
  static H load_h(const uint16_t* p) { return *p; }
  static H load_hn(const uint16_t* p, M m) { return m ? *p : H(0); }
  static void store_h(uint16_t* p, H v) { *p = v; }
  static void store_hn(uint16_t* p, H v, M m) {
    if (m) *p = v;
  }
  static F as_f(I bits) {
    F v;
    std::memcpy(&v, &bits, sizeof(v));
    return v;
  }
  static I set1i(int32_t v) { return I(v); }
  static I add_i(I a, I b) { return a + b; }
  static I widen_u16(H h) { return I(h); }
  static H narrow_u32(I v) { return H(v); }  // v < 2^16
  static I srli16(I a) { return a >> 16; }
  static I slli16(I a) { return a << 16; }
  static I and1_i(I a) { return a & 1u; }
  static I blend_i(M m, I a, I b) { return m ? b : a; }
  static M is_nan(F v) { return v != v; }
  // IEEE half to float and back, rounding to nearest even: c10's own algorithm
  // (c10/util/Half.h, fp16_ieee_to_fp32_value and fp16_ieee_from_fp32_value, from the FP16
  // library), so the bits are c10::Half's, NaNs included (the vector conversions keep a NaN's
  // payload instead: still a NaN).
  static F half_to_f(H h) {
    const uint32_t w = uint32_t{h} << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    constexpr uint32_t kExpOffset = 0xE0u << 23;  // rebias the exponent from 15 to 127, over 2^112
    constexpr float kExpScale = 0x1.0p-112f;
    const float normalized = as_f((two_w >> 4) + kExpOffset) * kExpScale;
    constexpr uint32_t kMagicMask = 126u << 23;  // a subnormal half as (0.5 + m * 2^-24) - 0.5
    const float denormalized = as_f((two_w >> 17) | kMagicMask) - 0.5f;
    constexpr uint32_t kDenormalCutoff = 1u << 27;
    return as_f(sign | as_i(two_w < kDenormalCutoff ? denormalized : normalized));
  }
  static H f_to_half(F f) {
    // Scaling by 2^112 then 2^-110 rounds the mantissa where a half keeps it (and overflows to
    // inf past the half range); adding the bias below puts the rounded bits in place.
    float base = (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = as_i(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = as_f((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = as_i(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return H((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
  }
};

namespace vec_math {

template <class V>
struct Math;

template <typename Scalar>
struct Math<Portable<Scalar>> {
  using F = Scalar;
  static F log01(F x) { return std::log(x); }
  static F log1m(F x) { return std::log1p(-x); }
  struct LogPair {
    F log_x, log1m_x;
  };
  static LogPair log_pair(F x, F lo) {
    return {Portable<Scalar>::max(lo, log01(x)), Portable<Scalar>::max(lo, log1m(x))};
  }
  static F log_select(F x, bool use_x) { return use_x ? std::log(x) : std::log1p(-x); }
  static F log_any(F q) { return std::log(q); }
  static F exp(F y) { return std::exp(y); }
  static F log1p01(F e) { return std::log1p(e); }
  static F inv_one_plus(F e) { return F(1) / (F(1) + e); }
  // As PyTorch's CPU sigmoid (1 / (1 + exp(-x))), but without its overflow to 0 below -88.7.
  static F sigmoid(F x) {
    const F e = std::exp(-std::fabs(x));
    return (x >= F(0) ? F(1) : e) / (F(1) + e);
  }
};

}  // namespace vec_math
}  // namespace
}  // namespace bce_ext::cpu
