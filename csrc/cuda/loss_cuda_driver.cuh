#pragma once
// The CUDA kernels of every loss, generic over its element formulas E (csrc/losses/, instantiated
// over cuda_math.cuh's backend: one instance per loss and compute type T): launch geometry,
// 16-byte groups and alignment, the broadcast tables (weight, positive weight), label smoothing,
// the range check, the deterministic reduction and strict mode's first bad index. Of E it calls:
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
// that would take the next group takes the last partial one. Each operand is read or written with
// one 128-bit access per group where it is 16-byte aligned at the group starts, and element by
// element otherwise, whatever the other operands do. (The tables are read element by element.)
//   Reduction ('mean', 'sum'): head = 0 and the grid depends only on the device and N (and the
//   dtype's group size): which thread adds which elements, in which order, is then a function of N
//   alone, not of the operands' alignment nor of the kernel variant (strict or not, weighted or
//   not), so the same values give the same bits (docs/behaviour.md). Each thread adds its elements
//   in float in runs of kFoldGroups groups, each run into a double; blocks add their threads in
//   double in a fixed tree (partials), and one block adds the partials in order (finish_kernel).
//   Element-wise ('none', backward): head is chosen so that most operands are aligned from there on
//   (elements 0 .. head-1 are done one per thread): peeled to alignment.
// The grid is one wave of kBlocksPerSm blocks per SM at most (grid-stride loops cover the rest).
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../losses/coefficients.h"
#include "cuda_math.cuh"

namespace bce_ext::cuda {

// Threads per block: a multiple of the warp that divides every GPU's threads per SM.
constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
// Blocks per SM in the grid: every GPU since Turing (sm_75: 1024 threads and 64K registers per SM)
// holds 4 blocks of 256 threads when a thread uses at most 64 registers, which
// __launch_bounds__(kThreads, kBlocksPerSm) makes ptxas ensure. A constant, not an occupancy query,
// so that every kernel variant gets the same grid (determinism above) and a first call inside a
// graph capture makes no driver query.
constexpr int kBlocksPerSm = 4;
// Width of the vector loads and stores: 128 bits, the widest single global access.
constexpr int kVectorBytes = 16;
// Groups a thread adds in float before adding the run into its double: at most 128 float32 (256
// half) elements per float sum, so a float32 mean keeps its 1e-6 relative accuracy at any N.
constexpr int kFoldGroups = 32;

template <typename scalar_t>
constexpr int kVec = kVectorBytes / static_cast<int>(sizeof(scalar_t));

template <typename scalar_t>
struct alignas(kVectorBytes) Vec {
  scalar_t v[kVec<scalar_t>];
};
static_assert(sizeof(uint4) == kVectorBytes);

// How the operands of one launch are laid out (see the top of this file). Bit j of vec_mask:
// operand j is 16-byte aligned at every group start.
struct Layout {
  int64_t n = 0;
  int64_t head = 0;        // elements before the first group
  int64_t groups = 0;      // full groups from head on
  int64_t tail_owner = 0;  // the thread that does the elements after the last full group
  uint32_t vec_mask = 0;
  bool all_vec = false;  // every operand present is aligned: the common case, a loop of its own
  __device__ __forceinline__ bool vec(int operand) const { return (vec_mask >> operand) & 1u; }
};

// The weight of element i: values[(i / inner) % period] (loss_prepare.h: WeightTable). A thread
// keeps (i % inner, (i / inner) % period) for its position and steps it: by one element inside a
// group and by the grid's stride between groups, so no index is divided in the loop (a 64-bit
// division is a long subroutine on the GPU).
template <typename T>
struct DeviceWeight {
  const T* values = nullptr;
  int64_t inner = 1;
  int64_t period = 1;
  int64_t stride_rem = 0;   // (grid stride in elements) % inner
  int64_t stride_quot = 0;  // ((grid stride in elements) / inner) % period

