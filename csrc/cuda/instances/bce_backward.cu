// CUDA kernels of bce_ext::binary_cross_entropy_backward, every dtype and variant: a translation
// unit of their own, so that nvcc builds the ops in parallel (loss_cuda_host.cuh).
#include "../../losses/bce.h"
#include "../loss_cuda_host.cuh"

namespace bce_ext::cuda {

template TensorPair loss_backward_cuda<losses::Bce>(const LossCall&, const at::Tensor&,
                                                    std::array<bool, 2>);

}  // namespace bce_ext::cuda
