"""What an ignore_index costs: each loss that takes one, with a fraction of its targets ignored
(--ignored, default 10%), against the same call without an index on the same input (the ignored
targets then hold their original values), and against what users write without bce_ext's index:
the loss with reduction 'none' times a mask, summed and divided by the mask's count, in eager
PyTorch (the baseline function of benchmarks/_losses.py).

    python benchmarks/bench_ignore_index.py --threads 2          # N = 1e7 float32, the CPU
    python benchmarks/bench_ignore_index.py --device cuda --sizes 268435456

Rounds alternate the calls (A, B, A, B, ...) so that a slow spell of a shared machine hits both;
the table gives each call's median over the rounds and the ratio of the medians. Writes
results.md and results.json into --out.
"""
import argparse
import os
import platform
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from _losses import LOSSES, backward_seed, baseline, inputs, write_report  # noqa: E402
from torch.utils import benchmark  # noqa: E402

import bce_ext  # noqa: E402,F401

IGNORE_INDEX = 255.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1e7")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--reductions", default="mean,none")
    p.add_argument("--modes", default="fwd,fwd+bwd")
    p.add_argument("--ignored", type=float, default=0.1, help="fraction of targets ignored")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--out", default=os.path.join(ROOT, "out", "bench_ignore_index"))
    return p.parse_args(argv)


def masked_eager(entry):
    """The user's loss over the kept elements without bce_ext's index: eager 'none', a mask."""
    fn = baseline(entry)

    def loss(x, t, reduction, ignore_index):
        keep = t != ignore_index
        elements = fn(x, torch.where(keep, t, 0), reduction="none") * keep
        if reduction == "none":
            return elements
        total = elements.sum()
        return total / keep.sum() if reduction == "mean" else total
    return loss


def timed(fn, x, t, reduction, mode, device, min_time, **kw):
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    if mode == "fwd":
        def run():
            fn(x, t, reduction=reduction, **kw)
            sync()
    else:
        xg = x.detach().clone().requires_grad_(True)
        g = backward_seed(fn, x, t, reduction, **kw)

        def run():
            xg.grad = None
            fn(xg, t, reduction=reduction, **kw).backward(g)
            sync()
    run()
    run()
    timer = benchmark.Timer("run()", globals={"run": run}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_time).median


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    rows = []
    for entry in (e for e in LOSSES if e.ignores):
        ours = entry.function
        eager = masked_eager(entry)
        for n in (int(float(s)) for s in args.sizes.split(",")):
            gen = torch.Generator().manual_seed(0)
            x, t = inputs(entry, (n,), gen, args.device, dtype)
            ignored = torch.rand(t.shape, generator=gen).to(args.device) < args.ignored
            t_ignored = torch.where(ignored, torch.tensor(IGNORE_INDEX, dtype=dtype,
                                                          device=args.device), t)
            for reduction in args.reductions.split(","):
                for mode in args.modes.split(","):
                    def masked(x, t, reduction, eager=eager):
                        return eager(x, t, reduction, IGNORE_INDEX)
                    calls = {"without index": (ours, t, {}),
                             "ignore_index": (ours, t_ignored, dict(ignore_index=IGNORE_INDEX)),
                             "eager + mask": (masked, t_ignored, {})}
                    times = {name: [] for name in calls}
                    for _ in range(args.rounds):
                        for name, (fn, target, kw) in calls.items():
                            times[name].append(timed(fn, x, target, reduction, mode, args.device,
                                                     args.min_time, **kw))
                    med = {name: statistics.median(v) for name, v in times.items()}
                    rows.append(dict(loss=entry.name, n=n, reduction=reduction, mode=mode,
                                     times=times, median=med))
                    print(f"{entry.name:34s} {n:>10d} {reduction:4s} {mode:7s} "
                          f"without {med['without index'] * 1e3:8.2f} ms  "
                          f"ignore {med['ignore_index'] * 1e3:8.2f} ms "
                          f"({med['ignore_index'] / med['without index']:.3f}x)  "
                          f"eager+mask {med['eager + mask'] * 1e3:8.2f} ms", flush=True)
    meta = dict(device=args.device, cpu=platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), torch=torch.__version__, dtype=args.dtype,
                ignored=args.ignored, rounds=args.rounds)
    lines = [f"# ignore_index: {args.ignored:.0%} of the targets ignored, {args.dtype}, "
             f"{args.device}, {meta['threads']} threads, median of {args.rounds} alternating "
             f"rounds", "",
             "| loss | N | reduction | mode | without index (ms) | ignore_index (ms) | "
             "ratio | eager + mask (ms) | speed-up over eager + mask |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        m = r["median"]
        lines.append(f"| {r['loss']} | {r['n']:.0e} | {r['reduction']} | {r['mode']} | "
                     f"{m['without index'] * 1e3:.2f} | {m['ignore_index'] * 1e3:.2f} | "
                     f"{m['ignore_index'] / m['without index']:.3f}x | "
                     f"{m['eager + mask'] * 1e3:.2f} | "
                     f"{m['eager + mask'] / m['ignore_index']:.1f}x |")
    write_report(args.out, meta, rows, lines)


if __name__ == "__main__":
    main()
