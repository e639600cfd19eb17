// Autograd of every loss op, written as PyTorch's generated autograd kernels are (VariableType): a
// graph node per differentiable call, and the forward-mode tangent set on the result. Unlike a
// torch::autograd::Function, this composes with every torch.func transform (grad, vjp, jvp, jacfwd,
// jacrev, hessian, vmap, functionalize) and with torch.compile around them, to any order: the
// backward of a forward op is its backward op, whose own backward and tangents are ATen ops
// (loss_derivatives.h), differentiable in turn.
//
// Python reference (PyTorch's derivatives.yaml entries for the losses and their backwards):
//   d loss / d (input, target)  = backward_op(g, x, t, ..., reduction, [want_input, want_target])
//   tangent of the loss         = reduce(backward_op(x_t, x, t, ..., 'none')[0]
//                                        + backward_op(t_t, x, t, ..., 'none')[1])
//   backward of backward_op     = sum over its outputs of gg * partial (loss_derivatives.h)
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
#include <string>
#include <type_traits>

#include "../bce_constants.h"
#include "../loss_prepare.h"
#include "../ops/loss_kernels.h"
#include "graph_node.h"
#include "loss_derivatives.h"

namespace bce_ext {
namespace {

using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

std::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

void add_to(at::Tensor& acc, const at::Tensor& v) {
  if (v.defined()) acc = acc.defined() ? acc + v : v;
}

// PyTorch's apply_loss_reduction; with an ignore_index, 'mean' divides by the forward's count
// (v is 0 at the ignored elements).
at::Tensor reduce(const at::Tensor& v, const LossCall& c) {
  if (c.reduction == kReductionMean) return c.kept ? v.sum() / *c.kept : v.mean();
  if (c.reduction == kReductionSum) return v.sum();
  return v;
}

// PyTorch's autograd codegen: weight and pos_weight are not differentiable (checked in grad mode).
void check_not_differentiable(const LossCall& c) {
  torch::autograd::check_no_requires_grad(c.weight, "weight", c.name());
  torch::autograd::check_no_requires_grad(c.pos_weight, "pos_weight", c.name());
}

// What a node keeps of its call: the tensors as saved variables, the rest as is.
struct SavedCall {
  LossKind kind = LossKind::kBce;
  SavedVariable self, target, weight, pos_weight, kept;
  int64_t reduction = kReductionMean;
  LossParams params;

  void save(const LossCall& c) {
    kind = c.kind;
    self = SavedVariable(c.self, false);
    target = SavedVariable(c.target, false);
    weight = SavedVariable(c.weight, false);
    pos_weight = SavedVariable(c.pos_weight, false);
    kept = SavedVariable(c.kept, false);
    reduction = c.reduction;
    params = c.params;
  }

  LossCall unpack() const {
    return {kind,
            self.unpack(),
            target.unpack(),
            optional_of(weight.unpack()),
            optional_of(pos_weight.unpack()),
            reduction,
            params,
            optional_of(kept.unpack())};
  }

  void reset() {
    self.reset_data();
    target.reset_data();
    weight.reset_data();
    pos_weight.reset_data();
    kept.reset_data();
  }
};

// PyTorch's name of a node: the op's, in CamelCase, then "Backward" (and "Backward" again for the
// backward op's own node).
std::string node_name(LossKind kind, const char* suffix) {
  return std::string(visit_loss(kind, [](auto loss) { return decltype(loss)::Traits::kNode; })) +
         suffix;
}

// ---- the forward ops
// -----------------------------------------------------------------------------

struct ForwardBackward : public Node {
  std::string name() const override { return node_name(call.kind, "Backward"); }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list out(2);
    const std::array<bool, 2> mask{task_should_compute_output(0), task_should_compute_output(1)};
    if (!grads[0].defined() || !(mask[0] || mask[1])) return out;
    // Through the dispatcher, autograd included: with create_graph the gradients get a graph too.
    auto [gi, gt] = call_backward(call.unpack(), grads[0], mask);
    if (mask[0]) out[0] = std::move(gi);
    if (mask[1]) out[1] = std::move(gt);
    return out;
  }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    call.reset();
  }

  SavedCall call;
};

at::Tensor forward_tangent(const LossCall& c, const at::Tensor& result) {
  LossCall primal = c.with(c.self._fw_primal(0), c.target._fw_primal(0));
  primal.reduction = kReductionNone;
  const at::Tensor x_t = c.self._fw_grad(0);
  const at::Tensor t_t = c.target._fw_grad(0);
  at::Tensor tangent;
  primal.kept = std::nullopt;
  if (x_t.defined()) add_to(tangent, std::get<0>(call_backward(primal, x_t, {true, false})));
  if (t_t.defined()) add_to(tangent, std::get<1>(call_backward(primal, t_t, {false, true})));
  tangent = reduce(tangent, c);
  // Inputs of two dtypes (the logits loss): the tangent in the result's.
  return tangent.scalar_type() == result.scalar_type() ? tangent : tangent.to(result.scalar_type());
}

// ---- the backward ops
// ----------------------------------------------------------------------------

