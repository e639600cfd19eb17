// The CUDA kernels of every loss op, registered for the CUDA dispatch key. Each loss's kernels
// (loss_cuda_driver.cuh, instantiated with its element formulas from csrc/losses/) and host code
// (loss_cuda_host.cuh) are compiled in a file per loss and direction that setup.py generates.
// Symmetric with csrc/cpu/loss_cpu.cpp.
#include <torch/library.h>

#include <array>

#include "../losses/registry.h"
#include "../ops/loss_kernels.h"
#include "loss_cuda.h"

namespace bce_ext::cuda {
namespace {

// The CUDA kernels of every loss op (see ops/loss_kernels.h).
struct CudaKernels {
  static at::Tensor forward(c10::DispatchKeySet, const LossCall& c) {
    return visit_loss(c.kind, [&](auto loss) { return forward_of(loss, c); });
  }

  static TensorPair backward(c10::DispatchKeySet, const LossCall& c, const at::Tensor& grad_output,
                             std::array<bool, 2> output_mask) {
    return visit_loss(c.kind,
                      [&](auto loss) { return backward_of(loss, c, grad_output, output_mask); });
  }

 private:
  template <template <class, class> class L>
  static at::Tensor forward_of(Loss<L>, const LossCall& c) {
    return loss_forward_cuda<L>(c);
  }
  template <template <class, class> class L>
  static TensorPair backward_of(Loss<L>, const LossCall& c, const at::Tensor& grad_output,
                                std::array<bool, 2> output_mask) {
    return loss_backward_cuda<L>(c, grad_output, output_mask);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, CUDA, m) { LossKernels<CudaKernels>::register_all(m); }

}  // namespace bce_ext::cuda
