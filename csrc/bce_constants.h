#pragma once
// Constants of PyTorch's binary cross entropy, named once for every kernel (CPU and CUDA).
// No torch headers here: the ISA-specific CPU files include this with their own target flags.
#include <cstdint>

namespace bce_ext {

// Each log term is clamped at -100 before it is weighted, so one element's loss is at most 100.
// Source: aten/src/ATen/native/Loss.cpp (binary_cross_entropy_out_cpu) and cuda/Loss.cu.
constexpr float kLogClamp = -100.0f;

// Lower bound of the gradient's denominator max(x * (1 - x), EPSILON).
// Source: `constexpr float EPSILON = 1e-12;` in Loss.cpp and cuda/Loss.cu. It is a float literal,
// so widened to double it is 9.999999960041972e-13, which is what PyTorch's float64 gradient uses.
constexpr float kGradEpsilon = 1e-12f;

// The constant PyTorch's double-backward formulas add (`auto eps = 1e-12;`, a double, in
// torch/csrc/autograd/FunctionsManual.cpp), unlike the float EPSILON of the first derivative.
constexpr double kDoubleBackwardEps = 1e-12;

// Reduction codes of ATen (at::Reduction::Reduction).
constexpr int64_t kReductionNone = 0;
constexpr int64_t kReductionMean = 1;
constexpr int64_t kReductionSum = 2;
// bce_ext's own, for a call with an ignore_index only: the forward returns a float64 tensor of two
// elements, the sum of the losses and the number of elements not ignored, so that 'mean' can hand
// its divisor from the forward to the backward (autograd, DTensor) without a second pass.
constexpr int64_t kReductionSumAndCount = 3;

}  // namespace bce_ext
