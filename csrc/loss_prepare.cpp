// Argument checks and element order shared by every loss and by the CPU and CUDA kernels.
#include "loss_prepare.h"

#include <ATen/ExpandUtils.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "bce_constants.h"
#include "torch_compat.h"

namespace bce_ext {
namespace {

// torch.Size's repr, as PyTorch's Python messages print shapes.
std::string torch_size(c10::SymIntArrayRef sizes) {
  std::ostringstream s;
  s << "torch.Size([";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "])";
  return s.str();
}

// The weight's broadcast against the target, as F.binary_cross_entropy computes it, with its
// message (torch_compat.h: which function the installed torch uses).
std::vector<c10::SymInt> broadcast_weight_shape(c10::SymIntArrayRef target,
                                                c10::SymIntArrayRef weight) {
  if constexpr (!torch_compat::kWeightBroadcastShapes) {
    const auto common = at::infer_size_symdimvector(target, weight);
    return std::vector<c10::SymInt>(common.begin(), common.end());
  }
  // torch.broadcast_shapes: the shape it reports is the common shape as far as it got.
  const size_t ndim = std::max(target.size(), weight.size());
  std::vector<c10::SymInt> common(ndim, c10::SymInt(1));
  const c10::SymIntArrayRef shapes[2] = {target, weight};
  for (int arg = 0; arg < 2; ++arg) {
    const c10::SymIntArrayRef shape = shapes[arg];
    for (size_t k = 1; k <= shape.size(); ++k) {
      const c10::SymInt& size = shape[shape.size() - k];
      c10::SymInt& slot = common[ndim - k];
      if (size == slot) continue;
      if (slot == 1) slot = size;
      if (size == 1) continue;
      TORCH_CHECK(slot == size, "Attempting to broadcast a dimension of length ", size, " at -", k,
                  "! Mismatching argument at index ", arg, " had ", torch_size(shape),
                  "; but expected shape should be broadcastable to ", c10::SymIntArrayRef(common));
    }
  }
  return common;
}

// Two operands on different devices. A meta tensor among real ones is reported as PyTorch's meta
// path (its Python decomposition, torch._prims_common.check_same_device) reports it; other pairs
// as TensorIterator does.
void check_same_device(const at::Tensor& expected, const at::Tensor& other) {
  if (other.device() == expected.device()) return;
  TORCH_CHECK(!(other.is_meta() || expected.is_meta()), "Tensor on device ", other.device(),
              " is not on the expected device ", expected.device(), "!");
  TORCH_CHECK(false,
              "Expected all tensors to be on the same device, but found at least two devices, ",
              expected.device(), " and ", other.device(), "!");
}

bool has_weight(const std::optional<at::Tensor>& weight) {
  return weight.has_value() && weight->defined();
}

// The order in which the kernels visit elements: the dimensions of `like` sorted by stride, so that
// a tensor laid out like `like` (contiguous, transposed, channels_last) is read in memory order.
std::vector<int64_t> memory_order(const at::Tensor& like) {
  std::vector<int64_t> order(like.dim());
  std::iota(order.begin(), order.end(), 0);
  const auto strides = like.strides();
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return strides[a] > strides[b]; });
  return order;
}

bool is_identity(const std::vector<int64_t>& order) {
  for (size_t d = 0; d < order.size(); ++d) {
    if (order[d] != static_cast<int64_t>(d)) return false;
  }
  return true;
}

// In kernel order, a view of `t` laid out like the output (contiguous when order is the identity).
at::Tensor permuted(const at::Tensor& t, const std::vector<int64_t>& order) {
  return is_identity(order) ? t : t.permute(order);
}

// `t` (broadcast to `sizes`) as a contiguous tensor in the given order: a view when it already is.
at::Tensor in_order(const at::Tensor& t, at::IntArrayRef sizes, const std::vector<int64_t>& order) {
  // The common case costs no dispatch (views and contiguous() are a microsecond each).
  if (t.sizes() == sizes && is_identity(order) && t.is_contiguous()) return t;
  return t.expand(sizes).permute(order).contiguous();
}

// Type in which the kernels compute: float for the half types (beyond PyTorch, see
// docs/behaviour.md).
at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

