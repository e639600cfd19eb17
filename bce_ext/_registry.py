"""The losses bce_ext has, one entry each: the one list that the package, the tests, the
benchmarks and CI read (the C++ side's list is csrc/losses/registry.h; a test checks that the two
name the same losses in the same order).

A loss's one name is its op's, under ``torch.ops.bce_ext``, which is also its functional's in
``bce_ext``. Older names (the demo's ``--loss logits``, the keys of saved benchmark results) are
aliases: ``get`` and ``canonical`` accept them.
"""
import importlib
from dataclasses import dataclass
from typing import Optional

__all__ = ["LOSSES", "LossEntry", "canonical", "get", "names"]


@dataclass(frozen=True)
class LossEntry:
    """What the generic Python code needs to know of one loss."""

    # The op under torch.ops.bce_ext (its backward op: name + "_backward") and the functional.
    name: str
    # Its torch.nn.Module in bce_ext.
    module: str
    # The function it is a drop-in for, "module.path:function" (the oracle of the self-check and
    # the eager baseline of the benchmarks, where that library is installed).
    replaces: str
    # The domain of its input: "probability" (in [0, 1]) or "logit".
    input: str
    # The tensors after input and target in its op's schema that broadcast against the target.
    tensors: tuple = ("weight",)
    # The one of those that multiplies each element's loss (DTensor's 'mean' scales it by 1/N);
    # None: the loss has none, and a sharded 'mean' scales the result instead.
    scale: Optional[str] = "weight"
    # Its scalar arguments after the reduction in the op's schema (its backward op's follow
    # output_mask), with their defaults in the public function.
    params: tuple = ()
    # The public functional's default reduction.
    default_reduction: str = "mean"
    # Other names it had or has elsewhere (command lines, saved results).
    aliases: tuple = ()
    # Whether its functional sums the op's element losses over dim 1 (the classes) before its
    # weight, one per row, and the reduction (mmdetection's quality focal loss): its inputs are
    # at least 2-D; the op itself is element by element, as every loss's.
    sums_rows: bool = False
    # Whether its op, functional and module take bce_ext's keyword-only ignore_index (the last
    # argument of its ops' schemas; its backward op's kept follows).
    ignores: bool = True

    @property
    def op(self):
        import torch
        return getattr(torch.ops.bce_ext, self.name).default

    @property
    def backward_op(self):
        import torch
        return getattr(torch.ops.bce_ext, self.name + "_backward").default

    @property
    def function(self):
        """Its functional, from its own module bce_ext/losses/<name>.py."""
        return getattr(importlib.import_module(f"bce_ext.losses.{self.name}"), self.name)

    @property
    def element_function(self):
        """Its functional with the op's semantics, element by element (what generic code calls):
        the public one, or for a loss that sums rows (sums_rows) its module's <name>_elements."""
        name = self.name + "_elements" if self.sums_rows else self.name
        return getattr(importlib.import_module(f"bce_ext.losses.{self.name}"), name)

    @property
    def module_class(self):
        """Its torch.nn.Module, from the same module."""
        return getattr(importlib.import_module(f"bce_ext.losses.{self.name}"), self.module)

    @property
    def takes_weight(self):
        return "weight" in self.tensors

    def replaced(self):
        """The function this loss replaces, or None where its library is not installed."""
        path, _, attr = self.replaces.partition(":")
        try:
            return getattr(importlib.import_module(path), attr)
        except ImportError:
            return None

    def __repr__(self):
        return self.name


LOSSES = (
    LossEntry("binary_cross_entropy", module="BCELoss",
              replaces="torch.nn.functional:binary_cross_entropy", input="probability",
              params=(("label_smoothing", 0.0),), aliases=("bce",)),
    LossEntry("binary_cross_entropy_with_logits", module="BCEWithLogitsLoss",
              replaces="torch.nn.functional:binary_cross_entropy_with_logits", input="logit",
              tensors=("weight", "pos_weight"), params=(("label_smoothing", 0.0),),
              aliases=("logits", "bce_with_logits")),
    LossEntry("sigmoid_focal_loss", module="SigmoidFocalLoss",
              replaces="torchvision.ops:sigmoid_focal_loss", input="logit", tensors=(),
              scale=None, params=(("alpha", 0.25), ("gamma", 2.0)), default_reduction="none",
              aliases=("focal", "sigmoid_focal")),
    LossEntry("varifocal_loss", module="VarifocalLoss",
              replaces="mmdet.models.losses.varifocal_loss:varifocal_loss", input="logit",
              params=(("alpha", 0.75), ("gamma", 2.0), ("iou_weighted", True)),
              aliases=("varifocal", "vfl")),
    LossEntry("quality_focal_loss", module="QualityFocalLoss",
              replaces="mmdet.models.losses.gfocal_loss:quality_focal_loss_tensor_target",
              input="logit", params=(("beta", 2.0),), aliases=("quality_focal", "qfl"),
              sums_rows=True, ignores=False),
)

_BY_NAME = {}
for _entry in LOSSES:
    for _key in (_entry.name,) + _entry.aliases:
        assert _key not in _BY_NAME, f"two losses named {_key!r}"
        _BY_NAME[_key] = _entry


def get(name):
    """The entry of the loss called `name` (its name or an alias)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no loss {name!r}; the losses: {', '.join(names())} (or their aliases: "
                       f"{', '.join(k for k in _BY_NAME if k not in names())})") from None


def canonical(name):
    """The one name of the loss called `name` (its name or an alias)."""
    return get(name).name


def names():
    """The losses' names, in the registry's order."""
    return tuple(entry.name for entry in LOSSES)
