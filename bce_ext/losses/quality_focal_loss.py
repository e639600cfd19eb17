"""The quality focal loss: mmdetection's quality_focal_loss, quality_focal_loss_tensor_target,
quality_focal_loss_with_prob and QualityFocalLoss, on bce_ext's op.

The op (torch.ops.bce_ext.quality_focal_loss) computes the element losses
BCE(sigmoid(x), y) * |y - sigmoid(x)| ** beta in one fused pass, weighted and reduced like the
other losses. mmdetection sums each row's elements over the classes (dim 1), then weights the
rows and reduces them: its 'sum' and 'mean' are the op's weighted 'sum' (with the row weight
broadcast along the classes), divided for 'mean' by the number of rows or by avg_factor + eps;
its 'none' is the op's 'none' summed over dim 1 (that one call keeps the element losses for the
sum). A (labels, scores) target is laid out as the dense target first (label C, the class count,
is the background).
"""
import math

import torch
import torch.nn.functional as F
from torch.nn import _reduction as _Reduction
from torch.overrides import handle_torch_function, has_torch_function_variadic

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import ArgumentError, NotScriptable, check_avg_factor, over_avg_factor, scalar

__all__ = ["QualityFocalLoss", "quality_focal_loss", "quality_focal_loss_elements",
           "quality_focal_loss_tensor_target", "quality_focal_loss_with_prob"]

op = torch.ops.bce_ext.quality_focal_loss.default
_SUM = _Reduction.get_enum("sum")


def _dense_target(pred, target):
    """The dense target of a (labels, scores) pair: score i at (i, label i) where 0 <= label i <
    C, 0 elsewhere (a background or negative label leaves its row 0). Differentiable in scores."""
    if not isinstance(target, (tuple, list)) or len(target) != 2:
        raise ArgumentError("quality_focal_loss: target must be a tensor or a (labels, scores) "
                            "pair")  # mmdetection asserts len(target) == 2
    label, score = target
    if pred.dim() != 2 or label.shape != pred.shape[:1] or score.shape != pred.shape[:1]:
        raise ArgumentError(f"quality_focal_loss: pred must be (N, C) with labels and scores of "
                            f"shape (N,), got {tuple(pred.shape)}, {tuple(label.shape)} and "
                            f"{tuple(score.shape)}")
    classes = torch.arange(pred.size(1), device=pred.device)
    return torch.where(label.unsqueeze(1) == classes, score.to(pred.dtype).unsqueeze(1),
                       pred.new_zeros(()))


def _element_losses_activated(pred, target, beta):
    """mmdetection's formula on probabilities (activated=True), in torch ops: BCE on pred itself
    (PyTorch's, its log clamped at -100) times |y - pred| ** beta; the target is a constant zero
    where it is 0, as mmdetection's."""
    y = target * (target != 0)
    return F.binary_cross_entropy(pred, y, reduction="none") * (y - pred).abs().pow(beta)


def _checked(pred, target):
    if pred.size() != target.size():  # mmdetection asserts it
        raise ArgumentError(f"quality_focal_loss: pred and target must have the same size, got "
                            f"{tuple(pred.size())} and {tuple(target.size())}")
    return target.type_as(pred)


def quality_focal_loss_elements(pred, target, weight=None, reduction="mean", beta=2.0):
    """The op's loss, element by element: every class's loss (no sum over the classes), the
    weight broadcast against ``pred`` as the other losses' is, 'mean' over the elements. With
    :func:`quality_focal_loss`'s checks and target cast (the generic code of the package, its
    benchmarks and tests call this one: bce_ext/_registry.py, sums_rows)."""
    if has_torch_function_variadic(pred, target, weight):
        return handle_torch_function(
            quality_focal_loss_elements, (pred, target, weight), pred, target, weight=weight,
            reduction=reduction, beta=beta)
    reduction_enum = _Reduction.get_enum(reduction)
    return op(pred, _checked(pred, target), weight, reduction_enum, scalar(beta, "beta"))


def _rows_reduced(pred, target, weight, reduction, avg_factor, beta, activated):
    """mmdetection's loss of a dense target: the element losses summed over dim 1, weighted per
    row, reduced (weighted_loss and weight_reduce_loss)."""
    reduction_enum = _Reduction.get_enum(reduction)  # mmdetection's reduce_loss: its ValueError
    check_avg_factor(avg_factor, reduction)
    target = _checked(pred, target)
    if pred.dim() < 2:  # mmdetection's sum over dim 1
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[-{max(pred.dim(), 1)}, {max(pred.dim(), 1) - 1}], but got 1)")
    beta = scalar(beta, "beta")
    row_shape = pred.shape[:1] + pred.shape[2:]
    if weight is not None:  # one weight per row, broadcast along the classes
        weight = torch.broadcast_to(weight, row_shape).unsqueeze(1)
    if activated:
        if beta < 0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        rows = _element_losses_activated(pred, target, beta)
        rows = rows.sum(dim=1) if weight is None else (rows * weight).sum(dim=1)
        return _reduce(rows, reduction_enum, avg_factor)
    if reduction_enum == 0:
        return op(pred, target, weight, 0, beta).sum(dim=1)
    total = op(pred, target, weight, _SUM, beta)
    if reduction_enum == _SUM:
        return total
    if avg_factor is not None:
        return over_avg_factor(total, avg_factor)
    return total / math.prod(row_shape)  # 0 / 0 (no rows) is NaN, as mmdetection's mean


