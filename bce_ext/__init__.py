"""bce_ext: drop-in torch.nn.BCELoss and BCEWithLogitsLoss, torchvision's sigmoid focal loss and
mmdetection's varifocal loss, with fused C++ and CUDA kernels.

    import bce_ext
    loss_fn = bce_ext.BCEWithLogitsLoss()  # instead of torch.nn.BCEWithLogitsLoss()
    loss = bce_ext.binary_cross_entropy(p, y, reduction="sum")
"""
from . import _distributed
from ._ops import BinaryCrossEntropyFunction
from ._strict import is_strict, set_strict
from .functional import (
    ArgumentError,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    sigmoid_focal_loss,
    varifocal_loss,
)
from .modules import BCELoss, BCEWithLogitsLoss, SigmoidFocalLoss, VarifocalLoss

__version__ = "0.1.0"
__all__ = ["ArgumentError", "BCELoss", "BCEWithLogitsLoss", "BinaryCrossEntropyFunction",
           "SigmoidFocalLoss", "VarifocalLoss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "is_strict", "set_strict", "sigmoid_focal_loss",
           "varifocal_loss", "__version__"]

# DTensor sharding rules, registered once torch.distributed.tensor is imported (before or after).
_distributed.install()
