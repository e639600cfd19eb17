#!/usr/bin/env bash
# Everything that needs a GPU: build from source, the CUDA tests, compute-sanitizer (memcheck,
# racecheck, initcheck, synccheck) over the CUDA tests, the rest of the suite, and the benchmarks.
#
#   bash benchmarks/gpu_check.sh [all|tests|bench]
#
# all (the default): every step but the SigLIP benchmark, in one call (the caps add up to 565 s).
# tests: the build and every test step (caps 515 s); bench, after it on the same warm machine: the
# build (ninja finds nothing to do: the objects are kept between calls), the losses' benchmark
# with a larger cap, and the SigLIP benchmark (caps 480 s). Planned, not yet rehearsed on a GPU:
# tests about 8.5 minutes at most, bench about 8 at most.
#
# Needs: a GPU, a CUDA build of torch with its nvcc, ninja, pytest, compute-sanitizer; no network.
# Writes its logs, the benchmark table (bench_gpu.md, for benchmarks/RESULTS.md) and summary.txt
# under $OUT (default out/gpu_check).
#
# Time: the whole must fit one 10-minute device call (timeout_s 600) with margin. Each step has a
# cap, and the caps add up to less than the deadline (GPU_CHECK_DEADLINE_S, default 580 s), so a
# slow step cannot crowd out the later ones; a step also stops at the deadline. Steps come in order
# of value (the CUDA tests before the sanitizers, the sanitizers before the rest of the suite and
# the benchmark), so that a cut-short run still answers the first questions. The summary lists every
# planned step: PASS, FAIL, or NOT RUN with the reason, and the last line says PASS only when all of
# them ran and passed; a run that did not finish says INCOMPLETE.
# Environment: PYTHON (default python3), TORCH_CUDA_ARCH_LIST (default: this GPU's),
# GPU_CHECK_DEADLINE_S.
set -uo pipefail
PART=${1:-all}
case "$PART" in all|tests|bench) ;; *) echo "usage: gpu_check.sh [all|tests|bench]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEADLINE=${GPU_CHECK_DEADLINE_S:-580}
# Seconds kept free at the deadline for the summary (and timeout's own kill grace).
MARGIN=15

# The plan: name and cap (seconds) of every step, in order. The caps add up to 565 s (a step that
# finishes early leaves its time to the deadline's margin, not to the others: the order and the
# caps are the plan, whatever the machine). Every loss's kernels are one template: the sanitizers
# that look at memory (memcheck, initcheck) run all three losses, those that look at the
# reduction's shared memory and barriers (racecheck, synccheck: loss-independent code) run BCE's
# and one small selection of the sigmoid focal loss's (its layouts test).
case "$PART" in
  all) STEPS=(build import cuda-tests memcheck racecheck initcheck synccheck other-tests benchmark) ;;
  tests) STEPS=(build import cuda-tests memcheck racecheck initcheck synccheck other-tests) ;;
  bench) STEPS=(build import benchmark siglip-benchmark) ;;
esac
# Seen on an H200 (16 cores, 2026-11-27, first run): build 83 s, CUDA tests 54 s (xdist), memcheck
# and initcheck about 55 s each for their whole selection, racecheck over 30 s.
declare -A CAP=([build]=120 [import]=10 [cuda-tests]=75 [memcheck]=70 [racecheck]=60
                [initcheck]=60 [synccheck]=40 [other-tests]=80 [benchmark]=50
                [siglip-benchmark]=150)
# The bench part has the time the test steps had: the losses' benchmark gets more of it.
[ "$PART" = bench ] && CAP[benchmark]=200
declare -A STATUS TOOK
for s in "${STEPS[@]}"; do STATUS[$s]="NOT RUN"; TOOK[$s]="-"; done
FAILED=0
STOPPED=""  # why the remaining steps did not run

