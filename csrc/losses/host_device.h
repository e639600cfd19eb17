#pragma once
// BCE_EXT_HD marks the element formulas of csrc/losses/ (and the CUDA backend they run on there,
// csrc/cuda/cuda_math.cuh) as callable from CUDA device code as well, and inlined wherever they
// are called: __host__ __device__ __forceinline__ under nvcc, always_inline in C++. The CPU loops
// must inline them into the loop that calls them (an out-of-line call spills the loop's vectors:
// GCC 12 left BCE's loss out of line in its bfloat16 'none' loop once more losses shared the
// translation unit, a quarter slower), so that is not left to the compiler's budget.
#ifdef __CUDACC__
#define BCE_EXT_HD __host__ __device__ __forceinline__
#else
#define BCE_EXT_HD inline __attribute__((always_inline))
#endif
