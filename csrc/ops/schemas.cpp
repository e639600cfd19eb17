// The op schemas, written once, and calls of the ops from C++ (loss_call.h).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "../loss_call.h"
#include "loss_kernels.h"

TORCH_LIBRARY(bce_ext, m) {
  // ATen's schemas, so that aten::binary_cross_entropy{,_with_logits} are the test oracles, plus a
  // trailing label smoothing (0 keeps PyTorch's results). The backward ops return the gradients of
  // input and target in one pass; output_mask says which are wanted (an unwanted one comes back as
  // an empty tensor).
  m.def(
      "binary_cross_entropy(Tensor self, Tensor target, Tensor? weight=None, int reduction=1, "
      "float label_smoothing=0.0) -> Tensor");
  m.def(
      "binary_cross_entropy_backward(Tensor grad_output, Tensor self, Tensor target, "
      "Tensor? weight=None, int reduction=1, bool[2] output_mask=[True, False], "
      "float label_smoothing=0.0) -> (Tensor, Tensor)");
  m.def(
      "binary_cross_entropy_with_logits(Tensor self, Tensor target, Tensor? weight=None, "
      "Tensor? pos_weight=None, int reduction=1, float label_smoothing=0.0) -> Tensor");
  m.def(
      "binary_cross_entropy_with_logits_backward(Tensor grad_output, Tensor self, "
      "Tensor target, Tensor? weight=None, Tensor? pos_weight=None, int reduction=1, "
      "bool[2] output_mask=[True, False], float label_smoothing=0.0) -> (Tensor, Tensor)");
  // torchvision.ops.sigmoid_focal_loss's arguments (its reduction as a code, 'none' by default).
  m.def(
      "sigmoid_focal_loss(Tensor self, Tensor target, int reduction=0, float alpha=0.25, "
      "float gamma=2.0) -> Tensor");
  m.def(
      "sigmoid_focal_loss_backward(Tensor grad_output, Tensor self, Tensor target, "
      "int reduction=0, bool[2] output_mask=[True, False], float alpha=0.25, float gamma=2.0) "
      "-> (Tensor, Tensor)");
}

namespace bce_ext {
namespace {

template <class Signature>
c10::TypedOperatorHandle<Signature> find(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// A call from the top of the dispatcher, or a redispatch below a given key set.
template <class Signature, class... Args>
auto invoke(const c10::TypedOperatorHandle<Signature>& op, std::optional<c10::DispatchKeySet> ks,
            const Args&... args) {
  return ks ? op.redispatch(*ks, args...) : op.call(args...);
}

// The kernels' signatures, without the DispatchKeySet the dispatcher passes them.
template <class Fn>
struct Unkeyed;
template <class R, class... Args>
struct Unkeyed<R (*)(c10::DispatchKeySet, Args...)> {
  using type = R(Args...);
};
template <class Fn>
using SignatureOf = typename Unkeyed<Fn>::type;

struct NoImpl {
  static at::Tensor forward(c10::DispatchKeySet, const LossCall&);
  static TensorPair backward(c10::DispatchKeySet, const LossCall&, const at::Tensor&,
                             std::array<bool, 2>);
};
using K = LossKernels<NoImpl>;

}  // namespace

const char* LossCall::name() const {
  return visit_loss(kind, [](auto loss) { return decltype(loss)::Traits::kOp; });
}

LossCall LossCall::with(const at::Tensor& new_self, const at::Tensor& new_target) const {
  LossCall c = *this;
  c.self = new_self;
  c.target = new_target;
  return c;
}

namespace {

// Each loss's ops, called with its own arguments.
at::Tensor forward_of(Loss<losses::Bce>, const LossCall& c, std::optional<c10::DispatchKeySet> ks) {
  static const auto op = find<SignatureOf<decltype(&K::bce)>>("bce_ext::binary_cross_entropy");
  return invoke(op, ks, c.self, c.target, c.weight, c.reduction, c.params.label_smoothing);
}

at::Tensor forward_of(Loss<losses::BceWithLogits>, const LossCall& c,
                      std::optional<c10::DispatchKeySet> ks) {
  static const auto op =
      find<SignatureOf<decltype(&K::bce_with_logits)>>("bce_ext::binary_cross_entropy_with_logits");
  return invoke(op, ks, c.self, c.target, c.weight, c.pos_weight, c.reduction,
                c.params.label_smoothing);
}

at::Tensor forward_of(Loss<losses::SigmoidFocal>, const LossCall& c,
                      std::optional<c10::DispatchKeySet> ks) {
  static const auto op =
      find<SignatureOf<decltype(&K::sigmoid_focal)>>("bce_ext::sigmoid_focal_loss");
  return invoke(op, ks, c.self, c.target, c.reduction, c.params.alpha, c.params.gamma);
}

TensorPair backward_of(Loss<losses::Bce>, const LossCall& c, const at::Tensor& grad_output,
                       std::array<bool, 2> output_mask, std::optional<c10::DispatchKeySet> ks) {
  static const auto op =
      find<SignatureOf<decltype(&K::bce_backward)>>("bce_ext::binary_cross_entropy_backward");
  return invoke(op, ks, grad_output, c.self, c.target, c.weight, c.reduction, output_mask,
                c.params.label_smoothing);
}

TensorPair backward_of(Loss<losses::BceWithLogits>, const LossCall& c,
                       const at::Tensor& grad_output, std::array<bool, 2> output_mask,
                       std::optional<c10::DispatchKeySet> ks) {
  static const auto op = find<SignatureOf<decltype(&K::bce_with_logits_backward)>>(
      "bce_ext::binary_cross_entropy_with_logits_backward");
  return invoke(op, ks, grad_output, c.self, c.target, c.weight, c.pos_weight, c.reduction,
                output_mask, c.params.label_smoothing);
}

TensorPair backward_of(Loss<losses::SigmoidFocal>, const LossCall& c, const at::Tensor& grad_output,
                       std::array<bool, 2> output_mask, std::optional<c10::DispatchKeySet> ks) {
  static const auto op = find<SignatureOf<decltype(&K::sigmoid_focal_backward)>>(
      "bce_ext::sigmoid_focal_loss_backward");
  return invoke(op, ks, grad_output, c.self, c.target, c.reduction, output_mask, c.params.alpha,
                c.params.gamma);
}

}  // namespace

at::Tensor call_forward(const LossCall& c, std::optional<c10::DispatchKeySet> ks) {
  return visit_loss(c.kind, [&](auto loss) { return forward_of(loss, c, ks); });
}

TensorPair call_backward(const LossCall& c, const at::Tensor& grad_output,
                         std::array<bool, 2> output_mask, std::optional<c10::DispatchKeySet> ks) {
  return visit_loss(c.kind,
                    [&](auto loss) { return backward_of(loss, c, grad_output, output_mask, ks); });
}

}  // namespace bce_ext
