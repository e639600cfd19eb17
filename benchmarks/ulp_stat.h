#pragma once
// The error of a float log against a double reference, in ulps, accumulated over many inputs:
// shared by benchmarks/ulp_log.cpp (the CPU kernels' logs) and tests/cuda_math_host.cpp (the CUDA
// kernels' logs). The error of a result r against the double reference d is |r - d| in units of the
// float ulp at d (2^(e - 23) for 2^e <= |d| < 2^(e + 1), at least 2^-149).
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace bce_ext::ulp {

inline double ulp_of(double d) {
  if (d == 0.0 || !std::isfinite(d)) return std::ldexp(1.0, -149);
  int e;
  std::frexp(d, &e);  // |d| = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, std::max(e - 24, -149));
}

struct Stat {
  double max_ulp = 0.0;
  float worst_x = 0.0f;
  double sum_ulp = 0.0;
  int64_t count = 0;
  int64_t over_1 = 0;        // results more than 1 ulp off
  int64_t clamp_fail = 0;    // reference below -100 but result above -100
  int64_t special_fail = 0;  // wrong infinity, NaN or sign of a zero

  // clamped: a reference of -inf only needs r <= -100 (the forward clamps; the backward does not).
  void add(float x, float r, double d, bool clamped) {
    if (std::isnan(d) || std::isinf(d)) {
      bool ok = std::isnan(d) ? std::isnan(r) : (std::isinf(r) && (r > 0) == (d > 0));
      if (clamped && d < 0 && std::isinf(d)) ok = r <= -100.0f;
      if (!ok) ++special_fail;
      return;
    }
    if (d < -100.0 && r > -100.0f) ++clamp_fail;
    if (d == 0.0) {
      if (r != 0.0f || std::signbit(r) != std::signbit(d)) ++special_fail;
      return;
    }
    const double u = std::fabs(double(r) - d) / ulp_of(d);
    if (!(u <= max_ulp)) {
      max_ulp = u;
      worst_x = x;
    }
    sum_ulp += u;
    over_1 += u > 1.0;
    ++count;
  }
  void merge(const Stat& o) {
    if (o.max_ulp > max_ulp) {
      max_ulp = o.max_ulp;
      worst_x = o.worst_x;
    }
    sum_ulp += o.sum_ulp;
    count += o.count;
    over_1 += o.over_1;
    clamp_fail += o.clamp_fail;
    special_fail += o.special_fail;
  }
};

}  // namespace bce_ext::ulp
