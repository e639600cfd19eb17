"""bce_ext's loss modules: subclasses of PyTorch's, so that they replace them anywhere (the same
constructor, buffers, state_dict keys and pickling); forward runs bce_ext's fused kernels."""
import torch

from .functional import (
    ArgumentError,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    sigmoid_focal_loss,
    varifocal_loss,
)

__all__ = ["BCELoss", "BCEWithLogitsLoss", "SigmoidFocalLoss", "VarifocalLoss"]


class _NotScriptable:
    """torch.jit.script calls __prepare_scriptable__ on a module and on each of its submodules
    before compiling: one clear error there instead of TorchScript's own about the functional."""

    def __prepare_scriptable__(self):
        raise RuntimeError(
            f"bce_ext.{type(self).__name__} cannot be compiled by torch.jit.script (TorchScript "
            "cannot compile bce_ext's functionals, which check their arguments in Python); use "
            "torch.compile, or torch.jit.trace, which records the op")


class BCELoss(_NotScriptable, torch.nn.BCELoss):
    r"""Drop-in for :class:`torch.nn.BCELoss`: same constructor (plus a keyword-only
    ``label_smoothing``, see :func:`bce_ext.binary_cross_entropy`), ``weight`` buffer, state_dict
    keys and pickling; ``forward`` runs bce_ext's fused kernels."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", *,
                 label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction,
                                    label_smoothing=self.label_smoothing)

    def __setstate__(self, state):  # modules pickled before label_smoothing existed
        state.setdefault("label_smoothing", 0.0)
        super().__setstate__(state)


class BCEWithLogitsLoss(_NotScriptable, torch.nn.BCEWithLogitsLoss):
    r"""Drop-in for :class:`torch.nn.BCEWithLogitsLoss`: same constructor (plus a keyword-only
    ``label_smoothing``), ``weight`` and ``pos_weight`` buffers, state_dict keys and pickling;
    ``forward`` runs bce_ext's fused kernels."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None, *, label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(
            input, target, self.weight, pos_weight=self.pos_weight, reduction=self.reduction,
            label_smoothing=self.label_smoothing)

    def __setstate__(self, state):
        state.setdefault("label_smoothing", 0.0)
        super().__setstate__(state)


class SigmoidFocalLoss(_NotScriptable, torch.nn.Module):
    r"""The sigmoid focal loss as a module: ``SigmoidFocalLoss(alpha=0.25, gamma=2.0,
    reduction="none")(inputs, targets)`` is :func:`bce_ext.sigmoid_focal_loss` with those
    arguments (torchvision has the function only)."""

    def __init__(self, alpha=0.25, gamma=2.0, reduction="none"):
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, inputs, targets):
        return sigmoid_focal_loss(inputs, targets, self.alpha, self.gamma, self.reduction)

    def extra_repr(self):
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"


class VarifocalLoss(_NotScriptable, torch.nn.Module):
    r"""Drop-in for mmdetection's ``VarifocalLoss``: the same constructor and
    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``, the loss
    :func:`bce_ext.varifocal_loss` times ``loss_weight``. mmdetection's assertions raise
    :class:`bce_ext.ArgumentError` (a ValueError and an AssertionError) with a message:
    ``use_sigmoid=False`` (it has no softmax varifocal loss), a negative alpha or gamma, an
    unknown ``reduction_override``."""

    def __init__(self, use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True,
                 reduction="mean", loss_weight=1.0):
        super().__init__()
        if not use_sigmoid:
            raise ArgumentError("Only sigmoid varifocal loss supported now.")  # mmdetection's
        if not alpha >= 0.0:
            raise ArgumentError(f"alpha must be a finite number >= 0, got {alpha}")
        if not gamma >= 0.0:
            raise ArgumentError(f"gamma must be a finite number >= 0, got {gamma}")
        self.use_sigmoid, self.alpha, self.gamma = use_sigmoid, alpha, gamma
        self.iou_weighted, self.reduction, self.loss_weight = iou_weighted, reduction, loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        if reduction_override not in (None, "none", "mean", "sum"):
            raise ArgumentError(f"reduction_override must be None, 'none', 'mean' or 'sum', "
                                f"got {reduction_override!r}")
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * varifocal_loss(
            pred, target, weight, alpha=self.alpha, gamma=self.gamma,
            iou_weighted=self.iou_weighted, reduction=reduction, avg_factor=avg_factor)
