"""What every benchmark script shares about the losses: the list (bce_ext/_registry.py, names and
aliases), each loss's baseline (the function it replaces, or its formula in torch ops from
tests/references.py where that library is not installed) and its inputs.

    from _losses import LOSSES, baseline, inputs, parse_losses
"""
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))  # references.py
sys.path.insert(0, ROOT)  # this checkout's bce_ext, not an installed one

from references import reference  # noqa: E402

from bce_ext._registry import LOSSES, canonical, get  # noqa: E402,F401

__all__ = ["DRAW", "LOSSES", "backward_seed", "baseline", "canonical", "get", "inputs",
           "parse_losses", "shape_of", "write_report"]

# The GPU scripts' inputs from uniform [0, 1) values u drawn on the device, by the input's domain.
DRAW = {"probability": lambda u: u, "logit": lambda u: 16 * u - 8}

# Losses whose users train on hard 0/1 targets, mostly 0 (a detector's classes), or on IoU scores
# of the positives and 0 elsewhere (10% positives in both): the benchmarks time those; the others
# get soft targets (torch.rand).
HARD_TARGETS = {"sigmoid_focal_loss"}
SPARSE_SCORE_TARGETS = {"varifocal_loss", "quality_focal_loss"}
# The classes of a loss that sums each row's (the registry's sums_rows): COCO's 80, where they
# divide the size.
CLASSES = 80


def parse_losses(text):
    """The entries of a comma-separated list of loss names or aliases ("all": every loss)."""
    if text == "all":
        return list(LOSSES)
    return [get(name) for name in text.split(",") if name]


def baseline(entry):
    """The eager function bce_ext's loss is timed against."""
    return reference(entry.name)


def shape_of(entry, n):
    """The shape of a timed case of n elements: (n,), or rows of classes for a loss that sums each
    row (CLASSES of them where they divide n, else 64; a power of two has 64)."""
    if not entry.sums_rows:
        return (n,)
    classes = CLASSES if n % CLASSES == 0 else 64
    return (n // classes, classes)


def backward_seed(fn, x, t, reduction, **kwargs):
    """The incoming gradient of a timed forward+backward of fn: None for a reduction, else ones of
    the loss's shape (one per row for a loss that sums rows), from one call without a graph."""
    if reduction != "none":
        return None
    with torch.no_grad():
        return torch.ones_like(fn(x, t, reduction=reduction, **kwargs))


def inputs(entry, shape, gen, device="cpu", dtype=torch.float32):
    """(input, target) of a timed case: probabilities in [0, 1) or logits 3 * randn by the
    input's domain; soft targets, or those of HARD_TARGETS and SPARSE_SCORE_TARGETS."""
    if len(shape) == 1:
        shape = shape_of(entry, shape[0])
    x = torch.rand(shape, generator=gen) if entry.input == "probability" else \
        3 * torch.randn(shape, generator=gen)
    t = torch.rand(shape, generator=gen)
    if entry.name in HARD_TARGETS:
        t = (t < 0.1).float()
    elif entry.name in SPARSE_SCORE_TARGETS:
        t = torch.where(t < 0.1, torch.rand(shape, generator=gen), torch.zeros_like(t))
    return x.to(device=device, dtype=dtype), t.to(device=device, dtype=dtype)


def write_report(out, meta, rows, lines):
    """A benchmark's results into the folder `out`: results.json (meta and rows) and results.md
    (the table's lines), which is also printed."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
