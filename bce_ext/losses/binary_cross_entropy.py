"""Binary cross entropy on probabilities: torch.nn.functional.binary_cross_entropy and
torch.nn.BCELoss, on bce_ext's op."""
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import NotScriptable, ignore_value, reduction_enum

__all__ = ["BCELoss", "binary_cross_entropy"]

op = torch.ops.bce_ext.binary_cross_entropy.default


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean", *, label_smoothing=0.0, ignore_index=None):
    r"""Binary cross entropy between probabilities ``input`` and ``target``, as
    :func:`torch.nn.functional.binary_cross_entropy`, computed by bce_ext's fused kernels.

    Args:
        input: probabilities in [0, 1], any shape.
        target: same shape and dtype as ``input``, values in [0, 1].
        weight: rescales each element's loss; broadcast to the target's shape, right-aligned (a
            ``(C,)`` weight applies along the last dimension). Not differentiable.
        size_average, reduce: deprecated, as in PyTorch (they warn and override ``reduction``).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. ``'mean'`` divides by ``input.numel()``.
        label_smoothing: ``s`` in [0, 1]; the loss sees the target ``t * (1 - s) + s / 2``
            (keyword only; 0, the default, is PyTorch's loss). The range check applies to the
            target as given.
        ignore_index: a target value whose elements are left out (keyword only; None, the
            default, leaves none out). Such an element contributes exactly 0 to the loss and to
            both gradients whatever its input (NaN included), is exempt from the range checks
            (a target of 255 is legal) and from label smoothing; ``'mean'`` divides by the
            number of elements not ignored (NaN when all are), as
            :class:`torch.nn.CrossEntropyLoss`. The target is compared with the index rounded
            to its dtype.
    """
    if has_torch_function_variadic(input, target, weight):
        return handle_torch_function(
            binary_cross_entropy, (input, target, weight), input, target, weight=weight,
            size_average=size_average, reduce=reduce, reduction=reduction,
            label_smoothing=label_smoothing, ignore_index=ignore_index)
    code = reduction_enum(size_average, reduce, reduction)
    # PyTorch's functional reads both sizes first, so a non-tensor is an AttributeError there; the
    # op makes every other check (shape, broadcast, dtype, device, range) with PyTorch's messages.
    target.size(), input.size()
    return op(input, target, weight, code, label_smoothing, ignore_value(ignore_index))


class BCELoss(NotScriptable, torch.nn.BCELoss):
    r"""Drop-in for :class:`torch.nn.BCELoss`: same constructor (plus a keyword-only
    ``label_smoothing`` and ``ignore_index``, see :func:`bce_ext.binary_cross_entropy`),
    ``weight`` buffer, state_dict keys and pickling; ``forward`` runs bce_ext's fused kernels."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", *,
                 label_smoothing=0.0, ignore_index=None):
        super().__init__(weight, size_average, reduce, reduction)
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_value(ignore_index)

    def forward(self, input, target):
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction,
                                    label_smoothing=self.label_smoothing,
                                    ignore_index=self.ignore_index)

    def __setstate__(self, state):  # modules pickled before these options existed
        state.setdefault("label_smoothing", 0.0)
        state.setdefault("ignore_index", None)
        super().__setstate__(state)
