"""Binary cross entropy on probabilities: torch.nn.functional.binary_cross_entropy and
torch.nn.BCELoss, on bce_ext's op."""
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import NotScriptable, reduction_enum

__all__ = ["BCELoss", "binary_cross_entropy"]

op = torch.ops.bce_ext.binary_cross_entropy.default


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean", *, label_smoothing=0.0):
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
    """
    if has_torch_function_variadic(input, target, weight):
        return handle_torch_function(
            binary_cross_entropy, (input, target, weight), input, target, weight=weight,
            size_average=size_average, reduce=reduce, reduction=reduction,
            label_smoothing=label_smoothing)
    code = reduction_enum(size_average, reduce, reduction)
    # PyTorch's functional reads both sizes first, so a non-tensor is an AttributeError there; the
    # op makes every other check (shape, broadcast, dtype, device, range) with PyTorch's messages.
    target.size(), input.size()
    return op(input, target, weight, code, label_smoothing)


class BCELoss(NotScriptable, torch.nn.BCELoss):
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
