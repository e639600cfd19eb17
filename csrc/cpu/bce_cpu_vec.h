#pragma once
// Width-generic vectorised float32 inner loops (see bce_cpu_loops.h for the formulas).
//
// Included by one file per instruction set (bce_cpu_avx2.cpp, bce_cpu_avx512.cpp), each compiled
// with its own `#pragma GCC target`, after that file has defined its backend `V` (the vector types
// and a few dozen one-instruction wrappers). Everything here lives in an anonymous namespace, so
// each of those files gets its own copy, compiled for its own target: nothing is shared with the
// rest of the build (no ODR clash between the AVX2, AVX-512 and portable code). No standard
// library header is included for the same reason.
//
// Semantics, element by element, as the scalar reference (bce_cpu_scalar.cpp):
//   loss = (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100)      (same operation order)
//   gi   = g * (x - t) / max((1 - x) * x, 1e-12) * w / d                 (bitwise equal: no log)
//   gt   = -log(x / (1 - x)) * g * w / d, +inf at x == 1                 (within the log's ulps)
// The logs are ours (log_core below, Cephes-style reduction and polynomial), within about 1 ulp
// of the correctly rounded result; log1p(-x) is exact in its argument for every float x in [0, 1].
// The backend files turn floating-point contraction off: a * b - c * d must not become an FMA,
// or the loss would differ from the scalar reference by more than the logs do.
//
// forward_sum adds the losses in 16 float lanes for kSumIters rounds (each lane sums kSumIters
// elements), then adds the block into 16 double lanes; the order is a fixed function of the run (no
// alignment peeling), the same for AVX2 and AVX-512, so results are bitwise reproducible.
// Blocks whose targets are all 0 or 1 (checked first, block by block) take one log per element.
//
// Required of V (F float vector, I int32 vector, M lane mask):
//   kLanes; zero() set1(float) set1i(int32) load(p) load_n(p, M) store(p, F) store_n(p, F, M)
//   tail_mask(n) (the first n lanes, 0 <= n <= kLanes) add sub mul div fma(a, b, c) = a * b + c,
//   fnmsub(a, b, c) = -(a * b) - c, max(a, b) (b when either is NaN),
//   eq ge gt (ordered) mand mor mandnot(a, b) = a & ~b, all(M), blend(M m, a, b) = m ? b : a,
//   zero_unless(M, F), fxor fand, as_i as_f add_i sub_i and_i srai23 max_u32 cvt(I),
//   any_above_u(I, uint32 limit), DAcc dzero() dadd(DAcc&, F) dstore(DAcc, double[kLanes]).

