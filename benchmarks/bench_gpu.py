"""GPU benchmark of bce_ext against PyTorch, measured against the device's copy bandwidth.

    python benchmarks/bench_gpu.py [--out DIR] [--sizes 16,18,20,22,24,26,28]
        [--dtypes float32,bfloat16] [--losses bce,bce_with_logits,sigmoid_focal_loss]
        [--reductions mean,none]

For each loss (BCE on probabilities, BCE with logits, the sigmoid focal loss on logits against
torchvision's formula in torch ops), dtype, reduction and N = 2^k it times, with CUDA events
(median over repeats, after warm-up):
  fwd      the loss:                      bce_ext | eager PyTorch | torch.compile of PyTorch's
  fwd+bwd  the loss and its input grad:   the same three
and reports the time, the ideal bytes moved per second and that as a fraction of the measured copy
bandwidth (a large device-to-device copy_, counting bytes read plus bytes written). Ideal traffic,
in elements' bytes per element: fwd reads x and t (2), plus the output for 'none' (3); fwd+bwd
adds the backward's reads of x and t and its write of grad_input (3), plus the incoming gradient
for 'none' (4): 5 for a reduction, 7 for 'none'.
It writes bench_gpu.md (a table to paste into benchmarks/RESULTS.md) and bench_gpu.json under --out
($OUT if set; bench_gpu.partial.json holds the rows so far while it runs), and prints the targets
(N = 2^28, 'mean', each loss) as PASS/FAIL lines; the exit status is 1 if a target or a
correctness cross-check failed.
torch.compile is compiled once per case (static shapes, its best kernels), largest size first;
compilations stop when --budget-s seconds have passed, and the rows say so.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

import bce_ext  # noqa: F401

# The installed bce_ext, imported before _losses puts this checkout first on sys.path.
# isort: split
# Each loss's eager and compiled baseline: the function it replaces, or its formula in torch ops
# where that library is not installed (the same as bench_bce.py's).
from _losses import DRAW, backward_seed, baseline, get, parse_losses, shape_of

TARGET_LOG2 = 28            # targets are judged at N = 2^28, 'mean'
TARGET_FRACTION = 0.85      # of the copy bandwidth, forward and forward+backward
TARGET_VS_EAGER = 1.5       # forward+backward speed-up over eager PyTorch
# Ideal traffic, in elements' bytes per element, by (mode, reduced).
BYTES_PER_ELEMENT = {("fwd", True): 2, ("fwd", False): 3, ("fwd+bwd", True): 5,
                     ("fwd+bwd", False): 7}


# Every function is called with reduction= given (the losses' defaults differ).


def timed(fn, repeats, warmup=3):
    """Median milliseconds of fn() over `repeats` runs, each between two CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(nbytes=1 << 30, repeats=20):
    """Bytes per second of a device-to-device copy_ (read + written)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), repeats)
    return 2 * nbytes / (ms * 1e-3)


def repeats_for(n):
    return 50 if n <= 1 << 22 else 20 if n <= 1 << 26 else 10


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "out"))
    parser.add_argument("--sizes", default="16,18,20,22,24,26,28",
                        help="log2 of N, comma-separated")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--losses", default="all",
                        help="names or aliases (bce_ext/_registry.py), or all")
    parser.add_argument("--reductions", default="mean,none")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="no new torch.compile compilations after this many seconds")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    if not (torch.cuda.is_available() and bce_ext._C.with_cuda):
        sys.exit("bench_gpu.py needs a GPU and a CUDA build of bce_ext")
    os.makedirs(args.out, exist_ok=True)
    torch._dynamo.config.cache_size_limit = 256
    began = time.monotonic()
    sizes = sorted((int(s) for s in args.sizes.split(",")), reverse=True)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    losses = [entry.name for entry in parse_losses(args.losses)]
    reductions = args.reductions.split(",")
    props = torch.cuda.get_device_properties(0)
    copy_bw = copy_bandwidth()
    print(f"device: {props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}; "
          f"copy bandwidth {copy_bw / 1e9:.0f} GB/s (read + write)", flush=True)

    rows, failures = [], []
    # Largest size first, so that the targets' size gets torch.compile within the time budget.
    for log2 in sizes:
        for loss in losses:
            entry = get(loss)
            ours_fn, eager_fn, draw = entry.function, baseline(entry), DRAW[entry.input]
            for dtype in dtypes:
                n = 1 << log2
                gen = torch.Generator("cuda").manual_seed(log2)
                x = draw(torch.rand(shape_of(entry, n), device="cuda", generator=gen)).to(dtype)
                t = torch.rand(x.shape, device="cuda", generator=gen).to(dtype)
                x_grad = x.clone().requires_grad_()
                # Cross-check the values ('mean') before timing them, against the baseline in
                # float32 on the same inputs, as bce_ext computes (a formula of several ops
                # rounds each step to the dtype: the focal loss's 1 - p_t cancels in bfloat16).
                ours = ours_fn(x, t, reduction="mean")
                eager = eager_fn(x.float(), t.float(), reduction="mean")
                tol = 1e-5 if dtype == torch.float32 else 2e-2
                if not torch.allclose(ours.float(), eager.float(), rtol=tol, atol=tol):
                    failures.append(f"values differ: {loss} {dtype} 2^{log2}: {ours.item()} vs "
                                    f"{eager.item()}")
                for reduction in reductions:
                    rows += bench_case(args, began, copy_bw, loss, dtype, log2, reduction, x, t,
                                       x_grad)
                    # The rows so far, in case the run is cut short (gpu_check's cap).
                    with open(os.path.join(args.out, "bench_gpu.partial.json"), "w") as f:
                        json.dump({"device": props.name, "copy_bw": copy_bw, "rows": rows}, f)
                del x, t, x_grad
                torch.cuda.empty_cache()

    verdicts = []
    for row in rows:
        if row["log2"] != TARGET_LOG2 or row["reduction"] != "mean":
            continue
        tag = f"{row['loss']} {row['dtype']} 2^{row['log2']} {row['mode']}"
        verdicts.append((row["ours_frac"] >= TARGET_FRACTION,
                         f"{tag}: {row['ours_frac']:.0%} of copy bandwidth (target >= "
                         f"{TARGET_FRACTION:.0%})"))
        if row["mode"] == "fwd+bwd":
            speedup = row["eager"] / row["bce_ext"]
            verdicts.append((speedup >= TARGET_VS_EAGER,
                             f"{tag}: {speedup:.2f}x eager (target >= {TARGET_VS_EAGER}x)"))
            if "compile" in row:
                verdicts.append((row["bce_ext"] < row["compile"],
                                 f"{tag}: {row['compile'] / row['bce_ext']:.2f}x torch.compile "
                                 f"(target > 1x)"))

    table = [f"Device: {props.name} ({props.multi_processor_count} SMs), "
             f"torch {torch.__version__}, measured copy bandwidth {copy_bw / 1e9:.0f} GB/s "
             "(read + write, 1 GiB copy_). "
             "Times are medians of CUDA-event timings; GB/s counts the ideal traffic (elements' "
             "bytes per element: fwd 2, or 3 for 'none'; fwd+bwd 5, or 7 for 'none').",
             "",
             "| loss | dtype | N | reduction | mode | bce_ext ms | eager ms | compile ms | "
             "bce_ext GB/s | of copy | vs eager | vs compile |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        comp = row.get("compile")
        comp_ms = f"{comp:.3f}" if comp else (row["compile_note"] or "-")
        vs_comp = f"{comp / row['bce_ext']:.2f}x" if comp else "-"
        table.append(
            f"| {row['loss']} | {row['dtype']} | 2^{row['log2']} | {row['reduction']} | "
            f"{row['mode']} | {row['bce_ext']:.3f} | {row['eager']:.3f} | {comp_ms} | "
            f"{row['ours_bw'] / 1e9:.0f} | {row['ours_frac']:.0%} | "
            f"{row['eager'] / row['bce_ext']:.2f}x | {vs_comp} |")
    table += ["", "Targets (N = 2^28, 'mean'):"] + [f"- {'PASS' if ok else 'FAIL'} {text}"
                                                   for ok, text in verdicts]
    table += [f"- FAIL {text}" for text in failures]
    with open(os.path.join(args.out, "bench_gpu.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    with open(os.path.join(args.out, "bench_gpu.json"), "w") as f:
        json.dump({"device": props.name, "torch": torch.__version__, "copy_bw": copy_bw,
                   "rows": rows}, f, indent=1)
    print("\n".join(table))
    ok = all(v for v, _ in verdicts) and not failures
    print(f"bench_gpu: {'PASS' if ok else 'FAIL'} ({time.monotonic() - began:.0f} s)")
    return 0 if ok else 1


def bench_case(args, began, copy_bw, loss, dtype, log2, reduction, x, t, x_grad):
    """The fwd and fwd+bwd rows of one case: bce_ext, eager and (within the budget) compiled."""
    ours_fn, eager_fn = get(loss).function, baseline(get(loss))
    n = x.numel()
    impls = {"bce_ext": ours_fn, "eager": eager_fn}
    compiled_note = ""
    if not args.no_compile:
        if time.monotonic() - began < args.budget_s:
            impls["compile"] = torch.compile(eager_fn, dynamic=False)
        else:
            compiled_note = "skipped (time budget)"
    # 'none' backpropagates a gradient of ones (a tensor of the loss's size read by the backward).
    grad = backward_seed(ours_fn, x, t, reduction)
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        row = {"loss": loss, "dtype": str(dtype).replace("torch.", ""), "log2": log2,
               "reduction": reduction, "mode": mode}
        for name, fn in impls.items():
            if mode == "fwd":
                def run(fn=fn):
                    return fn(x, t, reduction=reduction)
            else:
                def run(fn=fn):
                    x_grad.grad = None
                    fn(x_grad, t, reduction=reduction).backward(grad)
            # torch.compile's first calls can still be settling (compile workers).
            row[name] = timed(run, repeats_for(n), warmup=10 if name == "compile" else 3)
        row["compile_note"] = compiled_note
        moved = BYTES_PER_ELEMENT[(mode, reduction != "none")] * x.element_size() * n
        row["ours_bw"] = moved / (row["bce_ext"] * 1e-3)
        row["ours_frac"] = row["ours_bw"] / copy_bw
        rows.append(row)
        cells = "  ".join(f"{k} {row[k]:.3f} ms" for k in impls)
        print(f"{loss:>15} {row['dtype']:>8} 2^{log2} {reduction:>4} {mode:>7}: {cells}  bce_ext "
              f"{row['ours_bw'] / 1e9:.0f} GB/s = {row['ours_frac']:.0%} of copy", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