# step NAME LOG COMMAND...: runs COMMAND with its output in $OUT/LOG under min(cap, time left);
# prints the log's tail; records PASS/FAIL and the seconds taken. A step with less than 20 s left
# is not started, and says so.
step() {
  local name=$1 log=$2
  shift 2
  [[ " ${STEPS[*]} " == *" $name "* ]] || return 0  # not in this part's plan
  if [ -n "$STOPPED" ]; then
    STATUS[$name]="NOT RUN ($STOPPED)"
    return 1
  fi
  local cap=${CAP[$name]} left=$((DEADLINE - SECONDS - MARGIN))
  if [ "$left" -lt 20 ]; then
    STATUS[$name]="NOT RUN (deadline: ${left}s left)"
    echo "!! gpu_check: SKIPPING $name: only ${left}s left before the ${DEADLINE}s deadline" >&2
    FAILED=1
    return 1
  fi
  [ "$cap" -le "$left" ] || cap=$left
  echo "== $name (at most ${cap}s; log: $log)"
  local start=$SECONDS
  timeout --signal=INT --kill-after=10 "$cap" "$@" >>"$OUT/$log" 2>&1
  local rc=$?
  local verdict=PASS lines=6
  TOOK[$name]="$((SECONDS - start))s"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict="FAIL (timed out after ${cap}s: cut short)"
  elif [ "$rc" -ne 0 ]; then
    verdict="FAIL (exit status $rc)"
  fi
  if [ "$verdict" != PASS ]; then
    FAILED=1
    lines=40
  fi
  tail -n "$lines" "$OUT/$log"
  STATUS[$name]=$verdict
  return "$rc"
}

finish() {
  local ran=0 passed=0
  for s in "${STEPS[@]}"; do
    case "${STATUS[$s]}" in
      PASS) ran=$((ran + 1)); passed=$((passed + 1)) ;;
      FAIL*) ran=$((ran + 1)) ;;
    esac
  done
  {
    echo
    echo "== gpu_check summary (${SECONDS}s of ${DEADLINE}s; $ran of ${#STEPS[@]} steps ran)"
    for s in "${STEPS[@]}"; do
      printf '%-12s %5s  %s\n' "$s" "${TOOK[$s]}" "${STATUS[$s]}"
    done
    if [ -f "$OUT/bench_gpu.md" ]; then
      grep -E '^- (PASS|FAIL)' "$OUT/bench_gpu.md" | sed 's/^- /  target: /'
    fi
    if [ "$ran" -lt "${#STEPS[@]}" ]; then
      echo "gpu_check: INCOMPLETE ($((${#STEPS[@]} - ran)) of ${#STEPS[@]} steps did not run;" \
           "$((ran - passed)) failed)"
    elif [ "$FAILED" -eq 0 ]; then
      echo "gpu_check: PASS (all ${#STEPS[@]} steps)"
    else
      echo "gpu_check: FAIL ($((ran - passed)) of ${#STEPS[@]} steps failed)"
    fi
  } | tee -a "$OUT/summary.txt"
  [ "$ran" -eq "${#STEPS[@]}" ] && [ "$FAILED" -eq 0 ]
  exit $?
}

{
  echo "== environment"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], \
'| torch', torch.__version__, '| cuda', torch.version.cuda, \
'| capability', torch.cuda.get_device_capability())" || true
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | head -n 2
  caps=$(for s in "${STEPS[@]}"; do printf '%s ' "${CAP[$s]}"; done)
  echo "plan: ${STEPS[*]} (caps in s: $caps)"
} 2>&1 | tee "$OUT/summary.txt"

ARCH=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c \
  "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}

# 1. Build from source against the installed torch; FORCE_CUDA makes a missing toolkit an error.
step build build.log env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$(nproc)" \
  "$PY" -m pip install --no-build-isolation --no-deps --no-index -v -e . || STOPPED="build failed"
step import build.log "$PY" -c \
  "import torch, bce_ext; assert bce_ext._C.with_cuda, 'built without CUDA'
from bce_ext._registry import names
for op in names():
    for name in (op, op + '_backward'):
        assert torch._C._dispatch_has_kernel_for_dispatch_key('bce_ext::' + name, 'CUDA'), name
print('cuda_archs', bce_ext._C.cuda_archs)" \
  || STOPPED="${STOPPED:-import failed}"

# pytest-xdist, where installed, spreads the plain test runs over the cores (the GPU is shared by
# the workers); each worker keeps 2 CPU threads, as on the CI machines, so that they do not
# oversubscribe the cores. The sanitizer runs stay one process under the tool.
PAR=()
if "$PY" -c "import xdist" >/dev/null 2>&1; then
  workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
  PAR=(-n "$workers")
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# 2. The CUDA tests, all of them (with the test beyond 2^31 elements).
step cuda-tests pytest_cuda.log "$PY" -m pytest -q -p no:cacheprovider ${PAR[@]+"${PAR[@]}"} \
  tests/test_cuda.py

