#pragma once
// The varifocal loss (Zhang et al., VarifocalNet; mmdetection's varifocal_loss): its element
// formulas, written once over a backend V and its Math (see bce.h for the conventions). alpha,
// gamma and iou_weighted come in the Coefficients' slots (Own).
//
// Python reference (mmdetection's, x logit, t target (an IoU score, 0 for a negative), g incoming
// gradient; the weight and the 1/N of 'mean' are applied by the loops):
//   p    = sigmoid(x)
//   w    = (t if iou_weighted else 1) where t > 0, else alpha * |p - t| ** gamma
//   loss = binary_cross_entropy_with_logits(x, t, reduction="none") * w
// Nothing is detached (mmdetection's): the gradients flow through w too. With C the cross entropy
// (computed as the focal loss's, sigmoid_focal.h, without cancellation), u = p - t, and on the
// negatives F = alpha * |u| ** gamma, dF/du = gamma * F / u:
//   gi = (p - t) * w + C * [t <= 0] * gamma * (F / u) * p (1 - p)
//   gt = -x * w + C * ([t > 0] * iou_weighted - [t <= 0] * gamma * F / u)
// (on the positives with iou_weighted, -x t + C summed without cancellation: see grad_target).
// F / u counts as 0 where u = 0 (its limit for gamma >= 1; for gamma < 1 torch's chain gives NaN
// there, and the limit 0 of C * dF/dx as u -> 0 is taken instead). At x = +-inf the loss is the
// logits loss's limit times w, gi its finite limit (p - t) * w, and gt the limit of
// |x| * (-sign(x) * w + c * dw/dt), c = 1 - t at +inf and t at -inf (infinite with that sign, 0
// where it is 0). No range check (mmdetection makes none).
#include "../bce_constants.h"
#include "coefficients.h"
#include "host_device.h"
#include "sigmoid_focal.h"
#include "traits.h"
#include "weighted_cross_entropy.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct Varifocal {
  using F = typename V::F;
  using M = typename V::M;
  using T = typename V::T;
  using Focal = SigmoidFocal<V, MathV>;
  using Weighted = WeightedCrossEntropy<V, MathV>;

  static constexpr bool kChecksRange = false;
  static constexpr bool kHardPath = false;
  static constexpr bool kPosWeight = false;
  // Takes a weight (mmdetection's; its schema has no label smoothing, which stays 0).
  static constexpr bool kTakesWeight = true;
  static constexpr bool kGradTargetUsesTarget = true;

  // Its own scalars, from the drivers' slots (in Traits<Varifocal>::Scalars' order).
  struct Own {
    T alpha, gamma;
    bool iou_weighted;
  };
  BCE_EXT_HD static Own own(const Coefficients<T>& k) { return {k.v[0], k.v[1], k.v[2] != T(0)}; }

  // The shared terms (weighted_cross_entropy.h) with w and, on the negatives, dw/du = gamma * F /
  // u (0 on the positives), and the positives' mask.
  struct Terms : Weighted::Terms {
    M positive;
  };
  BCE_EXT_HD static Terms terms(F x, F t, const Own& o) {
    Terms r{Weighted::of(x, t), {}};
    r.positive = V::gt(t, V::zero());
    const F f = V::mul(V::set1(o.alpha), Focal::power(V::abs(r.u), o.gamma));
    r.w = V::blend(r.positive, f, o.iou_weighted ? t : V::set1(T(1)));
    r.dw_du = V::blend(r.positive, Weighted::slope(f, r.u, o.gamma), V::zero());
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
    const Own o = own(k);
    const Terms r = terms(x, t, o);
    // dw/dt: iou_weighted on the positives, -dF/du on the negatives.
    const F dw_dt = V::blend(r.positive, V::neg(r.dw_du), V::set1(o.iou_weighted ? T(1) : T(0)));
    F d = V::add(V::mul(V::neg(x), r.w), V::mul(r.ce, dw_dt));
    if (o.iou_weighted) {
      // On the positives -x t + C, whose terms cancel near t = 1/2 at large |x|: summed as
      // (1 - 2t) x for x >= 0, -2t x for x < 0, plus C's tail, without the cancellation.
      const F two_t = V::add(t, t);
      const F factor = V::blend(V::ge(x, V::zero()), V::neg(two_t), V::sub(V::set1(T(1)), two_t));
      d = V::blend(r.positive, d, V::add(V::mul(factor, x), r.tail));
    }
    return V::mul(Weighted::target_at_infinity(x, t, d, r, dw_dt), g);
  }
};

