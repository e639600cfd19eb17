#!/usr/bin/env bash
# Everything that needs a GPU, in one call: build from source, the whole test suite on CUDA,
# compute-sanitizer memcheck and racecheck over the CUDA tests, and the benchmark.
#
#   bash benchmarks/gpu_check.sh
#
# Needs: a GPU, a CUDA build of torch with its nvcc, ninja, pytest, compute-sanitizer; no network.
# Writes its logs, the benchmark table (bench_gpu.md, for benchmarks/RESULTS.md) and summary.txt
# under $OUT (default out/gpu_check): 8 files. Ends with a PASS/FAIL line per step; exit status 1
# if any failed. Each step has a time cap, and all of them a deadline (GPU_CHECK_DEADLINE_S,
# default 540 s), so the whole stays inside a 10-minute call (about 7 minutes on an H100).
# Environment: PYTHON (default python3), TORCH_CUDA_ARCH_LIST (default: this GPU's).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEADLINE=${GPU_CHECK_DEADLINE_S:-540}
SUMMARY=()
FAILED=0

# step NAME CAP_S LOG COMMAND...: runs COMMAND with its output in $OUT/LOG, under
# min(CAP_S, time left); prints the log's tail; records PASS/FAIL and the seconds taken.
step() {
  local name=$1 cap=$2 log=$3
  shift 3
  local left=$((DEADLINE - SECONDS - 15))
  if [ "$left" -lt 30 ]; then
    SUMMARY+=("$(printf '%-22s %-34s' "$name" "FAIL (skipped: deadline reached)")")
    FAILED=1
    return 1
  fi
  [ "$cap" -le "$left" ] || cap=$left
  echo "== $name (at most ${cap}s; log: $log)"
  local start=$SECONDS
  timeout --signal=INT --kill-after=20 "$cap" "$@" >>"$OUT/$log" 2>&1
  local rc=$?
  local took=$((SECONDS - start)) verdict=PASS lines=6
  if [ "$rc" -eq 124 ]; then
    verdict="FAIL (timed out after ${cap}s)"
  elif [ "$rc" -ne 0 ]; then
    verdict="FAIL (exit status $rc)"
  fi
  if [ "$verdict" != PASS ]; then
    FAILED=1
    lines=40
  fi
  tail -n "$lines" "$OUT/$log"
  SUMMARY+=("$(printf '%-22s %-34s %4ss' "$name" "$verdict" "$took")")
  return "$rc"
}

finish() {
  {
    echo
    echo "== gpu_check summary (${SECONDS}s)"
    printf '%s\n' "${SUMMARY[@]}"
    if [ -f "$OUT/bench_gpu.md" ]; then
      grep -E '^- (PASS|FAIL)' "$OUT/bench_gpu.md" | sed 's/^- /  target: /'
    fi
    if [ "$FAILED" -eq 0 ]; then echo "gpu_check: PASS"; else echo "gpu_check: FAIL"; fi
  } | tee -a "$OUT/summary.txt"
  exit "$FAILED"
}

{
  echo "== environment"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| cuda', torch.version.cuda, '| capability', torch.cuda.get_device_capability())" || true
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | head -n 2
} 2>&1 | tee "$OUT/summary.txt"

ARCH=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}

# 1. Build from source against the installed torch; FORCE_CUDA makes a missing toolkit an error.
step "build (sm ${ARCH})" 240 build.log env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" \
  "$PY" -m pip install --no-build-isolation --no-deps --no-index -v -e . || finish
step "import" 60 build.log "$PY" -c \
  "import torch, bce_ext; assert bce_ext._C.with_cuda, 'built without CUDA'; \
assert torch._C._dispatch_has_kernel_for_dispatch_key('bce_ext::binary_cross_entropy', 'CUDA'); \
print('cuda_archs', bce_ext._C.cuda_archs)" \
  || finish

# 2. The whole suite; tests/conftest.py adds the cuda device when a GPU is there.
step "pytest (all)" 150 pytest.log "$PY" -m pytest -q -p no:cacheprovider

# 3. Sanitizers over the CUDA tests, instrumenting bce_ext's kernels only (where this
#    compute-sanitizer can filter) and with a smaller large-N test. memcheck without the caching
#    allocator, so that an out-of-bounds access lands outside any allocation; CUDA graphs need the
#    caching allocator, so memcheck leaves the graph tests out (racecheck runs them).
FILTER=()
if compute-sanitizer --help 2>&1 | grep -q -- '--kernel-name'; then
  FILTER=(--kernel-name kns=bce_ext)
fi
step "memcheck" 110 memcheck.log env PYTORCH_NO_CUDA_MEMORY_CACHING=1 BCE_EXT_TEST_LARGE_N=1048576 \
  compute-sanitizer --tool memcheck --error-exitcode 1 ${FILTER[@]+"${FILTER[@]}"} \
  "$PY" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py -k "not graph"
step "racecheck" 90 racecheck.log env BCE_EXT_TEST_LARGE_N=1048576 \
  compute-sanitizer --tool racecheck --error-exitcode 1 ${FILTER[@]+"${FILTER[@]}"} \
  "$PY" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py

# 4. Benchmark (torch.compile compilations stop after --budget-s).
step "benchmark" 220 bench.log "$PY" benchmarks/bench_gpu.py --out "$OUT" --budget-s 110
[ -f "$OUT/bench_gpu.md" ] && cat "$OUT/bench_gpu.md"
finish
