"""Two or more builds of bce_ext side by side, in one run: each build is timed in its own
subprocess (its checkout first on sys.path), the same cases, the same inputs, one after the other,
so that a before/after comparison of a kernel change runs on one machine under the same load.

    python benchmarks/compare_builds.py --builds /work/main,. --dtype float64 \\
        --sizes 1e5,1e7 --reductions mean,none --modes fwd,fwd+bwd --threads 1

Cases: every --losses entry (names or aliases of bce_ext/_registry.py, or all; probabilities or
logits 3 * randn by the loss's input, soft targets torch.rand) times sizes, modes and reductions.
'fwd' times the loss; 'fwd+bwd' the loss and .backward() into a fresh input.grad (set to None
first). Each figure is the median of torch.utils.benchmark's blocked_autorange at --threads
threads; with --rounds R the builds take turns R times and each case keeps its smallest median (on
a shared machine, the least disturbed round). --eager adds PyTorch's own function and
--compiled-sizes torch.compile of it at those sizes (each case compiles once, untimed), both timed
once, in the first build's first round. Prints one markdown table: ms per call, and each build's
speedup over the first.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _registry():
    """This checkout's list of losses, loaded from its file: a build being compared may be older
    (no registry, other names), and its bce_ext is the one imported."""
    path = os.path.join(HERE, os.pardir, "bce_ext", "_registry.py")
    spec = importlib.util.spec_from_file_location("bce_ext_registry", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(args):
    registry = _registry()
    names = registry.names() if args.losses == "all" else args.losses.split(",")
    for loss in (registry.canonical(name) for name in names if name):
        for n in args.sizes.split(","):
            for mode in args.modes.split(","):
                for reduction in args.reductions.split(","):
                    yield loss, int(float(n)), mode, reduction


def worker(args):
    """Times every case with the bce_ext of args.worker (and PyTorch's where asked); prints JSON."""
    root = os.path.abspath(args.worker)
    sys.path.insert(0, root)
    import torch
    from torch.utils import benchmark

    import bce_ext
    assert os.path.abspath(bce_ext.__file__).startswith(root + os.sep), bce_ext.__file__

    registry = _registry()

    def reference(name):
        # Looked up only when called (only the first build times the reference): the function
        # the loss replaces, or this checkout's formula of it (tests/references.py).
        sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))
        from references import reference
        return reference(name)
    dtype = getattr(torch, args.dtype)
    compiled_sizes = {int(float(n)) for n in args.compiled_sizes.split(",") if n}
    out = {"isa": bce_ext._C.cpu_isa(), "file": bce_ext.__file__, "times": {}}
    for loss, n, mode, reduction in cases(args):
        ours, logits = getattr(bce_ext, loss), registry.get(loss).input == "logit"
        gen = torch.Generator().manual_seed(0)
        x = (3 * torch.randn(n, generator=gen) if logits else torch.rand(n, generator=gen)
             .clamp(1e-6, 1 - 1e-6)).to(dtype).requires_grad_(mode == "fwd+bwd")
        t = torch.rand(n, generator=gen).to(dtype)
        g = torch.ones(n, dtype=dtype) if reduction == "none" else torch.ones((), dtype=dtype)
        impls = {"bce_ext": ours}
        if args.eager:
            impls["eager"] = reference(loss)
        if n in compiled_sizes:
            impls["compiled"] = torch.compile(reference(loss))
        for name, fn in impls.items():
            stmt = ("x.grad = None; fn(x, t, reduction=r).backward(g)" if mode == "fwd+bwd"
                    else "fn(x, t, reduction=r)")
            env = {"fn": fn, "x": x, "t": t, "g": g, "r": reduction}
            exec(stmt, env)  # warm up (and compile)
            timer = benchmark.Timer(stmt, globals=env, num_threads=args.threads)
            median = timer.blocked_autorange(min_run_time=args.min_time).median
            out["times"][f"{name}|{loss}|{n}|{mode}|{reduction}"] = median
    print(json.dumps(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--builds", default=".",
                   help="checkouts with a built bce_ext, comma-separated, each optionally @isa")
    p.add_argument("--losses", default="all")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--sizes", default="1e5,1e7")
    p.add_argument("--modes", default="fwd,fwd+bwd")
    p.add_argument("--reductions", default="mean,none")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate the builds this many times; each case's minimum of the medians")
    p.add_argument("--eager", action="store_true")
    p.add_argument("--compiled-sizes", default="")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    # "path@isa" times that build with BCE_EXT_CPU_ISA=isa (the portable loops of one build,
    # "@scalar", are the before of a vectorisation).
    specs = [b.partition("@") for b in args.builds.split(",")]
    builds = [os.path.abspath(path) for path, _, _ in specs]
    results = [None] * len(builds)
    for round_ in range(args.rounds):
        for k, build in enumerate(builds):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", build] + [
                a for a in (argv if argv is not None else sys.argv[1:])]
            if k > 0 or round_ > 0:  # PyTorch's own functions once, with the first build
                cmd = [a for a in cmd if a != "--eager"]
                if "--compiled-sizes" in cmd:
                    i = cmd.index("--compiled-sizes")
                    del cmd[i:i + 2]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            if specs[k][2]:
                env["BCE_EXT_CPU_ISA"] = specs[k][2]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"round {round_} build {k}: {got['file']} ({got['isa']})", file=sys.stderr)
            if results[k] is None:
                results[k] = got
            else:  # the least disturbed round of each case
                for key, v in got["times"].items():
                    results[k]["times"][key] = min(results[k]["times"][key], v)
    extra = [name for name in ("eager", "compiled")
             if any(key.startswith(name + "|") for key in results[0]["times"])]
    head = ["loss", "N", "mode", "reduction"] + [f"build {k} ms" for k in range(len(builds))]
    head += [f"build {k} speedup" for k in range(1, len(builds))] + [f"{e} ms" for e in extra]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for loss, n, mode, reduction in cases(args):
        key = f"{loss}|{n}|{mode}|{reduction}"
        ms = [r["times"]["bce_ext|" + key] * 1e3 for r in results]
        row = [loss, f"{n:.0e}", mode, reduction] + [f"{v:.3f}" for v in ms]
        row += [f"{ms[0] / v:.2f}x" for v in ms[1:]]
        row += [f"{results[0]['times'][e + '|' + key] * 1e3:.3f}"
                if e + "|" + key in results[0]["times"] else "" for e in extra]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
