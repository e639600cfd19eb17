"""bce_ext.BCELoss: nn.BCELoss with bce_ext's kernels."""
import torch

from .functional import binary_cross_entropy

__all__ = ["BCELoss"]


class BCELoss(torch.nn.BCELoss):
    r"""Drop-in for :class:`torch.nn.BCELoss`: same constructor, ``weight`` buffer, state_dict keys
    and pickling; ``forward`` runs bce_ext's fused kernels."""

    def forward(self, input, target):
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)
