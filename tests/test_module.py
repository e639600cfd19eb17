"""bce_ext's loss modules as drop-ins for PyTorch's: buffers, state_dict, pickling, label
smoothing, a training loop; the focal loss's module in the training loop (it has no weight and no
state: test_sigmoid_focal_loss.test_module has the rest)."""
import copy
import io
import pickle

import pytest
import torch
from dist_cases import reference_module
from oracle import assert_matches

import bce_ext

# (ours, theirs, names of the tensor arguments after weight, whether the model's output is a
# probability or a logit)
MODULES = [
    pytest.param(bce_ext.BCELoss, torch.nn.BCELoss, (), True, id="BCELoss"),
    pytest.param(bce_ext.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss, ("pos_weight",), False,
                 id="BCEWithLogitsLoss"),
]


# A training loop of every module: torchvision has no focal loss module, its function as one is the
# reference; None: no weight.
TRAINED = MODULES + [pytest.param(bce_ext.SigmoidFocalLoss, reference_module("sigmoid_focal_loss"),
                                  None, False,
                                  id="SigmoidFocalLoss")]


def _tensors(extras, n):
    return {name: 2 * torch.rand(n) for name in extras}


@pytest.mark.parametrize("ours_cls,theirs_cls,extras,probs", MODULES)
def test_is_the_torch_module_with_the_same_constructor(ours_cls, theirs_cls, extras, probs):
    w = torch.rand(3)
    kw = _tensors(extras, 3)
    ours, theirs = ours_cls(w, reduction="sum", **kw), theirs_cls(w, reduction="sum", **kw)
    assert isinstance(ours, theirs_cls)
    assert ours.reduction == theirs.reduction
    assert torch.equal(ours.weight, theirs.weight)
    assert dict(ours.named_buffers()).keys() == dict(theirs.named_buffers()).keys()
    assert ours.label_smoothing == 0.0


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ours_cls,theirs_cls,extras,probs", MODULES)
def test_state_dict_is_interchangeable(ours_cls, theirs_cls, extras, probs, weighted):
    w = torch.rand(3) if weighted else None
    kw = _tensors(extras, 3) if weighted else {}
    ours, theirs = ours_cls(w, **kw), theirs_cls(w, **kw)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    if weighted:
        zeros = {name: torch.zeros(3) for name in extras}
        fresh = ours_cls(torch.zeros(3), **zeros)
        fresh.load_state_dict(theirs.state_dict())
        back = theirs_cls(torch.zeros(3), **zeros)
        back.load_state_dict(ours.state_dict())
        for module in (fresh, back):
            assert torch.equal(module.weight, w)
            for name in extras:
                assert torch.equal(getattr(module, name), kw[name])


@pytest.mark.parametrize("ours_cls,theirs_cls,extras,probs", MODULES)
def test_pickle_and_torch_save_round_trip(ours_cls, theirs_cls, extras, probs):
    loss = ours_cls(torch.rand(4), reduction="sum", label_smoothing=0.1, **_tensors(extras, 4))
    x, t = torch.rand(2, 4), torch.rand(2, 4)
    for restored in (pickle.loads(pickle.dumps(loss)), _torch_save_load(loss)):
        assert type(restored) is ours_cls
        assert restored.reduction == "sum" and restored.label_smoothing == 0.1
        assert torch.equal(restored(x, t), loss(x, t))


def _torch_save_load(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("ours_cls,theirs_cls,extras,probs", MODULES)
def test_to_moves_and_casts_the_buffers(device, ours_cls, theirs_cls, extras, probs):
    loss = ours_cls(torch.rand(3), **_tensors(extras, 3)).to(device).to(torch.float64)
    for name in ("weight",) + extras:
        buffer = getattr(loss, name)
        assert buffer.device.type == device and buffer.dtype == torch.float64
    x = torch.rand(2, 3, dtype=torch.float64, device=device)
    t = torch.rand(2, 3, dtype=torch.float64, device=device)
    ref = theirs_cls(loss.weight, **{name: getattr(loss, name) for name in extras})
    assert_matches(loss(x, t), ref(x, t))


@pytest.mark.parametrize("ours_cls,theirs_cls,extras,probs", MODULES)
def test_label_smoothing_is_the_loss_of_the_smoothed_target(ours_cls, theirs_cls, extras, probs):
    x, t = torch.rand(5, 3), torch.rand(5, 3).round()
    s = 0.2
    assert_matches(ours_cls(label_smoothing=s)(x, t), theirs_cls()(x, t * (1 - s) + s / 2))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ours_cls,theirs_cls,extras,probs", TRAINED)
def test_training_loop_ends_with_the_same_parameters(device, ours_cls, theirs_cls, extras, probs,
                                                     reduction):
    """A few epochs of SGD with momentum: the same parameters as with PyTorch's module."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)]
    model = torch.nn.Sequential(*layers, *([torch.nn.Sigmoid()] if probs else [])).to(device)
    data = torch.rand(64, 10, device=device)
    labels = (torch.rand(64, 10, device=device) > 0.5).float()
    kw = {} if extras is None else {"weight": torch.rand(10, device=device), **{
        name: v.to(device) for name, v in _tensors(extras, 10).items()}}
    finals = []
    for loss_cls in (ours_cls, theirs_cls):
        m = copy.deepcopy(model)
        # The same step sizes for both reductions ('sum' is 160 times 'mean' here), so that the
        # runs stay out of the chaotic regime where the last bits of any two implementations part.
        opt = torch.optim.SGD(m.parameters(), lr=0.5 if reduction == "mean" else 0.5 / 160,
                              momentum=0.9)
        loss_fn = loss_cls(reduction=reduction, **kw)
        for _epoch in range(5):
            for i in range(0, 64, 16):
                opt.zero_grad()
                loss_fn(m(data[i:i + 16]), labels[i:i + 16]).backward()
                opt.step()
        finals.append([p.detach() for p in m.parameters()])
    for a, b in zip(*finals):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("module", [bce_ext.BCELoss, bce_ext.BCEWithLogitsLoss,
                                    bce_ext.SigmoidFocalLoss], ids=lambda m: m.__name__)
def test_jit_script_says_it_is_unsupported(module):
    """torch.jit.script of a module, or of a model holding one, raises one message that names
    torch.compile (not TorchScript's internal errors); torch.jit.trace records the op."""
    model = torch.nn.Sequential(torch.nn.Identity())
    model.loss = module()
    for target in (module(), model):
        with pytest.raises(RuntimeError, match="cannot be compiled by torch.jit.script.*"
                                               "torch.compile"):
            torch.jit.script(target)
    x = torch.rand(3, 2) if module is bce_ext.BCELoss else torch.randn(3, 2)
    t = torch.rand(3, 2)
    traced = torch.jit.trace(module(), (x, t))
    torch.testing.assert_close(traced(x, t), module()(x, t))
