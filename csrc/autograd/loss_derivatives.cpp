// Second derivatives of every loss (see loss_derivatives.h): each loss's own partials
// (Traits<L>::partial, in its header), then what every loss shares.
//
// Python reference (d = N for 'mean' else 1, or with an ignore_index the count of elements whose
// target is not it; w the weight; s the label smoothing, ts = t * (1 - s) + s / 2 the target the
// formulas see, so d/dt carries a factor 1 - s):
//   partial = Traits<L>::partial(out, in, g, x, ts)
//   partial * (1 - s) [in is the target] * (1 - s) [out is grad_target] * w / d
//   where(t == ignore_index, 0, that)
#include "loss_derivatives.h"

#include "../bce_constants.h"
#include "../loss_prepare.h"

namespace bce_ext {
namespace {

bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

}  // namespace

at::Tensor backward_partial(const LossCall& c, BackwardOutput out, BackwardInput in,
                            const at::Tensor& g) {
  const at::Tensor& x = c.self;
  const double s = c.params.label_smoothing;
  const at::Tensor t = s != 0.0 ? c.target * (1 - s) + s / 2 : c.target;
  const losses::Partial<at::Tensor> args{
      out, in, g, x, t, defined(c.pos_weight) ? &*c.pos_weight : nullptr, c.params.scalars};
  at::Tensor v =
      visit_loss(c.kind, [&](auto loss) { return decltype(loss)::Traits::partial(args); });
  if (!v.defined()) return v;
  // d ts / d t, once for a derivative with respect to t and once for grad_target, itself one.
  if (s != 0.0) {
    if (in == BackwardInput::kTarget) v = v * (1 - s);
    if (out == BackwardOutput::kGradTarget) v = v * (1 - s);
  }
  if (defined(c.weight)) v = v * c.weight->to(x.scalar_type());
  if (c.params.ignore) {
    // 0 at the ignored elements whatever their operands; 'mean' divides by the others' count.
    v = at::where(c.target == c.params.ignore_value, at::zeros({}, v.options()), v);
    if (c.reduction == kReductionMean) {
      return v / mean_divisor(c);
    }
  }
  // sym_numel: under torch.compile with dynamic shapes N is symbolic.
  return c.reduction == kReductionMean ? v / c10::Scalar(x.sym_numel()) : v;
}

}  // namespace bce_ext