// See WeightTable (bce_prepare.h).
WeightTable weight_table(const std::optional<at::Tensor>& weight, at::IntArrayRef sizes,
                         const std::vector<int64_t>& order, at::ScalarType storage, Tables tables) {
  const at::ScalarType dtype = compute_type(storage);
  WeightTable table;
  if (!has_weight(weight)) return table;
  const at::Tensor& w = *weight;
  // The weight's strides once broadcast (right-aligned) to `sizes`, in kernel order: 0 where it is
  // broadcast. Computed by hand: views would cost a dispatch each, on every call.
  const int64_t ndim = static_cast<int64_t>(sizes.size());
  const int64_t lead = ndim - w.dim();
  std::vector<int64_t> stride(ndim, 0);
  for (int64_t d = 0; d < w.dim(); ++d) {
    if (w.size(d) != 1) stride[lead + d] = w.stride(d);
  }
  // Reading dimensions from the innermost out, a weight that is broadcast over the innermost dims,
  // real over a middle run and broadcast again over the outermost, needs only its middle run:
  // element i uses entry (i / inner) % period. Size-1 dims do not count.
  enum { kInner, kMiddle, kOuter } state = kInner;
  bool fits = true;
  bool dense = true;  // the middle run is the weight's memory, row-major in kernel order
  for (int64_t k = ndim - 1; k >= 0; --k) {
    const int64_t size = sizes[order[k]];
    const int64_t st = stride[order[k]];
    if (size == 1) continue;
    if (state == kInner && st == 0) {
      table.inner *= size;
    } else if (state != kOuter && st != 0) {
      state = kMiddle;
      dense = dense && st == table.period;
      table.period *= size;
    } else if (state == kMiddle && st == 0) {
      state = kOuter;
    } else if (st != 0) {
      fits = false;
    }
  }
  // A full weight of the input's half type, kept as it is where the kernels convert it as they read
  // it (the CPU loops, in registers).
  const bool keep_half = tables == Tables::kKeepFullHalf && w.scalar_type() == storage &&
                         storage != dtype && table.inner == 1 &&
                         table.period == c10::multiply_integers(sizes);
  if (fits && dense && w.numel() == table.period && (w.scalar_type() == dtype || keep_half)) {
    // The common (C,), (B, 1) and full weights: no copy, no dispatch. Its memory is the table,
    // even where its logical order is not (flat() says how to read it as a tensor).
    table.values = w;
    return table;
  }
  at::Tensor v = w.expand(sizes).permute(order);
  if (fits) {
    for (int64_t d = 0; d < v.dim(); ++d) {
      if (v.size(d) > 1 && v.stride(d) == 0) v = v.narrow(d, 0, 1);
    }
  } else {  // e.g. a (B, 1, L) weight on (B, C, L): no single run, so it is materialised.
    table.inner = 1;
    table.period = v.numel();
  }
  table.values = v.contiguous().to(dtype).reshape({-1});
  return table;
}

// See IncomingGrad (bce_prepare.h).
IncomingGrad incoming_grad(const at::Tensor& grad_output, const at::Tensor& self,
                           const std::vector<int64_t>& order) {
  IncomingGrad g;
  bool broadcast = true;  // every dimension of size 1 or stride 0: one value for all elements
  for (int64_t d = 0; d < grad_output.dim(); ++d) {
    broadcast = broadcast && (grad_output.size(d) == 1 || grad_output.stride(d) == 0);
  }
  g.scalar = grad_output.numel() == 1 || broadcast;
  // Each dispatch here costs about a microsecond, which is most of a small call: skip no-ops.
  g.values = grad_output;
  if (g.values.scalar_type() != self.scalar_type()) {
    // One value is converted alone (a 0-dim view of the first element), never the N elements that
    // an expanded gradient appears to have.
    if (g.scalar && g.values.numel() > 1) g.values = g.values.as_strided({}, {});
    g.values = g.values.to(self.scalar_type());
  }
  if (!g.scalar) g.values = in_order(g.values, self.sizes(), order);
  return g;
}

// Whether the weight is applied as PyTorch applies it, an in-place multiply in the promoted type
// after the unweighted loss: a float64 weight on a float32 or half input, which the compute type
// (float) cannot hold exactly (a value beyond float's range would become inf, one below its
// smallest normal would lose digits). Any other weight is converted to the compute type first,
// which changes at most the last bit of a product.
bool weight_needs_promotion(const std::optional<at::Tensor>& weight, at::ScalarType dtype) {
  return has_weight(weight) && weight->scalar_type() == at::kDouble &&
         compute_type(dtype) == at::kFloat;
}

