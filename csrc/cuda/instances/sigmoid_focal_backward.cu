// CUDA kernels of bce_ext::sigmoid_focal_loss_backward, every dtype and variant: a translation unit
// of their own, so that nvcc builds the ops in parallel (loss_cuda_host.cuh).
#include "../../losses/sigmoid_focal.h"
#include "../loss_cuda_host.cuh"

namespace bce_ext::cuda {

template TensorPair loss_backward_cuda<losses::SigmoidFocal>(const LossCall&, const at::Tensor&,
                                                             std::array<bool, 2>);

}  // namespace bce_ext::cuda