def _reduce(rows, reduction_enum, avg_factor):
    if reduction_enum == 0:
        return rows
    if avg_factor is not None:
        return over_avg_factor(rows.sum(), avg_factor)
    return rows.mean() if reduction_enum == 1 else rows.sum()


def quality_focal_loss(pred, target, weight=None, reduction="mean", avg_factor=None, beta=2.0,
                       activated=False):
    r"""The quality focal loss of Generalized Focal Loss in one fused pass: a drop-in for
    mmdetection's ``quality_focal_loss`` (its ``(labels, scores)`` target) and, given a tensor
    target, ``quality_focal_loss_tensor_target`` (the same signature, defaults, values and
    gradients).

    Args:
        pred: logits (probabilities when ``activated``), (N, C) (a tensor target also takes
            (N, C, ...)), any floating dtype.
        target: ``(labels, scores)``, both (N,): row i's class ``labels[i]`` has the quality
            score ``scores[i]`` as target and its other classes 0 (a label outside [0, C), C
            the background, leaves the row all 0); or a dense target of ``pred``'s shape, cast
            to its dtype.
        weight: one weight per row, broadcast against the loss of the rows (N,) (or (N, ...)).
            Not differentiable.
        reduction: ``'none'`` (the loss of each row) | ``'mean'`` (over the rows) | ``'sum'``.
        avg_factor: with ``'mean'``, the sum is divided by ``avg_factor + eps`` (eps the float32
            machine epsilon) instead of the number of rows; ``'sum'`` refuses one.
        beta: the exponent of ``|y - sigmoid(pred)|``, >= 0.
        activated: ``pred`` holds probabilities, not logits (mmdetection's
            ``quality_focal_loss_with_prob`` and ``activated=True``): computed in torch ops, not
            fused.

    The element loss is ``BCE(sigmoid(pred), y) * |y - sigmoid(pred)| ** beta`` summed over dim 1.
    Nothing is detached, as in mmdetection, except where it has a constant: the gradient w.r.t.
    the target is 0 where the target is 0 (mmdetection's constant zero label there; so a positive
    whose score is exactly 0 gets no gradient for it). The result has ``pred``'s dtype (half types
    computed in float32).
    """
    tensors = (pred, target, weight) if isinstance(target, torch.Tensor) else (pred, weight)
    if has_torch_function_variadic(*tensors):
        return handle_torch_function(
            quality_focal_loss, tensors, pred, target, weight=weight, reduction=reduction,
            avg_factor=avg_factor, beta=beta, activated=activated)
    if not isinstance(target, torch.Tensor):
        target = _dense_target(pred, target)
    return _rows_reduced(pred, target, weight, reduction, avg_factor, beta, activated)


def quality_focal_loss_tensor_target(pred, target, weight=None, reduction="mean", avg_factor=None,
                                     beta=2.0, activated=False):
    """mmdetection's ``quality_focal_loss_tensor_target``: :func:`quality_focal_loss` of a dense
    target of ``pred``'s shape."""
    if not isinstance(target, torch.Tensor):
        raise ArgumentError("quality_focal_loss_tensor_target: target must be a tensor")
    return quality_focal_loss(pred, target, weight, reduction, avg_factor, beta, activated)


def quality_focal_loss_with_prob(pred, target, weight=None, reduction="mean", avg_factor=None,
                                 beta=2.0):
    """mmdetection's ``quality_focal_loss_with_prob``: :func:`quality_focal_loss` of
    probabilities (``activated=True``), a ``(labels, scores)`` target."""
    return quality_focal_loss(pred, target, weight, reduction, avg_factor, beta, activated=True)


class QualityFocalLoss(NotScriptable, torch.nn.Module):
    r"""Drop-in for mmdetection's ``QualityFocalLoss``: the same constructor and
    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)`` (a tensor
    target takes the dense form, a pair the ``(labels, scores)`` form), the loss
    :func:`bce_ext.quality_focal_loss` times ``loss_weight``. mmdetection's assertions raise
    :class:`bce_ext.ArgumentError` (a ValueError and an AssertionError) with a message:
    ``use_sigmoid=False`` (it has no softmax quality focal loss), an unknown
    ``reduction_override``."""

    def __init__(self, use_sigmoid=True, beta=2.0, reduction="mean", loss_weight=1.0,
                 activated=False):
        super().__init__()
        if use_sigmoid is not True:
            raise ArgumentError("Only sigmoid in QFL supported now.")  # mmdetection's
        self.use_sigmoid, self.beta, self.reduction = use_sigmoid, beta, reduction
        self.loss_weight, self.activated = loss_weight, activated

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        if reduction_override not in (None, "none", "mean", "sum"):
            raise ArgumentError(f"reduction_override must be None, 'none', 'mean' or 'sum', "
                                f"got {reduction_override!r}")
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * quality_focal_loss(
            pred, target, weight, reduction=reduction, avg_factor=avg_factor, beta=self.beta,
            activated=self.activated)
