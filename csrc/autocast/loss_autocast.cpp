// Autocast: every loss is computed and returned in float32 (its tensors cast as PyTorch's
// autocast casts them: float16 and bfloat16 to float32, float64 left alone).
// CPU: as PyTorch (KERNEL_CPU(binary_cross_entropy, fp32), and binary_cross_entropy_with_logits in
// its fp32 lists, aten/src/ATen/autocast_mode.cpp).
// CUDA: the logits loss as PyTorch (fp32); BCE beyond PyTorch, which bans it under autocast as
// unsafe: computed in float32 it is safe (see docs/behaviour.md).
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "../ops/loss_kernels.h"

namespace bce_ext {
namespace {

template <c10::DispatchKey kKey, c10::DeviceType kDevice>
struct AutocastKernels {
  static std::optional<at::Tensor> cast(const std::optional<at::Tensor>& t) {
    return at::autocast::cached_cast(at::kFloat, t, kDevice);
  }

  static at::Tensor forward(c10::DispatchKeySet, const LossCall& c) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(kKey);
    LossCall cast_call = c.with(at::autocast::cached_cast(at::kFloat, c.self, kDevice),
                                at::autocast::cached_cast(at::kFloat, c.target, kDevice));
    cast_call.weight = cast(c.weight);
    cast_call.pos_weight = cast(c.pos_weight);
    return call_forward(cast_call);
  }

  static TensorPair backward(c10::DispatchKeySet, const LossCall&, const at::Tensor&,
                             std::array<bool, 2>);  // not registered: the backward falls through
};

using CpuAutocast = AutocastKernels<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>;
using CudaAutocast = AutocastKernels<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>;

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, AutocastCPU, m) { LossKernels<CpuAutocast>::register_forwards(m); }

TORCH_LIBRARY_IMPL(bce_ext, AutocastCUDA, m) { LossKernels<CudaAutocast>::register_forwards(m); }

}  // namespace bce_ext
