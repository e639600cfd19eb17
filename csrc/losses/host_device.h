#pragma once
// BCE_EXT_HD marks the element formulas of csrc/losses/ (and the CUDA backend they run on there,
// csrc/cuda/cuda_math.cuh) as callable from CUDA device code as well: __host__ __device__ and
// inlined under nvcc, nothing in C++. The CPU files that include the formulas (each with its own
// target flags) so see plain static member functions of class templates, as before.
#ifdef __CUDACC__
#define BCE_EXT_HD __host__ __device__ __forceinline__
#else
#define BCE_EXT_HD
#endif
