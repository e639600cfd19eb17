// The pairwise sigmoid (SigLIP) loss without its B x B matrix: the ops, their checks, the tiling,
// and their autograd.
//
// Python reference (open_clip's SigLipLoss on one process; z = +1 for a positive pair, -1 else):
//   logits = scale * image @ text.T + bias                  # B x Bt
//   loss   = -logsigmoid(z * logits).sum() / B              # B = image.shape[0]
//   G      = -z * sigmoid(-z * logits) / B                  # d loss / d logits
//   grad_image = scale * G @ text;   grad_text = scale * G.T @ image
//   grad_scale = (G * (image @ text.T)).sum();   grad_bias = G.sum()
// Here the logits exist one tile at a time (rows x cols of the products, at most max_tile_bytes):
// each tile is one matrix product, one pass of bce_ext's tile loop over it (the loss, G in place
// of the products, the scale's and bias's sums) and, when gradients are wanted, the two products
// of G with the tile's text and image rows, added into the feature gradients: the three products
// of the dense loss and no more, and only the first without gradients. The gradients are computed
// in the forward's pass, saved, and scaled by the incoming gradient in the backward.
//
// Ops: siglip_loss (differentiable; its autograd kernel calls the other one) and
// siglip_loss_and_grads (the loss and all four gradients, or the loss alone). `dtype`: the loss's
// dtype, by default the features' (open_clip's under autocast is the features' before the cast).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../autograd/graph_node.h"
#include "../cpu/loops.h"
#include "siglip_tile_cuda.h"

namespace bce_ext::siglip {
namespace {

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The tile's default budget: 32 MiB of products (a 2048 x 4096 float32 tile), small against any
// batch where the B x B matrix hurts, large enough for the matrix products to run at speed.
constexpr int64_t kDefaultTileBytes = int64_t{32} << 20;
// Columns of a tile at most (its rows then fill the budget): long rows for the tile loop.
constexpr int64_t kMaxTileCols = 4096;
// Rows of one parallel task of the CPU tile loop: fixed, so the sums' order is too.
constexpr int64_t kRowsPerTask = 16;

bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

void check(const at::Tensor& image, const at::Tensor& text, const at::Tensor& scale,
           const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& image_ids,
           const std::optional<at::Tensor>& text_ids, int64_t max_tile_bytes) {
  TORCH_CHECK_VALUE(image.dim() == 2 && text.dim() == 2,
                    "siglip_loss: image_features and text_features must be 2-D (batch, dim), got ",
                    image.sizes(), " and ", text.sizes());
  TORCH_CHECK_VALUE(image.sym_size(1) == text.sym_size(1),
                    "siglip_loss: image_features and text_features must have the same feature "
                    "size, got ",
                    image.sym_size(1), " and ", text.sym_size(1));
  TORCH_CHECK_VALUE(image.scalar_type() == text.scalar_type(),
                    "siglip_loss: image_features and text_features must have the same dtype, got ",
                    image.scalar_type(), " and ", text.scalar_type());
  const auto dtype = image.scalar_type();
  TORCH_CHECK_TYPE(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
      "siglip_loss: features must be float32, float64, float16 or bfloat16, got ", dtype);
  TORCH_CHECK_VALUE(image.device() == text.device(),
                    "siglip_loss: image_features and text_features must be on the same device");
  auto check_scalar = [&](const at::Tensor& v, const char* name) {
    TORCH_CHECK_VALUE(v.sym_numel() == 1 && v.dim() <= 1, "siglip_loss: ", name,
                      " must be 0-dim or of shape (1,), got ", v.sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(v.scalar_type()), "siglip_loss: ", name,
                     " must be floating, got ", v.scalar_type());
    TORCH_CHECK_VALUE(v.device() == image.device(), "siglip_loss: ", name,
                      " must be on the features' device");
  };
  check_scalar(scale, "logit_scale");
  if (defined(bias)) check_scalar(*bias, "logit_bias");
  TORCH_CHECK_VALUE(defined(image_ids) == defined(text_ids),
                    "siglip_loss: give both image_ids and text_ids, or neither");
  if (defined(image_ids)) {
    for (const auto* ids : {&*image_ids, &*text_ids}) {
      TORCH_CHECK_TYPE(ids->scalar_type() == at::kLong,
                       "siglip_loss: positives must be int64 ids, "
                       "got ",
                       ids->scalar_type());
      TORCH_CHECK_VALUE(ids->device() == image.device(),
                        "siglip_loss: positives must be on the features' device");
    }
    TORCH_CHECK_VALUE(image_ids->dim() == 1 && image_ids->sym_size(0) == image.sym_size(0) &&
                          text_ids->dim() == 1 && text_ids->sym_size(0) == text.sym_size(0),
                      "siglip_loss: positives must hold one id per row: image ids ",
                      image_ids->sizes(), " for ", image.sym_size(0), " images, text ids ",
                      text_ids->sizes(), " for ", text.sym_size(0), " texts");
  } else {
    TORCH_CHECK_VALUE(image.sym_size(0) == text.sym_size(0),
                      "siglip_loss: image_features and text_features must have the same batch "
                      "size (the positives are the diagonal), got ",
                      image.sym_size(0), " and ", text.sym_size(0),
                      "; pass positives to pair them otherwise");
  }
  TORCH_CHECK_VALUE(max_tile_bytes >= 0, "siglip_loss: max_tile_bytes must be >= 0 (0: default)");
}

at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// The tile: rows x cols within the budget, cols up to kMaxTileCols.
std::pair<int64_t, int64_t> tile_shape(int64_t rows, int64_t cols, int64_t elem_bytes,
                                       int64_t max_tile_bytes) {
  const int64_t budget =
      std::max<int64_t>(max_tile_bytes ? max_tile_bytes : kDefaultTileBytes, elem_bytes);
  const int64_t elements = budget / elem_bytes;
  const int64_t c = std::max<int64_t>(1, std::min({cols, kMaxTileCols, elements}));
  const int64_t r = std::max<int64_t>(1, std::min(rows, elements / c));
  return {r, c};
}

// acc += a @ b, acc in the compute type, a and b in it or (CUDA) in a half type.
void add_product(at::Tensor acc, const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == acc.scalar_type()) {
    acc.addmm_(a, b);
  } else {
    acc.add_(at::mm(a, b, acc.scalar_type()));
  }
}

// The CPU tile loop over a tile's rows, in fixed tasks of kRowsPerTask rows (their sums added
// in task order: the same bits whatever the thread count).
template <typename T>
cpu::SiglipSums cpu_tile(cpu::SiglipTile<T> tile) {
  const auto loop = cpu::chosen_siglip_tile<T>();
  const int64_t tasks = (tile.rows + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<cpu::SiglipSums> sums(tasks);
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> scratch(tile.cols);
    for (int64_t task = t0; task < t1; ++task) {
      cpu::SiglipTile<T> part = tile;
      const int64_t r0 = task * kRowsPerTask;
      part.rows = std::min(kRowsPerTask, tile.rows - r0);
      part.products = tile.products + r0 * tile.ld;
      part.row0 = tile.row0 + r0;
      if (tile.row_ids != nullptr) part.row_ids = tile.row_ids + r0;
      part.scratch = scratch.data();
      loop(part, &sums[task]);
    }
  });
  cpu::SiglipSums total;
  for (const auto& s : sums) total += s;
  return total;
}

