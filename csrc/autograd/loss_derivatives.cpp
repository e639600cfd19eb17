// Second derivatives of every loss (see loss_derivatives.h).
//
// Python reference (d = N for 'mean' else 1; w the weight; s the label smoothing, ts = t * (1 - s)
// + s / 2 the target the formulas see, so d/dt carries a factor 1 - s).
//
// BCE: PyTorch's binary_cross_entropy_double_backward{,_grad_output,_target} (FunctionsManual.cpp;
// eps = 1e-12 *added* there, unlike the max-clamp of the first derivative), and the derivatives of
// grad_target = -logit(x) * g * w / d:
//   d gi / d g = (x - ts) / ((x + eps) * (1 - x + eps)) * w / d
//   d gi / d x = g * (x*x - 2*x*ts + ts) / ((x + eps)**2 * (1 - x + eps)**2) * w / d
//   d gi / d t = -g / clamp_min((1 - x) * x, eps) * w / d * (1 - s)
//   d gt / d g = -logit(x) * w / d * (1 - s)
//   d gt / d x = -g / (x * (1 - x)) * w / d * (1 - s)
// BCE with logits (sigma = sigmoid(x), c = pw * ts + 1 - ts; without pw, pw = 1): the derivatives
// of gi = (c * sigma - pw * ts) * g * w / d and gt = (-x - (pw - 1) * log_sigmoid(x)) * g * w / d:
//   d gi / d g = (c * sigma - pw * ts) * w / d
//   d gi / d x = c * sigma * (1 - sigma) * g * w / d
//   d gi / d t = ((pw - 1) * sigma - pw) * g * w / d * (1 - s)
//   d gt / d g = (-x - (pw - 1) * log_sigmoid(x)) * w / d * (1 - s)
//   d gt / d x = (-1 - (pw - 1) * (1 - sigma)) * g * w / d * (1 - s)
// Sigmoid focal loss L = A * C * M (A = alpha_t, linear in t, A_t its slope, 0 without alpha;
// C = BCE with logits; M = m ** gamma, m = 1 - p_t = t q + (1 - t) p, p = sigmoid(x), q = 1 - p):
// gi = L_x g and gt = L_t g, so the partials are L_x, L_t, and g times L_xx, L_xt, L_tt, from
//   C_x = p - t, C_t = -x, C_xx = p q, C_xt = -1, C_tt = 0
//   m_x = (1 - 2t) p q, m_t = 1 - 2p, m_xx = m_x (1 - 2p), m_xt = -2 p q, m_tt = 0
//   M_u = gamma m ** (gamma - 1) m_u, M_uv = gamma (gamma - 1) m ** (gamma - 2) m_u m_v
//                                            + gamma m ** (gamma - 1) m_uv
//   L_x = A (C_x M + C M_x), L_t = A_t C M + A (C_t M + C M_t)
//   L_xx = A (C_xx M + 2 C_x M_x + C M_xx), L_tt = 2 A_t (C_t M + C M_t) + A (2 C_t M_t + C M_tt)
//   L_xt = A_t (C_x M + C M_x) + A (C_xt M + C_x M_t + C_t M_x + C M_xt)
// A power m ** (gamma - k) that a zero coefficient multiplies is left out, and one that is infinite
// at m = 0 counts as 0 there (the limits of the terms it enters, as in the first derivatives).
// Varifocal loss L = C * w (w = t or 1 where t > 0, else F = alpha |u| ** gamma, u = p - t; its
// masks are constant pieces): with u_x = p q, u_t = -1, u_xx = p q (1 - 2p),
//   w_x = F_u p q, w_t = -F_u, w_xx = F_uu (p q)^2 + F_u p q (1 - 2p), w_xt = -F_uu p q,
//   w_tt = F_uu on the negatives; w_t = iou_weighted and the rest 0 on the positives;
//   L_x = C_x w + C w_x, L_t = C_t w + C w_t, L_xx = C_xx w + 2 C_x w_x + C w_xx,
//   L_xt = C_xt w + C_x w_t + C_t w_x + C w_xt, L_tt = 2 C_t w_t + C w_tt.
#include "loss_derivatives.h"

#include "../bce_constants.h"

