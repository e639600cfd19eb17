#pragma once
// The CPU inner loops (loops.h), generic over a backend V and a loss's element formulas E (csrc/
// losses/): one template for every loss, instruction set and element type. Included by one file
// per backend (loops_portable.cpp, loops_avx2.cpp, loops_avx512.cpp) after the backend and its
// Math; everything is in an anonymous namespace, so each file gets its own copy compiled for its own
// target. No standard library header.
//
// Required of V: T (the lane type), kLanes; F (lanes), M (lane mask), I (lane bits), DAcc (double
// accumulators); zero() set1(T) load(p) load_n(p, M) store(p, F) store_n(p, F, M) tail_mask(n)
// (the first n lanes) add sub mul div fma(a, b, c) = a * b + c, max(a, b) min(a, b) (b when either
// is NaN), abs neg eq ge gt (ordered) mand mor all(M) blend(M m, a, b) = m ? b : a,
// zero_unless(M, F), as_i(F) max_u32(I, I) any_above_u(I, limit), dzero() dadd(DAcc&, F)
// dstore(DAcc, double[kLanes]).
//
// Sums: forward_sum adds the losses in kSumLanes virtual lanes whatever the vector width (AVX2
// handles them as two vectors, AVX-512 as one, the portable loops as 16 scalars): element i goes to
// lane i % kSumLanes; each lane adds the kSumIters elements it gets from one block of kBlock in T,
// then into its double; the 16 doubles are added in a fixed tree at the end. The order is a fixed
// function of the run, the same for every backend of one type, so results are bitwise reproducible.
// Losses with a hard-label path (E::kHardPath) check each block's targets first: a block whose
// targets are all 0 or 1 takes E::loss_hard (bitwise the same result, fewer logs).
#include "../../bce_constants.h"
#include "../../losses/coefficients.h"
#include "../tuning.h"
#include "../loops.h"

namespace bce_ext::cpu {
namespace {
namespace loops {

constexpr int kSumLanes = tuning::kSumLanes;
constexpr int kSumIters = tuning::kSumIters;
constexpr int64_t kBlock = tuning::kVecBlock;
// Groups of kSumLanes elements whose losses the sum loops compute side by side: 2 took the
// forward_sum of the logits loss from 1.4 to 1.0 ns per element (AVX-512) and BCE's from 1.7 to
// 1.2 (AVX2); 4 gained nothing more (benchmarks/loops_bench.cpp, minimum of 9 rounds, this CPU).
constexpr int kGroups = 2;

// How a run reads a per-element table (weight, positive weight): absent, one value for the run, or
// one value per element.
enum Table { kAbsent = 0, kBroadcast = 1, kPerElement = 2 };

template <class V>
using F = typename V::F;
template <class V>
using T = typename V::T;

// The bits of 1 in the lane type: v + 0 lies in [+0, 1] exactly when its bits, unsigned, are at
// most these (NaN, negatives and values above 1 have larger bits; -0 + 0 is +0).
template <class V>
constexpr auto one_bits() {
  if constexpr (sizeof(T<V>) == 8) {
    return uint64_t{0x3ff0000000000000u};
  } else {
    return uint32_t{0x3f800000u};
  }
}

// Accumulators of the range check: the largest bits of x + 0 and of t + 0 seen.
template <class V>
struct RangeAcc {
  typename V::I x;
  typename V::I t;
};

template <class V>
inline void track_range(RangeAcc<V>& acc, F<V> x, F<V> t) {
  acc.x = V::max_u32(acc.x, V::as_i(V::add(x, V::zero())));
  acc.t = V::max_u32(acc.t, V::as_i(V::add(t, V::zero())));
}

template <class V>
inline bool range_bad(const RangeAcc<V>& acc) {
  return V::any_above_u(acc.x, one_bits<V>()) || V::any_above_u(acc.t, one_bits<V>());
}

// Label smoothing: t * (1 - s) + s / 2, or t itself (bitwise) without it.
template <class V>
struct Smoothing {
  bool on;
  F<V> keep;   // 1 - s
  F<V> shift;  // s / 2

