// Meta kernels of every loss op: the real kernels' checks and outputs, no data. They serve meta
// tensors and torch.compile's fake tensors (which run a custom op's Meta kernel), with symbolic
// sizes too, and catch a meta tensor mixed with real ones (the dispatcher sends such a call here)
// with PyTorch's message rather than returning uninitialised memory.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../loss_prepare.h"
#include "../ops/loss_kernels.h"

namespace bce_ext {
namespace {

struct MetaKernels {
  static at::Tensor forward(c10::DispatchKeySet, const LossCall& c) {
    check_forward(c);
    return empty_forward_output(c);
  }

  static TensorPair backward(c10::DispatchKeySet, const LossCall& c, const at::Tensor& grad_output,
                             std::array<bool, 2> output_mask) {
    check_backward(c, grad_output);
    auto outputs = empty_backward_outputs(c, output_mask);
    return {outputs[0], outputs[1]};
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, Meta, m) { LossKernels<MetaKernels>::register_all(m); }

}  // namespace bce_ext
