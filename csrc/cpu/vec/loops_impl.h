#pragma once
// The CPU inner loops (loops.h), generic over a backend V and a loss's element formulas E (csrc/
// losses/): one template for every loss, instruction set and element type. Included by one file
// per backend (loops_portable.cpp, loops_avx2.cpp, loops_avx512.cpp) after the backend and its
// Math; everything is in an anonymous namespace, so each file gets its own copy compiled for its
// own target. No standard library header.
//
// Each loop also takes the storage type S of the run's per-element operands: T itself, or a half
// type, which IO<V, S> converts to and from float in registers as it loads and stores.
//
// Required of V: T (the lane type), kLanes; F (lanes), M (lane mask), I (lane bits), DAcc (double
// accumulators); zero() set1(T) load(p) load_n(p, M) store(p, F) store_n(p, F, M) tail_mask(n)
// (the first n lanes) add sub mul div fma(a, b, c) = a * b + c, max(a, b) min(a, b) (b when either
// is NaN), abs neg eq ge gt (ordered) mand mor all(M) blend(M m, a, b) = m ? b : a,
// zero_unless(M, F), as_i(F) max_u32(I, I) any_above_u(I, limit), dzero() dadd(DAcc&, F)
// dstore(DAcc, double[kLanes]); for float backends that run the half types also H (lanes of 16
// bits), load_h(p) load_hn(p, M) store_h(p, H) store_hn(p, H, M), half_to_f f_to_half, and the
// integer operations of half_convert.h.
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
#include "half_convert.h"

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

// How a run reads a per-element table (weight, positive weight): absent, one value for the run, one
// value per element in T, or one value per element in the storage type (a half type's full table).
enum Table { kAbsent = 0, kBroadcast = 1, kPerElement = 2, kStored = 3 };

template <class V>
using F = typename V::F;
template <class V>
using T = typename V::T;

// Loads and stores of storage type S in V's lanes: S is T<V> itself, or a half type converted in
// registers (half_convert.h: bitwise c10's conversions). The _n forms touch only the lanes of m.
template <class V, class S>
struct IO {
  static F<V> load(const S* p) { return V::load(p); }
  static F<V> load_n(const S* p, typename V::M m) { return V::load_n(p, m); }
  static void store(S* p, F<V> v) { V::store(p, v); }
  static void store_n(S* p, F<V> v, typename V::M m) { V::store_n(p, v, m); }
};

template <class V, class S, class Conv>
struct HalfIO {
  static const uint16_t* bits(const S* p) { return reinterpret_cast<const uint16_t*>(p); }
  static uint16_t* bits(S* p) { return reinterpret_cast<uint16_t*>(p); }
  static F<V> load(const S* p) { return Conv::to_f(V::load_h(bits(p))); }
  static F<V> load_n(const S* p, typename V::M m) { return Conv::to_f(V::load_hn(bits(p), m)); }
  static void store(S* p, F<V> v) { V::store_h(bits(p), Conv::from_f(v)); }
  static void store_n(S* p, F<V> v, typename V::M m) { V::store_hn(bits(p), Conv::from_f(v), m); }
};

template <class V>
struct IO<V, Float16Bits> : HalfIO<V, Float16Bits, half_convert::Float16<V>> {};
template <class V>
struct IO<V, BFloat16Bits> : HalfIO<V, BFloat16Bits, half_convert::BFloat16<V>> {};

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

// A table's value at element i as a vector: loaded per element (from `table` or `stored`), or set
// once for the run.
template <class V, class S, int kTable, bool kTail>
inline F<V> table_value(Operand<T<V>> table, const S* stored, int64_t i, F<V> broadcast,
                        typename V::M m) {
  if constexpr (kTable == kPerElement) {
    return kTail ? V::load_n(table.ptr + i, m) : V::load(table.ptr + i);
  } else if constexpr (kTable == kStored) {
    return kTail ? IO<V, S>::load_n(stored + i, m) : IO<V, S>::load(stored + i);
  } else if constexpr (kTable == kBroadcast) {
    return broadcast;
  } else {
    return V::zero();
  }
}

template <class V>
inline F<V> broadcast_of(Operand<T<V>> o) {
  return o.ptr ? V::set1(*o.ptr) : V::zero();
}

// The formulas' scalar coefficients of a call, in the lane type.
template <class V>
inline losses::Coefficients<T<V>> coefficients(const LossParams& p) {
  losses::Coefficients<T<V>> k;
  for (int i = 0; i < losses::kMaxScalars; ++i) k.v[i] = static_cast<T<V>>(p.scalars[i]);
  return k;
}

