// The SigLIP tile loop of a build without CUDA kernels: CUDA features raise the error that says
// how to build them (as the losses' ops do: csrc/cuda/loss_cuda_missing.cpp).
#ifndef BCE_EXT_WITH_CUDA
#include "siglip_tile_cuda.h"

namespace bce_ext::siglip {

void cuda_tile(const at::Tensor&, const int64_t*, const int64_t*, int64_t, int64_t,
               const at::Tensor&, const at::Tensor&, double, bool, const at::Tensor&) {
  TORCH_CHECK(false, "bce_ext::siglip_loss got CUDA tensors, but this build of bce_ext has no ",
              "CUDA kernels: build them with FORCE_CUDA=1 (`python -m bce_ext.info` shows what ",
              "was built)");
}

}  // namespace bce_ext::siglip
#endif