constexpr BackwardOutput kOutputs[2] = {BackwardOutput::kGradInput, BackwardOutput::kGradTarget};
constexpr BackwardInput kInputs[3] = {BackwardInput::kGradOutput, BackwardInput::kInput,
                                      BackwardInput::kTarget};

struct BackwardBackward : public Node {
  std::string name() const override { return node_name(call.kind, "BackwardBackward"); }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list out(3);
    const at::Tensor g = grad_output.unpack();
    const LossCall c = call.unpack();
    for (int i = 0; i < 3; ++i) {
      if (!task_should_compute_output(i)) continue;
      for (int o = 0; o < 2; ++o) {
        // An output nobody differentiates adds nothing (not 0 * inf = NaN at x = 0 or 1).
        if (!output_mask[o] || !grads[o].defined()) continue;
        const at::Tensor d = backward_partial(c, kOutputs[o], kInputs[i], g);
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
    grad_output.reset_data();
    call.reset();
  }

  SavedVariable grad_output;
  SavedCall call;
  std::array<bool, 2> output_mask{true, false};
};

void set_backward_tangents(const LossCall& c, const at::Tensor& grad_output,
                           std::array<bool, 2> output_mask, at::Tensor (&outputs)[2]) {
  const at::Tensor g = grad_output._fw_primal(0);
  const LossCall primal = c.with(c.self._fw_primal(0), c.target._fw_primal(0));
  const at::Tensor tangents[3] = {grad_output._fw_grad(0), c.self._fw_grad(0),
                                  c.target._fw_grad(0)};
  for (int o = 0; o < 2; ++o) {
    if (!output_mask[o]) continue;
    at::Tensor tangent;
    for (int i = 0; i < 3; ++i) {
      if (!tangents[i].defined()) continue;
      const at::Tensor d = backward_partial(primal, kOutputs[o], kInputs[i], g);
      if (d.defined()) add_to(tangent, d * tangents[i]);
    }
    if (!tangent.defined()) continue;
    if (tangent.scalar_type() != outputs[o].scalar_type()) {
      tangent = tangent.to(outputs[o].scalar_type());
    }
    outputs[o]._set_fw_grad(tangent, 0, false);
  }
}

// The autograd kernels of every loss op (see ops/loss_kernels.h).
struct AutogradKernels {
  static at::Tensor forward(c10::DispatchKeySet ks, const LossCall& call) {
    check_not_differentiable(call);
    const bool requires_grad = torch::autograd::compute_requires_grad(call.self, call.target);
    const bool forward_ad = torch::autograd::isFwGradDefined(call.self) ||
                            torch::autograd::isFwGradDefined(call.target);
    TORCH_CHECK_VALUE(!(requires_grad || forward_ad) || call.reduction != kReductionSumAndCount,
                      call.name(), ": reduction 3 (sum and count) is not differentiable");
    LossCall c = call;
    at::Tensor result;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      const auto below = ks & c10::after_autograd_keyset;
      if (c.params.ignore && c.reduction == kReductionMean && (requires_grad || forward_ad)) {
        // 'mean' with an ignore_index: the kernels' sum and count in one pass (reduction 3), the
        // count kept for the backward's divisor, the mean as the 'mean' kernels round it.
        c.reduction = kReductionSumAndCount;
        const at::Tensor sum_count = call_forward(c, below);
        c.reduction = kReductionMean;
        c.kept = sum_count.select(0, 1);
        result = (sum_count.select(0, 0) / *c.kept).to(result_type(c));
      } else {
        result = call_forward(c, below);
      }
    }
    if (requires_grad) {
      auto node = make_node<ForwardBackward>();
      node->set_next_edges(torch::autograd::collect_next_edges(c.self, c.target));
      node->call.save(c);
      torch::autograd::set_history(result, node);
    }
    if (forward_ad) result._set_fw_grad(forward_tangent(c, result), 0, false);
    return result;
  }

  static TensorPair backward(c10::DispatchKeySet ks, const LossCall& c,
                             const at::Tensor& grad_output, std::array<bool, 2> output_mask) {
    check_not_differentiable(c);
    const bool requires_grad =
        torch::autograd::compute_requires_grad(grad_output, c.self, c.target);
    const bool forward_ad = torch::autograd::isFwGradDefined(grad_output) ||
                            torch::autograd::isFwGradDefined(c.self) ||
                            torch::autograd::isFwGradDefined(c.target);
    decltype(make_node<BackwardBackward>()) node;
    if (requires_grad) {
      node = make_node<BackwardBackward>();
      node->set_next_edges(torch::autograd::collect_next_edges(grad_output, c.self, c.target));
      node->grad_output = SavedVariable(grad_output, false);
      node->call.save(c);
      node->output_mask = output_mask;
    }
    at::Tensor outputs[2];
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(outputs[0], outputs[1]) =
          call_backward(c, grad_output, output_mask, ks & c10::after_autograd_keyset);
    }
    if (node) torch::autograd::set_history({outputs[0], outputs[1]}, node);
    if (forward_ad) set_backward_tangents(c, grad_output, output_mask, outputs);
    return {outputs[0], outputs[1]};
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, Autograd, m) { LossKernels<AutogradKernels>::register_all(m); }

}  // namespace bce_ext
