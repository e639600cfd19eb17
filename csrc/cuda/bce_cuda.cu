// CUDA kernels of bce_ext::binary_cross_entropy and its backward.
//
// Python reference (N = input.numel(), d = N for 'mean' else 1):
//   loss = (t - 1) * max(log1p(-x), -100) - t * max(log(x), -100)
//   out  = (w * loss).sum() / d            # 'none': w * loss
//   gi   = g * (x - t) / max((1 - x) * x, 1e-12) * w / d
//   gt   = -log(x / (1 - x)) * g * w / d
//
// One pass over the inputs, 128-bit loads where every pointer allows them, grid-stride loops with
// 64-bit indices. Half types are loaded, computed in float (at::opmath_type) and stored back.
// 'mean' and 'sum' are reduced in the same pass, deterministically: each thread accumulates in the
// compute type, each block adds its threads in double in a fixed tree and writes one partial, and a
// second one-block kernel adds the partials in a fixed order. The grid depends only on the device
// and N, so the same inputs give the same bits run after run (SPEC section 2). No float atomics.
//
// Bad values (SPEC section 4): an element whose x or t is outside [0, 1] or NaN gets a NaN loss;
// no device-side assert (it would kill the process's CUDA context) and no host synchronisation, so
// the default path can be captured in a CUDA graph. In strict mode the forward also records the
// smallest bad index of input and of target (integer atomicMin, deterministic), synchronises once
// and raises the CPU's message for the first bad element.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

#include "../bce_constants.h"
#include "../bce_prepare.h"
#include "../bce_strict.h"
#include "bce_cuda_math.cuh"

namespace bce_ext::cuda {
namespace {

// Threads per block: a multiple of the warp that divides every GPU's threads per SM (1024..2048).
constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
// Width of the vector loads and stores: 128 bits, the widest single global access.
constexpr int kVectorBytes = 16;

template <typename scalar_t>
constexpr int kVec = kVectorBytes / sizeof(scalar_t);

template <typename scalar_t>
struct alignas(kVectorBytes) Vec {
  scalar_t v[kVec<scalar_t>];
};

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kVectorBytes == 0; }

// The weight of element i, from the WeightTable (bce_prepare.h): values[(i / inner) % period].
// Index division is slow on the GPU: below 2^31 elements it uses ATen's multiply-shift divider.
template <typename T>
struct DeviceWeight {
  const T* values = nullptr;  // null: no weight
  int64_t inner = 1;
  int64_t period = 1;
  at::cuda::detail::IntDivider<uint32_t> inner32, period32;
  bool use32 = false;

  __device__ __forceinline__ T at(int64_t i) const {
    if (period == 1) return values[0];
    if (use32) return values[period32.mod(inner32.div(static_cast<uint32_t>(i)))];
    return values[(i / inner) % period];
  }
};

template <typename T>
DeviceWeight<T> device_weight(const WeightTable& table, int64_t n) {
  DeviceWeight<T> w;
  if (!table.values.defined()) return w;
  w.values = table.values.const_data_ptr<T>();
  w.inner = table.inner;
  w.period = table.period;
  // IntDivider<uint32_t> is exact for dividends and divisors up to INT32_MAX.
  w.use32 = n <= std::numeric_limits<int32_t>::max();
  if (w.use32) {
    w.inner32 = at::cuda::detail::IntDivider<uint32_t>(static_cast<uint32_t>(w.inner));
    w.period32 = at::cuda::detail::IntDivider<uint32_t>(static_cast<uint32_t>(w.period));
  }
  return w;
}

// Sum over the block in a fixed tree (warp shuffles, then one warp over the warps' sums): the
// result, valid in thread 0, depends only on the values, not on timing.
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / kWarpSize ? warp_sums[lane] : 0.0;
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      v += __shfl_down_sync(0xffffffffu, v, offset);
    }
  }
  return v;
}

