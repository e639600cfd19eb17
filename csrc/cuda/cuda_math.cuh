#pragma once
// The CUDA backend of the loss formulas (csrc/losses/): Lanes<T>, one element of float or double
// as the formulas' F (M = bool), and its Math, the elementary functions the formulas call.
// The kernels (loss_cuda_driver.cuh) instantiate every loss of losses/registry.h over them.
//
// Operations round once each and are never contracted into FMAs (rn:: below: nvcc contracts
// a * b - c * d by default), so the formulas keep the CPU kernels' operation order and the two
// devices differ only by their elementary functions:
//   log01, log1m, log_select   float: ours, within about 1.15 ulp over [0, 1], with log(x) and
//                              log1p(-x) sharing one range reduction (the compiler merges the
//                              reductions of log01(x) and log1m(x) of the same x) and log_select
//                              taking one log; double: CUDA's log and log1p
//   log_any                    CUDA's log (PyTorch's logit is log(x / (1 - x)) with it)
//   log1p01                    float: ours for e in [0, 1], within 0.92 ulp, one polynomial with
//                              no range reduction from bits (15 instructions, CUDA's log1pf about
//                              24); double: CUDA's log1p
//   exp, sigmoid               CUDA's accurate exp (no --use_fast_math: see setup.py)
//   inv_one_plus               1 / (1 + e) for e in [0, 1], correctly rounded (as the CPU's
//                              division) without the range checks of a general one (below)
//
// Apart from the BCE_EXT_HD markers this is plain C++, so that tests/cuda_math_host.cpp compiles
// the same functions (and the formulas over them) with the host compiler and checks them on the
// CPU; there the library functions are the C++ library's.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../losses/host_device.h"

namespace bce_ext::cuda {

// Single roundings that the compiler may neither contract into an FMA nor reorder: CUDA's _rn
// intrinsics on the device; on the host, plain operators (the host test builds with
// -ffp-contract=off) and std::fma. And the library functions (CUDA's on the device, the C++
// library's on the host).
namespace rn {
#ifdef __CUDA_ARCH__
BCE_EXT_HD float mul(float a, float b) { return __fmul_rn(a, b); }
BCE_EXT_HD float add(float a, float b) { return __fadd_rn(a, b); }
BCE_EXT_HD float sub(float a, float b) { return __fsub_rn(a, b); }
BCE_EXT_HD float div(float a, float b) { return __fdiv_rn(a, b); }
BCE_EXT_HD float fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
BCE_EXT_HD double mul(double a, double b) { return __dmul_rn(a, b); }
BCE_EXT_HD double add(double a, double b) { return __dadd_rn(a, b); }
BCE_EXT_HD double sub(double a, double b) { return __dsub_rn(a, b); }
BCE_EXT_HD double div(double a, double b) { return __ddiv_rn(a, b); }
BCE_EXT_HD double fma(double a, double b, double c) { return __fma_rn(a, b, c); }
BCE_EXT_HD int32_t bits(float v) { return __float_as_int(v); }
BCE_EXT_HD float from_bits(int32_t b) { return __int_as_float(b); }
BCE_EXT_HD float log(float v) { return ::logf(v); }
BCE_EXT_HD double log(double v) { return ::log(v); }
BCE_EXT_HD double log1p(double v) { return ::log1p(v); }
BCE_EXT_HD float log1p(float v) { return ::log1pf(v); }
BCE_EXT_HD float exp(float v) { return ::expf(v); }
BCE_EXT_HD double exp(double v) { return ::exp(v); }
// 1 / d for d in [1, 2], correctly rounded. float: the fast path of __frcp_rn (MUFU.RCP and one
// Newton step, which rounds correctly for every normal d: what __frcp_rn returns there, bit for
// bit), without its test of d's exponent and the call of its slow path for d near 0 or huge,
// which this range never takes (3 instructions instead of 10). double: __drcp_rn itself.
BCE_EXT_HD float recip_1_2(float d) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
  return __fmaf_rn(r, __fmaf_rn(-d, r, 1.0f), r);
}
BCE_EXT_HD double recip_1_2(double d) { return __drcp_rn(d); }
// v where ok, else NaN.
BCE_EXT_HD float nan_unless(bool ok, float v) { return ok ? v : NAN; }
BCE_EXT_HD double nan_unless(bool ok, double v) { return ok ? v : NAN; }
#else
template <typename T>
inline T mul(T a, T b) {
  return a * b;
}
template <typename T>
inline T add(T a, T b) {
  return a + b;
}
template <typename T>
inline T sub(T a, T b) {
  return a - b;
}
template <typename T>
inline T div(T a, T b) {
  return a / b;
}
template <typename T>
inline T fma(T a, T b, T c) {
  return std::fma(a, b, c);
}
inline int32_t bits(float v) {
  int32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}
inline float from_bits(int32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}
template <typename T>
inline T log(T v) {
  return std::log(v);
}
template <typename T>
inline T log1p(T v) {
  return std::log1p(v);
}
template <typename T>
inline T exp(T v) {
  return std::exp(v);
}
template <typename T>
inline T recip_1_2(T d) {
  return T(1) / d;
}
template <typename T>
inline T nan_unless(bool ok, T v) {
  return ok ? v : T(NAN);
}
#endif
}  // namespace rn