  static Smoothing make(const LossParams& p) {
    const T<V> s = static_cast<T<V>>(p.label_smoothing);
    return {p.label_smoothing != 0.0, V::set1(T<V>(1) - s), V::set1(s * T<V>(0.5))};
  }
  F<V> apply(F<V> t) const { return on ? V::fma(t, keep, shift) : t; }
};

// The operands of a run as vectors: loaded per element, or set once for the run.
template <class V, int kTable>
inline F<V> table_value(const T<V>* p, F<V> broadcast, typename V::M m, bool tail) {
  if constexpr (kTable == kPerElement) return tail ? V::load_n(p, m) : V::load(p);
  if constexpr (kTable == kBroadcast) return broadcast;
  return V::zero();
}

template <class V>
inline F<V> broadcast_of(Operand<T<V>> o) {
  return o.ptr ? V::set1(*o.ptr) : V::zero();
}

// The formulas' scalar coefficients of a call, in the lane type.
template <class V>
inline losses::Coefficients<T<V>> coefficients(const LossParams& p) {
  return {static_cast<T<V>>(p.alpha), static_cast<T<V>>(p.gamma)};
}

// Whether each of the n <= kBlock targets from t is 0 or 1 (stops at the first that is not).
template <class V>
inline bool all_hard(const T<V>* t, int64_t n) {
  constexpr int L = V::kLanes;
  const F<V> zero = V::zero();
  const F<V> one = V::set1(T<V>(1));
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const F<V> tv = V::load(t + i);
    if (!V::all(V::mor(V::eq(tv, zero), V::eq(tv, one)))) return false;
  }
  if (i < n) {
    const F<V> tv = V::load_n(t + i, V::tail_mask(int(n - i)));  // zeros past the end
    if (!V::all(V::mor(V::eq(tv, zero), V::eq(tv, one)))) return false;
  }
  return true;
}

// The state of one forward run.
template <class V>
struct ForwardState {
  const Run<T<V>>& run;
  F<V> wb, pb;  // broadcast weight and positive weight
  Smoothing<V> smooth;
  losses::Coefficients<T<V>> k;
  RangeAcc<V> range;

  static ForwardState make(const Run<T<V>>& run, const LossParams& params) {
    return {run, broadcast_of<V>(run.w), broadcast_of<V>(run.pw), Smoothing<V>::make(params),
            coefficients<V>(params), {V::as_i(V::zero()), V::as_i(V::zero())}};
  }
};

// One vector of weighted losses at element i; `m` masks the tail (kTail), whose lanes come out +0.
template <class V, class E, int kW, int kP, bool kHard, bool kTail>
inline F<V> weighted_loss(ForwardState<V>& s, int64_t i, typename V::M m) {
  const Run<T<V>>& r = s.run;
  F<V> x, t;
  if constexpr (kTail) {  // masked loads read zeros there (x = t = 0 is in range)
    x = V::load_n(r.x + i, m);
    t = V::load_n(r.t + i, m);
  } else {
    x = V::load(r.x + i);
    t = V::load(r.t + i);
  }
  if constexpr (E::kChecksRange) track_range(s.range, x, t);
  F<V> l;
  if constexpr (kHard) {
    l = E::loss_hard(x, t);
  } else {
    const F<V> pw = table_value<V, kP>(r.pw.ptr + (kP == kPerElement ? i : 0), s.pb, m, kTail);
    l = E::template loss<kP != kAbsent>(x, s.smooth.apply(t), pw, s.k);
  }
  if constexpr (kW != kAbsent) {
    l = V::mul(l, table_value<V, kW>(r.w.ptr + (kW == kPerElement ? i : 0), s.wb, m, kTail));
  }
  if constexpr (kTail) l = V::zero_unless(m, l);
  return l;
}

template <class V>
struct SumAcc {
  typename V::DAcc total[kSumLanes / V::kLanes];
};

// Adds the losses of the block of n <= kBlock elements at b into acc (n < kBlock only at the end).
template <class V, class E, int kW, int kP, bool kHard>
inline void sum_block(ForwardState<V>& s, int64_t b, int64_t n, SumAcc<V>& acc) {
  constexpr int L = V::kLanes;
  constexpr int U = kSumLanes / L;
  const typename V::M full = V::tail_mask(L);
  F<V> block[U];
  for (int u = 0; u < U; ++u) block[u] = V::zero();
  int64_t i = 0;
  // kGroups groups of kSumLanes at a time: their losses are independent chains (of a few dozen
  // dependent operations each) that the core can overlap; they are added in element order.
  for (; i + kGroups * kSumLanes <= n; i += kGroups * kSumLanes) {
    F<V> part[kGroups][U];
    for (int j = 0; j < kGroups; ++j) {
      for (int u = 0; u < U; ++u) {
        part[j][u] = weighted_loss<V, E, kW, kP, kHard, false>(s, b + i + j * kSumLanes + u * L,
                                                                full);
      }
    }
    for (int j = 0; j < kGroups; ++j) {
      for (int u = 0; u < U; ++u) block[u] = V::add(block[u], part[j][u]);
    }
  }
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int u = 0; u < U; ++u) {
      block[u] = V::add(block[u], weighted_loss<V, E, kW, kP, kHard, false>(s, b + i + u * L, full));
    }
  }
  for (int u = 0; u < U; ++u) {
    const int64_t k = i + u * L;
    if (k < n) {
      const int rest = n - k < L ? int(n - k) : L;
      block[u] = V::add(block[u],
                        weighted_loss<V, E, kW, kP, kHard, true>(s, b + k, V::tail_mask(rest)));
    }
    V::dadd(acc.total[u], block[u]);
  }
}

