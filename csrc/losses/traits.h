#pragma once
// What a loss declares about itself beside its element formulas: `Traits<Loss>`, specialised in
// the loss's own header (csrc/losses/<loss>.h) next to its formulas, and read by every site that
// differs by loss (losses/registry.h lists the losses). Plain C++, no torch headers: the CPU files
// compiled with their own target flags and the CUDA kernels include it.

#include <tuple>

namespace bce_ext::losses {

// The dtype of a loss's result.
enum class ResultDtype {
  kInput,     // the input's (BCE)
  kTarget,    // the target's (BCE with logits: PyTorch computes it in place on 1 - target)
  kPromoted,  // input's and target's promoted (torchvision's chain of ops)
};

// Which operand a 'none' loss is laid out like (PyTorch's empty_like, or its chain of ops).
enum class LaidOutLike { kInput, kTarget };

// Traits<Loss> for a loss's formulas template Loss<V, MathV>, everything its ops' schemas and
// signatures are generated from (csrc/ops/loss_kernels.h, schemas.cpp):
//   static constexpr const char* kOp;     the op's name, as PyTorch's messages give it
//   static constexpr const char* kNode;   its autograd node's name, before "Backward"
//   static constexpr ResultDtype kResult;
//   static constexpr LaidOutLike kLayout;
//   static constexpr int kTables;         the tensors after input and target that broadcast
//                                         against the target: 0, 1 (weight) or 2 (and pos_weight)
//   static constexpr bool kLabelSmoothing;      whether it takes bce_ext's label_smoothing
//   static constexpr bool kIgnoreIndex;         whether it takes bce_ext's ignore_index
//   static constexpr int kDefaultReduction;     its reduction's default (0 none, 1 mean, 2 sum)
//   using Scalars = std::tuple<...>;      its own scalar arguments' C++ types, in schema order
//   static constexpr const char* kScalars;      their schema text ("float alpha=0.25, ..."), or ""
//   template <class Checks> static void check(Checks& c);
//                                         its argument checks after the reduction's, in the order
//                                         of the code it replaces (loss_prepare.cpp: LossChecks)
//   template <class Tn> static Tn partial(const Partial<Tn>& a);
//                                         its second derivatives (below)
// The schema: kOp(Tensor self, Tensor target[, Tensor? weight=None[, Tensor? pos_weight=None]],
// int reduction=R[, float label_smoothing=0.0][, <kScalars>][, float? ignore_index=None]) ->
// Tensor, and its backward op kOp_backward(Tensor grad_output, Tensor self, Tensor target[,
// tables], int reduction=R, bool[2] output_mask=[True, False][, float label_smoothing=0.0][,
// <kScalars>][, float? ignore_index=None, Tensor? kept=None]) -> (Tensor, Tensor), kept the
// divisor of 'mean' that the forward counted (reduction 3, bce_constants.h).
template <template <class, class> class Loss>
struct Traits;

// The second derivatives: d out / d in of the backward op's outputs with respect to its inputs,
// element by element (csrc/autograd/loss_derivatives.h). Each loss writes them as a template over
// the tensor type Tn, in its operators and methods and in functions found by argument-dependent
// lookup (where, zeros_like, ...: ATen's, for at::Tensor), so that this header needs no torch
// header and nothing is compiled where it is not used.
enum class BackwardOutput { kGradInput, kGradTarget };
enum class BackwardInput { kGradOutput, kInput, kTarget };
template <class Tn>
struct Partial {
  BackwardOutput out;
  BackwardInput in;
  const Tn& g;            // the incoming gradient (one value for a reduced loss)
  const Tn& x;            // the input
  const Tn& t;            // the target the formulas see (after label smoothing)
  const Tn* pos_weight;   // null where the call has none
  const double* scalars;  // the loss's own scalars (Traits<L>::params reads them)
};
// The result where the derivative is identically zero: an undefined tensor.

// m ** e for m >= 0, with 0 where m = 0 and e < 0: the limit of the terms such a power enters in
// the focal family's second derivatives (a zero factor multiplies it there).
template <class Tn>
Tn power_or_zero(const Tn& m, double e) {
  const Tn v = m.pow(e);
  return e < 0 ? where(m > 0, v, zeros_like(v)) : v;
}

}  // namespace bce_ext::losses
