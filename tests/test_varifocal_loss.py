"""What only the varifocal loss has (the generic suites run its row, ROW):
mmdetection's avg_factor, module and errors, iou_weighted, the limits at infinite logits, the
gradient through the focal weight, and mmdetection's own test cases."""
import math

import pytest
import torch
import torch.nn.functional as F
from losses import FOCAL_FAMILY, bad_values, row
from oracle import REDUCTIONS, assert_matches
from references import exact_cross_entropy, weight_reduce_loss

import bce_ext


def varifocal_loss_formula(pred, target, weight=None, alpha=0.75, gamma=2.0, iou_weighted=True,
                           reduction="mean", avg_factor=None):
    """mmdetection's varifocal_loss (mmdet/models/losses/varifocal_loss.py) in torch ops."""
    assert pred.size() == target.size()
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = target * (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    else:
        focal_weight = (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def composite_varifocal_loss(pred, target, weight=None, alpha=0.75, gamma=2.0,
                             iou_weighted=True, reduction="mean", avg_factor=None):
    """mmdetection's formula with its cross entropy written exactly, the suites' oracle of the
    varifocal loss: (1 - t) x + log1p(exp(-x)) for x >= 0, -t x + log1p(exp(x)) for x < 0, in
    elementary ops (nested forward AD: see composite_sigmoid_focal_loss). mmdetection's
    F.binary_cross_entropy_with_logits, (1 - t) x - log_sigmoid(x), loses digits to cancellation
    where the loss is small against |x| (t = 1e-12, x = -1e4: 9.99898e-9 for 1e-8, in float64),
    which a loss weighted by t or 1 does not hide."""
    if not (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor)) or \
            not pred.is_floating_point() or pred.size() != target.size():  # mmdetection's errors
        return varifocal_loss_formula(pred, target, weight, alpha, gamma, iou_weighted, reduction,
                                      avg_factor)
    p = pred.sigmoid()
    target = target.type_as(pred)
    positive = (target > 0.0).to(pred.dtype)
    focal_weight = (target if iou_weighted else 1.0) * positive + \
        alpha * (p - target).abs().pow(gamma) * (1 - positive)
    ce = exact_cross_entropy(pred, target)
    return weight_reduce_loss(ce * focal_weight, weight, reduction, avg_factor)


# The formula of record where mmdetection is not installed (references.reference).
FORMULA = varifocal_loss_formula


def varifocal_extra(draw, shape, dtype, device):
    """The varifocal loss's alpha (mmdetection's default, others), gamma (0: BCE with logits
    times alpha on the negatives; the exact powers 1 and 2; exp(gamma log |u|) the others) and
    iou_weighted."""
    from hypothesis import strategies as st
    return {"alpha": draw(st.sampled_from((0.75, 0.25, 0.0)), label="alpha"),
            "gamma": draw(st.sampled_from((2.0, 0.0, 0.5, 1.0, 5.0)), label="gamma"),
            "iou_weighted": draw(st.booleans(), label="iou_weighted")}


# The varifocal loss (mmdetection's API: a weight, no label smoothing, 'mean' by default).
ROW = row(
    "varifocal_loss",
    # mmdetection's formula, its cross entropy without cancellation (references.py says why).
    reference=composite_varifocal_loss,
    **FOCAL_FAMILY,
    extra=varifocal_extra,
    param_cases=({"gamma": 0.5, "iou_weighted": False}, {"gamma": 0.0, "alpha": 0.25},
                 {"gamma": 5.0, "alpha": 0.0}),
    bad_params=bad_values(
        ("gamma", (-1.0, -1e-9, math.inf, math.nan), "gamma must be a finite number >= 0, got "),
        ("alpha", (-0.5, math.inf, math.nan), "alpha must be a finite number >= 0, got ")),
    module_call=lambda module, x, t, w, reduction, **params: module(
        reduction=reduction, **params)(x, t, weight=w),
    error_texts=False,
    # mmdetection asserts the sizes; bce_ext raises ValueError (an AssertionError too from the
    # functional and module, so that code catching mmdetection's keeps working).
    error_types=((AssertionError, ValueError),),
    casts_target=True,
    reference_refuses_weight_grad=False,
    reference_broadcasts_up=True,
)


INF = math.inf


def _grads(fn, x, t, **kwargs):
    x, t = x.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    out = fn(x, t, **kwargs)
    return (out.detach(),) + torch.autograd.grad(out.sum(), (x, t))


def _cases(device, dtype=torch.float64, shape=(6, 5), seed=0):
    """Logits and IoU-like targets: most 0 (negatives), the rest in (0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    x = 10 * torch.rand(shape, generator=gen, dtype=torch.float64) - 5
    t = torch.rand(shape, generator=gen, dtype=torch.float64)
    t = torch.where(t < 0.6, torch.zeros_like(t), t)
    return x.to(dtype).to(device), t.to(dtype).to(device)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("avg_factor", [3.0, 0.5, "tensor"])
def test_avg_factor(device, reduction, avg_factor):
    """'mean' with an avg_factor divides the (weighted) sum by avg_factor + float32 eps, a tensor
    avg_factor too; 'none' ignores it; gradients flow as mmdetection's."""
    x, t = _cases(device)
    w = torch.rand(5, dtype=torch.float64, device=device)
    factor = torch.tensor(7.0, dtype=torch.float64, device=device) if avg_factor == "tensor" \
        else avg_factor
    ours = _grads(bce_ext.varifocal_loss, x, t, weight=w, reduction=reduction,
                  avg_factor=factor)
    theirs = _grads(varifocal_loss_formula, x, t, weight=w, reduction=reduction,
                    avg_factor=factor)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)


