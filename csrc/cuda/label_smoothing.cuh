#pragma once
// Label smoothing in the loss kernels (loss_cuda_driver.cuh): the target t becomes
// t * (1 - s) + s / 2 as one FMA (Params' keep and shift, computed on the host as the CPU loops
// compute them: loss_cuda_host.cuh, make_params), in the kSmooth variants only.
#include "cuda_math.cuh"
#include "kernel_params.cuh"
#include "kernel_variants.cuh"

namespace bce_ext::cuda {

// The smoothed target (one FMA, as the CPU's vector loops), or t itself.
template <int kFlags, typename T>
__device__ __forceinline__ T smoothed(T t, const Params<T>& p) {
  if constexpr ((kFlags & kSmooth) != 0) return rn::fma(t, p.keep, p.shift);
  return t;
}

}  // namespace bce_ext::cuda
