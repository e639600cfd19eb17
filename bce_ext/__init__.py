"""bce_ext: drop-in torch.nn.BCELoss and BCEWithLogitsLoss, torchvision's sigmoid focal loss and
mmdetection's varifocal and quality focal losses, with fused C++ and CUDA kernels.

    import bce_ext
    loss_fn = bce_ext.BCEWithLogitsLoss()  # instead of torch.nn.BCEWithLogitsLoss()
    loss = bce_ext.binary_cross_entropy(p, y, reduction="sum")
"""
from . import _distributed
from ._common import ArgumentError
from ._ops import BinaryCrossEntropyFunction
from ._strict import is_strict, set_strict

# Each loss's functional and module, from its own module (bce_ext/losses/<name>.py).
from .losses.binary_cross_entropy import BCELoss, binary_cross_entropy
from .losses.binary_cross_entropy_with_logits import (
    BCEWithLogitsLoss,
    binary_cross_entropy_with_logits,
)
from .losses.quality_focal_loss import (
    QualityFocalLoss,
    quality_focal_loss,
    quality_focal_loss_tensor_target,
    quality_focal_loss_with_prob,
)
from .losses.siglip_loss import SigLipLoss, siglip_loss  # pairwise: outside the registry
from .losses.sigmoid_focal_loss import SigmoidFocalLoss, sigmoid_focal_loss
from .losses.varifocal_loss import VarifocalLoss, varifocal_loss

__version__ = "0.1.0"
__all__ = ["ArgumentError", "BCELoss", "BCEWithLogitsLoss", "BinaryCrossEntropyFunction",
           "QualityFocalLoss", "SigLipLoss", "SigmoidFocalLoss", "VarifocalLoss",
           "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "is_strict", "quality_focal_loss",
           "quality_focal_loss_tensor_target", "quality_focal_loss_with_prob", "set_strict",
           "sigmoid_focal_loss", "siglip_loss", "varifocal_loss", "__version__"]

# DTensor sharding rules, registered once torch.distributed.tensor is imported (before or after).
_distributed.install()
