#pragma once
// The second derivatives of every loss, in one place: the element-wise partial derivatives of the
// backward op's outputs (grad_input, grad_target) with respect to its inputs (grad_output, input,
// target). Reverse mode (double backward) and forward mode (the tangents of the backward op) both
// combine them. Written in ATen ops, so that they are differentiable in turn (any order), batch
// under vmap and trace under torch.compile.
#include <ATen/ATen.h>

#include "../loss_call.h"

namespace bce_ext {

using losses::BackwardInput;
using losses::BackwardOutput;

// d out / d in for the backward op of `call` with incoming gradient g, element by element, in the
// input's shape (g may be a single value for a reduced loss). Undefined where the derivative is
// identically zero (the grad_target of BCE and of the logits loss does not depend on the target).
at::Tensor backward_partial(const LossCall& call, BackwardOutput out, BackwardInput in,
                            const at::Tensor& g);

}  // namespace bce_ext
