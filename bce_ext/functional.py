"""bce_ext.binary_cross_entropy: F.binary_cross_entropy's signature, checks and warnings."""
import torch
from torch.nn import _reduction as _Reduction
from torch.overrides import handle_torch_function, has_torch_function_variadic

from ._ops import forward_op

__all__ = ["binary_cross_entropy"]


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    r"""Binary cross entropy between probabilities ``input`` and ``target``, as
    :func:`torch.nn.functional.binary_cross_entropy`, computed by bce_ext's fused kernels.

    Args:
        input: probabilities in [0, 1], any shape.
        target: same shape and dtype as ``input``, values in [0, 1].
        weight: rescales each element's loss; broadcast to the target's shape, right-aligned (a
            ``(C,)`` weight applies along the last dimension). Not differentiable.
        size_average, reduce: deprecated, as in PyTorch (they warn and override ``reduction``).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. ``'mean'`` divides by ``input.numel()``.
    """
    if has_torch_function_variadic(input, target, weight):
        return handle_torch_function(
            binary_cross_entropy, (input, target, weight), input, target, weight=weight,
            size_average=size_average, reduce=reduce, reduction=reduction)
    if size_average is not None or reduce is not None:
        reduction_enum = _Reduction.legacy_get_enum(size_average, reduce)
    else:
        reduction_enum = _Reduction.get_enum(reduction)
    # PyTorch's functional reads both sizes first, so a non-tensor is an AttributeError there; the
    # op makes every other check (shape, broadcast, dtype, device, range) with PyTorch's messages.
    target.size(), input.size()
    return forward_op(input, target, weight, reduction_enum)
