// The strict-mode flag: one process-wide switch, read by every CUDA forward call on any thread.
#include "bce_strict.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <string>

namespace bce_ext {
namespace {

// Same spelling of "on" as setup.py's switches: 1, true, yes, on (any case).
bool env_flag(const char* name) {
  const char* raw = std::getenv(name);
  if (raw == nullptr) return false;
  std::string v(raw);
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  return v == "1" || v == "true" || v == "yes" || v == "on";
}

// Initialised when the library is loaded (import bce_ext), from the environment.
std::atomic<bool> g_strict{env_flag("BCE_EXT_STRICT")};

}  // namespace

bool strict_mode() { return g_strict.load(std::memory_order_relaxed); }
void set_strict_mode(bool on) { g_strict.store(on, std::memory_order_relaxed); }

}  // namespace bce_ext