Grads loss_and_grads(const at::Tensor& image, const at::Tensor& text, const at::Tensor& scale,
                     const std::optional<at::Tensor>& bias,
                     const std::optional<at::Tensor>& image_ids,
                     const std::optional<at::Tensor>& text_ids, bool want_grad,
                     int64_t max_tile_bytes, std::optional<at::ScalarType> result_dtype) {
  check(image, text, scale, bias, image_ids, text_ids, max_tile_bytes);
  // The products below are the loss's own, in the types chosen here: autocast leaves them alone.
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto dtype = image.scalar_type();
  const auto compute = compute_type(dtype);
  const bool cuda = image.is_cuda();
  // Half types: the products and gradients accumulate in float32 (cuBLAS from the half operands
  // on CUDA; float32 copies on the CPU, which has no fast half product).
  const at::Tensor img = cuda ? image.contiguous() : image.to(compute).contiguous();
  const at::Tensor txt = cuda ? text.contiguous() : text.to(compute).contiguous();
  const int64_t rows = image.size(0), cols = text.size(0), dim = image.size(1);
  const auto options = image.options().dtype(compute);
  at::Tensor grad_image, grad_text;
  if (want_grad) {
    grad_image = at::zeros({rows, dim}, options);
    grad_text = at::zeros({cols, dim}, options);
  }
  const int64_t elem = compute == at::kDouble ? 8 : 4;
  const auto [tr, tc] = tile_shape(rows, cols, elem, max_tile_bytes);
  const at::Tensor products = at::empty({tr, tc}, options);
  // The scalars: on the CPU as numbers; on CUDA read by the tile kernel (no synchronisation).
  const at::Tensor scale_c = scale.reshape({}).to(compute);
  const at::Tensor bias_c = defined(bias) ? bias->reshape({}).to(compute) : at::zeros({}, options);
  const at::Tensor ids_i = defined(image_ids) ? image_ids->contiguous() : at::Tensor();
  const at::Tensor ids_t = defined(text_ids) ? text_ids->contiguous() : at::Tensor();
  const double grad_scale = rows > 0 ? 1.0 / static_cast<double>(rows) : 0.0;
  // CUDA: the sums of every tile accumulate on the device (3 doubles).
  at::Tensor device_sums = cuda ? at::zeros({3}, options.dtype(at::kDouble)) : at::Tensor();
  cpu::SiglipSums host_sums;
  for (int64_t r0 = 0; r0 < rows; r0 += tr) {
    const int64_t r = std::min(tr, rows - r0);
    const at::Tensor img_rows = img.narrow(0, r0, r);
    for (int64_t c0 = 0; c0 < cols; c0 += tc) {
      const int64_t c = std::min(tc, cols - c0);
      const at::Tensor txt_cols = txt.narrow(0, c0, c);
      at::Tensor p = products.narrow(0, 0, r).narrow(1, 0, c);
      if (img.scalar_type() == compute) {
        at::mm_out(p, img_rows, txt_cols.t());
      } else {  // half operands on CUDA: their product accumulated and written in float32
        at::mm_out(p, img_rows, txt_cols.t(), compute);
      }
      const int64_t* rid = ids_i.defined() ? ids_i.const_data_ptr<int64_t>() + r0 : nullptr;
      const int64_t* cid = ids_t.defined() ? ids_t.const_data_ptr<int64_t>() + c0 : nullptr;
      if (cuda) {
        cuda_tile(p, rid, cid, r0, c0, scale_c, bias_c, grad_scale, want_grad, device_sums);
      } else {
        AT_DISPATCH_FLOATING_TYPES(compute, "siglip_tile", [&] {
          cpu::SiglipTile<scalar_t> tile{p.data_ptr<scalar_t>(),
                                         r,
                                         c,
                                         p.stride(0),
                                         rid,
                                         cid,
                                         r0,
                                         c0,
                                         scale_c.item<scalar_t>(),
                                         bias_c.item<scalar_t>(),
                                         static_cast<scalar_t>(grad_scale),
                                         want_grad,
                                         nullptr};
          host_sums += cpu_tile(tile);
        });
      }
      if (want_grad) {
        // p is now scale * G: the two products of the dense loss's gradient, tile by tile, added
        // into float32 (or float64) gradients; half operands (CUDA) multiply as the half type,
        // on tensor cores, accumulating in float32.
        const at::Tensor g = p.scalar_type() == img.scalar_type() ? p : p.to(img.scalar_type());
        add_product(grad_image.narrow(0, r0, r), g, txt_cols);
        add_product(grad_text.narrow(0, c0, c), g.t(), img_rows);
      }
    }
  }
  at::Tensor sums = cuda ? device_sums
                         : at::tensor({host_sums.loss, host_sums.grad, host_sums.product_grad},
                                      options.dtype(at::kDouble));
  const at::Tensor loss = (sums[0] * grad_scale).to(result_dtype.value_or(dtype));
  if (!want_grad) return {loss, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  const at::Tensor g_bias =
      defined(bias) ? sums[1].to(bias->scalar_type()).reshape(bias->sizes()) : at::Tensor();
  return {loss, grad_image.to(dtype), grad_text.to(dtype),
          sums[2].to(scale.scalar_type()).reshape(scale.sizes()), g_bias};
}

Grads meta_loss_and_grads(const at::Tensor& image, const at::Tensor& text, const at::Tensor& scale,
                          const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& image_ids,
                          const std::optional<at::Tensor>& text_ids, bool want_grad,
                          int64_t max_tile_bytes, std::optional<at::ScalarType> result_dtype) {
  check(image, text, scale, bias, image_ids, text_ids, max_tile_bytes);
  const at::Tensor loss =
      at::empty({}, image.options().dtype(result_dtype.value_or(image.scalar_type())));
  if (!want_grad) return {loss, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  return {loss, at::empty_like(image, at::MemoryFormat::Contiguous),
          at::empty_like(text, at::MemoryFormat::Contiguous), at::empty_like(scale),
          defined(bias) ? at::empty_like(*bias) : at::Tensor()};
}

// The kernel op through the dispatcher (below autograd: the callers hold the guard, or run there).
Grads call_loss_and_grads(const at::Tensor& image, const at::Tensor& text, const at::Tensor& scale,
                          const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& image_ids,
                          const std::optional<at::Tensor>& text_ids, bool want_grad,
                          int64_t max_tile_bytes, std::optional<at::ScalarType> result_dtype) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("bce_ext::siglip_loss_and_grads", "")
          .typed<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                       const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                       const std::optional<at::Tensor>&, bool, int64_t,
                       std::optional<at::ScalarType>)>();
  return op.call(image, text, scale, bias, image_ids, text_ids, want_grad, max_tile_bytes,
                 result_dtype);
}

