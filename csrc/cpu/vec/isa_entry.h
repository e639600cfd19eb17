#pragma once
// The exported entry points of one vectorised instruction set, included last by its file
// (loops_avx2.cpp, loops_avx512.cpp) after it has named its backend BCE_EXT_ISA_BACKEND and the
// name BCE_EXT_ISA_NAME: the Loops of every loss, the half conversions, and the Math functions for
// the accuracy tests.
#include "../../losses/bce.h"
#include "../../losses/bce_with_logits.h"
#include "../../losses/sigmoid_focal.h"
#include "half_convert.h"
#include "loops_impl.h"

namespace bce_ext::cpu {
namespace {
namespace isa_entry {

using V = BCE_EXT_ISA_BACKEND;
using MathV = vec_math::Math<V>;

// Indexed by LossKind.
constexpr Loops<float> kLoops[] = {
    loops::make_loops<V, losses::Bce, MathV>(BCE_EXT_ISA_NAME),
    loops::make_loops<V, losses::BceWithLogits, MathV>(BCE_EXT_ISA_NAME),
    loops::make_loops<V, losses::SigmoidFocal, MathV>(BCE_EXT_ISA_NAME),
};
static_assert(sizeof(kLoops) / sizeof(Loops<float>) == static_cast<int>(LossKind::kCount));

constexpr Converters kConverters = half_convert::make_converters<V>();

// fn over n floats, in whole vectors plus a masked tail.
template <typename V::F (*fn)(typename V::F)>
void eval(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kLanes) {
    const auto m = V::tail_mask(n - i < V::kLanes ? int(n - i) : V::kLanes);
    V::store_n(out + i, fn(V::load_n(in + i, m)), m);
  }
}

bool same(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

MathEvalFn math_eval(const char* name) {
  if (same(name, "log01")) return &eval<&MathV::log01>;
  if (same(name, "log1m")) return &eval<&MathV::log1m>;
  if (same(name, "log_any")) return &eval<&MathV::log_any>;
  if (same(name, "exp")) return &eval<&MathV::exp>;
  if (same(name, "log1p01")) return &eval<&MathV::log1p01>;
  if (same(name, "sigmoid")) return &eval<&MathV::sigmoid>;
  return nullptr;
}

}  // namespace isa_entry
}  // namespace
}  // namespace bce_ext::cpu
