#pragma once
// One call of a loss op as the host code sees it, whatever the loss (the ops' own signatures
// differ: csrc/ops/loss_kernels.h turns each into a LossCall), and calls of the ops through the
// dispatcher, for code that needs an op from C++ (autograd, autocast, the promoted paths of
// loss_prepare.cpp).
#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <tuple>

#include "loss_types.h"

namespace bce_ext {

struct LossCall {
  LossKind kind = LossKind::kBce;
  at::Tensor self, target;
  std::optional<at::Tensor> weight, pos_weight;  // pos_weight: the logits loss only
  int64_t reduction = 1;
  LossParams params;
  // The backward's divisor of 'mean' with an ignore_index: a 0-dim float64 tensor on the input's
  // device, the count the forward returned (reduction 3); absent: the backward counts.
  std::optional<at::Tensor> kept;

  // The op's name, as PyTorch's messages give it ("binary_cross_entropy", ...).
  const char* name() const;
  // The same call with another input and target.
  LossCall with(const at::Tensor& self, const at::Tensor& target) const;
};

// The loss's forward op, from the top of the dispatcher (autograd, autocast and all), or
// redispatched below the key set ks (an autograd kernel's call of the kernels below it).
at::Tensor call_forward(const LossCall& call, std::optional<c10::DispatchKeySet> ks = std::nullopt);
// Its backward op: (grad_input, grad_target), an unwanted one an empty tensor.
std::tuple<at::Tensor, at::Tensor> call_backward(
    const LossCall& call, const at::Tensor& grad_output, std::array<bool, 2> output_mask,
    std::optional<c10::DispatchKeySet> ks = std::nullopt);

}  // namespace bce_ext