// Whether each element of the call is ignored (a bool tensor), for the paths computed here in
// ATen ops; undefined without an ignore_index.
at::Tensor ignored_mask(const LossCall& c) {
  return c.params.ignore ? c.target == c.params.ignore_value : at::Tensor();
}

// The number of elements not ignored, as the forward's reduction 3 returns it (a 0-dim float64
// tensor on the input's device).
at::Tensor kept_count(const LossCall& c) {
  return (c.target != c.params.ignore_value).sum(at::kDouble);
}

// A reduction of the promoted-weight path: PyTorch's loss.sum() or loss.mean(), accumulated in
// double (whose rounding to the output's type hides the order of the additions); with an
// ignore_index, 'mean' divides by the elements not ignored, and reduction 3 returns both.
at::Tensor reduce_promoted(const LossCall& c, const at::Tensor& loss) {
  at::Tensor total = loss.sum(at::kDouble);
  if (c.reduction == kReductionSumAndCount) return at::stack({total, kept_count(c)});
  if (c.reduction == kReductionMean) {
    total = c.params.ignore ? total / kept_count(c) : total / static_cast<double>(loss.numel());
  }
  return total.to(loss.scalar_type());
}

// t where an element is not ignored, 0 where it is (the weight of an ignored element may be
// anything, a NaN or an infinity included).
at::Tensor zero_ignored(const at::Tensor& t, const at::Tensor& ignored) {
  return ignored.defined() ? at::where(ignored, at::zeros({}, t.options()), t) : t;
}

