#pragma once
// Host-side preparation shared by every device's kernels, so that the CPU and CUDA wrappers only
// dispatch and launch: argument checks with PyTorch's messages, the outputs, one element order for
// all operands, the broadcast weight as a small table, and the incoming gradient.
#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <vector>

namespace bce_ext {

// The weight of element i (in kernel order) is values[(i / inner) % period], counting from values'
// first element. `values` is the weight's own distinct elements in the compute type (the weight
// itself when it is already laid out so), not an N-sized copy, whenever the broadcast allows it.
struct WeightTable {
  at::Tensor values;  // undefined: no weight
  int64_t inner = 1;
  int64_t period = 1;
};

// The incoming gradient as the backward kernels read it, in the input's dtype: when one value
// serves every element (a reduced loss, or an expanded gradient) `scalar` is set and the kernels
// read values' first element; otherwise `values` is in kernel order, like the other operands.
struct IncomingGrad {
  at::Tensor values;
  bool scalar = false;
};

// A forward call, checked and laid out. Kernels read x and t (contiguous, in kernel order: the
// memory order of the output, or of the input for a reduced loss) and write out_flat, the
// contiguous kernel-order view of `out` ('none': laid out like the input, as PyTorch's
// empty_like; mean and sum: 0-dim, and out_flat is out). For an empty input `out` is already the
// result (NaN for mean, 0 for sum) and the rest is left undefined.
struct ForwardArgs {
  at::Tensor out, out_flat, x, t;
  WeightTable weight;
  bool empty() const { return !x.defined(); }
};
ForwardArgs prepare_forward(const at::Tensor& self, const at::Tensor& target,
                            const std::optional<at::Tensor>& weight, int64_t reduction);

// A backward call, checked and laid out: gi and gt are the results (laid out like the input; an
// unwanted one is an empty tensor) and gi_flat/gt_flat their kernel-order views (undefined when
// unwanted). Nothing to compute (empty input, or no gradient wanted): empty() is true.
struct BackwardArgs {
  at::Tensor gi, gt, gi_flat, gt_flat, x, t;
  IncomingGrad grad;
  WeightTable weight;
  bool empty() const { return !x.defined(); }
};
BackwardArgs prepare_backward(const at::Tensor& grad_output, const at::Tensor& self,
                              const at::Tensor& target, const std::optional<at::Tensor>& weight,
                              int64_t reduction, std::array<bool, 2> output_mask);

}  // namespace bce_ext