// siglip_loss below autograd: the loss alone (one product per tile).
at::Tensor loss_only(const at::Tensor& image, const at::Tensor& text, const at::Tensor& scale,
                     const std::optional<at::Tensor>& bias,
                     const std::optional<at::Tensor>& image_ids,
                     const std::optional<at::Tensor>& text_ids, int64_t max_tile_bytes,
                     std::optional<at::ScalarType> result_dtype) {
  return std::get<0>(call_loss_and_grads(image, text, scale, bias, image_ids, text_ids, false,
                                         max_tile_bytes, result_dtype));
}

using torch::autograd::Node;
using torch::autograd::variable_list;

// The backward of siglip_loss: the gradients the forward computed, times the incoming one.
struct SiglipLossBackward : public Node {
  std::string name() const override { return "SiglipLossBackward"; }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "siglip_loss: double backward is not supported (its gradients are computed in "
                "the forward's pass, which has no graph of its own)");
    TORCH_CHECK(!released_,
                "siglip_loss: backward through the graph a second time (the saved "
                "gradients were freed); pass retain_graph=True the first time");
    variable_list out(4);
    if (!grads[0].defined()) return out;
    for (int i = 0; i < 4; ++i) {
      if (saved_[i].defined() && task_should_compute_output(i)) {
        out[i] = saved_[i] * grads[0].to(saved_[i].scalar_type());
      }
    }
    return out;
  }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& s : saved_) s = at::Tensor();
    released_ = true;
  }

  at::Tensor saved_[4];
  bool released_ = false;
};

