#pragma once
// The sigmoid focal loss (Lin et al., RetinaNet; torchvision.ops.sigmoid_focal_loss): its element
// formulas, written once over a backend V and its Math (exp, log1p01, inv_one_plus, log_any;
// csrc/cpu/vec/ and csrc/cuda/cuda_math.cuh). See bce.h for the conventions; alpha and gamma come
// in the Coefficients' slots (Own).
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
// M = m ** gamma, dm/dx = (1 - 2t) p (1 - p), dm/dt = 1 - 2p, dM = gamma * M * dm / m):
//   gi = A * M * ((p - t) + gamma * C * (dm/dx / m)) * g
//   gt = M * (dA/dt * C + A * (-x + gamma * (C / m) * dm/dt)) * g
// dm/dx / m (at most 1 - 2t in size) and C / m (about 1 where m is small) are bounded where
// m ** (gamma - 1) overflows, so no inf * 0 arises at finite logits.
// Limits, beyond torchvision (where these are NaN): at p_t = 1 (m = 0) with gamma < 1, the
// derivative of m ** gamma is infinite while C and dm/dx vanish faster: the quotients count as 0
// there (the terms they enter are multiplied by M = 0, or by gamma = 0). At an infinite logit the
// loss is the logits loss's limit times m ** gamma (m = 1 - t at +inf, t at -inf), the input's
// gradient A * M * (p - t) (the C * dm/dx term vanishes), and the target's |x| * M *
// (dA/dt * m - sign(x) * (1 + gamma) * A): infinite with that sign, or 0 where it is 0.
// No range check (torchvision makes none).
#include "../bce_constants.h"
#include "bce_with_logits.h"
#include "coefficients.h"
#include "host_device.h"
#include "traits.h"

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

  // Its own scalars, from the drivers' slots (in Traits<SigmoidFocal>::Scalars' order).
  struct Own {
    T alpha, gamma;
  };
  BCE_EXT_HD static Own own(const Coefficients<T>& k) { return {k.v[0], k.v[1]}; }

  // p = sigmoid(x) and q = sigmoid(-x) = 1 - p, from e = exp(-|x|), each without cancellation:
  // sigmoid(|x|) = 1 / (1 + e) and sigmoid(-|x|) = e / (1 + e), as e times the first (one
  // reciprocal, not two divisions: on CUDA a division costs about 10 instructions, the
  // reciprocal of a number in [1, 2] 3).
  struct Sigmoids {
    F p, q, e;
  };
  BCE_EXT_HD static Sigmoids sigmoids(F x) {
    const F e = MathV::exp(V::neg(V::abs(x)));
    const F big = MathV::inv_one_plus(e);
    const F small = V::mul(e, big);
    const M nonneg = V::ge(x, V::zero());
    return {V::blend(nonneg, small, big), V::blend(nonneg, big, small), e};
  }

  // m ** gamma.
  BCE_EXT_HD static F power(F m, T gamma) {
    if (gamma == T(2)) return V::mul(m, m);  // the default first: one test on its path
    if (gamma == T(0)) return V::set1(T(1));
    if (gamma == T(1)) return m;
    return MathV::exp(V::mul(V::set1(gamma), MathV::log_any(m)));
  }

  // num / m, 0 where m = 0 (see the header: the terms it enters vanish there).
  BCE_EXT_HD static F over_m(F num, F m) {
    return V::blend(V::eq(m, V::zero()), V::div(num, m), V::zero());
  }

  // The lanes where x is +-inf (where the formulas' products meet inf * 0 and take limits).
  BCE_EXT_HD static M infinite(F x) { return V::eq(V::abs(x), V::set1(T(__builtin_inf()))); }

  // Where x is +-inf, the gradient's limit `at_inf`, else v.
  BCE_EXT_HD static F where_infinite(F x, F v, F at_inf) {
    return V::blend(infinite(x), v, at_inf);
  }

  // alpha_t = alpha * t + (1 - alpha) * (1 - t), 1 where alpha < 0 (one rounding fewer as an
  // FMA; the terms have one sign for alpha and t in [0, 1]).
  BCE_EXT_HD static F alpha_t(F t, T alpha) {
    return V::fma(V::set1(alpha), t, V::mul(V::set1(T(1) - alpha), V::sub(V::set1(T(1)), t)));
  }

  // m = 1 - p_t = t q + (1 - t) p (an FMA, as alpha_t).
  BCE_EXT_HD static F one_minus_pt(F t, const Sigmoids& s) {
    return V::fma(t, s.q, V::mul(V::sub(V::set1(T(1)), t), s.p));
  }

  // ce, BCE with logits, as (1 - t) * x for x >= 0 or -t * x for x < 0, plus log1p(exp(-|x|)):
  // no subtraction of nearly equal terms where ce is small (t near 0 and x very negative, or t near
  // 1 and x large), where the logits loss's (1 - t) * x - log_sigmoid(x) loses digits to
  // cancellation, and where the gradients multiply ce by the large m ** (gamma - 1). The limits at
  // infinite logits are the logits loss's.
  BCE_EXT_HD static F cross_entropy(F x, F t, const Sigmoids& s) {
    return cross_entropy_of(x, t, MathV::log1p01(s.e));
  }

  // The same from its tail log1p(exp(-|x|)) (a loss that needs the tail too computes it once).
  BCE_EXT_HD static F cross_entropy_of(F x, F t, F tail) {
    const F linear =
        V::blend(V::ge(x, V::zero()), V::mul(V::neg(t), x), V::mul(V::sub(V::set1(T(1)), t), x));
    const F ce = V::add(linear, tail);
    if (V::any(infinite(x))) {
      return Logits::template at_infinity<false>(x, t, V::zero(), ce);
    }
    return ce;
  }

  // (At an infinite logit ce is the logits loss's limit, infinite only where m ** gamma is not 0.)
  template <bool kWithPw>
  BCE_EXT_HD static F loss(F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    const Own o = own(k);
    const Sigmoids s = sigmoids(x);
    const F ce = cross_entropy(x, t, s);
    F l = V::mul(ce, power(one_minus_pt(t, s), o.gamma));
    if (o.alpha >= T(0)) l = V::mul(alpha_t(t, o.alpha), l);
    return l;
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_input(F g, F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    const Own o = own(k);
    const Sigmoids s = sigmoids(x);
    const F m = one_minus_pt(t, s);
    const F big_m = power(m, o.gamma);
    const F ce = cross_entropy(x, t, s);
    const F dm_dx = V::mul(V::sub(V::set1(T(1)), V::add(t, t)), V::mul(s.p, s.q));
    const F p_minus_t = V::sub(s.p, t);
    // M * dm/dx / m: M / m = m ** (gamma - 1) is m for gamma 2 and 1 for gamma 1 (and for gamma
    // 0, where gamma multiplies the term away), with no division; else M times the quotient.
    F dm_scaled;
    if (o.gamma == T(2)) {
      dm_scaled = V::mul(m, dm_dx);
    } else if (o.gamma == T(1) || o.gamma == T(0)) {
      dm_scaled = dm_dx;
    } else {
      dm_scaled = V::mul(big_m, over_m(dm_dx, m));
    }
    const F linear = V::mul(big_m, p_minus_t);
    F d = V::add(linear, V::mul(V::set1(o.gamma), V::mul(ce, dm_scaled)));
    if (V::any(infinite(x))) {
      d = where_infinite(x, d, linear);  // inf * 0 in the term that vanishes
    }
    if (o.alpha >= T(0)) d = V::mul(alpha_t(t, o.alpha), d);
    return V::mul(d, g);
  }

  template <bool kWithPw>
  BCE_EXT_HD static F grad_target(F g, F x, F t, F /*pw*/, const Coefficients<T>& k = {}) {
    const Own o = own(k);
    const Sigmoids s = sigmoids(x);
    const F one = V::set1(T(1));
    const F m = one_minus_pt(t, s);
    const F big_m = power(m, o.gamma);
    const F tail = MathV::log1p01(s.e);
    const F dm_dt = V::sub(s.q, s.p);
    const bool weighted = o.alpha >= T(0);
    const F a = weighted ? alpha_t(t, o.alpha) : one;
    const F da_dt = V::set1(weighted ? T(2) * o.alpha - T(1) : T(0));
    // The bracket dA/dt * C + A * (-x + gamma * (C / m) * dm/dt), with C = lin + tail (lin =
    // (1 - t) x for x >= 0, -t x below) and s = sigmoid(-|x|), regrouped so that its terms in x,
    // each about |x| and cancelling to about |x| * |c0 - t c1| where that is small, are summed
    // exactly first:
    //   x * ((c0 - t c1) + gamma A s / m) + tail * (dA/dt + gamma A dm/dt / m)
    // from (1 - t) dm/dt / m = -1 + s / m (x >= 0) and -t dm/dt / m = -1 + s / m (x < 0), with
    //   c0 = 3 alpha - 2 - gamma (1 - alpha) (x >= 0), (alpha - 1)(1 + gamma) (x < 0),
    //   c1 = (2 alpha - 1)(2 + gamma); without alpha (A = 1) c0 = -(1 + gamma), c1 = 0;
    //   s / m = e / (t e + 1 - t) (x >= 0), e / (t + (1 - t) e) (x < 0), e = exp(-|x|),
    // bounded (0 where its denominator is: there M = 0 or gamma = 0 takes the term away).
    const M nonneg = V::ge(x, V::zero());
    const T g1 = T(1) + o.gamma;
    const T c0_pos = weighted ? T(3) * o.alpha - T(2) - o.gamma * (T(1) - o.alpha) : -g1;
    const T c0_neg = weighted ? (o.alpha - T(1)) * g1 : -g1;
    const T c1 = weighted ? (T(2) * o.alpha - T(1)) * (T(2) + o.gamma) : T(0);
    const F slope =
        V::fma(V::neg(t), V::set1(c1), V::blend(nonneg, V::set1(c0_neg), V::set1(c0_pos)));
    const F one_minus_t = V::sub(one, t);
    const F den = V::blend(nonneg, V::fma(one_minus_t, s.e, t), V::fma(t, s.e, one_minus_t));
    // 1 / m = (1 + e) / den: one division serves s / m and tail / m, through r = 1 / (den K)
    // (K = 2^64, 2^512 for double: 1 / den overflows where den is tiny; s / m and tail / m,
    // both about e / den there, do not). tail / m, not dm/dt / m: the same reason.
    const F big = V::set1(T(sizeof(T) == 4 ? 0x1p64 : 0x1p512));
    const F r = V::blend(V::eq(den, V::zero()), V::div(one, V::mul(den, big)), V::zero());
    const F gamma_a = V::mul(V::set1(o.gamma), a);
    const F x_coef = V::add(slope, V::mul(gamma_a, V::mul(V::mul(s.e, big), r)));
    const F one_plus_e = V::add(one, s.e);
    const auto bracket = [&](F x_, F tail_) {
      const F tail_over_m = V::mul(V::mul(V::mul(tail_, big), one_plus_e), r);
      const F d = V::add(V::mul(da_dt, tail_), V::mul(gamma_a, V::mul(tail_over_m, dm_dt)));
      return V::fma(x_, x_coef, d);
    };
    F d = V::mul(big_m, bracket(x, tail));
    // |x| from which the terms are summed scaled down (below it they cannot overflow, for gamma
    // below 2^27); the infinite logits among those lanes take their limits.
    const M huge = V::ge(V::abs(x), V::set1(T(sizeof(T) == 4 ? 0x1p100 : 0x1p1000)));
    if (V::any(huge)) {
      // x * x_coef, up to about (1 + gamma) |x|, overflows where M times it does not (x = 2e38,
      // t = 0.5 in float32 once gave -inf for -8.75e37): computed scaled by 2^-64, exactly.
      const F down = V::set1(T(0x1p-64));
      const F scaled =
          V::mul(V::mul(big_m, bracket(V::mul(x, down), V::mul(tail, down))), V::set1(T(0x1p64)));
      d = V::blend(huge, d, scaled);
      if (V::any(infinite(x))) {
        // |x| * M * (dA/dt * m - sign(x) * (1 + gamma) * A): the sum of infinities above has no
        // value; its limit is this (m = 1 - t or t there).
        const F sign = V::blend(V::gt(x, V::zero()), V::set1(T(-1)), one);
        const F limit_bracket = V::sub(V::mul(da_dt, m), V::mul(sign, V::mul(V::set1(g1), a)));
        const F v = V::mul(big_m, limit_bracket);
        const F limit =
            V::blend(V::eq(v, V::zero()), V::mul(v, V::set1(T(__builtin_inf()))), V::zero());
        d = where_infinite(x, d, limit);
      }
    }
    return V::mul(d, g);
  }
};