# 3. Sanitizers over the CUDA tests that reach every kernel variant (dtypes, reductions, strict
#    mode, weights, aligned and misaligned operands, heads and tails, both gradients), not over
#    those that repeat or time them: bce_ext's kernels only are instrumented (where this
#    compute-sanitizer can filter), with a small large-N test, no test beyond 2^31 elements and none
#    that starts another process. memcheck and initcheck run without the caching allocator, so that
#    an out-of-bounds access lands outside any allocation and a read of memory never written is
#    seen; CUDA graphs need the caching allocator, so those two leave the graph tests out.
FILTER=()
if compute-sanitizer --help 2>&1 | grep -q -- '--kernel-name'; then
  FILTER=(--kernel-name kns=bce_ext)
fi
SMALL=(env BCE_EXT_TEST_LARGE_N=1048576 BCE_EXT_TEST_HUGE_N=0)
# The sigmoid focal loss runs through the shared tests' loss parameter (its kernels for every
# dtype, reduction, gradient and alignment), and "layouts" selects its own
# test_focal_layouts_and_broadcasts too. Its alpha/gamma grid and infinite logits are left to
# the plain CUDA tests: alpha and gamma are run-time coefficients of the same kernels (values, not
# memory paths), and those tests are many small calls, which the caps here cannot afford.
KERNELS="vector_and_unaligned or alignment or strict or bad_values or target_gradient_only \
or layouts or empty or boundary or broadcast_weights or weight_table or matches_pytorch \
or infinite_logits or pos_weight_broadcasts or label_smoothing_on_every_path"
NOSUB="not environment and not first_call_ever and not focal_infinite_logits"
sanitize() {  # sanitize TOOL NO_CACHING EXTRA_K
  local tool=$1 nocache=$2 extra=$3
  step "$tool" "$tool.log" "${SMALL[@]}" PYTORCH_NO_CUDA_MEMORY_CACHING="$nocache" \
    compute-sanitizer --tool "$tool" --error-exitcode 1 ${FILTER[@]+"${FILTER[@]}"} \
    "$PY" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py \
    -k "not cpu and ($KERNELS) and $NOSUB$extra"
}
sanitize memcheck 1 " and not graph and not capture"
sanitize racecheck 0 " and not binary_cross_entropy_with_logits and (not focal or focal_layouts)"
sanitize initcheck 1 " and not graph and not capture"
sanitize synccheck 0 " and not binary_cross_entropy_with_logits and (not focal or focal_layouts)"

# 4. The rest of the suite (tests/conftest.py adds the cuda device where a GPU is there). Its CPU
#    cases run too: on the GPU image they found a build defect that CI's machines cannot show
#    (docs/build.md: a statically linked C++ runtime). 74 s on an H200's 16 cores.
step other-tests pytest.log "$PY" -m pytest -q -p no:cacheprovider ${PAR[@]+"${PAR[@]}"} \
  --ignore=tests/test_cuda.py

# 5. Benchmark (torch.compile compilations stop after --budget-s).
#    (Four of the sizes the script covers by default, 2^16 to 2^28, so that the cap holds: 2^16
#    for the launch-bound target, 2^28 for the bandwidth ones.)
step benchmark bench.log "$PY" benchmarks/bench_gpu.py --out "$OUT" --budget-s 30 \
  --sizes 16,20,24,28
[ -f "$OUT/bench_gpu.md" ] && cat "$OUT/bench_gpu.md"
# 6. The SigLIP loss against open_clip's formula (dense B x B), D = 768, bfloat16: B = 32768
#    (where the dense loss fits) and 65536. B = 2^20 is not in the cap: its 6 B^2 D = 5.1e18 flops
#    of products take about two hours at 700 TFLOP/s.
step siglip-benchmark bench_siglip.log "$PY" benchmarks/bench_siglip.py --device cuda --dim 768 \
  --dtype bfloat16 --batches 32768,65536 --repeats 3 --out "$OUT/siglip"
[ -f "$OUT/siglip/results.md" ] && cat "$OUT/siglip/results.md"
finish
