#pragma once
// Every loss op's C++ signature, generated from the loss's Traits (csrc/losses/traits.h: its
// tables, label smoothing and own scalars): LossKernels<Impl> turns generic kernels of a LossCall
// (Impl::forward and Impl::backward) into the typed kernels of each loss's two ops and registers
// them for one dispatch key (cpu/, cuda/, meta/, autograd/, autocast/). The schemas are generated
// from the same Traits (schemas.cpp), so the two cannot disagree.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "../loss_call.h"

namespace bce_ext {

using TensorPair = std::tuple<at::Tensor, at::Tensor>;

namespace kernel_args {
// The argument types of the generated signatures, one per index of a pack.
template <size_t>
using Table = const std::optional<at::Tensor>&;  // weight, pos_weight
template <size_t>
using Smoothing = double;  // label_smoothing
template <size_t>
using IgnoreIndex = std::optional<double>;  // ignore_index
template <size_t>
using Kept = const std::optional<at::Tensor>&;  // the backward's divisor of 'mean' (kept)
}  // namespace kernel_args

// ignore_index rounded to the target's dtype (the comparison `target == ignore_index` makes).
double ignore_value_in(at::ScalarType target_dtype, double ignore_index);

// The typed kernels of loss L over Impl, and the calls of its ops from C++ (Ti: its tables, Si:
// its label smoothing, if any, S and Ki: its own scalars' types and slots, Ii: its ignore_index,
// if any).
template <class Impl, template <class, class> class L,
          class Tables = std::make_index_sequence<losses::Traits<L>::kTables>,
          class Smoothing = std::make_index_sequence<losses::Traits<L>::kLabelSmoothing ? 1 : 0>,
          class Scalars = typename losses::Traits<L>::Scalars,
          class ScalarSlots = std::make_index_sequence<std::tuple_size_v<Scalars>>,
          class Ignore = std::make_index_sequence<losses::Traits<L>::kIgnoreIndex ? 1 : 0>>
struct TypedKernels;

template <class Impl, template <class, class> class L, size_t... Ti, size_t... Si, class... S,
          size_t... Ki, size_t... Ii>
struct TypedKernels<Impl, L, std::index_sequence<Ti...>, std::index_sequence<Si...>,
                    std::tuple<S...>, std::index_sequence<Ki...>, std::index_sequence<Ii...>> {
  static LossCall make(const at::Tensor& self, const at::Tensor& target,
                       std::array<const std::optional<at::Tensor>*, 2> tables, int64_t reduction,
                       double label_smoothing, std::optional<double> ignore_index,
                       const std::optional<at::Tensor>* kept, const S&... scalars) {
    LossCall c;
    if (ignore_index.has_value()) {
      c.params.ignore = true;
      c.params.ignore_value = ignore_value_in(target.scalar_type(), *ignore_index);
    }
    if (kept != nullptr) c.kept = *kept;
    c.kind = KindOf<L>::value;
    c.self = self;
    c.target = target;
    if (tables[0] != nullptr) c.weight = *tables[0];
    if (tables[1] != nullptr) c.pos_weight = *tables[1];
    c.reduction = reduction;
    c.params.label_smoothing = label_smoothing;
    ((c.params.scalars[Ki] = static_cast<double>(scalars)), ...);
    return c;
  }

  static at::Tensor forward(c10::DispatchKeySet ks, const at::Tensor& self,
                            const at::Tensor& target, kernel_args::Table<Ti>... tables,
                            int64_t reduction, kernel_args::Smoothing<Si>... smoothing,
                            S... scalars, kernel_args::IgnoreIndex<Ii>... ignore_index) {
    return Impl::forward(ks, make(self, target, {&tables...}, reduction, (0.0 + ... + smoothing),
                                  first_of(ignore_index...), nullptr, scalars...));
  }

  static TensorPair backward(c10::DispatchKeySet ks, const at::Tensor& grad_output,
                             const at::Tensor& self, const at::Tensor& target,
                             kernel_args::Table<Ti>... tables, int64_t reduction,
                             std::array<bool, 2> output_mask,
                             kernel_args::Smoothing<Si>... smoothing, S... scalars,
                             kernel_args::IgnoreIndex<Ii>... ignore_index,
                             kernel_args::Kept<Ii>... kept) {
    return Impl::backward(ks,
                          make(self, target, {&tables...}, reduction, (0.0 + ... + smoothing),
                               first_of(ignore_index...), first_ptr(kept...), scalars...),
                          grad_output, output_mask);
  }

  // The call `c` of L's ops through a typed handle (op.call, or op.redispatch below ks), its
  // arguments taken out of the LossCall in schema order.
  template <class Op>
  static at::Tensor call_forward(const Op& op, std::optional<c10::DispatchKeySet> ks,
                                 const LossCall& c) {
    if (ks) {
      return op.redispatch(*ks, c.self, c.target, table<Ti>(c)..., c.reduction, smoothing<Si>(c)...,
                           static_cast<S>(c.params.scalars[Ki])..., ignore<Ii>(c)...);
    }
    return op.call(c.self, c.target, table<Ti>(c)..., c.reduction, smoothing<Si>(c)...,
                   static_cast<S>(c.params.scalars[Ki])..., ignore<Ii>(c)...);
  }

  template <class Op>
  static TensorPair call_backward(const Op& op, std::optional<c10::DispatchKeySet> ks,
                                  const LossCall& c, const at::Tensor& grad_output,
                                  std::array<bool, 2> output_mask) {
    if (ks) {
      return op.redispatch(*ks, grad_output, c.self, c.target, table<Ti>(c)..., c.reduction,
                           output_mask, smoothing<Si>(c)...,
                           static_cast<S>(c.params.scalars[Ki])..., ignore<Ii>(c)...,
                           kept<Ii>(c)...);
    }
    return op.call(grad_output, c.self, c.target, table<Ti>(c)..., c.reduction, output_mask,
                   smoothing<Si>(c)..., static_cast<S>(c.params.scalars[Ki])..., ignore<Ii>(c)...,
                   kept<Ii>(c)...);
  }

 private:
  template <size_t I>
  static const std::optional<at::Tensor>& table(const LossCall& c) {
    return I == 0 ? c.weight : c.pos_weight;
  }
  template <size_t>
  static double smoothing(const LossCall& c) {
    return c.params.label_smoothing;
  }
  template <size_t>
  static std::optional<double> ignore(const LossCall& c) {
    return c.params.ignore ? std::optional<double>(c.params.ignore_value) : std::nullopt;
  }
  template <size_t>
  static const std::optional<at::Tensor>& kept(const LossCall& c) {
    return c.kept;
  }
  static std::optional<double> first_of() { return std::nullopt; }
  static std::optional<double> first_of(std::optional<double> v) { return v; }
  static const std::optional<at::Tensor>* first_ptr() { return nullptr; }
  static const std::optional<at::Tensor>* first_ptr(const std::optional<at::Tensor>& v) {
    return &v;
  }
};

// Registers Impl's kernels of every loss's ops for one dispatch key (each loss from its Traits:
// no list of ops here).
template <class Impl>
struct LossKernels {
  static void register_forwards(torch::Library& m) {
    for_each_loss([&](auto loss) {
      using K = kernels_of<decltype(loss)>;
      m.impl(decltype(loss)::Traits::kOp, TORCH_FN(K::forward));
    });
  }

  static void register_all(torch::Library& m) {
    register_forwards(m);
    for_each_loss([&](auto loss) {
      using K = kernels_of<decltype(loss)>;
      m.impl((std::string(decltype(loss)::Traits::kOp) + "_backward").c_str(),
             TORCH_FN(K::backward));
    });
  }

 private:
  template <class LossTag>
  struct KernelsOf;
  template <template <class, class> class L>
  struct KernelsOf<Loss<L>> {
    using type = TypedKernels<Impl, L>;
  };
  template <class LossTag>
  using kernels_of = typename KernelsOf<LossTag>::type;
};

}  // namespace bce_ext