  struct Pos {
    int64_t r, p;
  };
  __device__ __forceinline__ Pos at(int64_t i) const { return {i % inner, (i / inner) % period}; }
  __device__ __forceinline__ T value(const Pos& pos) const { return values[pos.p]; }
  __device__ __forceinline__ void next(Pos& pos) const {
    if (++pos.r == inner) {
      pos.r = 0;
      pos.p = pos.p + 1 == period ? 0 : pos.p + 1;
    }
  }
  __device__ __forceinline__ void next_stride(Pos& pos) const {
    pos.r += stride_rem;
    int64_t p = pos.p + stride_quot;
    if (pos.r >= inner) {
      pos.r -= inner;
      ++p;
    }
    pos.p = p >= period ? p - period : p;
  }
};

// K elements of p from index i, in the compute type: one 128-bit load when `vec` (K == kVec). The
// vector accesses are made as uint4 through __ldg and __stwb (the default cache policies of a load
// of read-only data and of a store), then copied to or from the elements, which costs nothing in
// registers: written as plain accesses of a struct of elements, the compiler sees them equal to
// the element-by-element path and merges the two paths into the latter (no 128-bit store was left).
template <typename scalar_t, typename T, int K>
__device__ __forceinline__ void load(const scalar_t* __restrict__ p, int64_t i, bool vec,
                                     T (&out)[K]) {
  if (K == kVec<scalar_t> && vec) {
    const uint4 bits = __ldg(reinterpret_cast<const uint4*>(p + i));
    if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
      // A bfloat16 is the top half of a float: one instruction per element (a mask or a shift),
      // where converting the elements one by one extracts each first.
      const uint32_t w[4] = {bits.x, bits.y, bits.z, bits.w};
#pragma unroll
      for (int k = 0; k < K; ++k) {
        out[k] = __uint_as_float(k % 2 ? w[k / 2] & 0xffff0000u : w[k / 2] << 16);
      }
    } else {
      Vec<scalar_t> v;
      memcpy(&v, &bits, sizeof bits);
#pragma unroll
      for (int k = 0; k < K; ++k) out[k] = static_cast<T>(v.v[k]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = static_cast<T>(p[i + k]);
  }
}

template <typename scalar_t, typename T, int K>
__device__ __forceinline__ void store(scalar_t* __restrict__ p, int64_t i, bool vec,
                                      const T (&in)[K]) {
  if (K == kVec<scalar_t> && vec) {
    Vec<scalar_t> v;
#pragma unroll
    for (int k = 0; k < K; ++k) v.v[k] = static_cast<scalar_t>(in[k]);
    uint4 bits;
    memcpy(&bits, &v, sizeof bits);
    __stwb(reinterpret_cast<uint4*>(p + i), bits);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) p[i + k] = static_cast<scalar_t>(in[k]);
  }
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

// Kernel variants: the compile-time flags of one kernel instance (with_flags makes them from
// run-time ones). A loss gets only the variants it can use (no strict mode without a range check,
// no positive weight where it takes none).
enum Variant : int {
  kReduce = 1 << 0,       // forward: 'mean' or 'sum' (else 'none')
  kStrict = 1 << 1,       // forward: record the first bad index of x and of t
  kWeighted = 1 << 2,     // a weight table
  kPosWeighted = 1 << 3,  // a positive-weight table
  kSmooth = 1 << 4,       // label smoothing
  kGradScalar = 1 << 5,   // backward: one incoming gradient for every element
};

// What a kernel takes besides its operands' pointers, in the compute type T.
template <typename T>
struct Params {
  Layout layout;
  DeviceWeight<T> w, pw;
  T keep = T(1), shift = T(0);  // label smoothing: t * keep + shift
  losses::Coefficients<T> k;    // the loss's own scalars (the focal loss's alpha, gamma)
};

// A thread's positions in the tables that kFlags has.
template <typename T, int kFlags>
struct Cursor {
  typename DeviceWeight<T>::Pos w{}, pw{};

  __device__ __forceinline__ static Cursor at(const Params<T>& p, int64_t i) {
    Cursor c;
    if constexpr ((kFlags & kWeighted) != 0) c.w = p.w.at(i);
    if constexpr ((kFlags & kPosWeighted) != 0) c.pw = p.pw.at(i);
    return c;
  }
  // The tables' values for this element (1 where absent: unused), then steps to the next one.
  __device__ __forceinline__ void take(const Params<T>& p, T& w_value, T& pw_value) {
    w_value = pw_value = T(1);
    if constexpr ((kFlags & kWeighted) != 0) {
      w_value = p.w.value(w);
      p.w.next(w);
    }
    if constexpr ((kFlags & kPosWeighted) != 0) {
      pw_value = p.pw.value(pw);
      p.pw.next(pw);
    }
  }
  __device__ __forceinline__ void next_stride(const Params<T>& p) {
    if constexpr ((kFlags & kWeighted) != 0) p.w.next_stride(w);
    if constexpr ((kFlags & kPosWeighted) != 0) p.pw.next_stride(pw);
  }
};

// The smoothed target (one FMA, as the CPU's vector loops), or t itself.
template <int kFlags, typename T>
__device__ __forceinline__ T smoothed(T t, const Params<T>& p) {
  if constexpr ((kFlags & kSmooth) != 0) return rn::fma(t, p.keep, p.shift);
  return t;
}

// Whether every target of a group is 0 or 1 (& and |, not && and ||: no branches).
template <typename T, int K>
__device__ __forceinline__ bool all_hard(const T (&t)[K]) {
  bool hard = true;
#pragma unroll
  for (int k = 0; k < K; ++k) hard = hard & ((t[k] == T(0)) | (t[k] == T(1)));
  return hard;
}

// What one thread of the forward carries from element to element.
template <typename T>
struct ForwardState {
  double total = 0.0;    // runs added so far
  T run = T(0);          // the current run, in the compute type
  int64_t bad_x, bad_t;  // strict mode: this thread's first bad index of x and of t (n: none)
};

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
  auto general = [&] {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      l[k] = E::template loss<kPw>(xv[k], smoothed<kFlags>(tv[k], p), pw[k], p.k);
    }
    check_range<E, false>(xv, tv, l);
  };
  if constexpr (E::kHardPath && (kFlags & kSmooth) == 0) {
    bool hard = all_hard(tv);
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
  if constexpr ((kFlags & kStrict) != 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      // Indices only grow along a thread's elements: its first bad one is its smallest.
      if (!E::in_range(xv[k]) && s.bad_x == p.layout.n) s.bad_x = i + k;
      if (!E::in_range(tv[k]) && s.bad_t == p.layout.n) s.bad_t = i + k;
    }
  }
  if constexpr ((kFlags & kReduce) != 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) s.run += l[k];
  } else {
    store(out, i, kAllVec || p.layout.vec(2), l);
  }
}

