#pragma once
// vec_math_f64::Math<V>: the elementary functions of the loss formulas over a double vector backend
// V (avx2_double_backend.h, avx512_double_backend.h), within about 1 ulp (tests/test_cpu_math.py
// sweeps them). Same functions, domains and signs of zero as vec_math.h's float Math, which lists
// them; the differences: log01(0) is -1075 ln 2 (< -100, so the forward's clamp still gives -100),
// exp(y) is 0 below -746 and +inf above 710.
//
//   log: fdlibm's e_log.c: s = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)),
//        log(1 + f) = f - f^2 / 2 + z (f^2 / 2 + R(z^2)),  z = f / (2 + f),
//        R of degree 7 in z^2 (fdlibm's Lg1..Lg7), evaluated by Estrin's scheme.
//   exp: Sleef's expd (u10): y = n ln 2 + r, exp(r) = 1 + r (1 + r Q(r)) on |r| <= ln 2 / 2, Q of
//        degree 10 (Sleef's coefficients), Estrin again; 2^n as two factors.
// No tables and no instruction that one of the instruction sets lacks (64-bit integers become
// doubles through the bits of 2^52 + e), so the AVX2 and AVX-512 loops run the same operations and
// give bitwise the same results.
//
// Included by one file per instruction set after its double backend; everything is in an anonymous
// namespace. No standard library header.

