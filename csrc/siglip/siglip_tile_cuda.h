#pragma once
// The CUDA tile loop of the SigLIP loss (siglip_tile.cu; a build without CUDA kernels raises, from
// siglip_tile_missing.cpp): what cpu::SiglipTile's loop does to a tile of products, on the device,
// with the tile's sums added (in a fixed order) into sums[0..2] (loss, grad, product * grad:
// cpu::SiglipSums). scale and bias are 0-dim tensors in p's dtype, read on the device.
#include <ATen/ATen.h>

#include <cstdint>

namespace bce_ext::siglip {

void cuda_tile(const at::Tensor& p, const int64_t* row_ids, const int64_t* col_ids, int64_t row0,
               int64_t col0, const at::Tensor& scale, const at::Tensor& bias, double grad_scale,
               bool grad, const at::Tensor& sums);

}  // namespace bce_ext::siglip
