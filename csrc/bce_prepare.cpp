// Argument checks and element order shared by the CPU and CUDA kernels.
#include "bce_prepare.h"

#include <ATen/ExpandUtils.h>

#include <algorithm>
#include <numeric>

#include "bce_constants.h"

namespace bce_ext {

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

std::vector<int64_t> memory_order(const at::Tensor& like) {
  std::vector<int64_t> order(like.dim());
  std::iota(order.begin(), order.end(), 0);
  const auto strides = like.strides();
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return strides[a] > strides[b]; });
  return order;
}

at::Tensor in_order(const at::Tensor& t, at::IntArrayRef sizes, const std::vector<int64_t>& order) {
  return t.expand(sizes).permute(order).contiguous();
}

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

IncomingGrad incoming_grad(const at::Tensor& grad_output, const at::Tensor& self, int64_t reduction,
                           const std::vector<int64_t>& order) {
  IncomingGrad g;
  g.values = grad_output.to(self.scalar_type());
  const at::Tensor expanded =
      reduction == kReductionNone ? g.values.expand(self.sizes()) : g.values;
  const auto strides = expanded.strides();
  g.scalar = g.values.numel() == 1 ||
             std::all_of(strides.begin(), strides.end(), [](int64_t s) { return s == 0; });
  if (!g.scalar) g.values = in_order(g.values, self.sizes(), order);
  return g;
}

at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

}  // namespace bce_ext
