"""One call of each loss's forward and forward+backward at N = 2^26 (float32 and bfloat16, 'mean'
and 'none'), for Nsight Compute to profile bce_ext's kernels (why a bandwidth target is missed):

    ncu --clock-control none --kernel-name-base demangled --kernel-name regex:bce_ext::cuda \\
        --section SpeedOfLight --section Occupancy python benchmarks/gpu_profile.py

The inputs are random (never zeros: they can run faster than real data). Each case runs once: ncu
replays every kernel it profiles, from a flushed cache, so no warm-up is needed.
"""
import torch
from _losses import DRAW, LOSSES, shape_of

N = 1 << 26


def main():
    torch.manual_seed(0)
    for entry in LOSSES:
        name, fn, draw = entry.name, entry.function, DRAW[entry.input]
        for dtype in (torch.float32, torch.bfloat16):
            x = draw(torch.rand(shape_of(entry, N), device="cuda")).to(dtype).requires_grad_()
            t = torch.rand(x.shape, device="cuda").to(dtype)
            for reduction in ("mean", "none"):
                out = fn(x, t, reduction=reduction)
                (out.sum() if reduction == "none" else out).backward()
                x.grad = None
                torch.cuda.synchronize()
                print(name, dtype, reduction, "done", flush=True)


if __name__ == "__main__":
    main()
