// The portable inner loops (loops.h) of every loss, for every storage type: the template of
// vec/loops_impl.h over the one-lane backend, whose Math is libm (so float32 and float64 element
// values follow PyTorch's CPU kernels to the last bit) and whose half conversions are c10's
// algorithm. Valid on any CPU; the reference for the vectorised loops, and the float64 kernels.
// a * b + c must not become an FMA (on targets that have one): the formulas and the float16
// conversion round as their scalar references do.
#ifdef __clang__
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "vec/scalar_backend.h"

#include "../losses/bce.h"
#include "../losses/bce_with_logits.h"
#include "../losses/sigmoid_focal.h"
#include "vec/loops_impl.h"

namespace bce_ext::cpu {
namespace {

template <typename T>
using MathOf = vec_math::Math<Portable<T>>;

// Indexed by LossKind; T the lane type, S the storage type.
template <typename T, typename S = T>
constexpr Loops<S> kPortableLoops[] = {
    loops::make_loops<Portable<T>, losses::Bce, MathOf<T>, S>("scalar"),
    loops::make_loops<Portable<T>, losses::BceWithLogits, MathOf<T>, S>("scalar"),
    loops::make_loops<Portable<T>, losses::SigmoidFocal, MathOf<T>, S>("scalar"),
};
static_assert(sizeof(kPortableLoops<float>) / sizeof(Loops<float>) ==
              static_cast<int>(LossKind::kCount));

constexpr IsaLoops kLoops = {kPortableLoops<float>, kPortableLoops<double>,
                             kPortableLoops<float, Float16Bits>,
                             kPortableLoops<float, BFloat16Bits>};

constexpr Converters kConverters = half_convert::make_converters<Portable<float>>();

}  // namespace

const IsaLoops& portable_loops() { return kLoops; }
const Converters& portable_converters() { return kConverters; }

}  // namespace bce_ext::cpu
