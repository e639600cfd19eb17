#pragma once
// Host-side preparation shared by every device's kernels: argument checks with PyTorch's messages,
// one element order for all operands, and the broadcast weight as a small table.
#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace bce_ext {

// Raises PyTorch's errors (SPEC section 4) for the arguments of either op.
void check_arguments(const at::Tensor& self, const at::Tensor& target,
                     const std::optional<at::Tensor>& weight, int64_t reduction);

// check_arguments, plus the backward op's own: grad_output's device, and one value for a reduced loss.
void check_backward_arguments(const at::Tensor& grad_output, const at::Tensor& self,
                              const at::Tensor& target, const std::optional<at::Tensor>& weight,
                              int64_t reduction);

// The order in which the kernels visit elements: the dimensions of `like` sorted by stride, so that a
// tensor laid out like `like` (contiguous, transposed, channels_last) is read in memory order.
std::vector<int64_t> memory_order(const at::Tensor& like);

// `t` (broadcast to `sizes`) as a contiguous tensor in the given order: a view when it already is one.
at::Tensor in_order(const at::Tensor& t, at::IntArrayRef sizes, const std::vector<int64_t>& order);

// The weight of element i (in kernel order) is values[(i / inner) % period], counting from values'
// first element. `values` is the weight's own distinct elements in `dtype` (the weight itself when
// it is already laid out so), not an N-sized copy, whenever the broadcast allows it.
struct WeightTable {
  at::Tensor values;  // undefined: no weight
  int64_t inner = 1;
  int64_t period = 1;
};
WeightTable weight_table(const std::optional<at::Tensor>& weight, at::IntArrayRef sizes,
                         const std::vector<int64_t>& order, at::ScalarType dtype);

// The incoming gradient as the backward kernels read it, in `self`'s dtype: when one value serves
// every element (a reduced loss, or an expanded gradient) `scalar` is set and the kernels read
// values' first element; otherwise `values` is in the given order, like the other operands.
struct IncomingGrad {
  at::Tensor values;
  bool scalar = false;
};
IncomingGrad incoming_grad(const at::Tensor& grad_output, const at::Tensor& self, int64_t reduction,
                           const std::vector<int64_t>& order);

// Type in which the kernels compute: float for the half types (beyond PyTorch, SPEC section 2).
at::ScalarType compute_type(at::ScalarType t);

}  // namespace bce_ext
