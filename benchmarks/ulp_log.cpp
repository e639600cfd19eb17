// Accuracy of the vectorised logs of the CPU loops (csrc/cpu/vec/vec_math.h) against libm in
// double.
//
// Build and run from the repository root (no torch needed):
//   g++ -O2 -std=c++20 -pthread benchmarks/ulp_log.cpp csrc/cpu/loops_avx2.cpp \
//       csrc/cpu/loops_avx512.cpp csrc/cpu/loops_dispatch.cpp csrc/cpu/loops_portable.cpp \
//       -o /tmp/ulp_log && /tmp/ulp_log [avx2|avx512] [random|all|edges]...
// random: 10^7 uniform floats in [0, 1) (as torch.rand) and 10^7 uniform bit patterns in [0, 1];
// all: every float in [+0, 1] (about 1.07e9); edges: listed values, printed one by one.
// The error in ulps is benchmarks/ulp_stat.h's (shared with tests/cuda_math_host.cpp). Where the
// reference is -inf (log 0, log1p(-1)) the forward's logs only need r <= -100 (they are clamped
// there); zeros must have the reference's sign.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../csrc/cpu/loops.h"
#include "ulp_stat.h"

using bce_ext::cpu::MathEvalFn;
using bce_ext::ulp::Stat;

// The three logs of one instruction set's vector math (loops.h: avx2_math_eval, ...).
struct LogEvalFn {
  MathEvalFn log01 = nullptr, log1m = nullptr, log_any = nullptr;
  explicit operator bool() const { return log01 && log1m && log_any; }
  void operator()(const float* x, float* a, float* b, float* c, int64_t n) const {
    log01(x, a, n);
    log1m(x, b, n);
    log_any(x, c, n);
  }
};