// The op and its result: the promoted dtype, laid out like the input (as the focal loss). Its
// schema: varifocal_loss(Tensor self, Tensor target, Tensor? weight=None, int reduction=1,
// float alpha=0.75, float gamma=2.0, bool iou_weighted=True) -> Tensor.
template <>
struct Traits<Varifocal> {
  static constexpr const char* kOp = "varifocal_loss";
  static constexpr const char* kNode = "VarifocalLoss";
  static constexpr ResultDtype kResult = ResultDtype::kPromoted;
  static constexpr LaidOutLike kLayout = LaidOutLike::kInput;
  static constexpr int kTables = 1;
  static constexpr bool kLabelSmoothing = false;
  static constexpr bool kIgnoreIndex = true;
  static constexpr int kDefaultReduction = 1;
  using Scalars = std::tuple<double, double, bool>;
  static constexpr const char* kScalars =
      "float alpha=0.75, float gamma=2.0, bool iou_weighted=True";
  // Its scalars by name, from a call's slots (the host's checks and second derivatives).
  struct Params {
    double alpha, gamma;
    bool iou_weighted;
  };
  template <class D>  // a template, as everything in these headers (bce.h says why)
  static constexpr Params params(const D* s) {
    return {s[0], s[1], s[2] != 0};
  }

  // Beyond mmdetection, whose module asserts alpha >= 0 and whose function takes anything: the
  // negatives' weight alpha * |p - t| ** gamma is for alpha >= 0. BCE with logits times a
  // factor: its checks.
  template <class Checks>
  static void check(Checks& c) {
    const Params p = params(c.scalars());
    c.target_size_as_logits();
    c.finite_nonnegative("gamma", p.gamma);
    c.finite_nonnegative("alpha", p.alpha);
    c.logits_operands();
  }

  // L = C * w (C = BCE with logits; w = t or 1 where t > 0, else F = alpha |u| ** gamma,
  // u = p - t; its masks are constant pieces): with u_x = p q, u_t = -1, u_xx = p q (1 - 2p),
  //   w_x = F_u p q, w_t = -F_u, w_xx = F_uu (p q)^2 + F_u p q (1 - 2p), w_xt = -F_uu p q,
  //   w_tt = F_uu on the negatives; w_t = iou_weighted and the rest 0 on the positives;
  //   L_x = C_x w + C w_x, L_t = C_t w + C w_t, L_xx = C_xx w + 2 C_x w_x + C w_xx,
  //   L_xt = C_xt w + C_x w_t + C_t w_x + C w_xt, L_tt = 2 C_t w_t + C w_tt.
  template <class Tn>
  static Tn partial(const Partial<Tn>& a) {
    const auto [alpha, gamma, iou_weighted] = params(a.scalars);
    const Tn& x = a.x;
    const Tn& t = a.t;
    const Tn& g = a.g;
    const Tn p = x.sigmoid();
    const Tn pq = p * (-x).sigmoid();
    const Tn C = binary_cross_entropy_with_logits(x, t, {}, {}, kReductionNone);
    const Tn u = p - t;
    const Tn au = u.abs();
    const Tn positive = t > 0;
    const Tn zero = zeros_like(x);
    // F = alpha |u| ** gamma on the negatives, and its derivatives in u (0 where a power is
    // infinite at u = 0: the limits the first derivatives take).
    const Tn F = alpha * (gamma == 0.0 ? ones_like(au) : power_or_zero(au, gamma));
    const Tn F_u = gamma == 0.0 ? zero : alpha * gamma * power_or_zero(au, gamma - 1) * u.sign();
    const Tn F_uu = (gamma == 0.0 || gamma == 1.0)
                        ? zero
                        : alpha * gamma * (gamma - 1) * power_or_zero(au, gamma - 2);
    // w and its derivatives: (t or 1) on the positives, F(p - t) on the negatives.
    const Tn w = where(positive, iou_weighted ? t : ones_like(t), F);
    const Tn w_t = where(positive, iou_weighted ? 1.0 : 0.0, -F_u);
    const Tn w_x = where(positive, zero, F_u * pq);
    auto w_xt = [&] { return where(positive, zero, -F_uu * pq); };
    auto L_xt = [&] { return -w + (p - t) * w_t - x * w_x + C * w_xt(); };
    if (a.out == BackwardOutput::kGradInput) {
      switch (a.in) {
        case BackwardInput::kGradOutput:
          return (p - t) * w + C * w_x;
        case BackwardInput::kInput: {
          const Tn w_xx = where(positive, zero, F_uu * pq * pq + F_u * pq * (1 - 2 * p));
          return g * (pq * w + 2 * (p - t) * w_x + C * w_xx);
        }
        case BackwardInput::kTarget:
          return g * L_xt();
      }
    }
    switch (a.in) {
      case BackwardInput::kGradOutput:
        return -x * w + C * w_t;
      case BackwardInput::kInput:
        return g * L_xt();
      case BackwardInput::kTarget:
        return g * (-2 * x * w_t + C * where(positive, zero, F_uu));
    }
    return Tn();
  }
};

}  // namespace bce_ext::losses
