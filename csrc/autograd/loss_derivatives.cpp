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
#include "loss_derivatives.h"

#include "../bce_constants.h"

namespace bce_ext {
namespace {

// The constant PyTorch's double-backward formulas add (`auto eps = 1e-12;`, a double, in
// torch/csrc/autograd/FunctionsManual.cpp), unlike the float EPSILON of the first derivative.
constexpr double kDoubleBackwardEps = 1e-12;

bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

at::Tensor bce_partial(BackwardOutput out, BackwardInput in, const at::Tensor& g,
                       const at::Tensor& x, const at::Tensor& t) {
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

at::Tensor bce_with_logits_partial(BackwardOutput out, BackwardInput in, const at::Tensor& g,
                                   const at::Tensor& x, const at::Tensor& t,
                                   const std::optional<at::Tensor>& pos_weight) {
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

}  // namespace

at::Tensor backward_partial(const LossCall& c, BackwardOutput out, BackwardInput in,
                            const at::Tensor& g) {
  const at::Tensor& x = c.self;
  const double s = c.params.label_smoothing;
  const at::Tensor t = s != 0.0 ? c.target * (1 - s) + s / 2 : c.target;
  at::Tensor v = c.kind == LossKind::kBce ? bce_partial(out, in, g, x, t)
                                          : bce_with_logits_partial(out, in, g, x, t, c.pos_weight);
  if (!v.defined()) return v;
  // d ts / d t; grad_target is a derivative with respect to t too.
  if (s != 0.0 && (in == BackwardInput::kTarget || out == BackwardOutput::kGradTarget)) {
    v = v * (1 - s);
  }
  if (defined(c.weight)) v = v * c.weight->to(x.scalar_type());
  // sym_numel: under torch.compile with dynamic shapes N is symbolic.
  return c.reduction == kReductionMean ? v / c10::Scalar(x.sym_numel()) : v;
}

}  // namespace bce_ext
