// Chooses the inner loops of every loss and storage type for this CPU: the widest instruction set
// that the CPU and the OS support (AVX-512, then AVX2 + FMA, then the portable loops), one choice
// for every type. BCE_EXT_CPU_ISA=scalar|avx2|avx512 forces one; a forced set this machine
// cannot run falls back to the widest narrower one, never crashes. Tests re-select with
// select_cpu_isa (bce_ext._C._set_cpu_isa); "scalar" runs the portable loops, float64's reference.
//
// __builtin_cpu_supports reports AVX, AVX2, FMA and AVX-512 only when the OS also saves their
// registers: GCC's runtime (gcc/common/config/i386/cpuinfo.h) reads XCR0 with xgetbv when OSXSAVE
// is set and clears them otherwise (GCC >= 7.4 / 8, after GCC bug 85100), so a kernel that disabled
// AVX-512 state makes "avx512f" false here.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "loops.h"

namespace bce_ext::cpu {
namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // F16C for the half conversions: every AVX2 CPU has it, but it is asked for all the same.
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // The set loops_avx512.cpp is compiled for.
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

// The loops of one instruction set, null where this CPU cannot run them (or they are not compiled
// in).
const IsaLoops* loops_named(const char* name) {
  if (std::strcmp(name, "avx512") == 0) return cpu_has_avx512() ? avx512_loops() : nullptr;
  if (std::strcmp(name, "avx2") == 0) return cpu_has_avx2() ? avx2_loops() : nullptr;
  if (std::strcmp(name, "scalar") == 0) return &portable_loops();
  return nullptr;
}

constexpr const char* kOrder[] = {"avx512", "avx2", "scalar"};
constexpr int kPortable = 2;

// The named set, else the widest supported one narrower than it (no or an unknown name: the
// widest supported), as an index into kOrder.
int choose(const char* name) {
  int start = 0;
  for (int i = 0; name != nullptr && i < 3; ++i) {
    if (std::strcmp(name, kOrder[i]) == 0) start = i;
  }
  for (int i = start; i < 3; ++i) {
    if (loops_named(kOrder[i]) != nullptr) return i;
  }
  return kPortable;
}

constexpr int kUnchosen = -1;
std::atomic<int> g_isa{kUnchosen};

int chosen_isa() {
  int isa = g_isa.load(std::memory_order_acquire);
  if (isa == kUnchosen) {
    // Two threads may both get here; they make the same choice.
    const char* forced = std::getenv("BCE_EXT_CPU_ISA");
    isa = choose(forced && *forced ? forced : nullptr);
    g_isa.store(isa, std::memory_order_release);
  }
  return isa;
}

const IsaLoops& chosen() { return *loops_named(kOrder[chosen_isa()]); }

// The array of l for storage type S (the pointer argument only selects the overload).
const Loops<float>* array_of(const IsaLoops& l, const float*) { return l.f32; }
const Loops<double>* array_of(const IsaLoops& l, const double*) { return l.f64; }
const Loops<Float16Bits>* array_of(const IsaLoops& l, const Float16Bits*) { return l.f16; }
const Loops<BFloat16Bits>* array_of(const IsaLoops& l, const BFloat16Bits*) { return l.bf16; }

}  // namespace

template <typename S>
const Loops<S>& chosen_loops(LossKind loss) {
  return array_of(chosen(), static_cast<const S*>(nullptr))[static_cast<int>(loss)];
}
template const Loops<float>& chosen_loops(LossKind);
template const Loops<double>& chosen_loops(LossKind);
template const Loops<Float16Bits>& chosen_loops(LossKind);
template const Loops<BFloat16Bits>& chosen_loops(LossKind);

template <>
SiglipTileFn<float> chosen_siglip_tile<float>() {
  return chosen().siglip_f32;
}
template <>
SiglipTileFn<double> chosen_siglip_tile<double>() {
  return chosen().siglip_f64;
}

const char* float_isa() { return kOrder[chosen_isa()]; }

bool cpu_isa_supported(const char* name) { return loops_named(name) != nullptr; }

const char* select_cpu_isa(const char* name) {
  const int isa = choose(name);
  g_isa.store(isa, std::memory_order_release);
  return kOrder[isa];
}

}  // namespace bce_ext::cpu