// Forward. kReduce: accumulate and write this block's partial sum; else write out[i].
// kStrict: record the smallest bad index of x (first_bad[0]) and of t (first_bad[1]).
template <typename scalar_t, bool kReduce, bool kStrict>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ t,
                   const DeviceWeight<at::opmath_type<scalar_t>> w, const int64_t n,
                   const bool vectorised, scalar_t* __restrict__ out,
                   double* __restrict__ partials, unsigned long long* __restrict__ first_bad) {
  using T = at::opmath_type<scalar_t>;
  constexpr int V = kVec<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  T acc = T(0);
  int64_t bad_x = n, bad_t = n;

  auto loss_at = [&](int64_t i, scalar_t xs, scalar_t ts) {
    const T xv = static_cast<T>(xs);
    const T tv = static_cast<T>(ts);
    if constexpr (kStrict) {
      if (out_of_range(xv) && i < bad_x) bad_x = i;
      if (out_of_range(tv) && i < bad_t) bad_t = i;
    }
    T l = element_loss(xv, tv);
    if (w.values) l *= w.at(i);
    return l;
  };

  const int64_t n_vec = vectorised ? n / V : 0;
  for (int64_t v = tid; v < n_vec; v += stride) {
    const Vec<scalar_t> xv = reinterpret_cast<const Vec<scalar_t>*>(x)[v];
    const Vec<scalar_t> tv = reinterpret_cast<const Vec<scalar_t>*>(t)[v];
    Vec<scalar_t> ov;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const T l = loss_at(v * V + k, xv.v[k], tv.v[k]);
      if constexpr (kReduce) {
        acc += l;
      } else {
        ov.v[k] = static_cast<scalar_t>(l);
      }
    }
    if constexpr (!kReduce) reinterpret_cast<Vec<scalar_t>*>(out)[v] = ov;
  }
  // Scalar loop: the tail after the vectors, or everything when a pointer is not aligned.
  for (int64_t i = n_vec * V + tid; i < n; i += stride) {
    const T l = loss_at(i, x[i], t[i]);
    if constexpr (kReduce) {
      acc += l;
    } else {
      out[i] = static_cast<scalar_t>(l);
    }
  }

  if constexpr (kStrict) {
    if (bad_x < n) atomicMin(&first_bad[0], static_cast<unsigned long long>(bad_x));
    if (bad_t < n) atomicMin(&first_bad[1], static_cast<unsigned long long>(bad_t));
  }
  if constexpr (kReduce) {
    const double block = block_sum(static_cast<double>(acc));
    if (threadIdx.x == 0) partials[blockIdx.x] = block;
  }
}

// Second stage of the reduction: one block adds the partials in a fixed order, in double, and
// writes the 0-dim result (divisor: N for 'mean', 1 for 'sum').
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    finish_kernel(const double* __restrict__ partials, const int count, const double divisor,
                  scalar_t* __restrict__ out) {
  double v = 0.0;
  for (int j = threadIdx.x; j < count; j += kThreads) v += partials[j];
  v = block_sum(v);
  if (threadIdx.x == 0) *out = static_cast<scalar_t>(v / divisor);
}

// Backward: gi and/or gt (either may be null). kGradScalar: g is one value for every element.
template <typename scalar_t, bool kGradScalar>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                    const scalar_t* __restrict__ t,
                    const DeviceWeight<at::opmath_type<scalar_t>> w,
                    const at::opmath_type<scalar_t> divisor, const int64_t n,
                    const bool vectorised, scalar_t* __restrict__ gi,
                    scalar_t* __restrict__ gt) {
  using T = at::opmath_type<scalar_t>;
  constexpr int V = kVec<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  // The reduced loss's gradient is read here, on the device: no .item(), no synchronisation.
  const T g_scalar = kGradScalar ? static_cast<T>(g[0]) : T(0);

  auto grads = [&](int64_t i, scalar_t gs, scalar_t xs, scalar_t ts, scalar_t& gi_out,
                   scalar_t& gt_out) {
    const T gv = kGradScalar ? g_scalar : static_cast<T>(gs);
    const T xv = static_cast<T>(xs);
    const T wv = w.values ? w.at(i) : T(1);
    const bool weighted = w.values != nullptr;
    if (gi) {
      gi_out = static_cast<scalar_t>(grad_input(gv, xv, static_cast<T>(ts), weighted, wv, divisor));
    }
    if (gt) gt_out = static_cast<scalar_t>(grad_target(gv, xv, weighted, wv, divisor));
  };

  const int64_t n_vec = vectorised ? n / V : 0;
  for (int64_t v = tid; v < n_vec; v += stride) {
    const Vec<scalar_t> xv = reinterpret_cast<const Vec<scalar_t>*>(x)[v];
    const Vec<scalar_t> tv = reinterpret_cast<const Vec<scalar_t>*>(t)[v];
    Vec<scalar_t> gv;
    if constexpr (!kGradScalar) gv = reinterpret_cast<const Vec<scalar_t>*>(g)[v];
    Vec<scalar_t> iv, ov;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      grads(v * V + k, kGradScalar ? scalar_t(0) : gv.v[k], xv.v[k], tv.v[k], iv.v[k], ov.v[k]);
    }
    if (gi) reinterpret_cast<Vec<scalar_t>*>(gi)[v] = iv;
    if (gt) reinterpret_cast<Vec<scalar_t>*>(gt)[v] = ov;
  }
  for (int64_t i = n_vec * V + tid; i < n; i += stride) {
    scalar_t iv, ov;
    grads(i, kGradScalar ? scalar_t(0) : g[i], x[i], t[i], iv, ov);
    if (gi) gi[i] = iv;
    if (gt) gt[i] = ov;
  }
}

