// The CUDA kernels' element math compiled as host code and checked on the CPU: the loss formulas
// (csrc/losses/) over the CUDA backend and its Math (csrc/cuda/cuda_math.cuh), the same functions
// operation for operation (explicit single roundings and FMAs, no contraction: build with
// -ffp-contract=off), so that what holds here holds on the GPU. Where the device calls CUDA's
// library (exp, log1p, the logit's log, float64 logs) the host calls the C++ library's: those
// checks are of the formulas, not of CUDA's functions.
// tests/test_cuda_math.py builds and runs it; by hand, from the repository root:
//   g++ -O2 -std=c++17 -ffp-contract=off -pthread tests/cuda_math_host.cpp -o /tmp/cuda_math_host
//   /tmp/cuda_math_host [all|sample] [every]
// Checks, each printed as "name: PASS|FAIL details":
//   log(x), log1p(-x)  the float logs as the loss computes them (before the -100 clamp), against
//               libm in double, over every float in [+0, 1] ('all') or every `every`-th one plus
//               edge values ('sample'): at most kMaxUlp ulp, and zeros with the right sign.
//   log1p(e)    the float log1p01 of the logits losses' tail, over the same floats: at most
//               kMaxUlpLog1p ulp.
//   hard        the one-log loss (targets 0 or 1) bitwise equal to the two-log loss, same inputs.
//   soft        the loss against PyTorch's formula on the same logs (bitwise).
//   special     the range check (false for bad x or t, so the kernels give NaN), boundary values
//               and signs of zeros, float64's hard-label identity.
//   grads       grad_input and grad_target against their formulas.
//   logits      the logits loss: PyTorch's formula in double, the limits at +-inf logits, and
//               its gradients.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "../benchmarks/ulp_stat.h"
#include "../csrc/cuda/cuda_math.cuh"
#include "../csrc/losses/bce.h"
#include "../csrc/losses/bce_with_logits.h"

namespace {

using bce_ext::cuda::Formulas;
using B = Formulas<bce_ext::losses::Bce, float>;
using B64 = Formulas<bce_ext::losses::Bce, double>;
using L = Formulas<bce_ext::losses::BceWithLogits, float>;
using MathF = bce_ext::cuda::Math<bce_ext::cuda::Lanes<float>>;

// Accuracy bound of the logs: within about 1 ulp of the correctly rounded value.
constexpr double kMaxUlp = 1.5;
// log1p01's: within 1 ulp, as CUDA's log1pf which it replaces (0.92 measured over every float).
constexpr double kMaxUlpLog1p = 1.0;

float from_bits(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

float soft(float x, float t) { return B::loss<false>(x, t, 1.0f); }

// The two logs of x as log_pair computes them, before the clamp.
void logs_of(float x, float& log_x, float& log1m_x) {
  const auto p = MathF::reduce_pair(x);
  const float la = MathF::log_reduced(p.ra);
  const float lb = MathF::log_reduced(p.rb);
  log_x = p.small ? la : lb;
  log1m_x = p.small ? lb : la;
}

// A log's accuracy over many x (benchmarks/ulp_stat.h), with this test's bound.
struct LogStat : bce_ext::ulp::Stat {
  double bound = kMaxUlp;
  void add(float x, float r, double d) { Stat::add(x, r, d, /*clamped=*/true); }
  bool ok() const { return max_ulp <= bound && special_fail == 0 && clamp_fail == 0; }
};

struct Failures {
  int64_t n = 0;
  std::string first;
  void add(const std::string& what) {
    if (n++ == 0) first = what;
  }
  void merge(const Failures& o) {
    n += o.n;
    if (first.empty()) first = o.first;
  }
};

std::string describe(const char* what, float x, float t, float a, float b) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s x=%.9g (0x%08x) t=%.9g: %.9g (0x%08x) vs %.9g (0x%08x)", what,
                x, bits_of(x), t, a, bits_of(a), b, bits_of(b));
  return buf;
}

