#pragma once
// What the CPU host code decides about a call, for the tests (through bce_ext._C), so that they
// can check that their sizes fall on both sides of each threshold of tuning.h.
#include <ATen/ATen.h>

#include <array>
#include <optional>

namespace bce_ext::cpu {

// How a weight table with `inner` repeats of each of its `period` values, over n elements, is
// laid out for the inner loops: repeats written out, then `copies` copies of the table.
struct TilePlan {
  bool write_repeats = false;
  int64_t copies = 1;
};
TilePlan tile_plan(int64_t inner, int64_t period, int64_t n);

// The weight table of a forward call (inner, period) and its tiling (write_repeats, copies); all
// zero without a weight.
std::array<int64_t, 4> weight_plan(const at::Tensor& self, const at::Tensor& target,
                                   const std::optional<at::Tensor>& weight, int64_t reduction);

}  // namespace bce_ext::cpu
