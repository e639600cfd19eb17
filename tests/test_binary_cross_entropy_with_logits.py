"""Binary cross entropy with logits: its row in the suites' table (losses.ALL_LOSSES), and what only
it has: infinite and huge logits, inputs of two dtypes, pos_weight's
broadcast, batched pos_weights under vmap, and its agreement with BCE of the sigmoid."""
import math

import pytest
import torch
import torch.nn.functional as F
from losses import logit_values, logits, row
from oracle import REDUCTIONS, assert_loss_matches, assert_matches

import bce_ext

INF = math.inf


def pos_weight_extra(draw, shape, dtype, device):
    """The logits loss's pos_weight: none, or broadcast over the last dim, or one per element."""
    from hypothesis import strategies as st
    kind = draw(st.sampled_from(("none", "last", "full")), label="pos_weight")
    if kind == "none" or (kind == "last" and not shape):
        return {}
    pshape = shape[-1:] if kind == "last" else shape
    seed = draw(st.integers(0, 2 ** 16), label="pos_weight seed")
    gen = torch.Generator().manual_seed(seed)
    return {"pos_weight": (3 * torch.rand(pshape, generator=gen)).to(dtype).to(device)}


ROW = row(
    "binary_cross_entropy_with_logits",
    reference=F.binary_cross_entropy_with_logits,
    reference_module=torch.nn.BCEWithLogitsLoss,
    input_values=logit_values,
    checks_range=False,
    extra=pos_weight_extra,
    pytorch_layouts=False,
    inputs=logits,
)


def _limit(x, t, pw=1.0):
    """The loss at an infinite logit, its limit: (1 - t) * inf at +inf, pw * t * inf at -inf (0
    where the factor is 0)."""
    factor = (1 - t) if x > 0 else pw * t
    return 0.0 if factor == 0 else factor * INF


@pytest.mark.parametrize("pos_weight", [None, 2.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=str)
def test_infinite_logits_give_the_limit(device, dtype, pos_weight):
    """Beyond PyTorch (issues 49844, 102894: NaN there): the loss's limit, and finite gradients
    (0 at x = +inf, t = 1)."""
    xs = [INF, INF, INF, -INF, -INF, -INF, 3.0]
    ts = [1.0, 0.0, 0.25, 1.0, 0.0, 0.25, 0.5]
    x = torch.tensor(xs, dtype=dtype, device=device)
    t = torch.tensor(ts, dtype=dtype, device=device)
    pw = None if pos_weight is None else torch.full((7,), pos_weight, dtype=dtype, device=device)
    out = bce_ext.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=pw)
    finite = F.binary_cross_entropy_with_logits(x[-1:].double(), t[-1:].double(),
                                                pos_weight=None if pw is None else pw[-1:].double())
    expected = [_limit(a, b, pos_weight or 1.0) for a, b in zip(xs[:-1], ts[:-1])]
    assert out[:-1].double().tolist() == expected
    torch.testing.assert_close(out[-1].double(), finite, rtol=8e-3, atol=0)
    xr = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(
        bce_ext.binary_cross_entropy_with_logits(xr, t, reduction="sum", pos_weight=pw), xr)
    assert torch.isfinite(gx).all()
    assert gx[0].item() == 0.0  # x = +inf, t = 1
    p = pos_weight or 1.0
    # sigmoid(+inf) = 1: (p t + 1 - t) - p t = 1 - t; sigmoid(-inf) = 0: -p t
    assert gx[1].item() == 1.0 and gx[4].item() == 0.0
    assert gx[3].item() == pytest.approx(-p)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huge_logits(device, reduction):
    """+-1e4 logits: finite, PyTorch's values (no clamp: the loss grows linearly)."""
    x = torch.tensor([1e4, -1e4, 1e4, -1e4, 88.0, -88.0, 104.0, -104.0], device=device)
    t = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.3, 0.7, 1.0, 0.0], device=device)
    for pw in (None, torch.full((8,), 3.0, device=device)):
        assert_loss_matches(x, t, None, reduction, loss=ROW, pos_weight=pw)


