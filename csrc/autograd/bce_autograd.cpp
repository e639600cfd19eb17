// Autograd of both ops, written as PyTorch's generated autograd kernels are (VariableType): a graph
// node per differentiable call, and the forward-mode tangent set on the result. Unlike a
// torch::autograd::Function, this composes with every torch.func transform (grad, vjp, jvp, jacfwd,
// jacrev, hessian, vmap, functionalize) and with torch.compile around them, to any order: the
// backward of the forward op is the backward op, whose own backward and tangents are ATen ops
// (bce_derivatives.h), differentiable in turn.
//
// Python reference (PyTorch's derivatives.yaml entries for binary_cross_entropy and its backward):
//   d loss / d (input, target)  = backward_op(g, x, t, w, reduction, [want_input, want_target])
//   tangent of the loss         = reduce(backward_op(x_t, x, t, w, 'none')[0]
//                                        + backward_op(t_t, x, t, w, 'none')[1])
//   backward of backward_op     = sum over its outputs of gg * partial (bce_derivatives.h)
//   tangent of backward_op      = sum over its inputs of partial * tangent
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <type_traits>

#include "../bce_constants.h"
#include "../bce_op_handles.h"
#include "bce_derivatives.h"

namespace bce_ext {
namespace {

using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// Graph nodes are held by the pointer type of this torch's autograd edges: std::shared_ptr in
// older releases, c10::intrusive_ptr in newer ones.
using NodePtr = decltype(torch::autograd::Edge::function);

template <class T>
auto make_node() {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<Node>>) {
    return std::shared_ptr<T>(new T());
  } else {
    return c10::make_intrusive<T>();
  }
}

std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

void add_to(at::Tensor& acc, const at::Tensor& v) {
  if (v.defined()) acc = acc.defined() ? acc + v : v;
}

// PyTorch's apply_loss_reduction.
at::Tensor reduce(const at::Tensor& v, int64_t reduction) {
  if (reduction == kReductionMean) return v.mean();
  if (reduction == kReductionSum) return v.sum();
  return v;
}

// ---- binary_cross_entropy ----------------------------------------------------------------------

struct ForwardBackward : public Node {
  std::string name() const override { return "BinaryCrossEntropyBackward"; }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list out(2);
    const std::array<bool, 2> mask{task_should_compute_output(0), task_should_compute_output(1)};
    if (!grads[0].defined() || !(mask[0] || mask[1])) return out;
    // Through the dispatcher, autograd included: with create_graph the gradients get a graph too.
    auto [gi, gt] = backward_op(grads[0], self_.unpack(), target_.unpack(),
                                optional_of(weight_.unpack()), reduction_, mask);
    if (mask[0]) out[0] = std::move(gi);
    if (mask[1]) out[1] = std::move(gt);
    return out;
  }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    self_.reset_data();
    target_.reset_data();
    weight_.reset_data();
  }

  SavedVariable self_, target_, weight_;
  int64_t reduction_ = kReductionMean;
};

at::Tensor forward_tangent(const at::Tensor& self, const at::Tensor& target,
                           const std::optional<at::Tensor>& weight, int64_t reduction) {
  const at::Tensor x = self._fw_primal(0);
  const at::Tensor t = target._fw_primal(0);
  const at::Tensor x_t = self._fw_grad(0);
  const at::Tensor t_t = target._fw_grad(0);
  at::Tensor tangent;
  if (x_t.defined()) {
    add_to(tangent, std::get<0>(backward_op(x_t, x, t, weight, kReductionNone, {true, false})));
  }
  if (t_t.defined()) {
    add_to(tangent, std::get<1>(backward_op(t_t, x, t, weight, kReductionNone, {false, true})));
  }
  return reduce(tangent, reduction);
}

at::Tensor binary_cross_entropy_autograd(c10::DispatchKeySet ks, const at::Tensor& self,
                                         const at::Tensor& target,
                                         const std::optional<at::Tensor>& weight,
                                         int64_t reduction) {
  // As PyTorch's autograd codegen: the weight is not differentiable (checked in grad mode only).
  torch::autograd::check_no_requires_grad(weight, "weight", "binary_cross_entropy");
  const bool requires_grad = torch::autograd::compute_requires_grad(self, target);
  const bool forward_ad =
      torch::autograd::isFwGradDefined(self) || torch::autograd::isFwGradDefined(target);
  decltype(make_node<ForwardBackward>()) node;
  if (requires_grad) {
    node = make_node<ForwardBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(self, target));
    node->self_ = SavedVariable(self, false);
    node->target_ = SavedVariable(target, false);
    node->weight_ = SavedVariable(weight, false);
    node->reduction_ = reduction;
  }
  at::Tensor result;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    result = forward_handle().redispatch(ks & c10::after_autograd_keyset, self, target, weight,
                                         reduction);
  }
  if (node) torch::autograd::set_history(result, node);
  if (forward_ad) result._set_fw_grad(forward_tangent(self, target, weight, reduction), 0, false);
  return result;
}

