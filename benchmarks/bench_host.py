"""Host overhead of one forward+backward call at small N: bce_ext's against eager PyTorch's.

    python benchmarks/bench_host.py [--device cuda|cpu] [--log2 16] [--dtypes float32,bfloat16]
        [--losses all] [--reductions mean,none] [--rounds 5] [--out DIR]

At N = 2^16 a call is bound by the host, not the device: what it costs is the work the host does
per call (Python, the dispatcher, checks, allocations, kernel launches). For each loss (its
baseline: the function it replaces, or its formula in torch ops), dtype and reduction this counts,
on one profiled call after warm-up:
  launches   the device activities the call starts (kernels, memsets, copies; CUDA only)
  ops        the operators it dispatches (nested ones included), and the tensors it allocates
             (aten::empty and aten::empty_strided calls)
and times the call on the host: the median over --rounds rounds of the per-call mean of a batch of
calls, each call from an idle device (synchronised before, not after: the host's time, not the
device's), bce_ext's and eager's rounds alternating so that both see the same machine. The spread
is the rounds' range. Writes results.md and results.json into --out, and prints the targets as
PASS/FAIL lines (launches no more than eager's; host time no more than eager's beyond the spread);
the exit status is 1 if one fails.
"""
import argparse
import os
import statistics
import sys
import time
from collections import Counter

import torch
from torch.profiler import DeviceType, ProfilerActivity, profile

import bce_ext

# isort: split
from _losses import DRAW, backward_seed, baseline, parse_losses, shape_of, write_report

CALLS_PER_ROUND = 50


def fwd_bwd(fn, x, t, reduction, grad):
    """One forward+backward call, as a training step makes it."""
    x.grad = None
    fn(x, t, reduction=reduction).backward(grad)


def count(run, device):
    """(device activities, operators dispatched, allocations) of one call of run()."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        if device == "cuda":
            torch.cuda.synchronize()
    events = prof.events()
    launches = sum(1 for e in events if e.device_type == DeviceType.CUDA)
    ops = Counter(e.name for e in events if e.device_type == DeviceType.CPU
                  and e.name.startswith(("aten::", "bce_ext::")))
    # The allocating leaves (empty_like and zeros allocate through them).
    allocations = ops["aten::empty"] + ops["aten::empty_strided"]
    return (launches if device == "cuda" else None), sum(ops.values()), allocations


def host_rounds(runs, device, rounds):
    """Per implementation, the per-call host microseconds of each round (rounds alternate)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            total = 0.0
            for _ in range(CALLS_PER_ROUND):
                sync()
                start = time.perf_counter()
                run()
                total += time.perf_counter() - start
            times[name].append(total / CALLS_PER_ROUND * 1e6)
    return times


def measure(impls, x, t, reduction, device, rounds):
    """The row of one case: each implementation's counts and host microseconds."""
    grad = backward_seed(impls["bce_ext"], x, t, reduction)
    runs = {name: (lambda fn=fn: fwd_bwd(fn, x, t, reduction, grad)) for name, fn in impls.items()}
    for run in runs.values():  # warm-up: code paths, allocator pools
        for _ in range(5):
            run()
    row = {}
    for name, run in runs.items():
        row[name + "_launches"], row[name + "_ops"], row[name + "_allocs"] = count(run, device)
    for name, values in host_rounds(runs, device, rounds).items():
        row[name + "_us"] = statistics.median(values)
        row[name + "_spread"] = (min(values), max(values))
    return row


def targets(row, device):
    """(passed, text) of each target of one row."""
    tag = f"{row['loss']} {row['dtype']} {row['reduction']}"
    verdicts = []
    if device == "cuda":
        verdicts.append((row["bce_ext_launches"] <= row["eager_launches"],
                         f"{tag}: {row['bce_ext_launches']} launches, eager "
                         f"{row['eager_launches']} (target: no more)"))
    # No more than eager's beyond the spread: bce_ext's fastest round is not slower than eager's
    # slowest.
    verdicts.append((row["bce_ext_spread"][0] <= row["eager_spread"][1],
                     f"{tag}: host {row['bce_ext_us']:.1f} us, eager {row['eager_us']:.1f} us "
                     "(target: no more, beyond the spread)"))
    return verdicts


def spread(row, name):
    low, high = row[name + "_spread"]
    return f"{row[name + '_us']:.1f} [{low:.1f}, {high:.1f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--log2", type=int, default=16)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--losses", default="all")
    parser.add_argument("--reductions", default="mean,none")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch's CPU threads")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "out"), "host"))
    args = parser.parse_args(argv)
    device = args.device
    if device == "cuda" and not bce_ext._C.with_cuda:
        sys.exit("bench_host.py --device cuda needs a CUDA build of bce_ext")
    torch.set_num_threads(args.threads)
    from bce_ext.info import _cpu_model
    where = torch.cuda.get_device_name() if device == "cuda" else _cpu_model()
    n = 1 << args.log2
    rows, verdicts = [], []
    for entry in parse_losses(args.losses):
        impls = {"bce_ext": entry.function, "eager": baseline(entry)}
        for dtype in (getattr(torch, d) for d in args.dtypes.split(",")):
            gen = torch.Generator(device).manual_seed(args.log2)
            u = torch.rand(shape_of(entry, n), device=device, generator=gen)
            x = DRAW[entry.input](u).to(dtype).requires_grad_()
            t = torch.rand(u.shape, device=device, generator=gen).to(dtype)
            for reduction in args.reductions.split(","):
                row = measure(impls, x, t, reduction, device, args.rounds)
                row.update(loss=entry.name, dtype=str(dtype).replace("torch.", ""),
                           reduction=reduction)
                rows.append(row)
                verdicts += targets(row, device)
                print(f"{entry.name} {row['dtype']} {reduction}",
                      {k: v for k, v in row.items() if k.endswith(("_us", "launches"))},
                      flush=True)
    lines = [f"# Host overhead of one forward+backward call, N = 2^{args.log2}, {device} "
             f"({where}), {args.threads} thread(s)", "",
             "Host time: median over rounds of the per-call mean (the device idle at each call's "
             "start), [fastest, slowest] round. Launches: the device activities of one call. Ops: "
             "operators dispatched, nested ones included (allocs: aten::empty and "
             "aten::empty_strided calls).", "",
             "| loss | dtype | reduction | bce_ext us | eager us | eager / bce_ext | "
             "bce_ext launches | eager launches | bce_ext ops (allocs) | eager ops (allocs) |",
             "|" + " --- |" * 3 + " ---: |" * 7]
    for r in rows:
        launches = [("-" if r[k] is None else str(r[k])) for k in ("bce_ext_launches",
                                                                   "eager_launches")]
        lines.append(f"| {r['loss']} | {r['dtype']} | {r['reduction']} | {spread(r, 'bce_ext')} | "
                     f"{spread(r, 'eager')} | {r['eager_us'] / r['bce_ext_us']:.2f}x | "
                     f"{launches[0]} | {launches[1]} | {r['bce_ext_ops']} ({r['bce_ext_allocs']}) "
                     f"| {r['eager_ops']} ({r['eager_allocs']}) |")
    lines += ["", "Targets:"] + [f"- {'PASS' if ok else 'FAIL'} {text}" for ok, text in verdicts]
    write_report(args.out, dict(device=device, where=where, log2=args.log2, threads=args.threads,
                                rounds=args.rounds, torch=torch.__version__), rows, lines)
    ok = all(v for v, _ in verdicts)
    print(f"bench_host: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
