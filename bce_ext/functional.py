"""bce_ext's functionals: torch.nn.functional's signatures, checks and warnings, on the fused
ops."""
import torch
from torch.nn import _reduction as _Reduction
from torch.overrides import handle_torch_function, has_torch_function_variadic

from ._ops import focal_op, forward_op, logits_op

__all__ = ["ArgumentError", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "sigmoid_focal_loss", "varifocal_loss"]


class ArgumentError(ValueError, AssertionError):
    """A bad argument to a drop-in for mmdetection: a ValueError, and an AssertionError as well,
    since mmdetection checks it with an assertion (code that catches that keeps working)."""


def _reduction_enum(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return _Reduction.legacy_get_enum(size_average, reduce)
    return _Reduction.get_enum(reduction)


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
    reduction_enum = _reduction_enum(size_average, reduce, reduction)
    # PyTorch's functional reads both sizes first, so a non-tensor is an AttributeError there; the
    # op makes every other check (shape, broadcast, dtype, device, range) with PyTorch's messages.
    target.size(), input.size()
    return forward_op(input, target, weight, reduction_enum, label_smoothing)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None, *, label_smoothing=0.0):
    r"""Binary cross entropy between the logits ``input`` and ``target``, as
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`, in one fused pass.

    Args:
        input: logits, any shape, any floating dtype.
        target: same shape as ``input``; the result has its dtype (as PyTorch).
        weight: rescales each element's loss; broadcast right-aligned. Not differentiable.
        size_average, reduce: deprecated, as in PyTorch.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        pos_weight: weight of the positive class, broadcast right-aligned against the target (a
            ``(C,)`` pos_weight scales the last dimension; use ``(C, 1, 1)`` for NCHW channels).
            Not differentiable.
        label_smoothing: ``s`` in [0, 1]; the loss sees the target ``t * (1 - s) + s / 2``
            (keyword only; 0, the default, is PyTorch's loss).
    """
    if has_torch_function_variadic(input, target, weight, pos_weight):
        return handle_torch_function(
            binary_cross_entropy_with_logits, (input, target, weight, pos_weight), input, target,
            weight=weight, size_average=size_average, reduce=reduce, reduction=reduction,
            pos_weight=pos_weight, label_smoothing=label_smoothing)
    reduction_enum = _reduction_enum(size_average, reduce, reduction)
    target.size(), input.size()  # as BCE's: a non-tensor is an AttributeError
    return logits_op(input, target, weight, pos_weight, reduction_enum, label_smoothing)


_FOCAL_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
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
    """
    if has_torch_function_variadic(inputs, targets):
        return handle_torch_function(sigmoid_focal_loss, (inputs, targets), inputs, targets,
                                     alpha=alpha, gamma=gamma, reduction=reduction)
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
    return focal_op(inputs, targets, _FOCAL_REDUCTIONS[reduction], _scalar(alpha, "alpha"),
                    _scalar(gamma, "gamma"))


def _scalar(value, name):
    """A float argument's value. A tensor that requires grad is refused (the replaced library's
    formula differentiates it; bce_ext takes a number), with the text of PyTorch's own refusal."""
    if isinstance(value, torch.Tensor) and value.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(f"the derivative for '{name}' is not implemented: bce_ext takes {name} "
                           f"as a number (pass a float, or {name}.detach())")
    return float(value)


varifocal_op = torch.ops.bce_ext.varifocal_loss.default  # registered by _ops' import of _C
# mmdetection's weight_reduce_loss: the eps of a 'mean' over an avg_factor, whatever the dtype.
_AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


def varifocal_loss(pred, target, weight=None, alpha=0.75, gamma=2.0, iou_weighted=True,
                   reduction="mean", avg_factor=None):
    r"""The varifocal loss of VarifocalNet in one fused pass: a drop-in for mmdetection's
    ``mmdet.models.losses.varifocal_loss`` (the same signature, defaults, values and gradients).

    Args:
        pred: logits, any shape (mmdetection's (N, C)) and floating dtype.
        target: the same shape: the IoU-aware score of the positives (> 0), 0 for the negatives;
            cast to ``pred``'s dtype as mmdetection does.
        weight: rescales each element's loss; broadcast right-aligned against ``pred``. Not
            differentiable.
        alpha: the negatives' weight, >= 0.
        gamma: the exponent of ``|sigmoid(pred) - target|`` on the negatives, >= 0.
        iou_weighted: whether a positive's loss is weighted by its target.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        avg_factor: with ``'mean'``, the loss's sum is divided by ``avg_factor + eps`` (eps the
            float32 machine epsilon) instead of the element count; ``'sum'`` refuses one.

    Nothing is detached, as in mmdetection: the gradient flows through the focal weight. The
    result has ``pred``'s dtype (half types computed in float32).
    """
    if has_torch_function_variadic(pred, target, weight):
        return handle_torch_function(
            varifocal_loss, (pred, target, weight), pred, target, weight=weight, alpha=alpha,
            gamma=gamma, iou_weighted=iou_weighted, reduction=reduction, avg_factor=avg_factor)
    reduction_enum = _Reduction.get_enum(reduction)  # mmdetection's reduce_loss: its ValueError
    if avg_factor is not None and reduction == "sum":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    if pred.size() != target.size():  # mmdetection asserts it
        raise ArgumentError(f"varifocal_loss: pred and target must have the same size, got "
                            f"{tuple(pred.size())} and {tuple(target.size())}")
    target = target.type_as(pred)
    over_avg_factor = avg_factor is not None and reduction == "mean"  # the sum, divided below
    loss = varifocal_op(pred, target, weight, _Reduction.get_enum("sum") if over_avg_factor
                        else reduction_enum, _scalar(alpha, "alpha"), _scalar(gamma, "gamma"),
                        bool(iou_weighted))
    return loss / (avg_factor + _AVG_FACTOR_EPS) if over_avg_factor else loss
