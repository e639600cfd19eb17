// The CUDA kernels of every loss op, registered for the CUDA dispatch key. Each loss's kernels
// (loss_cuda_driver.cuh, instantiated with its element formulas from csrc/losses/) and host code
// (loss_cuda_host.cuh) are compiled in instances/, a file per loss and direction.
// Symmetric with csrc/cpu/loss_cpu.cpp.
#include <torch/library.h>

#include <array>

#include "../losses/bce.h"
#include "../losses/bce_with_logits.h"
#include "../losses/sigmoid_focal.h"
#include "../ops/loss_kernels.h"
#include "loss_cuda.h"

namespace bce_ext::cuda {
namespace {

// The CUDA kernels of every loss op (see ops/loss_kernels.h).
struct CudaKernels {
  static at::Tensor forward(c10::DispatchKeySet, const LossCall& c) {
    switch (c.kind) {
      case LossKind::kBce:
        return loss_forward_cuda<losses::Bce>(c);
      case LossKind::kBceWithLogits:
        return loss_forward_cuda<losses::BceWithLogits>(c);
      default:
        return loss_forward_cuda<losses::SigmoidFocal>(c);
    }
  }

  static TensorPair backward(c10::DispatchKeySet, const LossCall& c,
                             const at::Tensor& grad_output, std::array<bool, 2> output_mask) {
    switch (c.kind) {
      case LossKind::kBce:
        return loss_backward_cuda<losses::Bce>(c, grad_output, output_mask);
      case LossKind::kBceWithLogits:
        return loss_backward_cuda<losses::BceWithLogits>(c, grad_output, output_mask);
      default:
        return loss_backward_cuda<losses::SigmoidFocal>(c, grad_output, output_mask);
    }
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, CUDA, m) { LossKernels<CudaKernels>::register_all(m); }

}  // namespace bce_ext::cuda