namespace bce_ext::cpu {
namespace {
namespace vec {

constexpr int32_t kOneBits = 0x3f800000;
// The reduction of log_core: m in [sqrt(1/2), sqrt(2)), whose bits start at those of sqrt(1/2).
constexpr int32_t kSqrtHalfBits = 0x3f3504f3;
// Inputs of log_core are scaled by 2^24 first, so that subnormal inputs become normal.
constexpr float kTwo24 = 16777216.0f;
constexpr int32_t kScaledOneBits = 0x4b800000;  // bits of 1 * 2^24: larger bits mean x > 1 or NaN
constexpr int32_t kScaleBias = kSqrtHalfBits + (24 << 23);
// ln 2 = kLn2Hi + kLn2Lo, kLn2Hi with 15 significant bits so that k * kLn2Hi is exact for
// |k| <= 256 (Cephes' C1, C2 of its double-precision log). Both are positive: see log_core.
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.428606765330187045e-6f;
// Vectors per block of forward_sum (each lane adds this many float losses before double).
constexpr int kSumIters = tuning::kSumIters;

enum WeightKind { kNoWeight = 0, kBroadcastWeight = 1, kElementWeight = 2 };

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
    const F scale = V::as_f(V::sub_i(V::set1i(kOneBits), V::and_i(tmp, V::set1i(int32_t(0xff800000u)))));
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

// log(q) for any float q, as std::log: -inf at 0, NaN below 0 or at NaN, +inf at +inf.
template <class V>
inline typename V::F log_any(typename V::F q) {
  using F = typename V::F;
  const F zero = V::zero();
  const F r = log_core<V, false>(V::fma(q, V::set1(kTwo24), zero), zero);
  // Where q is not a finite positive number: -inf at zero, q itself at +inf and NaN, else NaN.
  const F special = V::blend(V::eq(q, zero), V::blend(V::ge(q, zero), V::set1(__builtin_nanf("")), q),
                             V::set1(-__builtin_inff()));
  const typename V::M finite_pos = V::mand(V::gt(q, zero), V::gt(V::set1(__builtin_inff()), q));
  return V::blend(finite_pos, special, r);
}

// Accumulators of the range check: the largest bits (unsigned) of x * 2^24 and of t + 0 seen.
template <class V>
struct RangeAcc {
  typename V::I x;
  typename V::I t;
};

// Element losses of one vector (before weighting). Records x * 2^24 and t in `acc` for the range
// check: for a float v, v + 0 lies in [+0, 1] exactly when its bits, unsigned, are at most those
// of 1 (NaN, negatives and values above 1 have larger bits; -0 + 0 is +0).
// kHard: the caller checked that every t is 0 or 1 (so in range): one log per element, the one that
// t keeps. (t - 1) * L1 - t * L0 is then -0 - L0 for t = 1 and t - L1 for t = +-0, bitwise the
// soft formula's result.
template <class V, bool kHard>
inline typename V::F element_loss(typename V::F x, typename V::F t, RangeAcc<V>& acc) {
  using F = typename V::F;
  const F zero = V::zero();
  const F one = V::set1(1.0f);
  const F two24 = V::set1(kTwo24);
  const F clamp = V::set1(kLogClamp);
  const F sx = V::fma(x, two24, zero);  // exact; -0 becomes +0
  const F u = V::sub(one, x);
  const F cn = V::sub(x, V::sub(one, u));  // exact: 1 - x = u - cn
  acc.x = V::max_u32(acc.x, V::as_i(sx));
  if constexpr (kHard) {
    const typename V::M t_one = V::eq(t, one);
    const F s = V::blend(t_one, V::mul(u, two24), sx);
    // cn = -0 where t is 1 makes the log1p-style f the plain m - 1 (so log(1) = +0).
    const F cc = V::blend(t_one, cn, V::set1(-0.0f));
    const F l = V::max(clamp, log_core<V, true>(s, cc));
    // t (+0 or -0) where t is 0, -0 where t is 1: the scalar formula's zero terms, bitwise.
    return V::sub(V::blend(t_one, t, V::set1(-0.0f)), l);
  } else {
    acc.t = V::max_u32(acc.t, V::as_i(V::add(t, zero)));
    const F l0 = V::max(clamp, log_core<V, false>(sx, zero));
    const F l1 = V::max(clamp, log_core<V, true>(V::mul(u, two24), cn));
    return V::sub(V::mul(V::sub(t, one), l1), V::mul(t, l0));
  }
}

// Whether each of the n <= kBlock targets from t is 0 or 1 (stops at the first that is not).
template <class V>
inline bool all_hard(const float* t, int64_t n) {
  constexpr int L = V::kLanes;
  const typename V::F zero = V::zero();
  const typename V::F one = V::set1(1.0f);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const typename V::F tv = V::load(t + i);
    if (!V::all(V::mor(V::eq(tv, zero), V::eq(tv, one)))) return false;
  }
  if (i < n) {
    const typename V::F tv = V::load_n(t + i, V::tail_mask(int(n - i)));  // zeros past the end
    if (!V::all(V::mor(V::eq(tv, zero), V::eq(tv, one)))) return false;
  }
  return true;
}

template <class V>
inline bool range_bad(const RangeAcc<V>& acc) {
  return V::any_above_u(acc.x, uint32_t(kScaledOneBits)) || V::any_above_u(acc.t, uint32_t(kOneBits));
}

// One vector of losses, weighted; `m` masks the tail (kTail), whose lanes come out +0.
template <class V, int kW, bool kHard, bool kTail>
inline typename V::F weighted_loss(const float* x, const float* t, const float* w,
                                   typename V::F wb, typename V::M m, RangeAcc<V>& acc) {
  using F = typename V::F;
  F l;
  if constexpr (kTail) {
    // Masked loads read zeros there (x = t = 0 is in range); their losses are dropped.
    l = element_loss<V, kHard>(V::load_n(x, m), V::load_n(t, m), acc);
  } else {
    l = element_loss<V, kHard>(V::load(x), V::load(t), acc);
  }
  if constexpr (kW == kBroadcastWeight) l = V::mul(l, wb);
  if constexpr (kW == kElementWeight) l = V::mul(l, kTail ? V::load_n(w, m) : V::load(w));
  if constexpr (kTail) l = V::zero_unless(m, l);
  return l;
}

// The sum runs over kSumLanes virtual lanes whatever the vector width (AVX2 handles them as two
// vectors, AVX-512 as one), so both give bitwise the same sum of the same run: element i goes to
// lane i % kSumLanes; each lane adds the kSumIters elements it gets from one block of kBlock in
// float, then into its double; the 16 doubles are added in a fixed tree at the end.
constexpr int kSumLanes = tuning::kSumLanes;
// Elements per block: the unit of the float partial sums and of the hard-label decision (a block
// whose targets are all 0 or 1 takes one log per element; the result is bitwise the same).
constexpr int64_t kBlock = tuning::kVecBlock;

template <class V>
struct SumAcc {
  typename V::DAcc total[kSumLanes / V::kLanes];
};

// Adds the losses of one block of n <= kBlock elements into acc (n < kBlock only at the run's end).
template <class V, int kW, bool kHard>
inline void sum_block(const float* x, const float* t, const float* w, typename V::F wb, int64_t n,
                      SumAcc<V>& acc, RangeAcc<V>& range) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  constexpr int U = kSumLanes / L;
  const typename V::M full = V::tail_mask(L);
  F block[U];
  for (int u = 0; u < U; ++u) block[u] = V::zero();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int u = 0; u < U; ++u) {
      const int64_t k = i + u * L;
      block[u] = V::add(block[u], weighted_loss<V, kW, kHard, false>(
                                      x + k, t + k, w ? w + k : nullptr, wb, full, range));
    }
  }
  for (int u = 0; u < U; ++u) {
    const int64_t k = i + u * L;
    if (k < n) {
      const int r = n - k < L ? int(n - k) : L;
      block[u] = V::add(block[u], weighted_loss<V, kW, kHard, true>(
                                      x + k, t + k, w ? w + k : nullptr, wb, V::tail_mask(r), range));
    }
    V::dadd(acc.total[u], block[u]);
  }
}

