#pragma once
// The half types' conversions to and from float, over a vector backend V (its 16-bit vector H and
// the operations after `using H` in avx2_backend.h): whole vectors, then the tail through a small
// buffer. Results are bitwise those of c10::Half and c10::BFloat16 (round to nearest even; a NaN
// stays NaN). Included by isa_entry.h; no standard library header.

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

template <class V>
void half_to_float(const uint16_t* in, float* out, int64_t n) {
  in_vectors<V>(in, out, n, [](const uint16_t* a, float* b) {
    V::store(b, V::half_to_f(V::load_h(a)));
  });
}

template <class V>
void float_to_half(const float* in, uint16_t* out, int64_t n) {
  in_vectors<V>(in, out, n, [](const float* a, uint16_t* b) {
    V::store_h(b, V::f_to_half(V::load(a)));
  });
}

template <class V>
void bf16_to_float(const uint16_t* in, float* out, int64_t n) {
  in_vectors<V>(in, out, n, [](const uint16_t* a, float* b) {
    V::store(b, V::as_f(V::slli16(V::widen_u16(V::load_h(a)))));
  });
}

template <class V>
void float_to_bf16(const float* in, uint16_t* out, int64_t n) {
  in_vectors<V>(in, out, n, [](const float* a, uint16_t* b) {
    const typename V::F v = V::load(a);
    const typename V::I bits = V::as_i(v);
    // (bits + 0x7fff + lowest kept bit) >> 16, unsigned: round to nearest, ties to even.
    const typename V::I rounded = V::srli16(
        V::add_i(V::add_i(bits, V::set1i(kBf16RoundingBias)), V::and1_i(V::srli16(bits))));
    V::store_h(b, V::narrow_u32(V::blend_i(V::is_nan(v), rounded, V::set1i(kBf16QuietNaN))));
  });
}

template <class V>
constexpr Converters make_converters() {
  return {&half_to_float<V>, &float_to_half<V>, &bf16_to_float<V>, &float_to_bf16<V>};
}

}  // namespace half_convert
}  // namespace
}  // namespace bce_ext::cpu
