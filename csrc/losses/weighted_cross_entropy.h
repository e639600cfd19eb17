#pragma once
// What the losses C * w share, C the cross entropy with logits and w a weight of p = sigmoid(x)
// and t through u = p - t: the varifocal loss (varifocal.h) and the quality focal loss
// (quality_focal.h). Nothing is detached (mmdetection's), so each gradient carries C times the
// weight's derivative. Written once over a backend V and its Math (see bce.h for the
// conventions). With C_x = u and u_x = p q:
//   gi = u * w + C * (dw/du) * p q
// dw/du counts as 0 where u = 0 (each loss's header says why). At x = +-inf, gi is its finite
// limit u * w (C * dw/dx is inf * 0 there), and the target gradient the limit of
// |x| * (-sign(x) * w + c * dw/dt), c = 1 - t at +inf and t at -inf: infinite with that sign, 0
// where it is 0.
#include "host_device.h"
#include "sigmoid_focal.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct WeightedCrossEntropy {
  using F = typename V::F;
  using M = typename V::M;
  using T = typename V::T;
  using Focal = SigmoidFocal<V, MathV>;

  // What every formula needs: p, q = 1 - p, C and its smooth part tail = log1p(exp(-|x|)),
  // u = p - t, and the loss's weight w and dw/du (which the loss sets).
  struct Terms {
    typename Focal::Sigmoids s;
    F tail, ce, u, w, dw_du;
  };

  // The terms of x and t but the weight's.
  BCE_EXT_HD static Terms of(F x, F t) {
    Terms r;
    r.s = Focal::sigmoids(x);
    r.tail = MathV::log1p01(r.s.e);
    r.ce = Focal::cross_entropy_of(x, t, r.tail);
    r.u = V::sub(r.s.p, t);
    return r;
  }

  // The derivative in u of f = c * |u| ** gamma: gamma * f / u (0 for gamma = 0, and where u = 0).
  BCE_EXT_HD static F slope(F f, F u, T gamma) {
    return gamma == T(0) ? V::zero() : V::mul(V::set1(gamma), Focal::over_m(f, u));
  }

  BCE_EXT_HD static F loss(const Terms& r) { return V::mul(r.ce, r.w); }

  BCE_EXT_HD static F grad_input(F g, F x, const Terms& r) {
    const F linear = V::mul(r.u, r.w);
    F d = V::add(linear, V::mul(r.ce, V::mul(r.dw_du, V::mul(r.s.p, r.s.q))));
    if (V::any(Focal::infinite(x))) d = Focal::where_infinite(x, d, linear);
    return V::mul(d, g);
  }

  // d, the target gradient's factor, where x is finite; its limit where x is +-inf.
  BCE_EXT_HD static F target_at_infinity(F x, F t, F d, const Terms& r, F dw_dt) {
    if (!V::any(Focal::infinite(x))) return d;
    const M plus = V::gt(x, V::zero());
    const F c = V::blend(plus, t, V::sub(V::set1(T(1)), t));
    const F v = V::add(V::blend(plus, r.w, V::neg(r.w)), V::mul(c, dw_dt));
    const F limit =
        V::blend(V::eq(v, V::zero()), V::mul(v, V::set1(T(__builtin_inf()))), V::zero());
    return Focal::where_infinite(x, d, limit);
  }
};

}  // namespace bce_ext::losses
