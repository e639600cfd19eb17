#pragma once
// How the operands of one launch of the loss kernels (loss_cuda_driver.cuh) are laid out over its
// threads: the head peeled to alignment (element-wise kernels: elements before the first 16-byte
// group, one per thread), the full groups, and the thread that takes the partial last group; on
// the host the layout is chosen from the operands' addresses (make_layout, finish_layout), on the
// device each thread walks its share of it (thread_share).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "launch_geometry.cuh"
#include "vector_io.cuh"

namespace bce_ext::cuda {

// How the operands of one launch are laid out (see the top of loss_cuda_driver.cuh). Bit j of
// vec_mask: operand j is 16-byte aligned at every group start.
struct Layout {
  int64_t n = 0;
  int64_t head = 0;        // elements before the first group
  int64_t groups = 0;      // full groups from head on
  int64_t tail_owner = 0;  // the thread that does the elements after the last full group
  uint32_t vec_mask = 0;
  bool all_vec = false;  // every operand present is aligned: the common case, a loop of its own
  __device__ __forceinline__ bool vec(int operand) const { return (vec_mask >> operand) & 1u; }
};

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

// Host side.

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