// The op and its result: the promoted dtype (torchvision's chain of ops), laid out like the input.
template <>
struct Traits<SigmoidFocal> {
  static constexpr const char* kOp = "sigmoid_focal_loss";
  static constexpr const char* kNode = "SigmoidFocalLoss";
  static constexpr ResultDtype kResult = ResultDtype::kPromoted;
  static constexpr LaidOutLike kLayout = LaidOutLike::kInput;
  static constexpr int kTables = 0;
  static constexpr bool kLabelSmoothing = false;
  static constexpr bool kIgnoreIndex = true;
  static constexpr int kDefaultReduction = 0;
  using Scalars = std::tuple<double, double>;
  static constexpr const char* kScalars = "float alpha=0.25, float gamma=2.0";
  // Its scalars by name, from a call's slots (the host's checks and second derivatives).
  struct Params {
    double alpha, gamma;
  };
  template <class D>  // a template, as everything in these headers (bce.h says why)
  static constexpr Params params(const D* s) {
    return {s[0], s[1]};
  }

  // alpha may be anything finite (< 0 turns it off); BCE with logits times a factor: its checks.
  template <class Checks>
  static void check(Checks& c) {
    const Params p = params(c.scalars());
    c.target_size_as_logits();
    c.label_smoothing();
    c.finite_nonnegative("gamma", p.gamma);
    c.finite("alpha", p.alpha);
    c.logits_operands();
  }