// Every check on one x: the logs, and the loss for a few targets.
void check_x(float x, LogStat& lx, LogStat& l1, LogStat& lp, Failures& hard, Failures& formula) {
  float log_x, log1m_x;
  logs_of(x, log_x, log1m_x);
  lx.add(x, log_x, std::log(double(x)));
  l1.add(x, log1m_x, std::log1p(-double(x)));
  // (Its argument is exp(-|x|), never -0; at +0 it gives +0.)
  if (!std::signbit(x)) lp.add(x, MathF::log1p01(x), std::log1p(double(x)));
  for (float t : {0.0f, -0.0f, 1.0f}) {
    const float h = B::loss_hard(x, t), s = soft(x, t);
    if (bits_of(h) != bits_of(s)) hard.add(describe("hard != soft", x, t, h, s));
  }
  // The soft loss is PyTorch's formula on these logs, clamped at -100, element for element.
  const float lx_c = std::max(log_x, -100.0f), l1_c = std::max(log1m_x, -100.0f);
  for (float t : {0.0f, 0.25f, 0.5f, 0.875f, 1.0f, 1e-30f}) {
    const float expect = (t - 1.0f) * l1_c - t * lx_c;
    const float got = soft(x, t);
    if (bits_of(got) != bits_of(expect)) {
      formula.add(describe("soft != formula", x, t, got, expect));
    }
  }
}

struct Result {
  LogStat lx, l1, lp;
  Failures hard, formula;
  Result() { lp.bound = kMaxUlpLog1p; }
  void merge(const Result& o) {
    lx.merge(o.lx);
    l1.merge(o.l1);
    lp.merge(o.lp);
    hard.merge(o.hard);
    formula.merge(o.formula);
  }
};

// Every `every`-th float of [+0, 1] (by bit pattern), on all cores, plus -0 and edge values.
Result sweep(uint32_t every) {
  const uint64_t last = 0x3f800000u;  // 1.0f
  const uint64_t parts = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::future<Result>> futures;
  for (uint64_t part = 0; part < parts; ++part) {
    futures.push_back(std::async(std::launch::async, [=] {
      Result r;
      for (uint64_t b = part * every; b <= last; b += parts * every) {
        check_x(from_bits(uint32_t(b)), r.lx, r.l1, r.lp, r.hard, r.formula);
      }
      return r;
    }));
  }
  Result all;
  for (auto& f : futures) all.merge(f.get());
  const float edges[] = {
      -0.0f,       0.0f,        1e-45f,        1e-40f, 1.1754942e-38f, 1.17549435e-38f,
      1e-30f,      1e-10f,      5.9604645e-8f, 1e-7f,  1e-3f,          0.1f,
      0.29289320f, 0.29289323f, 0.2928933f,    0.3f,   0.49999997f,    0.5f,
      0.50000006f, 0.70710677f, 0.7071068f,    0.9f,   0.999f,         0.9999999f,
      0.99999994f, 1.0f};
  for (float x : edges) check_x(x, all.lx, all.l1, all.lp, all.hard, all.formula);
  return all;
}

bool report_logs(const char* name, const LogStat& s) {
  std::printf(
      "%s: %s max %.3f ulp at x=%.9g, >1 ulp %lld of %lld, wrong infinities or zeros "
      "%lld, unclamped %lld\n",
      name, s.ok() ? "PASS" : "FAIL", s.max_ulp, double(s.worst_x), (long long)s.over_1,
      (long long)s.count, (long long)s.special_fail, (long long)s.clamp_fail);
  return s.ok();
}

bool report(const char* name, const Failures& f) {
  std::printf("%s: %s %lld failures%s%s\n", name, f.n ? "FAIL" : "PASS", (long long)f.n,
              f.n ? "; first: " : "", f.first.c_str());
  return f.n == 0;
}