namespace bce_ext {
namespace {

// The constant PyTorch's double-backward formulas add (`auto eps = 1e-12;`, a double, in
// torch/csrc/autograd/FunctionsManual.cpp), unlike the float EPSILON of the first derivative.
constexpr double kDoubleBackwardEps = 1e-12;

bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

at::Tensor partial(Loss<losses::Bce>, const LossCall&, BackwardOutput out, BackwardInput in,
                   const at::Tensor& g, const at::Tensor& x, const at::Tensor& t) {
  const double eps = kDoubleBackwardEps;
  const at::Tensor one_minus_x = at::rsub(x, 1);
  if (out == BackwardOutput::kGradInput) {
    switch (in) {
      case BackwardInput::kGradOutput:
        return (x - t) / ((x + eps) * (one_minus_x + eps));
      case BackwardInput::kInput:
        return g * (x * x - 2 * x * t + t) / ((x + eps).pow(2) * (one_minus_x + eps).pow(2));
      case BackwardInput::kTarget:
        return -g / (one_minus_x * x).clamp_min(eps);
    }
  }
  switch (in) {
    case BackwardInput::kGradOutput:
      return -at::logit(x);
    case BackwardInput::kInput:
      return -g / (x * one_minus_x);
    case BackwardInput::kTarget:
      break;
  }
  return at::Tensor();
}

at::Tensor partial(Loss<losses::BceWithLogits>, const LossCall& c, BackwardOutput out,
                   BackwardInput in, const at::Tensor& g, const at::Tensor& x,
                   const at::Tensor& t) {
  const std::optional<at::Tensor>& pos_weight = c.pos_weight;
  const at::Tensor sigma = x.sigmoid();
  const bool pw = defined(pos_weight);
  if (out == BackwardOutput::kGradInput) {
    const at::Tensor pt = pw ? *pos_weight * t : t;
    const at::Tensor c = pw ? pt + 1 - t : at::ones_like(t);
    switch (in) {
      case BackwardInput::kGradOutput:
        return c * sigma - pt;
      case BackwardInput::kInput:
        return c * sigma * (1 - sigma) * g;
      case BackwardInput::kTarget:
        return pw ? ((*pos_weight - 1) * sigma - *pos_weight) * g : -g * at::ones_like(x);
    }
  }
  switch (in) {
    case BackwardInput::kGradOutput:
      return pw ? -x - (*pos_weight - 1) * at::log_sigmoid(x) : -x;
    case BackwardInput::kInput:
      return pw ? (-1 - (*pos_weight - 1) * (1 - sigma)) * g : -g * at::ones_like(x);
    case BackwardInput::kTarget:
      break;
  }
  return at::Tensor();
}

// m ** e for m >= 0, with 0 where m = 0 and e < 0 (see above).
at::Tensor power(const at::Tensor& m, double e) {
  const at::Tensor v = m.pow(e);
  return e < 0 ? at::where(m > 0, v, at::zeros_like(v)) : v;
}

at::Tensor partial(Loss<losses::SigmoidFocal>, const LossCall& c, BackwardOutput out,
                   BackwardInput in, const at::Tensor& g, const at::Tensor& x,
                   const at::Tensor& t) {
  const auto [alpha, gamma] = losses::Traits<losses::SigmoidFocal>::params(c.params.scalars);
  const at::Tensor p = x.sigmoid();
  const at::Tensor q = (-x).sigmoid();
  const at::Tensor C =
      at::binary_cross_entropy_with_logits(x, t, std::nullopt, std::nullopt, kReductionNone);
  const at::Tensor m = t * q + (1 - t) * p;
  const at::Tensor pq = p * q;
  const at::Tensor m_x = (1 - 2 * t) * pq;
  const at::Tensor m_t = 1 - 2 * p;
  // M and its derivatives; gamma = 0: M = 1, gamma = 1: no second-order power.
  const at::Tensor M = gamma == 0.0 ? at::ones_like(m) : power(m, gamma);
  const at::Tensor d1 = gamma == 0.0 ? at::zeros_like(m) : gamma * power(m, gamma - 1);
  const at::Tensor d2 = (gamma == 0.0 || gamma == 1.0) ? at::zeros_like(m)
                                                       : gamma * (gamma - 1) * power(m, gamma - 2);
  const at::Tensor M_x = d1 * m_x;
  const at::Tensor M_t = d1 * m_t;
  const bool weighted = alpha >= 0.0;
  const at::Tensor A = weighted ? alpha * t + (1 - alpha) * (1 - t) : at::ones_like(t);
  const double A_t = weighted ? 2 * alpha - 1 : 0.0;
  const at::Tensor C_x = p - t;
  const at::Tensor C_t = -x;
  const at::Tensor L_x = A * (C_x * M + C * M_x);
  auto L_xt = [&] {
    const at::Tensor M_xt = d2 * m_x * m_t + d1 * (-2 * pq);
    return A_t * (C_x * M + C * M_x) + A * (-M + C_x * M_t + C_t * M_x + C * M_xt);
  };
  if (out == BackwardOutput::kGradInput) {
    switch (in) {
      case BackwardInput::kGradOutput:
        return L_x;
      case BackwardInput::kInput: {
        const at::Tensor M_xx = d2 * m_x * m_x + d1 * m_x * (1 - 2 * p);
        return g * A * (pq * M + 2 * C_x * M_x + C * M_xx);
      }
      case BackwardInput::kTarget:
        return g * L_xt();
    }
  }
  switch (in) {
    case BackwardInput::kGradOutput:
      return A_t * C * M + A * (C_t * M + C * M_t);
    case BackwardInput::kInput:
      return g * L_xt();
    case BackwardInput::kTarget: {
      const at::Tensor M_tt = d2 * m_t * m_t;
      return g * (2 * A_t * (C_t * M + C * M_t) + A * (2 * C_t * M_t + C * M_tt));
    }
  }
  return at::Tensor();
}

at::Tensor partial(Loss<losses::Varifocal>, const LossCall& c, BackwardOutput out, BackwardInput in,
                   const at::Tensor& g, const at::Tensor& x, const at::Tensor& t) {
  const auto [alpha, gamma, iou_weighted] =
      losses::Traits<losses::Varifocal>::params(c.params.scalars);
  const at::Tensor p = x.sigmoid();
  const at::Tensor pq = p * (-x).sigmoid();
  const at::Tensor C =
      at::binary_cross_entropy_with_logits(x, t, std::nullopt, std::nullopt, kReductionNone);
  const at::Tensor u = p - t;
  const at::Tensor au = u.abs();
  const at::Tensor positive = t > 0;
  const at::Tensor zero = at::zeros_like(x);
  // F = alpha |u| ** gamma on the negatives, and its derivatives in u (0 where a power is
  // infinite at u = 0: the limits the first derivatives take).
  const at::Tensor F = alpha * (gamma == 0.0 ? at::ones_like(au) : power(au, gamma));
  const at::Tensor F_u = gamma == 0.0 ? zero : alpha * gamma * power(au, gamma - 1) * u.sign();
  const at::Tensor F_uu =
      (gamma == 0.0 || gamma == 1.0) ? zero : alpha * gamma * (gamma - 1) * power(au, gamma - 2);
  // w and its derivatives: (t or 1) on the positives, F(p - t) on the negatives.
  const at::Tensor w = at::where(positive, iou_weighted ? t : at::ones_like(t), F);
  const at::Tensor w_t = at::where(positive, iou_weighted ? 1.0 : 0.0, -F_u);
  const at::Tensor w_x = at::where(positive, zero, F_u * pq);
  auto w_xt = [&] { return at::where(positive, zero, -F_uu * pq); };
  auto L_xt = [&] { return -w + (p - t) * w_t - x * w_x + C * w_xt(); };
  if (out == BackwardOutput::kGradInput) {
    switch (in) {
      case BackwardInput::kGradOutput:
        return (p - t) * w + C * w_x;
      case BackwardInput::kInput: {
        const at::Tensor w_xx = at::where(positive, zero, F_uu * pq * pq + F_u * pq * (1 - 2 * p));
        return g * (pq * w + 2 * (p - t) * w_x + C * w_xx);
      }
      case BackwardInput::kTarget:
        return g * L_xt();
    }
  }
  switch (in) {
    case BackwardInput::kGradOutput:
      return -x * w + C * w_t;
    case BackwardInput::kInput:
      return g * L_xt();
    case BackwardInput::kTarget:
      return g * (-2 * x * w_t + C * at::where(positive, zero, F_uu));
  }
  return at::Tensor();
}

}  // namespace

at::Tensor backward_partial(const LossCall& c, BackwardOutput out, BackwardInput in,
                            const at::Tensor& g) {
  const at::Tensor& x = c.self;
  const double s = c.params.label_smoothing;
  const at::Tensor t = s != 0.0 ? c.target * (1 - s) + s / 2 : c.target;
  at::Tensor v = visit_loss(c.kind, [&](auto loss) { return partial(loss, c, out, in, g, x, t); });
  if (!v.defined()) return v;
  // d ts / d t, once for a derivative with respect to t and once for grad_target, itself one.
  if (s != 0.0) {
    if (in == BackwardInput::kTarget) v = v * (1 - s);
    if (out == BackwardOutput::kGradTarget) v = v * (1 - s);
  }
  if (defined(c.weight)) v = v * c.weight->to(x.scalar_type());
  // sym_numel: under torch.compile with dynamic shapes N is symbolic.
  return c.reduction == kReductionMean ? v / c10::Scalar(x.sym_numel()) : v;
}

}  // namespace bce_ext