def test_avg_factor_with_sum_raises_mmdetections_error():
    x, t = _cases("cpu")
    with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
        bce_ext.varifocal_loss(x, t, reduction="sum", avg_factor=2.0)
    with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
        bce_ext.VarifocalLoss()(x, t, avg_factor=2.0, reduction_override="sum")


@pytest.mark.parametrize("iou_weighted", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_mmdetections_formula_in_float64(device, iou_weighted, gamma, reduction):
    """Loss and both gradients, the focal weight not detached (mmdetection's), within float64
    rounding of its formula."""
    x, t = _cases(device, seed=int(gamma * 10) + iou_weighted)
    kw = dict(alpha=0.6, gamma=gamma, iou_weighted=iou_weighted, reduction=reduction)
    for a, e in zip(_grads(bce_ext.varifocal_loss, x, t, **kw),
                    _grads(varifocal_loss_formula, x, t, **kw)):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-14)


def test_gradient_flows_through_the_focal_weight():
    """On a negative, d loss / d x has the term C * dw/dx (mmdetection detaches nothing):
    differs from the loss with w held constant."""
    x = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    t = torch.zeros(1, dtype=torch.float64)
    g, = torch.autograd.grad(bce_ext.varifocal_loss(x, t, reduction="sum"), x)
    p = torch.sigmoid(x.detach())
    detached = 0.75 * p ** 2 * (p - 0)  # (p - t) * w with w constant
    assert not torch.allclose(g, detached)
    g_ref, = torch.autograd.grad(varifocal_loss_formula(x, t, reduction="sum"), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=str)
def test_infinite_logits_give_the_limits(device, dtype):
    """Beyond mmdetection (NaN at some of these): the loss's limit, the input gradient's finite
    limit (p - t) * w, the target gradient's limit (infinite with its sign, or 0)."""
    x = torch.tensor([INF, INF, -INF, -INF, INF], dtype=dtype, device=device)
    t = torch.tensor([0.0, 0.7, 0.0, 0.7, 1.0], dtype=dtype, device=device)
    out, gx, gt = _grads(bce_ext.varifocal_loss, x, t, reduction="none")
    # +inf, t = 0: C = inf, w = 0.75; -inf, t = 0: C = 0, w = 0; -inf, t = 0.7: C = inf, w = 0.7;
    # +inf, t = 0.7: C = 0.3 * inf; +inf, t = 1: C = 0.
    assert out.double().tolist() == [INF, INF, 0.0, INF, 0.0]
    s = t[1].double().item()  # 0.7 in the dtype
    want = [0.75, s * (1 - s), 0.0, -s * s, 0.0]
    assert gx.double().tolist() == pytest.approx(want, rel=8e-3 if dtype.itemsize == 2 else 1e-6)
    # gt = |x| * (-sign(x) w + c dw/dt), c = 1 - t at +inf, t at -inf; dw/dt = 1 on positives and
    # -gamma F / u on negatives.
    assert gt.double().tolist()[:4] == [-INF, -INF, 0.0, INF]
    assert torch.isfinite(gx).all()


