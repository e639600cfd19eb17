#pragma once
// Host-side preparation shared by every loss and every device's kernels, so that the CPU and CUDA
// wrappers only dispatch and launch: argument checks with PyTorch's messages, the outputs, one
// element order for all operands, the broadcast weights as small tables, and the incoming gradient.
#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <vector>

#include "loss_call.h"

namespace bce_ext {

// A broadcast operand (weight, pos_weight): the value for element i (in kernel order) is
// flat()[(i / inner) % period]. `values` is the operand's own distinct elements in the compute
// type, not an N-sized copy, whenever the broadcast allows it: either a contiguous 1-D table, or
// (to save the dispatches of a copy or a view on every call) the tensor itself when its memory
// already holds the table, densely, in kernel order, whatever its logical strides (a channels_last
// or transposed weight, say). The kernels read values.data_ptr() in memory order; code that needs a
// tensor of the table calls flat().
struct WeightTable {
  at::Tensor values;  // undefined: no such operand
  int64_t inner = 1;
  int64_t period = 1;
  // `values` as a contiguous 1-D tensor of `period` elements, in the order the kernels read it.
  at::Tensor flat() const;
};

// The incoming gradient as the backward kernels read it, in the input's dtype: when one value
// serves every element (a reduced loss, or an expanded gradient) `scalar` is set and the kernels
// read values' first element; otherwise `values` is in kernel order, like the other operands.
struct IncomingGrad {
  at::Tensor values;
  bool scalar = false;
};

// The checks of a loss's forward op, in PyTorch's order and with its messages (shape, broadcasts,
// devices, dtypes), on symbolic sizes too: the Meta kernels (csrc/meta) run them as well.
// first_index: self's position among the op's arguments, for ATen's message on a None tensor.
void check_forward(const LossCall& call, int first_index = 0);
// check_forward, plus the backward op's own: grad_output's device, one value for a reduced loss.
void check_backward(const LossCall& call, const at::Tensor& grad_output);

// A forward call, checked and laid out. Kernels read x and t (contiguous, in kernel order: the
// memory order of the output, or of the input for a reduced loss) and write out_flat, the
// contiguous kernel-order view of `out` ('none': laid out like the input, as PyTorch's
// empty_like; mean and sum: 0-dim, and out_flat is out). When done() is true there is nothing left
// for the kernel and `out` is already the result: an empty input (NaN for mean, 0 for sum), or a
// call that loss_prepare.cpp computes as PyTorch does (inputs of two dtypes, a float64 weight on a
// float32 or half input).
struct ForwardArgs {
  at::Tensor out, out_flat, x, t;
  WeightTable weight, pos_weight;
  bool done() const { return !x.defined(); }
};
// Tables: how prepare_forward/prepare_backward hand a weight (or pos_weight) of the input's half
// type that has one value per element: converted to float32 (kComputeType: an N-element copy), or
// as it is (kKeepFullHalf: the CPU loops convert it in registers, like the input).
enum class Tables { kComputeType, kKeepFullHalf };
ForwardArgs prepare_forward(const LossCall& call, Tables tables = Tables::kComputeType);

// A backward call, checked and laid out: gi and gt are the results (laid out like the input; an
// unwanted one is an empty tensor) and gi_flat/gt_flat their kernel-order views (undefined when
// unwanted). done(): nothing left for the kernel (empty input, no gradient wanted, or computed
// here).
struct BackwardArgs {
  at::Tensor gi, gt, gi_flat, gt_flat, x, t;
  IncomingGrad grad;
  at::Tensor kept;  // 'mean' with an ignore_index: its divisor (0-dim float64), else undefined
  WeightTable weight, pos_weight;
  bool done() const { return !x.defined(); }
};
BackwardArgs prepare_backward(const LossCall& call, const at::Tensor& grad_output,
                              std::array<bool, 2> output_mask,
                              Tables tables = Tables::kComputeType);

// The divisor of 'mean' with an ignore_index: the forward's count (call.kept) where the caller has
// it, else the elements whose target is not the index, counted here (a 0-dim float64 tensor).
at::Tensor mean_divisor(const LossCall& call);

// The dtype of a loss's result: PyTorch's (torchvision's for the focal loss).
at::ScalarType result_type(const LossCall& call);

// The outputs of either op, as the kernels allocate them (the Meta kernels return just these).
at::Tensor empty_forward_output(const LossCall& call);
std::array<at::Tensor, 2> empty_backward_outputs(const LossCall& call,
                                                 std::array<bool, 2> output_mask);

}  // namespace bce_ext
