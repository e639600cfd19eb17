#pragma once
// The host side of every CUDA loss op, generic over the loss (Loss: any formulas template of
// losses/registry.h, losses::Bce, ...): loss_cuda.h's entry points are defined here and
// instantiated once per loss and direction in files that setup.py generates from the registry, so
// that nvcc compiles the losses' kernels in parallel (one translation unit holding all of them took
// 2 to 5 minutes alone).
//
// Python reference (N = input.numel(); loss, gi, gt the loss's formulas; ts the smoothed target):
//   out = (w * loss(x, ts, pw)).sum() / d     # d = N for 'mean', else 1; 'none': w * loss
//   gi  = gi(g, x, ts, pw) * w * (1 / N)      # 1 / N for 'mean' only, as PyTorch's CUDA
//   gt  = gt(g, x, pw) * (1 - s) * w * (1 / N)
//
// Each op checks and lays out its arguments (loss_prepare.h: checks with PyTorch's messages,
// contiguous operands in one order, the weight tables, outputs, empty inputs, the calls computed
// there), then guards the device (after the checks: a CPU input dispatched here for its CUDA
// target must get PyTorch's device message), dispatches on the dtype and the loss, launches on the
// current stream and checks each launch.
//
// Bad values (losses with a range check): an element whose x or t is outside [0, 1] or NaN gets a
// NaN loss; no device-side assert (it would kill the process's CUDA context) and no host
// synchronisation, so the default path can be captured in a CUDA graph. In strict mode the forward
// also records the smallest bad index of input and of target, synchronises once and raises the
// CPU's message for the first bad element. The logits loss makes no check (as PyTorch).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>

#include <array>
#include <cstdint>
#include <optional>

#include "../bce_constants.h"
#include "../bce_strict.h"
#include "../loss_prepare.h"
#include "cuda_math.cuh"
#include "loss_cuda.h"
#include "loss_cuda_driver.cuh"

namespace bce_ext::cuda {

template <int kValue>
using FlagsOf = std::integral_constant<int, kValue>;

// Calls fn(FlagsOf<flags>{}): the run-time variant flags as a compile-time constant, with one
// instance per combination of the bits of kAllowed (flags has no other bit set).
template <int kAllowed, int kBit = 0, int kSet = 0, class Fn>
void with_flags(int flags, Fn&& fn) {
  if constexpr ((kAllowed >> kBit) == 0) {
    fn(FlagsOf<kSet>{});
  } else if constexpr (((kAllowed >> kBit) & 1) == 0) {
    with_flags<kAllowed, kBit + 1, kSet>(flags, fn);
  } else if ((flags >> kBit) & 1) {
    with_flags<kAllowed, kBit + 1, kSet | (1 << kBit)>(flags, fn);
  } else {
    with_flags<kAllowed, kBit + 1, kSet>(flags, fn);
  }
}

template <typename T>
DeviceWeight<T> device_weight(const WeightTable& table, int blocks, int64_t vec) {
  DeviceWeight<T> w;
  if (!table.values.defined()) return w;
  // The table's memory, in order (loss_prepare.h): not necessarily a contiguous tensor.
  w.values = table.values.const_data_ptr<T>();
  w.inner = table.inner;
  w.period = table.period;
  const int64_t stride = static_cast<int64_t>(blocks) * kThreads * vec;
  w.stride_rem = stride % w.inner;
  w.stride_quot = (stride / w.inner) % w.period;
  return w;
}

// The kernels' parameters of a call: layout, tables, label smoothing (the factors as the CPU loops
// compute them, in T: csrc/cpu/vec/loops_impl.h, Smoothing).
template <typename scalar_t>
Params<at::opmath_type<scalar_t>> make_params(const Layout& layout, int blocks,
                                              const WeightTable& weight,
                                              const WeightTable& pos_weight, const LossParams& lp) {
  using T = at::opmath_type<scalar_t>;
  Params<T> p;
  p.layout = layout;
  p.w = device_weight<T>(weight, blocks, kVec<scalar_t>);
  p.pw = device_weight<T>(pos_weight, blocks, kVec<scalar_t>);
  const T s = static_cast<T>(lp.label_smoothing);
  p.keep = T(1) - s;
  p.shift = s * T(0.5);
  for (int i = 0; i < losses::kMaxScalars; ++i) p.k.v[i] = static_cast<T>(lp.scalars[i]);
  p.ignore = static_cast<T>(lp.ignore_value);
  return p;
}

// The variant flags that every call has: its tables and its label smoothing.
inline int table_flags(const WeightTable& weight, const WeightTable& pos_weight,
                       const LossParams& lp) {
  return (weight.values.defined() ? kWeighted : 0) |
         (pos_weight.values.defined() ? kPosWeighted : 0) |
         (lp.label_smoothing != 0.0 ? kSmooth : 0) | (lp.ignore ? kIgnore : 0);
}

// Strict mode reads the first bad indices back, which synchronises the current stream. CUDA
// forbids that on a stream being captured into a graph, and on the legacy default stream while a
// blocking stream captures (cudaStreamIsCapturing answers cudaErrorStreamCaptureImplicit): both
// are refused here with a clear message. cudaStreamIsCapturing is itself allowed during any
// capture. A capture on another stream of this thread cannot be seen from here (CUDA answers "is
// any capture underway" only for blocking streams, and PyTorch's are non-blocking); there CUDA
// refuses strict mode's work even in relaxed capture mode (cudaErrorStreamCaptureUnsupported,
// seen on an H200), which invalidates that capture: the call raises CUDA's error as a
// RuntimeError, and the device stays usable (docs/behaviour.md, strict mode).
inline void check_strict_allowed(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  const cudaError_t err = cudaStreamIsCapturing(stream, &status);
  if (err == cudaErrorStreamCaptureImplicit) {
    (void)cudaGetLastError();  // not sticky; clear it so that no later check reports it
    status = cudaStreamCaptureStatusActive;
  } else {
    C10_CUDA_CHECK(err);
  }
  TORCH_CHECK(status == cudaStreamCaptureStatusNone,
              "bce_ext strict mode synchronises with the GPU, which CUDA graph capture forbids; "
              "call bce_ext.set_strict(False) before capturing");
}

// Strict mode: the one synchronisation, then the CPU's message for the first bad element
// (PyTorch's serial loop checks an element's input before its target).
inline void raise_first_bad(const at::Tensor& first_bad, int64_t n, cudaStream_t stream) {
  int64_t host[2];
  c10::cuda::memcpy_and_sync(host, first_bad.const_data_ptr<int64_t>(), sizeof host,
                             cudaMemcpyDeviceToHost, stream);
  const int64_t bad_x = host[0];
  const int64_t bad_t = host[1];
  TORCH_CHECK(!(bad_x < n && bad_x <= bad_t), "all elements of input should be between 0 and 1");
  TORCH_CHECK(!(bad_t < n), "all elements of target should be between 0 and 1");
}

// The kernels of one loss (Loss: any formulas template of losses/registry.h).
template <template <class, class> class Loss>
struct Driver {
  template <typename scalar_t>
  using E = Formulas<Loss, at::opmath_type<scalar_t>>;
  using EFloat = Formulas<Loss, float>;
  // The variants this loss has (label smoothing only where its schema takes one: the varifocal
  // loss takes a weight and no smoothing).
  static constexpr int kTables = (EFloat::kTakesWeight ? kWeighted : 0) |
                                 (losses::Traits<Loss>::kLabelSmoothing ? kSmooth : 0) |
                                 (EFloat::kPosWeight ? kPosWeighted : 0) |
                                 (losses::Traits<Loss>::kIgnoreIndex ? kIgnore : 0);
  static constexpr int kForward = kTables | kReduce | (EFloat::kChecksRange ? kStrict : 0);
  static constexpr int kBackward = kTables | kGradScalar;