// Blocks of `kernel` that fit on one SM at once. The occupancy query is a driver call, so the
// answer is kept per kernel and device.
int blocks_per_sm(const void* kernel) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int> cache;
  const auto key = std::make_pair(kernel, static_cast<int>(c10::cuda::current_device()));
  {
    const std::lock_guard<std::mutex> lock(mutex);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  int blocks = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, 0));
  blocks = std::max(blocks, 1);
  const std::lock_guard<std::mutex> lock(mutex);
  cache.emplace(key, blocks);
  return blocks;
}

// Blocks for `work` items of one thread each: at most what the device holds at once (one full
// wave; the grid-stride loops cover the rest, so no block waits for a second wave). A function of
// the kernel, the device and N only, so reductions are reproducible run after run.
int grid_size(const void* kernel, int64_t work) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t wave = sms * blocks_per_sm(kernel);
  const int64_t needed = (work + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min(needed, wave)));
}

// Strict mode: the one synchronisation, then the CPU's message for the first bad element (PyTorch's
// serial loop checks an element's input before its target).
void raise_first_bad(const at::Tensor& first_bad, int64_t n) {
  const at::Tensor host = first_bad.cpu();
  const int64_t bad_x = host.const_data_ptr<int64_t>()[0];
  const int64_t bad_t = host.const_data_ptr<int64_t>()[1];
  TORCH_CHECK(!(bad_x < n && bad_x <= bad_t), "all elements of input should be between 0 and 1");
  TORCH_CHECK(!(bad_t < n), "all elements of target should be between 0 and 1");
}

