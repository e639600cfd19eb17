#pragma once
// Launch geometry of the loss kernels (loss_cuda_driver.cuh): threads per block, blocks per SM,
// the grid (one wave at most, grid-stride loops cover the rest) and how many groups of a
// grid-stride loop each thread takes. A constant grid per device and size, whatever the kernel
// variant: the reductions' determinism rests on it (the top of loss_cuda_driver.cuh).
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace bce_ext::cuda {

// Threads per block: a multiple of the warp that divides every GPU's threads per SM.
constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
// Blocks per SM in the grid: every GPU since Turing (sm_75: 1024 threads and 64K registers per SM)
// holds 4 blocks of 256 threads when a thread uses at most 64 registers, which
// __launch_bounds__(kThreads, kBlocksPerSm) makes ptxas ensure. A constant, not an occupancy query,
// so that every kernel variant gets the same grid (determinism: the top of loss_cuda_driver.cuh)
// and a first call inside a graph capture makes no driver query.
constexpr int kBlocksPerSm = 4;

// How many groups thread tid takes (tid, tid + stride, ... below `groups`): one division per
// thread, and then a counted loop (cheaper per group than comparing a 64-bit index with the end).
__device__ __forceinline__ int64_t groups_of_thread(int64_t groups, int64_t tid, int64_t stride) {
  return tid < groups ? (groups - 1 - tid) / stride + 1 : 0;
}

// This thread's index in the grid, and the grid's size in threads.
__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * kThreads;
}

// Host side.

// Blocks for `units` groups of work: one per kThreads units, at most kBlocksPerSm per SM.
inline int grid_blocks(int64_t units) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t needed = (units + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, sms * kBlocksPerSm)));
}

}  // namespace bce_ext::cuda
