"""bce_ext's loss modules, as torch.nn holds PyTorch's: each loss's, defined in its own module
(bce_ext/losses/<name>.py), gathered here from the registry (bce_ext/_registry.py). Modules
pickled under this path load as before."""
from ._registry import LOSSES
from .losses.siglip_loss import SigLipLoss  # pairwise, not element-wise: outside the registry

globals().update({entry.module: entry.module_class for entry in LOSSES})
__all__ = [entry.module for entry in LOSSES] + ["SigLipLoss"]
