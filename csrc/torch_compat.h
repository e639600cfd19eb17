#pragma once
// Every behaviour of bce_ext that follows the version of the installed torch, in one place. The
// extension is compiled against the torch it runs with (setup.py), so the version is known when it
// is built; the tests compare each case with the installed torch, on the oldest and the newest
// torch that CI runs (README: supported versions).
#include <torch/version.h>

#define BCE_EXT_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||          \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace bce_ext::torch_compat {

// F.binary_cross_entropy broadcasts its weight against the target with torch.broadcast_shapes
// (its message: "Attempting to broadcast a dimension ...") since 2.13; before, with
// torch._C._infer_size, which is at::infer_size ("The size of tensor a ...").
constexpr bool kWeightBroadcastShapes = BCE_EXT_TORCH_AT_LEAST(2, 13);

// A bool target of the logits loss reaches ATen's bool subtraction, which raises
// NotImplementedError since 2.14 and RuntimeError before (the same text).
constexpr bool kBoolSubtractionNotImplemented = BCE_EXT_TORCH_AT_LEAST(2, 14);

}  // namespace bce_ext::torch_compat