def test_half_types_return_their_dtype(device):
    """Computed in float32, rounded once to pred's dtype (mmdetection's float32 masks would make
    the loss of a half-type pred float32: bce_ext keeps pred's dtype, docs/behaviour.md)."""
    x, t = _cases(device, torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        out = bce_ext.varifocal_loss(x.to(dtype), t.to(dtype), reduction="none")
        assert out.dtype == dtype
        assert_matches(out, varifocal_loss_formula(x.to(dtype).float(), t.to(dtype).float(),
                                                   reduction="none").to(dtype))


def test_module_is_mmdetections():
    """loss_weight, reduction_override, weight and avg_factor in forward."""
    x, t = _cases("cpu")
    w = torch.rand(6, 5, dtype=torch.float64)
    module = bce_ext.VarifocalLoss(alpha=0.5, gamma=1.5, iou_weighted=False, reduction="sum",
                                   loss_weight=2.5)
    for override in (None, "none", "mean", "sum"):
        got = module(x, t, w, reduction_override=override)
        want = 2.5 * varifocal_loss_formula(x, t, w, alpha=0.5, gamma=1.5, iou_weighted=False,
                                            reduction=override or "sum")
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    got = module(x, t, avg_factor=4.0, reduction_override="mean")
    want = 2.5 * varifocal_loss_formula(x, t, alpha=0.5, gamma=1.5, iou_weighted=False,
                                        reduction="mean", avg_factor=4.0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_mmdetections_own_cases():
    """mmdetection's tests of VarifocalLoss: its assertions (use_sigmoid=False, alpha < 0, sizes
    that differ) and two values."""
    with pytest.raises(AssertionError, match="Only sigmoid varifocal loss supported now"):
        bce_ext.VarifocalLoss(use_sigmoid=False, loss_weight=1.0)
    with pytest.raises(AssertionError):
        bce_ext.VarifocalLoss(alpha=-0.75, gamma=2.0, use_sigmoid=True, loss_weight=1.0)
    loss = bce_ext.VarifocalLoss(use_sigmoid=True, loss_weight=1.0)
    with pytest.raises(AssertionError):
        loss(torch.tensor([[100.0, -100.0]]), torch.tensor([[1.0]]))
    assert torch.allclose(loss(torch.tensor([[100.0, -100.0]]), torch.tensor([[1.0, 0.0]])),
                          torch.tensor(0.0))
    assert torch.allclose(loss(torch.tensor([[0.0, 100.0]]), torch.tensor([[1.0, 1.0]]),
                               torch.tensor([0.0, 1.0])), torch.tensor(0.0))


@pytest.mark.parametrize("kwargs,text", [
    ({"alpha": -0.5}, "alpha must be a finite number >= 0"),
    ({"gamma": -1.0}, "gamma must be a finite number >= 0"),
    ({"use_sigmoid": False}, "Only sigmoid varifocal loss supported now")])
def test_module_errors_are_value_and_assertion_errors(kwargs, text):
    for kind in (ValueError, AssertionError, bce_ext.ArgumentError):
        with pytest.raises(kind, match=text):
            bce_ext.VarifocalLoss(**kwargs)
    with pytest.raises(ValueError, match="reduction_override must be"):
        bce_ext.VarifocalLoss()(torch.zeros(2), torch.zeros(2), reduction_override="avg")


def test_target_cast_to_preds_dtype():
    """mmdetection's target.type_as(pred): an integer or float64 target is cast first (the
    result has pred's dtype)."""
    x, t = _cases("cpu", torch.float32)
    hard = (t > 0).long()
    torch.testing.assert_close(bce_ext.varifocal_loss(x, hard),
                               varifocal_loss_formula(x, hard))
    assert bce_ext.varifocal_loss(x, t.double()).dtype == torch.float32


def test_suites_reference_is_mmdetections_formula():
    """The suites' reference (its cross entropy without cancellation) is mmdetection's formula,
    values and gradients, where that formula loses no digits (x = 0 and -0.0 included), and
    exact where it does."""
    x, t = _cases("cpu")
    x[0, :2] = torch.tensor([0.0, -0.0], dtype=x.dtype)
    for kw in ({}, {"iou_weighted": False, "gamma": 0.5}):
        for a, e in zip(_grads(composite_varifocal_loss, x, t, reduction="none", **kw),
                        _grads(varifocal_loss_formula, x, t, reduction="none", **kw)):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)
    x, t = torch.tensor([-1e4], dtype=torch.float64), torch.tensor([1e-12], dtype=torch.float64)
    exact = composite_varifocal_loss(x, t, reduction="none", iou_weighted=False)
    assert exact.item() == pytest.approx(1e-8, rel=1e-15)
    assert bce_ext.varifocal_loss(x, t, reduction="none", iou_weighted=False).item() == \
        pytest.approx(1e-8, rel=1e-15)


def test_row_is_in_the_table():
    assert ROW.name == "varifocal_loss" and ROW.takes_weight