template <class V, int kW, bool kHardPath>
double forward_sum_run(const float* x, const float* t, const float* w, int64_t n, bool* bad) {
  constexpr int L = V::kLanes;
  static_assert(kSumLanes % L == 0, "vector width must divide kSumLanes");
  RangeAcc<V> range{V::set1i(0), V::set1i(0)};
  const typename V::F wb = kW == kBroadcastWeight ? V::set1(*w) : V::zero();
  SumAcc<V> acc;
  for (auto& d : acc.total) d = V::dzero();
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t len = n - i < kBlock ? n - i : kBlock;
    const float* wi = kW == kElementWeight ? w + i : nullptr;
    if (kHardPath && all_hard<V>(t + i, len)) {
      sum_block<V, kW, true>(x + i, t + i, wi, wb, len, acc, range);
    } else {
      sum_block<V, kW, false>(x + i, t + i, wi, wb, len, acc, range);
    }
  }
  if (range_bad(range)) *bad = true;
  double lanes[kSumLanes];
  for (int u = 0; u < kSumLanes / L; ++u) V::dstore(acc.total[u], lanes + u * L);
  for (int step = 1; step < kSumLanes; step *= 2) {
    for (int j = 0; j < kSumLanes; j += 2 * step) lanes[j] += lanes[j + step];
  }
  return lanes[0];
}

template <class V, int kW, bool kHard>
inline void none_block(const float* x, const float* t, const float* w, typename V::F wb,
                       float* out, int64_t n, RangeAcc<V>& range) {
  constexpr int L = V::kLanes;
  const typename V::M full = V::tail_mask(L);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    V::store(out + i, weighted_loss<V, kW, kHard, false>(x + i, t + i, w ? w + i : nullptr, wb,
                                                         full, range));
  }
  if (i < n) {
    const typename V::M m = V::tail_mask(int(n - i));
    V::store_n(out + i,
               weighted_loss<V, kW, kHard, true>(x + i, t + i, w ? w + i : nullptr, wb, m, range),
               m);
  }
}

