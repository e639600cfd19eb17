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
  // ignore_index: an element whose (raw) target equals ignore_value contributes 0 to the loss and
  // to both gradients, and is not counted by 'mean'. ignore_value is the index rounded to the
  // target's dtype (the comparison PyTorch's `target == ignore_index` makes), then widened.
  bool ignore = false;
  double ignore_value = 0.0;
};

}  // namespace bce_ext
