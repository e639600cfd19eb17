// Speed of the CPU inner loops alone (no torch, one thread): ns per element of forward_sum,
// forward_none and backward (grad_input only, a scalar gradient, the mean's divisor) of every loss
// and every instruction set this CPU runs, on a cache-resident run (compute rate) and on a large
// one (memory). The variants are timed in alternation, round after round, so that the load of a
// shared machine falls on all of them alike; the minimum (the undisturbed speed: on a shared 2-core
// machine another process often halves ours) and the median are reported.
//
//   g++ -O2 -std=c++20 -Icsrc benchmarks/loops_bench.cpp csrc/cpu/loops_portable.cpp \
//       csrc/cpu/loops_avx2.cpp csrc/cpu/loops_avx512.cpp csrc/cpu/loops_dispatch.cpp \
//       -o /tmp/loops_bench
//   /tmp/loops_bench [rounds]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../csrc/cpu/loops.h"

using namespace bce_ext;
using namespace bce_ext::cpu;

namespace {

volatile double sink;

struct Variant {
  std::string name;
  const Loops<float>* loops;
  LossKind loss;
};

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
  const struct {
    const char* name;
    LossKind kind;
  } losses[] = {{"bce", LossKind::kBce}, {"logits", LossKind::kBceWithLogits}};
  std::vector<Variant> variants;
  for (const auto& l : losses) {
    variants.push_back({std::string(l.name) + " scalar", &portable_float_loops(l.kind), l.kind});
    if (cpu_isa_supported("avx2")) {
      variants.push_back({std::string(l.name) + " avx2", avx2_float_loops(l.kind), l.kind});
    }
    if (cpu_isa_supported("avx512")) {
      variants.push_back({std::string(l.name) + " avx512", avx512_float_loops(l.kind), l.kind});
    }
  }
  const int64_t sizes[] = {4096, 1 << 24};
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const int64_t n_max = sizes[1];
  std::vector<float> probs(n_max), logits(n_max), t(n_max), out(n_max);
  for (int64_t i = 0; i < n_max; ++i) {
    probs[i] = unit(rng);
    logits[i] = normal(rng);
    t[i] = unit(rng);
  }
  const LossParams params;
  const float g = 1.0f;
  const char* kinds[] = {"forward_sum", "forward_none", "backward"};
  std::printf("%-16s %-13s %10s %12s %12s\n", "loops", "kind", "N", "min ns/el", "median ns/el");
  for (int64_t n : sizes) {
    // times[variant][kind][round]
    std::vector<std::vector<std::vector<double>>> times(variants.size(),
                                                        std::vector<std::vector<double>>(3));
    const int reps = n < 100000 ? 2000 : 3;
    for (int r = 0; r < rounds; ++r) {
      for (size_t v = 0; v < variants.size(); ++v) {
        const Loops<float>& L = *variants[v].loops;
        const float* x = variants[v].loss == LossKind::kBce ? probs.data() : logits.data();
        const Run<float> run{x, t.data(), {nullptr, 0}, {nullptr, 0}, n};
        for (int k = 0; k < 3; ++k) {
          bool bad = false;
          double kept = 0.0;
          const auto start = std::chrono::steady_clock::now();
          for (int i = 0; i < reps; ++i) {
            if (k == 0) sink = L.forward_sum(run, params, &bad, &kept);
            if (k == 1) L.forward_none(run, params, out.data(), &bad);
            if (k == 2)
              L.backward(run, params, {&g, 0}, static_cast<float>(n), out.data(), nullptr);
          }
          const auto end = std::chrono::steady_clock::now();
          times[v][k].push_back(std::chrono::duration<double, std::nano>(end - start).count() /
                                (double(reps) * double(n)));
        }
      }
    }
    for (size_t v = 0; v < variants.size(); ++v) {
      for (int k = 0; k < 3; ++k) {
        auto ts = times[v][k];
        std::sort(ts.begin(), ts.end());
        std::printf("%-16s %-13s %10lld %12.3f %12.3f\n", variants[v].name.c_str(), kinds[k],
                    static_cast<long long>(n), ts.front(), ts[ts.size() / 2]);
      }
    }
  }
  return 0;
}