template <class V, int kW, bool kHardPath>
void forward_none_run(const float* x, const float* t, const float* w, float* out, int64_t n,
                      bool* bad) {
  RangeAcc<V> range{V::set1i(0), V::set1i(0)};
  const typename V::F wb = kW == kBroadcastWeight ? V::set1(*w) : V::zero();
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t len = n - i < kBlock ? n - i : kBlock;
    const float* wi = kW == kElementWeight ? w + i : nullptr;
    if (kHardPath && all_hard<V>(t + i, len)) {
      none_block<V, kW, true>(x + i, t + i, wi, wb, out + i, len, range);
    } else {
      none_block<V, kW, false>(x + i, t + i, wi, wb, out + i, len, range);
    }
  }
  if (range_bad(range)) *bad = true;
}

// One vector of the backward; `m` masks the tail (loads and stores of all lanes when kTail is
// false). Same operations in the same order as the scalar loop, so gi is bitwise equal to it.
template <class V, int kW, bool kGradBroadcast, bool kGI, bool kGT, bool kDivide, bool kTail>
inline void backward_vector(const float* g, typename V::F gb, const float* x, const float* t,
                            const float* w, typename V::F wb, typename V::F dv, float* gi,
                            float* gt, typename V::M m) {
  using F = typename V::F;
  auto load = [&](const float* p) { if constexpr (kTail) return V::load_n(p, m); else return V::load(p); };
  auto store = [&](float* p, F v) { if constexpr (kTail) V::store_n(p, v, m); else V::store(p, v); };
  const F one = V::set1(1.0f);
  const F xv = load(x);
  F gv;
  if constexpr (kGradBroadcast) gv = gb; else gv = load(g);
  F wv;
  if constexpr (kW == kBroadcastWeight) wv = wb;
  if constexpr (kW == kElementWeight) wv = load(w);
  if constexpr (kGI) {
    const F denom = V::mul(V::sub(one, xv), xv);
    // max(eps, denom) is eps where denom < eps, else denom (NaN included), as the scalar ternary.
    F v = V::div(V::mul(gv, V::sub(xv, load(t))), V::max(V::set1(kGradEpsilon), denom));
    if constexpr (kW != kNoWeight) v = V::mul(v, wv);
    if constexpr (kDivide) v = V::div(v, dv);
    store(gi, v);
  }
  if constexpr (kGT) {
    F logit = log_any<V>(V::div(xv, V::sub(one, xv)));
    logit = V::blend(V::eq(xv, one), logit, V::set1(__builtin_inff()));
    F v = V::mul(V::fxor(logit, V::set1(-0.0f)), gv);
    if constexpr (kW != kNoWeight) v = V::mul(v, wv);
    if constexpr (kDivide) v = V::div(v, dv);
    store(gt, v);
  }
}

template <class V, int kW, bool kGradBroadcast, bool kGI, bool kGT, bool kDivide>
void backward_run(const float* g, const float* x, const float* t, const float* w, float divisor,
                  float* gi, float* gt, int64_t n) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  const F gb = kGradBroadcast ? V::set1(*g) : V::zero();
  const F wb = kW == kBroadcastWeight ? V::set1(*w) : V::zero();
  const F dv = V::set1(divisor);
  const typename V::M all = V::tail_mask(L);  // unused by the full vectors
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    backward_vector<V, kW, kGradBroadcast, kGI, kGT, kDivide, false>(
        g + (kGradBroadcast ? 0 : i), gb, x + i, t + i, w + (kW == kElementWeight ? i : 0), wb, dv,
        gi + (kGI ? i : 0), gt + (kGT ? i : 0), all);
  }
  if (i < n) {
    backward_vector<V, kW, kGradBroadcast, kGI, kGT, kDivide, true>(
        g + (kGradBroadcast ? 0 : i), gb, x + i, t + i, w + (kW == kElementWeight ? i : 0), wb, dv,
        gi + (kGI ? i : 0), gt + (kGT ? i : 0), V::tail_mask(int(n - i)));
  }
}

