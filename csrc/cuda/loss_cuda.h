#pragma once
// The CUDA loss ops' entry points, one forward and one backward per loss (Loss: losses::Bce,
// losses::BceWithLogits, losses::SigmoidFocal). Declared here for loss_cuda.cu's registration;
// defined in loss_cuda_host.cuh and instantiated in a file per loss and direction that setup.py
// generates.
#include <ATen/core/Tensor.h>

#include <array>

#include "../loss_call.h"
#include "../ops/loss_kernels.h"

namespace bce_ext::cuda {

template <template <class, class> class Loss>
at::Tensor loss_forward_cuda(const LossCall& c);

template <template <class, class> class Loss>
TensorPair loss_backward_cuda(const LossCall& c, const at::Tensor& grad_output,
                              std::array<bool, 2> output_mask);

}  // namespace bce_ext::cuda
