#pragma once
// Strict mode (docs/behaviour.md, section 4): on CUDA, where an out-of-range element yields NaN by
// default, strict mode makes the forward raise the CPU's messages instead, at the cost of one
// synchronisation. The CPU kernels always raise and ignore it. Starts on when the environment has
// BCE_EXT_STRICT=1 at the time the library is loaded; bce_ext.set_strict() / bce_ext.is_strict()
// change and read it.
namespace bce_ext {

bool strict_mode();
void set_strict_mode(bool on);

}  // namespace bce_ext
