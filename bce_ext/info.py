"""What this bce_ext was built with, and a quick self-check of it against PyTorch.

    python -m bce_ext.info    # exit status 1 when any self-check line FAILs
"""
import argparse
import itertools
import sys
import time

import torch

import bce_ext
from bce_ext import _C
from bce_ext._registry import LOSSES

REDUCTIONS = ("none", "mean", "sum")
# Relative tolerance, scaled by the largest reference value: float32 and float64 differ from torch
# by the order of operations only; half types are computed in float32 and rounded once on output.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
SHAPE = (67, 33)  # not a multiple of any vector width, so the kernels' tails run too


def _cpu_model():
    """The processor's name as the OS reports it (figures name the machine they ran on)."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_info():
    """(label, value) pairs describing this build and machine."""
    gpu = torch.cuda.is_available()
    gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return [
        ("bce_ext", f"{bce_ext.__version__} ({bce_ext.__file__})"),
        ("torch", f"{torch.__version__} (CUDA {torch.version.cuda})"),
        ("CUDA kernels", f"compiled for {_C.cuda_archs}" if _C.with_cuda
         else "not compiled (built where a GPU is visible, or with FORCE_CUDA=1)"),
        ("GPU visible", gpus if gpu else "no"),
        ("CPU", _cpu_model()),
        ("CPU kernels", _C.cpu_isa()),
        ("torch threads", str(torch.get_num_threads())),
    ]


def check_devices():
    """Devices whose kernels can be checked, and a note for a GPU bce_ext cannot use."""
    if not torch.cuda.is_available():
        return ["cpu"], None
    if not _C.with_cuda:
        return ["cpu"], ("a GPU is visible, but bce_ext has no CUDA kernels (rebuild with "
                         "FORCE_CUDA=1): cuda not checked")
    return ["cpu", "cuda"], None


# How each loss's inputs are drawn from uniform [0, 1) values u, by its input's domain.
# Probabilities kept clear of 0 and 1, where the log clamps make the comparison one of inf and -100.
DRAW = {"probability": lambda u: u * 0.98 + 0.01, "logit": lambda u: 16 * u - 8}
# Other values of its scalar parameters, for the loss that takes no weight (its "weighted" case).
OTHER_PARAMS = {"alpha": 0.75, "gamma": 0.5}


def _grads(fn, x, t, reduction, g, **kwargs):
    x, t = x.detach().requires_grad_(), t.detach().requires_grad_()
    out = fn(x, t, reduction=reduction, **kwargs)
    return (out,) + torch.autograd.grad(out, (x, t), g)


def check_case(loss, device, dtype, reduction, weighted, gen):
    """Max error / tolerance over forward, grad_input and grad_target (<= 1 passes), and the names
    of what failed."""
    ours, theirs = loss.function, loss.replaced()
    x = DRAW[loss.input](torch.rand(SHAPE, generator=gen)).to(device, dtype)
    t = torch.rand(SHAPE, generator=gen).to(device, dtype)
    kw = {}
    if weighted and not loss.tensors:  # no weight: other values of its parameters
        kw = {name: OTHER_PARAMS[name] for name, _ in loss.params}
    elif weighted:
        # One weight per class, or per row for a loss that sums the classes of each row.
        per = SHAPE[0] if loss.sums_rows else SHAPE[-1]
        kw["weight"] = (torch.rand(per, generator=gen) + 0.5).to(device, dtype)
        if "pos_weight" in loss.tensors:
            kw["pos_weight"] = (3 * torch.rand(SHAPE[-1], generator=gen)).to(device, dtype)
    g = torch.randn(SHAPE if reduction == "none" else (), generator=gen).to(device, dtype)
    got = _grads(ours, x, t, reduction, g, **kw)
    # Half types: the reference is torch in float32 on the same (upcast) values, which is what
    # bce_ext computes; torch's own half arithmetic is less accurate than the result it checks.
    up = torch.float64 if dtype == torch.float64 else torch.float32
    ref = _grads(theirs, x.to(up), t.to(up), reduction, g.to(up),
                 **{k: v.to(up) if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
    worst, failed = 0.0, []
    for name, a, b in zip(("forward", "grad_input", "grad_target"), got, ref):
        if a.dtype != dtype or a.shape != b.shape:
            failed.append(f"{name} is {a.dtype} {tuple(a.shape)}, not {dtype} {tuple(b.shape)}")
            continue
        err = (a.to(up) - b).abs().max().item() if b.numel() else 0.0
        # Relative to the largest value, but never below the dtype's own spacing near 0 (a 'mean'
        # gradient of float16 can be subnormal there).
        tol = max(RTOL[dtype] * b.abs().max().item(), torch.finfo(dtype).smallest_normal * 2 ** -10
                  if dtype == torch.float16 else 1e-30)
        ratio = err / tol
        worst = max(worst, ratio)
        if not ratio <= 1.0:  # NaN fails too
            failed.append(name)
    return worst, failed


def self_check(print_fn=print, seed=0):
    """Runs every case, prints a PASS/FAIL line for each; True when all pass."""
    gen = torch.Generator().manual_seed(seed)
    devices, note = check_devices()
    if note:
        print_fn(f"NOTE {note}")
    ok = True
    for loss in LOSSES:
        if loss.replaced() is None:
            library = loss.replaces.partition(".")[0]
            print_fn(f"SKIP {loss.name}: {library} is not installed (its oracle)")
    checked = [loss for loss in LOSSES if loss.replaced() is not None]
    for loss, device, dtype, reduction, weighted in itertools.product(
            checked, devices, RTOL, REDUCTIONS, (False, True)):
        try:
            worst, failed = check_case(loss, device, dtype, reduction, weighted, gen)
        except Exception as e:  # a crash of one case is a FAIL line, not the end of the check
            reason = str(e).partition("\n")[0]
            worst, failed = float("nan"), [f"{type(e).__name__}: {reason}"]
        ok = ok and not failed
        varied = ", ".join(name for name, _ in loss.params) if not loss.tensors else "weights"
        print_fn(f"{loss.name:32} {device:4} {str(dtype).replace('torch.', ''):8} {reduction:4} "
                 f"{varied if weighted else 'defaults':16} "
                 f"forward+grads err/tol {worst:.2g}  "
                 + ("PASS" if not failed else "FAIL " + "; ".join(failed)))
    return ok


def main(argv=None):
    """Prints the build information and the self-check; returns the exit status."""
    argparse.ArgumentParser(prog="python -m bce_ext.info", description=__doc__.split("\n\n")[0]
                            ).parse_args(argv)
    for label, value in build_info():
        print(f"{label + ':':21}{value}")
    start = time.perf_counter()
    ok = self_check()
    print(f"self-check against torch {torch.__version__}: {'PASS' if ok else 'FAIL'} "
          f"({time.perf_counter() - start:.2f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
