// Meta kernels of both ops: the real kernels' checks and outputs, no data. They serve meta tensors
// and torch.compile's fake tensors (which run a custom op's Meta kernel), with symbolic sizes too,
// and catch a meta tensor mixed with real ones (the dispatcher sends such a call here) with
// PyTorch's message rather than returning uninitialised memory.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../bce_prepare.h"

namespace bce_ext {
namespace {

at::Tensor binary_cross_entropy_meta(const at::Tensor& self, const at::Tensor& target,
                                     const std::optional<at::Tensor>& weight, int64_t reduction) {
  check_forward(self, target, weight, reduction);
  return empty_forward_output(self, reduction);
}

std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_backward_meta(
    const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
    const std::optional<at::Tensor>& weight, int64_t reduction, std::array<bool, 2> output_mask) {
  check_backward(grad_output, self, target, weight, reduction);
  auto outputs = empty_backward_outputs(self, output_mask);
  return {outputs[0], outputs[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, Meta, m) {
  m.impl("binary_cross_entropy", &binary_cross_entropy_meta);
  m.impl("binary_cross_entropy_backward", &binary_cross_entropy_backward_meta);
}

}  // namespace bce_ext