template <typename scalar_t, bool kStrict>
void launch_forward(const at::Tensor& x, const at::Tensor& t, const WeightTable& table,
                    int64_t reduction, const at::Tensor& out_flat, const at::Tensor& out,
                    const at::Tensor& first_bad) {
  using T = at::opmath_type<scalar_t>;
  const int64_t n = x.numel();
  const bool reduced = reduction != kReductionNone;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* tp = t.const_data_ptr<scalar_t>();
  scalar_t* op = reduced ? nullptr : out_flat.mutable_data_ptr<scalar_t>();
  const bool vectorised = aligned(xp) && aligned(tp) && (reduced || aligned(op));
  const int64_t work = vectorised ? (n + kVec<scalar_t> - 1) / kVec<scalar_t> : n;
  const DeviceWeight<T> w = device_weight<T>(table, n);
  auto* bad = kStrict ? reinterpret_cast<unsigned long long*>(first_bad.mutable_data_ptr<int64_t>())
                      : nullptr;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (reduced) {
    const auto kernel = forward_kernel<scalar_t, true, kStrict>;
    const int blocks = grid_size(reinterpret_cast<const void*>(kernel), work);
    at::Tensor partials = at::empty({blocks}, x.options().dtype(at::kDouble));
    kernel<<<blocks, kThreads, 0, stream>>>(xp, tp, w, n, vectorised, nullptr,
                                            partials.mutable_data_ptr<double>(), bad);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const double divisor = reduction == kReductionMean ? static_cast<double>(n) : 1.0;
    finish_kernel<scalar_t><<<1, kThreads, 0, stream>>>(partials.const_data_ptr<double>(), blocks,
                                                        divisor, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    const auto kernel = forward_kernel<scalar_t, false, kStrict>;
    const int blocks = grid_size(reinterpret_cast<const void*>(kernel), work);
    kernel<<<blocks, kThreads, 0, stream>>>(xp, tp, w, n, vectorised, op, nullptr, bad);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

at::Tensor binary_cross_entropy_cuda(const at::Tensor& self, const at::Tensor& target,
                                     const std::optional<at::Tensor>& weight, int64_t reduction) {
  const c10::cuda::CUDAGuard guard(self.device());
  const ForwardArgs a = prepare_forward(self, target, weight, reduction);
  if (a.done()) return a.out;
  const bool strict = strict_mode();
  at::Tensor first_bad;
  if (strict) {
    TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() ==
                    c10::cuda::CaptureStatus::None,
                "bce_ext strict mode synchronises with the GPU, which CUDA graph capture forbids; "
                "call bce_ext.set_strict(False) before capturing");
    first_bad = at::full({2}, self.numel(), self.options().dtype(at::kLong));
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(),
                                  "binary_cross_entropy", [&] {
    if (strict) {
      launch_forward<scalar_t, true>(a.x, a.t, a.weight, reduction, a.out_flat, a.out, first_bad);
    } else {
      launch_forward<scalar_t, false>(a.x, a.t, a.weight, reduction, a.out_flat, a.out, first_bad);
    }
  });
  if (strict) raise_first_bad(first_bad, self.numel());
  return a.out;
}

template <typename scalar_t>
void launch_backward(const IncomingGrad& grad, const at::Tensor& x, const at::Tensor& t,
                     const WeightTable& table, int64_t reduction, const at::Tensor& gi_flat,
                     const at::Tensor& gt_flat) {
  using T = at::opmath_type<scalar_t>;
  const int64_t n = x.numel();
  const scalar_t* gp = grad.values.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* tp = t.const_data_ptr<scalar_t>();
  scalar_t* gip = gi_flat.defined() ? gi_flat.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* gtp = gt_flat.defined() ? gt_flat.mutable_data_ptr<scalar_t>() : nullptr;
  const bool vectorised = aligned(xp) && aligned(tp) && (grad.scalar || aligned(gp)) &&
                          (!gip || aligned(gip)) && (!gtp || aligned(gtp));
  const int64_t work = vectorised ? (n + kVec<scalar_t> - 1) / kVec<scalar_t> : n;
  // Divided by N like the CPU kernels, to match PyTorch's div_ (not a multiply by 1/N).
  const T divisor = reduction == kReductionMean ? static_cast<T>(n) : T(1);
  const DeviceWeight<T> w = device_weight<T>(table, n);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const auto kernel =
      grad.scalar ? backward_kernel<scalar_t, true> : backward_kernel<scalar_t, false>;
  const int blocks = grid_size(reinterpret_cast<const void*>(kernel), work);
  kernel<<<blocks, kThreads, 0, stream>>>(gp, xp, tp, w, divisor, n, vectorised, gip, gtp);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
    const std::optional<at::Tensor>& weight, int64_t reduction, std::array<bool, 2> output_mask) {
  const c10::cuda::CUDAGuard guard(self.device());
  const BackwardArgs b =
      prepare_backward(grad_output, self, target, weight, reduction, output_mask);
  if (b.done()) return {b.gi, b.gt};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(),
                                  "binary_cross_entropy_backward", [&] {
    launch_backward<scalar_t>(b.grad, b.x, b.t, b.weight, reduction, b.gi_flat, b.gt_flat);
  });
  return {b.gi, b.gt};
}

}  // namespace

TORCH_LIBRARY_IMPL(bce_ext, CUDA, m) {
  m.impl("binary_cross_entropy", &binary_cross_entropy_cuda);
  m.impl("binary_cross_entropy_backward", &binary_cross_entropy_backward_cuda);
}

}  // namespace bce_ext::cuda
