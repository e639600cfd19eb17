#pragma once
// The portable backend of the vector loops: one lane of float or double, valid on any CPU, and its
// Math from libm. With it the loops are the reference for the vectorised backends, and the
// float64 kernels: same operations in the same order as PyTorch's CPU kernels (std::log, std::log1p
// and IEEE division), so float32 and float64 element values match PyTorch's to the last bit.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace bce_ext::cpu {
namespace {

template <typename Scalar>
struct Portable {
  using T = Scalar;
  using F = Scalar;
  using M = bool;
  // Bits of a value, for the range check (see RangeAcc in loss_loops.h).
  using I = std::conditional_t<std::is_same_v<Scalar, double>, uint64_t, uint32_t>;
  using DAcc = double;
  static constexpr int kLanes = 1;

  static F zero() { return F(0); }
  static F set1(T v) { return v; }
  static F load(const T* p) { return *p; }
  static F load_n(const T* p, M m) { return m ? *p : F(0); }
  static void store(T* p, F v) { *p = v; }
  static void store_n(T* p, F v, M m) {
    if (m) *p = v;
  }
  static M tail_mask(int n) { return n > 0; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  // Not fused: the portable loops round as PyTorch's scalar code does.
  static F fma(F a, F b, F c) { return a * b + c; }
  static F max(F a, F b) { return a > b ? a : b; }  // b where either is NaN, as maxps
  static F min(F a, F b) { return a < b ? a : b; }  // b where either is NaN, as minps
  static F abs(F a) { return std::fabs(a); }
  static F neg(F a) { return -a; }
  static M eq(F a, F b) { return a == b; }
  static M ge(F a, F b) { return a >= b; }
  static M gt(F a, F b) { return a > b; }
  static M mand(M a, M b) { return a && b; }
  static M mor(M a, M b) { return a || b; }
  static bool all(M m) { return m; }
  static bool any(M m) { return m; }
  static F blend(M m, F a, F b) { return m ? b : a; }
  static F zero_unless(M m, F v) { return m ? v : F(0); }
  static I as_i(F v) {
    I bits;
    std::memcpy(&bits, &v, sizeof(bits));
    return bits;
  }
  static I max_u32(I a, I b) { return a > b ? a : b; }
  static bool any_above_u(I a, I limit) { return a > limit; }
  static DAcc dzero() { return 0.0; }
  static void dadd(DAcc& acc, F v) { acc += static_cast<double>(v); }
  static void dstore(DAcc acc, double* out) { *out = acc; }
};

namespace vec_math {

template <class V>
struct Math;

template <typename Scalar>
struct Math<Portable<Scalar>> {
  using F = Scalar;
  static F log01(F x) { return std::log(x); }
  static F log1m(F x) { return std::log1p(-x); }
  struct LogPair {
    F log_x, log1m_x;
  };
  static LogPair log_pair(F x, F lo) {
    return {Portable<Scalar>::max(lo, log01(x)), Portable<Scalar>::max(lo, log1m(x))};
  }
  static F log_select(F x, bool use_x) { return use_x ? std::log(x) : std::log1p(-x); }
  static F log_any(F q) { return std::log(q); }
  static F exp(F y) { return std::exp(y); }
  static F log1p01(F e) { return std::log1p(e); }
  // As PyTorch's CPU sigmoid (1 / (1 + exp(-x))), but without its overflow to 0 below -88.7.
  static F sigmoid(F x) {
    const F e = std::exp(-std::fabs(x));
    return (x >= F(0) ? F(1) : e) / (F(1) + e);
  }
};

}  // namespace vec_math
}  // namespace
}  // namespace bce_ext::cpu
