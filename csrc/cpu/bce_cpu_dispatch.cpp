// Chooses, once, the inner loops for this CPU. BCE_EXT_CPU_ISA=scalar forces the portable loops
// (used by the tests to compare implementations on one machine).
#include <cstdlib>
#include <cstring>

#include "bce_cpu_loops.h"

namespace bce_ext::cpu {
namespace {

const Loops<float>& select_float_loops() {
  const char* forced = std::getenv("BCE_EXT_CPU_ISA");
  if (forced && std::strcmp(forced, "scalar") == 0) return scalar_float_loops();
  return scalar_float_loops();
}

}  // namespace

const Loops<float>& float_loops() {
  static const Loops<float>& chosen = select_float_loops();
  return chosen;
}

}  // namespace bce_ext::cpu