// Whether each of the n <= kBlock targets from t is 0 or 1, or ignored (ignore: the ignored
// value; stops at the first that is none of them).
template <class V, class S, bool kIgnore>
inline bool all_hard(const S* t, int64_t n, F<V> ignore) {
  constexpr int L = V::kLanes;
  const F<V> zero = V::zero();
  const F<V> one = V::set1(T<V>(1));
  auto hard = [&](F<V> tv) {
    auto m = V::mor(V::eq(tv, zero), V::eq(tv, one));
    if constexpr (kIgnore) m = V::mor(m, V::eq(tv, ignore));
    return V::all(m);
  };
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    if (!hard(IO<V, S>::load(t + i))) return false;
  }
  if (i < n) {
    // zeros past the end
    if (!hard(IO<V, S>::load_n(t + i, V::tail_mask(int(n - i))))) return false;
  }
  return true;
}

// The ignored value of a call (LossParams::ignore_value) in the lane type.
template <class V>
inline F<V> ignore_of(const LossParams& p) {
  return V::set1(static_cast<T<V>>(p.ignore_value));
}

// The state of one forward run.
template <class V, class S>
struct ForwardState {
  const Run<S>& run;
  F<V> wb, pb;  // broadcast weight and positive weight
  Smoothing<V> smooth;
  losses::Coefficients<T<V>> k;
  RangeAcc<V> range;
  F<V> ignore;  // the ignored target value (used by the kIgnore instances only)

  static ForwardState make(const Run<S>& run, const LossParams& params) {
    return {run,
            broadcast_of<V>(run.w),
            broadcast_of<V>(run.pw),
            Smoothing<V>::make(params),
            coefficients<V>(params),
            {V::as_i(V::zero()), V::as_i(V::zero())},
            ignore_of<V>(params)};
  }
};

// One vector of weighted losses at element i; `m` masks the tail (kTail), whose lanes come out +0.
// kIgnore: lanes whose target is the ignored value come out +0 whatever their operands, are left
// out of the range check, and `kept` gets 1 in the lanes counted by 'mean' (0 in the others).
template <class V, class S, class E, int kW, int kP, bool kHard, bool kTail, bool kIgnore>
inline F<V> weighted_loss(ForwardState<V, S>& s, int64_t i, typename V::M m, F<V>& kept) {
  const Run<S>& r = s.run;
  F<V> x, t;
  if constexpr (kTail) {  // masked loads read zeros there (x = t = 0 is in range)
    x = IO<V, S>::load_n(r.x + i, m);
    t = IO<V, S>::load_n(r.t + i, m);
  } else {
    x = IO<V, S>::load(r.x + i);
    t = IO<V, S>::load(r.t + i);
  }
  [[maybe_unused]] typename V::M ignored{};
  if constexpr (kIgnore) {
    ignored = V::eq(t, s.ignore);
    kept = V::blend(ignored, V::set1(T<V>(1)), V::zero());
    if constexpr (kTail) kept = V::zero_unless(m, kept);
    if constexpr (E::kChecksRange) {
      track_range(s.range, V::blend(ignored, x, V::zero()), V::blend(ignored, t, V::zero()));
    }
  } else if constexpr (E::kChecksRange) {
    track_range(s.range, x, t);
  }
  F<V> l;
  if constexpr (kHard) {
    l = E::loss_hard(x, t);
  } else {
    const F<V> pw = table_value<V, S, kP, kTail>(r.pw, r.pw_stored, i, s.pb, m);
    l = E::template loss<kP != kAbsent>(x, s.smooth.apply(t), pw, s.k);
  }
  if constexpr (kW != kAbsent) {
    l = V::mul(l, table_value<V, S, kW, kTail>(r.w, r.w_stored, i, s.wb, m));
  }
  if constexpr (kIgnore) l = V::blend(ignored, l, V::zero());
  if constexpr (kTail) l = V::zero_unless(m, l);
  return l;
}

template <class V>
struct SumAcc {
  typename V::DAcc total[kSumLanes / V::kLanes];
  typename V::DAcc kept;  // the elements counted (kIgnore)
};

