"""The sigmoid focal loss: torchvision.ops.sigmoid_focal_loss, and a module for it, on bce_ext's
op."""
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import NotScriptable, ignore_value, scalar

__all__ = ["SigmoidFocalLoss", "sigmoid_focal_loss"]

op = torch.ops.bce_ext.sigmoid_focal_loss.default
_FOCAL_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none", *,
                       ignore_index=None):
    r"""The sigmoid focal loss of Lin et al. (RetinaNet), in one fused pass: a drop-in for
    :func:`torchvision.ops.sigmoid_focal_loss` (the same signature, defaults and results).

    Args:
        inputs: logits, any shape and floating dtype.
        targets: the same shape (torchvision's ValueError otherwise), 0 or 1 for the negative and
            positive class (soft targets work too).
        alpha: weight of the positive class in [0, 1], (1 - alpha) of the negative; a negative
            alpha turns the weighting off.
        gamma: exponent of the modulating factor (1 - p_t), >= 0 (0: BCE with logits).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        ignore_index: a target value whose elements are left out (keyword only; None, the
            default, leaves none out): see :func:`bce_ext.binary_cross_entropy`.
    """
    if has_torch_function_variadic(inputs, targets):
        return handle_torch_function(sigmoid_focal_loss, (inputs, targets), inputs, targets,
                                     alpha=alpha, gamma=gamma, reduction=reduction,
                                     ignore_index=ignore_index)
    # torchvision's errors for a non-tensor: torch.sigmoid(inputs) raises TypeError, then its
    # binary_cross_entropy_with_logits reads target.size() (AttributeError).
    if not isinstance(inputs, torch.Tensor):
        raise TypeError("sigmoid_focal_loss(): argument 'inputs' must be Tensor, not "
                        f"{type(inputs).__name__}")
    targets.size()
    if reduction not in _FOCAL_REDUCTIONS:
        # torchvision's message, verbatim.
        raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction "
                         "modes: 'none', 'mean', 'sum'")
    return op(inputs, targets, _FOCAL_REDUCTIONS[reduction], scalar(alpha, "alpha"),
              scalar(gamma, "gamma"), ignore_value(ignore_index))


class SigmoidFocalLoss(NotScriptable, torch.nn.Module):
    r"""The sigmoid focal loss as a module: ``SigmoidFocalLoss(alpha=0.25, gamma=2.0,
    reduction="none", *, ignore_index=None)(inputs, targets)`` is
    :func:`bce_ext.sigmoid_focal_loss` with those arguments (torchvision has the function only)."""

    def __init__(self, alpha=0.25, gamma=2.0, reduction="none", *, ignore_index=None):
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction
        self.ignore_index = ignore_value(ignore_index)

    def forward(self, inputs, targets):
        return sigmoid_focal_loss(inputs, targets, self.alpha, self.gamma, self.reduction,
                                  ignore_index=self.ignore_index)

    def extra_repr(self):
        text = f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"
        return text + (f", ignore_index={self.ignore_index}" if self.ignore_index is not None
                       else "")

    def __setstate__(self, state):  # modules pickled before ignore_index existed
        state.setdefault("ignore_index", None)
        super().__setstate__(state)
