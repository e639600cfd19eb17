"""The varifocal loss: mmdetection's varifocal_loss and VarifocalLoss, on bce_ext's op."""
import torch
from torch.nn import _reduction as _Reduction
from torch.overrides import handle_torch_function, has_torch_function_variadic

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import (
    ArgumentError,
    NotScriptable,
    check_avg_factor,
    ignore_value,
    over_avg_factor,
    scalar,
)

__all__ = ["VarifocalLoss", "varifocal_loss"]

op = torch.ops.bce_ext.varifocal_loss.default


def varifocal_loss(pred, target, weight=None, alpha=0.75, gamma=2.0, iou_weighted=True,
                   reduction="mean", avg_factor=None, *, ignore_index=None):
    r"""The varifocal loss of VarifocalNet in one fused pass: a drop-in for mmdetection's
    ``mmdet.models.losses.varifocal_loss`` (the same signature, defaults, values and gradients).

    Args:
        pred: logits, any shape (mmdetection's (N, C)) and floating dtype.
        target: the same shape: the IoU-aware score of the positives (> 0), 0 for the negatives;
            cast to ``pred``'s dtype as mmdetection does.
        weight: rescales each element's loss; broadcast right-aligned against ``pred``. Not
            differentiable.
        alpha: the negatives' weight, >= 0.
        gamma: the exponent of ``|sigmoid(pred) - target|`` on the negatives, >= 0.
        iou_weighted: whether a positive's loss is weighted by its target.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        avg_factor: with ``'mean'``, the loss's sum is divided by ``avg_factor + eps`` (eps the
            float32 machine epsilon) instead of the element count; ``'sum'`` refuses one.
        ignore_index: a target value whose elements are left out (keyword only, bce_ext's; None,
            the default, leaves none out): see :func:`bce_ext.binary_cross_entropy`. An
            ``avg_factor`` takes precedence over the count of elements not ignored.

    Nothing is detached, as in mmdetection: the gradient flows through the focal weight. The
    result has ``pred``'s dtype (half types computed in float32).
    """
    if has_torch_function_variadic(pred, target, weight):
        return handle_torch_function(
            varifocal_loss, (pred, target, weight), pred, target, weight=weight, alpha=alpha,
            gamma=gamma, iou_weighted=iou_weighted, reduction=reduction, avg_factor=avg_factor,
            ignore_index=ignore_index)
    reduction_enum = _Reduction.get_enum(reduction)  # mmdetection's reduce_loss: its ValueError
    check_avg_factor(avg_factor, reduction)
    if pred.size() != target.size():  # mmdetection asserts it
        raise ArgumentError(f"varifocal_loss: pred and target must have the same size, got "
                            f"{tuple(pred.size())} and {tuple(target.size())}")
    target = target.type_as(pred)
    divided = avg_factor is not None and reduction == "mean"  # the sum, divided below
    loss = op(pred, target, weight, _Reduction.get_enum("sum") if divided
                        else reduction_enum, scalar(alpha, "alpha"), scalar(gamma, "gamma"),
                        bool(iou_weighted), ignore_value(ignore_index))
    return over_avg_factor(loss, avg_factor) if divided else loss


class VarifocalLoss(NotScriptable, torch.nn.Module):
    r"""Drop-in for mmdetection's ``VarifocalLoss``: the same constructor and
    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``, the loss
    :func:`bce_ext.varifocal_loss` times ``loss_weight``. mmdetection's assertions raise
    :class:`bce_ext.ArgumentError` (a ValueError and an AssertionError) with a message:
    ``use_sigmoid=False`` (it has no softmax varifocal loss), a negative alpha or gamma, an
    unknown ``reduction_override``."""

    def __init__(self, use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True,
                 reduction="mean", loss_weight=1.0, *, ignore_index=None):
        super().__init__()
        if not use_sigmoid:
            raise ArgumentError("Only sigmoid varifocal loss supported now.")  # mmdetection's
        if not alpha >= 0.0:
            raise ArgumentError(f"alpha must be a finite number >= 0, got {alpha}")
        if not gamma >= 0.0:
            raise ArgumentError(f"gamma must be a finite number >= 0, got {gamma}")
        self.use_sigmoid, self.alpha, self.gamma = use_sigmoid, alpha, gamma
        self.iou_weighted, self.reduction, self.loss_weight = iou_weighted, reduction, loss_weight
        self.ignore_index = ignore_value(ignore_index)

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        if reduction_override not in (None, "none", "mean", "sum"):
            raise ArgumentError(f"reduction_override must be None, 'none', 'mean' or 'sum', "
                                f"got {reduction_override!r}")
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * varifocal_loss(
            pred, target, weight, alpha=self.alpha, gamma=self.gamma,
            iou_weighted=self.iou_weighted, reduction=reduction, avg_factor=avg_factor,
            ignore_index=self.ignore_index)

    def __setstate__(self, state):  # modules pickled before ignore_index existed
        state.setdefault("ignore_index", None)
        super().__setstate__(state)
