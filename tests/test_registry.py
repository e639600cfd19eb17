"""bce_ext/_registry.py, the one list of losses: it matches the C++ list and each op's schema, and
every name a loss had still finds it."""
import inspect

import pytest
import torch
from losses import ALL_LOSSES

import bce_ext
import bce_ext._registry as registry
from bce_ext import _distributed, _ops


def test_the_cpp_and_python_lists_agree():
    assert bce_ext._C.losses == registry.names()


def test_the_tests_table_has_a_row_per_loss():
    assert [loss.name for loss in ALL_LOSSES] == list(registry.names())


@pytest.mark.parametrize("entry", registry.LOSSES, ids=repr)
def test_entry_matches_its_ops_and_public_api(entry):
    schema = entry.op._schema
    args = [a.name for a in schema.arguments]
    assert args[:2] == ["self", "target"]
    reduction = args.index("reduction")
    assert tuple(args[2:reduction]) == entry.tensors
    ignore = ["ignore_index"] if entry.ignores else []
    assert args[reduction + 1:] == [name for name, _ in entry.params] + ignore
    backward = [a.name for a in entry.backward_op._schema.arguments]
    assert backward[:3] == ["grad_output", "self", "target"]
    assert backward[3:] == (args[2:reduction + 1] + ["output_mask"] + args[reduction + 1:]
                            + (["kept"] if entry.ignores else []))
    # The public functional and module, with the parameters' defaults.
    assert entry.name in bce_ext.__all__ and entry.module in bce_ext.__all__
    assert isinstance(entry.module_class(), torch.nn.Module)
    signature = inspect.signature(entry.function).parameters
    for name, default in entry.params:
        assert signature[name].default == default, name
    if entry.ignores:  # keyword-only, None by default, on the functional and the module
        for fn in (entry.function, entry.module_class):
            parameter = inspect.signature(fn).parameters["ignore_index"]
            assert parameter.kind == parameter.KEYWORD_ONLY and parameter.default is None
    else:
        assert "ignore_index" not in signature
    assert signature["reduction"].default == entry.default_reduction
    assert entry.input in ("probability", "logit")
    assert entry.scale is None or entry.scale in entry.tensors


def test_every_name_and_alias_finds_its_loss():
    for entry in registry.LOSSES:
        for name in (entry.name,) + entry.aliases:
            assert registry.get(name) is entry and registry.canonical(name) == entry.name
    # The names users typed or saved before the registry.
    assert registry.canonical("bce") == "binary_cross_entropy"
    assert registry.canonical("logits") == "binary_cross_entropy_with_logits"
    assert registry.canonical("bce_with_logits") == "binary_cross_entropy_with_logits"
    for old in ("focal", "sigmoid_focal"):
        assert registry.canonical(old) == "sigmoid_focal_loss"
    with pytest.raises(KeyError, match="no loss 'hinge'; the losses: binary_cross_entropy, "):
        registry.get("hinge")


def test_the_generic_sites_read_the_registry():
    assert list(_ops.LOSS_OPS) == list(registry.names())
    assert [op.name for op in _distributed.OPS] == [
        name for loss in registry.names() for name in (loss, loss + "_backward")]
