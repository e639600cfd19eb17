"""What the losses' modules (bce_ext/losses/) share: argument handling as the libraries they
replace do it, and the modules' refusal of TorchScript."""
import numbers

import torch
from torch.nn import _reduction as _Reduction

__all__ = ["ArgumentError", "NotScriptable", "check_avg_factor", "ignore_value",
           "over_avg_factor", "reduction_enum", "scalar"]


class ArgumentError(ValueError, AssertionError):
    """A bad argument to a drop-in for mmdetection: a ValueError, and an AssertionError as well,
    since mmdetection checks it with an assertion (code that catches that keeps working)."""


def reduction_enum(size_average, reduce, reduction):
    """PyTorch's reduction code, from its deprecated arguments where given (they warn)."""
    if size_average is not None or reduce is not None:
        return _Reduction.legacy_get_enum(size_average, reduce)
    return _Reduction.get_enum(reduction)


# mmdetection's weight_reduce_loss: the eps of a 'mean' over an avg_factor, whatever the dtype.
_AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


def check_avg_factor(avg_factor, reduction):
    """mmdetection's refusal of an avg_factor with 'sum' (its weight_reduce_loss), before any
    work."""
    if avg_factor is not None and reduction == "sum":
        raise ValueError('avg_factor can not be used with reduction="sum"')


def over_avg_factor(total, avg_factor):
    """A 'mean' over mmdetection's avg_factor: the sum divided by avg_factor + eps."""
    return total / (avg_factor + _AVG_FACTOR_EPS)


def ignore_value(ignore_index):
    """ignore_index as the ops take it: None, or a float (any real number; a bool or a tensor is
    refused, as CrossEntropyLoss's int argument refuses them)."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Real):
        raise TypeError(f"ignore_index must be a number or None, got "
                        f"{type(ignore_index).__name__}")
    return float(ignore_index)


def scalar(value, name):
    """A float argument's value. A tensor that requires grad is refused (the replaced library's
    formula differentiates it; bce_ext takes a number), with the text of PyTorch's own refusal."""
    if isinstance(value, torch.Tensor) and value.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(f"the derivative for '{name}' is not implemented: bce_ext takes {name} "
                           f"as a number (pass a float, or {name}.detach())")
    return float(value)


class NotScriptable:
    """torch.jit.script calls __prepare_scriptable__ on a module and on each of its submodules
    before compiling: one clear error there instead of TorchScript's own about the functional."""

    def __prepare_scriptable__(self):
        raise RuntimeError(
            f"bce_ext.{type(self).__name__} cannot be compiled by torch.jit.script (TorchScript "
            "cannot compile bce_ext's functionals, which check their arguments in Python); use "
            "torch.compile, or torch.jit.trace, which records the op")