// ---------------------------------------------------------------------------------------------
// The backend: one element (the kernels unroll over the elements of a 16-byte group themselves).
// The operations the formulas use, as csrc/cpu/vec/loops_impl.h lists them.

template <typename Scalar>
struct Lanes {
  using T = Scalar;
  using F = Scalar;
  using M = bool;
  static constexpr int kLanes = 1;

  BCE_EXT_HD static F zero() { return F(0); }
  BCE_EXT_HD static F set1(T v) { return v; }
  BCE_EXT_HD static F add(F a, F b) { return rn::add(a, b); }
  BCE_EXT_HD static F sub(F a, F b) { return rn::sub(a, b); }
  BCE_EXT_HD static F mul(F a, F b) { return rn::mul(a, b); }
  BCE_EXT_HD static F div(F a, F b) { return rn::div(a, b); }
  BCE_EXT_HD static F fma(F a, F b, F c) { return rn::fma(a, b, c); }  // fused, as AVX2's
  BCE_EXT_HD static F max(F a, F b) { return a > b ? a : b; }  // b where either is NaN, as maxps
  BCE_EXT_HD static F min(F a, F b) { return a < b ? a : b; }  // b where either is NaN, as minps
  BCE_EXT_HD static F abs(F a) { return std::fabs(a); }
  BCE_EXT_HD static F neg(F a) { return -a; }
  BCE_EXT_HD static M eq(F a, F b) { return a == b; }
  BCE_EXT_HD static M ge(F a, F b) { return a >= b; }
  BCE_EXT_HD static M gt(F a, F b) { return a > b; }
  // & and |, not && and ||: no branches.
  BCE_EXT_HD static M mand(M a, M b) { return a & b; }
  BCE_EXT_HD static M mor(M a, M b) { return a | b; }
  BCE_EXT_HD static bool all(M m) { return m; }
  BCE_EXT_HD static bool any(M m) { return m; }
  BCE_EXT_HD static F blend(M m, F a, F b) { return m ? b : a; }
};

// ---------------------------------------------------------------------------------------------
// log(x) and log1p(-x) in float, for x in [0, 1].
//
// With a = min(x, 1 - x) and b = 1 - a, {log(x), log1p(-x)} = {log(a), log(b)}, and both a and
// b - 1 are exact floats: a is x or 1 - x (exact for x >= 1/2, Sterbenz), b - 1 is -x or x - 1.
// Each log is ln(2^k (1 + f)) = k ln2 + log1p(f) with 1 + f in [sqrt(1/2), sqrt(2)):
//   log(a): a in [0, 1/2], the full reduction from a's bits (k <= -1);
//   log(b): b in [1/2, 1], k = 0 and f = b - 1, or k = -1 and f = 2b - 1 = 1 - 2a: no bits needed.
// log1p(f) = f + f^2 Q(f), Q a degree-7 polynomial: minimax for the relative error of the sum on
// [sqrt(1/2) - 1, sqrt(2) - 1] (Remez exchange, then rounded to float; 3.0e-8 before rounding, so
// the float evaluation stays within about 1 ulp: tests/cuda_math_host.cpp measures it).
// (Scalars, not an array: device code can read a host constexpr scalar, not an array.)
constexpr float kLogQ0 = -0.4999999f, kLogQ1 = 0.3333395f, kLogQ2 = -0.25001755f,
                kLogQ3 = 0.19962072f, kLogQ4 = -0.16570508f, kLogQ5 = 0.14917974f,
                kLogQ6 = -0.14307523f, kLogQ7 = 0.087348446f;
