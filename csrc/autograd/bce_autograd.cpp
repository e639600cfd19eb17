// Autograd of both ops, in C++ so that an eager training step pays no Python on the way
// (the Python autograd.Function in bce_ext/_ops.py serves torch.func transforms and forward mode).
//
// Python reference of the second derivatives (PyTorch's binary_cross_entropy_double_backward,
// _double_backward_grad_output and _double_backward_target in FunctionsManual.cpp for gi; the
// derivatives of -logit(x) * g * w / d for gt; eps = 1e-12 is added, not max-clamped):
//   dgi/dg = (x - t) / ((x + eps) * (1 - x + eps)) * w / d
//   dgi/dx = g * (x*x - 2*x*t + t) / ((x + eps)**2 * (1 - x + eps)**2) * w / d
//   dgi/dt = -g / clamp_min((1 - x) * x, eps) * w / d
//   dgt/dg = -logit(x) * w / d
//   dgt/dx = -g / (x * (1 - x)) * w / d
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "../bce_constants.h"

namespace bce_ext {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The constant PyTorch's double-backward formulas add (`auto eps = 1e-12;`, a double, in
// torch/csrc/autograd/FunctionsManual.cpp), unlike the float EPSILON of the first derivative.
constexpr double kDoubleBackwardEps = 1e-12;

constexpr const char* kWeightGradError =
    "The function 'binary_cross_entropy' is not differentiable with respect to argument "
    "'weight'. This input cannot have requires_grad True.";

at::Tensor call_forward(const at::Tensor& self, const at::Tensor& target,
                        const std::optional<at::Tensor>& weight, int64_t reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("bce_ext::binary_cross_entropy", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                         const std::optional<at::Tensor>&, int64_t)>();
  return op.call(self, target, weight, reduction);
}

std::tuple<at::Tensor, at::Tensor> call_backward(const at::Tensor& grad, const at::Tensor& self,
                                                 const at::Tensor& target,
                                                 const std::optional<at::Tensor>& weight,
                                                 int64_t reduction, std::array<bool, 2> mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("bce_ext::binary_cross_entropy_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const std::optional<at::Tensor>&, int64_t, std::array<bool, 2>)>();
  return op.call(grad, self, target, weight, reduction, mask);
}

std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

class BackwardFunction : public torch::autograd::Function<BackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad,
                               const at::Tensor& self, const at::Tensor& target,
                               const std::optional<at::Tensor>& weight, int64_t reduction,
                               std::array<bool, 2> mask) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gi, gt] = call_backward(grad, self, target, weight, reduction, mask);
    ctx->save_for_backward({grad, self, target, weight.value_or(at::Tensor())});
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["want_gi"] = mask[0];
    ctx->saved_data["want_gt"] = mask[1];
    // An output nobody differentiates must add nothing (not 0 * inf = NaN at x = 0 or 1).
    ctx->set_materialize_grads(false);
    return {gi, gt};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &g = saved[0], &x = saved[1], &t = saved[2], &w = saved[3];
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    const double eps = kDoubleBackwardEps;
    auto weighted = [&](at::Tensor v) {
      if (w.defined()) v = v * w.to(x.scalar_type());
      // sym_numel: under torch.compile with dynamic shapes N is symbolic.
      return reduction == kReductionMean ? v / c10::Scalar(x.sym_numel()) : v;
    };
    auto add = [](at::Tensor& acc, const at::Tensor& v) { acc = acc.defined() ? acc + v : v; };
    const at::Tensor one_minus_x = at::rsub(x, 1);
    at::Tensor d_grad, d_input, d_target;
    const at::Tensor& gg_i = grads[0];
    if (ctx->saved_data["want_gi"].toBool() && gg_i.defined()) {
      add(d_grad, weighted(gg_i * (x - t) / ((x + eps) * (one_minus_x + eps))));
      add(d_input, weighted(gg_i * g * (x * x - 2 * x * t + t) /
                            ((x + eps).pow(2) * (one_minus_x + eps).pow(2))));
      add(d_target, weighted(-gg_i * g / (one_minus_x * x).clamp_min(eps)));
    }
    const at::Tensor& gg_t = grads[1];
    if (ctx->saved_data["want_gt"].toBool() && gg_t.defined()) {
      add(d_grad, weighted(gg_t * -at::logit(x)));
      add(d_input, weighted(-gg_t * g / (x * one_minus_x)));
    }
    if (d_grad.defined()) {  // g was broadcast over the elements: sum back to its shape
      d_grad = g.dim() ? at::sum_to(d_grad, g.sym_sizes()) : d_grad.sum();
    }
    return {d_grad, d_input, d_target, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class ForwardFunction : public torch::autograd::Function<ForwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& self,
                            const at::Tensor& target, const std::optional<at::Tensor>& weight,
                            int64_t reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = call_forward(self, target, weight, reduction);
    ctx->save_for_backward({self, target, weight.value_or(at::Tensor())});
    ctx->saved_data["reduction"] = reduction;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::array<bool, 2> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1)};
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    at::Tensor gi, gt;
    if (at::GradMode::is_enabled()) {  // create_graph: the gradients get a backward of their own
      auto outs = BackwardFunction::apply(grads[0], saved[0], saved[1], optional_of(saved[2]),
                                          reduction, mask);
      gi = outs[0];
      gt = outs[1];
    } else {  // the usual first-order backward: straight to the kernel, no graph node to build
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(gi, gt) =
          call_backward(grads[0], saved[0], saved[1], optional_of(saved[2]), reduction, mask);
    }
    return {mask[0] ? gi : at::Tensor(), mask[1] ? gt : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor binary_cross_entropy_autograd(const at::Tensor& self, const at::Tensor& target,
                                         const std::optional<at::Tensor>& weight,
                                         int64_t reduction) {
  // As PyTorch's autograd codegen: the weight is not differentiable.
  TORCH_CHECK(!(weight.has_value() && weight->defined() && weight->requires_grad() &&
                at::GradMode::is_enabled()),
              kWeightGradError);
  return ForwardFunction::apply(self, target, weight, reduction);
}

std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_backward_autograd(
    const at::Tensor& grad, const at::Tensor& self, const at::Tensor& target,
    const std::optional<at::Tensor>& weight, int64_t reduction, std::array<bool, 2> mask) {
  auto outs = BackwardFunction::apply(grad, self, target, weight, reduction, mask);
  return {outs[0], outs[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, Autograd, m) {
  m.impl("binary_cross_entropy", &binary_cross_entropy_autograd);
  m.impl("binary_cross_entropy_backward", &binary_cross_entropy_backward_autograd);
}

}  // namespace bce_ext
