#pragma once
// The vector math (vec_math.h, vec_math_double.h) is small functions that the loops must inline:
// called instead, each call spills the loop's vectors around it. GCC 12 left log_core and
// log_pair out of line in BCE's bfloat16 'none' loop once more losses shared its translation unit
// (a quarter slower), so inlining is forced rather than left to its budget.
#define BCE_EXT_FORCE_INLINE inline __attribute__((always_inline))
