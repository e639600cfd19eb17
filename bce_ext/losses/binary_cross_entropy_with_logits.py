"""Binary cross entropy with logits: torch.nn.functional.binary_cross_entropy_with_logits and
torch.nn.BCEWithLogitsLoss, on bce_ext's op."""
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import NotScriptable, reduction_enum

__all__ = ["BCEWithLogitsLoss", "binary_cross_entropy_with_logits"]

op = torch.ops.bce_ext.binary_cross_entropy_with_logits.default


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None, *, label_smoothing=0.0):
    r"""Binary cross entropy between the logits ``input`` and ``target``, as
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`, in one fused pass.

    Args:
        input: logits, any shape, any floating dtype.
        target: same shape as ``input``; the result has its dtype (as PyTorch).
        weight: rescales each element's loss; broadcast right-aligned. Not differentiable.
        size_average, reduce: deprecated, as in PyTorch.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        pos_weight: weight of the positive class, broadcast right-aligned against the target (a
            ``(C,)`` pos_weight scales the last dimension; use ``(C, 1, 1)`` for NCHW channels).
            Not differentiable.
        label_smoothing: ``s`` in [0, 1]; the loss sees the target ``t * (1 - s) + s / 2``
            (keyword only; 0, the default, is PyTorch's loss).
    """
    if has_torch_function_variadic(input, target, weight, pos_weight):
        return handle_torch_function(
            binary_cross_entropy_with_logits, (input, target, weight, pos_weight), input, target,
            weight=weight, size_average=size_average, reduce=reduce, reduction=reduction,
            pos_weight=pos_weight, label_smoothing=label_smoothing)
    code = reduction_enum(size_average, reduce, reduction)
    target.size(), input.size()  # as BCE's: a non-tensor is an AttributeError
    return op(input, target, weight, pos_weight, code, label_smoothing)


class BCEWithLogitsLoss(NotScriptable, torch.nn.BCEWithLogitsLoss):
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
