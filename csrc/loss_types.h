#pragma once
// The losses (LossKind, from their registry) and a call's scalar parameters, shared by the host
// code, the CPU loops and the CUDA kernels. Plain C++, no torch headers (the ISA-specific CPU files
// include it).
#include <cstdint>

#include "losses/registry.h"  // LossKind, Coefficients

namespace bce_ext {

// The scalar arguments of a call: bce_ext's label smoothing (0 for a loss that takes none), and
// the loss's own scalars in the slots of its Traits<L>::Scalars, in schema order (a loss names them
// in its header; nothing shared widens for a loss with scalars of its own).
struct LossParams {
  double label_smoothing = 0.0;  // the target t becomes t * (1 - s) + s / 2
  double scalars[losses::kMaxScalars] = {};
};

}  // namespace bce_ext
