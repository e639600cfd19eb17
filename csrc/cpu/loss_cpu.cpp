// CPU kernels of every loss op (forward and backward), on one driver: the loss only chooses the
// inner loops (loops.h), whose element formulas are in csrc/losses/.
//
// Python reference (N = input.numel(), d = N for 'mean' else 1; loss, gi, gt of the loss's
// formulas):
//   out = (w * loss(x, t, pw)).sum() / d      # 'none': w * loss
//   gi  = gi(g, x, t, pw) * w / d
//   gt  = gt(g, x, pw) * w / d
//
// One pass over the inputs. Elements are split into fixed chunks of kChunk; each chunk's partial
// sum lands in its own slot and the slots are added in order, so the result does not depend on how
// many threads ran. The range checks (of the losses that make them) run in the same pass; a chunk
// that saw a bad value is searched again afterwards for the first bad element, so the message is
// the one PyTorch's serial loop would raise.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../bce_constants.h"
#include "../loss_prepare.h"
#include "../ops/loss_kernels.h"
#include "tuning.h"
#include "loops.h"
#include "loss_cpu.h"

namespace bce_ext::cpu {
namespace {

using tuning::kChunk;
using tuning::kMaxShortRuns;
using tuning::kMinRepeat;
using tuning::kMinRun;
using tuning::kRunBlock;

// The storage type the loops read and write for scalar_t: the half types as their 16 bits (the
// loops convert them in registers), float and double as they are.
template <typename scalar_t>
struct StorageOf {
  using type = scalar_t;
};
template <>
struct StorageOf<at::Half> {
  using type = Float16Bits;
};
template <>
struct StorageOf<at::BFloat16> {
  using type = BFloat16Bits;
};
template <typename scalar_t>
using storage_t = typename StorageOf<scalar_t>::type;
static_assert(sizeof(Float16Bits) == sizeof(at::Half));
static_assert(sizeof(BFloat16Bits) == sizeof(at::BFloat16));
// The type the loops compute scalar_t in: float for the half types.
template <typename scalar_t>
using compute_t = typename ComputeOf<storage_t<scalar_t>>::type;

template <typename scalar_t>
const storage_t<scalar_t>* as_storage(const scalar_t* p) {
  return reinterpret_cast<const storage_t<scalar_t>*>(p);
}
template <typename scalar_t>
storage_t<scalar_t>* as_storage(scalar_t* p) {
  return reinterpret_cast<storage_t<scalar_t>*>(p);
}

// The weight table, reshaped so that the inner loops get long runs: a short real run is tiled, and
// a value repeated only a few times is written out repeated (at most N values, and only then).
template <typename T>
struct CpuWeight {
  at::Tensor values;
  const T* ptr = nullptr;
  int64_t inner = 1;
  int64_t period = 1;
};

}  // namespace

TilePlan tile_plan(int64_t inner, int64_t period, int64_t n) {
  TilePlan plan;
  if (inner > 1 && inner < kMinRepeat && n / inner > kMaxShortRuns) {
    plan.write_repeats = true;
    period *= inner;
    inner = 1;
  }
  if (inner == 1 && period < kMinRun && n / period > kMaxShortRuns) {
    plan.copies = (kMinRun + period - 1) / period;
  }
  return plan;
}

namespace {

template <typename T>
CpuWeight<T> tile_weight(WeightTable table, int64_t n) {
  CpuWeight<T> w;
  if (!table.values.defined()) return w;
  const TilePlan plan = tile_plan(table.inner, table.period, n);
  if (plan.write_repeats) {
    table.values = table.flat().repeat_interleave(table.inner);
    table.period *= table.inner;
    table.inner = 1;
  }
  if (plan.copies > 1) {
    table.values = table.flat().repeat({plan.copies});
    table.period *= plan.copies;
  }
  w.values = table.values;
  w.ptr = table.values.template data_ptr<T>();
  w.inner = table.inner;
  w.period = table.period;
  return w;
}

// A full table that prepare_* left in the input's half type (Tables::kKeepFullHalf): its
// elements, which the loops read like x and t; nullptr for any other table (those tile_weight
// takes, in the compute type).
template <typename scalar_t>
const scalar_t* half_table(const WeightTable& table, int64_t n) {
  using T = compute_t<scalar_t>;
  if (!table.values.defined() || table.values.scalar_type() == c10::CppTypeToScalarType<T>::value) {
    return nullptr;
  }
  TORCH_INTERNAL_ASSERT(table.inner == 1 && table.period == n);
  return table.values.template data_ptr<scalar_t>();
}

template <typename scalar_t>
CpuWeight<compute_t<scalar_t>> compute_table(const WeightTable& table, int64_t n) {
  return half_table<scalar_t>(table, n) ? CpuWeight<compute_t<scalar_t>>{}
                                        : tile_weight<compute_t<scalar_t>>(table, n);
}

// The operand of table w for the run starting at element i, shortening len to where that run ends.
template <typename T>
Operand<T> run_operand(const CpuWeight<T>& w, int64_t i, int64_t& len) {
  if (!w.ptr) return {nullptr, 0};
  const int64_t q = i / w.inner;
  const int64_t j = q % w.period;
  if (w.inner == 1) {
    len = std::min(len, w.period - j);
    return {w.ptr + j, 1};
  }
  len = std::min(len, (q + 1) * w.inner - i);
  return {w.ptr + j, 0};
}

// Calls f(i, len, weight operand, positive-weight operand) for consecutive runs covering
// [begin, end), each ending where a run of either table ends.
template <typename T, typename F>
void for_each_run(const CpuWeight<T>& w, const CpuWeight<T>& pw, int64_t begin, int64_t end,
                  F&& f) {
  for (int64_t i = begin; i < end;) {
    int64_t len = end - i;
    const Operand<T> wo = run_operand(w, i, len);
    const Operand<T> po = run_operand(pw, i, len);
    f(i, len, wo, po);
    i += len;
  }
}

template <typename T>
bool out_of_range(T v) {
  return !(v >= T(0) && v <= T(1));
}

// Raises PyTorch's message for the first bad element of the first chunk that reported one
// (an ignored element is never bad).
template <typename scalar_t>
void raise_first_bad(const std::vector<char>& chunk_bad, const scalar_t* x, const scalar_t* t,
                     int64_t n, const LossParams& params) {
  using T = compute_t<scalar_t>;
  for (size_t c = 0; c < chunk_bad.size(); ++c) {
    if (!chunk_bad[c]) continue;
    const int64_t end = std::min<int64_t>(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      if (params.ignore && static_cast<T>(t[i]) == static_cast<T>(params.ignore_value)) continue;
      TORCH_CHECK(!out_of_range(static_cast<T>(x[i])),
                  "all elements of input should be between 0 and 1");
      TORCH_CHECK(!out_of_range(static_cast<T>(t[i])),
                  "all elements of target should be between 0 and 1");
    }
  }
}

int64_t num_chunks(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Chunks a thread takes at least: one thread up to kMinParallel elements.
constexpr int64_t kParallelGrain = tuning::kMinParallel / kChunk;
static_assert(tuning::kMinParallel % kChunk == 0 && kChunk % tuning::kRunBlock == 0);

// Transparent huge pages (2 MiB) for large outputs. A fresh output is first touched by the kernel,
// one page fault per 4 KiB page: about 10 ms for 40 MB on the development machine, against 1.7 ms
// with huge pages, where this machine's THP setting is `madvise`.
constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

void advise_huge_pages(const at::Tensor& out) {
#ifdef MADV_HUGEPAGE
  const auto first = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t begin = (first + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (first + out.nbytes()) & ~(kHugePage - 1);
  // Advice only: where the kernel does not take it, the pages are ordinary ones.
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

template <typename scalar_t>
void forward_kernel(LossKind loss, const ForwardArgs& a, int64_t reduction,
                    const LossParams& params) {
  using T = compute_t<scalar_t>;
  using S = storage_t<scalar_t>;
  const Loops<S>& L = chosen_loops<S>(loss);
  const int64_t n = a.x.numel();
  const scalar_t* x = a.x.data_ptr<scalar_t>();
  const scalar_t* t = a.t.data_ptr<scalar_t>();
  const S* xp = as_storage(x);
  const S* tp = as_storage(t);
  S* op = reduction == kReductionNone ? as_storage(a.out_flat.data_ptr<scalar_t>()) : nullptr;
  const CpuWeight<T> w = compute_table<scalar_t>(a.weight, n);
  const CpuWeight<T> pw = compute_table<scalar_t>(a.pos_weight, n);
  const S* wh = as_storage(half_table<scalar_t>(a.weight, n));
  const S* ph = as_storage(half_table<scalar_t>(a.pos_weight, n));
  std::vector<double> partial(num_chunks(n), 0.0);
  std::vector<double> chunk_kept(num_chunks(n), 0.0);
  std::vector<char> chunk_bad(num_chunks(n), 0);

  at::parallel_for(0, num_chunks(n), kParallelGrain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t end = std::min(n, (c + 1) * kChunk);
      double sum = 0.0;
      double kept = 0.0;
      bool bad = false;
      for (int64_t b = c * kChunk; b < end; b += kRunBlock) {
        for_each_run(w, pw, b, std::min(b + kRunBlock, end),
                     [&](int64_t i, int64_t len, Operand<T> wo, Operand<T> po) {
                       const Run<S> run{
                           xp + i, tp + i, wo, po, wh ? wh + i : nullptr, ph ? ph + i : nullptr,
                           len};
                       if (op) {
                         L.forward_none(run, params, op + i, &bad);
                       } else {
                         sum += L.forward_sum(run, params, &bad, &kept);
                       }
                     });
      }
      partial[c] = sum;
      chunk_kept[c] = kept;
      chunk_bad[c] = bad;
    }
  });
  raise_first_bad(chunk_bad, x, t, n, params);
  if (reduction != kReductionNone) {
    double total = 0.0;
    for (double p : partial) total += p;
    double kept = 0.0;  // whole numbers: exact in any order
    for (double k : chunk_kept) kept += k;
    if (reduction == kReductionSumAndCount) {
      double* out = a.out.data_ptr<double>();
      out[0] = total;
      out[1] = kept;
      return;
    }
    if (reduction == kReductionMean) total /= kept;
    *a.out.data_ptr<scalar_t>() = static_cast<scalar_t>(total);
  }
}

template <typename scalar_t>
void backward_kernel(LossKind loss, const BackwardArgs& b, int64_t reduction,
                     const LossParams& params) {
  using T = compute_t<scalar_t>;
  using S = storage_t<scalar_t>;
  const Loops<S>& L = chosen_loops<S>(loss);
  const int64_t n = b.x.numel();
  const S* xp = as_storage(b.x.data_ptr<scalar_t>());
  const S* tp = as_storage(b.t.data_ptr<scalar_t>());
  const scalar_t* g = b.grad.values.data_ptr<scalar_t>();
  const S* gp = b.grad.scalar ? nullptr : as_storage(g);
  const T g_scalar = static_cast<T>(*g);
  S* gip = b.gi_flat.defined() ? as_storage(b.gi_flat.data_ptr<scalar_t>()) : nullptr;
  S* gtp = b.gt_flat.defined() ? as_storage(b.gt_flat.data_ptr<scalar_t>()) : nullptr;
  // 'mean' divides by N, or by the elements not ignored (b.kept, counted by the forward).
  const T divisor = reduction != kReductionMean ? T(1)
                    : b.kept.defined()          ? static_cast<T>(b.kept.item<double>())
                                                : static_cast<T>(n);
  const CpuWeight<T> w = compute_table<scalar_t>(b.weight, n);
  const CpuWeight<T> pw = compute_table<scalar_t>(b.pos_weight, n);
  const S* wh = as_storage(half_table<scalar_t>(b.weight, n));
  const S* ph = as_storage(half_table<scalar_t>(b.pos_weight, n));

  at::parallel_for(0, num_chunks(n), kParallelGrain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t end = std::min(n, (c + 1) * kChunk);
      for (int64_t bb = c * kChunk; bb < end; bb += kRunBlock) {
        for_each_run(w, pw, bb, std::min(bb + kRunBlock, end),
                     [&](int64_t i, int64_t len, Operand<T> wo, Operand<T> po) {
                       const Run<S> run{
                           xp + i, tp + i, wo, po, wh ? wh + i : nullptr, ph ? ph + i : nullptr,
                           len};
                       L.backward(run, params, gp ? gp + i : nullptr, g_scalar, divisor,
                                  gip ? gip + i : nullptr, gtp ? gtp + i : nullptr);
                     });
      }
    }
  });
}

// The CPU kernels of every loss op (see ops/loss_kernels.h).
struct CpuKernels {
  static at::Tensor forward(c10::DispatchKeySet, const LossCall& c) {
    const ForwardArgs a = prepare_forward(c, Tables::kKeepFullHalf);
    if (a.done()) return a.out;
    if (c.reduction == kReductionNone) advise_huge_pages(a.out);
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, a.x.scalar_type(), "cpu_forward",
        [&] { forward_kernel<scalar_t>(c.kind, a, c.reduction, c.params); });
    return a.out;
  }