// --- Entry points with the Loops<float> signatures: choose the template instance per run. ---

template <class V, bool kHardPath>
double forward_sum(const float* x, const float* t, Operand<float> w, int64_t n, bool* bad) {
  if (!w.ptr) return forward_sum_run<V, kNoWeight, kHardPath>(x, t, nullptr, n, bad);
  if (w.stride == 0) return forward_sum_run<V, kBroadcastWeight, kHardPath>(x, t, w.ptr, n, bad);
  return forward_sum_run<V, kElementWeight, kHardPath>(x, t, w.ptr, n, bad);
}

template <class V, bool kHardPath>
void forward_none(const float* x, const float* t, Operand<float> w, float* out, int64_t n,
                  bool* bad) {
  if (!w.ptr) return forward_none_run<V, kNoWeight, kHardPath>(x, t, nullptr, out, n, bad);
  if (w.stride == 0) return forward_none_run<V, kBroadcastWeight, kHardPath>(x, t, w.ptr, out, n, bad);
  return forward_none_run<V, kElementWeight, kHardPath>(x, t, w.ptr, out, n, bad);
}

template <class V, int kW, bool kGB>
void backward_outputs(const float* g, const float* x, const float* t, const float* w, float d,
                      float* gi, float* gt, int64_t n) {
  // Dividing by 1 changes nothing (not even a NaN), so the division is skipped then.
  const bool divide = d != 1.0f;
  if (gi && gt) {
    if (divide) return backward_run<V, kW, kGB, true, true, true>(g, x, t, w, d, gi, gt, n);
    return backward_run<V, kW, kGB, true, true, false>(g, x, t, w, d, gi, gt, n);
  }
  if (gi) {
    if (divide) return backward_run<V, kW, kGB, true, false, true>(g, x, t, w, d, gi, gt, n);
    return backward_run<V, kW, kGB, true, false, false>(g, x, t, w, d, gi, gt, n);
  }
  if (gt) {
    if (divide) return backward_run<V, kW, kGB, false, true, true>(g, x, t, w, d, gi, gt, n);
    return backward_run<V, kW, kGB, false, true, false>(g, x, t, w, d, gi, gt, n);
  }
}

template <class V, int kW>
void backward_grad(Operand<float> g, const float* x, const float* t, const float* w, float d,
                   float* gi, float* gt, int64_t n) {
  if (g.stride == 0) return backward_outputs<V, kW, true>(g.ptr, x, t, w, d, gi, gt, n);
  return backward_outputs<V, kW, false>(g.ptr, x, t, w, d, gi, gt, n);
}

template <class V>
void backward(Operand<float> g, const float* x, const float* t, Operand<float> w, float divisor,
              float* gi, float* gt, int64_t n) {
  if (!w.ptr) return backward_grad<V, kNoWeight>(g, x, t, nullptr, divisor, gi, gt, n);
  if (w.stride == 0) return backward_grad<V, kBroadcastWeight>(g, x, t, w.ptr, divisor, gi, gt, n);
  return backward_grad<V, kElementWeight>(g, x, t, w.ptr, divisor, gi, gt, n);
}

// Unclamped log(x), log1p(-x) (as the forward computes them) and log_any(x) (as the backward's
// grad_target does), for the accuracy measurements; x is read in whole vectors plus a tail.
template <class V>
void log_eval(const float* x, float* log_x, float* log1m_x, float* log_x_any, int64_t n) {
  using F = typename V::F;
  const F zero = V::zero();
  const F one = V::set1(1.0f);
  const F two24 = V::set1(kTwo24);
  for (int64_t i = 0; i < n; i += V::kLanes) {
    const typename V::M m = V::tail_mask(n - i < V::kLanes ? int(n - i) : V::kLanes);
    const F xv = V::load_n(x + i, m);
    const F u = V::sub(one, xv);
    const F cn = V::sub(xv, V::sub(one, u));
    V::store_n(log_x + i, log_core<V, false>(V::fma(xv, two24, zero), zero), m);
    V::store_n(log1m_x + i, log_core<V, true>(V::mul(u, two24), cn), m);
    V::store_n(log_x_any + i, log_any<V>(xv), m);
  }
}

}  // namespace vec
}  // namespace
}  // namespace bce_ext::cpu
