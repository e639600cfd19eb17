#pragma once
// Every loss op's C++ signature, in one place: LossKernels<Impl> turns generic kernels of a
// LossCall (Impl::forward and Impl::backward) into the typed kernels of each op, and registers them
// for one dispatch key (cpu/, cuda/, meta/, autograd/, autocast/). A new loss adds its two
// signatures here. The schemas themselves are in schemas.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>

#include "../loss_call.h"

namespace bce_ext {

using TensorPair = std::tuple<at::Tensor, at::Tensor>;

// Impl: static at::Tensor forward(c10::DispatchKeySet, const LossCall&) and
//       static TensorPair backward(c10::DispatchKeySet, const LossCall&, const at::Tensor& grad,
//                                  std::array<bool, 2> output_mask).
template <class Impl>
struct LossKernels {
  static at::Tensor bce(c10::DispatchKeySet ks, const at::Tensor& self, const at::Tensor& target,
                        const std::optional<at::Tensor>& weight, int64_t reduction,
                        double label_smoothing) {
    return Impl::forward(
        ks, {LossKind::kBce, self, target, weight, std::nullopt, reduction, {label_smoothing}});
  }

  static TensorPair bce_backward(c10::DispatchKeySet ks, const at::Tensor& grad_output,
                                 const at::Tensor& self, const at::Tensor& target,
                                 const std::optional<at::Tensor>& weight, int64_t reduction,
                                 std::array<bool, 2> output_mask, double label_smoothing) {
    return Impl::backward(
        ks, {LossKind::kBce, self, target, weight, std::nullopt, reduction, {label_smoothing}},
        grad_output, output_mask);
  }

  static at::Tensor bce_with_logits(c10::DispatchKeySet ks, const at::Tensor& self,
                                    const at::Tensor& target,
                                    const std::optional<at::Tensor>& weight,
                                    const std::optional<at::Tensor>& pos_weight, int64_t reduction,
                                    double label_smoothing) {
    return Impl::forward(
        ks,
        {LossKind::kBceWithLogits, self, target, weight, pos_weight, reduction, {label_smoothing}});
  }

  static TensorPair bce_with_logits_backward(c10::DispatchKeySet ks, const at::Tensor& grad_output,
                                             const at::Tensor& self, const at::Tensor& target,
                                             const std::optional<at::Tensor>& weight,
                                             const std::optional<at::Tensor>& pos_weight,
                                             int64_t reduction, std::array<bool, 2> output_mask,
                                             double label_smoothing) {
    return Impl::backward(
        ks,
        {LossKind::kBceWithLogits, self, target, weight, pos_weight, reduction, {label_smoothing}},
        grad_output, output_mask);
  }

  static at::Tensor sigmoid_focal(c10::DispatchKeySet ks, const at::Tensor& self,
                                  const at::Tensor& target, int64_t reduction, double alpha,
                                  double gamma) {
    return Impl::forward(ks, {LossKind::kSigmoidFocal,
                              self,
                              target,
                              std::nullopt,
                              std::nullopt,
                              reduction,
                              {0.0, alpha, gamma}});
  }

  static TensorPair sigmoid_focal_backward(c10::DispatchKeySet ks, const at::Tensor& grad_output,
                                           const at::Tensor& self, const at::Tensor& target,
                                           int64_t reduction, std::array<bool, 2> output_mask,
                                           double alpha, double gamma) {
    return Impl::backward(ks,
                          {LossKind::kSigmoidFocal,
                           self,
                           target,
                           std::nullopt,
                           std::nullopt,
                           reduction,
                           {0.0, alpha, gamma}},
                          grad_output, output_mask);
  }

  static void register_forwards(torch::Library& m) {
    m.impl("binary_cross_entropy", TORCH_FN(bce));
    m.impl("binary_cross_entropy_with_logits", TORCH_FN(bce_with_logits));
    m.impl("sigmoid_focal_loss", TORCH_FN(sigmoid_focal));
  }

  static void register_all(torch::Library& m) {
    register_forwards(m);
    m.impl("binary_cross_entropy_backward", TORCH_FN(bce_backward));
    m.impl("binary_cross_entropy_with_logits_backward", TORCH_FN(bce_with_logits_backward));
    m.impl("sigmoid_focal_loss_backward", TORCH_FN(sigmoid_focal_backward));
  }
};

}  // namespace bce_ext