// Whether the block of n elements at b takes the hard-label path (a loss that has one, no label
// smoothing, every target 0 or 1).
template <class V>
inline bool hard_block(const ForwardState<V>& s, int64_t b, int64_t n) {
  return !s.smooth.on && all_hard<V>(s.run.t + b, n);
}

// Calls block.template operator()<kHard>(b, len) for each block of (at most) kBlock elements of
// the run in turn, kHard where the block takes the loss's hard-label path; then reports the range
// check into *bad.
template <class V, class E, class Block>
inline void for_each_block(ForwardState<V>& s, bool* bad, Block&& block) {
  for (int64_t b = 0; b < s.run.n; b += kBlock) {
    const int64_t len = s.run.n - b < kBlock ? s.run.n - b : kBlock;
    if constexpr (E::kHardPath) {
      if (hard_block(s, b, len)) {
        block.template operator()<true>(b, len);
        continue;
      }
    }
    block.template operator()<false>(b, len);
  }
  if constexpr (E::kChecksRange) {
    if (range_bad(s.range)) *bad = true;
  }
}

template <class V, class E, int kW, int kP>
double forward_sum_run(const Run<T<V>>& run, const LossParams& params, bool* bad) {
  static_assert(kSumLanes % V::kLanes == 0, "vector width must divide kSumLanes");
  ForwardState<V> s = ForwardState<V>::make(run, params);
  SumAcc<V> acc;
  for (auto& d : acc.total) d = V::dzero();
  for_each_block<V, E>(s, bad, [&]<bool kHard>(int64_t b, int64_t len) {
    sum_block<V, E, kW, kP, kHard>(s, b, len, acc);
  });
  double lanes[kSumLanes];
  for (int u = 0; u < kSumLanes / V::kLanes; ++u) V::dstore(acc.total[u], lanes + u * V::kLanes);
  for (int step = 1; step < kSumLanes; step *= 2) {
    for (int j = 0; j < kSumLanes; j += 2 * step) lanes[j] += lanes[j + step];
  }
  return lanes[0];
}

template <class V, class E, int kW, int kP, bool kHard>
inline void none_block(ForwardState<V>& s, int64_t b, int64_t n, T<V>* out) {
  constexpr int L = V::kLanes;
  const typename V::M full = V::tail_mask(L);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    V::store(out + b + i, weighted_loss<V, E, kW, kP, kHard, false>(s, b + i, full));
  }
  if (i < n) {
    const typename V::M m = V::tail_mask(int(n - i));
    V::store_n(out + b + i, weighted_loss<V, E, kW, kP, kHard, true>(s, b + i, m), m);
  }
}

template <class V, class E, int kW, int kP>
void forward_none_run(const Run<T<V>>& run, const LossParams& params, T<V>* out, bool* bad) {
  ForwardState<V> s = ForwardState<V>::make(run, params);
  for_each_block<V, E>(s, bad, [&]<bool kHard>(int64_t b, int64_t len) {
    none_block<V, E, kW, kP, kHard>(s, b, len, out);
  });
}

// The state of one backward run.
template <class V>
struct BackwardState {
  const Run<T<V>>& run;
  const T<V>* g;
  F<V> gb, wb, pb, divisor;
  bool divide;  // dividing by 1 changes nothing (not even a NaN): skipped then
  Smoothing<V> smooth;
  losses::Coefficients<T<V>> k;
  T<V>* gi;
  T<V>* gt;
};

