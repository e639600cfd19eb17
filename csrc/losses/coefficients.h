#pragma once
// The scalar arguments a loss declares for itself (Traits<L>::Scalars: alpha and gamma for the
// focal loss, none for BCE), as the drivers carry them to the element formulas: slots in the order
// of the loss's schema, in the compute type. Each loss names its own slots in its header (the
// focal loss's Own); the drivers copy them without knowing what they mean. Plain C++ (the CPU
// files with their own target flags and CUDA include it).

namespace bce_ext::losses {

// Slots for the scalars of the loss that has the most (registry.h checks every loss fits).
constexpr int kMaxScalars = 4;

template <typename T>
struct Coefficients {
  T v[kMaxScalars] = {};
};

}  // namespace bce_ext::losses