// Adds the losses of the block of n <= kBlock elements at b into acc (n < kBlock only at the end).
template <class V, class S, class E, int kW, int kP, bool kHard, bool kIgnore>
inline void sum_block(ForwardState<V, S>& s, int64_t b, int64_t n, SumAcc<V>& acc) {
  constexpr int L = V::kLanes;
  constexpr int U = kSumLanes / L;
  const typename V::M full = V::tail_mask(L);
  F<V> block[U];
  for (int u = 0; u < U; ++u) block[u] = V::zero();
  // Whole numbers below 2^24 (kBlock elements at most): exact in float.
  F<V> kept = V::zero();
  auto loss = [&]<bool kTail>(int64_t at, typename V::M m) {
    F<V> k;
    const F<V> l = weighted_loss<V, S, E, kW, kP, kHard, kTail, kIgnore>(s, at, m, k);
    if constexpr (kIgnore) kept = V::add(kept, k);
    return l;
  };
  int64_t i = 0;
  // kGroups groups of kSumLanes at a time: their losses are independent chains (of a few dozen
  // dependent operations each) that the core can overlap; they are added in element order.
  for (; i + kGroups * kSumLanes <= n; i += kGroups * kSumLanes) {
    F<V> part[kGroups][U];
    for (int j = 0; j < kGroups; ++j) {
      for (int u = 0; u < U; ++u) {
        part[j][u] = loss.template operator()<false>(b + i + j * kSumLanes + u * L, full);
      }
    }
    for (int j = 0; j < kGroups; ++j) {
      for (int u = 0; u < U; ++u) block[u] = V::add(block[u], part[j][u]);
    }
  }
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int u = 0; u < U; ++u) {
      block[u] = V::add(block[u], loss.template operator()<false>(b + i + u * L, full));
    }
  }
  for (int u = 0; u < U; ++u) {
    const int64_t k = i + u * L;
    if (k < n) {
      const int rest = n - k < L ? int(n - k) : L;
      block[u] = V::add(block[u], loss.template operator()<true>(b + k, V::tail_mask(rest)));
    }
    V::dadd(acc.total[u], block[u]);
  }
  if constexpr (kIgnore) V::dadd(acc.kept, kept);
}

// Whether the block of n elements at b takes the hard-label path (a loss that has one, no label
// smoothing, every target 0 or 1 or ignored).
template <class V, class S, bool kIgnore>
inline bool hard_block(const ForwardState<V, S>& s, int64_t b, int64_t n) {
  return !s.smooth.on && all_hard<V, S, kIgnore>(s.run.t + b, n, s.ignore);
}

