#pragma once
// Math<V>: the elementary functions of the loss formulas over a float vector backend V (AVX2,
// AVX-512), built from V's one-instruction wrappers: Cephes-style range reductions and
// polynomials, within about 1 ulp of the correctly rounded result (tests/test_cpu_simd.py sweeps
// them). The portable backend's Math (scalar_backend.h) calls libm instead.
//
//   log01(x)          log(x) for x in [0, 1] (any finite x >= 0); -151 ln 2 (< -100) at 0
//   log1m(x)          log1p(-x) for x in [0, 1], exact in its argument (1 - x is not rounded)
//   log_pair(x, lo)   {max(lo, log01(x)), max(lo, log1m(x))} for lo <= -ln 2 (a backend may share
//                     work between the two: the CUDA one shares its range reduction and clamps only
//                     the log that can be below lo)
//   log_select(x, m)  m ? log01(x) : log1m(x), one logarithm per lane
//   log_any(q)        log(q) for any float, as std::log (-inf at 0, NaN below, +inf at +inf)
//   exp(y)            exp(y) for any float (0 below -104, +inf above 88.7, NaN at NaN)
//   log1p01(e)        log1p(e) for e in [0, 1]
//   inv_one_plus(e)   1 / (1 + e) for e in [0, 1], correctly rounded (a division here; the CUDA
//                     Math has a cheaper exact one for this range)
//   sigmoid(x)        1 / (1 + exp(-x)) without overflow: 0 and 1 at -inf and +inf
// Outside those domains the results are unspecified (the callers check ranges themselves).
//
// Included by one file per instruction set after its backend; everything is in an anonymous
// namespace, so each gets its own copy compiled for its own target. No standard library header.

namespace bce_ext::cpu {
namespace {
namespace vec_math {

constexpr int32_t kOneBits = 0x3f800000;
// The reduction of log_core: m in [sqrt(1/2), sqrt(2)), whose bits start at those of sqrt(1/2).
constexpr int32_t kSqrtHalfBits = 0x3f3504f3;
// Inputs of log_core are scaled by 2^24 first, so that subnormal inputs become normal.
constexpr float kTwo24 = 16777216.0f;
constexpr int32_t kScaleBias = kSqrtHalfBits + (24 << 23);
// ln 2 = kLn2Hi + kLn2Lo, kLn2Hi with 15 significant bits so that k * kLn2Hi is exact for
// |k| <= 256 (Cephes' C1, C2 of its double-precision log). Both are positive: see log_core.
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.428606765330187045e-6f;
// exp: Cephes expf's split of ln 2 (C1 + C2, C1 with 9 significant bits so that n * C1 is exact
// for |n| <= 2^15), and the range where exp is neither 0 nor +inf in float.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kExpC1 = 0.693359375f;
constexpr float kExpC2 = -2.12194440e-4f;
constexpr float kExpMin = -104.0f;  // exp(-104) < half the smallest subnormal: rounds to 0
constexpr float kExpMax = 89.0f;    // exp(89) > FLT_MAX: +inf
constexpr int32_t kExponentBias = 127;

// log(v) for v = s * 2^-24 - cn, s >= 0 finite (s = u * 2^24 computed by the caller, +0 for zero)
// and cn = -(rounding error of u) when u = 1 - x (cn = x - (1 - u), exact, nonzero only for u in
// (1/2, 1]), with kWithC. Returns -151 ln 2 (< -100) for v = 0; garbage for negative, NaN or
// infinite s (s < 2^128, so v < 2^104, is fine).
// Zeros come out with the sign of the scalar reference: log(1) = +0, and log1p(-x) = -x for x = +-0
// (so the loss keeps PyTorch's sign of zero): f carries the sign of -x, and every later addition
// adds a zero of that sign or -0 (hence k enters negated, times negated constants).
template <class V, bool kWithC>
inline typename V::F log_core(typename V::F s, typename V::F cn) {
  using F = typename V::F;
  using I = typename V::I;
  const I ix = V::as_i(s);
  // u = 2^k * m with m in [sqrt(1/2), sqrt(2)); the 2^24 scaling is taken out of k here.
  const I tmp = V::sub_i(ix, V::set1i(kScaleBias));
  const I k = V::srai23(tmp);
  const F m = V::as_f(V::add_i(V::and_i(tmp, V::set1i(0x007fffff)), V::set1i(kSqrtHalfBits)));
  F f;
  if constexpr (kWithC) {
    // The true m is m - cn * 2^-k: take the rounding error of u out, scaled alike (k is -1 or 0
    // where cn is not 0, so f stays exact: f = -x or 1 - 2x). -(cn * 2^-k) - (1 - m) is -0 for
    // x = +0 and +0 for x = -0.
    const F scale =
        V::as_f(V::sub_i(V::set1i(kOneBits), V::and_i(tmp, V::set1i(int32_t(0xff800000u)))));
    f = V::fnmsub(cn, scale, V::sub(V::set1(1.0f), m));
  } else {
    f = V::sub(m, V::set1(1.0f));  // exact (Sterbenz)
  }
  // -k: e * C is added as fma(-k, -C, .), whose zero product is -0 for C > 0, and so keeps the
  // sign of a zero result.
  const F ne = V::cvt(V::sub_i(V::set1i(0), k));
  // Cephes logf: log(1 + f) = f - f^2 / 2 + f^3 P(f) on [sqrt(1/2) - 1, sqrt(2) - 1], P of degree
  // 8 evaluated by Estrin's scheme (4 dependent FMAs instead of Horner's 8: the loops are bound by
  // the latency of this chain, not by the FMA units; see benchmarks/RESULTS.md).
  const F z = V::mul(f, f);
  const F z2 = V::mul(z, z);
  const F a0 = V::fma(V::set1(-2.4999993993e-1f), f, V::set1(3.3333331174e-1f));
  const F a1 = V::fma(V::set1(-1.6668057665e-1f), f, V::set1(2.0000714765e-1f));
  const F a2 = V::fma(V::set1(-1.2420140846e-1f), f, V::set1(1.4249322787e-1f));
  const F a3 = V::fma(V::set1(-1.1514610310e-1f), f, V::set1(1.1676998740e-1f));
  const F b0 = V::fma(a1, z, a0);
  const F b1 = V::fma(a3, z, a2);
  const F p = V::fma(V::fma(V::set1(7.0376836292e-2f), z2, b1), z2, b0);
  // The terms that do not wait for p: -f^2 / 2 + k ln2_lo (a -0 where all are zero).
  const F rest = V::fma(V::set1(-0.5f), z, V::mul(ne, V::set1(-kLn2Lo)));
  const F y = V::fma(V::mul(f, z), p, rest);
  return V::fma(ne, V::set1(-kLn2Hi), V::add(f, y));
}

template <class V>
struct Math {
  using F = typename V::F;
  using M = typename V::M;

