// Second derivatives of binary cross entropy (see bce_derivatives.h).
//
// Python reference (d = N for 'mean' else 1; eps = 1e-12 is *added* here, as PyTorch's
// binary_cross_entropy_double_backward{,_grad_output,_target} in FunctionsManual.cpp do, unlike
// the max-clamp of the first derivative; grad_target = -logit(x) * g * w / d, differentiated):
//   d grad_input  / d g = (x - t) / ((x + eps) * (1 - x + eps)) * w / d
//   d grad_input  / d x = g * (x*x - 2*x*t + t) / ((x + eps)**2 * (1 - x + eps)**2) * w / d
//   d grad_input  / d t = -g / clamp_min((1 - x) * x, eps) * w / d
//   d grad_target / d g = -logit(x) * w / d
//   d grad_target / d x = -g / (x * (1 - x)) * w / d
#include "bce_derivatives.h"

#include "../bce_constants.h"

namespace bce_ext {
namespace {

// The constant PyTorch's double-backward formulas add (`auto eps = 1e-12;`, a double, in
// torch/csrc/autograd/FunctionsManual.cpp), unlike the float EPSILON of the first derivative.
constexpr double kDoubleBackwardEps = 1e-12;

}  // namespace

at::Tensor backward_partial(BackwardOutput out, BackwardInput in, const at::Tensor& g,
                            const at::Tensor& x, const at::Tensor& t,
                            const std::optional<at::Tensor>& weight, int64_t reduction) {
  const double eps = kDoubleBackwardEps;
  const at::Tensor one_minus_x = at::rsub(x, 1);
  at::Tensor v;
  if (out == BackwardOutput::kGradInput) {
    switch (in) {
      case BackwardInput::kGradOutput:
        v = (x - t) / ((x + eps) * (one_minus_x + eps));
        break;
      case BackwardInput::kInput:
        v = g * (x * x - 2 * x * t + t) / ((x + eps).pow(2) * (one_minus_x + eps).pow(2));
        break;
      case BackwardInput::kTarget:
        v = -g / (one_minus_x * x).clamp_min(eps);
        break;
    }
  } else {
    switch (in) {
      case BackwardInput::kGradOutput:
        v = -at::logit(x);
        break;
      case BackwardInput::kInput:
        v = -g / (x * one_minus_x);
        break;
      case BackwardInput::kTarget:
        return at::Tensor();
    }
  }
  if (weight.has_value() && weight->defined()) v = v * weight->to(x.scalar_type());
  // sym_numel: under torch.compile with dynamic shapes N is symbolic.
  return reduction == kReductionMean ? v / c10::Scalar(x.sym_numel()) : v;
}

}  // namespace bce_ext
