#!/usr/bin/env bash
# Everything that needs a GPU, as three device calls on one warm machine, each well inside one
# 10-minute command and about 6 minutes at most, so that a failed call can run again in a
# 15-minute loan:
#
#   bash benchmarks/gpu_check.sh tests   # build (this GPU's architecture, all cores),
#       tests/test_cuda.py (the device-math sweep of cuda_math.cuh's own functions among them),
#       the SigLIP loss's CUDA cases, the error and bad-input suites against that build, and the
#       four compute-sanitizer tools at once (memcheck, racecheck, initcheck, synccheck: one
#       process each, in parallel), each over a selection that launches every kernel variant at
#       least once. Caps 345 s of 360.
#   bash benchmarks/gpu_check.sh bench   # the build again (ninja finds nothing to do: the
#       objects stay between calls; a fresh machine would rebuild, beyond the cap), the losses'
#       benchmark at N = 2^28 and 2^16 with torch.compile on every row, then the host overhead at
#       2^16 (launches, operators, allocations and host microseconds against eager's). Caps 355 s
#       of 370.
#   bash benchmarks/gpu_check.sh extra   # only with time left: the SigLIP benchmark (B = 32768,
#       65536 and the paper's 2^20), then the rest of the suite on the GPU machine. Caps 330 of
#       350.
#
# Predicted on an H200 or H100 (16 cores), from the first run's steps (build 83 s, CUDA tests
# 54 s, memcheck and initcheck about 55 s each alone): tests about 4.5 minutes (the sanitizers
# at once about 80 s where they took 230 s one after another), bench about 4.5 (40 torch.compile
# cases of two graphs each at a few seconds, the timings a few seconds, the host overhead about
# 20 s), extra about 4 (the SigLIP cases about 2, the suite 74 s). With the machine's start (1-2
# minutes) tests + bench come to about 11 of the 15 minutes. Rehearsed without a GPU, not yet on
# one, with the caps scaled by 40: tests (every step ran and passed, the CUDA cases skipping);
# bench (a full CUDA build in 684 s, the benchmark refusing: no GPU, the host overhead run on the
# CPU in 12 s).
#
# Needs: a GPU, a CUDA build of torch with its nvcc, ninja, pytest, compute-sanitizer; no network.
# Writes its logs, the benchmark table (bench_gpu.md, for benchmarks/RESULTS.md) and summary.txt
# under $OUT (default out/gpu_check).
#
# Time: each step has a cap, and a part's caps add up to less than its deadline
# (GPU_CHECK_DEADLINE_S, default the part's own), so a slow step cannot crowd out the later ones;
# a step also stops at the deadline. Steps come in order of value, so that a cut-short run still
# answers the first questions. The summary lists every planned step: PASS, FAIL, or NOT RUN with
# the reason, and the last line says PASS only when all of them ran and passed; a run that did not
# finish says INCOMPLETE.
# Environment: PYTHON (default python3), TORCH_CUDA_ARCH_LIST (default: this GPU's),
# GPU_CHECK_DEADLINE_S, GPU_CHECK_CAP_SCALE (multiplies every cap and the deadline: a rehearsal on
# a machine without a GPU, where the CUDA build alone takes 15 minutes or more, scales them).
set -uo pipefail
PART=${1:-tests}
case "$PART" in tests|bench|extra) ;; *) echo "usage: gpu_check.sh [tests|bench|extra]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
# Seconds kept free at the deadline for the summary (and timeout's own kill grace).
MARGIN=15

# The plan: name and cap (seconds) of every step, in order, per part. A step that finishes early
# leaves its time to the deadline's margin, not to the others: the order and the caps are the plan,
# whatever the machine.
case "$PART" in
  tests) STEPS=(build import cuda-tests siglip-tests error-suites sanitizers) ;;
  bench) STEPS=(build import benchmark host-overhead) ;;
  extra) STEPS=(build import siglip-benchmark other-tests) ;;
esac
declare -A PART_DEADLINE=([tests]=360 [bench]=370 [extra]=350)
SCALE=${GPU_CHECK_CAP_SCALE:-1}
DEADLINE=${GPU_CHECK_DEADLINE_S:-$((PART_DEADLINE[$PART] * SCALE))}
declare -A CAP=([build]=100 [import]=10 [cuda-tests]=70 [siglip-tests]=30 [error-suites]=25
                [sanitizers]=110 [benchmark]=275 [host-overhead]=40 [other-tests]=90
                [siglip-benchmark]=200)
# After the tests part on the same machine the build is ninja's no-op.
[ "$PART" = bench ] && CAP[build]=30
[ "$PART" = extra ] && CAP[build]=30
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
  local cap=$((CAP[$name] * SCALE)) left=$((DEADLINE - SECONDS - MARGIN))
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

# 2. The CUDA tests, all of them (with the test beyond 2^31 elements and the sweep of the device
#    Math's own reciprocal and log1p), the SigLIP loss's CUDA cases (its tile kernel's first
#    run: values against open_clip in float64, the half types, the peak-memory cap), then the
#    error and bad-input suites against this build (the first run's crash of a statically linked
#    C++ runtime showed only there).
step cuda-tests pytest_cuda.log "$PY" -m pytest -q -p no:cacheprovider ${PAR[@]+"${PAR[@]}"} \
  tests/test_cuda.py
step siglip-tests pytest_siglip.log "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_siglip_loss.py -k cuda
step error-suites pytest_errors.log "$PY" -m pytest -q -p no:cacheprovider \
  ${PAR[@]+"${PAR[@]}"} tests/test_errors.py tests/test_bad_input.py