// The dtypes the kernels take (those of PyTorch's dispatch macros).
bool supported(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// The devices, dtypes and broadcasts of BCE, after its shape check: the weight's broadcast as
// torch.broadcast_shapes in F.binary_cross_entropy, then TensorIterator's checks of input and
// target, the dispatch macro's dtype list, then the weight's in-place multiply.
void check_bce(const LossCall& c) {
  const at::Tensor& self = c.self;
  std::vector<c10::SymInt> weight_shape;
  if (has_weight(c.weight)) {
    weight_shape = broadcast_weight_shape(c.target.sym_sizes(), c.weight->sym_sizes());
  }
  check_same_device(c.target, self);
  TORCH_CHECK(c.target.scalar_type() == self.scalar_type(), "Found dtype ", c.target.scalar_type(),
              " but expected ", self.scalar_type());
  const auto dtype = self.scalar_type();
  // The label of PyTorch's dispatch macro in the kernel the functional reaches (aten/src/ATen/
  // native/Loss.cpp: binary_cross_entropy; cuda/Loss.cu: binary_cross_entropy_out_cuda), for
  // either op: the backward op gives the functional's message (tests/test_bad_input.py).
  TORCH_CHECK_NOT_IMPLEMENTED(
      supported(dtype), "\"",
      self.is_cuda() ? "binary_cross_entropy_out_cuda" : "binary_cross_entropy",
      "\" not implemented for '", dtype, "'");
  if (has_weight(c.weight)) {
    TORCH_CHECK(c10::SymIntArrayRef(weight_shape) == self.sym_sizes(), "output with shape ",
                self.sym_sizes(), " doesn't match the broadcast shape ",
                c10::SymIntArrayRef(weight_shape));
    check_same_device(self, *c.weight);
    TORCH_CHECK(!at::isComplexType(c.weight->scalar_type()), "result type ",
                c.weight->scalar_type(), " can't be cast to the desired output type ", dtype);
  }
}

// An in-place multiply of a tensor of `out` sizes by `operand`, as TensorIterator checks it: the
// broadcast of the two (at::infer_size's message), then that it fits the output.
void check_inplace_broadcast(c10::SymIntArrayRef out, c10::SymIntArrayRef operand) {
  const auto shape = at::infer_size_symdimvector(out, operand);
  TORCH_CHECK(c10::SymIntArrayRef(shape) == out, "output with shape ", out,
              " doesn't match the broadcast shape ", c10::SymIntArrayRef(shape));
}

// PyTorch's refusal of a bool operand of `-`: its exception type follows the installed torch.
[[noreturn]] void refuse_bool_subtraction(const char* message) {
  if constexpr (torch_compat::kBoolSubtractionNotImplemented) {
    TORCH_CHECK_NOT_IMPLEMENTED(false, message);
  } else {
    TORCH_CHECK(false, message);
  }
  __builtin_unreachable();
}

// The checks of the logits loss after its shape check, in the order of PyTorch's ATen code:
// log_sigmoid(input), (pos_weight - 1) * target, (1 - target) * input, then the weight's in-place
// multiply. Input and target may have different floating dtypes (the result has the target's).
void check_bce_with_logits(const LossCall& c) {
  const at::Tensor& self = c.self;
  const at::Tensor& target = c.target;
  const auto dtype = self.scalar_type();
  TORCH_CHECK_NOT_IMPLEMENTED(supported(dtype), "\"",
                              self.is_cuda() ? "log_sigmoid_forward_cuda" : "log_sigmoid_cpu",
                              "\" not implemented for '", dtype, "'");
  if (c.pos_weight.has_value() && c.pos_weight->defined()) {
    check_same_device(*c.pos_weight, target);
    const auto shape = at::infer_size_symdimvector(c.pos_weight->sym_sizes(), target.sym_sizes());
    check_same_device(self, *c.pos_weight);
    TORCH_CHECK(c10::SymIntArrayRef(shape) == self.sym_sizes(), "output with shape ",
                self.sym_sizes(), " doesn't match the broadcast shape ",
                c10::SymIntArrayRef(shape));
    TORCH_CHECK(!at::isComplexType(c.pos_weight->scalar_type()), "result type ",
                c.pos_weight->scalar_type(), " can't be cast to the desired output type ", dtype);
    if (c.pos_weight->scalar_type() == at::kBool) {  // PyTorch's pos_weight - 1
      refuse_bool_subtraction(
          "Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying "
          "to invert a mask, use the `~` or `logical_not()` operator instead.");
    }
  }
  check_same_device(target, self);
  const auto tdtype = target.scalar_type();
  if (tdtype == at::kBool) {  // PyTorch's 1 - target
    refuse_bool_subtraction(
        "Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or "
        "`logical_xor()` operator instead.");
  }
  // PyTorch's chain of ops returns a complex loss for a complex target; bce_ext's are real.
  TORCH_CHECK(!at::isComplexType(tdtype), c.name(), ": a complex target (", tdtype,
              ") is not supported by bce_ext, whose losses are real; PyTorch's ops return a "
              "complex loss for one");
  TORCH_CHECK(at::isFloatingType(tdtype), "result type ", dtype,
              " can't be cast to the desired output type ", tdtype);
  TORCH_CHECK_NOT_IMPLEMENTED(
      supported(tdtype), "\"binary_cross_entropy_with_logits\" not implemented for '", tdtype, "'");
  if (has_weight(c.weight)) {
    check_inplace_broadcast(self.sym_sizes(), c.weight->sym_sizes());
    check_same_device(self, *c.weight);
    TORCH_CHECK(!at::isComplexType(c.weight->scalar_type()), "result type ",
                c.weight->scalar_type(), " can't be cast to the desired output type ", tdtype);
  }
}

// ATen's check of a required tensor argument (a None from Python arrives undefined).
void check_defined(const at::Tensor& t, int index, const char* name) {
  TORCH_CHECK(t.defined(), "Expected a proper Tensor but got None (or an undefined Tensor in C++) ",
              "for argument #", index, " '", name, "'");
}

// What a loss's checks are made of (Traits<L>::check, in its header, calls them in its order):
// the shape checks, the label smoothing's (beyond PyTorch), the operands' devices and dtypes as
// BCE or the logits loss checks them, and its own scalars' ranges, with one message each.
class LossChecks {
 public:
  explicit LossChecks(const LossCall& c) : c_(c) {}

  const double* scalars() const { return c_.params.scalars; }

  void target_size_as_bce() const {
    TORCH_CHECK_VALUE(c_.target.sym_sizes() == c_.self.sym_sizes(), "Using a target size (",
                      torch_size(c_.target.sym_sizes()), ") that is different to the input size (",
                      torch_size(c_.self.sym_sizes()),
                      ") is deprecated. Please ensure they have the same size.");
  }
  void target_size_as_logits() const {
    TORCH_CHECK_VALUE(c_.target.sym_sizes() == c_.self.sym_sizes(), "Target size (",
                      torch_size(c_.target.sym_sizes()), ") must be the same as input size (",
                      torch_size(c_.self.sym_sizes()), ")");
  }
  void label_smoothing() const {
    const double s = c_.params.label_smoothing;
    TORCH_CHECK_VALUE(s >= 0.0 && s <= 1.0, "label_smoothing must be in [0, 1], got ", s);
  }
  void bce_operands() const { check_bce(c_); }
  void logits_operands() const { check_bce_with_logits(c_); }
  // A scalar the formulas need finite (a NaN or an infinity would turn every element to NaN).
  void finite(const char* name, double v) const {
    TORCH_CHECK_VALUE(std::isfinite(v), name, " must be finite, got ", v);
  }
  // The focal family's exponent and the varifocal's alpha: a power of a factor in [0, 1], and
  // the limits of its derivatives, are for values >= 0 (torchvision and mmdetection take any).
  void finite_nonnegative(const char* name, double v) const {
    TORCH_CHECK_VALUE(v >= 0.0 && std::isfinite(v), name, " must be a finite number >= 0, got ", v);
  }

 private:
  const LossCall& c_;
};

}  // namespace