// The range check (the kernels' NaN for bad x or t, and strict mode's message); signs of zeros
// in the boundary cases (PyTorch: x = t = 1 gives -0, x = t = 0 gives +0).
bool check_special() {
  Failures f;
  for (float v : {-0.5f, -1e-45f, 1.0000001f, 2.0f, INFINITY, -INFINITY, NAN}) {
    if (B::in_range(v)) f.add(describe("in_range(bad)", v, 0, 1, 0));
  }
  for (float v : {0.0f, -0.0f, 1e-45f, 0.5f, 1.0f}) {
    if (!B::in_range(v)) f.add(describe("!in_range(good)", v, 0, 0, 1));
  }
  auto expect = [&](float x, float t, float want) {
    const float got = soft(x, t);
    if (bits_of(got) != bits_of(want)) f.add(describe("boundary", x, t, got, want));
  };
  expect(1.0f, 1.0f, -0.0f);
  expect(0.0f, 0.0f, 0.0f);
  expect(0.0f, 1.0f, 100.0f);
  expect(1.0f, 0.0f, 100.0f);
  expect(0.0f, 0.5f, 50.0f);
  expect(1.0f, 0.5f, 50.0f);
  expect(1e-45f, 1.0f, 100.0f);
  // float64: CUDA's (here the C library's) log and log1p, with the same hard-label identity.
  for (double x : {0.0, -0.0, 1e-300, 0.25, 0.5, 0.75, 1.0 - 1e-16, 1.0}) {
    for (double t : {0.0, -0.0, 1.0}) {
      const double h = B64::loss_hard(x, t), s = B64::loss<false>(x, t, 1.0);
      if (std::memcmp(&h, &s, sizeof h) != 0) f.add("float64 hard != soft");
    }
  }
  return report("special", f);
}

// grad_input and grad_target against their formulas (PyTorch's operations in float).
bool check_grads() {
  Failures f;
  for (float x : {0.0f, 1e-7f, 0.25f, 0.5f, 0.75f, 0.9999999f, 1.0f}) {
    for (float t : {0.0f, 0.3f, 1.0f}) {
      const float g = 0.5f;
      const float denom = std::max((1.0f - x) * x, 1e-12f);
      const float want = g * (x - t) / denom;
      const float got = B::grad_input<false>(g, x, t, 1.0f);
      if (bits_of(got) != bits_of(want)) f.add(describe("grad_input", x, t, got, want));
    }
    const float logit = x == 1.0f ? INFINITY : std::log(x / (1.0f - x));
    const float want = -logit * 0.5f;
    const float got = B::grad_target<false>(0.5f, x, 0.0f, 1.0f);
    if (bits_of(got) != bits_of(want)) f.add(describe("grad_target", x, 0, got, want));
  }
  return report("grads", f);
}

// PyTorch's logits loss in double (its operation order), with pw or without (pw < 0).
double logits_reference(double x, double t, double pw) {
  const double log_sig = std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x)));
  const double factor = pw < 0 ? 1.0 : (pw - 1.0) * t + 1.0;
  return (1.0 - t) * x - factor * log_sig;
}

