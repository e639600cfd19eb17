#pragma once
// The second derivatives of binary cross entropy, in one place: the element-wise partial
// derivatives of the backward op's outputs (grad_input, grad_target) with respect to its inputs
// (grad_output, input, target). Reverse mode (double backward) and forward mode (the tangents of
// the backward op) both combine them. Written in ATen ops, so that they are differentiable in turn
// (any order), batch under vmap and trace under torch.compile.
#include <ATen/ATen.h>

#include <optional>

namespace bce_ext {

enum class BackwardOutput { kGradInput, kGradTarget };
enum class BackwardInput { kGradOutput, kInput, kTarget };

// d out / d in, element by element, broadcast to the input's shape (grad_output g may be a single
// value for a reduced loss). Undefined where the derivative is identically zero (grad_target does
// not depend on the target).
at::Tensor backward_partial(BackwardOutput out, BackwardInput in, const at::Tensor& g,
                            const at::Tensor& x, const at::Tensor& t,
                            const std::optional<at::Tensor>& weight, int64_t reduction);

}  // namespace bce_ext