at::Tensor WeightTable::flat() const {
  if (values.dim() == 1 && values.is_contiguous()) return values;
  // The weight itself (see WeightTable): its memory, read in order.
  return values.as_strided({period}, {1});
}

void check_forward(const LossCall& c, int first_index) {
  check_defined(c.self, first_index, "self");
  check_defined(c.target, first_index + 1, "target");
  // PyTorch's order for each loss: reduction and shape (torch/nn/functional.py), then the order
  // in which its ATen code meets the rest.
  // Reduction 3 is bce_ext's own (bce_constants.h), for a call with an ignore_index.
  const int64_t last = c.params.ignore ? kReductionSumAndCount : kReductionSum;
  TORCH_CHECK_VALUE(c.reduction >= kReductionNone && c.reduction <= last, c.reduction,
                    " is not a valid value for reduction");
  LossChecks checks(c);
  visit_loss(c.kind, [&](auto loss) { decltype(loss)::Traits::check(checks); });
}

void check_backward(const LossCall& c, const at::Tensor& grad_output) {
  check_defined(grad_output, 0, "grad_output");
  check_forward(c, 1);
  check_same_device(c.self, grad_output);
  TORCH_CHECK_VALUE(c.reduction != kReductionSumAndCount, c.name(),
                    "_backward: reduction 3 (sum and count) has no backward; its gradient is "
                    "'sum''s");
  TORCH_CHECK(c.reduction == kReductionNone || grad_output.sym_numel() == 1, c.name(),
              "_backward: a reduced loss takes a one-element gradient, got ",
              grad_output.sym_sizes());
  if (c.kept.has_value() && c.kept->defined()) {
    TORCH_CHECK_VALUE(c.params.ignore && c.reduction == kReductionMean, c.name(),
                      "_backward: kept is the divisor of 'mean' with an ignore_index");
    TORCH_CHECK_VALUE(c.kept->sym_numel() == 1 && c.kept->scalar_type() == at::kDouble, c.name(),
                      "_backward: kept must be a one-element float64 tensor, got ",
                      c.kept->scalar_type(), " of size ", c.kept->sym_sizes());
    check_same_device(c.self, *c.kept);
  }
}

// The dtype of a loss's result: PyTorch's (torchvision's for the focal loss).
at::ScalarType result_type(const LossCall& c) {
  const auto rule = visit_loss(c.kind, [](auto loss) { return decltype(loss)::Traits::kResult; });
  switch (rule) {
    case losses::ResultDtype::kInput:
      return c.self.scalar_type();
    case losses::ResultDtype::kTarget:
      return c.target.scalar_type();
    case losses::ResultDtype::kPromoted:
      return at::promote_types(c.self.scalar_type(), c.target.scalar_type());
  }
  __builtin_trap();  // a value outside the enumeration (each enumerator has its case: -Wswitch)
}

