"""What the losses' modules (bce_ext/losses/) share: argument handling as the libraries they
replace do it, and the modules' refusal of TorchScript."""
import torch
from torch.nn import _reduction as _Reduction

__all__ = ["ArgumentError", "NotScriptable", "reduction_enum", "scalar"]


class ArgumentError(ValueError, AssertionError):
    """A bad argument to a drop-in for mmdetection: a ValueError, and an AssertionError as well,
    since mmdetection checks it with an assertion (code that catches that keeps working)."""


def reduction_enum(size_average, reduce, reduction):
    """PyTorch's reduction code, from its deprecated arguments where given (they warn)."""
    if size_average is not None or reduce is not None:
        return _Reduction.legacy_get_enum(size_average, reduce)
    return _Reduction.get_enum(reduction)


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
