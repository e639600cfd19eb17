#pragma once
// What names a loss and its scalar parameters, shared by the host code, the CPU loops and the CUDA
// kernels. Plain C++, no torch headers (the ISA-specific CPU files include it).
#include <cstdint>

namespace bce_ext {

// The losses, each with its element formulas in csrc/losses/ and its ops in csrc/ops/.
enum class LossKind : int { kBce = 0, kBceWithLogits = 1, kSigmoidFocal = 2, kCount = 3 };

// The scalar parameters of a call (those a loss does not take keep their defaults).
struct LossParams {
  double label_smoothing = 0.0;  // the target t becomes t * (1 - s) + s / 2
  double alpha = 0.25;           // sigmoid focal loss (see csrc/losses/sigmoid_focal.h)
  double gamma = 2.0;
};

}  // namespace bce_ext
