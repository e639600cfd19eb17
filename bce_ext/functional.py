"""bce_ext.binary_cross_entropy: F.binary_cross_entropy's signature, checks and warnings."""
import torch
import torch.autograd.forward_ad as _fw_ad
from torch.nn import _reduction as _Reduction
from torch.overrides import handle_torch_function, has_torch_function_variadic

from ._ops import BinaryCrossEntropyFunction, forward_op

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
    # Shape, broadcast, dtype, device and range checks happen in the op, with PyTorch's messages.
    if not torch.compiler.is_compiling() and _transformed():
        return BinaryCrossEntropyFunction.apply(input, target, weight, reduction_enum)
    return forward_op(input, target, weight, reduction_enum)


def _transformed():
    """Whether a torch.func transform or forward-mode AD is active: then the autograd.Function
    (which has a jvp) runs instead of the op, whose C++ autograd has reverse mode only. Dynamo
    never gets here: it cannot trace a Function with a jvp, and needs none for the op."""
    return torch._C._functorch.peek_interpreter_stack() is not None or _fw_ad._current_level >= 0
