"""bce_ext.BCELoss as a drop-in nn.Module: buffers, state_dict, pickling, a training loop."""
import copy
import io
import pickle

import pytest
import torch

import bce_ext
from oracle import assert_matches


def test_is_a_bce_loss_with_the_same_constructor():
    w = torch.rand(3)
    ours, theirs = bce_ext.BCELoss(w, reduction="sum"), torch.nn.BCELoss(w, reduction="sum")
    assert isinstance(ours, torch.nn.BCELoss)
    assert ours.reduction == theirs.reduction
    assert torch.equal(ours.weight, theirs.weight)
    assert dict(ours.named_buffers()).keys() == dict(theirs.named_buffers()).keys()


@pytest.mark.parametrize("weighted", [False, True])
def test_state_dict_is_interchangeable(weighted):
    w = torch.rand(3) if weighted else None
    ours, theirs = bce_ext.BCELoss(w), torch.nn.BCELoss(w)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    if weighted:
        fresh = bce_ext.BCELoss(torch.zeros(3))
        fresh.load_state_dict(theirs.state_dict())
        assert torch.equal(fresh.weight, w)
        back = torch.nn.BCELoss(torch.zeros(3))
        back.load_state_dict(ours.state_dict())
        assert torch.equal(back.weight, w)


def test_pickle_and_torch_save_round_trip():
    loss = bce_ext.BCELoss(torch.rand(4), reduction="sum")
    x, t = torch.rand(2, 4), torch.rand(2, 4)
    for restored in (pickle.loads(pickle.dumps(loss)), _torch_save_load(loss)):
        assert type(restored) is bce_ext.BCELoss
        assert restored.reduction == "sum"
        assert torch.equal(restored(x, t), loss(x, t))


def _torch_save_load(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_to_moves_and_casts_the_weight_buffer(device):
    loss = bce_ext.BCELoss(torch.rand(3)).to(device).to(torch.float64)
    assert loss.weight.device.type == device and loss.weight.dtype == torch.float64
    x = torch.rand(2, 3, dtype=torch.float64, device=device)
    t = torch.rand(2, 3, dtype=torch.float64, device=device)
    assert_matches(loss(x, t), torch.nn.BCELoss(loss.weight)(x, t))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_training_loop_ends_with_the_same_parameters(device, reduction):
    """A few epochs of SGD with momentum: the same parameters as with nn.BCELoss."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10),
                                torch.nn.Sigmoid()).to(device)
    data = torch.rand(64, 10, device=device)
    labels = (torch.rand(64, 10, device=device) > 0.5).float()
    weight = torch.rand(10, device=device)
    finals = []
    for loss_cls in (bce_ext.BCELoss, torch.nn.BCELoss):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9)
        loss_fn = loss_cls(weight, reduction=reduction)
        for epoch in range(5):
            for i in range(0, 64, 16):
                opt.zero_grad()
                loss_fn(m(data[i:i + 16]), labels[i:i + 16]).backward()
                opt.step()
        finals.append([p.detach() for p in m.parameters()])
    for a, b in zip(*finals):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
