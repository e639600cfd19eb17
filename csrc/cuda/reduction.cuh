#pragma once
// The deterministic reduction of the loss kernels' 'mean' and 'sum' (loss_cuda_driver.cuh): each
// thread adds its elements in runs of kFoldGroups groups, each run into a double; a block adds its
// threads in double in a fixed tree (block_sum) into its partial; one block adds the partials in
// order (finish_kernel). Which thread adds which elements is fixed by the launch geometry alone,
// so the same values give the same bits (the top of loss_cuda_driver.cuh).
#include "launch_geometry.cuh"

namespace bce_ext::cuda {

// Groups a thread adds in float before adding the run into its double: at most 128 float32 (256
// half) elements per float sum, so a float32 mean keeps its 1e-6 relative accuracy at any N.
constexpr int kFoldGroups = 32;

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

// Second stage of the reduction: one block adds the partials in a fixed order, in double, and
// writes the 0-dim result (divisor: N for 'mean', 1 for 'sum'). With an ignore_index, partials
// holds `count` sums and then `count` counts of the elements kept: 'mean' divides by their total
// (kDivideByKept), and reduction 3 (kSumAndCount, bce_constants.h) writes the sum and the count.
enum class Finish { kDivide, kDivideByKept, kSumAndCount };

template <Finish kFinish, typename out_t>
__global__ void __launch_bounds__(kThreads)
    finish_kernel(const double* __restrict__ partials, const int count, const double divisor,
                  out_t* __restrict__ out) {
  double v = 0.0;
  for (int j = threadIdx.x; j < count; j += kThreads) v += partials[j];
  v = block_sum(v);
  if constexpr (kFinish == Finish::kDivide) {
    if (threadIdx.x == 0) *out = static_cast<out_t>(v / divisor);
  } else {
    double kept = 0.0;
    for (int j = threadIdx.x; j < count; j += kThreads) kept += partials[count + j];
    __syncthreads();  // block_sum's shared memory, read above, is written again
    kept = block_sum(kept);
    if (threadIdx.x == 0) {
      if constexpr (kFinish == Finish::kSumAndCount) {
        out[0] = v;
        out[1] = kept;
      } else {
        *out = static_cast<out_t>(v / kept);
      }
    }
  }
}

}  // namespace bce_ext::cuda
