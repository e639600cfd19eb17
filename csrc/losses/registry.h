#pragma once
// Every loss, declared once. A loss is its header (formulas and Traits), included below, and one
// entry X(Name) of BCE_EXT_LOSSES, Name the formulas' class template in bce_ext::losses. The list
// is an X-macro: it generates LossKind, the CPU loop tables and visit_loss, the one switch on the
// loss kind, from which every other site dispatches to an overload per loss (so a site missing a
// loss fails to compile: no default, no catch-all else).
// Plain C++, no torch headers (the CPU files with their own target flags include it; they use the
// list and KindOf, never visit_loss, a host function).
#include "bce.h"
#include "bce_with_logits.h"
#include "quality_focal.h"
#include "sigmoid_focal.h"
#include "traits.h"
#include "varifocal.h"

#define BCE_EXT_LOSSES(X) \
  X(Bce)                  \
  X(BceWithLogits)        \
  X(SigmoidFocal)         \
  X(Varifocal)            \
  X(QualityFocal)

namespace bce_ext {

enum class LossKind : int {
#define BCE_EXT_LOSS_KIND(Name) k##Name,
  BCE_EXT_LOSSES(BCE_EXT_LOSS_KIND)
#undef BCE_EXT_LOSS_KIND
};

#define BCE_EXT_LOSS_COUNT_ONE(Name) +1
constexpr int kLossCount = 0 BCE_EXT_LOSSES(BCE_EXT_LOSS_COUNT_ONE);
#undef BCE_EXT_LOSS_COUNT_ONE

// A loss as a type, for overloads per loss: Loss<losses::Bce>{}.
template <template <class, class> class L>
struct Loss {
  using Traits = losses::Traits<L>;
};

// The LossKind of a loss's formulas: KindOf<L>::value (a constant, no function: the CPU files
// compiled with their own target flags must share no inline code).
template <template <class, class> class L>
struct KindOf;
#define BCE_EXT_LOSS_KIND_OF(Name)                       \
  template <>                                            \
  struct KindOf<losses::Name> {                          \
    static constexpr LossKind value = LossKind::k##Name; \
  };
BCE_EXT_LOSSES(BCE_EXT_LOSS_KIND_OF)
#undef BCE_EXT_LOSS_KIND_OF

// Each loss's own scalars fit the slots that carry them (coefficients.h).
#define BCE_EXT_LOSS_SCALARS_FIT(Name)                                                           \
  static_assert(std::tuple_size_v<losses::Traits<losses::Name>::Scalars> <= losses::kMaxScalars, \
                "csrc/losses/coefficients.h: raise kMaxScalars for " #Name);
BCE_EXT_LOSSES(BCE_EXT_LOSS_SCALARS_FIT)
#undef BCE_EXT_LOSS_SCALARS_FIT

// f(Loss<L>{}) for every loss, in the list's order (the registrations of its ops).
template <class F>
void for_each_loss(F&& f) {
#define BCE_EXT_LOSS_CALL(Name) f(Loss<losses::Name>{});
  BCE_EXT_LOSSES(BCE_EXT_LOSS_CALL)
#undef BCE_EXT_LOSS_CALL
}

// f(Loss<L>{}) for the loss `kind` names: the one switch on the loss kind.
template <class F>
decltype(auto) visit_loss(LossKind kind, F&& f) {
  switch (kind) {
#define BCE_EXT_LOSS_CASE(Name) \
  case LossKind::k##Name:       \
    return f(Loss<losses::Name>{});
    BCE_EXT_LOSSES(BCE_EXT_LOSS_CASE)
#undef BCE_EXT_LOSS_CASE
  }
  __builtin_trap();  // a value outside the enumeration (each enumerator has its case: -Wswitch)
}

}  // namespace bce_ext
