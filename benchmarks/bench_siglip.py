"""SigLIP's loss, bce_ext's tiled one against open_clip's SigLipLoss (dense B x B logits): time of
forward+backward and peak memory beyond the inputs and their gradients, side by side, each case in
a fresh process (its peak RSS growth on the CPU; torch.cuda.max_memory_allocated on a GPU).

    python benchmarks/bench_siglip.py --threads 2                       # B = 4096, 16384, 65536
    python benchmarks/bench_siglip.py --device cuda --dim 768 --dtype bfloat16 --batches 32768,65536

open_clip's loss is loaded alone from an installed open-clip-torch (pip install --no-deps
open-clip-torch==3.3.0), else its formula in torch ops (tests/test_siglip_loss.py: the same dense
products and B x B tensors); a case it cannot run (out of memory) is reported as such, and a case
whose B x B float32 logits alone exceed the device's memory is not started. The matrix products'
throughput is 6 B^2 D flops (forward and backward's three products) over the time, also as a
fraction of the device's dense bfloat16 peak where it is known (--peak-tflops, or the table
below). Writes results.md and results.json into --out.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _losses import write_report  # noqa: E402

# Dense bfloat16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets, by a
# substring of the device's name; the first match wins.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0))

WORKER = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import torch
import bce_ext
from test_siglip_loss import formula, load_open_clip_loss
impl, b, d, dtype, device, threads, repeats = sys.argv[1:8]
b, d, threads, repeats = int(b), int(d), int(threads), int(repeats)
torch.set_num_threads(threads)
dtype = getattr(torch, dtype)
gen = torch.Generator().manual_seed(0)
image = torch.nn.functional.normalize(torch.randn(b, d, generator=gen), dim=-1).to(device, dtype)
text = torch.nn.functional.normalize(torch.randn(b, d, generator=gen), dim=-1).to(device, dtype)
image.requires_grad_(); text.requires_grad_()
scale = torch.tensor(10.0, device=device, requires_grad=True)
bias = torch.tensor(-10.0, device=device, requires_grad=True)
if impl == "bce_ext":
    loss_fn = bce_ext.SigLipLoss()
elif load_open_clip_loss() is not None:
    loss_fn = load_open_clip_loss().SigLipLoss()
else:  # open_clip's formula in torch ops (tests/test_siglip_loss.py): its memory and its products
    loss_fn = formula
def sync():
    if device == "cuda":
        torch.cuda.synchronize()
def step():
    for v in (image, text, scale, bias):
        v.grad = None
    loss_fn(image, text, scale, bias).backward()
    sync()
# Warm-up on a slice (code, allocator pools), then gradients of the inputs' size held, as in
# training, before the measurement starts.
small = loss_fn(image[:64].detach(), text[:64].detach(), scale.detach(), bias.detach())
image.grad, text.grad = torch.zeros_like(image), torch.zeros_like(text)
sync()
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(repeats):
    for v in (image, text, scale, bias):
        v.grad = None
    image.grad, text.grad = torch.zeros_like(image), torch.zeros_like(text)
    sync()
    start = time.perf_counter()
    loss = loss_fn(image, text, scale, bias)
    for v in (image, text, scale, bias):
        v.grad = None
    loss.backward()
    sync()
    times.append(time.perf_counter() - start)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
peak = (torch.cuda.max_memory_allocated() - base) if device == "cuda" else (after - before) * 1024
print(json.dumps(dict(times=times, median=statistics.median(times), peak_bytes=peak,
                      loss=float(loss))))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="4096,16384,65536")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--impls", default="bce_ext,open_clip")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's dense bfloat16 peak (default: BF16_PEAK_TFLOPS by name)")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "bench_siglip"))
    return p.parse_args(argv)


def device_facts(args):
    """(name, memory in bytes, dense bfloat16 peak in TFLOP/s or None) of --device."""
    import torch

    from bce_ext.info import _cpu_model
    if args.device != "cuda":
        return _cpu_model(), None, args.peak_tflops
    props = torch.cuda.get_device_properties(0)
    peak = args.peak_tflops or next((v for key, v in BF16_PEAK_TFLOPS if key in props.name), None)
    return props.name, props.total_memory, peak


def run(impl, b, args, memory=None):
    if impl != "bce_ext" and memory is not None and 4 * b * b > memory:
        return {"error": f"not run: the B x B float32 logits alone need {4 * b * b / 2**30:.0f} "
                         f"GiB of the device's {memory / 2**30:.0f}"}
    script = WORKER.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
    cmd = [sys.executable, "-c", script, impl, str(b), str(args.dim), args.dtype, args.device,
           str(args.threads), str(args.repeats)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["killed"])[-1]
        return {"error": f"exit {out.returncode}: {last[:200]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    name, memory, peak = device_facts(args)
    rows = []
    for b in (int(v) for v in args.batches.split(",")):
        row = {"batch": b}
        for impl in args.impls.split(","):
            row[impl] = run(impl, b, args, memory)
            print(b, impl, row[impl], flush=True)
        rows.append(row)
    meta = dict(device=args.device, name=name, threads=args.threads, dim=args.dim,
                dtype=args.dtype, repeats=args.repeats, bf16_peak_tflops=peak)

    def cell(r, key):
        if "error" in r:
            return r["error"]
        return f"{r['median']:.3f} s" if key == "time" else f"{r['peak_bytes'] / 2**20:.0f} MiB"
    peak_note = f"; products' TFLOP/s as a fraction of its {peak:.0f} TFLOP/s dense bfloat16 " \
        "peak" if peak else ""
    lines = [f"# SigLIP loss, forward+backward, D = {args.dim}, {args.dtype}, {args.device} "
             f"({name}), {args.threads} threads, median of {args.repeats}{peak_note}", "",
             "| B | bce_ext time | open_clip time | speed-up | bce_ext peak | open_clip peak | "
             "peak ratio | bce_ext TFLOP/s | of bf16 peak |", "|" + " ---: |" * 9]
    for row in rows:
        ours, theirs = row.get("bce_ext", {"error": "-"}), row.get("open_clip", {"error": "-"})
        both = "error" not in ours and "error" not in theirs
        speed = f"{theirs['median'] / ours['median']:.2f}x" if both else "-"
        ratio = f"{ours['peak_bytes'] / max(theirs['peak_bytes'], 1):.3f}" if both else "-"
        flops = 6 * row["batch"] ** 2 * args.dim / ours["median"] / 1e12 \
            if "error" not in ours else float("nan")
        lines.append(f"| {row['batch']} | {cell(ours, 'time')} | {cell(theirs, 'time')} | "
                     f"{speed} | {cell(ours, 'peak')} | {cell(theirs, 'peak')} | {ratio} | "
                     f"{flops:.2f} | {f'{flops / peak:.1%}' if peak else '-'} |")
    write_report(args.out, meta, rows, lines)


if __name__ == "__main__":
    main()
