#pragma once
// The CUDA kernels of every loss, generic over its element formulas E (csrc/losses/, instantiated
// over cuda_math.cuh's backend: one instance per loss and compute type T), and the headers they
// are made of:
//   launch_geometry.cuh   threads per block, blocks per SM, the grid, a thread's groups
//   vector_io.cuh         16-byte groups (kVec, Vec) and their loads and stores
//   operand_layout.cuh    the launch's layout: head peeled to alignment, groups, tail owner
//   weight_cursor.cuh     the broadcast tables (weight, positive weight) as the device steps them
//   kernel_variants.cuh   the variant flags (Variant), and their CPU counterparts
//   kernel_params.cuh     the kernels' parameters (Params) and a thread's table cursor (Cursor)
//   label_smoothing.cuh   the smoothed target
//   range_check.cuh       the range check, and strict mode's first bad index
//   reduction.cuh         the deterministic reduction: block_sum, finish_kernel
// This file holds the forward and backward kernels themselves. Of E they call:
//   E::loss<kWithPw>(x, t, pw, k), E::grad_input<kWithPw>(g, x, t, pw, k),
//   E::grad_target<kWithPw>(g, x, t, pw, k)   (k: the Coefficients; t read where
//                         E::kGradTargetUsesTarget or grad_input is wanted)
//   E::loss_hard(x, t)    where E::kHardPath: a group whose targets are all 0 or 1 (one log);
//                         bitwise loss's result
//   E::in_range(v)        where E::kChecksRange: x and the raw t must pass it (else NaN, or
//                         strict mode's message)
//
// Python reference of what the kernels compute from those (N = x.numel(), s the label smoothing,
// ts = t * (1 - s) + s / 2 as one FMA, pw and w the tables' values, 1 where absent):
//   l   = loss(x, ts, pw) if in_range(x) and in_range(t) else nan   # no check: E::kChecksRange
//   out = sum(w * l) [/ N for 'mean'], or w * l for 'none'
//   gi  = grad_input(g, x, ts, pw) * w * (1 / N for 'mean')
//   gt  = grad_target(g, x, ts, pw) * (1 - s) * w * (1 / N for 'mean')
//
// Work assignment. Every operand is contiguous in one element order. Elements form groups of 16
// bytes' worth (kVec: 4 float32, 8 float16/bfloat16, 2 float64) counted from a start index
// `head`; thread `tid` of a grid-stride loop takes groups tid, tid + stride, ... and the thread
// that would take the next group takes the last partial one (operand_layout.cuh). Each operand is
// read or written with one 128-bit access per group where it is 16-byte aligned at the group
// starts, and element by element otherwise, whatever the other operands do (vector_io.cuh). (The
// tables are read element by element: weight_cursor.cuh.)
//   Reduction ('mean', 'sum'): head = 0 and the grid depends only on the device and N (and the
//   dtype's group size): which thread adds which elements, in which order, is then a function of N
//   alone, not of the operands' alignment nor of the kernel variant (strict or not, weighted or
//   not), so the same values give the same bits (docs/behaviour.md). Each thread adds its elements
//   in float in runs of kFoldGroups groups, each run into a double; blocks add their threads in
//   double in a fixed tree (partials), and one block adds the partials in order (finish_kernel):
//   reduction.cuh.
//   Element-wise ('none', backward): head is chosen so that most operands are aligned from there on
//   (elements 0 .. head-1 are done one per thread): peeled to alignment.
// The grid is one wave of kBlocksPerSm blocks per SM at most (grid-stride loops cover the rest):
// launch_geometry.cuh.
#include <ATen/OpMathType.h>

#include <cstdint>

#include "cuda_math.cuh"
#include "kernel_params.cuh"
#include "kernel_variants.cuh"
#include "label_smoothing.cuh"
#include "launch_geometry.cuh"
#include "operand_layout.cuh"
#include "range_check.cuh"
#include "reduction.cuh"
#include "vector_io.cuh"