  static TensorPair backward(c10::DispatchKeySet, const LossCall& c, const at::Tensor& grad_output,
                             std::array<bool, 2> output_mask) {
    const BackwardArgs b = prepare_backward(c, grad_output, output_mask, Tables::kKeepFullHalf);
    if (b.done()) return {b.gi, b.gt};
    advise_huge_pages(b.gi);
    advise_huge_pages(b.gt);
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, b.x.scalar_type(), "cpu_backward",
        [&] { backward_kernel<scalar_t>(c.kind, b, c.reduction, c.params); });
    return {b.gi, b.gt};
  }
};

}  // namespace

std::array<int64_t, 4> weight_plan(const at::Tensor& self, const at::Tensor& target,
                                   const std::optional<at::Tensor>& weight, int64_t reduction) {
  const ForwardArgs a =
      prepare_forward({LossKind::kBce, self, target, weight, std::nullopt, reduction, {}});
  if (a.done() || !a.weight.values.defined()) return {0, 0, 0, 0};
  const TilePlan plan = tile_plan(a.weight.inner, a.weight.period, a.x.numel());
  return {a.weight.inner, a.weight.period, plan.write_repeats, plan.copies};
}

TORCH_LIBRARY_IMPL(bce_ext, CPU, m) { LossKernels<CpuKernels>::register_all(m); }

}  // namespace bce_ext::cpu
