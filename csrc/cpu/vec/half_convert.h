#pragma once
// The half types' conversions to and from float, over a backend V (its 16-bit vector H and the
// operations after `using H` in avx2_backend.h): one vector (Float16, BFloat16: what the loops use,
// in registers), and arrays of them (the Converters the tests check bitwise against c10). Results
// are bitwise those of c10::Half and c10::BFloat16 (round to nearest even; a NaN stays NaN).
// Included by loops_impl.h; no standard library header.

#include "../loops.h"

namespace bce_ext::cpu {
namespace {
namespace half_convert {

constexpr int32_t kBf16RoundingBias = 0x7fff;  // c10's round_to_nearest_even for bfloat16
constexpr int32_t kBf16QuietNaN = 0x7fc0;      // the NaN c10::BFloat16(float) makes

// Whole vectors of n elements through `full`, the tail through a buffer of one vector.
template <class V, class In, class Out, class Fn>
inline void in_vectors(const In* in, Out* out, int64_t n, Fn&& full) {
  constexpr int L = V::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) full(in + i, out + i);
  if (i < n) {
    In in_tail[L] = {};
    Out out_tail[L];
    for (int64_t k = i; k < n; ++k) in_tail[k - i] = in[k];
    full(in_tail, out_tail);
    for (int64_t k = i; k < n; ++k) out[k] = out_tail[k - i];
  }
}

// One vector of each half type to float lanes and back.
template <class V>
struct Float16 {
  static typename V::F to_f(typename V::H h) { return V::half_to_f(h); }
  static typename V::H from_f(typename V::F v) { return V::f_to_half(v); }
};

template <class V>
struct BFloat16 {
  static typename V::F to_f(typename V::H h) { return V::as_f(V::slli16(V::widen_u16(h))); }
  static typename V::H from_f(typename V::F v) {
    const typename V::I bits = V::as_i(v);
    // (bits + 0x7fff + lowest kept bit) >> 16, unsigned: round to nearest, ties to even.
    const typename V::I rounded = V::srli16(
        V::add_i(V::add_i(bits, V::set1i(kBf16RoundingBias)), V::and1_i(V::srli16(bits))));
    return V::narrow_u32(V::blend_i(V::is_nan(v), rounded, V::set1i(kBf16QuietNaN)));
  }
};

template <class V, class Conv>
void to_float(const uint16_t* in, float* out, int64_t n) {
  in_vectors<V>(in, out, n,
                [](const uint16_t* a, float* b) { V::store(b, Conv::to_f(V::load_h(a))); });
}

template <class V, class Conv>
void from_float(const float* in, uint16_t* out, int64_t n) {
  in_vectors<V>(in, out, n,
                [](const float* a, uint16_t* b) { V::store_h(b, Conv::from_f(V::load(a))); });
}

template <class V>
constexpr Converters make_converters() {
  return {&to_float<V, Float16<V>>, &from_float<V, Float16<V>>, &to_float<V, BFloat16<V>>,
          &from_float<V, BFloat16<V>>};
}

}  // namespace half_convert
}  // namespace
}  // namespace bce_ext::cpu