// How many groups thread tid takes (tid, tid + stride, ... below `groups`): one division per
// thread, and then a counted loop (cheaper per group than comparing a 64-bit index with the end).
__device__ __forceinline__ int64_t groups_of_thread(int64_t groups, int64_t tid, int64_t stride) {
  return tid < groups ? (groups - 1 - tid) / stride + 1 : 0;
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

// Forward. kReduce: this block's sum goes to partials[blockIdx.x]; else out[i] = w * loss.
// kStrict: the smallest bad index of x goes to first_bad[0], of t to first_bad[1] (atomicMin on
// integers: deterministic).
// A thread's share of a launch's elements, in order: one element of the head (element-wise
// kernels peel it), its groups (in the aligned-operands loop where every operand is aligned), and
// the elements after the last group where it owns them. one(c, i) does element i, groups(kAllVec,
// c) the thread's groups from the cursor c (left at the group after its last one).
template <int kVecElements, class C, class P, class One, class Groups>
__device__ __forceinline__ void thread_share(const P& p, int64_t tid, One&& one, Groups&& groups) {
  const Layout& layout = p.layout;
  if (tid < layout.head) {
    C c = C::at(p, tid);
    one(c, tid);
  }
  C c = C::at(p, layout.head + tid * kVecElements);
  if (layout.all_vec) {
    groups(std::true_type{}, c);
  } else {
    groups(std::false_type{}, c);
  }
  if (tid == layout.tail_owner) {
    for (int64_t i = layout.head + layout.groups * kVecElements; i < layout.n; ++i) one(c, i);
  }
}

// This thread's index in the grid, and the grid's size in threads.
__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * kThreads;
}

