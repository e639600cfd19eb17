"""Resident memory before and after 100,000 calls: does anything leak per call?

    python tools/memory_check.py [--calls 100000] [--max-growth-mib M]

Cycles through calls of every kind: forward and backward (autograd) of every dtype and reduction,
weighted or not, contiguous, transposed and expanded operands, the module, the raw backward op,
and calls that raise (bad values, mismatched dtypes, a weight that does not broadcast). A warm-up
of 2,000 calls fills torch's and the allocator's caches first; the resident set size (VmRSS) is
then read before, at every tenth of the run and after. A leak of even a few bytes per call shows as
steady growth over the tenths; a flat line is what a leak-free build gives.

Not a timed test and not part of the test suite: run it by hand after changes to the kernels, the
host code or the autograd (docs/contributing.md, Tests). --max-growth-mib makes it exit 1 when the
growth from before to after exceeds M MiB.
"""
import argparse
import gc
import os
import sys

import torch

import bce_ext


def rss_mib():
    """The resident set size of this process, in MiB (Linux: /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_calls():
    """A list of zero-argument calls, each one call of bce_ext (a few run two: forward,
    backward)."""
    gen = torch.Generator().manual_seed(0)
    calls = []
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for shape in ((7,), (33, 65), (4, 3, 5, 6)):
            x = torch.rand(shape, generator=gen).to(dtype)
            t = torch.rand(shape, generator=gen).round().to(dtype)
            w = torch.rand(shape[-1:], generator=gen).to(dtype)
            layouts = [(x, t, w)]
            if len(shape) > 1:  # transposed (the weight then along the first dim), expanded
                layouts += [(x.transpose(0, -1), t.transpose(0, -1), w[:1]),
                            (x[:1].expand(shape), t, w)]
            for xs, ts, ws in layouts:
                for reduction in ("none", "mean", "sum"):
                    def forward_backward(xs=xs, ts=ts, ws=ws, reduction=reduction):
                        xg = xs.detach().requires_grad_()
                        tg = ts.detach().requires_grad_()
                        out = bce_ext.binary_cross_entropy(xg, tg, ws, reduction=reduction)
                        torch.autograd.grad(out.sum(), (xg, tg))
                    calls.append(forward_backward)
    x, t = torch.rand(64, 9, generator=gen), torch.rand(64, 9, generator=gen)
    module = bce_ext.BCELoss(weight=torch.rand(9, generator=gen))
    calls.append(lambda: module(x, t))
    backward = torch.ops.bce_ext.binary_cross_entropy_backward.default
    calls.append(lambda: backward(torch.ones(()), x, t, None, 1, [True, True]))
    bad = x.clone()
    bad[3, 3] = 2.0
    for args in [(bad, t), (x, t.double()), (x, t, torch.rand(5)), (x, t[:3])]:
        def raises(args=args):
            try:
                bce_ext.binary_cross_entropy(*args)
            except (RuntimeError, ValueError):
                return
            raise AssertionError(f"no error for {[a.shape for a in args]}")
        calls.append(raises)
    return calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--max-growth-mib", type=float, default=None)
    args = parser.parse_args()
    calls = make_calls()
    print(f"bce_ext {bce_ext.__file__}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, CPU ISA {bce_ext._C.cpu_isa()}, {len(calls)} kinds of call, pid {os.getpid()}")
    for i in range(args.warmup):
        calls[i % len(calls)]()
    gc.collect()
    before = rss_mib()
    print(f"resident after {args.warmup:,} warm-up calls: {before:.1f} MiB")
    tenth = max(1, args.calls // 10)
    for i in range(args.calls):
        calls[i % len(calls)]()
        if (i + 1) % tenth == 0:
            print(f"  after {i + 1:>9,} calls: {rss_mib():.1f} MiB")
    gc.collect()
    after = rss_mib()
    growth = after - before
    print(f"resident after {args.calls:,} calls: {after:.1f} MiB "
          f"(growth {growth:+.1f} MiB, {growth * 2**20 / args.calls:+.1f} bytes per call)")
    if args.max_growth_mib is not None and growth > args.max_growth_mib:
        print(f"FAIL: grew more than {args.max_growth_mib} MiB")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