namespace bce_ext::cpu {
namespace {
namespace vec_math_f64 {

constexpr int64_t kExponentBias = 1023;
constexpr int64_t kOneBits = 0x3ff0000000000000;
constexpr int64_t kMantissaMask = 0x000fffffffffffff;
constexpr int64_t kExponentMask = int64_t(0xfff0000000000000u);
// The reduction of log_core: m in [sqrt(1/2), sqrt(2)), whose bits start at those of sqrt(1/2)
// (rounded to nearest).
constexpr int64_t kSqrtHalfBits = 0x3fe6a09e667f3bcd;
// bits(s) + kReduceOffset = bits(s) - kSqrtHalfBits + (1023 << 52): exponent field k + 1023 (+ the
// input scaling), never negative for s >= 0, and the low 52 bits of m.
constexpr int64_t kReduceOffset = kOneBits - kSqrtHalfBits;
// Inputs of log_core are scaled by 2^52 first, so that subnormal inputs become normal.
constexpr int64_t kScaleExp = 52;
constexpr double kTwo52 = 4503599627370496.0;
// The double whose bits are kTwo52Bits + e is 2^52 + e, for integers 0 <= e < 2^52.
constexpr int64_t kTwo52Bits = 0x4330000000000000;
// -k = kNegKBias - (2^52 + exponent field) for scaled inputs; the bias without the scaling for
// log_any's unscaled lanes.
constexpr double kNegKBias = kTwo52 + double(kExponentBias + kScaleExp);
constexpr double kNegKBiasUnscaled = kTwo52 + double(kExponentBias);
// 2^-k for a scaled input: (2 * 1023 + kScaleExp - exponent field) << 52.
constexpr int64_t kInvScaleBits = int64_t(uint64_t(2 * kExponentBias + kScaleExp) << 52);
constexpr double kMinNormal = 2.2250738585072014e-308;  // DBL_MIN, 2^-1022
// fdlibm e_log.c: ln 2 = kLn2Hi + kLn2Lo, kLn2Hi with 32 significant bits (k * kLn2Hi exact), and
// the coefficients of R.
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 3fe62e42 fee00000
constexpr double kLn2Lo = 1.90821492927058770002e-10;  // 3dea39ef 35793c76
constexpr double kLg1 = 6.666666666666735130e-01;      // 3FE55555 55555593
constexpr double kLg2 = 3.999999999940941908e-01;      // 3FD99999 9997FA04
constexpr double kLg3 = 2.857142874366239149e-01;      // 3FD24924 94229359
constexpr double kLg4 = 2.222219843214978396e-01;      // 3FCC71C5 1D8E78AF
constexpr double kLg5 = 1.818357216161805012e-01;      // 3FC74664 96CB03DE
constexpr double kLg6 = 1.531383769920937332e-01;      // 3FC39A09 D078C69F
constexpr double kLg7 = 1.479819860511658591e-01;      // 3FC2F112 DF3E5244
// Sleef's expd (u10): 1 / ln 2, its split of ln 2 (kExpL2U + kExpL2L), and Q's coefficients of r^1
// to r^10 (Q(0) = 1/2).
constexpr double kLog2e = 1.442695040888963407359924681001892137426645954152985934135449406931;
constexpr double kExpL2U = .69314718055966295651160180568695068359375;
constexpr double kExpL2L = .28235290563031577122588448175013436025525412068e-12;
constexpr double kExpQ1 = 0.1666666666666669072e+0;
constexpr double kExpQ2 = 0.4166666666666602598e-1;
constexpr double kExpQ3 = 0.8333333333314938210e-2;
constexpr double kExpQ4 = 0.1388888888914497797e-2;
constexpr double kExpQ5 = 0.1984126989855865850e-3;
constexpr double kExpQ6 = 0.2480158687479686264e-4;
constexpr double kExpQ7 = 0.2755723402025388239e-5;
constexpr double kExpQ8 = 0.2755762628169491192e-6;
constexpr double kExpQ9 = 0.2511210703042288022e-7;
constexpr double kExpQ10 = 0.2081276378237164457e-8;
// exp(-746) < 2^-1075 (half the smallest subnormal) rounds to 0; exp(710) > DBL_MAX is +inf. In
// between n = round(y / ln 2) lies in [-1077, 1025].
constexpr double kExpMin = -746.0;
constexpr double kExpMax = 710.0;
// Adding 1.5 * 2^52 rounds to an integer (to nearest even), which the low bits then hold.
constexpr double kRoundMagic = 6755399441055744.0;

// log(v) for v = s * 2^-52 - cn, s >= 0 finite (s = u * 2^52 computed by the caller, +0 for zero)
// and cn = -(rounding error of u) when u = 1 - x or 1 + e (kWithC); ne_bias is kNegKBias, or
// kNegKBiasUnscaled in lanes the caller did not scale. Returns -1075 ln 2 for v = 0; garbage for
// negative, NaN or infinite s. The signs of zeros follow vec_math.h's log_core (the same
// argument): f carries the sign of the result, and every later term is a zero of that sign or -0.
// kCarry: f = m - 1 - cn 2^-k may not be a double (u = 1 + e, e in [sqrt(2) - 1, 1/2), k = 1: f =
// (e - 1) / 2 needs one bit more than e has): its rounding error d is carried, as d / (1 + f)
// ~ d (2 - m) (within (m - 1)^2 < 0.09 relative). Without it log1p01 was 1.42 ulp off there.
template <class V, bool kWithC, bool kCarry = false>
inline typename V::F log_core(typename V::F s, typename V::F cn, typename V::F ne_bias) {
  using F = typename V::F;
  using I = typename V::I;
  const I tmp = V::add_i(V::as_i(s), V::set1i(kReduceOffset));
  const F m = V::as_f(V::add_i(V::and_i(tmp, V::set1i(kMantissaMask)), V::set1i(kSqrtHalfBits)));
  // -k, exact: ne_bias - (2^52 + exponent field).
  const F ne = V::sub(ne_bias, V::as_f(V::add_i(V::srli52(tmp), V::set1i(kTwo52Bits))));
  F f;
  F f_err = V::zero();  // kCarry: the rounding error of f
  if constexpr (kWithC) {
    // The true m is m - cn * 2^-k (k is -1 or 0 where cn is not 0 for 1 - x, 0 or 1 for 1 + e).
    const F scale =
        V::as_f(V::sub_i(V::set1i(kInvScaleBits), V::and_i(tmp, V::set1i(kExponentMask))));
    const F one_minus_m = V::sub(V::set1(1.0), m);
    f = V::fnmsub(cn, scale, one_minus_m);
    // Fast2Sum (|1 - m| >= |cn 2^-k|): f + (1 - m) is exact, and so is the rest.
    if constexpr (kCarry) f_err = V::fnmsub(cn, scale, V::add(f, one_minus_m));
  } else {
    f = V::sub(m, V::set1(1.0));  // exact (Sterbenz)
  }
  const F z = V::div(f, V::add(V::set1(2.0), f));
  const F z2 = V::mul(z, z);
  const F z4 = V::mul(z2, z2);
  const F z8 = V::mul(z4, z4);
  // R = z2 (Lg1 + Lg2 z2 + ... + Lg7 z2^6): pairs, then pairs of pairs, 4 dependent steps.
  const F a0 = V::fma(V::set1(kLg2), z2, V::set1(kLg1));
  const F a1 = V::fma(V::set1(kLg4), z2, V::set1(kLg3));
  const F a2 = V::fma(V::set1(kLg6), z2, V::set1(kLg5));
  const F b0 = V::fma(a1, z4, a0);
  const F b1 = V::fma(V::set1(kLg7), z4, a2);
  const F r = V::mul(z2, V::fma(b1, z8, b0));
  // -f^2 / 2 (exact scaling) and -k ln2_lo, added first: a -0 where all are zero.
  const F nhfsq = V::mul(V::mul(f, f), V::set1(-0.5));
  F rest = V::fma(ne, V::set1(-kLn2Lo), nhfsq);
  if constexpr (kCarry) rest = V::fma(f_err, V::sub(V::set1(2.0), m), rest);
  const F y = V::fma(z, V::sub(r, nhfsq), rest);
  return V::fma(ne, V::set1(-kLn2Hi), V::add(f, y));
}

template <class V>
struct Math {
  using F = typename V::F;
  using M = typename V::M;

  static F log01(F x) {
    // fma(x, 2^52, +0) turns -0 into +0 (the scaled bits of -0 would be garbage).
    return log_core<V, false>(V::fma(x, V::set1(kTwo52), V::zero()), V::zero(), V::set1(kNegKBias));
  }

  static F log1m(F x) {
    const F u = V::sub(V::set1(1.0), x);
    const F cn = V::sub(x, V::sub(V::set1(1.0), u));  // exact: 1 - x = u - cn
    return log_core<V, true>(V::mul(u, V::set1(kTwo52)), cn, V::set1(kNegKBias));
  }

