#pragma once
// The quality focal loss (Li et al., Generalized Focal Loss; mmdetection's quality_focal_loss and
// quality_focal_loss_tensor_target), element by element: its formulas, written once over a backend
// V and its Math (see bce.h for the conventions). beta comes in the Coefficients' first slot.
//
// Python reference (mmdetection's, x logit, t target (the quality score, 0 for a negative); the
// sum over the classes, the per-row weight and the reduction are bce_ext/losses/
// quality_focal_loss.py's, over this op's element losses):
//   p    = sigmoid(x)
//   loss = binary_cross_entropy_with_logits(x, t, reduction="none") * |t - p| ** beta
// (mmdetection computes the negatives, t = 0, as BCE(x, 0) * p ** beta: the same value, and their
// target is a constant zero there, so the target's gradient is 0 where t = 0.) Nothing is
// detached: the gradients flow through |t - p| ** beta. With C the cross entropy (the focal
// loss's, sigmoid_focal.h, without cancellation), u = p - t, F = |u| ** beta, dF/du = beta F / u:
//   gi = u * F + C * (beta F / u) * p (1 - p)
//   gt = [t != 0] * (-x * F - C * beta F / u)
// beta F / u counts as 0 where u = 0 (its limit for beta >= 1; below, the limit 0 of C * dF/dx as
// u -> 0). At x = +-inf the loss is the logits loss's limit times F, gi its finite limit u * F, gt
// the limit of |x| * (-sign(x) * F - c * beta F / u), c = 1 - t at +inf and t at -inf (infinite
// with that sign, 0 where it is 0). No range check (mmdetection makes none).
#include "../bce_constants.h"
#include "coefficients.h"
#include "host_device.h"
#include "sigmoid_focal.h"
#include "traits.h"
#include "weighted_cross_entropy.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct QualityFocal {
  using F = typename V::F;
  using M = typename V::M;
  using T = typename V::T;
  using Focal = SigmoidFocal<V, MathV>;
  using Weighted = WeightedCrossEntropy<V, MathV>;

  static constexpr bool kChecksRange = false;
  static constexpr bool kHardPath = false;
  static constexpr bool kPosWeight = false;
  // Takes a weight (mmdetection's per-row weight, broadcast along the classes); no smoothing.
  static constexpr bool kTakesWeight = true;
  static constexpr bool kGradTargetUsesTarget = true;

  // Its own scalar, from the drivers' slots (Traits<QualityFocal>::Scalars).
  struct Own {
    T beta;
  };
  BCE_EXT_HD static Own own(const Coefficients<T>& k) { return {k.v[0]}; }

  // The shared terms (weighted_cross_entropy.h) with w = F = |u| ** beta and dw/du = beta * F / u.
  using Terms = typename Weighted::Terms;
  BCE_EXT_HD static Terms terms(F x, F t, const Own& o) {
    Terms r = Weighted::of(x, t);
    r.w = Focal::power(V::abs(r.u), o.beta);
    r.dw_du = Weighted::slope(r.w, r.u, o.beta);
    return r;
  }

  template <bool kWithPw>
  BCE_EXT_HD static F loss(F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    return Weighted::loss(terms(x, t, own(k)));
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_input(F g, F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    return Weighted::grad_input(g, x, terms(x, t, own(k)));
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_target(F g, F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    const Terms r = terms(x, t, own(k));
    const F d = V::sub(V::mul(V::neg(x), r.w), V::mul(r.ce, r.dw_du));
    // F_t = -dF/du; a negative's target is mmdetection's constant zero.
    return V::blend(V::eq(t, V::zero()),
                    V::mul(Weighted::target_at_infinity(x, t, d, r, V::neg(r.dw_du)), g),
                    V::zero());
  }
};

// The op and its result: the promoted dtype, laid out like the input (as the focal family). Its
// schema: quality_focal_loss(Tensor self, Tensor target, Tensor? weight=None, int reduction=1,
// float beta=2.0) -> Tensor, element by element (the classes' sum is the Python layer's).
template <>
struct Traits<QualityFocal> {
  static constexpr const char* kOp = "quality_focal_loss";
  static constexpr const char* kNode = "QualityFocalLoss";
  static constexpr ResultDtype kResult = ResultDtype::kPromoted;
  static constexpr LaidOutLike kLayout = LaidOutLike::kInput;
  static constexpr int kTables = 1;
  static constexpr bool kLabelSmoothing = false;
  static constexpr bool kIgnoreIndex = false;  // mmdetection's has none
  static constexpr int kDefaultReduction = 1;
  using Scalars = std::tuple<double>;
  static constexpr const char* kScalars = "float beta=2.0";
  // Its scalars by name, from a call's slots (the host's checks and second derivatives).
  struct Params {
    double beta;
  };
  template <class D>  // a template, as everything in these headers (bce.h says why)
  static constexpr Params params(const D* s) {
    return {s[0]};
  }

  // Beyond mmdetection, which takes any beta: |t - p| ** beta is for beta >= 0. BCE with logits
  // times a factor: its checks.
  template <class Checks>
  static void check(Checks& c) {
    const Params p = params(c.scalars());
    c.target_size_as_logits();
    c.finite_nonnegative("beta", p.beta);
    c.logits_operands();
  }

  // L = C * F (C = BCE with logits, F = |u| ** beta, u = p - t; L does not depend on t where
  // t = 0, mmdetection's constant zero there): with u_x = p q, u_t = -1, u_xx = p q (1 - 2p),
  //   F_x = F_u p q, F_t = -F_u, F_xx = F_uu (p q)^2 + F_u p q (1 - 2p), F_xt = -F_uu p q,
  //   F_tt = F_uu; L_x = u F + C F_x, L_t = -x F + C F_t, L_xx = p q F + 2 u F_x + C F_xx,
  //   L_xt = -F + u F_t - x F_x + C F_xt, L_tt = -2 x F_t + C F_tt (the last three and L_t are 0
  //   where t = 0).
  template <class Tn>
  static Tn partial(const Partial<Tn>& a) {
    const double beta = params(a.scalars).beta;
    const Tn& x = a.x;
    const Tn& t = a.t;
    const Tn& g = a.g;
    const Tn p = x.sigmoid();
    const Tn pq = p * (-x).sigmoid();
    const Tn C = binary_cross_entropy_with_logits(x, t, {}, {}, kReductionNone);
    const Tn u = p - t;
    const Tn au = u.abs();
    const Tn zero = zeros_like(x);
    const Tn negative = t == 0;
    // F and its derivatives in u (0 where a power is infinite at u = 0: the limits the first
    // derivatives take).
    const Tn F = beta == 0.0 ? ones_like(au) : power_or_zero(au, beta);
    const Tn F_u = beta == 0.0 ? zero : beta * power_or_zero(au, beta - 1) * u.sign();
    const Tn F_uu =
        (beta == 0.0 || beta == 1.0) ? zero : beta * (beta - 1) * power_or_zero(au, beta - 2);
    const Tn F_x = F_u * pq;
    auto L_xt = [&] { return where(negative, zero, -F - u * F_u - x * F_x - C * F_uu * pq); };
    if (a.out == BackwardOutput::kGradInput) {
      switch (a.in) {
        case BackwardInput::kGradOutput:
          return u * F + C * F_x;
        case BackwardInput::kInput: {
          const Tn F_xx = F_uu * pq * pq + F_u * pq * (1 - 2 * p);
          return g * (pq * F + 2 * u * F_x + C * F_xx);
        }
        case BackwardInput::kTarget:
          return g * L_xt();
      }
    }
    switch (a.in) {
      case BackwardInput::kGradOutput:
        return where(negative, zero, -x * F - C * F_u);
      case BackwardInput::kInput:
        return g * L_xt();
      case BackwardInput::kTarget:
        return g * where(negative, zero, 2 * x * F_u + C * F_uu);
    }
    return Tn();
  }
};

}  // namespace bce_ext::losses
