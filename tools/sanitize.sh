#!/usr/bin/env bash
# The CPU kernels under AddressSanitizer and UndefinedBehaviorSanitizer.
#
# Builds bce_ext with BCE_EXT_SANITIZE=1 (setup.py) into a temporary build folder (the in-place
# build is left alone), then runs the CPU tests that drive the kernels with the sanitizer runtime
# preloaded into Python, once per instruction set of the float32 and float64 loops that this CPU
# can run (BCE_EXT_CPU_ISA=scalar, avx2, avx512; one it cannot run is skipped, and the log says so).
# Exits non-zero on a failed test and on any sanitizer report, including one from a subprocess.
#
#   bash tools/sanitize.sh                 # build, then the kernel tests for every ISA
#   bash tools/sanitize.sh tests/test_values.py -k layouts   # build, then these pytest arguments
#
# Python is $PYTHON (default: python), with torch, pytest and hypothesis installed; the C++
# compiler is $CXX (default: c++), the one the build uses, whose libasan.so is preloaded.
# The objects are kept in build/objects/ under a key of their own (setup.py, build_folder), so a
# second run recompiles only what changed; SANITIZE_BUILD=DIR keeps the linked library in DIR too.
set -euo pipefail
SANITIZE_BUILD=${SANITIZE_BUILD:+$(realpath -m "$SANITIZE_BUILD")}
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python}
CXX=${CXX:-c++}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

BUILD=${SANITIZE_BUILD:-$WORK/build}
echo "== sanitizer build (BCE_EXT_SANITIZE=1) in $BUILD"
start=$SECONDS
# The compiler's command lines go to a log, shown if the build fails.
if ! BCE_EXT_SANITIZE=1 BCE_EXT_CPU_ONLY=1 "$PYTHON" setup.py -q build --build-base "$BUILD" \
    > "$WORK/build.log" 2>&1; then
  cat "$WORK/build.log"
  exit 1
fi
LIB=$(echo "$BUILD"/lib.*)
SO=$(echo "$LIB"/bce_ext/_C*.so)
echo "built in $((SECONDS - start)) s: $SO"

# Python and torch are not instrumented, so the ASan runtime must be the first library loaded
# (LD_PRELOAD); libubsan is the UBSan runtime that the extension links beside it.
ASAN_RT=$(realpath "$("$CXX" -print-file-name=libasan.so)")
UBSAN_RT=$(realpath "$("$CXX" -print-file-name=libubsan.so)")
REPORTS=$WORK/reports
mkdir -p "$REPORTS"
# detect_leaks=0: Python and torch keep allocations for the life of the process, which
#   LeakSanitizer would report at exit; leaks are what tools/memory_check.py measures.
# allocator_may_return_null=1: an allocation too large to satisfy returns null, as glibc's does, so
#   torch raises its out-of-memory error (tests/test_bad_input.py) instead of ASan aborting.
# log_path: every ASan report also lands in a file, checked below, so that a report from a
#   subprocess, or one whose abort a test caught, still fails this script.
# UBSan reports go to stderr (its log_path is not honoured beside ASan); the build makes every
# UBSan check abort (-fno-sanitize-recover=all), so a report always ends its process with an
# error. pytest runs with --capture=sys, so that reports written to file descriptor 2 by native
# code reach the log instead of pytest's capture (lost when the process dies).
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
sanitized() {
  (cd "$WORK" && LD_PRELOAD="$ASAN_RT $UBSAN_RT" PYTHONPATH="$LIB" "$@")
}

# The build under test is the sanitized one, and it is what Python imports.
readelf -d "$SO" | grep -q 'NEEDED.*libasan' || { echo "$SO is not linked with ASan"; exit 1; }
readelf -d "$SO" | grep -q 'NEEDED.*libubsan' || { echo "$SO is not linked with UBSan"; exit 1; }
sanitized "$PYTHON" -c "
import bce_ext
assert bce_ext.__file__.startswith('$LIB'), bce_ext.__file__
print('imports', bce_ext.__file__)"

# A report is any line in the log files except ASan's warning that an allocation failed: with
# allocator_may_return_null=1 that is how a huge request comes back (torch then raises its
# out-of-memory error, which tests/test_bad_input.py expects).
ALLOC_WARNING='^==[0-9]+==WARNING: AddressSanitizer failed to allocate 0x[0-9a-f]+ bytes$'
check_reports() {
  compgen -G "$REPORTS/*" > /dev/null || return 0
  local failed=0
  for f in "$REPORTS"/*; do
    if grep -qvE "$ALLOC_WARNING" "$f"; then
      echo "== sanitizer report $f:"
      cat "$f"
      failed=1
    else
      echo "($(wc -l < "$f") failed allocations of huge requests, as expected: $(basename "$f"))"
    fi
    rm -f "$f"
  done
  return $failed
}

pytest_sanitized() {
  echo "+ pytest $*"
  local start=$SECONDS rc=0
  sanitized "$PYTHON" -m pytest -q -p no:cacheprovider --capture=sys --rootdir "$REPO" "$@" || rc=$?
  echo "($((SECONDS - start)) s)"
  check_reports || rc=1
  return $rc
}

if [ $# -gt 0 ]; then
  args=()
  for a in "$@"; do [[ "$a" == tests/* ]] && args+=("$REPO/$a") || args+=("$a"); done
  pytest_sanitized "${args[@]}"
  exit
fi

# Tests that reach the float32 and float64 loops through the default ISA: once per ISA.
PER_ISA=(tests/test_values.py tests/test_binary_cross_entropy_with_logits.py tests/test_properties.py tests/test_concurrency.py
         tests/test_ignore_index.py tests/test_siglip_loss.py)
# Once: test_cpu_simd, test_cpu_double and test_cpu_math select each ISA the CPU has themselves;
# the argument checks, autograd and the module do not depend on the ISA (the bad-value scan does,
# and test_cpu_simd puts a bad value in every lane of every ISA).
# test_thresholds crosses every size threshold of the kernels (tiling, chunks, conversion and vector
# blocks) in every layout, with the widest ISA's vectors.
ONCE=(tests/test_cpu_simd.py tests/test_cpu_double.py tests/test_cpu_math.py tests/test_thresholds.py
      tests/test_errors.py tests/test_bad_input.py tests/test_autograd.py tests/test_module.py)

for isa in scalar avx2 avx512; do
  if [ "$(sanitized "$PYTHON" -c "from bce_ext import _C; print(_C._cpu_isa_supported('$isa'))")" != True ]; then
    echo "== BCE_EXT_CPU_ISA=$isa: skipped, this CPU cannot run $isa"
    continue
  fi
  chosen=$(BCE_EXT_CPU_ISA=$isa sanitized "$PYTHON" -c "from bce_ext import _C; print(_C.cpu_isa())")
  [ "$chosen" = "$isa" ] || { echo "BCE_EXT_CPU_ISA=$isa chose $chosen"; exit 1; }
  echo "== BCE_EXT_CPU_ISA=$isa"
  BCE_EXT_CPU_ISA=$isa pytest_sanitized "${PER_ISA[@]/#/$REPO/}"
done
echo "== once: every ISA (test_cpu_simd selects each itself), argument checks, autograd, module"
pytest_sanitized "${ONCE[@]/#/$REPO/}"
echo "== no sanitizer report"
