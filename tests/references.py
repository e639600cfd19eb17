"""The reference of each loss that replaces a library function: that function where its library is
installed, else its formula written here in torch ops (float64 in the tests). The tests, the
distributed cases and the benchmarks read them from here (bce_ext itself ships no formula).

    reference("sigmoid_focal_loss")  # torchvision.ops.sigmoid_focal_loss, or the formula below
"""
import torch
import torch.nn.functional as F

import bce_ext._registry as registry


def sigmoid_focal_loss_formula(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (torchvision 0.29) in torch ops."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    loss = ce * (1 - (p * targets + (1 - p) * (1 - targets))) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    # torchvision's order: only the reduction asked for (the benchmarks time this as eager), then
    # its error, after the work as there.
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction "
                     "modes: 'none', 'mean', 'sum'")


def composite_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision's formula with the cross entropy in elementary ops (max(x, 0) - x t +
    log1p(exp(-|x|))): F.binary_cross_entropy_with_logits raises "ZeroTensors are immutable" under
    jacfwd(jacfwd), a PyTorch limitation, so the nested forward-mode transforms compare to this."""
    p = torch.sigmoid(inputs)
    ce_loss = inputs.clamp_min(0) - inputs * targets + torch.log1p(torch.exp(-inputs.abs()))
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


# The formula of each loss whose library the tests may lack.
FORMULAS = {"sigmoid_focal_loss": sigmoid_focal_loss_formula}


def reference(name):
    """The function the loss called `name` (or an alias) replaces: its library's, or its formula
    here where that library is not installed."""
    entry = registry.get(name)
    return entry.replaced() or FORMULAS[entry.name]


torchvision_sigmoid_focal_loss = reference("sigmoid_focal_loss")