@pytest.mark.parametrize("dtypes", [(torch.float64, torch.float32), (torch.float32, torch.float64),
                                    (torch.float16, torch.float32), (torch.float32, torch.float16),
                                    (torch.bfloat16, torch.float64)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_inputs_of_two_dtypes(device, dtypes, reduction):
    """As PyTorch: no same-dtype check; the result has the target's dtype, each gradient its own
    tensor's."""
    x = (8 * torch.rand(4, 5, dtype=torch.float64, device=device) - 4).to(dtypes[0])
    t = torch.rand(4, 5, dtype=torch.float64, device=device).to(dtypes[1])
    w = torch.rand(5, device=device)
    results = []
    for fn in (bce_ext.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits):
        xr, tr = x.clone().requires_grad_(), t.clone().requires_grad_()
        out = fn(xr, tr, w, reduction=reduction, pos_weight=2 * w)
        g = torch.ones_like(out)
        results.append((out.detach(),) + torch.autograd.grad(out, (xr, tr), g))
    for a, e in zip(*results):
        assert a.dtype == e.dtype
        # bce_ext computes in the promoted type: compare at the lower precision of the two
        low = dtypes[0] if torch.finfo(dtypes[0]).bits < torch.finfo(dtypes[1]).bits else dtypes[1]
        torch.testing.assert_close(a.double(), e.double(),
                                   **{torch.float16: dict(rtol=2e-3, atol=1e-3),
                                      torch.bfloat16: dict(rtol=2e-2, atol=1e-2)}.get(
                                          low, dict(rtol=1e-5, atol=1e-6)))


def test_pos_weight_broadcasts_right_aligned(device):
    """As PyTorch: a (C,) pos_weight on NCHW scales the last dimension (W), a (C, 1, 1) one the
    channels."""
    x = 4 * torch.rand(2, 3, 4, 3, device=device) - 2
    t = torch.rand(2, 3, 4, 3, device=device)
    for pw in (torch.rand(3, device=device) * 3, torch.rand(3, 1, 1, device=device) * 3,
               torch.rand(1, 3, 1, 1, device=device) * 3, torch.rand(2, 1, 4, 1, device=device)):
        for reduction in REDUCTIONS:
            assert_loss_matches(x, t, None, reduction, loss=ROW, pos_weight=pw)


def test_vmap_over_batched_pos_weight_and_weight():
    """A batch of pos_weights and weights under vmap, one per sample, against a loop."""
    x, t = 4 * torch.rand(5, 3, 4) - 2, torch.rand(5, 3, 4)
    pw, w = 3 * torch.rand(5, 4), torch.rand(5, 3, 1)
    for reduction in REDUCTIONS:
        def fn(a, b, p, v):
            return bce_ext.binary_cross_entropy_with_logits(a, b, v, pos_weight=p,
                                                            reduction=reduction)  # noqa: B023 (called in this iteration)
        batched = torch.func.vmap(fn)(x, t, pw, w)
        looped = torch.stack([F.binary_cross_entropy_with_logits(
            a, b, v, pos_weight=p, reduction=reduction) for a, b, p, v in zip(x, t, pw, w)])
        assert_matches(batched, looped)
        gx = torch.func.vmap(torch.func.grad(lambda a, b, p, v: fn(a, b, p, v).sum()))(x, t, pw, w)
        xr = x.clone().requires_grad_()
        (rx,) = torch.autograd.grad(sum(F.binary_cross_entropy_with_logits(
            a, b, v, pos_weight=p, reduction=reduction).sum() for a, b, p, v in zip(xr, t, pw, w)),
            xr)
        assert_matches(gx, rx)


def test_agrees_with_bce_of_the_sigmoid():
    """Beyond PyTorch (issue 24933): with float32 means accumulated in double, BCE with logits of x
    and BCE of sigmoid(x) agree with their float64 values, and so with each other."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2_000_000, generator=gen) * 3
    t = (torch.rand(2_000_000, generator=gen) > 0.5).float()
    logits = bce_ext.binary_cross_entropy_with_logits(x, t).double().item()
    probs = bce_ext.binary_cross_entropy(torch.sigmoid(x), t).double().item()
    ref = F.binary_cross_entropy_with_logits(x.double(), t.double()).item()
    assert abs(logits - ref) / ref < 1e-6
    assert abs(probs - logits) / ref < 1e-5


@pytest.mark.parametrize("pw_dtype", [torch.uint8, torch.int8, torch.int32, torch.int64],
                         ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_integral_pos_weight_wraps_as_pytorch(device, pw_dtype, reduction):
    """PyTorch's forward computes pos_weight - 1 in pos_weight's dtype: a uint8 0 wraps to 255 (and
    an int8 -128 to 127); its backward promotes pos_weight first (no wrap), so its gradients are
    not the derivatives of its loss there. bce_ext gives PyTorch's loss and gradients."""
    gen = torch.Generator().manual_seed(5)
    x = (8 * torch.rand(3, 6, generator=gen) - 4).to(device)
    t = torch.rand(3, 6, generator=gen).to(device)
    low = -128 if pw_dtype == torch.int8 else 0
    pw = torch.tensor([low, 0, 1, 2, 3, 100], dtype=pw_dtype, device=device)
    for weight in (None, torch.rand(6, generator=gen).to(device)):
        got = run_logits(bce_ext.binary_cross_entropy_with_logits, x, t, weight, pw, reduction)
        want = run_logits(F.binary_cross_entropy_with_logits, x.double(), t.double(),
                          None if weight is None else weight.double(), pw, reduction)
        for a, e in zip(got, want):
            torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-6)


def run_logits(fn, x, t, weight, pos_weight, reduction):
    """The loss and its gradients w.r.t. input and target."""
    x, t = x.detach().requires_grad_(), t.detach().requires_grad_()
    out = fn(x, t, weight, reduction=reduction, pos_weight=pos_weight)
    return (out.detach(),) + torch.autograd.grad(out.sum(), (x, t))


def test_bool_pos_weight_raises_pytorchs_error(device):
    """PyTorch's pos_weight - 1 refuses a bool tensor; bce_ext raises the same exception."""
    x = torch.randn(4, device=device)
    t = torch.rand(4, device=device)
    pw = torch.tensor([True, False, True, False], device=device)
    with pytest.raises(Exception) as theirs:
        F.binary_cross_entropy_with_logits(x, t, pos_weight=pw)
    with pytest.raises(type(theirs.value), match="with a bool tensor is not supported") as ours:
        bce_ext.binary_cross_entropy_with_logits(x, t, pos_weight=pw)
    assert str(ours.value).splitlines()[0] == str(theirs.value).splitlines()[0]