  // L = A * C * M (A = alpha_t, linear in t, A_t its slope, 0 without alpha; C = BCE with logits;
  // M = m ** gamma, m = 1 - p_t = t q + (1 - t) p, p = sigmoid(x), q = 1 - p): gi = L_x g and
  // gt = L_t g, so the partials are L_x, L_t, and g times L_xx, L_xt, L_tt, from
  //   C_x = p - t, C_t = -x, C_xx = p q, C_xt = -1, C_tt = 0
  //   m_x = (1 - 2t) p q, m_t = 1 - 2p, m_xx = m_x (1 - 2p), m_xt = -2 p q, m_tt = 0
  //   M_u = gamma m ** (gamma - 1) m_u, M_uv = gamma (gamma - 1) m ** (gamma - 2) m_u m_v
  //                                            + gamma m ** (gamma - 1) m_uv
  //   L_x = A (C_x M + C M_x), L_t = A_t C M + A (C_t M + C M_t)
  //   L_xx = A (C_xx M + 2 C_x M_x + C M_xx), L_tt = 2 A_t (C_t M + C M_t) + A (2 C_t M_t + C M_tt)
  //   L_xt = A_t (C_x M + C M_x) + A (C_xt M + C_x M_t + C_t M_x + C M_xt)
  // A power m ** (gamma - k) that a zero coefficient multiplies is left out, and one that is
  // infinite at m = 0 counts as 0 there (the limits of the terms it enters, as in the first
  // derivatives).
  template <class Tn>
  static Tn partial(const Partial<Tn>& a) {
    const auto [alpha, gamma] = params(a.scalars);
    const Tn& x = a.x;
    const Tn& t = a.t;
    const Tn& g = a.g;
    const Tn p = x.sigmoid();
    const Tn q = (-x).sigmoid();
    const Tn C = binary_cross_entropy_with_logits(x, t, {}, {}, kReductionNone);
    const Tn m = t * q + (1 - t) * p;
    const Tn pq = p * q;
    const Tn m_x = (1 - 2 * t) * pq;
    const Tn m_t = 1 - 2 * p;
    // M and its derivatives; gamma = 0: M = 1, gamma = 1: no second-order power.
    const Tn M = gamma == 0.0 ? ones_like(m) : power_or_zero(m, gamma);
    const Tn d1 = gamma == 0.0 ? zeros_like(m) : gamma * power_or_zero(m, gamma - 1);
    const Tn d2 = (gamma == 0.0 || gamma == 1.0)
                      ? zeros_like(m)
                      : gamma * (gamma - 1) * power_or_zero(m, gamma - 2);
    const Tn M_x = d1 * m_x;
    const Tn M_t = d1 * m_t;
    const bool weighted = alpha >= 0.0;
    const Tn A = weighted ? alpha * t + (1 - alpha) * (1 - t) : ones_like(t);
    const double A_t = weighted ? 2 * alpha - 1 : 0.0;
    const Tn C_x = p - t;
    const Tn C_t = -x;
    auto L_xt = [&] {
      const Tn M_xt = d2 * m_x * m_t + d1 * (-2 * pq);
      return A_t * (C_x * M + C * M_x) + A * (-M + C_x * M_t + C_t * M_x + C * M_xt);
    };
    if (a.out == BackwardOutput::kGradInput) {
      switch (a.in) {
        case BackwardInput::kGradOutput:
          return A * (C_x * M + C * M_x);
        case BackwardInput::kInput: {
          const Tn M_xx = d2 * m_x * m_x + d1 * m_x * (1 - 2 * p);
          return g * A * (pq * M + 2 * C_x * M_x + C * M_xx);
        }
        case BackwardInput::kTarget:
          return g * L_xt();
      }
    }
    switch (a.in) {
      case BackwardInput::kGradOutput:
        return A_t * C * M + A * (C_t * M + C * M_t);
      case BackwardInput::kInput:
        return g * L_xt();
      case BackwardInput::kTarget: {
        const Tn M_tt = d2 * m_t * m_t;
        return g * (2 * A_t * (C_t * M + C * M_t) + A * (2 * C_t * M_t + C * M_tt));
      }
    }
    return Tn();
  }
};

}  // namespace bce_ext::losses
