#pragma once
// The losses (LossKind, from their registry) and a call's scalar parameters, shared by the host
// code, the CPU loops and the CUDA kernels. Plain C++, no torch headers (the ISA-specific CPU files
// include it).
#include <cstdint>

#include "losses/registry.h"  // LossKind

namespace bce_ext {

// The scalar parameters of a call (those a loss does not take keep their defaults).
struct LossParams {
  double label_smoothing = 0.0;  // the target t becomes t * (1 - s) + s / 2
  double alpha = 0.25;           // sigmoid focal loss (see csrc/losses/sigmoid_focal.h)
  double gamma = 2.0;
};

}  // namespace bce_ext
