#pragma once
// The CPU tile loop of the pairwise sigmoid (SigLIP) loss (loops.h: SiglipTile), generic over a
// backend V and its Math: included by one file per backend after them (isa_entry.h,
// loops_portable.cpp), in an anonymous namespace. No standard library header.
//
// For each element of the tile, in place: logit = scale * product + bias, its loss and d loss /
// d logit (losses/pairwise_sigmoid.h); the sums of the loss, of grad_scale * d loss / d logit and
// of that times the product go to SiglipSums (added in T in runs of kRun vectors per lane, then
// in double, in a fixed order: the same bits whatever the thread count); with `grad`, the product
// becomes scale * grad_scale * d loss / d logit, the factor of both feature gradients' products.
#include "../../losses/pairwise_sigmoid.h"
#include "../loops.h"

namespace bce_ext::cpu {
namespace {
namespace siglip {

// Vectors a lane adds in T before its double: at most 64 float losses of at most ~100 each.
constexpr int64_t kRun = 64;

template <class V>
struct Sums {
  typename V::DAcc loss, grad, product_grad;
};

template <class V, class MathV>
void tile_loop(const SiglipTile<typename V::T>& tile, SiglipSums* out) {
  using T = typename V::T;
  using F = typename V::F;
  using M = typename V::M;
  using Pair = losses::PairwiseSigmoid<V, MathV>;
  constexpr int L = V::kLanes;
  const F scale = V::set1(tile.scale), bias = V::set1(tile.bias);
  const F grad_scale = V::set1(tile.grad_scale);
  const F store_scale = V::set1(tile.scale * tile.grad_scale);
  const F one = V::set1(T(1));
  Sums<V> sums{V::dzero(), V::dzero(), V::dzero()};
  for (int64_t r = 0; r < tile.rows; ++r) {
    T* p = tile.products + r * tile.ld;
    // The row's positives as 1 in `positive` (0 elsewhere): group ids equal, or the diagonal.
    T* positive = tile.scratch;
    if (tile.row_ids != nullptr) {
      const int64_t id = tile.row_ids[r];
      for (int64_t c = 0; c < tile.cols; ++c) positive[c] = tile.col_ids[c] == id ? T(1) : T(0);
    } else {
      for (int64_t c = 0; c < tile.cols; ++c) positive[c] = T(0);
      const int64_t diagonal = tile.row0 + r - tile.col0;
      if (diagonal >= 0 && diagonal < tile.cols) positive[diagonal] = T(1);
    }
    F loss_run = V::zero(), grad_run = V::zero(), product_grad_run = V::zero();
    int64_t in_run = 0;
    for (int64_t c = 0; c < tile.cols; c += L) {
      const M m = V::tail_mask(tile.cols - c < L ? int(tile.cols - c) : L);
      const F product = V::load_n(p + c, m);
      const M pos = V::eq(V::load_n(positive + c, m), one);
      F loss, grad;
      Pair::terms(V::fma(product, scale, bias), pos, loss, grad);
      loss_run = V::add(loss_run, V::zero_unless(m, loss));
      if (tile.grad) {
        const F g = V::zero_unless(m, V::mul(grad, grad_scale));
        grad_run = V::add(grad_run, g);
        product_grad_run = V::add(product_grad_run, V::mul(g, product));
        V::store_n(p + c, V::mul(grad, store_scale), m);
      }
      if (++in_run == kRun || c + L >= tile.cols) {
        V::dadd(sums.loss, loss_run);
        V::dadd(sums.grad, grad_run);
        V::dadd(sums.product_grad, product_grad_run);
        loss_run = grad_run = product_grad_run = V::zero();
        in_run = 0;
      }
    }
  }
  double lanes[3][L];
  V::dstore(sums.loss, lanes[0]);
  V::dstore(sums.grad, lanes[1]);
  V::dstore(sums.product_grad, lanes[2]);
  for (int j = 0; j < L; ++j) {
    out->loss += lanes[0][j];
    out->grad += lanes[1][j];
    out->product_grad += lanes[2][j];
  }
}

}  // namespace siglip
}  // namespace
}  // namespace bce_ext::cpu
