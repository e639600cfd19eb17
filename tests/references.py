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


def varifocal_loss_formula(pred, target, weight=None, alpha=0.75, gamma=2.0, iou_weighted=True,
                           reduction="mean", avg_factor=None):
    """mmdetection's varifocal_loss (mmdet/models/losses/varifocal_loss.py) in torch ops."""
    assert pred.size() == target.size()
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = target * (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    else:
        focal_weight = (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def composite_varifocal_loss(pred, target, weight=None, alpha=0.75, gamma=2.0,
                             iou_weighted=True, reduction="mean", avg_factor=None):
    """mmdetection's formula with its cross entropy written exactly, the suites' oracle of the
    varifocal loss: (1 - t) x + log1p(exp(-x)) for x >= 0, -t x + log1p(exp(x)) for x < 0, in
    elementary ops (nested forward AD: see composite_sigmoid_focal_loss). mmdetection's
    F.binary_cross_entropy_with_logits, (1 - t) x - log_sigmoid(x), loses digits to cancellation
    where the loss is small against |x| (t = 1e-12, x = -1e4: 9.99898e-9 for 1e-8, in float64),
    which a loss weighted by t or 1 does not hide."""
    if not pred.is_floating_point() or pred.size() != target.size():  # mmdetection's errors
        return varifocal_loss_formula(pred, target, weight, alpha, gamma, iou_weighted, reduction,
                                      avg_factor)
    p = pred.sigmoid()
    target = target.type_as(pred)
    positive = (target > 0.0).to(pred.dtype)
    focal_weight = (target if iou_weighted else 1.0) * positive + \
        alpha * (p - target).abs().pow(gamma) * (1 - positive)
    ce = torch.where(pred >= 0,
                     (1 - target) * pred + torch.log1p(torch.exp(-pred.clamp_min(0))),
                     -target * pred + torch.log1p(torch.exp(pred.clamp_max(0))))
    return weight_reduce_loss(ce * focal_weight, weight, reduction, avg_factor)


# The formula of each loss whose library the tests may lack.
FORMULAS = {"sigmoid_focal_loss": sigmoid_focal_loss_formula,
            "varifocal_loss": varifocal_loss_formula}


def reference(name):
    """The function the loss called `name` (or an alias) replaces: its library's, or its formula
    here where that library is not installed."""
    entry = registry.get(name)
    return entry.replaced() or FORMULAS[entry.name]


torchvision_sigmoid_focal_loss = reference("sigmoid_focal_loss")
