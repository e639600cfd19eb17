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

#include "../losses/registry.h"
#include "vec/loops_impl.h"
#include "vec/siglip_tile.h"

namespace bce_ext::cpu {
namespace {

template <typename T>
using MathOf = vec_math::Math<Portable<T>>;

// Every loss's loops, keyed by LossKind (generated from the registry's list, and checked); T the
// lane type, S the storage type.
template <typename T, typename S = T>
constexpr Loops<S> kPortableLoops[kLossCount] = {
#define BCE_EXT_PORTABLE_LOOPS(Name) \
  loops::make_loops<Portable<T>, losses::Name, MathOf<T>, S>("scalar"),
    BCE_EXT_LOSSES(BCE_EXT_PORTABLE_LOOPS)
#undef BCE_EXT_PORTABLE_LOOPS
};
static_assert(keyed_by_loss(kPortableLoops<float>) && keyed_by_loss(kPortableLoops<double>) &&
              keyed_by_loss(kPortableLoops<float, Float16Bits>) &&
              keyed_by_loss(kPortableLoops<float, BFloat16Bits>));

constexpr IsaLoops kLoops = {kPortableLoops<float>,
                             kPortableLoops<double>,
                             kPortableLoops<float, Float16Bits>,
                             kPortableLoops<float, BFloat16Bits>,
                             &siglip::tile_loop<Portable<float>, MathOf<float>>,
                             &siglip::tile_loop<Portable<double>, MathOf<double>>};

constexpr Converters kConverters = half_convert::make_converters<Portable<float>>();

}  // namespace

const IsaLoops& portable_loops() { return kLoops; }
const Converters& portable_converters() { return kConverters; }

}  // namespace bce_ext::cpu
