// CUDA kernels of bce_ext::sigmoid_focal_loss, every dtype and variant: a translation unit of their
// own, so that nvcc builds the ops in parallel (loss_cuda_host.cuh).
#include "../../losses/sigmoid_focal.h"
#include "../loss_cuda_host.cuh"

namespace bce_ext::cuda {

template at::Tensor loss_forward_cuda<losses::SigmoidFocal>(const LossCall&);

}  // namespace bce_ext::cuda
