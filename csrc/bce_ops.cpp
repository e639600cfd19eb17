// The op schemas, written once, and the Python module that carries them (bce_ext._C).
// Kernels are registered per dispatch key in cpu/, cuda/ and autocast/; fake kernels and autograd
// in bce_ext/_ops.py.
#include <Python.h>
#include <torch/extension.h>
#include <torch/library.h>

#include <map>
#include <string>

#include "bce_op_handles.h"
#include "bce_strict.h"
#include "cpu/bce_cpu.h"
#include "cpu/bce_cpu_loops.h"
#include "cpu/bce_cpu_tuning.h"

TORCH_LIBRARY(bce_ext, m) {
  // ATen's own schema, so that aten::binary_cross_entropy is the test oracle.
  m.def("binary_cross_entropy(Tensor self, Tensor target, Tensor? weight=None, int reduction=1) "
        "-> Tensor");
  // Gradients for input and target in one pass; output_mask says which are wanted (an unwanted one
  // comes back as an empty tensor).
  m.def("binary_cross_entropy_backward(Tensor grad_output, Tensor self, Tensor target, "
        "Tensor? weight=None, int reduction=1, bool[2] output_mask=[True, False]) "
        "-> (Tensor, Tensor)");
}

namespace bce_ext {

const c10::TypedOperatorHandle<ForwardSignature>& forward_handle() {
  static const auto handle = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("bce_ext::binary_cross_entropy", "")
                                 .typed<ForwardSignature>();
  return handle;
}

const c10::TypedOperatorHandle<BackwardSignature>& backward_handle() {
  static const auto handle = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("bce_ext::binary_cross_entropy_backward", "")
                                 .typed<BackwardSignature>();
  return handle;
}

}  // namespace bce_ext

#ifndef BCE_EXT_CUDA_ARCHS
#define BCE_EXT_CUDA_ARCHS ""
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "bce_ext native kernels (ops are under torch.ops.bce_ext)";
  m.def("cpu_isa", [] { return std::string(bce_ext::cpu::float_loops().isa); },
        "Instruction set of the float32 CPU kernels on this machine.");
  m.def("_cpu_isa_supported", [](const std::string& isa) {
          return bce_ext::cpu::cpu_isa_supported(isa.c_str());
        }, "Whether the float32 CPU loops of `isa` (scalar, avx2, avx512) can run here (tests).");
  m.def("_cpu_thresholds", [] {
          namespace k = bce_ext::cpu::tuning;
          return std::map<std::string, int64_t>{
              {"chunk", k::kChunk},         {"convert_block", k::kConvertBlock},
              {"min_run", k::kMinRun},      {"max_short_runs", k::kMaxShortRuns},
              {"min_repeat", k::kMinRepeat}, {"scalar_sum_block", k::kScalarSumBlock},
              {"vec_block", k::kVecBlock}};
        }, "The size thresholds of the CPU kernels (csrc/cpu/bce_cpu_tuning.h), for the tests.");
  m.def("_cpu_weight_plan", &bce_ext::cpu::weight_plan,
        "(inner, period, write_repeats, copies) of the CPU kernels' weight table for a forward "
        "call (tests).");
  m.def("_set_cpu_isa", [](const std::string& isa) {
          return std::string(bce_ext::cpu::select_cpu_isa(isa.c_str()));
        }, "Re-selects the float32 CPU loops (tests): `isa`, or the widest supported one below it. "
           "Returns the one chosen. Not while a kernel runs.");
#ifdef BCE_EXT_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("cuda_archs") = std::string(BCE_EXT_CUDA_ARCHS);
  m.def("set_strict", &bce_ext::set_strict_mode, "Strict mode on or off (see bce_ext.set_strict).");
  m.def("is_strict", &bce_ext::strict_mode, "Whether strict mode is on.");
}