namespace bce_ext::cuda {

// Whether every target of a group is 0 or 1, or ignored (& and |, not && and ||: no branches).
template <typename T, int K>
__device__ __forceinline__ bool all_hard(const T (&t)[K], const bool (&ignored)[K]) {
  bool hard = true;
#pragma unroll
  for (int k = 0; k < K; ++k) hard = hard & ((t[k] == T(0)) | (t[k] == T(1)) | ignored[k]);
  return hard;
}

// What one thread of the forward carries from element to element.
template <typename T>
struct ForwardState {
  double total = 0.0;    // runs added so far
  T run = T(0);          // the current run, in the compute type
  int64_t bad_x, bad_t;  // strict mode: this thread's first bad index of x and of t (n: none)
  int64_t kept = 0;      // kIgnore: the elements not ignored
};

// K elements from index i (a group, or one element of the head or the tail). kAllVec: every operand
// is known to be aligned (no element-by-element path compiled in: predicated off, it would still
// cost its issue slots).
template <class E, typename scalar_t, int K, bool kAllVec, int kFlags>
__device__ __forceinline__ void forward_elements(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ t, scalar_t* __restrict__ out,
    const Params<at::opmath_type<scalar_t>>& p, Cursor<at::opmath_type<scalar_t>, kFlags>& c,
    int64_t i, ForwardState<at::opmath_type<scalar_t>>& s) {
  using T = at::opmath_type<scalar_t>;
  constexpr bool kPw = (kFlags & kPosWeighted) != 0;
  T xv[K], tv[K], l[K], w[K], pw[K];
  load(x, i, kAllVec || p.layout.vec(0), xv);
  load(t, i, kAllVec || p.layout.vec(1), tv);
#pragma unroll
  for (int k = 0; k < K; ++k) c.take(p, w[k], pw[k]);
  // kIgnore: an element whose raw target is the ignored value contributes 0 and is not counted.
  bool ignored[K] = {};
  if constexpr ((kFlags & kIgnore) != 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) ignored[k] = tv[k] == p.ignore;
  }
  auto general = [&] {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      l[k] = E::template loss<kPw>(xv[k], smoothed<kFlags>(tv[k], p), pw[k], p.k);
    }
    check_range<E, false>(xv, tv, l);
  };
  if constexpr (E::kHardPath && (kFlags & kSmooth) == 0) {
    bool hard = all_hard(tv, ignored);
    // One path per warp where the warp's threads disagree: both give the same bits, and the
    // general path alone costs less than both one after the other.
    if (K > 1) hard = __all_sync(__activemask(), hard);
    if (hard) {
#pragma unroll
      for (int k = 0; k < K; ++k) l[k] = E::loss_hard(xv[k], tv[k]);
      check_range<E, true>(xv, tv, l);
    } else {
      general();
    }
  } else {
    general();
  }
  if constexpr ((kFlags & kWeighted) != 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) l[k] *= w[k];
  }
  if constexpr ((kFlags & kIgnore) != 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      l[k] = ignored[k] ? T(0) : l[k];
      s.kept += ignored[k] ? 0 : 1;
    }
  }
  if constexpr ((kFlags & kStrict) != 0) {
    track_first_bad<E>(xv, tv, ignored, i, p.layout.n, s.bad_x, s.bad_t);
  }
  if constexpr ((kFlags & kReduce) != 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) s.run += l[k];
  } else {
    store(out, i, kAllVec || p.layout.vec(2), l);
  }
}