// ---- binary_cross_entropy_backward ---------------------------------------------------------------

constexpr BackwardOutput kOutputs[2] = {BackwardOutput::kGradInput, BackwardOutput::kGradTarget};
constexpr BackwardInput kInputs[3] = {BackwardInput::kGradOutput, BackwardInput::kInput,
                                      BackwardInput::kTarget};

struct BackwardBackward : public Node {
  std::string name() const override { return "BinaryCrossEntropyBackwardBackward"; }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list out(3);
    const at::Tensor g = grad_output_.unpack();
    const at::Tensor x = self_.unpack();
    const at::Tensor t = target_.unpack();
    const auto w = optional_of(weight_.unpack());
    for (int i = 0; i < 3; ++i) {
      if (!task_should_compute_output(i)) continue;
      for (int o = 0; o < 2; ++o) {
        // An output nobody differentiates adds nothing (not 0 * inf = NaN at x = 0 or 1).
        if (!output_mask_[o] || !grads[o].defined()) continue;
        const at::Tensor d = backward_partial(kOutputs[o], kInputs[i], g, x, t, w, reduction_);
        if (d.defined()) add_to(out[i], grads[o] * d);
      }
    }
    // g was broadcast over the elements: its gradient sums back to its shape.
    if (out[0].defined()) {
      out[0] = g.dim() ? at::sum_to(out[0], g.sym_sizes()) : out[0].sum();
    }
    return out;
  }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    grad_output_.reset_data();
    self_.reset_data();
    target_.reset_data();
    weight_.reset_data();
  }

  SavedVariable grad_output_, self_, target_, weight_;
  int64_t reduction_ = kReductionMean;
  std::array<bool, 2> output_mask_{true, false};
};

std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_backward_autograd(
    c10::DispatchKeySet ks, const at::Tensor& grad_output, const at::Tensor& self,
    const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction,
    std::array<bool, 2> output_mask) {
  torch::autograd::check_no_requires_grad(weight, "weight", "binary_cross_entropy_backward");
  const bool requires_grad = torch::autograd::compute_requires_grad(grad_output, self, target);
  const at::Tensor* inputs[3] = {&grad_output, &self, &target};
  bool forward_ad = false;
  for (const at::Tensor* v : inputs) forward_ad = forward_ad || torch::autograd::isFwGradDefined(*v);
  decltype(make_node<BackwardBackward>()) node;
  if (requires_grad) {
    node = make_node<BackwardBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(grad_output, self, target));
    node->grad_output_ = SavedVariable(grad_output, false);
    node->self_ = SavedVariable(self, false);
    node->target_ = SavedVariable(target, false);
    node->weight_ = SavedVariable(weight, false);
    node->reduction_ = reduction;
    node->output_mask_ = output_mask;
  }
  at::Tensor outputs[2];
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(outputs[0], outputs[1]) =
        backward_handle().redispatch(ks & c10::after_autograd_keyset, grad_output, self, target,
                                     weight, reduction, output_mask);
  }
  if (node) torch::autograd::set_history({outputs[0], outputs[1]}, node);
  if (forward_ad) {
    const at::Tensor g = grad_output._fw_primal(0);
    const at::Tensor x = self._fw_primal(0);
    const at::Tensor t = target._fw_primal(0);
    for (int o = 0; o < 2; ++o) {
      if (!output_mask[o]) continue;
      at::Tensor tangent;
      for (int i = 0; i < 3; ++i) {
        const at::Tensor v_t = inputs[i]->_fw_grad(0);
        if (!v_t.defined()) continue;
        const at::Tensor d = backward_partial(kOutputs[o], kInputs[i], g, x, t, weight, reduction);
        if (d.defined()) add_to(tangent, d * v_t);
      }
      if (tangent.defined()) outputs[o]._set_fw_grad(tangent, 0, false);
    }
  }
  return {outputs[0], outputs[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, Autograd, m) {
  m.impl("binary_cross_entropy", TORCH_FN(binary_cross_entropy_autograd));
  m.impl("binary_cross_entropy_backward", TORCH_FN(binary_cross_entropy_backward_autograd));
}

}  // namespace bce_ext
