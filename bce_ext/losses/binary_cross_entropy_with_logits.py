"""Binary cross entropy with logits: torch.nn.functional.binary_cross_entropy_with_logits and
torch.nn.BCEWithLogitsLoss, on bce_ext's op."""
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import NotScriptable, ignore_value, reduction_enum

__all__ = ["BCEWithLogitsLoss", "binary_cross_entropy_with_logits"]

op = torch.ops.bce_ext.binary_cross_entropy_with_logits.default


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None, *, label_smoothing=0.0,
                                     ignore_index=None):
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
        ignore_index: a target value whose elements are left out (keyword only; None, the
            default, leaves none out): see :func:`bce_ext.binary_cross_entropy`.
    """
    if has_torch_function_variadic(input, target, weight, pos_weight):
        return handle_torch_function(
            binary_cross_entropy_with_logits, (input, target, weight, pos_weight), input, target,
            weight=weight, size_average=size_average, reduce=reduce, reduction=reduction,
            pos_weight=pos_weight, label_smoothing=label_smoothing, ignore_index=ignore_index)
    code = reduction_enum(size_average, reduce, reduction)
    target.size(), input.size()  # as BCE's: a non-tensor is an AttributeError
    return op(input, target, weight, pos_weight, code, label_smoothing, ignore_value(ignore_index))


class BCEWithLogitsLoss(NotScriptable, torch.nn.BCEWithLogitsLoss):
    r"""Drop-in for :class:`torch.nn.BCEWithLogitsLoss`: same constructor (plus a keyword-only
    ``label_smoothing`` and ``ignore_index``), ``weight`` and ``pos_weight`` buffers, state_dict
    keys and pickling; ``forward`` runs bce_ext's fused kernels."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None, *, label_smoothing=0.0, ignore_index=None):
        super().__init__(weight, size_average, reduce, reduction, pos_weight)
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_value(ignore_index)

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(
            input, target, self.weight, pos_weight=self.pos_weight, reduction=self.reduction,
            label_smoothing=self.label_smoothing, ignore_index=self.ignore_index)

    def __setstate__(self, state):  # modules pickled before these options existed
        state.setdefault("label_smoothing", 0.0)
        state.setdefault("ignore_index", None)
        super().__setstate__(state)
