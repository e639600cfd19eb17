"""bce_ext's functionals, as torch.nn.functional holds PyTorch's: each loss's, defined in its own
module (bce_ext/losses/<name>.py), gathered here from the registry (bce_ext/_registry.py)."""
from ._common import ArgumentError
from ._registry import LOSSES
from .losses.siglip_loss import siglip_loss  # pairwise, not element-wise: outside the registry

globals().update({entry.name: entry.function for entry in LOSSES})
__all__ = ["ArgumentError", *(entry.name for entry in LOSSES), "siglip_loss"]
