// The CUDA kernels of a build without them (setup.py builds them only when a GPU is visible, or
// with FORCE_CUDA=1): every op raises an error that says so and how to build them, where the
// dispatcher alone would say only that the CUDA backend has no kernel.
#ifndef BCE_EXT_WITH_CUDA
#include <torch/library.h>

#include <array>

#include "../ops/loss_kernels.h"

namespace bce_ext::cuda {
namespace {

[[noreturn]] void missing(const LossCall& c) {
  TORCH_CHECK(false, "bce_ext::", c.name(), " got CUDA tensors, but this build of bce_ext has no ",
              "CUDA kernels: setup.py builds them when torch has CUDA, a CUDA toolkit is found ",
              "and a GPU is visible. Build them anyway with FORCE_CUDA=1, e.g. `FORCE_CUDA=1 pip ",
              "install --no-build-isolation -e .` (TORCH_CUDA_ARCH_LIST chooses the GPU ",
              "architectures); `python -m bce_ext.info` shows what was built.");
}

struct MissingCudaKernels {
  static at::Tensor forward(c10::DispatchKeySet, const LossCall& c) { missing(c); }
  static TensorPair backward(c10::DispatchKeySet, const LossCall& c, const at::Tensor&,
                             std::array<bool, 2>) {
    missing(c);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, CUDA, m) { LossKernels<MissingCudaKernels>::register_all(m); }

}  // namespace bce_ext::cuda
#endif  // BCE_EXT_WITH_CUDA
