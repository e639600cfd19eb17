#pragma once
// What a loss declares about itself beside its element formulas: `Traits<Loss>`, specialised in
// the loss's own header (csrc/losses/<loss>.h) next to its formulas, and read by every site that
// differs by loss (losses/registry.h lists the losses). Plain C++, no torch headers: the CPU files
// compiled with their own target flags and the CUDA kernels include it.

namespace bce_ext::losses {

// The dtype of a loss's result.
enum class ResultDtype {
  kInput,     // the input's (BCE)
  kTarget,    // the target's (BCE with logits: PyTorch computes it in place on 1 - target)
  kPromoted,  // input's and target's promoted (torchvision's chain of ops)
};

// Which operand a 'none' loss is laid out like (PyTorch's empty_like, or its chain of ops).
enum class LaidOutLike { kInput, kTarget };

// Traits<Loss> for a loss's formulas template Loss<V, MathV>:
//   static constexpr const char* kOp;     the op's name, as PyTorch's messages give it
//   static constexpr const char* kNode;   its autograd node's name, before "Backward"
//   static constexpr ResultDtype kResult;
//   static constexpr LaidOutLike kLayout;
template <template <class, class> class Loss>
struct Traits;

}  // namespace bce_ext::losses
