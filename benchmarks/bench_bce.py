"""bce_ext against eager PyTorch and torch.compile on the CPU (or CUDA with --device cuda), for
every loss (--losses all, or a list of names: bce_ext/_registry.py's, or their aliases).

    python benchmarks/bench_bce.py --threads 2           # everything (long: dozens of minutes)
    python benchmarks/bench_bce.py --losses bce --dtypes float32 --reductions mean --weights none \
        --isas scalar,avx2 --sizes 1e3,1e4,1e5,1e6,1e7  # the float32 mean comparison of RESULTS.md

Each case is timed with torch.utils.benchmark (blocked_autorange; the median is reported, the
smallest of --rounds passes over the whole grid) for every implementation, at the thread count the
table states (--threads; Timer's own default is one thread): bce_ext (one line per --isas entry,
chosen with bce_ext._C._set_cpu_isa; the default is the one bce_ext picks), eager PyTorch
(torch.nn.functional.binary_cross_entropy{,_with_logits}, which nn.BCELoss and nn.BCEWithLogitsLoss
call; for the focal loss torchvision.ops's sigmoid_focal_loss, or its formula in torch ops where
torchvision is not installed) and torch.compile of that function. Inputs: probabilities for BCE,
logits (3 * randn) for the others, soft targets (torch.rand; hard 0/1 targets, mostly 0, for the
focal loss, as a detector's). 'fwd' times the loss alone; 'fwd+bwd' the loss and .backward() into a
fresh input.grad each call (grad set to None first, as optimizer.zero_grad() does): at N = 1e7 that
fresh 40 MB float32 gradient costs about 10 ms of first-touch page faults on its own, and the
table's 'touch' column times exactly that (torch.empty plus one write pass) for reference; it is
included in every fwd+bwd figure, not hidden. Each case also gets its floors (see calibrate and
floors below; --no-limits skips them).

Writes into --out (default out/bench, ignored by git): results.md (tables with ratios against eager
and compiled), results.json, and one PNG per case group: time per element against N, log-log, one
line per implementation.
"""
import argparse
import json
import os
import platform
import sys
import time

# Run from the repository: this checkout's bce_ext, not an installed one.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from _losses import backward_seed, baseline, canonical, get, inputs, parse_losses  # noqa: E402
from torch.utils import benchmark  # noqa: E402

import bce_ext  # noqa: E402,F401

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}
# Columns of the (C,) broadcast weight; inputs are then (N / C, C).
BROADCAST_C = 1000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", default="all")
    p.add_argument("--sizes", default="1e3,1e4,1e5,1e6,1e7", help="element counts, comma-separated")
    p.add_argument("--dtypes", default="float32,float64,float16,bfloat16")
    p.add_argument("--reductions", default="mean,sum,none")
    p.add_argument("--weights", default="none,broadcast,full",
                   help="none, broadcast (a (C,) weight over (N/C, C) inputs), full (one per "
                        "element), pos_weight (the logits loss: a (C,) weight and a (C,) "
                        "pos_weight)")
    p.add_argument("--modes", default="fwd,fwd+bwd")
    p.add_argument("--impls", default="bce_ext,eager,compiled")
    p.add_argument("--isas", default="",
                   help="bce_ext CPU loops to time, comma-separated (scalar, avx2, avx512); "
                        "default: the one bce_ext chooses")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: as is)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per measurement")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "bench"))
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-limits", action="store_true", help="skip the floors (limit column)")
    p.add_argument("--render", metavar="RESULTS_JSON",
                   help="write results.md again from a results.json of an earlier run, "
                        "time nothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1,
                   help="passes over the whole grid; each case keeps its smallest median (on a "
                        "shared machine, a disturbance of a few minutes then spoils one pass only)")
    return p.parse_args(argv)


