#pragma once
// The pairwise sigmoid (SigLIP) loss of one image-text pair, written once over a backend V and its
// Math (exp, log1p01, sigmoid: the CPU loops' csrc/cpu/vec/ and the CUDA kernels'
// cuda_math.cuh), for csrc/siglip/. Not an element-wise loss of the registry: its operands are the
// products of two feature matrices (csrc/siglip/siglip_loss.cpp tiles them).
//
// Python reference (logit = scale * <image_i, text_j> + bias, z = +1 for a positive pair, -1
// otherwise; open_clip's SigLipLoss: -logsigmoid(z * logit)):
//   y    = -z * logit
//   loss = max(y, 0) + log1p(exp(-abs(y)))       # softplus(y) = -logsigmoid(z * logit)
//   grad = -z * sigmoid(y)                        # d loss / d logit
// Written on y so that nothing cancels: a confident negative (logit -10, SigLIP's initial bias)
// has a loss of 4.5e-5, which -logsigmoid computed as logit - (logit - tail) in float32 gets
// within only 2% (an ulp of 10 against the tail).
#include "host_device.h"

namespace bce_ext::losses {

template <class V, class MathV>
struct PairwiseSigmoid {
  using F = typename V::F;
  using M = typename V::M;

  // positive: the lanes whose pair is positive (z = +1).
  BCE_EXT_HD static void terms(F logit, M positive, F& loss, F& grad) {
    const F y = V::blend(positive, logit, V::neg(logit));
    const F tail = MathV::log1p01(MathV::exp(V::neg(V::abs(y))));
    loss = V::add(V::max(y, V::zero()), tail);
    const F s = MathV::sigmoid(y);
    grad = V::blend(positive, s, V::neg(s));
  }
};

}  // namespace bce_ext::losses
