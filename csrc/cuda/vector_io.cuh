#pragma once
// Vector I/O of the loss kernels (loss_cuda_driver.cuh): groups of 16 bytes' worth of elements
// (kVec: 4 float32, 8 float16/bfloat16, 2 float64), loaded and stored in the compute type with one
// 128-bit access per group where the operand is aligned, element by element otherwise.
#include <c10/util/BFloat16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace bce_ext::cuda {

// Width of the vector loads and stores: 128 bits, the widest single global access.
constexpr int kVectorBytes = 16;

template <typename scalar_t>
constexpr int kVec = kVectorBytes / static_cast<int>(sizeof(scalar_t));

template <typename scalar_t>
struct alignas(kVectorBytes) Vec {
  scalar_t v[kVec<scalar_t>];
};
static_assert(sizeof(uint4) == kVectorBytes);

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

}  // namespace bce_ext::cuda