at::Tensor empty_forward_output(const LossCall& c) {
  // PyTorch's dtype (result_type) and layout (Traits::kLayout).
  const auto layout = visit_loss(c.kind, [](auto loss) { return decltype(loss)::Traits::kLayout; });
  const at::Tensor& like = layout == losses::LaidOutLike::kTarget ? c.target : c.self;
  const auto options = like.options().dtype(result_type(c));
  if (c.reduction == kReductionSumAndCount)
    return at::empty({2}, like.options().dtype(at::kDouble));
  return c.reduction != kReductionNone ? at::empty({}, options) : at::empty_like(like, options);
}

std::array<at::Tensor, 2> empty_backward_outputs(const LossCall& c,
                                                 std::array<bool, 2> output_mask) {
  const at::Tensor* of[2] = {&c.self, &c.target};
  std::array<at::Tensor, 2> out;
  for (int k = 0; k < 2; ++k) {
    // Laid out like the input, in each one's own dtype.
    out[k] = output_mask[k] ? at::empty_like(c.self, of[k]->options())
                            : at::empty({0}, of[k]->options());
  }
  return out;
}

// PyTorch's forward computes pos_weight - 1 in pos_weight's own dtype: in an integral one it wraps
// (a uint8 0 gives 255). The same call with that pos_weight as `pos_weight - 1 + 1` in the compute
// type, so that the kernels' pos_weight - 1 is PyTorch's; nullopt where pos_weight is floating or
// absent. (PyTorch's backward multiplies by pos_weight after promotion, no wrap: prepare_backward
// keeps it, as there.)
std::optional<LossCall> with_integral_pos_weight(const LossCall& c) {
  if (!c.pos_weight.has_value() || !c.pos_weight->defined() ||
      !at::isIntegralType(c.pos_weight->scalar_type(), /*includeBool=*/false)) {
    return std::nullopt;
  }
  LossCall call = c;
  call.pos_weight = c.pos_weight->sub(1).to(compute_type(c.self.scalar_type())).add_(1);
  return call;
}

ForwardArgs prepare_forward(const LossCall& c, Tables tables) {
  check_forward(c);
  ForwardArgs a;
  if (const auto call = with_integral_pos_weight(c)) {
    a.out = call_forward(*call);
    return a;
  }
  const bool reduced = c.reduction != kReductionNone;
  if (c.self.scalar_type() != c.target.scalar_type()) {
    // The logits losses of two dtypes: computed in their promoted type, returned in the result's
    // (the target's for BCE with logits, the promoted one for the focal loss).
    const auto common = at::promote_types(c.self.scalar_type(), c.target.scalar_type());
    a.out = call_forward(c.with(c.self.to(common), c.target.to(common)));
    if (c.reduction != kReductionSumAndCount) a.out = a.out.to(result_type(c));
    return a;
  }
  if (weight_needs_promotion(c.weight, c.self.scalar_type())) {
    // The unweighted loss in the compute type, times the weight in float64 (PyTorch's promoted
    // multiply), rounded once to a half type (PyTorch rounds the unweighted loss to it first).
    const auto dtype = c.self.scalar_type();
    LossCall unweighted = c.with(c.self.to(compute_type(dtype)), c.target.to(compute_type(dtype)));
    unweighted.weight = std::nullopt;
    unweighted.reduction = kReductionNone;
    at::Tensor loss = call_forward(unweighted);
    if (dtype != loss.scalar_type()) loss = loss.to(at::kDouble);
    loss = zero_ignored(loss.mul_(*c.weight), ignored_mask(c));
    if (!reduced) {
      a.out = loss.to(dtype);
    } else {
      a.out = reduce_promoted(c, loss);
      if (c.reduction != kReductionSumAndCount) a.out = a.out.to(dtype);
    }
    return a;
  }
  a.out = empty_forward_output(c);
  if (c.self.numel() == 0) {
    // mean of nothing is 0/0 as in PyTorch; sum is 0 (and so is the count); 'none' is empty.
    if (reduced) a.out.fill_(c.reduction == kReductionMean ? NAN : 0.0);
    return a;
  }
  const auto order = memory_order(reduced ? c.self : a.out);
  a.out_flat = reduced ? a.out : permuted(a.out, order);
  const auto sizes = c.self.sizes();
  a.x = in_order(c.self, sizes, order);
  a.t = in_order(c.target, sizes, order);
  a.weight = weight_table(c.weight, sizes, order, c.self.scalar_type(), tables);
  a.pos_weight = weight_table(c.pos_weight, sizes, order, c.self.scalar_type(), tables);
  return a;
}