// The logits loss and its gradients: close to the double formulas for finite logits, the limits at
// +-inf (0 where the limit is 0, never NaN), NaN for a NaN logit.
bool check_logits() {
  Failures f;
  const float xs[] = {-100.0f, -30.0f, -8.0f, -1.0f, -1e-3f, -0.0f,
                      0.0f,    1e-3f,  1.0f,  8.0f,  30.0f,  100.0f};
  for (float x : xs) {
    for (float t : {0.0f, 0.25f, 0.5f, 1.0f}) {
      for (float pw : {-1.0f, 0.0f, 0.5f, 3.0f}) {
        const float got = pw < 0 ? L::loss<false>(x, t, 1.0f) : L::loss<true>(x, t, pw);
        const double want = logits_reference(x, t, pw);
        if (!(std::fabs(got - want) <= 1e-6 * std::fabs(want) + 1e-6)) {
          f.add(describe("loss", x, t, got, float(want)));
        }
        const double s = 1.0 / (1.0 + std::exp(-double(x)));
        const double p = pw < 0 ? 1.0 : pw;
        const double gi_want = ((p * t + 1.0 - t) * s - p * t) * 0.5;
        const float gi =
            pw < 0 ? L::grad_input<false>(0.5f, x, t, 1.0f) : L::grad_input<true>(0.5f, x, t, pw);
        if (!(std::fabs(gi - gi_want) <= 1e-6 * std::fabs(gi_want) + 1e-7)) {
          f.add(describe("grad_input", x, t, gi, float(gi_want)));
        }
      }
    }
  }
  // The limits at infinite logits: loss(+inf, t) = (1 - t) inf (0 at t = 1); loss(-inf, t) =
  // pw t inf (0 where pw t = 0); the gradients are finite.
  for (float t : {0.0f, 0.5f, 1.0f}) {
    for (float pw : {-1.0f, 0.0f, 2.0f}) {
      const float p = pw < 0 ? 1.0f : pw;
      const float plus =
          pw < 0 ? L::loss<false>(INFINITY, t, 1.0f) : L::loss<true>(INFINITY, t, pw);
      const float minus =
          pw < 0 ? L::loss<false>(-INFINITY, t, 1.0f) : L::loss<true>(-INFINITY, t, pw);
      const float want_plus = t == 1.0f ? 0.0f : INFINITY;
      const float want_minus = p * t == 0.0f ? 0.0f : INFINITY;
      if (plus != want_plus) f.add(describe("loss(+inf)", INFINITY, t, plus, want_plus));
      if (minus != want_minus) f.add(describe("loss(-inf)", -INFINITY, t, minus, want_minus));
      for (float x : {INFINITY, -INFINITY}) {
        const float gi =
            pw < 0 ? L::grad_input<false>(1.0f, x, t, 1.0f) : L::grad_input<true>(1.0f, x, t, pw);
        if (!std::isfinite(gi)) f.add(describe("grad_input(inf)", x, t, gi, 0));
      }
    }
  }
  if (!std::isnan(L::loss<false>(NAN, 0.5f, 1.0f))) f.add("loss(NaN) is not NaN");
  // Without pw the target gradient is -x * g; with it, (log_sigmoid(-x) - pw log_sigmoid(x)) g.
  for (float x : {-8.0f, -1.0f, 0.0f, 2.0f}) {
    if (L::grad_target<false>(0.5f, x, 0.0f, 1.0f) != -x * 0.5f) f.add(describe("gt", x, 0, 0, 0));
    const double ls = std::min(double(x), 0.0) - std::log1p(std::exp(-std::fabs(double(x))));
    const double lsn = std::min(-double(x), 0.0) - std::log1p(std::exp(-std::fabs(double(x))));
    const double want = (lsn - 3.0 * ls) * 0.5;
    const float got = L::grad_target<true>(0.5f, x, 0.0f, 3.0f);
    if (!(std::fabs(got - want) <= 1e-6 * std::fabs(want) + 1e-7)) {
      f.add(describe("gt(pw)", x, 0, got, float(want)));
    }
  }
  return report("logits", f);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "sample";
  const uint32_t every = mode == "all" ? 1 : (argc > 2 ? uint32_t(std::stoul(argv[2])) : 97);
  std::printf("sweep: every %u-th float of [0, 1]\n", every);
  const Result r = sweep(every);
  bool ok = report_logs("log(x)", r.lx);
  ok = report_logs("log1p(-x)", r.l1) && ok;
  ok = report_logs("log1p(e)", r.lp) && ok;
  ok = report("hard", r.hard) && ok;
  ok = report("soft", r.formula) && ok;
  ok = check_special() && ok;
  ok = check_grads() && ok;
  ok = check_logits() && ok;
  std::printf("%s\n", ok ? "ALL PASS" : "SOME FAILED");
  return ok ? 0 : 1;
}
