#pragma once
// bce_ext's own ops as seen from C++ (autograd, autocast, the promoted-weight path of
// bce_prepare.cpp): typed dispatcher handles and plain calls. The schemas are in bce_ops.cpp.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <array>
#include <optional>
#include <tuple>

namespace bce_ext {

using ForwardSignature = at::Tensor(const at::Tensor&, const at::Tensor&,
                                    const std::optional<at::Tensor>&, int64_t);
using BackwardSignature = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
    int64_t, std::array<bool, 2>);

const c10::TypedOperatorHandle<ForwardSignature>& forward_handle();
const c10::TypedOperatorHandle<BackwardSignature>& backward_handle();

// A call from the top of the dispatcher (autograd, autocast and all).
inline at::Tensor forward_op(const at::Tensor& self, const at::Tensor& target,
                             const std::optional<at::Tensor>& weight, int64_t reduction) {
  return forward_handle().call(self, target, weight, reduction);
}

inline std::tuple<at::Tensor, at::Tensor> backward_op(
    const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
    const std::optional<at::Tensor>& weight, int64_t reduction, std::array<bool, 2> output_mask) {
  return backward_handle().call(grad_output, self, target, weight, reduction, output_mask);
}

}  // namespace bce_ext
