// The Python module that carries the library (bce_ext._C): loading it registers the ops
// (ops/schemas.cpp) and their kernels; these functions report the build and serve the tests.
#include <Python.h>
#include <torch/extension.h>

#include <map>
#include <string>
#include <vector>

#include "bce_strict.h"
#include "cpu/loops.h"
#include "cpu/loss_cpu.h"
#include "cpu/tuning.h"
#include "losses/registry.h"

#ifndef BCE_EXT_CUDA_ARCHS
#define BCE_EXT_CUDA_ARCHS ""
#endif

namespace {

// The named vector math function of an instruction set over a float32 or float64 tensor (tests).
at::Tensor math_eval(const std::string& isa, const std::string& name, const at::Tensor& in) {
  namespace cpu = bce_ext::cpu;
  const bool avx512 = isa == "avx512", avx2 = isa == "avx2";
  const cpu::MathEvalFn f32 = avx512 ? cpu::avx512_math_eval(name.c_str())
                              : avx2 ? cpu::avx2_math_eval(name.c_str())
                                     : nullptr;
  const cpu::MathEvalDoubleFn f64 = avx512 ? cpu::avx512_math_eval_double(name.c_str())
                                    : avx2 ? cpu::avx2_math_eval_double(name.c_str())
                                           : nullptr;
  TORCH_CHECK(f32 != nullptr && f64 != nullptr && cpu::cpu_isa_supported(isa.c_str()),
              "no vector math '", name, "' for ", isa, " on this CPU");
  TORCH_CHECK(
      (in.scalar_type() == at::kFloat || in.scalar_type() == at::kDouble) && in.device().is_cpu(),
      "a CPU float32 or float64 tensor");
  const at::Tensor x = in.contiguous();
  at::Tensor out = at::empty_like(x);
  if (x.scalar_type() == at::kFloat) {
    f32(x.const_data_ptr<float>(), out.mutable_data_ptr<float>(), x.numel());
  } else {
    f64(x.const_data_ptr<double>(), out.mutable_data_ptr<double>(), x.numel());
  }
  return out;
}

// One instruction set's conversion of a half-type or float tensor (tests): float16/bfloat16 to
// float32, or float32 to `to` (float16 or bfloat16).
at::Tensor convert(const std::string& isa, const at::Tensor& in, at::ScalarType to) {
  const bce_ext::cpu::Converters* c = isa == "avx512"   ? bce_ext::cpu::avx512_converters()
                                      : isa == "avx2"   ? bce_ext::cpu::avx2_converters()
                                      : isa == "scalar" ? &bce_ext::cpu::portable_converters()
                                                        : nullptr;
  TORCH_CHECK(c != nullptr && bce_ext::cpu::cpu_isa_supported(isa.c_str()),
              "no half conversions for ", isa, " on this CPU");
  const at::Tensor x = in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(to));
  const auto n = x.numel();
  const auto from = x.scalar_type();
  const auto* bits_in = reinterpret_cast<const uint16_t*>(x.const_data_ptr());
  auto* bits_out = reinterpret_cast<uint16_t*>(out.mutable_data_ptr());
  if (from == at::kHalf && to == at::kFloat) {
    c->half_to_float(bits_in, out.mutable_data_ptr<float>(), n);
  } else if (from == at::kBFloat16 && to == at::kFloat) {
    c->bf16_to_float(bits_in, out.mutable_data_ptr<float>(), n);
  } else if (from == at::kFloat && to == at::kHalf) {
    c->float_to_half(x.const_data_ptr<float>(), bits_out, n);
  } else if (from == at::kFloat && to == at::kBFloat16) {
    c->float_to_bf16(x.const_data_ptr<float>(), bits_out, n);
  } else {
    TORCH_CHECK(false, "no conversion from ", from, " to ", to);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "bce_ext native kernels (ops are under torch.ops.bce_ext)";
  m.def(
      "cpu_isa", [] { return std::string(bce_ext::cpu::float_isa()); },
      "Instruction set of the CPU kernels (every dtype) on this machine.");
  m.def(
      "_cpu_isa_supported",
      [](const std::string& isa) { return bce_ext::cpu::cpu_isa_supported(isa.c_str()); },
      "Whether the CPU loops of `isa` (scalar, avx2, avx512) can run here (tests).");
  m.def(
      "_set_cpu_isa",
      [](const std::string& isa) { return std::string(bce_ext::cpu::select_cpu_isa(isa.c_str())); },
      "Re-selects the CPU loops of every dtype (tests): `isa`, or the widest supported "
      "one below it ('scalar': the portable loops). Returns the one chosen. Not while a "
      "kernel runs.");
  m.def(
      "_cpu_thresholds",
      [] {
        namespace k = bce_ext::cpu::tuning;
        return std::map<std::string, int64_t>{{"chunk", k::kChunk},
                                              {"run_block", k::kRunBlock},
                                              {"min_run", k::kMinRun},
                                              {"min_parallel", k::kMinParallel},
                                              {"max_short_runs", k::kMaxShortRuns},
                                              {"min_repeat", k::kMinRepeat},
                                              {"vec_block", k::kVecBlock}};
      },
      "The size thresholds of the CPU kernels (csrc/cpu/tuning.h), for the tests.");
  m.def("_cpu_weight_plan", &bce_ext::cpu::weight_plan,
        "(inner, period, write_repeats, copies) of the CPU kernels' weight table for a forward "
        "call (tests).");
  m.def("_cpu_math", &math_eval,
        "An elementary function of the vector math of one instruction set over a float32 or "
        "float64 tensor (accuracy tests, benchmarks).");
  m.def("_cpu_convert", &convert,
        "One instruction set's vectorised half-type conversion of a tensor (tests).");
#ifdef BCE_EXT_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("cuda_archs") = std::string(BCE_EXT_CUDA_ARCHS);
  // The losses of csrc/losses/registry.h by their ops' names, in its order (bce_ext/_registry.py
  // must list the same: a test compares).
  std::vector<std::string> losses;
#define BCE_EXT_LOSS_NAME(Name) \
  losses.emplace_back(bce_ext::losses::Traits<bce_ext::losses::Name>::kOp);
  BCE_EXT_LOSSES(BCE_EXT_LOSS_NAME)
#undef BCE_EXT_LOSS_NAME
  m.attr("losses") = pybind11::tuple(pybind11::cast(losses));
  m.def("set_strict", &bce_ext::set_strict_mode, "Strict mode on or off (see bce_ext.set_strict).");
  m.def("is_strict", &bce_ext::strict_mode, "Whether strict mode is on.");
}