// ln 2 rounded to float: k ln2 is one FMA. Its error (1.9e-9) times |k| <= 151 stays below 0.05
// ulp of a result of magnitude |k| ln2 - 0.35, so no second (low) part is needed.
constexpr float kLn2 = 0.693147182f;
// 1 + f starts at sqrt(1/2): the bits of sqrt(1/2) rounded to float.
constexpr int32_t kSqrtHalfBits = 0x3f3504f3;
// a below 2^-126 (subnormal) or 0 is scaled by 2^24 first, for every a alike (exact), and k
// corrected.
constexpr float kTwo24 = 16777216.0f;
constexpr int kTwo24Exponent = 24;
// 1 - sqrt(1/2): b = 1 - a is below sqrt(1/2) above this a, and is then reduced with k = -1.
constexpr float kOneMinusSqrtHalf = 0.29289322f;

// log1p(e) for e in [0, 1] (the tail log1p(exp(-|x|)) of the logits losses): f = e up to 1/2, and
// above it log1p(e) = ln 2 + log1p(f) with f = (e - 1) / 2 in [-1/4, 0) (exact: e - 1 by Sterbenz,
// then halved); log1p(f) = f + f^2 P(f), P of degree 8 fitted to the relative error of the sum
// on [-1/4, 1/2] (iteratively reweighted least squares, 2^-27.6 before rounding to float).
// tests/cuda_math_host.cpp measures the float evaluation: at most 0.92 ulp.
constexpr float kLog1pP0 = -5.000000082e-01f, kLog1pP1 = 3.333345445e-01f,
                kLog1pP2 = -2.500005457e-01f, kLog1pP3 = 1.999060645e-01f,
                kLog1pP4 = -1.664776706e-01f, kLog1pP5 = 1.448206598e-01f,
                kLog1pP6 = -1.316223853e-01f, kLog1pP7 = 1.044831987e-01f,
                kLog1pP8 = -4.490940513e-02f;

// ---------------------------------------------------------------------------------------------
// Math: the functions the formulas call (their contracts are csrc/cpu/vec/vec_math.h's).

// 1 / (1 + exp(-x)) without overflow: 0 and 1 at -inf and +inf (as the CPU's Math).
template <typename T>
BCE_EXT_HD T sigmoid(T x) {
  const T e = rn::exp(-std::fabs(x));
  return rn::div(x >= T(0) ? T(1) : e, rn::add(T(1), e));
}

template <class V>
struct Math;

template <>
struct Math<Lanes<float>> {
  // The argument of a log as f, and k ln2 as k * c: the log is f + f^2 Q(f) + k * c. log(a) has
  // k <= -1 and c = ln2; log(b) has -k (0 or 1) and c = -ln2: with -k, k = 0 is +0, and +0 * (-ln2)
  // = -0 adds nothing to a zero log1p(f), whatever its sign (+0 * ln2 would turn -0 into +0; and a
  // -0.0f constant for k does not survive: ptxas compiles a select between -1.0f and -0.0f into an
  // integer select and a conversion, which gives +0).
  struct Reduced {
    float f, k, c;
  };

  BCE_EXT_HD static float log_reduced(Reduced r) {
    const float z = rn::mul(r.f, r.f);
    float q = rn::fma(kLogQ7, r.f, kLogQ6);
    q = rn::fma(q, r.f, kLogQ5);
    q = rn::fma(q, r.f, kLogQ4);
    q = rn::fma(q, r.f, kLogQ3);
    q = rn::fma(q, r.f, kLogQ2);
    q = rn::fma(q, r.f, kLogQ1);
    q = rn::fma(q, r.f, kLogQ0);
    // f + f^2 Q(f) keeps a zero f's sign (f^2 Q is -0), and so log1p(-(+-0)) = -+0 and log(1) = +0.
    return rn::fma(r.k, r.c, rn::fma(z, q, r.f));
  }

  // x in [0, 1] reduced for both logs. `small`: x <= 1/2, so log(x) = log(a) and log1p(-x) =
  // log(b). For x outside [0, 1] or NaN the logs are garbage (the formulas' range check makes the
  // loss NaN).
  struct PairReduction {
    Reduced ra, rb;
    bool small;
  };