  struct LogPair {
    F log_x, log1m_x;
  };
  static LogPair log_pair(F x, F lo) { return {V::max(lo, log01(x)), V::max(lo, log1m(x))}; }

  static F log_select(F x, M use_x) {
    const F one = V::set1(1.0);
    const F two52 = V::set1(kTwo52);
    const F u = V::sub(one, x);
    const F cn = V::sub(x, V::sub(one, u));
    const F s = V::blend(use_x, V::mul(u, two52), V::fma(x, two52, V::zero()));
    // cn = -0 where x itself is taken makes f the plain m - 1 (so log(1) = +0).
    return log_core<V, true>(s, V::blend(use_x, cn, V::set1(-0.0)), V::set1(kNegKBias));
  }

  static F log_any(F q) {
    const F zero = V::zero();
    // Only subnormal q are scaled: 2^52 q overflows for q above 2^971.
    const M tiny = V::gt(V::set1(kMinNormal), q);
    const F s = V::mul(q, V::blend(tiny, V::set1(1.0), V::set1(kTwo52)));
    const F r =
        log_core<V, false>(s, zero, V::blend(tiny, V::set1(kNegKBiasUnscaled), V::set1(kNegKBias)));
    // Where q is not a finite positive number: -inf at zero, q itself at +inf and NaN, else NaN.
    const F special =
        V::blend(V::eq(q, zero), V::blend(V::ge(q, zero), V::set1(__builtin_nan("")), q),
                 V::set1(-__builtin_inf()));
    const M finite_pos = V::mand(V::gt(q, zero), V::gt(V::set1(__builtin_inf()), q));
    return V::blend(finite_pos, special, r);
  }

  static F exp(F y) {
    using I = typename V::I;
    // NaN stays NaN: max and min return their second operand when either is NaN.
    y = V::max(V::set1(kExpMin), V::min(V::set1(kExpMax), y));
    const F magic = V::set1(kRoundMagic);
    const F t = V::fma(y, V::set1(kLog2e), magic);  // n = round(y / ln 2) in the low bits
    const F nf = V::sub(t, magic);
    const F r = V::fma(nf, V::set1(-kExpL2L), V::fma(nf, V::set1(-kExpL2U), y));
    // Q(r) = 1/2 + kExpQ1 r + ... + kExpQ10 r^10 by Estrin's scheme (5 dependent steps).
    const F r2 = V::mul(r, r);
    const F r4 = V::mul(r2, r2);
    const F r8 = V::mul(r4, r4);
    const F p01 = V::fma(V::set1(kExpQ1), r, V::set1(0.5));
    const F p23 = V::fma(V::set1(kExpQ3), r, V::set1(kExpQ2));
    const F p45 = V::fma(V::set1(kExpQ5), r, V::set1(kExpQ4));
    const F p67 = V::fma(V::set1(kExpQ7), r, V::set1(kExpQ6));
    const F p89 = V::fma(V::set1(kExpQ9), r, V::set1(kExpQ8));
    const F q03 = V::fma(p23, r2, p01);
    const F q47 = V::fma(p67, r2, p45);
    const F q810 = V::fma(V::set1(kExpQ10), r2, p89);
    const F q = V::fma(q810, r8, V::fma(q47, r4, q03));
    // Sleef's order: 1 + r (1 + r Q), the last rounding that of an FMA with the exact 1 (1 + (r +
    // r^2 Q) rounds twice: 0.997 ulp against 0.7 at most over a sweep).
    const F one = V::set1(1.0);
    const F e = V::fma(V::fma(q, r, one), r, one);
    // 2^n as 2^n1 2^(n - n1), n1 = n / 2 rounded: both normal doubles for n in [-1077, 1025].
    const F t1 = V::fma(nf, V::set1(0.5), magic);
    const I bias = V::set1i(kExponentBias);
    const F s1 = V::as_f(V::slli52(V::add_i(V::as_i(t1), bias)));
    const F s2 = V::as_f(V::slli52(V::add_i(V::sub_i(V::as_i(t), V::as_i(t1)), bias)));
    return V::mul(V::mul(e, s1), s2);
  }

  static F log1p01(F e) {
    // u = 1 + e rounded; 1 + e = u - cn exactly (Fast2Sum: |1| >= |e|).
    const F one = V::set1(1.0);
    const F u = V::add(one, e);
    const F cn = V::sub(V::sub(u, one), e);
    return log_core<V, true, true>(V::mul(u, V::set1(kTwo52)), cn, V::set1(kNegKBias));
  }

  static F inv_one_plus(F e) {
    const F one = V::set1(1.0);
    return V::div(one, V::add(one, e));
  }

  static F sigmoid(F x) {
    const F e = exp(V::neg(V::abs(x)));
    const F one = V::set1(1.0);
    return V::div(V::blend(V::ge(x, V::zero()), e, one), V::add(one, e));
  }
};

}  // namespace vec_math_f64
}  // namespace
}  // namespace bce_ext::cpu