// One vector of the backward at element i; `m` masks the tail (loads and stores of all lanes when
// kTail is false).
template <class V, class E, int kW, int kP, bool kGradBroadcast, bool kTail>
inline void backward_vector(const BackwardState<V>& s, int64_t i, typename V::M m) {
  const Run<T<V>>& r = s.run;
  auto load = [&](const T<V>* p) {
    if constexpr (kTail) return V::load_n(p, m); else return V::load(p);
  };
  auto store = [&](T<V>* p, F<V> v) {
    if constexpr (kTail) V::store_n(p, v, m); else V::store(p, v);
  };
  const F<V> x = load(r.x + i);
  const F<V> g = kGradBroadcast ? s.gb : load(s.g + i);
  const F<V> pw = table_value<V, kP>(r.pw.ptr + (kP == kPerElement ? i : 0), s.pb, m, kTail);
  F<V> w = V::zero();
  if constexpr (kW != kAbsent) {
    w = table_value<V, kW>(r.w.ptr + (kW == kPerElement ? i : 0), s.wb, m, kTail);
  }
  // PyTorch's order: the gradient times g, times the weight, then divided by N.
  auto finish = [&](F<V> v) {
    if constexpr (kW != kAbsent) v = V::mul(v, w);
    return s.divide ? V::div(v, s.divisor) : v;
  };
  // The target where a formula reads it (grad_input, and the focal loss's grad_target).
  F<V> t = V::zero();
  if (s.gi || (s.gt && E::kGradTargetUsesTarget)) t = s.smooth.apply(load(r.t + i));
  if (s.gi) {
    store(s.gi + i, finish(E::template grad_input<kP != kAbsent>(g, x, t, pw, s.k)));
  }
  if (s.gt) {
    F<V> v = E::template grad_target<kP != kAbsent>(g, x, t, pw, s.k);
    if (s.smooth.on) v = V::mul(v, s.smooth.keep);  // d t_smoothed / d t
    store(s.gt + i, finish(v));
  }
}

template <class V, class E, int kW, int kP, bool kGradBroadcast>
void backward_run(const BackwardState<V>& s) {
  constexpr int L = V::kLanes;
  const typename V::M all = V::tail_mask(L);  // unused by the full vectors
  const int64_t n = s.run.n;
  int64_t i = 0;
  for (; i + L <= n; i += L) backward_vector<V, E, kW, kP, kGradBroadcast, false>(s, i, all);
  if (i < n) {
    backward_vector<V, E, kW, kP, kGradBroadcast, true>(s, i, V::tail_mask(int(n - i)));
  }
}

// --- Entry points with the Loops signatures: the template instance per run. ---

template <int kKind>
struct TableKind {
  static constexpr int value = kKind;
};

template <class O>
constexpr int table_kind(const O& o) {
  return !o.ptr ? kAbsent : o.stride == 0 ? kBroadcast : kPerElement;
}

// Calls f.template operator()<kW, kP>() for the run's weight and positive-weight kinds (always
// kAbsent for a loss that takes no such table, so no instance is made for the others).
template <class E, class R, class Fn>
inline auto with_tables(const R& run, Fn&& f) {
  const int w = table_kind(run.w);
  const int p = E::kPosWeight ? table_kind(run.pw) : kAbsent;
  auto with_p = [&](auto w_kind) {
    constexpr int kW = decltype(w_kind)::value;
    if constexpr (E::kPosWeight) {
      if (p == kBroadcast) return f.template operator()<kW, kBroadcast>();
      if (p == kPerElement) return f.template operator()<kW, kPerElement>();
    }
    return f.template operator()<kW, kAbsent>();
  };
  if constexpr (E::kTakesWeight) {
    if (w == kBroadcast) return with_p(TableKind<kBroadcast>{});
    if (w == kPerElement) return with_p(TableKind<kPerElement>{});
  }
  return with_p(TableKind<kAbsent>{});
}

template <class V, class E>
double forward_sum(const Run<T<V>>& run, const LossParams& params, bool* bad) {
  return with_tables<E>(run, [&]<int kW, int kP>() {
    return forward_sum_run<V, E, kW, kP>(run, params, bad);
  });
}

template <class V, class E>
void forward_none(const Run<T<V>>& run, const LossParams& params, T<V>* out, bool* bad) {
  with_tables<E>(run, [&]<int kW, int kP>() {
    forward_none_run<V, E, kW, kP>(run, params, out, bad);
  });
}

template <class V, class E>
void backward(const Run<T<V>>& run, const LossParams& params, Operand<T<V>> g, T<V> divisor,
              T<V>* gi, T<V>* gt) {
  const BackwardState<V> s{run,
                           g.ptr,
                           V::set1(*g.ptr),
                           broadcast_of<V>(run.w),
                           broadcast_of<V>(run.pw),
                           V::set1(divisor),
                           divisor != T<V>(1),
                           Smoothing<V>::make(params),
                           coefficients<V>(params),
                           gi,
                           gt};
  with_tables<E>(run, [&]<int kW, int kP>() {
    if (g.stride == 0) {
      backward_run<V, E, kW, kP, true>(s);
    } else {
      backward_run<V, E, kW, kP, false>(s);
    }
  });
}

// The Loops of loss E over backend V.
template <class V, template <class, class> class Loss, class MathV>
constexpr Loops<T<V>> make_loops(const char* isa) {
  using E = Loss<V, MathV>;
  return Loops<T<V>>{isa, &forward_sum<V, E>, &forward_none<V, E>, &backward<V, E>};
}

}  // namespace loops
}  // namespace
}  // namespace bce_ext::cpu
