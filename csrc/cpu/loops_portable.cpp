// The portable inner loops (loops.h) of every loss, for float and double: the template of
// vec/loops_impl.h over the one-lane backend, whose Math is libm (so float32 and float64 element
// values follow PyTorch's CPU kernels to the last bit). Valid on any CPU; the reference for the
// vectorised loops, and the float64 kernels.
#include "vec/scalar_backend.h"

#include "../losses/bce.h"
#include "../losses/bce_with_logits.h"
#include "../losses/sigmoid_focal.h"
#include "vec/loops_impl.h"

namespace bce_ext::cpu {
namespace {

template <typename T>
using MathOf = vec_math::Math<Portable<T>>;

// Indexed by LossKind.
template <typename T>
constexpr Loops<T> kPortableLoops[] = {
    loops::make_loops<Portable<T>, losses::Bce, MathOf<T>>("scalar"),
    loops::make_loops<Portable<T>, losses::BceWithLogits, MathOf<T>>("scalar"),
    loops::make_loops<Portable<T>, losses::SigmoidFocal, MathOf<T>>("scalar"),
};
static_assert(sizeof(kPortableLoops<float>) / sizeof(Loops<float>) ==
              static_cast<int>(LossKind::kCount));

}  // namespace

const Loops<float>& portable_float_loops(LossKind loss) {
  return kPortableLoops<float>[static_cast<int>(loss)];
}

const Loops<double>& portable_double_loops(LossKind loss) {
  return kPortableLoops<double>[static_cast<int>(loss)];
}

}  // namespace bce_ext::cpu