BackwardArgs prepare_backward(const LossCall& c, const at::Tensor& grad_output,
                              std::array<bool, 2> output_mask, Tables tables) {
  check_backward(c, grad_output);
  BackwardArgs b;
  if (c.self.scalar_type() != c.target.scalar_type()) {
    // See prepare_forward; each gradient comes back in its own tensor's dtype.
    const auto common = at::promote_types(c.self.scalar_type(), c.target.scalar_type());
    std::tie(b.gi, b.gt) = call_backward(c.with(c.self.to(common), c.target.to(common)),
                                         grad_output.to(common), output_mask);
    b.gi = b.gi.to(c.self.scalar_type());
    b.gt = b.gt.to(c.target.scalar_type());
    return b;
  }
  if (weight_needs_promotion(c.weight, c.self.scalar_type())) {
    // PyTorch's order: the unweighted gradient, times the weight (promoted, in place), then / N;
    // the gradient in the compute type, and for a half type multiplied and divided in float64
    // and rounded once (PyTorch rounds the unweighted gradient to it first: 1 / 1e-6 overflows
    // float16 there).
    const auto dtype = c.self.scalar_type();
    const auto compute = compute_type(dtype);
    LossCall unweighted = c.with(c.self.to(compute), c.target.to(compute));
    unweighted.weight = std::nullopt;
    if (c.reduction == kReductionMean) unweighted.reduction = kReductionSum;
    unweighted.kept = std::nullopt;
    std::tie(b.gi, b.gt) = call_backward(unweighted, grad_output.to(compute), output_mask);
    const at::Tensor ignored = ignored_mask(c);
    for (int k = 0; k < 2; ++k) {
      at::Tensor& g = k == 0 ? b.gi : b.gt;
      if (!output_mask[k]) continue;
      if (dtype != compute) g = g.to(at::kDouble);
      if (g.numel() != 0) {
        g.mul_(*c.weight);
        if (c.reduction == kReductionMean) {
          if (c.params.ignore) {
            g.div_(mean_divisor(c));
          } else {
            g.div_(c.self.numel());
          }
        }
        g = zero_ignored(g, ignored);
      }
      g = g.to(dtype);
    }
    return b;
  }
  const auto outputs = empty_backward_outputs(c, output_mask);
  b.gi = outputs[0];
  b.gt = outputs[1];
  if (c.self.numel() == 0 || !(output_mask[0] || output_mask[1])) return b;
  const auto order = memory_order(output_mask[0] ? b.gi : b.gt);
  if (output_mask[0]) b.gi_flat = permuted(b.gi, order);
  if (output_mask[1]) b.gt_flat = permuted(b.gt, order);
  const auto sizes = c.self.sizes();
  b.x = in_order(c.self, sizes, order);
  b.t = in_order(c.target, sizes, order);
  b.grad = incoming_grad(grad_output, c.self, order);
  if (c.params.ignore && c.reduction == kReductionMean) {
    // The forward's count where the caller has it (autograd does), else counted here.
    b.kept = mean_divisor(c);
  }
  b.weight = weight_table(c.weight, sizes, order, c.self.scalar_type(), tables);
  b.pos_weight = weight_table(c.pos_weight, sizes, order, c.self.scalar_type(), tables);
  return b;
}

at::Tensor mean_divisor(const LossCall& c) {
  return c.kept.has_value() && c.kept->defined() ? *c.kept : kept_count(c);
}

double ignore_value_in(at::ScalarType target_dtype, double ignore_index) {
  if (target_dtype == at::kHalf) return static_cast<float>(static_cast<at::Half>(ignore_index));
  if (target_dtype == at::kBFloat16) {
    return static_cast<float>(static_cast<at::BFloat16>(ignore_index));
  }
  if (target_dtype == at::kFloat) return static_cast<float>(ignore_index);
  return ignore_index;  // float64 (and the dtypes the checks then reject): as given
}

}  // namespace bce_ext
