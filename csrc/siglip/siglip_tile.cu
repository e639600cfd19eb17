// The CUDA tile loop of the SigLIP loss (siglip_tile_cuda.h): one thread per element of a grid-
// stride loop over the tile, the element formulas of losses/pairwise_sigmoid.h over
// cuda_math.cuh's backend, each thread's sums in double, each block's in a fixed tree
// (block_sum), and the blocks' partials added in order by one block: the same bits run after run.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "../cuda/cuda_math.cuh"
#include "../cuda/launch_geometry.cuh"
#include "../cuda/reduction.cuh"
#include "../losses/pairwise_sigmoid.h"
#include "siglip_tile_cuda.h"

namespace bce_ext::siglip {
namespace {

using cuda::kThreads;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    tile_kernel(T* __restrict__ p, int64_t rows, int64_t cols, int64_t ld,
                const int64_t* __restrict__ row_ids, const int64_t* __restrict__ col_ids,
                int64_t row0, int64_t col0, const T* __restrict__ scale_ptr,
                const T* __restrict__ bias_ptr, T grad_scale, bool grad,
                double* __restrict__ partials) {
  using V = cuda::Lanes<T>;
  using Pair = losses::PairwiseSigmoid<V, cuda::Math<V>>;
  const T scale = *scale_ptr, bias = *bias_ptr;
  double loss_sum = 0.0, grad_sum = 0.0, product_grad_sum = 0.0;
  const int64_t n = rows * cols;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < n;
       k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = k / cols, c = k - r * cols;
    T* q = p + r * ld + c;
    const T product = *q;
    const bool positive = row_ids != nullptr ? row_ids[r] == col_ids[c] : row0 + r == col0 + c;
    T loss, g;
    Pair::terms(product * scale + bias, positive, loss, g);
    loss_sum += static_cast<double>(loss);
    if (grad) {
      const T scaled = g * grad_scale;
      grad_sum += static_cast<double>(scaled);
      product_grad_sum += static_cast<double>(scaled * product);
      *q = scaled * scale;
    }
  }
  const double sums[3] = {loss_sum, grad_sum, product_grad_sum};
  for (int j = 0; j < 3; ++j) {
    const double block = cuda::block_sum(sums[j]);
    if (threadIdx.x == 0) partials[j * gridDim.x + blockIdx.x] = block;
    __syncthreads();  // block_sum's shared memory is written again
  }
}

// Adds the blocks' partials, in order, into sums[0..2].
__global__ void __launch_bounds__(kThreads)
    finish_kernel(const double* __restrict__ partials, int blocks, double* __restrict__ sums) {
  for (int j = 0; j < 3; ++j) {
    double v = 0.0;
    for (int b = threadIdx.x; b < blocks; b += kThreads) v += partials[j * blocks + b];
    v = cuda::block_sum(v);
    if (threadIdx.x == 0) sums[j] += v;
    __syncthreads();
  }
}

}  // namespace

void cuda_tile(const at::Tensor& p, const int64_t* row_ids, const int64_t* col_ids, int64_t row0,
               int64_t col0, const at::Tensor& scale, const at::Tensor& bias, double grad_scale,
               bool grad, const at::Tensor& sums) {
  const c10::cuda::CUDAGuard guard(p.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t n = p.size(0) * p.size(1);
  if (n == 0) return;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int blocks =
      static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{sms} * 4));
  const at::Tensor partials = at::empty({3 * blocks}, sums.options());
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "siglip_tile_cuda", [&] {
    tile_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        p.mutable_data_ptr<scalar_t>(), p.size(0), p.size(1), p.stride(0), row_ids, col_ids, row0,
        col0, scale.const_data_ptr<scalar_t>(), bias.const_data_ptr<scalar_t>(),
        static_cast<scalar_t>(grad_scale), grad, partials.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  finish_kernel<<<1, kThreads, 0, stream>>>(partials.const_data_ptr<double>(), blocks,
                                            sums.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace bce_ext::siglip
