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


def composite_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision's formula written without its cancellations (the cross entropy as
    exact_cross_entropy, 1 - p_t as below), the suites' oracle of the focal loss; its errors are
    torchvision's (the literal formula's)."""
    tensors = isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)
    if not tensors or not (inputs.is_floating_point() and targets.is_floating_point()) or \
            inputs.shape != targets.shape or reduction not in ("none", "mean", "sum"):
        return reference("sigmoid_focal_loss")(inputs, targets, alpha, gamma, reduction)
    p = torch.sigmoid(inputs)
    ce_loss = exact_cross_entropy(inputs, targets)
    # 1 - p_t as t (1 - p) + (1 - t) p, with 1 - p = sigmoid(-x): 1 - p_t cancels where p_t is
    # close to 1 (x = -88, t = 1e-7: relative 1e-9 in float64).
    one_minus_p_t = targets * torch.sigmoid(-inputs) + (1 - targets) * p
    loss = ce_loss * (one_minus_p_t ** gamma)
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
    if not (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor)) or \
            not pred.is_floating_point() or pred.size() != target.size():  # mmdetection's errors
        return varifocal_loss_formula(pred, target, weight, alpha, gamma, iou_weighted, reduction,
                                      avg_factor)
    p = pred.sigmoid()
    target = target.type_as(pred)
    positive = (target > 0.0).to(pred.dtype)
    focal_weight = (target if iou_weighted else 1.0) * positive + \
        alpha * (p - target).abs().pow(gamma) * (1 - positive)
    ce = exact_cross_entropy(pred, target)
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
