// The op schemas, generated once from each loss's Traits, and calls of the ops from C++
// (loss_call.h).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

#include "../loss_call.h"
#include "loss_kernels.h"

namespace bce_ext {
namespace {

// The arguments after input and target up to the reduction: ATen's for BCE and BCE with logits,
// so that aten::binary_cross_entropy{,_with_logits} are the test oracles. Its backward op has
// output_mask after the reduction (which gradients are wanted; an unwanted one comes back as an
// empty tensor); label_smoothing (0 keeps PyTorch's results) and the loss's own scalars follow,
// then bce_ext's ignore_index (and the backward's kept: loss_call.h).
template <template <class, class> class L>
std::string schema(Loss<L>, bool backward) {
  using Traits = losses::Traits<L>;
  static const char* const kTables[] = {"Tensor? weight=None", "Tensor? pos_weight=None"};
  std::string s = std::string(Traits::kOp) + (backward ? "_backward(Tensor grad_output, " : "(") +
                  "Tensor self, Tensor target";
  for (int i = 0; i < Traits::kTables; ++i) s += std::string(", ") + kTables[i];
  s += ", int reduction=" + std::to_string(Traits::kDefaultReduction);
  if (backward) s += ", bool[2] output_mask=[True, False]";
  if (Traits::kLabelSmoothing) s += ", float label_smoothing=0.0";
  if (Traits::kScalars[0] != '\0') s += std::string(", ") + Traits::kScalars;
  if (Traits::kIgnoreIndex) {
    s += ", float? ignore_index=None";
    if (backward) s += ", Tensor? kept=None";
  }
  return s + (backward ? ") -> (Tensor, Tensor)" : ") -> Tensor");
}

}  // namespace
}  // namespace bce_ext

TORCH_LIBRARY(bce_ext, m) {
  bce_ext::for_each_loss([&](auto loss) {
    m.def(bce_ext::schema(loss, false).c_str());
    m.def(bce_ext::schema(loss, true).c_str());
  });
}

namespace bce_ext {
namespace {

template <class Signature>
c10::TypedOperatorHandle<Signature> find(const std::string& name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name.c_str(), "").typed<Signature>();
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

// Each loss's ops, called with its own arguments (a typed handle per loss, found once).
template <template <class, class> class L>
at::Tensor forward_of(Loss<L>, const LossCall& c, std::optional<c10::DispatchKeySet> ks) {
  using K = TypedKernels<NoImpl, L>;
  static const auto op =
      find<SignatureOf<decltype(&K::forward)>>(std::string("bce_ext::") + losses::Traits<L>::kOp);
  return K::call_forward(op, ks, c);
}

template <template <class, class> class L>
TensorPair backward_of(Loss<L>, const LossCall& c, const at::Tensor& grad_output,
                       std::array<bool, 2> output_mask, std::optional<c10::DispatchKeySet> ks) {
  using K = TypedKernels<NoImpl, L>;
  static const auto op = find<SignatureOf<decltype(&K::backward)>>(
      std::string("bce_ext::") + losses::Traits<L>::kOp + "_backward");
  return K::call_backward(op, ks, c, grad_output, output_mask);
}

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

at::Tensor call_forward(const LossCall& c, std::optional<c10::DispatchKeySet> ks) {
  return visit_loss(c.kind, [&](auto loss) { return forward_of(loss, c, ks); });
}

TensorPair call_backward(const LossCall& c, const at::Tensor& grad_output,
                         std::array<bool, 2> output_mask, std::optional<c10::DispatchKeySet> ks) {
  return visit_loss(c.kind,
                    [&](auto loss) { return backward_of(loss, c, grad_output, output_mask, ks); });
}

}  // namespace bce_ext
