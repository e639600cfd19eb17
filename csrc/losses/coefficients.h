#pragma once
// The scalar coefficients of the element formulas, one struct for every loss (a loss reads the
// ones it takes; the drivers fill them from LossParams and pass them to every formula call).
// Plain C++ (CPU files with their own target flags and CUDA include it).

namespace bce_ext::losses {

template <typename T>
struct Coefficients {
  T alpha = T(0.25);  // sigmoid focal loss: weight of the positive class; < 0 turns it off
  T gamma = T(2);     // sigmoid focal loss: exponent of the modulating factor (1 - p_t)
};

}  // namespace bce_ext::losses
