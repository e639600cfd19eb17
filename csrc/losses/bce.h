#pragma once
// Binary cross entropy on probabilities: its element formulas, written once over a backend V (the
// lanes F of scalar type T and their operations) and its Math (log01, log1m, log_select, log_any;
// csrc/cpu/vec/). The CPU loops (csrc/cpu/vec/loops_impl.h) instantiate them for each backend.
//
// Python reference (x input, t target after label smoothing, g incoming gradient; the weight and
// the 1/N of 'mean' are applied by the loops, after these):
//   loss = (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100)      # PyTorch's operation order
//   gi   = g * (x - t) / max((1 - x) * x, 1e-12)
//   gt   = -log(x / (1 - x)) * g                                        # at::logit, +inf at x = 1
//   bad  = not (0 <= x <= 1) or not (0 <= t <= 1)                       # raw t; NaN is bad
//
// Templates only (no inline non-template functions): this header is compiled into files with
// different target flags, and each instance is local to its file through V.
#include "../bce_constants.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct Bce {
  using F = typename V::F;
  using M = typename V::M;
  using T = typename V::T;

  static constexpr bool kChecksRange = true;  // x and t must lie in [0, 1]
  static constexpr bool kHardPath = true;     // targets all 0 or 1: one log per element
  static constexpr bool kPosWeight = false;

  // x, t in [0, 1]. (The positive weight of the logits loss has no counterpart here.)
  template <bool kWithPw>
  static F loss(F x, F t, F /*pw*/) {
    const F clamp = V::set1(T(kLogClamp));
    const F l0 = V::max(clamp, MathV::log01(x));
    const F l1 = V::max(clamp, MathV::log1m(x));
    return V::sub(V::mul(V::sub(t, V::set1(T(1))), l1), V::mul(t, l0));
  }

  // Every t is 0 or 1: one log, the one t keeps. (t - 1) * L1 - t * L0 is -0 - L0 for t = 1 and
  // t - L1 for t = +-0, so this is bitwise the soft formula's result.
  static F loss_hard(F x, F t) {
    const M t_one = V::eq(t, V::set1(T(1)));
    const F l = V::max(V::set1(T(kLogClamp)), MathV::log_select(x, t_one));
    return V::sub(V::blend(t_one, t, V::set1(T(-0.0))), l);
  }

  template <bool kWithPw>
  static F grad_input(F g, F x, F t, F /*pw*/) {
    const F denom = V::mul(V::sub(V::set1(T(1)), x), x);
    // max(eps, denom) is eps where denom < eps, else denom (NaN included), as the scalar ternary.
    return V::div(V::mul(g, V::sub(x, t)), V::max(V::set1(T(kGradEpsilon)), denom));
  }

  template <bool kWithPw>
  static F grad_target(F g, F x, F /*pw*/) {
    const F one = V::set1(T(1));
    const F logit = V::blend(V::eq(x, one), MathV::log_any(V::div(x, V::sub(one, x))),
                             V::set1(T(__builtin_inf())));
    return V::mul(V::neg(logit), g);
  }
};

}  // namespace bce_ext::losses
