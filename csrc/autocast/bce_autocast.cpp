// Autocast: the loss is computed and returned in float32.
// CPU: as PyTorch (KERNEL_CPU(binary_cross_entropy, fp32) in aten/src/ATen/autocast_mode.cpp).
// CUDA: beyond PyTorch, which bans the op under autocast; float32 makes it safe (see README).
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "../bce_op_handles.h"

namespace bce_ext {
namespace {

template <c10::DispatchKey key, c10::DeviceType device>
at::Tensor binary_cross_entropy_autocast(const at::Tensor& self, const at::Tensor& target,
                                         const std::optional<at::Tensor>& weight,
                                         int64_t reduction) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
  // cached_cast casts float16/bfloat16 only; float64 stays float64, as PyTorch's autocast does.
  return forward_op(at::autocast::cached_cast(at::kFloat, self, device),
                    at::autocast::cached_cast(at::kFloat, target, device),
                    at::autocast::cached_cast(at::kFloat, weight, device), reduction);
}

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, AutocastCPU, m) {
  m.impl("binary_cross_entropy",
         &binary_cross_entropy_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(bce_ext, AutocastCUDA, m) {
  m.impl("binary_cross_entropy",
         &binary_cross_entropy_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>);
}

}  // namespace bce_ext