// Forward. kReduce: this block's sum goes to partials[blockIdx.x]; else out[i] = w * loss.
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
    const int64_t n = p.layout.n;
    if (s.bad_x < n) atomicMin(&first_bad[0], static_cast<unsigned long long>(s.bad_x));
    if (s.bad_t < n) atomicMin(&first_bad[1], static_cast<unsigned long long>(s.bad_t));
  }
  if constexpr ((kFlags & kReduce) != 0) {
    const double block = block_sum(s.total + static_cast<double>(s.run));
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
  // PyTorch's order: the gradient, times the weight, times 1/N (scale is 1 unless 'mean').
  auto finish = [&](T v, T wk) { return ((kFlags & kWeighted) != 0 ? v * wk : v) * scale; };
  // The target where a formula reads it (grad_input, and the focal loss's grad_target).
  T tv[K] = {};
  if (gi || (gt && E::kGradTargetUsesTarget)) {
    load(t, i, kAllVec || p.layout.vec(2), tv);
#pragma unroll
    for (int k = 0; k < K; ++k) tv[k] = smoothed<kFlags>(tv[k], p);
  }
  if (gi) {
    T o[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const T v = E::template grad_input<kPw>(gv[k], xv[k], tv[k], pw[k], p.k);
      o[k] = finish(v, wv[k]);
    }
    store(gi, i, kAllVec || p.layout.vec(3), o);
  }
  if (gt) {
    T o[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      T v = E::template grad_target<kPw>(gv[k], xv[k], tv[k], pw[k], p.k);
      if constexpr ((kFlags & kSmooth) != 0) v = rn::mul(v, p.keep);  // d ts / d t
      o[k] = finish(v, wv[k]);
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
                    const at::opmath_type<scalar_t> scale) {
  using T = at::opmath_type<scalar_t>;
  using C = Cursor<T, kFlags>;
  const int64_t tid = thread_index();
  const int64_t stride = grid_threads();
  const T g0 = (kFlags & kGradScalar) != 0 ? static_cast<T>(g[0]) : T(0);
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

// ---------------------------------------------------------------------------------------------
// Host side.

// Blocks for `units` groups of work: one per kThreads units, at most kBlocksPerSm per SM.
inline int grid_blocks(int64_t units) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t needed = (units + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, sms * kBlocksPerSm)));
}

// Elements of scalar_t before p reaches a 16-byte boundary; -1 if it never does (an address that
// is not a multiple of the element size).
template <typename scalar_t>
int64_t elements_to_alignment(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  if (addr % sizeof(scalar_t) != 0) return -1;
  const uintptr_t bytes = (kVectorBytes - addr % kVectorBytes) % kVectorBytes;
  return static_cast<int64_t>(bytes / sizeof(scalar_t));
}

// The layout of a launch over n elements whose operands are `ptrs` (null: absent; an absent operand
// counts as aligned). peel: choose head so that the most operands are aligned (ties: the first
// operand's choice); else head = 0 (reductions: the groups must not depend on alignment).
template <typename scalar_t, size_t kOperands>
Layout make_layout(int64_t n, const std::array<const void*, kOperands>& ptrs, bool peel) {
  constexpr int64_t V = kVec<scalar_t>;
  Layout layout;
  layout.n = n;
  auto aligned_at = [&](const void* p, int64_t head) {
    return p == nullptr || elements_to_alignment<scalar_t>(p) == head;
  };
  if (peel) {
    int best_count = -1;
    for (const void* candidate : ptrs) {
      const int64_t head = candidate ? elements_to_alignment<scalar_t>(candidate) : 0;
      if (head < 0) continue;
      int count = 0;
      for (const void* p : ptrs) count += aligned_at(p, head);
      if (count > best_count) {
        best_count = count;
        layout.head = head;
      }
    }
    layout.head = std::min(layout.head, n);
  }
  for (size_t j = 0; j < kOperands; ++j) {
    if (aligned_at(ptrs[j], layout.head)) layout.vec_mask |= 1u << j;
  }
  layout.all_vec = layout.vec_mask == (1u << kOperands) - 1;
  layout.groups = (n - layout.head) / V;
  return layout;
}

// The number of blocks for a layout, and the thread that takes the partial last group.
inline int finish_layout(Layout& layout, int64_t vec) {
  const bool partial = layout.head + layout.groups * vec < layout.n;
  const int blocks = grid_blocks(layout.groups + (partial ? 1 : 0));
  layout.tail_owner = layout.groups % (static_cast<int64_t>(blocks) * kThreads);
  return blocks;
}

}  // namespace bce_ext::cuda