// The groups of one thread, in order (see the top of this file); returns with `c` at the group
// after its last one.
template <class E, typename scalar_t, bool kAllVec, int kFlags>
__device__ __forceinline__ void forward_groups(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ t, scalar_t* __restrict__ out,
    const Params<at::opmath_type<scalar_t>>& p, Cursor<at::opmath_type<scalar_t>, kFlags>& c,
    int64_t tid, int64_t stride, ForwardState<at::opmath_type<scalar_t>>& s) {
  using T = at::opmath_type<scalar_t>;
  constexpr int V = kVec<scalar_t>;
  const int64_t step = stride * V;
  int64_t i = p.layout.head + tid * V;
  auto group = [&] {
    auto element = c;
    forward_elements<E, scalar_t, V, kAllVec, kFlags>(x, t, out, p, element, i, s);
    c.next_stride(p);
    i += step;
  };
  int64_t left = groups_of_thread(p.layout.groups, tid, stride);
  if constexpr ((kFlags & kReduce) != 0) {
    // Runs of kFoldGroups groups in float, each into the double: a loop nest, so that the double
    // addition is made once a run (as a counter and a select, it was made at every group).
    while (left > 0) {
      const int run = left < kFoldGroups ? static_cast<int>(left) : kFoldGroups;
      for (int r = 0; r < run; ++r) group();
      left -= run;
      s.total += static_cast<double>(s.run);
      s.run = T(0);
    }
  } else {
    for (; left > 0; --left) group();
  }
}

// Forward. kReduce: this block's sum goes to partials[blockIdx.x] (and with kIgnore, its count
// of elements kept to partials[gridDim.x + blockIdx.x]); else out[i] = w * loss.
// kStrict: the smallest bad index of x goes to first_bad[0], of t to first_bad[1] (atomicMin on
// integers: deterministic).
template <class E, typename scalar_t, int kFlags>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ t,
                   scalar_t* __restrict__ out, const Params<at::opmath_type<scalar_t>> p,
                   double* __restrict__ partials, unsigned long long* __restrict__ first_bad) {
  using T = at::opmath_type<scalar_t>;
  using C = Cursor<T, kFlags>;
  const int64_t tid = thread_index();
  const int64_t stride = grid_threads();
  ForwardState<T> s;
  s.bad_x = s.bad_t = p.layout.n;
  thread_share<kVec<scalar_t>, C>(
      p, tid,
      [&](C& c, int64_t i) {
        forward_elements<E, scalar_t, 1, false, kFlags>(x, t, out, p, c, i, s);
      },
      [&](auto all_vec, C& c) {
        forward_groups<E, scalar_t, decltype(all_vec)::value, kFlags>(x, t, out, p, c, tid, stride,
                                                                      s);
      });
  if constexpr ((kFlags & kStrict) != 0) {
    publish_first_bad(s.bad_x, s.bad_t, p.layout.n, first_bad);
  }
  if constexpr ((kFlags & kReduce) != 0) {
    const double block = block_sum(s.total + static_cast<double>(s.run));
    if (threadIdx.x == 0) partials[blockIdx.x] = block;
    if constexpr ((kFlags & kIgnore) != 0) {
      __syncthreads();  // block_sum's shared memory is written again
      const double kept = block_sum(static_cast<double>(s.kept));
      if (threadIdx.x == 0) partials[gridDim.x + blockIdx.x] = kept;
    }
  }
}

// K elements of the backward from index i. Operands: 0 g, 1 x, 2 t, 3 gi, 4 gt (gi and gt may be
// null: not wanted). Each output is computed and stored under one test, so that an iteration's
// instructions are those of the outputs asked for.
template <class E, typename scalar_t, int K, bool kAllVec, int kFlags>
__device__ __forceinline__ void backward_elements(
    const scalar_t* __restrict__ g, const scalar_t* __restrict__ x, const scalar_t* __restrict__ t,
    scalar_t* __restrict__ gi, scalar_t* __restrict__ gt,
    const Params<at::opmath_type<scalar_t>>& p, Cursor<at::opmath_type<scalar_t>, kFlags>& c,
    at::opmath_type<scalar_t> g0, at::opmath_type<scalar_t> scale, int64_t i) {
  using T = at::opmath_type<scalar_t>;
  constexpr bool kPw = (kFlags & kPosWeighted) != 0;
  T gv[K], xv[K], wv[K], pw[K];
  if constexpr ((kFlags & kGradScalar) != 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) gv[k] = g0;
  } else {
    load(g, i, kAllVec || p.layout.vec(0), gv);
  }
  load(x, i, kAllVec || p.layout.vec(1), xv);
