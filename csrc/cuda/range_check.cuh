#pragma once
// The range check of the losses that make one (E::kChecksRange) in the loss kernels
// (loss_cuda_driver.cuh): by default a bad element's loss becomes NaN (check_range); in strict
// mode the forward also records the first bad index of x and of t (track_first_bad in a thread,
// publish_first_bad over the grid), which the host reads back to raise the CPU's message
// (loss_cuda_host.cuh: raise_first_bad).
#include <cstdint>

#include "cuda_math.cuh"

namespace bce_ext::cuda {

// The range check of a loss that makes one (else nothing): a bad element's loss becomes NaN, so a
// mean or sum is NaN too. tv[k] is checked unless the group's targets are known to be 0 or 1
// (kHard). (One select per element; a per-thread flag in the reductions saved 0.3 instructions per
// element: benchmarks/CUDA_NOTES.md.)
template <class E, bool kHard, typename T, int K>
__device__ __forceinline__ void check_range(const T (&xv)[K], const T (&tv)[K], T (&l)[K]) {
  if constexpr (E::kChecksRange) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const bool ok = kHard ? E::in_range(xv[k]) : E::in_range(xv[k]) & E::in_range(tv[k]);
      l[k] = rn::nan_unless(ok, l[k]);
    }
  }
}

// Strict mode, in a thread: the first bad index of x and of t among K elements from index i, into
// this thread's bad_x and bad_t (n: none yet).
// An ignored element (ignored[k]) is never bad.
template <class E, typename T, int K>
__device__ __forceinline__ void track_first_bad(const T (&xv)[K], const T (&tv)[K],
                                                const bool (&ignored)[K], int64_t i, int64_t n,
                                                int64_t& bad_x, int64_t& bad_t) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
    // Indices only grow along a thread's elements: its first bad one is its smallest.
    if (!ignored[k] && !E::in_range(xv[k]) && bad_x == n) bad_x = i + k;
    if (!ignored[k] && !E::in_range(tv[k]) && bad_t == n) bad_t = i + k;
  }
}

// Strict mode, over the grid: the smallest bad index of x goes to first_bad[0], of t to
// first_bad[1] (atomicMin on integers: deterministic).
__device__ __forceinline__ void publish_first_bad(int64_t bad_x, int64_t bad_t, int64_t n,
                                                  unsigned long long* first_bad) {
  if (bad_x < n) atomicMin(&first_bad[0], static_cast<unsigned long long>(bad_x));
  if (bad_t < n) atomicMin(&first_bad[1], static_cast<unsigned long long>(bad_t));
}

}  // namespace bce_ext::cuda