  BCE_EXT_HD static PairReduction reduce_pair(float x) {
    // (Selects of single floats, not of structs: nvcc turns the latter into branches.)
    PairReduction p;
    p.small = x <= 0.5f;
    const float a = p.small ? x : rn::sub(1.0f, x);
    // |a| * 2^24 = 2^e m with m in [sqrt(1/2), sqrt(2)): e from the bits, m - 1 exact (Sterbenz).
    // For a = +-0, e = -127 and m = 1, so log(a) = -151 ln2, below the -100 clamp as it should be.
    // (|a|: a is -0 for x = -0, whose sign bit would read as a huge exponent; |.| costs nothing on
    // the GPU, an operand modifier.)
    const uint32_t s = static_cast<uint32_t>(rn::bits(rn::mul(std::fabs(a), kTwo24)));
    const int32_t e = static_cast<int32_t>(s - static_cast<uint32_t>(kSqrtHalfBits)) >> 23;
    const float m = rn::from_bits(static_cast<int32_t>(s - (static_cast<uint32_t>(e) << 23)));
    p.ra = {rn::sub(m, 1.0f), static_cast<float>(e - kTwo24Exponent), kLn2};
    // b - 1 is -x below 1/2 and x - 1 above (+0 at x = 1, so log(1) = +0; -(1 - x) would be -0).
    const bool halve = a > kOneMinusSqrtHalf;
    const float b_minus_1 = p.small ? -x : rn::sub(x, 1.0f);
    p.rb.f = halve ? rn::fma(-2.0f, a, 1.0f) : b_minus_1;
    p.rb.k = halve ? 1.0f : 0.0f;
    p.rb.c = -kLn2;
    return p;
  }

  struct LogPair {
    float log_x, log1m_x;
  };
  // max(lo, log(x)) and max(lo, log1p(-x)) from one reduction; lo <= -ln 2, so that only log(a)
  // can be below it (b >= 1/2).
  BCE_EXT_HD static LogPair log_pair(float x, float lo) {
    const PairReduction p = reduce_pair(x);
    const float la = Lanes<float>::max(lo, log_reduced(p.ra)), lb = log_reduced(p.rb);
    return {p.small ? la : lb, p.small ? lb : la};
  }
  // One log: log(x) is log(a) for small x, log1p(-x) is log(a) for the others.
  BCE_EXT_HD static float log_select(float x, bool use_x) {
    const PairReduction p = reduce_pair(x);
    const bool use_a = use_x == p.small;
    const Reduced r = {use_a ? p.ra.f : p.rb.f, use_a ? p.ra.k : p.rb.k, use_a ? kLn2 : -kLn2};
    return log_reduced(r);
  }
  BCE_EXT_HD static float log_any(float q) { return rn::log(q); }
  BCE_EXT_HD static float exp(float y) { return rn::exp(y); }
  BCE_EXT_HD static float log1p01(float e) {
    const bool above_half = e > 0.5f;
    const float f = above_half ? rn::fma(e, 0.5f, -0.5f) : e;
    float q = rn::fma(kLog1pP8, f, kLog1pP7);
    q = rn::fma(q, f, kLog1pP6);
    q = rn::fma(q, f, kLog1pP5);
    q = rn::fma(q, f, kLog1pP4);
    q = rn::fma(q, f, kLog1pP3);
    q = rn::fma(q, f, kLog1pP2);
    q = rn::fma(q, f, kLog1pP1);
    q = rn::fma(q, f, kLog1pP0);
    // + 0 where e <= 1/2 keeps the sum's value (and +0 at e = 0).
    return rn::add(above_half ? kLn2 : 0.0f, rn::fma(rn::mul(f, f), q, f));
  }
  BCE_EXT_HD static float inv_one_plus(float e) { return rn::recip_1_2(rn::add(1.0f, e)); }
  BCE_EXT_HD static float sigmoid(float x) { return cuda::sigmoid(x); }
};

template <>
struct Math<Lanes<double>> {
  struct LogPair {
    double log_x, log1m_x;
  };
  BCE_EXT_HD static LogPair log_pair(double x, double lo) {
    return {Lanes<double>::max(lo, rn::log(x)), Lanes<double>::max(lo, rn::log1p(-x))};
  }
  BCE_EXT_HD static double log_select(double x, bool use_x) {
    return use_x ? rn::log(x) : rn::log1p(-x);
  }
  BCE_EXT_HD static double log_any(double q) { return rn::log(q); }
  BCE_EXT_HD static double exp(double y) { return rn::exp(y); }
  BCE_EXT_HD static double log1p01(double e) { return rn::log1p(e); }
  BCE_EXT_HD static double inv_one_plus(double e) { return rn::recip_1_2(rn::add(1.0, e)); }
  BCE_EXT_HD static double sigmoid(double x) { return cuda::sigmoid(x); }
};

// The formulas of loss Loss (losses::Bce, losses::BceWithLogits) in the compute type T.
template <template <class, class> class Loss, typename T>
using Formulas = Loss<Lanes<T>, Math<Lanes<T>>>;

}  // namespace bce_ext::cuda
