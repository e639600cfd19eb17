"""bce_ext's loss modules: subclasses of PyTorch's, so that they replace them anywhere (the same
constructor, buffers, state_dict keys and pickling); forward runs bce_ext's fused kernels."""
import torch

from .functional import binary_cross_entropy, binary_cross_entropy_with_logits, sigmoid_focal_loss

__all__ = ["BCELoss", "BCEWithLogitsLoss", "SigmoidFocalLoss"]


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