namespace {

struct Stats {
  Stat log_x, log1m_x, log_any;
  void merge(const Stats& o) {
    log_x.merge(o.log_x);
    log1m_x.merge(o.log1m_x);
    log_any.merge(o.log_any);
  }
};

void eval_batch(LogEvalFn fn, const float* x, int64_t n, Stats& s) {
  std::vector<float> a(n), b(n), c(n);
  fn(x, a.data(), b.data(), c.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double xd = x[i];
    const double l = std::log(xd);
    s.log_x.add(x[i], a[i], l, true);
    s.log1m_x.add(x[i], b[i], std::log1p(-xd), true);
    s.log_any.add(x[i], c[i], l, false);
  }
}

void print(const char* what, const Stats& s) {
  auto one = [&](const char* name, const Stat& t) {
    uint32_t bits;
    std::memcpy(&bits, &t.worst_x, 4);
    std::printf(
        "  %-22s max %.3f ulp (at x=%.9g, bits 0x%08x), mean %.4f ulp, >1 ulp: %lld of "
        "%lld, clamp failures %lld, special failures %lld\n",
        name, t.max_ulp, double(t.worst_x), bits, t.count ? t.sum_ulp / double(t.count) : 0.0,
        (long long)t.over_1, (long long)t.count, (long long)t.clamp_fail,
        (long long)t.special_fail);
  };
  std::printf("%s\n", what);
  one("log(x)", s.log_x);
  one("log1p(-x)", s.log1m_x);
  one("log(x) [backward]", s.log_any);
}

void run_random(LogEvalFn fn) {
  const int64_t n = 10'000'000;
  std::mt19937_64 gen(12345);
  std::vector<float> x(n);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  for (auto& v : x) v = uni(gen);
  Stats s;
  eval_batch(fn, x.data(), n, s);
  print("random: 1e7 uniform floats in [0, 1)", s);
  std::uniform_int_distribution<uint32_t> bits(0, 0x3f800000u);
  for (auto& v : x) {
    const uint32_t b = bits(gen);
    std::memcpy(&v, &b, 4);
  }
  Stats s2;
  eval_batch(fn, x.data(), n, s2);
  print("random: 1e7 uniform bit patterns in [0, 1]", s2);
  // The backward's log sees x / (1 - x) in [0, 2^24]: uniform bit patterns of [1, 2^24] too.
  for (auto& v : x) {
    const uint32_t b = std::uniform_int_distribution<uint32_t>(0x3f800000u, 0x4b800000u)(gen);
    std::memcpy(&v, &b, 4);
  }
  Stats s3;
  eval_batch(fn, x.data(), n, s3);
  std::printf("random: 1e7 uniform bit patterns in [1, 2^24] (only the backward's log matters)\n");
  std::printf("  log(x) [backward]      max %.3f ulp (at x=%.9g), >1 ulp: %lld of %lld\n",
              s3.log_any.max_ulp, double(s3.log_any.worst_x), (long long)s3.log_any.over_1,
              (long long)s3.log_any.count);
}

void run_all(LogEvalFn fn) {
  const uint32_t last = 0x3f800000u;  // 1.0f
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Stats> per(threads);
  std::vector<std::thread> pool;
  for (int k = 0; k < threads; ++k) {
    pool.emplace_back([&, k] {
      const int64_t batch = 1 << 16;
      std::vector<float> x(batch);
      for (int64_t start = int64_t(k) * batch; start <= last; start += int64_t(threads) * batch) {
        const int64_t end = std::min<int64_t>(start + batch, int64_t(last) + 1);
        for (int64_t b = start; b < end; ++b) {
          const uint32_t u = uint32_t(b);
          std::memcpy(&x[b - start], &u, 4);
        }
        eval_batch(fn, x.data(), end - start, per[k]);
      }
    });
  }
  for (auto& t : pool) t.join();
  Stats s;
  for (auto& p : per) s.merge(p);
  const float mz = -0.0f;
  eval_batch(fn, &mz, 1, s);
  print("all: every float in [-0, 1]", s);
}

void run_edges(LogEvalFn fn) {
  const float edges[] = {
      0.0f,        -0.0f,  1e-45f,      1e-40f,        1.1754942e-38f, 1.17549435e-38f,
      1e-30f,      1e-10f, 1e-8f,       5.9604645e-8f, 1e-7f,          1.1920929e-7f,
      1e-6f,       1e-5f,  1e-4f,       1e-3f,         0.1f,           0.29289320f,
      0.29289323f, 0.3f,   0.49999997f, 0.5f,          0.50000006f,    0.70710677f,
      0.7071068f,  0.9f,   0.999f,      0.9999f,       0.99999f,       0.9999999f,
      0.99999994f, 1.0f};
  std::printf("edges: x, log(x) ours / libm, log1p(-x) ours / libm, backward log(x) ours\n");
  for (float x : edges) {
    float a, b, c;
    fn(&x, &a, &b, &c, 1);
    std::printf("  x=%-15.9g log %-16.9g %-16.9g log1p(-x) %-16.9g %-16.9g any %-16.9g\n",
                double(x), double(a), std::log(double(x)), double(b), std::log1p(-double(x)),
                double(c));
  }
  const float specials[] = {INFINITY, NAN, -1.0f, 2.0f, 16777216.0f, 3e38f};
  std::printf("backward log of specials (as std::log): ");
  for (float x : specials) {
    float a, b, c;
    fn(&x, &a, &b, &c, 1);
    std::printf("log(%g)=%g [%g]  ", double(x), double(c), double(std::log(x)));
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string isa = argc > 1 ? argv[1] : "avx2";
  LogEvalFn fn;
  if (bce_ext::cpu::cpu_isa_supported(isa.c_str()) && (isa == "avx512" || isa == "avx2")) {
    auto get = isa == "avx512" ? bce_ext::cpu::avx512_math_eval : bce_ext::cpu::avx2_math_eval;
    fn = {get("log01"), get("log1m"), get("log_any")};
  }
  if (!fn) {
    std::printf("%s is not supported on this machine\n", isa.c_str());
    return 0;
  }
  std::printf("ISA %s\n", isa.c_str());
  for (int i = 2; i < argc; ++i) {
    const std::string mode = argv[i];
    if (mode == "random") run_random(fn);
    if (mode == "all") run_all(fn);
    if (mode == "edges") run_edges(fn);
  }
  return 0;
}
