#pragma once
// Binary cross entropy on logits, with an optional positive-class weight pw: its element formulas,
// written once over a backend V and its Math (exp, log1p01, sigmoid; csrc/cpu/vec/ and
// csrc/cuda/cuda_math.cuh). See bce.h for the conventions.
//
// Python reference (x logit, t target after label smoothing, pw positive weight or None, g incoming
// gradient; weight and 1/N applied after, by the loops). PyTorch's operation order:
//   log_sig = min(x, 0) - log1p(exp(-abs(x)))            # log(sigmoid(x)), stable
//   loss    = (1 - t) * x - ((pw - 1) * t + 1) * log_sig  # without pw: (1 - t) * x - log_sig
//   gi      = ((pw * t + 1 - t) * sigmoid(x) - pw * t) * g  # without pw: (sigmoid(x) - t) * g
//   gt      = (log_sigmoid(-x) - pw * log_sig) * g          # without pw: -x * g
// Beyond PyTorch, the limits at infinite logits (where its formula gives NaN, PyTorch issues 49844
// and 102894): loss(+inf, t) = (1 - t) * inf, 0 where t = 1; loss(-inf, t) = pw * t * inf, 0 where
// pw * t = 0. No range check (PyTorch makes none).
#include "../bce_constants.h"
#include "coefficients.h"
#include "host_device.h"
#include "traits.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct BceWithLogits {
  using F = typename V::F;
  using M = typename V::M;
  using T = typename V::T;

  static constexpr bool kChecksRange = false;
  static constexpr bool kHardPath = false;
  static constexpr bool kPosWeight = true;
  // Takes a weight and a label smoothing (the drivers build those variants only where it does).
  static constexpr bool kTakesWeight = true;
  static constexpr bool kGradTargetUsesTarget = false;

  // log1p(exp(-|x|)), the smooth part of softplus, from |x|: in (0, ln 2].
  BCE_EXT_HD static F softplus_tail_abs(F ax) { return MathV::log1p01(MathV::exp(V::neg(ax))); }
  BCE_EXT_HD static F softplus_tail(F x) { return softplus_tail_abs(V::abs(x)); }

  // The loss where some lane's x is +-inf: its limit there (the formula's 0 * inf and inf - inf
  // are NaN), l elsewhere. Off the common path: the caller tests for infinities first.
  template <bool kWithPw>
  BCE_EXT_HD static F at_infinity(F x, F t, F pw, F l) {
    const F zero = V::zero();
    const F inf = V::set1(T(__builtin_inf()));
    const F one_minus_t = V::sub(V::set1(T(1)), t);
    const F pt = kWithPw ? V::mul(pw, t) : t;
    const F at_plus = V::blend(V::eq(one_minus_t, zero), V::mul(one_minus_t, inf), zero);
    const F at_minus = V::blend(V::eq(pt, zero), V::mul(pt, inf), zero);
    l = V::blend(V::eq(x, inf), l, at_plus);
    return V::blend(V::eq(x, V::neg(inf)), l, at_minus);
  }

  // kWithPw: pw is a value (else ignored: no positive weight).
  template <bool kWithPw>
  BCE_EXT_HD static F loss(F x, F t, F pw, const Coefficients<T>& = {}) {
    const F one = V::set1(T(1));
    const F ax = V::abs(x);
    F log_sig = V::sub(V::min(x, V::zero()), softplus_tail_abs(ax));
    if constexpr (kWithPw) log_sig = V::mul(log_sig, V::add(V::mul(V::sub(pw, one), t), one));
    const F l = V::sub(V::mul(V::sub(one, t), x), log_sig);
    if (V::any(V::eq(ax, V::set1(T(__builtin_inf()))))) {
      return at_infinity<kWithPw>(x, t, pw, l);
    }
    return l;
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_input(F g, F x, F t, F pw, const Coefficients<T>& = {}) {
    const F s = MathV::sigmoid(x);
    if constexpr (kWithPw) {
      const F pt = V::mul(pw, t);
      return V::mul(V::sub(V::mul(V::sub(V::add(pt, V::set1(T(1))), t), s), pt), g);
    } else {
      return V::mul(V::sub(s, t), g);
    }
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_target(F g, F x, F /*t*/, F pw, const Coefficients<T>& = {}) {
    if constexpr (kWithPw) {
      const F zero = V::zero();
      const F tail = softplus_tail(x);
      const F log_sig_neg = V::sub(V::min(V::neg(x), zero), tail);
      const F log_sig = V::sub(V::min(x, zero), tail);
      return V::mul(V::sub(log_sig_neg, V::mul(pw, log_sig)), g);
    } else {
      return V::mul(V::neg(x), g);
    }
  }
};

// The op and its result: the target's dtype and layout (PyTorch computes it in place on
// 1 - target).
template <>
struct Traits<BceWithLogits> {
  static constexpr const char* kOp = "binary_cross_entropy_with_logits";
  static constexpr const char* kNode = "BinaryCrossEntropyWithLogits";
  static constexpr ResultDtype kResult = ResultDtype::kTarget;
  static constexpr LaidOutLike kLayout = LaidOutLike::kTarget;
  static constexpr int kTables = 2;
  static constexpr bool kLabelSmoothing = true;
  static constexpr bool kIgnoreIndex = true;
  static constexpr int kDefaultReduction = 1;
  using Scalars = std::tuple<>;
  static constexpr const char* kScalars = "";

  template <class Checks>
  static void check(Checks& c) {
    c.target_size_as_logits();
    c.label_smoothing();
    c.logits_operands();
  }

  // With sigma = sigmoid(x), c = pw * t + 1 - t (pw = 1 without a pos_weight), the derivatives of
  // gi = (c * sigma - pw * t) * g and gt = (-x - (pw - 1) * log_sigmoid(x)) * g:
  //   d gi / d g = c * sigma - pw * t,             d gi / d x = c * sigma * (1 - sigma) * g
  //   d gi / d t = ((pw - 1) * sigma - pw) * g,    d gt / d g = -x - (pw - 1) * log_sigmoid(x)
  //   d gt / d x = (-1 - (pw - 1) * (1 - sigma)) * g,   d gt / d t = 0
  template <class Tn>
  static Tn partial(const Partial<Tn>& a) {
    const Tn& x = a.x;
    const Tn& t = a.t;
    const Tn& g = a.g;
    const Tn sigma = x.sigmoid();
    const Tn* pw = a.pos_weight;
    if (a.out == BackwardOutput::kGradInput) {
      const Tn pt = pw ? *pw * t : t;
      const Tn c = pw ? pt + 1 - t : ones_like(t);
      switch (a.in) {
        case BackwardInput::kGradOutput:
          return c * sigma - pt;
        case BackwardInput::kInput:
          return c * sigma * (1 - sigma) * g;
        case BackwardInput::kTarget:
          return pw ? ((*pw - 1) * sigma - *pw) * g : -g * ones_like(x);
      }
    }
    switch (a.in) {
      case BackwardInput::kGradOutput:
        return pw ? -x - (*pw - 1) * log_sigmoid(x) : -x;
      case BackwardInput::kInput:
        return pw ? (-1 - (*pw - 1) * (1 - sigma)) * g : -g * ones_like(x);
      case BackwardInput::kTarget:
        break;
    }
    return Tn();
  }
};

}  // namespace bce_ext::losses
