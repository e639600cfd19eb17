#pragma once
// The sigmoid focal loss (Lin et al., RetinaNet; torchvision.ops.sigmoid_focal_loss): its element
// formulas, written once over a backend V and its Math (exp, log1p01, log_any; csrc/cpu/vec/ and
// csrc/cuda/cuda_math.cuh). See bce.h for the conventions; alpha and gamma come in the
// Coefficients.
//
// Python reference (torchvision's, x logit, t target, g incoming gradient; the 1/N of 'mean' is
// applied by the loops):
//   p      = sigmoid(x)
//   ce     = binary_cross_entropy_with_logits(x, t, reduction="none")
//   p_t    = p * t + (1 - p) * (1 - t)
//   loss   = ce * (1 - p_t) ** gamma
//   if alpha >= 0: loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
// computed here as m = 1 - p_t = t * sigmoid(-x) + (1 - t) * sigmoid(x) (no cancellation where p_t
// is close to 1), ce = (x >= 0 ? (1 - t) * x : -t * x) + log1p(exp(-|x|)) (none where ce is small),
// with m ** gamma as 1, m or m * m for gamma 0, 1, 2 (as torch.pow's exponents) and
// exp(gamma * log(m)) otherwise. The gradients are the derivatives of that (A = alpha_t, C = ce,
// M = m ** gamma; dm/dx = (1 - 2t) p (1 - p), dm/dt = 1 - 2p):
//   gi = A * ((p - t) * M + C * gamma * m ** (gamma - 1) * dm/dx) * g
//   gt = (dA/dt * C * M + A * (-x * M + C * gamma * m ** (gamma - 1) * dm/dt)) * g
// Limits, beyond torchvision (where these are NaN): at p_t = 1 (m = 0) with gamma < 1,
// m ** (gamma - 1) is infinite while C and dm/dx vanish faster: that term is 0. At infinite logits
// the loss is the logits loss's limit times m ** gamma (m = 1 - t or t there), and any 0 * inf of
// the gradients' terms counts as 0 (their limits). No range check (torchvision makes none).
#include "../bce_constants.h"
#include "bce_with_logits.h"
#include "coefficients.h"
#include "host_device.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct SigmoidFocal {
  using F = typename V::F;
  using M = typename V::M;
  using T = typename V::T;
  using Logits = BceWithLogits<V, MathV>;

  static constexpr bool kChecksRange = false;
  static constexpr bool kHardPath = false;
  static constexpr bool kPosWeight = false;
  // Takes a weight and a label smoothing (the drivers build those variants only where it does).
  static constexpr bool kTakesWeight = false;
  static constexpr bool kGradTargetUsesTarget = true;

  // p = sigmoid(x) and q = sigmoid(-x) = 1 - p, from e = exp(-|x|), each without cancellation.
  struct Sigmoids {
    F p, q, e;
  };
  BCE_EXT_HD static Sigmoids sigmoids(F x) {
    const F one = V::set1(T(1));
    const F e = MathV::exp(V::neg(V::abs(x)));
    const F d = V::add(one, e);
    const M nonneg = V::ge(x, V::zero());
    return {V::div(V::blend(nonneg, e, one), d), V::div(V::blend(nonneg, one, e), d), e};
  }

  // m ** gamma, and gamma * m ** (gamma - 1) (its derivative in m; 0 at m = 0 for gamma < 1, the
  // limit of the terms it enters).
  struct Power {
    F value, slope;
  };
  BCE_EXT_HD static Power power(F m, T gamma) {
    const F one = V::set1(T(1));
    if (gamma == T(0)) return {one, V::zero()};
    if (gamma == T(1)) return {m, one};
    if (gamma == T(2)) return {V::mul(m, m), V::add(m, m)};
    const F log_m = MathV::log_any(m);
    const F slope = V::mul(V::set1(gamma), MathV::exp(V::mul(V::set1(gamma - T(1)), log_m)));
    const M positive = V::gt(m, V::zero());
    return {MathV::exp(V::mul(V::set1(gamma), log_m)), V::blend(positive, V::zero(), slope)};
  }

  // alpha_t = alpha * t + (1 - alpha) * (1 - t), 1 where alpha < 0.
  BCE_EXT_HD static F alpha_t(F t, T alpha) {
    return V::add(V::mul(V::set1(alpha), t),
                  V::mul(V::set1(T(1) - alpha), V::sub(V::set1(T(1)), t)));
  }

  // m = 1 - p_t.
  BCE_EXT_HD static F one_minus_pt(F t, const Sigmoids& s) {
    return V::add(V::mul(t, s.q), V::mul(V::sub(V::set1(T(1)), t), s.p));
  }

  // ce, BCE with logits, as (1 - t) * x for x >= 0 or -t * x for x < 0, plus log1p(exp(-|x|)):
  // no subtraction of nearly equal terms where ce is small (t near 0 and x very negative, or t near
  // 1 and x large), where the logits loss's (1 - t) * x - log_sigmoid(x) loses digits to
  // cancellation, and where the gradients multiply ce by the large m ** (gamma - 1). The limits at
  // infinite logits are the logits loss's.
  BCE_EXT_HD static F cross_entropy(F x, F t, const Sigmoids& s) {
    const F linear = V::blend(V::ge(x, V::zero()), V::mul(V::neg(t), x),
                              V::mul(V::sub(V::set1(T(1)), t), x));
    const F ce = V::add(linear, MathV::log1p01(s.e));
    if (V::any(V::eq(V::abs(x), V::set1(T(__builtin_inf()))))) {
      return Logits::template at_infinity<false>(x, t, V::zero(), ce);
    }
    return ce;
  }

  // (At an infinite logit ce is the logits loss's limit, infinite only where m ** gamma is not 0.)
  template <bool kWithPw>
  BCE_EXT_HD static F loss(F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    const Sigmoids s = sigmoids(x);
    const F ce = cross_entropy(x, t, s);
    F l = V::mul(ce, power(one_minus_pt(t, s), k.gamma).value);
    if (k.alpha >= T(0)) l = V::mul(alpha_t(t, k.alpha), l);
    return l;
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_input(F g, F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    const Sigmoids s = sigmoids(x);
    const F one = V::set1(T(1));
    const F m = one_minus_pt(t, s);
    const Power pw = power(m, k.gamma);
    const F ce = cross_entropy(x, t, s);
    const F dm_dx = V::mul(V::sub(one, V::add(t, t)), V::mul(s.p, s.q));
    F d = V::add(V::mul(V::sub(s.p, t), pw.value), V::mul(ce, V::mul(pw.slope, dm_dx)));
    if (k.alpha >= T(0)) d = V::mul(alpha_t(t, k.alpha), d);
    return fix_nan(x, V::mul(d, g));
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_target(F g, F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    const Sigmoids s = sigmoids(x);
    const F one = V::set1(T(1));
    const F m = one_minus_pt(t, s);
    const Power pw = power(m, k.gamma);
    const F ce = cross_entropy(x, t, s);
    const F dm_dt = V::sub(one, V::add(s.p, s.p));
    F d = V::add(V::mul(V::neg(x), pw.value), V::mul(ce, V::mul(pw.slope, dm_dt)));
    if (k.alpha >= T(0)) {
      const F da_dt = V::set1(T(2) * k.alpha - T(1));
      d = V::add(V::mul(da_dt, V::mul(ce, pw.value)), V::mul(alpha_t(t, k.alpha), d));
    }
    return fix_nan(x, V::mul(d, g));
  }

  // The gradients at infinite logits: a NaN there comes from a 0 * inf of their terms, whose limit
  // is 0. (ge(v, v) is false exactly for NaN; the blend makes that a mask.)
  BCE_EXT_HD static F fix_nan(F x, F v) {
    const F one = V::set1(T(1));
    const M nan = V::eq(V::blend(V::ge(v, v), one, V::zero()), one);
    const M infinite = V::eq(V::abs(x), V::set1(T(__builtin_inf())));
    return V::blend(V::mand(infinite, nan), v, V::zero());
  }
};

}  // namespace bce_ext::losses