  static F log01(F x) {
    return log_core<V, false>(V::fma(x, V::set1(kTwo24), V::zero()), V::zero());
  }

  static F log1m(F x) {
    const F u = V::sub(V::set1(1.0f), x);
    const F cn = V::sub(x, V::sub(V::set1(1.0f), u));  // exact: 1 - x = u - cn
    return log_core<V, true>(V::mul(u, V::set1(kTwo24)), cn);
  }

  struct LogPair {
    F log_x, log1m_x;
  };
  static LogPair log_pair(F x, F lo) { return {V::max(lo, log01(x)), V::max(lo, log1m(x))}; }

  static F log_select(F x, M use_x) {
    const F one = V::set1(1.0f);
    const F two24 = V::set1(kTwo24);
    const F u = V::sub(one, x);
    const F cn = V::sub(x, V::sub(one, u));
    const F s = V::blend(use_x, V::mul(u, two24), V::fma(x, two24, V::zero()));
    // cn = -0 where x itself is taken makes the log1p-style f the plain m - 1 (so log(1) = +0).
    return log_core<V, true>(s, V::blend(use_x, cn, V::set1(-0.0f)));
  }

  static F log_any(F q) {
    const F zero = V::zero();
    const F r = log_core<V, false>(V::fma(q, V::set1(kTwo24), zero), zero);
    // Where q is not a finite positive number: -inf at zero, q itself at +inf and NaN, else NaN.
    const F special =
        V::blend(V::eq(q, zero), V::blend(V::ge(q, zero), V::set1(__builtin_nanf("")), q),
                 V::set1(-__builtin_inff()));
    const M finite_pos = V::mand(V::gt(q, zero), V::gt(V::set1(__builtin_inff()), q));
    return V::blend(finite_pos, special, r);
  }

  static F exp(F y) {
    // NaN stays NaN: max and min return their second operand when either is NaN.
    y = V::max(V::set1(kExpMin), V::min(V::set1(kExpMax), y));
    // y = n ln2 + r, |r| <= ln2 / 2; n in [-150, 128].
    const typename V::I n = V::cvt_round(V::mul(y, V::set1(kLog2e)));
    const F nf = V::cvt(n);
    const F r = V::fma(nf, V::set1(-kExpC2), V::fma(nf, V::set1(-kExpC1), y));
    // Cephes expf: exp(r) = 1 + r + r^2 P(r), P of degree 5.
    F p = V::set1(1.9875691500e-4f);
    p = V::fma(p, r, V::set1(1.3981999507e-3f));
    p = V::fma(p, r, V::set1(8.3334519073e-3f));
    p = V::fma(p, r, V::set1(4.1665795894e-2f));
    p = V::fma(p, r, V::set1(1.6666665459e-1f));
    p = V::fma(p, r, V::set1(5.0000001201e-1f));
    const F e = V::add(V::fma(V::mul(r, r), p, r), V::set1(1.0f));
    // 2^n as two factors, each a normal float for n in [-150, 128] (2^n alone is not below -126).
    const typename V::I n1 = V::srai1(n);
    const typename V::I bias = V::set1i(kExponentBias);
    const F s1 = V::as_f(V::slli23(V::add_i(n1, bias)));
    const F s2 = V::as_f(V::slli23(V::add_i(V::sub_i(n, n1), bias)));
    return V::mul(V::mul(e, s1), s2);
  }

  static F log1p01(F e) {
    // u = 1 + e rounded; 1 + e = u - cn exactly (Fast2Sum: |1| >= |e|).
    const F one = V::set1(1.0f);
    const F u = V::add(one, e);
    const F cn = V::sub(V::sub(u, one), e);
    return log_core<V, true>(V::mul(u, V::set1(kTwo24)), cn);
  }

  static F inv_one_plus(F e) {
    const F one = V::set1(1.0f);
    return V::div(one, V::add(one, e));
  }

  static F sigmoid(F x) {
    const F e = exp(V::neg(V::abs(x)));
    const F one = V::set1(1.0f);
    return V::div(V::blend(V::ge(x, V::zero()), e, one), V::add(one, e));
  }
};

}  // namespace vec_math
}  // namespace
}  // namespace bce_ext::cpu