at::Tensor autograd_loss(const at::Tensor& image, const at::Tensor& text, const at::Tensor& scale,
                         const std::optional<at::Tensor>& bias,
                         const std::optional<at::Tensor>& image_ids,
                         const std::optional<at::Tensor>& text_ids, int64_t max_tile_bytes,
                         std::optional<at::ScalarType> result_dtype) {
  const at::Tensor none;
  const at::Tensor& b = defined(bias) ? *bias : none;
  const bool requires_grad = torch::autograd::compute_requires_grad(image, text, scale, b);
  TORCH_CHECK(!(torch::autograd::isFwGradDefined(image) || torch::autograd::isFwGradDefined(text) ||
                torch::autograd::isFwGradDefined(scale) || torch::autograd::isFwGradDefined(b)),
              "siglip_loss: forward-mode AD is not supported");
  if (!requires_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return loss_only(image, text, scale, bias, image_ids, text_ids, max_tile_bytes, result_dtype);
  }
  Grads results;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    results = call_loss_and_grads(image, text, scale, bias, image_ids, text_ids, true,
                                  max_tile_bytes, result_dtype);
  }
  auto node = make_node<SiglipLossBackward>();
  node->set_next_edges(torch::autograd::collect_next_edges(image, text, scale, b));
  node->saved_[0] = std::get<1>(results);
  node->saved_[1] = std::get<2>(results);
  node->saved_[2] = std::get<3>(results);
  node->saved_[3] = std::get<4>(results);
  at::Tensor loss = std::get<0>(results);
  torch::autograd::set_history(loss, node);
  return loss;
}

}  // namespace
}  // namespace bce_ext::siglip

TORCH_LIBRARY_FRAGMENT(bce_ext, m) {
  m.def(
      "siglip_loss(Tensor image, Tensor text, Tensor scale, Tensor? bias=None, Tensor? "
      "image_ids=None, Tensor? text_ids=None, int max_tile_bytes=0, ScalarType? dtype=None) -> "
      "Tensor");
  m.def(
      "siglip_loss_and_grads(Tensor image, Tensor text, Tensor scale, Tensor? bias=None, Tensor? "
      "image_ids=None, Tensor? text_ids=None, bool want_grad=True, int max_tile_bytes=0, "
      "ScalarType? dtype=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(bce_ext, CPU, m) {
  m.impl("siglip_loss_and_grads", TORCH_FN(bce_ext::siglip::loss_and_grads));
}
TORCH_LIBRARY_IMPL(bce_ext, CUDA, m) {
  m.impl("siglip_loss_and_grads", TORCH_FN(bce_ext::siglip::loss_and_grads));
}
TORCH_LIBRARY_IMPL(bce_ext, Meta, m) {
  m.impl("siglip_loss_and_grads", TORCH_FN(bce_ext::siglip::meta_loss_and_grads));
}
TORCH_LIBRARY_IMPL(bce_ext, CompositeExplicitAutograd, m) {
  m.impl("siglip_loss", TORCH_FN(bce_ext::siglip::loss_only));
}
TORCH_LIBRARY_IMPL(bce_ext, Autograd, m) {
  m.impl("siglip_loss", TORCH_FN(bce_ext::siglip::autograd_loss));
}