def make_case(loss, n, dtype, weight_kind, device, gen):
    """(x, t, keyword arguments) of one case."""
    if weight_kind in ("broadcast", "pos_weight"):
        shape = (max(1, n // BROADCAST_C), BROADCAST_C)
    else:
        shape = (n,)
    x, t = inputs(get(loss), shape, gen, device, dtype)
    kw = {}
    if weight_kind in ("broadcast", "pos_weight"):
        kw["weight"] = (torch.rand(BROADCAST_C, generator=gen) + 0.5).to(device=device, dtype=dtype)
    elif weight_kind == "full":
        kw["weight"] = (torch.rand(shape, generator=gen) + 0.5).to(device=device, dtype=dtype)
    if weight_kind == "pos_weight":
        kw["pos_weight"] = (3 * torch.rand(BROADCAST_C, generator=gen)).to(device=device,
                                                                             dtype=dtype)
    return x, t, kw


class Impls:
    """The loss functions by name; compiled ones are made once per loss and reused across cases
    (dynamo recompiles per shape and dtype as it needs to). Both of dynamo's recompile limits are
    raised: past the per-function one (8) or the accumulated one (256 in torch 2.13; the full grid
    compiles the logits loss 288 times) dynamo runs the function eagerly (one warning in the log),
    and the 'compiled' column would time eager PyTorch."""

    def __init__(self):
        cfg = torch._dynamo.config
        for name in ("cache_size_limit", "accumulated_cache_size_limit", "recompile_limit",
                     "accumulated_recompile_limit"):
            if hasattr(cfg, name):
                setattr(cfg, name, max(getattr(cfg, name), 4096))
        self.compiled = {}

    def fn(self, loss, impl):
        entry = get(loss)
        ours, theirs = entry.function, baseline(entry)
        if loss not in self.compiled:
            self.compiled[loss] = torch.compile(theirs, dynamic=False)
        if impl.startswith("bce_ext"):
            return ours
        if impl == "eager":
            return theirs
        if impl == "compiled":
            return self.compiled[loss]
        raise ValueError(impl)


def set_isa(impl):
    if impl.startswith("bce_ext[") and impl.endswith("]"):
        want = impl[len("bce_ext["):-1]
        got = bce_ext._C._set_cpu_isa(want)
        if got != want:
            return False
    return True


def timer(fn, min_time):
    fn()  # warm-up (and compilation)
    fn()
    # Timer runs at one thread unless told: time at the thread count the table states.
    t = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return t.blocked_autorange(min_run_time=min_time).median


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(impls, loss, impl, mode, x, t, kw, reduction, device, min_time):
    f = impls.fn(loss, impl)
    if mode == "fwd":
        def run():
            f(x, t, reduction=reduction, **kw)
            sync(device)
        return timer(run, min_time)
    xg = x.detach().clone().requires_grad_(True)
    g = backward_seed(f, x, t, reduction, **kw)

    def run():
        xg.grad = None
        out = f(xg, t, reduction=reduction, **kw)
        out.backward(g)
        sync(device)
    return timer(run, min_time)


def time_touch(n, dtype, device, min_time):
    def run():
        torch.empty(n, dtype=dtype, device=device).fill_(1)
        sync(device)
    return timer(run, min_time)


# The floors of each case (issue 9's limit column), from two measurements made once per run:
# - memory: the bytes a case must move, at the copy bandwidth of a warm buffer of the case's own
#   size and dtype (Tensor.copy_ into an existing tensor at the run's thread count, reading and
#   writing N elements: in cache for small N, from memory for large);
# - vector math: the elementary functions a case must evaluate per element (below), at their
#   measured cost in bce_ext's own vector math (bce_ext._C._cpu_math on 2^15 elements in cache,
#   one thread, less the call's fixed cost), divided by the thread count.
# The floor is the larger of the two (perfect overlap); 'x floor' is bce_ext's time over it.
MATH_PER_ELEMENT = {
    ("binary_cross_entropy", "fwd"): ("log01", "log1m"),  # soft labels: both logs
    ("binary_cross_entropy", "bwd"): (),                  # divisions only
    ("binary_cross_entropy_with_logits", "fwd"): ("exp", "log1p01"),  # log(1 + exp(-|x|))
    ("binary_cross_entropy_with_logits", "bwd"): ("sigmoid",),
    ("sigmoid_focal_loss", "fwd"): ("exp", "log1p01"),  # gamma = 2: (1 - p_t)^2 is a product
    ("sigmoid_focal_loss", "bwd"): ("exp", "log1p01"),  # the cross entropy again
    ("varifocal_loss", "fwd"): ("exp", "log1p01"),      # gamma = 2: |p - t|^2 is a product
    ("varifocal_loss", "bwd"): ("exp", "log1p01"),
    ("quality_focal_loss", "fwd"): ("exp", "log1p01"),  # beta = 2: |t - p|^2 is a product
    ("quality_focal_loss", "bwd"): ("exp", "log1p01"),
}
MATH_DOMAIN = {"log01": (1e-6, 1.0), "log1m": (0.0, 0.999), "exp": (-16.0, 0.0),
               "log1p01": (0.0, 1.0), "sigmoid": (-8.0, 8.0)}


def calibrate(min_time):
    """The cost of each vector function per element (s), per dtype, and a cache of copy
    bandwidths (bytes/s) per (dtype, N), filled by floors()."""
    isa = bce_ext._C.cpu_isa()
    cost = {}
    if isa in ("avx2", "avx512"):
        for dtype in (torch.float32, torch.float64):
            one = torch.zeros(1, dtype=dtype)
            for name, (lo, hi) in MATH_DOMAIN.items():
                m = 1 << 15
                x = lo + (hi - lo) * torch.rand(m, dtype=dtype)
                fixed = timer(lambda name=name, one=one: bce_ext._C._cpu_math(isa, name, one),
                              min_time / 4)
                full = timer(lambda name=name, x=x: bce_ext._C._cpu_math(isa, name, x),
                             min_time / 4)
                cost[(dtype, name)] = max(full - fixed, 0.0) / m
    return {"bandwidth": {}, "math": cost, "isa": isa, "min_time": min_time}


def copy_bandwidth(calib, dtype, n):
    key = (dtype, n)
    if key not in calib["bandwidth"]:
        src, dst = torch.rand(n).to(dtype), torch.empty(n, dtype=dtype)
        seconds = timer(lambda: dst.copy_(src), calib["min_time"])
        calib["bandwidth"][key] = 2 * src.element_size() * n / seconds
    return calib["bandwidth"][key]


def floors(calib, loss, dtype, reduction, weight_kind, mode, n, threads):
    """(memory floor, math floor) in seconds of one case; math None where not measured."""
    size = torch.finfo(dtype).bits // 8
    per_pass = 2 * size + (size if weight_kind == "full" else 0)  # read x, t (and w)
    fwd = per_pass + (size if reduction == "none" else 0)  # the 'none' loss written
    # backward: read x, t (w), the incoming 'none' gradient, write grad_input
    bwd = per_pass + (size if reduction == "none" else 0) + size
    nbytes = (fwd + (bwd if mode == "fwd+bwd" else 0)) * n
    passes = ("fwd", "bwd") if mode == "fwd+bwd" else ("fwd",)
    math_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    try:
        per_element = sum(calib["math"][(math_dtype, f)] for p in passes
                          for f in MATH_PER_ELEMENT[(loss, p)])
    except KeyError:
        per_element = None
    math = None if per_element is None else per_element * n / threads
    return nbytes / copy_bandwidth(calib, dtype, n), math


def fmt_ms(s):
    return f"{s * 1e3:.3f}"


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        with open(args.render) as fh:
            data = json.load(fh)
        for r in data["results"]:  # results saved under older names
            r["loss"] = canonical(r["loss"])
        names = list(dict.fromkeys(k for r in data["results"] for k in r["times"]))
        with open(os.path.join(os.path.dirname(args.render), "results.md"), "w") as fh:
            fh.write(render(data["results"], names, data["meta"]))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    losses = [entry.name for entry in parse_losses(args.losses)]
    dtypes = [d for d in args.dtypes.split(",") if d]
    reductions = [r for r in args.reductions.split(",") if r]
    weights = [w for w in args.weights.split(",") if w]
    modes = [m for m in args.modes.split(",") if m]
    names = []
    for impl in [i for i in args.impls.split(",") if i]:
        if impl == "bce_ext" and args.isas:
            names += [f"bce_ext[{isa}]" for isa in args.isas.split(",") if isa]
        else:
            names.append(impl)
    default_isa = bce_ext._C.cpu_isa()
    impls = Impls()
    os.makedirs(args.out, exist_ok=True)

    try:
        from tqdm import tqdm
    except ImportError:  # progress is optional
        def tqdm(it, **_):
            return it

    calib = calibrate(args.min_time) if args.device == "cpu" and not args.no_limits else None
    cases = [(loss, dt, red, wk, mode, n) for loss in losses for dt in dtypes for red in reductions
             for wk in weights for mode in modes for n in sizes
             if not (wk == "pos_weight" and "pos_weight" not in get(loss).tensors)
             and not (wk != "none" and not get(loss).takes_weight)]
    results = [None] * len(cases)
    for rnd in range(args.rounds):
        for i, (loss, dt, red, wk, mode, n) in enumerate(tqdm(cases, desc=f"round {rnd + 1}")):
            # the same inputs in every round
            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + i)
            x, t, kw = make_case(loss, n, DTYPES[dt], wk, args.device, gen)
            row = results[i]
            if row is None:
                row = results[i] = {"loss": loss, "dtype": dt, "reduction": red, "weight": wk,
                                    "mode": mode, "n": x.numel(), "times": {}}
            for impl in names:
                if not set_isa(impl):
                    continue  # this machine cannot run that ISA
                try:
                    took = time_case(impls, loss, impl, mode, x, t, kw, red, args.device,
                                     args.min_time)
                    row["times"][impl] = min(took, row["times"].get(impl, took))
                except Exception as e:  # e.g. an unsupported dtype in one implementation
                    print(f"  {impl} {loss} {dt} {red} {wk} {mode} n={n}: {type(e).__name__}: "
                          f"{e}", file=sys.stderr)
                finally:
                    bce_ext._C._set_cpu_isa(default_isa)
            if rnd > 0:
                continue
            if mode == "fwd+bwd":
                row["touch"] = time_touch(x.numel(), DTYPES[dt], args.device, args.min_time)
            if calib is not None:
                row["floors"] = floors(calib, loss, DTYPES[dt], red, wk, mode, x.numel(),
                                       torch.get_num_threads())
    results = [r for r in results if r is not None]

    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpu_isa": default_isa, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "device": args.device, "when": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    if calib is not None:
        meta["copy_GBps"] = {f"{str(d).replace('torch.', '')} {n:.0e}": b / 1e9
                             for (d, n), b in calib["bandwidth"].items()}
        meta["math_ns"] = {f"{str(d).replace('torch.', '')} {name}": c * 1e9
                           for (d, name), c in calib["math"].items()}
    if args.device == "cpu":
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    meta["machine"] = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    md = render(results, names, meta)
    print(md)
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump({"meta": meta, "results": results}, fh, indent=1)
    if not args.no_plot:
        plot(results, names, args.out, meta)
    print(f"wrote {args.out}/results.md, results.json" + ("" if args.no_plot else " and plots"))


def render(results, names, meta):
    lines = [f"# bce_ext benchmark ({meta['device']}: {meta['machine']}, {meta['threads']} "
             f"threads, torch {meta['torch']}, bce_ext CPU loops {meta['cpu_isa']}, "
             f"{meta['when']}, min of {meta.get('rounds', 1)} rounds)", "",
             "Median times in ms; ns/el = ns per element; xE = speed-up against eager, xC = "
             "against torch.compile (above 1: faster). 'touch' (fwd+bwd only) = allocating and "
             "writing one fresh tensor of N elements, a cost every fwd+bwd figure includes (the "
             "new input.grad).",
             ""]
    if "copy_GBps" in meta:
        math = ", ".join(f"{k} {v:.3f}" for k, v in meta["math_ns"].items())
        copy = ", ".join(f"{k} {v:.1f}" for k, v in meta["copy_GBps"].items())
        lines += ["Floors: 'mem floor' = the bytes the case must move at the copy bandwidth of a "
                  "warm buffer of its size and dtype (copy_ at this thread count, GB/s: "
                  f"{copy}); "
                  "'math floor' = its vector logs and exps at their measured cost (ns per element, "
                  f"one thread, in cache: {math}) divided by the threads; 'x floor' = bce_ext's "
                  "time over the larger of the two.", ""]
    lines += summary(results, names)
    groups = {}
    for r in results:
        groups.setdefault((r["loss"], r["dtype"], r["reduction"], r["weight"], r["mode"]),
                          []).append(r)
    for (loss, dt, red, wk, mode), rows in groups.items():
        lines.append(f"## {loss}, {dt}, reduction={red}, weight={wk}, {mode}")
        lines.append("")
        head = ["N"]
        for impl in names:
            head += [f"{impl} ms", "ns/el"]
            if impl.startswith("bce_ext"):
                head += ["xE", "xC"]
        if mode == "fwd+bwd":
            head.append("touch ms")
        if any("floors" in r for r in rows):
            head += ["mem floor ms", "math floor ms", "x floor"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in rows:
            cells = [f"{r['n']:.0e}"]
            ts = r["times"]
            for impl in names:
                s = ts.get(impl)
                cells += ["-" if s is None else fmt_ms(s),
                          "-" if s is None else f"{s / r['n'] * 1e9:.2f}"]
                if impl.startswith("bce_ext"):
                    for ref in ("eager", "compiled"):
                        cells.append(f"{ts[ref] / s:.1f}" if s and ts.get(ref) else "-")
            if mode == "fwd+bwd":
                cells.append(fmt_ms(r["touch"]))
            if "floors" in r:
                mem, math = r["floors"]
                ours = next((v for k, v in ts.items() if k.startswith("bce_ext")), None)
                floor = max(mem, math or 0.0)
                cells += [fmt_ms(mem), "-" if math is None else fmt_ms(math),
                          f"{ours / floor:.1f}" if ours else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def summary(results, names):
    """Lines of a summary table: per loss, dtype, pass and N, the range over the reductions and
    weights of bce_ext's speed-up against eager and compile and of its time over the floor."""
    ours = next((n for n in names if n.startswith("bce_ext")), None)
    if ours is None or len(results) < 2:
        return []
    groups = {}
    for r in results:
        t = r["times"]
        if ours not in t:
            continue
        g = groups.setdefault((r["loss"], r["dtype"], r["mode"], r["n"]), {"xE": [], "xC": [],
                                                                          "floor": []})
        for key, ref in (("xE", "eager"), ("xC", "compiled")):
            if t.get(ref):
                g[key].append(t[ref] / t[ours])
        if "floors" in r:
            mem, math = r["floors"]
            g["floor"].append(t[ours] / max(mem, math or 0.0))
    lines = ["## Summary: range over the reductions and weights", "",
             "| loss | dtype | pass | N | cases | vs eager | vs compile | x floor |",
             "|---|---|---|---|---|---|---|---|"]

    def span(v, fmt="{:.1f}x"):
        return "-" if not v else (fmt.format(min(v)) + " to " + fmt.format(max(v)))

    for (loss, dt, mode, n), g in groups.items():
        lines.append(f"| {loss} | {dt} | {mode} | {n:.0e} | {max(map(len, g.values()))} | "
                     f"{span(g['xE'])} | {span(g['xC'])} | {span(g['floor'], '{:.1f}')} |")
    return lines + [""]


def plot(results, names, out, meta):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots", file=sys.stderr)
        return
    groups = {}
    for r in results:
        groups.setdefault((r["loss"], r["dtype"], r["reduction"], r["weight"], r["mode"]),
                          []).append(r)
    for (loss, dt, red, wk, mode), rows in groups.items():
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for impl in names:
            pts = [(r["n"], r["times"][impl] / r["n"] * 1e9) for r in rows if impl in r["times"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=impl)
        if mode == "fwd+bwd":
            ax.plot([r["n"] for r in rows], [r["touch"] / r["n"] * 1e9 for r in rows], ls=":",
                    color="gray", label="touch (fresh N-element tensor)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (elements)")
        ax.set_ylabel("time per element (ns)")
        ax.set_title(f"{loss} {dt} {red} weight={wk} {mode}\n{meta['machine']}, "
                     f"{meta['threads']} threads", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = f"{loss}_{dt}_{red}_{wk}_{mode.replace('+', '')}.png"
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
