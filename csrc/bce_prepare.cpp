// Argument checks and element order shared by the CPU and CUDA kernels.
#include "bce_prepare.h"

#include <ATen/ExpandUtils.h>

#include <algorithm>
#include <numeric>

#include "bce_constants.h"

namespace bce_ext {
namespace {

// Raises PyTorch's errors (SPEC section 4) for the arguments of either op.
void check_arguments(const at::Tensor& self, const at::Tensor& target,
                     const std::optional<at::Tensor>& weight, int64_t reduction) {
  // Same order as PyTorch: reduction, shape (torch/nn/functional.py), weight broadcast, devices and
  // dtypes (TensorIterator), then the dispatch macro's dtype list.
  TORCH_CHECK_VALUE(reduction >= kReductionNone && reduction <= kReductionSum, reduction,
                    " is not a valid value for reduction");
  TORCH_CHECK_VALUE(target.sizes() == self.sizes(), "Using a target size (torch.Size(",
                    target.sizes(), ")) that is different to the input size (torch.Size(",
                    self.sizes(), ")) is deprecated. Please ensure they have the same size.");
  if (weight.has_value() && weight->defined()) {
    // PyTorch expands the weight to broadcast_shapes(target, weight), then multiplies in place.
    const auto shape = at::infer_size(target.sizes(), weight->sizes());
    TORCH_CHECK(at::IntArrayRef(shape) == self.sizes(), "output with shape ", self.sizes(),
                " doesn't match the broadcast shape ", at::IntArrayRef(shape));
    TORCH_CHECK(weight->device() == self.device(),
                "Expected all tensors to be on the same device, but found at least two devices, ",
                self.device(), " and ", weight->device(), "!");
    TORCH_CHECK(!at::isComplexType(weight->scalar_type()), "result type ",
                weight->scalar_type(), " can't be cast to the desired output type ",
                self.scalar_type());
  }
  TORCH_CHECK(target.device() == self.device(),
              "Expected all tensors to be on the same device, but found at least two devices, ",
              self.device(), " and ", target.device(), "!");
  TORCH_CHECK(target.scalar_type() == self.scalar_type(), "Found dtype ", target.scalar_type(),
              " but expected ", self.scalar_type());
  const auto dtype = self.scalar_type();
  TORCH_CHECK_NOT_IMPLEMENTED(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                                  dtype == at::kBFloat16,
                              "\"binary_cross_entropy\" not implemented for '", dtype, "'");
}

// check_arguments, plus the backward op's own: grad_output's device, one value for a reduced loss.
void check_backward_arguments(const at::Tensor& grad_output, const at::Tensor& self,
                              const at::Tensor& target, const std::optional<at::Tensor>& weight,
                              int64_t reduction) {
  check_arguments(self, target, weight, reduction);
  TORCH_CHECK(grad_output.device() == self.device(),
              "Expected all tensors to be on the same device, but found at least two devices, ",
              self.device(), " and ", grad_output.device(), "!");
  TORCH_CHECK(reduction == kReductionNone || grad_output.numel() == 1,
              "binary_cross_entropy_backward: a reduced loss takes a one-element gradient, got ",
              grad_output.sizes());
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

// `t` (broadcast to `sizes`) as a contiguous tensor in the given order: a view when it already is.
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

at::Tensor in_order(const at::Tensor& t, at::IntArrayRef sizes, const std::vector<int64_t>& order) {
  // The common case costs no dispatch (views and contiguous() are a microsecond each).
  if (t.sizes() == sizes && is_identity(order) && t.is_contiguous()) return t;
  return t.expand(sizes).permute(order).contiguous();
}

// See WeightTable (bce_prepare.h).
WeightTable weight_table(const std::optional<at::Tensor>& weight, at::IntArrayRef sizes,
                         const std::vector<int64_t>& order, at::ScalarType dtype) {
  WeightTable table;
  if (!weight.has_value() || !weight->defined()) return table;
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
  if (fits && dense && w.numel() == table.period && w.scalar_type() == dtype) {
    table.values = w;  // the common (C,), (B, 1) and full weights: no copy, no dispatch
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
IncomingGrad incoming_grad(const at::Tensor& grad_output, const at::Tensor& self, int64_t reduction,
                           const std::vector<int64_t>& order) {
  IncomingGrad g;
  // Each dispatch here costs about a microsecond, which is most of a small call: skip no-ops.
  g.values = grad_output.scalar_type() == self.scalar_type() ? grad_output
                                                              : grad_output.to(self.scalar_type());
  bool broadcast = true;  // every dimension of size 1 or stride 0: one value for all elements
  for (int64_t d = 0; d < g.values.dim(); ++d) {
    broadcast = broadcast && (g.values.size(d) == 1 || g.values.stride(d) == 0);
  }
  g.scalar = g.values.numel() == 1 || broadcast;
  if (!g.scalar) g.values = in_order(g.values, self.sizes(), order);
  return g;
}

// Type in which the kernels compute: float for the half types (beyond PyTorch, SPEC section 2).
at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

}  // namespace

ForwardArgs prepare_forward(const at::Tensor& self, const at::Tensor& target,
                            const std::optional<at::Tensor>& weight, int64_t reduction) {
  check_arguments(self, target, weight, reduction);
  ForwardArgs a;
  const bool reduced = reduction != kReductionNone;
  a.out = reduced ? at::empty({}, self.options()) : at::empty_like(self);
  if (self.numel() == 0) {
    // mean of nothing is 0/0 as in PyTorch; sum is 0; 'none' is empty.
    if (reduced) a.out.fill_(reduction == kReductionMean ? NAN : 0.0);
    return a;
  }
  const auto order = memory_order(reduced ? self : a.out);
  a.out_flat = reduced ? a.out : permuted(a.out, order);
  a.x = in_order(self, self.sizes(), order);
  a.t = in_order(target, self.sizes(), order);
  a.weight = weight_table(weight, self.sizes(), order, compute_type(self.scalar_type()));
  return a;
}

BackwardArgs prepare_backward(const at::Tensor& grad_output, const at::Tensor& self,
                              const at::Tensor& target, const std::optional<at::Tensor>& weight,
                              int64_t reduction, std::array<bool, 2> output_mask) {
  check_backward_arguments(grad_output, self, target, weight, reduction);
  BackwardArgs b;
  b.gi = output_mask[0] ? at::empty_like(self) : at::empty({0}, self.options());
  b.gt = output_mask[1] ? at::empty_like(self) : at::empty({0}, self.options());
  if (self.numel() == 0 || !(output_mask[0] || output_mask[1])) return b;
  const auto order = memory_order(output_mask[0] ? b.gi : b.gt);
  if (output_mask[0]) b.gi_flat = permuted(b.gi, order);
  if (output_mask[1]) b.gt_flat = permuted(b.gt, order);
  b.x = in_order(self, self.sizes(), order);
  b.t = in_order(target, self.sizes(), order);
  b.grad = incoming_grad(grad_output, self, reduction, order);
  b.weight = weight_table(weight, self.sizes(), order, compute_type(self.scalar_type()));
  return b;
}

}  // namespace bce_ext
