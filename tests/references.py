"""The reference of each loss that replaces a library function: that function where its library is
installed, else its formula in torch ops (FORMULA in the loss's own test file), and the pieces
those formulas share (an exact cross entropy, mmdetection's reduction). The tests, the
distributed cases and the benchmarks read them from here (bce_ext itself ships no formula).

    reference("sigmoid_focal_loss")  # torchvision.ops.sigmoid_focal_loss, or its FORMULA
"""
import importlib

import torch
import torch.nn.functional as F

import bce_ext._registry as registry


def exact_cross_entropy(x, t):
    """BCE with logits element by element without cancellation: (1 - t) x + log1p(exp(-x)) for
    x >= 0, -t x + log1p(exp(x)) for x < 0 (in elementary ops, so nested forward AD works, and
    with the right derivative at x = 0). F.binary_cross_entropy_with_logits, (1 - t) x -
    log_sigmoid(x), loses digits where the loss is small against |x| (t = 1e-7, x = -88: the
    focal loss's target gradient 0.02198393352570 for 0.02198393353667, in float64).
    Each branch reads x through torch.where, not clamp: clamp's derivative at its bound (here
    x = 0) changed between torch releases (1 up to 2.13, 0 in 2.14), where's has not."""
    positive, zero = x >= 0, torch.zeros_like(x)
    x_pos, x_neg = torch.where(positive, x, zero), torch.where(positive, zero, x)
    return torch.where(positive, (1 - t) * x + torch.log1p(torch.exp(-x_pos)),
                       -t * x + torch.log1p(torch.exp(x_neg)))


def weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    """mmdetection's reduction of an element loss (mmdet/models/losses/utils.py)."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:  # its reduce_loss: F._Reduction's ValueError for an unknown reduction
        return (loss, loss.mean(), loss.sum())[F._Reduction.get_enum(reduction)]
    if reduction == "mean":
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    if reduction != "none":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def reference(name):
    """The function the loss called `name` (or an alias) replaces: its library's, or, where that
    library is not installed, its formula FORMULA in the loss's own test file
    (tests/test_<name>.py)."""
    entry = registry.get(name)
    replaced = entry.replaced()
    if replaced is not None:
        return replaced
    return importlib.import_module(f"test_{entry.name}").FORMULA