# 3. Sanitizers over the CUDA tests that reach every kernel variant (dtypes, reductions, strict
#    mode, weights, aligned and misaligned operands, heads and tails, both gradients), not over
#    those that repeat or time them: bce_ext's kernels only are instrumented (where this
#    compute-sanitizer can filter), with a small large-N test, no test beyond 2^31 elements and none
#    that starts another process. memcheck and initcheck run without the caching allocator, so that
#    an out-of-bounds access lands outside any allocation and a read of memory never written is
#    seen; CUDA graphs need the caching allocator, so those two leave the graph tests out. The four
#    tools run at once, one process each (the instrumentation is mostly host work, and the machine
#    has the cores): the step takes the slowest of them, each with the step's cap.
FILTER=()
if compute-sanitizer --help 2>&1 | grep -q -- '--kernel-name'; then
  FILTER=(--kernel-name kns=bce_ext)
fi
SMALL=(env BCE_EXT_TEST_LARGE_N=1048576 BCE_EXT_TEST_HUGE_N=0)
# Every loss runs through the shared tests' loss parameter (its kernels for every dtype, reduction,
# gradient and alignment), and "layouts" selects the focal loss's own layouts test too. racecheck
# and synccheck look at the reduction's shared memory and barriers, code that is the same template
# for every loss: they run BCE's selection and the focal loss's layouts (racecheck is the slowest
# tool by far).
KERNELS="vector_and_unaligned or alignment or strict or bad_values or target_gradient_only \
or layouts or empty or boundary or broadcast_weights or weight_table or matches_pytorch \
or infinite_logits or pos_weight_broadcasts or label_smoothing_on_every_path or device_math"
NOSUB="not environment and not first_call_ever and not focal_infinite_logits"
# sanitizers: the four tools as background processes under one cap; the step passes when all do.
sanitizers() {
  local tool nocache extra pids=() tools=() rc=0 i
  for spec in "memcheck|1| and not graph and not capture" \
              "racecheck|0| and not binary_cross_entropy_with_logits and (not focal or focal_layouts)" \
              "initcheck|1| and not graph and not capture" \
              "synccheck|0| and not binary_cross_entropy_with_logits and (not focal or focal_layouts)"; do
    IFS='|' read -r tool nocache extra <<<"$spec"
    "${SMALL[@]}" PYTORCH_NO_CUDA_MEMORY_CACHING="$nocache" \
      compute-sanitizer --tool "$tool" --error-exitcode 1 ${FILTER[@]+"${FILTER[@]}"} \
      "$PY" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py \
      -k "not cpu and ($KERNELS) and $NOSUB$extra" >"$OUT/$tool.log" 2>&1 &
    pids+=($!)
    tools+=("$tool")
  done
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
      echo "${tools[$i]}: PASS ($(tail -n 1 "$OUT/${tools[$i]}.log"))"
    else
      echo "${tools[$i]}: FAIL (exit status $?; log: ${tools[$i]}.log)"
      tail -n 30 "$OUT/${tools[$i]}.log"
      rc=1
    fi
  done
  return "$rc"
}
export -f sanitizers
export PY OUT KERNELS NOSUB
export SMALL_ENV="${SMALL[*]}" FILTER_ARGS="${FILTER[*]}"
step sanitizers sanitizers.log bash -c "SMALL=(\$SMALL_ENV); FILTER=(\$FILTER_ARGS); sanitizers"

# 4. The SigLIP loss against open_clip's (dense B x B), D = 768, bfloat16: B = 32768 (where the
#    dense loss fits), 65536, and the paper's 2^20 (bce_ext's alone: the dense logits would need
#    4 TiB). Predicted for 2^20 on an H100: 6 B^2 D = 5.1e15 flops of products, about 8 s at 60% of
#    the 989 TFLOP/s bfloat16 peak, and about 22 bytes of memory traffic per logit (the product's
#    float32 tile written, the tile loop's read and write, G's bfloat16 copy, the two products'
#    reads) over B^2 = 1.1e12 logits, about 8 s at 3 TB/s: some 16 s per forward+backward, 60 s for
#    the case (two timed runs after a warm-up, and the process's start).
step siglip-benchmark bench_siglip.log "$PY" benchmarks/bench_siglip.py --device cuda --dim 768 \
  --dtype bfloat16 --batches 32768,65536,1048576 --repeats 2 --timeout 150 --out "$OUT/siglip"
[ -f "$OUT/siglip/results.md" ] && cat "$OUT/siglip/results.md"

# 5. The rest of the suite (tests/conftest.py adds the cuda device where a GPU is there). Its CPU
#    cases run too: on the GPU image they found a build defect that CI's machines cannot show
#    (docs/build.md: a statically linked C++ runtime). 74 s on an H200's 16 cores.
step other-tests pytest.log "$PY" -m pytest -q -p no:cacheprovider ${PAR[@]+"${PAR[@]}"} \
  --ignore=tests/test_cuda.py

# 6. The losses' benchmark at the sizes of the targets: 2^28 (bandwidth, against torch.compile)
#    and 2^16 (launch-bound). torch.compile on every row: its compilations stop only after
#    --budget-s, which the cap leaves room for (the rows would say "skipped (time budget)").
step benchmark bench.log "$PY" benchmarks/bench_gpu.py --out "$OUT" --budget-s 250 --sizes 28,16
[ -f "$OUT/bench_gpu.md" ] && cat "$OUT/bench_gpu.md"
# 7. Host overhead at N = 2^16 (where a call is launch-bound): the launches, operators and
#    allocations of one forward+backward call, and its host microseconds, against eager's.
#    Predicted: 20 cases of about 500 calls at 0.1 to 0.7 ms, and 40 profiled calls: about 20 s.
step host-overhead bench_host.log "$PY" benchmarks/bench_host.py --out "$OUT/host"
[ -f "$OUT/host/results.md" ] && cat "$OUT/host/results.md"
finish
