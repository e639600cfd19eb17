#pragma once
// Binary cross entropy on probabilities: its element formulas, written once over a backend V (the
// lanes F of scalar type T and their operations) and its Math (log_pair, log_select, log_any).
// The CPU loops (csrc/cpu/vec/loops_impl.h) instantiate them for each CPU backend (csrc/cpu/vec/),
// the CUDA kernels (csrc/cuda/loss_cuda_driver.cuh) for one element of float or double
// (csrc/cuda/cuda_math.cuh).
//
// Python reference (x input, t target after label smoothing, g incoming gradient; the weight and
// the 1/N of 'mean' are applied by the loops, after these):
//   loss = (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100)      # PyTorch's operation order
//   gi   = g * (x - t) / max((1 - x) * x, 1e-12)
//   gt   = -log(x / (1 - x)) * g                                        # at::logit, +inf at x = 1
//   bad  = not (0 <= x <= 1) or not (0 <= t <= 1)                       # raw t; NaN is bad
//
// Templates only (no inline non-template functions): this header is compiled into files with
// different target flags, and each instance is local to its file through V. No standard headers.
#include "../bce_constants.h"
#include "coefficients.h"
#include "host_device.h"
#include "traits.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct Bce {
  using F = typename V::F;
  using M = typename V::M;
  using T = typename V::T;

  static constexpr bool kChecksRange = true;  // x and t must lie in [0, 1]
  static constexpr bool kHardPath = true;     // targets all 0 or 1: one log per element
  static constexpr bool kPosWeight = false;
  // Takes a weight and a label smoothing (the drivers build those variants only where it does).
  static constexpr bool kTakesWeight = true;
  static constexpr bool kGradTargetUsesTarget = false;

  // The range check, of x and of the raw t alike: v in [0, 1], false for NaN. (The CPU loops make
  // the same check on the bits of v + 0, accumulated over a run: loops_impl.h, track_range.)
  BCE_EXT_HD static M in_range(F v) {
    return V::mand(V::ge(v, V::zero()), V::ge(V::set1(T(1)), v));
  }

  // x, t in [0, 1]. (The positive weight of the logits loss has no counterpart here.)
  template <bool kWithPw>
  BCE_EXT_HD static F loss(F x, F t, F /*pw*/, const Coefficients<T>& = {}) {
    const F clamp = V::set1(T(kLogClamp));
    const auto logs = MathV::log_pair(x, clamp);  // max(clamp, log(x)), max(clamp, log1p(-x))
    return V::sub(V::mul(V::sub(t, V::set1(T(1))), logs.log1m_x), V::mul(t, logs.log_x));
  }

  // Every t is 0 or 1: one log, the one t keeps. (t - 1) * L1 - t * L0 is -0 - L0 for t = 1 and
  // t - L1 for t = +-0, so this is bitwise the soft formula's result.
  BCE_EXT_HD static F loss_hard(F x, F t) {
    const M t_one = V::eq(t, V::set1(T(1)));
    const F l = V::max(V::set1(T(kLogClamp)), MathV::log_select(x, t_one));
    return V::sub(V::blend(t_one, t, V::set1(T(-0.0))), l);
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_input(F g, F x, F t, F /*pw*/, const Coefficients<T>& = {}) {
    const F denom = V::mul(V::sub(V::set1(T(1)), x), x);
    // max(eps, denom) is eps where denom < eps, else denom (NaN included), as the scalar ternary.
    return V::div(V::mul(g, V::sub(x, t)), V::max(V::set1(T(kGradEpsilon)), denom));
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_target(F g, F x, F /*t*/, F /*pw*/, const Coefficients<T>& = {}) {
    const F one = V::set1(T(1));
    const F logit = V::blend(V::eq(x, one), MathV::log_any(V::div(x, V::sub(one, x))),
                             V::set1(T(__builtin_inf())));
    return V::mul(V::neg(logit), g);
  }
};

// The op and its result: its input's dtype and layout, as PyTorch's.
template <>
struct Traits<Bce> {
  static constexpr const char* kOp = "binary_cross_entropy";
  static constexpr const char* kNode = "BinaryCrossEntropy";
  static constexpr ResultDtype kResult = ResultDtype::kInput;
  static constexpr LaidOutLike kLayout = LaidOutLike::kInput;
  static constexpr int kTables = 1;
  static constexpr bool kLabelSmoothing = true;
  static constexpr bool kIgnoreIndex = true;
  static constexpr int kDefaultReduction = 1;
  using Scalars = std::tuple<>;
  static constexpr const char* kScalars = "";

  template <class Checks>
  static void check(Checks& c) {
    c.target_size_as_bce();
    c.label_smoothing();
    c.bce_operands();
  }

  // PyTorch's binary_cross_entropy_double_backward{,_grad_output,_target} (FunctionsManual.cpp:
  // its eps = 1e-12 *added*, unlike the max-clamp of the first derivative), and the derivatives
  // of grad_target = -logit(x) * g:
  //   d gi / d g = (x - t) / ((x + eps) * (1 - x + eps))
  //   d gi / d x = g * (x*x - 2*x*t + t) / ((x + eps)**2 * (1 - x + eps)**2)
  //   d gi / d t = -g / clamp_min((1 - x) * x, eps)
  //   d gt / d g = -logit(x),   d gt / d x = -g / (x * (1 - x)),   d gt / d t = 0
  template <class Tn>
  static Tn partial(const Partial<Tn>& a) {
    const double eps = kDoubleBackwardEps;
    const Tn& x = a.x;
    const Tn& t = a.t;
    const Tn one_minus_x = 1 - x;
    if (a.out == BackwardOutput::kGradInput) {
      switch (a.in) {
        case BackwardInput::kGradOutput:
          return (x - t) / ((x + eps) * (one_minus_x + eps));
        case BackwardInput::kInput:
          return a.g * (x * x - 2 * x * t + t) / ((x + eps).pow(2) * (one_minus_x + eps).pow(2));
        case BackwardInput::kTarget:
          return -a.g / (one_minus_x * x).clamp_min(eps);
      }
    }
    switch (a.in) {
      case BackwardInput::kGradOutput:
        return -x.logit();
      case BackwardInput::kInput:
        return -a.g / (x * one_minus_x);
      case BackwardInput::kTarget:
        break;
    }
    return Tn();
  }
};

}  // namespace bce_ext::losses
