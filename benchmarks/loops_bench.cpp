// Speed of the CPU inner loops alone (no torch, one thread): ns per element of forward_sum,
// forward_none and backward (grad_input only, scalar gradient, mean divisor) for the scalar loops
// and the AVX2 loops with and without the hard-label branch, on a cache-resident run (compute rate)
// and on a large one (memory). The variants are timed in alternation, round after round, so that
// the load of a shared machine falls on all of them alike; the minimum (the undisturbed speed: on
// the shared 2-core machine another process often halves ours) and the median are reported.
//
//   g++ -O2 -std=c++20 benchmarks/loops_bench.cpp csrc/cpu/bce_cpu_avx512.cpp
//       csrc/cpu/bce_cpu_dispatch.cpp csrc/cpu/bce_cpu_scalar.cpp -o /tmp/loops_bench
//   /tmp/loops_bench [rounds]
// (This file includes bce_cpu_avx2.cpp itself, to reach both instances of its template.)
#include "../csrc/cpu/bce_cpu_avx2.cpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace bce_ext::cpu;

namespace {

volatile double sink;

struct Variant {
  std::string name;
  Loops<float> loops;
};

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
  std::vector<Variant> impls = {{"scalar", scalar_float_loops()}};
  if (cpu_isa_supported("avx2")) {
    impls.push_back({"avx2", Loops<float>{"avx2", &vec::forward_sum<Avx2, true>,
                                          &vec::forward_none<Avx2, true>, &vec::backward<Avx2>}});
    impls.push_back({"avx2-nohard", Loops<float>{"avx2", &vec::forward_sum<Avx2, false>,
                                                 &vec::forward_none<Avx2, false>, &vec::backward<Avx2>}});
  }
  if (cpu_isa_supported("avx512")) impls.push_back({"avx512", *avx512_float_loops()});
  // (the avx2 entries: the shipped table, and one without the per-block hard-label decision)
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  const char* cols[] = {"sum soft", "sum hard", "none soft", "none hard", "bwd gi"};
  for (int64_t n : {int64_t(16384), int64_t(4'000'000)}) {
    std::vector<float> x(n), ts(n), th(n), out(n), gi(n);
    for (int64_t i = 0; i < n; ++i) {
      x[i] = uni(gen);
      ts[i] = uni(gen);
      th[i] = uni(gen) < 0.5f ? 0.0f : 1.0f;
    }
    const int reps = n < 100000 ? 200 : 2;  // calls per timing
    // times[impl][col] over rounds
    std::vector<std::vector<std::vector<double>>> times(impls.size(), std::vector<std::vector<double>>(5));
    for (int r = 0; r < rounds; ++r) {
      for (size_t k = 0; k < impls.size(); ++k) {
        const Loops<float>& L = impls[k].loops;
        if (impls[k].name == "scalar" && r % 3 != 0) continue;  // scalar is slow: every third round
        bool bad = false;
        const Operand<float> now{nullptr, 0};
        const float g = 1.0f;
        std::function<void()> fns[5] = {
            [&] { sink = L.forward_sum(x.data(), ts.data(), now, n, &bad); },
            [&] { sink = L.forward_sum(x.data(), th.data(), now, n, &bad); },
            [&] { L.forward_none(x.data(), ts.data(), now, out.data(), n, &bad); },
            [&] { L.forward_none(x.data(), th.data(), now, out.data(), n, &bad); },
            [&] { L.backward(Operand<float>{&g, 0}, x.data(), ts.data(), now, float(n), gi.data(), nullptr, n); }};
        for (int c = 0; c < 5; ++c) {
          fns[c]();
          const auto a = std::chrono::steady_clock::now();
          for (int i = 0; i < reps; ++i) fns[c]();
          const auto b = std::chrono::steady_clock::now();
          times[k][c].push_back(std::chrono::duration<double, std::nano>(b - a).count() / double(n * reps));
        }
      }
    }
    std::printf("n = %lld (%s), one thread, ns per element: min (median) of %d rounds\n",
                (long long)n, n < 100000 ? "in cache" : "from memory", rounds);
    std::printf("  %-12s", "loops");
    for (const char* c : cols) std::printf(" %15s", c);
    std::printf("\n");
    for (size_t k = 0; k < impls.size(); ++k) {
      std::printf("  %-12s", impls[k].name.c_str());
      for (int c = 0; c < 5; ++c) {
        auto v = times[k][c];
        std::sort(v.begin(), v.end());
        if (v.empty()) v.push_back(0.0);
        std::printf("  %5.3f (%5.3f)", v[0], v[v.size() / 2]);
      }
      std::printf("\n");
    }
  }
  return 0;
}