  template <typename scalar_t>
  static void launch_forward(const ForwardArgs& a, const LossCall& c, int flags,
                             unsigned long long* first_bad, cudaStream_t stream) {
    const bool reduce = (flags & kReduce) != 0;
    const int64_t n = a.x.numel();
    const scalar_t* x = a.x.const_data_ptr<scalar_t>();
    const scalar_t* t = a.t.const_data_ptr<scalar_t>();
    scalar_t* out = reduce ? nullptr : a.out_flat.mutable_data_ptr<scalar_t>();
    // A reduction keeps its groups where they are (head 0) whatever the alignment: determinism.
    Layout layout = make_layout<scalar_t, 3>(n, {x, t, out}, /*peel=*/!reduce);
    const int blocks = finish_layout(layout, kVec<scalar_t>);
    const auto p = make_params<scalar_t>(layout, blocks, a.weight, a.pos_weight, c.params);
    // With an ignore_index, the blocks' counts follow their sums.
    const bool ignore = (flags & kIgnore) != 0;
    at::Tensor partials;
    if (reduce)
      partials = at::empty({ignore ? 2 * blocks : blocks}, a.x.options().dtype(at::kDouble));
    double* partial_ptr = reduce ? partials.mutable_data_ptr<double>() : nullptr;
    with_flags<kForward>(flags, [&](auto f) {
      forward_kernel<E<scalar_t>, scalar_t, decltype(f)::value>
          <<<blocks, kThreads, 0, stream>>>(x, t, out, p, partial_ptr, first_bad);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (reduce) {
      const double* sums = partials.const_data_ptr<double>();
      if (c.reduction == kReductionSumAndCount) {
        finish_kernel<Finish::kSumAndCount, double>
            <<<1, kThreads, 0, stream>>>(sums, blocks, 1.0, a.out.mutable_data_ptr<double>());
      } else if (ignore && c.reduction == kReductionMean) {
        finish_kernel<Finish::kDivideByKept, scalar_t>
            <<<1, kThreads, 0, stream>>>(sums, blocks, 1.0, a.out.mutable_data_ptr<scalar_t>());
      } else {
        const double divisor = c.reduction == kReductionMean ? static_cast<double>(n) : 1.0;
        finish_kernel<Finish::kDivide, scalar_t>
            <<<1, kThreads, 0, stream>>>(sums, blocks, divisor, a.out.mutable_data_ptr<scalar_t>());
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }

  static at::Tensor forward(const LossCall& c) {
    const ForwardArgs a = prepare_forward(c);
    if (a.done()) return a.out;
    const c10::cuda::CUDAGuard guard(c.self.device());
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    const bool strict = EFloat::kChecksRange && strict_mode();
    at::Tensor first_bad;
    // Relaxed capture mode for this thread's strict section: by CUDA's documentation, a capture in
    // global mode on another thread would otherwise forbid its synchronisation (not seen here).
    std::optional<c10::cuda::CUDAStreamCaptureModeGuard> relaxed;
    if (strict) {
      check_strict_allowed(stream);
      relaxed.emplace(cudaStreamCaptureModeRelaxed);
      first_bad = at::full({2}, c.self.numel(), c.self.options().dtype(at::kLong));
    }
    auto* bad = strict
                    ? reinterpret_cast<unsigned long long*>(first_bad.mutable_data_ptr<int64_t>())
                    : nullptr;
    const int flags = table_flags(a.weight, a.pos_weight, c.params) |
                      (c.reduction != kReductionNone ? kReduce : 0) | (strict ? kStrict : 0);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(),
                                    "loss_forward_cuda",
                                    [&] { launch_forward<scalar_t>(a, c, flags, bad, stream); });
    if (strict) raise_first_bad(first_bad, c.self.numel(), stream);
    return a.out;
  }

  template <typename scalar_t>
  static void launch_backward(const BackwardArgs& b, const LossCall& c, cudaStream_t stream) {
    using T = at::opmath_type<scalar_t>;
    const int64_t n = b.x.numel();
    const scalar_t* g = b.grad.values.const_data_ptr<scalar_t>();
    const scalar_t* x = b.x.const_data_ptr<scalar_t>();
    const scalar_t* t = b.t.const_data_ptr<scalar_t>();
    scalar_t* gi = b.gi_flat.defined() ? b.gi_flat.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gt = b.gt_flat.defined() ? b.gt_flat.mutable_data_ptr<scalar_t>() : nullptr;
    // t is read for grad_input, for a grad_target that reads it, and for an ignore_index (a null
    // operand counts as aligned: the one read must be laid out).
    const bool reads_t = gi || (gt && EFloat::kGradTargetUsesTarget) || c.params.ignore;
    Layout layout = make_layout<scalar_t, 5>(
        n, {b.grad.scalar ? nullptr : g, x, reads_t ? t : nullptr, gi, gt}, /*peel=*/true);
    const int blocks = finish_layout(layout, kVec<scalar_t>);
    auto p = make_params<scalar_t>(layout, blocks, b.weight, b.pos_weight, c.params);
    if (b.kept.defined()) p.kept = b.kept.const_data_ptr<double>();
    // 'mean' as PyTorch's CUDA kernels do it: grad_input.div_(numel) with a CPU scalar is a
    // multiply by the reciprocal computed in the compute type (aten/src/ATen/native/cuda/
    // BinaryDivTrueKernel.cu: div_true_kernel_cuda, "compute a * reciprocal(b)"), so 1/N is
    // rounded first, as here. The CPU kernels divide, as PyTorch's CPU kernel; the two can differ
    // in the last bit.
    // 'mean' with an ignore_index divides by the forward's count (p.kept) in the kernel.
    const T scale =
        c.reduction == kReductionMean && !b.kept.defined() ? T(1) / static_cast<T>(n) : T(1);
    const int flags =
        table_flags(b.weight, b.pos_weight, c.params) | (b.grad.scalar ? kGradScalar : 0);
    with_flags<kBackward>(flags, [&](auto f) {
      backward_kernel<E<scalar_t>, scalar_t, decltype(f)::value>
          <<<blocks, kThreads, 0, stream>>>(g, x, t, gi, gt, p, scale);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static TensorPair backward(const LossCall& c, const at::Tensor& grad_output,
                             std::array<bool, 2> output_mask) {
    // Checks first, then the device guard (see forward).
    const BackwardArgs b = prepare_backward(c, grad_output, output_mask);
    if (b.done()) return {b.gi, b.gt};
    const c10::cuda::CUDAGuard guard(c.self.device());
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.x.scalar_type(),
                                    "loss_backward_cuda",
                                    [&] { launch_backward<scalar_t>(b, c, stream); });
    return {b.gi, b.gt};
  }
};

template <template <class, class> class Loss>
at::Tensor loss_forward_cuda(const LossCall& c) {
  return Driver<Loss>::forward(c);
}

template <template <class, class> class Loss>
TensorPair loss_backward_cuda(const LossCall& c, const at::Tensor& grad_output,
                              std::array<bool, 2> output_mask) {
  return Driver<Loss>::backward(c, grad_output, output_mask);
}

}  // namespace bce_ext::cuda