// Calls block.template operator()<kHard>(b, len) for each block of (at most) kBlock elements of
// the run in turn, kHard where the block takes the loss's hard-label path; then reports the range
// check into *bad.
template <class V, class S, class E, bool kIgnore, class Block>
inline void for_each_block(ForwardState<V, S>& s, bool* bad, Block&& block) {
  for (int64_t b = 0; b < s.run.n; b += kBlock) {
    const int64_t len = s.run.n - b < kBlock ? s.run.n - b : kBlock;
    if constexpr (E::kHardPath) {
      if (hard_block<V, S, kIgnore>(s, b, len)) {
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

template <class V, class S, class E, int kW, int kP, bool kIgnore>
double forward_sum_run(const Run<S>& run, const LossParams& params, bool* bad, double* kept) {
  static_assert(kSumLanes % V::kLanes == 0, "vector width must divide kSumLanes");
  ForwardState<V, S> s = ForwardState<V, S>::make(run, params);
  SumAcc<V> acc;
  for (auto& d : acc.total) d = V::dzero();
  acc.kept = V::dzero();
  for_each_block<V, S, E, kIgnore>(s, bad, [&]<bool kHard>(int64_t b, int64_t len) {
    sum_block<V, S, E, kW, kP, kHard, kIgnore>(s, b, len, acc);
  });
  double lanes[kSumLanes];
  for (int u = 0; u < kSumLanes / V::kLanes; ++u) V::dstore(acc.total[u], lanes + u * V::kLanes);
  for (int step = 1; step < kSumLanes; step *= 2) {
    for (int j = 0; j < kSumLanes; j += 2 * step) lanes[j] += lanes[j + step];
  }
  if constexpr (kIgnore) {
    double counts[V::kLanes];
    V::dstore(acc.kept, counts);
    for (int j = 0; j < V::kLanes; ++j) *kept += counts[j];  // whole numbers: exact
  } else {
    *kept += static_cast<double>(run.n);
  }
  return lanes[0];
}

// flatten: the formulas inlined here whatever the compiler's budget (GCC 12 left BCE's loss out of
// line in its bfloat16 loop once more losses shared the translation unit: a quarter slower).
template <class V, class S, class E, int kW, int kP, bool kHard, bool kIgnore>
[[gnu::flatten]] inline void none_block(ForwardState<V, S>& s, int64_t b, int64_t n, S* out) {
  constexpr int L = V::kLanes;
  const typename V::M full = V::tail_mask(L);
  F<V> kept;  // unused: 'none' counts nothing
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    IO<V, S>::store(out + b + i,
                    weighted_loss<V, S, E, kW, kP, kHard, false, kIgnore>(s, b + i, full, kept));
  }
  if (i < n) {
    const typename V::M m = V::tail_mask(int(n - i));
    IO<V, S>::store_n(out + b + i,
                      weighted_loss<V, S, E, kW, kP, kHard, true, kIgnore>(s, b + i, m, kept), m);
  }
}

template <class V, class S, class E, int kW, int kP, bool kIgnore>
void forward_none_run(const Run<S>& run, const LossParams& params, S* out, bool* bad) {
  ForwardState<V, S> s = ForwardState<V, S>::make(run, params);
  for_each_block<V, S, E, kIgnore>(s, bad, [&]<bool kHard>(int64_t b, int64_t len) {
    none_block<V, S, E, kW, kP, kHard, kIgnore>(s, b, len, out);
  });
}

// The state of one backward run.
template <class V, class S>
struct BackwardState {
  const Run<S>& run;
  const S* g;  // null: gb for every element
  F<V> gb, wb, pb, divisor;
  bool divide;  // dividing by 1 changes nothing (not even a NaN): skipped then
  Smoothing<V> smooth;
  losses::Coefficients<T<V>> k;
  S* gi;
  S* gt;
  F<V> ignore;  // the ignored target value (kIgnore instances only)
};

// One vector of the backward at element i; `m` masks the tail (loads and stores of all lanes when
// kTail is false).
// kIgnore: the lanes whose raw target is the ignored value get +0 whatever their operands.
template <class V, class S, class E, int kW, int kP, bool kGradBroadcast, bool kTail, bool kIgnore>
inline void backward_vector(const BackwardState<V, S>& s, int64_t i, typename V::M m) {
  using IOS = IO<V, S>;
  const Run<S>& r = s.run;
  auto load = [&](const S* p) {
    if constexpr (kTail)
      return IOS::load_n(p, m);
    else
      return IOS::load(p);
  };
  auto store = [&](S* p, F<V> v) {
    if constexpr (kTail)
      IOS::store_n(p, v, m);
    else
      IOS::store(p, v);
  };
  const F<V> x = load(r.x + i);
  const F<V> g = kGradBroadcast ? s.gb : load(s.g + i);
  const F<V> pw = table_value<V, S, kP, kTail>(r.pw, r.pw_stored, i, s.pb, m);
  F<V> w = V::zero();
  if constexpr (kW != kAbsent) w = table_value<V, S, kW, kTail>(r.w, r.w_stored, i, s.wb, m);
  [[maybe_unused]] typename V::M ignored{};
  F<V> t = V::zero();
  if constexpr (kIgnore) {
    const F<V> raw = load(r.t + i);
    ignored = V::eq(raw, s.ignore);
    t = s.smooth.apply(raw);
  }
  // PyTorch's order: the gradient times g, times the weight, then divided by N.
  auto finish = [&](F<V> v) {
    if constexpr (kW != kAbsent) v = V::mul(v, w);
    v = s.divide ? V::div(v, s.divisor) : v;
    if constexpr (kIgnore) v = V::blend(ignored, v, V::zero());
    return v;
  };
  // The target where a formula reads it (grad_input, and the focal loss's grad_target).
  if constexpr (!kIgnore) {
    if (s.gi || (s.gt && E::kGradTargetUsesTarget)) t = s.smooth.apply(load(r.t + i));
  }
  if (s.gi) {
    store(s.gi + i, finish(E::template grad_input<kP != kAbsent>(g, x, t, pw, s.k)));
  }
  if (s.gt) {
    F<V> v = E::template grad_target<kP != kAbsent>(g, x, t, pw, s.k);
    if (s.smooth.on) v = V::mul(v, s.smooth.keep);  // d t_smoothed / d t
    store(s.gt + i, finish(v));
  }
}

template <class V, class S, class E, int kW, int kP, bool kGradBroadcast, bool kIgnore>
void backward_run(const BackwardState<V, S>& s) {
  constexpr int L = V::kLanes;
  const typename V::M all = V::tail_mask(L);  // unused by the full vectors
  const int64_t n = s.run.n;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    backward_vector<V, S, E, kW, kP, kGradBroadcast, false, kIgnore>(s, i, all);
  }
  if (i < n) {
    backward_vector<V, S, E, kW, kP, kGradBroadcast, true, kIgnore>(s, i, V::tail_mask(int(n - i)));
  }
}

// --- Entry points with the Loops signatures: the template instance per run. ---

template <int kKind>
struct TableKind {
  static constexpr int value = kKind;
};

template <class O, class S>
constexpr int table_kind(const O& o, const S* stored) {
  return stored ? kStored : !o.ptr ? kAbsent : o.stride == 0 ? kBroadcast : kPerElement;
}

// Calls f.template operator()<kW, kP>() for the run's weight and positive-weight kinds (always
// kAbsent for a loss that takes no such table, and never kStored where S is T, so no instance is
// made for those).
template <class E, class S, class Fn>
inline auto with_tables(const Run<S>& run, Fn&& f) {
  constexpr bool kHalf = sizeof(S) == 2;
  const int w = table_kind(run.w, run.w_stored);
  const int p = E::kPosWeight ? table_kind(run.pw, run.pw_stored) : kAbsent;
  auto with_p = [&](auto w_kind) {
    constexpr int kW = decltype(w_kind)::value;
    if constexpr (E::kPosWeight) {
      if (p == kBroadcast) return f.template operator()<kW, kBroadcast>();
      if (p == kPerElement) return f.template operator()<kW, kPerElement>();
      if constexpr (kHalf) {
        if (p == kStored) return f.template operator()<kW, kStored>();
      }
    }
    return f.template operator()<kW, kAbsent>();
  };
  if constexpr (E::kTakesWeight) {
    if (w == kBroadcast) return with_p(TableKind<kBroadcast>{});
    if (w == kPerElement) return with_p(TableKind<kPerElement>{});
    if constexpr (kHalf) {
      if (w == kStored) return with_p(TableKind<kStored>{});
    }
  }
  return with_p(TableKind<kAbsent>{});
}

// kTakesIgnore: whether the loss takes an ignore_index (no kIgnore instance is made otherwise).
template <class V, class S, class E, bool kTakesIgnore>
double forward_sum(const Run<S>& run, const LossParams& params, bool* bad, double* kept) {
  return with_tables<E>(run, [&]<int kW, int kP>() {
    if constexpr (kTakesIgnore) {
      if (params.ignore) return forward_sum_run<V, S, E, kW, kP, true>(run, params, bad, kept);
    }
    return forward_sum_run<V, S, E, kW, kP, false>(run, params, bad, kept);
  });
}

template <class V, class S, class E, bool kTakesIgnore>
void forward_none(const Run<S>& run, const LossParams& params, S* out, bool* bad) {
  with_tables<E>(run, [&]<int kW, int kP>() {
    if constexpr (kTakesIgnore) {
      if (params.ignore) return forward_none_run<V, S, E, kW, kP, true>(run, params, out, bad);
    }
    forward_none_run<V, S, E, kW, kP, false>(run, params, out, bad);
  });
}

template <class V, class S, class E, bool kTakesIgnore>
void backward(const Run<S>& run, const LossParams& params, const S* g, T<V> g_scalar, T<V> divisor,
              S* gi, S* gt) {
  const BackwardState<V, S> s{run,
                              g,
                              V::set1(g_scalar),
                              broadcast_of<V>(run.w),
                              broadcast_of<V>(run.pw),
                              V::set1(divisor),
                              divisor != T<V>(1),
                              Smoothing<V>::make(params),
                              coefficients<V>(params),
                              gi,
                              gt,
                              ignore_of<V>(params)};
  with_tables<E>(run, [&]<int kW, int kP>() {
    auto with_grad = [&]<bool kIgnore>() {
      if (g == nullptr) {
        backward_run<V, S, E, kW, kP, true, kIgnore>(s);
      } else {
        backward_run<V, S, E, kW, kP, false, kIgnore>(s);
      }
    };
    if constexpr (kTakesIgnore) {
      if (params.ignore) return with_grad.template operator()<true>();
    }
    with_grad.template operator()<false>();
  });
}

// The Loops of loss E over backend V, for storage type S (T<V> by default).
template <class V, template <class, class> class Loss, class MathV, class S = T<V>>
constexpr Loops<S> make_loops(const char* isa) {
  using E = Loss<V, MathV>;
  constexpr bool kTakesIgnore = losses::Traits<Loss>::kIgnoreIndex;
  return Loops<S>{KindOf<Loss>::value, isa, &forward_sum<V, S, E, kTakesIgnore>,
                  &forward_none<V, S, E, kTakesIgnore>, &backward<V, S, E, kTakesIgnore>};
}

}  // namespace loops
}  // namespace
}  // namespace bce_ext::cpu
