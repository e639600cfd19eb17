#pragma once
// The exported entry points of one vectorised instruction set, included last by its file
// (loops_avx2.cpp, loops_avx512.cpp) after it has named its float and double backends
// BCE_EXT_ISA_BACKEND and BCE_EXT_ISA_DOUBLE_BACKEND and the name BCE_EXT_ISA_NAME: the Loops of
// every loss for every storage type (float, double, and the half types over the float backend),
// the half conversions, and the Math functions for the accuracy tests.
#include "../../losses/registry.h"
#include "loops_impl.h"
#include "siglip_tile.h"

namespace bce_ext::cpu {
namespace {
namespace isa_entry {

using V = BCE_EXT_ISA_BACKEND;
using MathV = vec_math::Math<V>;
using VD = BCE_EXT_ISA_DOUBLE_BACKEND;
using MathVD = vec_math_f64::Math<VD>;

// The loops of every loss over backend B for storage type S, keyed by LossKind (generated from the
// registry's list, and checked).
template <class B, class MathB, class S = typename B::T>
constexpr Loops<S> kLoopsOf[kLossCount] = {
#define BCE_EXT_ISA_LOOPS(Name) loops::make_loops<B, losses::Name, MathB, S>(BCE_EXT_ISA_NAME),
    BCE_EXT_LOSSES(BCE_EXT_ISA_LOOPS)
#undef BCE_EXT_ISA_LOOPS
};
static_assert(keyed_by_loss(kLoopsOf<V, MathV>) && keyed_by_loss(kLoopsOf<VD, MathVD>) &&
              keyed_by_loss(kLoopsOf<V, MathV, Float16Bits>) &&
              keyed_by_loss(kLoopsOf<V, MathV, BFloat16Bits>));
constexpr IsaLoops kIsaLoops = {kLoopsOf<V, MathV>,
                                kLoopsOf<VD, MathVD>,
                                kLoopsOf<V, MathV, Float16Bits>,
                                kLoopsOf<V, MathV, BFloat16Bits>,
                                &siglip::tile_loop<V, MathV>,
                                &siglip::tile_loop<VD, MathVD>};

constexpr Converters kConverters = half_convert::make_converters<V>();

// fn over n lanes of backend B, in whole vectors plus a masked tail.
template <class B, typename B::F (*fn)(typename B::F)>
void eval(const typename B::T* in, typename B::T* out, int64_t n) {
  for (int64_t i = 0; i < n; i += B::kLanes) {
    const auto m = B::tail_mask(n - i < B::kLanes ? int(n - i) : B::kLanes);
    B::store_n(out + i, fn(B::load_n(in + i, m)), m);
  }
}

bool same(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

template <class B, class MathB>
auto math_eval_of(const char* name) -> void (*)(const typename B::T*, typename B::T*, int64_t) {
  if (same(name, "log01")) return &eval<B, &MathB::log01>;
  if (same(name, "log1m")) return &eval<B, &MathB::log1m>;
  if (same(name, "log_any")) return &eval<B, &MathB::log_any>;
  if (same(name, "exp")) return &eval<B, &MathB::exp>;
  if (same(name, "log1p01")) return &eval<B, &MathB::log1p01>;
  if (same(name, "sigmoid")) return &eval<B, &MathB::sigmoid>;
  return nullptr;
}

MathEvalFn math_eval(const char* name) { return math_eval_of<V, MathV>(name); }
MathEvalDoubleFn math_eval_double(const char* name) { return math_eval_of<VD, MathVD>(name); }

}  // namespace isa_entry
}  // namespace
}  // namespace bce_ext::cpu