#pragma unroll
  for (int k = 0; k < K; ++k) c.take(p, wv[k], pw[k]);
  // PyTorch's order: the gradient, times the weight, times 1/N (scale is 1 unless 'mean');
  // kIgnore: 0 at an ignored element whatever its operands.
  bool ignored[K] = {};
  auto finish = [&](T v, T wk, int k) {
    v = ((kFlags & kWeighted) != 0 ? v * wk : v) * scale;
    return (kFlags & kIgnore) != 0 && ignored[k] ? T(0) : v;
  };
  // The target where a formula reads it (grad_input, and the focal loss's grad_target), and
  // always with kIgnore.
  T tv[K] = {};
  if ((kFlags & kIgnore) != 0 || gi || (gt && E::kGradTargetUsesTarget)) {
    load(t, i, kAllVec || p.layout.vec(2), tv);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if constexpr ((kFlags & kIgnore) != 0) ignored[k] = tv[k] == p.ignore;
      tv[k] = smoothed<kFlags>(tv[k], p);
    }
  }
  if (gi) {
    T o[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const T v = E::template grad_input<kPw>(gv[k], xv[k], tv[k], pw[k], p.k);
      o[k] = finish(v, wv[k], k);
    }
    store(gi, i, kAllVec || p.layout.vec(3), o);
  }
  if (gt) {
    T o[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      T v = E::template grad_target<kPw>(gv[k], xv[k], tv[k], pw[k], p.k);
      if constexpr ((kFlags & kSmooth) != 0) v = rn::mul(v, p.keep);  // d ts / d t
      o[k] = finish(v, wv[k], k);
    }
    store(gt, i, kAllVec || p.layout.vec(4), o);
  }
}

template <class E, typename scalar_t, bool kAllVec, int kFlags>
__device__ __forceinline__ void backward_groups(
    const scalar_t* __restrict__ g, const scalar_t* __restrict__ x, const scalar_t* __restrict__ t,
    scalar_t* __restrict__ gi, scalar_t* __restrict__ gt,
    const Params<at::opmath_type<scalar_t>>& p, Cursor<at::opmath_type<scalar_t>, kFlags>& c,
    at::opmath_type<scalar_t> g0, at::opmath_type<scalar_t> scale, int64_t tid, int64_t stride) {
  constexpr int V = kVec<scalar_t>;
  const int64_t step = stride * V;
  int64_t i = p.layout.head + tid * V;
  for (int64_t left = groups_of_thread(p.layout.groups, tid, stride); left > 0; --left) {
    auto element = c;
    backward_elements<E, scalar_t, V, kAllVec, kFlags>(g, x, t, gi, gt, p, element, g0, scale, i);
    c.next_stride(p);
    i += step;
  }
}

// Backward: gi and/or gt. kGradScalar: g is one value for every element (read here, on the device:
// no .item(), no synchronisation).
template <class E, typename scalar_t, int kFlags>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                    const scalar_t* __restrict__ t, scalar_t* __restrict__ gi,
                    scalar_t* __restrict__ gt, const Params<at::opmath_type<scalar_t>> p,
                    at::opmath_type<scalar_t> scale) {
  using T = at::opmath_type<scalar_t>;
  using C = Cursor<T, kFlags>;
  const int64_t tid = thread_index();
  const int64_t stride = grid_threads();
  const T g0 = (kFlags & kGradScalar) != 0 ? static_cast<T>(g[0]) : T(0);
  // 'mean' with an ignore_index: 1 / the forward's count, read here (no synchronisation).
  if constexpr ((kFlags & kIgnore) != 0) {
    if (p.kept != nullptr) scale = T(1) / static_cast<T>(*p.kept);
  }
  thread_share<kVec<scalar_t>, C>(
      p, tid,
      [&](C& c, int64_t i) {
        backward_elements<E, scalar_t, 1, false, kFlags>(g, x, t, gi, gt, p, c, g0, scale, i);
      },
      [&](auto all_vec, C& c) {
        backward_groups<E, scalar_t, decltype(all_vec)::value, kFlags>(g, x, t, gi, gt, p, c, g0,
                                                                       scale, tid, stride);
      });
}

}  // namespace bce_ext::cuda
