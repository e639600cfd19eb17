"""bce_ext: a drop-in torch.nn.BCELoss with fused C++ and CUDA kernels.

    import bce_ext
    loss_fn = bce_ext.BCELoss()            # instead of torch.nn.BCELoss()
    loss = bce_ext.binary_cross_entropy(p, y, reduction="sum")
"""
from ._ops import BinaryCrossEntropyFunction
from ._strict import is_strict, set_strict
from .functional import binary_cross_entropy
from .modules import BCELoss

__version__ = "0.1.0"
__all__ = ["BCELoss", "BinaryCrossEntropyFunction", "binary_cross_entropy", "is_strict",
           "set_strict", "__version__"]
