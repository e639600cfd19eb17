"""What only the quality focal loss has (the generic suites run its op, element by element,
through its row, ROW): mmdetection's two target forms, the sum over the classes, the per-row
weight and avg_factor, activated inputs, its module and errors, the limits at infinite logits,
and mmdetection's own test cases. The oracles are mmdetection's formulas in torch ops."""
import math

import pytest
import torch
import torch.nn.functional as F
from losses import FOCAL_FAMILY, bad_values, row
from oracle import REDUCTIONS, assert_matches
from references import exact_cross_entropy, weight_reduce_loss
from torch.nn import _reduction as _Reduction

import bce_ext
from bce_ext.losses.quality_focal_loss import quality_focal_loss_elements

OP = torch.ops.bce_ext.quality_focal_loss.default


def _qfl_elements(pred, target, beta, activated):
    """mmdetection's element losses of a dense target (before the sum over dim 1), with its
    boolean-mask writes."""
    pred_sigmoid = pred if activated else pred.sigmoid()
    loss_function = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
    zerolabel = pred_sigmoid.new_zeros(pred.shape)
    loss = loss_function(pred, zerolabel, reduction="none") * pred_sigmoid.pow(beta)
    pos = target != 0
    scale_factor = target[pos] - pred_sigmoid[pos]
    loss[pos] = loss_function(pred[pos], target[pos], reduction="none") * \
        scale_factor.abs().pow(beta)
    return loss


def quality_focal_loss_tensor_target_formula(pred, target, weight=None, reduction="mean",
                                             avg_factor=None, beta=2.0, activated=False):
    """mmdetection's quality_focal_loss_tensor_target (mmdet/models/losses/gfocal_loss.py) with
    its weighted_loss decorator, in torch ops."""
    assert pred.size() == target.size()
    target = target.type(pred.dtype)
    loss = _qfl_elements(pred, target, beta, activated).sum(dim=1, keepdim=False)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def quality_focal_loss_formula(pred, target, weight=None, reduction="mean", avg_factor=None,
                               beta=2.0, activated=False):
    """mmdetection's quality_focal_loss (activated: quality_focal_loss_with_prob) of a
    (labels, scores) target, in torch ops."""
    assert len(target) == 2
    label, score = target
    pred_sigmoid = pred if activated else pred.sigmoid()
    loss_function = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
    zerolabel = pred_sigmoid.new_zeros(pred.shape)
    loss = loss_function(pred, zerolabel, reduction="none") * pred_sigmoid.pow(beta)
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = loss_function(pred[pos, pos_label], score[pos], reduction="none") * \
        scale_factor.abs().pow(beta)
    return weight_reduce_loss(loss.sum(dim=1, keepdim=False), weight, reduction, avg_factor)


def quality_focal_loss_where(pred, target, weight=None, reduction="mean", avg_factor=None,
                             beta=2.0, activated=False):
    """quality_focal_loss_tensor_target_formula with torch.where for its boolean-mask writes: the
    same values and gradients, in one graph under torch.compile (the benchmarks' baseline)."""
    assert pred.size() == target.size()
    target = target.type(pred.dtype)
    pred_sigmoid = pred if activated else pred.sigmoid()
    loss_function = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
    pos = target != 0
    negative = loss_function(pred, torch.zeros_like(pred_sigmoid), reduction="none") * \
        pred_sigmoid.pow(beta)
    positive = loss_function(pred, torch.where(pos, target, torch.zeros_like(target)),
                             reduction="none") * (target - pred_sigmoid).abs().pow(beta)
    loss = torch.where(pos, positive, negative).sum(dim=1, keepdim=False)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


# The formula of record where mmdetection is not installed (references.reference): the dense
# form, which the registry names (the benchmarks and the DDP cases give it dense targets), with
# torch.where for mmdetection's mask writes (test_where_form_is_mmdetections).
FORMULA = quality_focal_loss_where


def quality_focal_elements_formula(pred, target, weight=None, reduction="mean", beta=2.0):
    """mmdetection's chain of ops for the element losses (quality_focal_loss_tensor_target
    before its sum over dim 1), weighted and reduced element by element."""
    assert pred.size() == target.size()
    loss = _qfl_elements(pred, target.type(pred.dtype), beta, False)
    if weight is not None:
        loss = loss * weight
    return (loss, loss.mean(), loss.sum())[_Reduction.get_enum(reduction)]


def composite_quality_focal_elements(x, t, weight=None, reduction="mean", beta=2.0):
    """mmdetection's element losses in elementary ops, its cross entropy without cancellation
    (references.exact_cross_entropy) and without boolean-mask writes (so that vmap, forward AD
    and compile take it): BCE(x, y) * |y - p| ** beta, y the target where it is not 0 and a
    constant 0 where it is (mmdetection's zero label). Inputs mmdetection refuses go through its
    own chain, for its errors."""
    if not (isinstance(x, torch.Tensor) and isinstance(t, torch.Tensor)) or \
            not x.is_floating_point() or x.size() != t.size():
        return quality_focal_elements_formula(x, t, weight, reduction, beta)
    t = t.type_as(x)
    y = torch.where(t != 0, t, torch.zeros_like(t))
    loss = exact_cross_entropy(x, y) * (y - x.sigmoid()).abs().pow(beta)
    if weight is not None:
        loss = loss * weight
    return (loss, loss.mean(), loss.sum())[_Reduction.get_enum(reduction)]


def quality_focal_extra(draw, shape, dtype, device):
    """beta: mmdetection's default, 0 (the cross entropy alone), the exact power 2 and
    exp(beta log |u|) for the others. Not 0 < beta < 2 in these element-by-element comparisons:
    there the derivative in u = p - t of the gradients (below 1 of the loss too) is unbounded at
    u = 0, so near p = t a float32 result is as good as sigmoid's last bit, ours or PyTorch's
    (test_small_beta_is_as_good_as_sigmoids_last_bit judges those by that bound)."""
    from hypothesis import strategies as st
    return {"beta": draw(st.sampled_from((2.0, 0.0, 2.5, 3.0, 5.0)), label="beta")}


# The quality focal loss's op (a weight, no label smoothing, 'mean' by default).
ROW = row(
    "quality_focal_loss",
    reference=composite_quality_focal_elements,
    **FOCAL_FAMILY,
    extra=quality_focal_extra,
    param_cases=({"beta": 2.5}, {"beta": 0.0}, {"beta": 5.0}),
    bad_params=bad_values(
        ("beta", (-1.0, -1e-9, math.inf, math.nan), "beta must be a finite number >= 0, got ")),
    # The module sums the classes (mmdetection's; its own tests below); the generic suites' module
    # entry runs the element losses.
    module_call=lambda module, x, t, w, reduction, **params: quality_focal_loss_elements(
        x, t, w, reduction, **params),
    error_texts=False,
    # mmdetection asserts the sizes; bce_ext raises ValueError (an AssertionError too).
    error_types=((AssertionError, ValueError),),
    casts_target=True,
    reference_refuses_weight_grad=False,
    reference_broadcasts_up=True,
)


INF = math.inf


def _leaves(*values):
    return [v.detach().clone().requires_grad_(v.is_floating_point()) for v in values]


def _grads(fn, x, t, wrt_target=True, ones=False, **kwargs):
    """fn's loss of (x, t) and its gradients for x and (where wrt_target) t: a tensor target, or
    the scores of a (labels, scores) pair; the incoming gradient a ramp over [-1, 1] (ones:
    ones)."""
    x, = _leaves(x)
    if isinstance(t, tuple):
        label, score = t[0], _leaves(t[1])[0]
        out = fn(x, (label, score), **kwargs)
        wrt = (x, score)
    else:
        t, = _leaves(t)
        out = fn(x, t, **kwargs)
        wrt = (x, t) if wrt_target else (x,)
    g = torch.ones_like(out) if ones else \
        torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    return (out.detach(),) + torch.autograd.grad(out, wrt, g)


def _cases(device, dtype=torch.float64, rows=12, classes=7, seed=0):
    """Logits, and labels in [-1, C] (C the background, -1 a negative too) with quality scores:
    the pair and its dense target."""
    gen = torch.Generator().manual_seed(seed)
    x = (10 * torch.rand(rows, classes, generator=gen, dtype=torch.float64) - 5)
    label = torch.randint(-1, classes + 1, (rows,), generator=gen)
    score = torch.rand(rows, generator=gen, dtype=torch.float64)
    dense = torch.where(label.unsqueeze(1) == torch.arange(classes), score.unsqueeze(1), 0.0)
    return (x.to(dtype).to(device), (label.to(device), score.to(dtype).to(device)),
            dense.to(dtype).to(device))


def _close(a, e):
    torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("beta", [2.0, 0.0, 0.5, 1.0, 3.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_both_target_forms_match_mmdetections_formulas(device, beta, reduction, weighted):
    """Loss and gradients (for pred, and for the scores or the dense target), within float64
    rounding of mmdetection's formula of each form."""
    x, pair, dense = _cases(device, seed=int(beta * 10) + weighted)
    w = torch.rand(x.size(0), dtype=x.dtype, device=device) if weighted else None
    kw = dict(weight=w, reduction=reduction, beta=beta)
    for a, e in zip(_grads(bce_ext.quality_focal_loss, x, pair, **kw),
                    _grads(quality_focal_loss_formula, x, pair, **kw)):
        _close(a, e)
    for fn in (bce_ext.quality_focal_loss, bce_ext.quality_focal_loss_tensor_target):
        for a, e in zip(_grads(fn, x, dense, **kw),
                        _grads(quality_focal_loss_tensor_target_formula, x, dense, **kw)):
            _close(a, e)


def test_pair_and_its_one_hot_target_give_the_same_loss():
    """mmdetection's test: the (labels, scores) pair and its one-hot dense target, to the bit."""
    pred = torch.rand(4, 5)
    label = torch.tensor([0, 1, 2, 0])
    quality = torch.rand(4)
    target = F.one_hot(label, 5) * quality.reshape(4, 1)
    for activated in (False, True):
        module = bce_ext.QualityFocalLoss(activated=activated)
        original = module(pred, (label, quality))
        assert isinstance(original, torch.Tensor)
        assert module(pred, target) == original
        want = quality_focal_loss_formula(pred.double(), (label, quality.double()),
                                          activated=activated)
        torch.testing.assert_close(original.double(), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_activated_matches_mmdetections_with_prob(device, reduction):
    x, pair, dense = _cases(device)
    p = x.sigmoid()
    w = torch.rand(x.size(0), dtype=x.dtype, device=device)
    kw = dict(weight=w, reduction=reduction, beta=1.5)
    for a, e in zip(_grads(bce_ext.quality_focal_loss_with_prob, p, pair, **kw),
                    _grads(quality_focal_loss_formula, p, pair, activated=True, **kw)):
        _close(a, e)
    for a, e in zip(_grads(bce_ext.quality_focal_loss, p, dense, activated=True, **kw),
                    _grads(quality_focal_loss_tensor_target_formula, p, dense, activated=True,
                           **kw)):
        _close(a, e)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("avg_factor", [3.0, 0.5, "tensor"])
def test_avg_factor(device, reduction, avg_factor):
    """'mean' with an avg_factor divides the weighted sum of the rows by avg_factor + float32
    eps; 'none' ignores it."""
    x, pair, _ = _cases(device)
    w = torch.rand(x.size(0), dtype=torch.float64, device=device)
    factor = torch.tensor(7.0, dtype=torch.float64, device=device) if avg_factor == "tensor" \
        else avg_factor
    kw = dict(weight=w, reduction=reduction, avg_factor=factor)
    for a, e in zip(_grads(bce_ext.quality_focal_loss, x, pair, **kw),
                    _grads(quality_focal_loss_formula, x, pair, **kw)):
        _close(a, e)


def test_avg_factor_with_sum_raises_mmdetections_error():
    x, pair, _ = _cases("cpu")
    with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
        bce_ext.quality_focal_loss(x, pair, reduction="sum", avg_factor=2.0)
    with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
        bce_ext.QualityFocalLoss()(x, pair, avg_factor=2.0, reduction_override="sum")


def test_rows_of_more_than_two_dims_and_their_weights(device):
    """A dense target of shape (N, C, H): the classes summed, (N, H) per row; a weight of the
    rows' shape or one that broadcasts to it."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, 3, generator=gen, dtype=torch.float64).to(device)
    t = torch.rand(5, 4, 3, generator=gen, dtype=torch.float64)
    t = torch.where(t < 0.6, 0.0, t).to(device)
    for w in (None, torch.rand(5, 3, dtype=torch.float64, device=device),
              torch.rand(3, dtype=torch.float64, device=device)):
        for reduction in REDUCTIONS:
            kw = dict(weight=w, reduction=reduction)
            got = _grads(bce_ext.quality_focal_loss, x, t, **kw)
            assert got[0].shape == ((5, 3) if reduction == "none" else ())
            for a, e in zip(got, _grads(quality_focal_loss_tensor_target_formula, x, t, **kw)):
                _close(a, e)


def test_empty_rows_and_classes():
    """No rows: 'mean' is NaN (0/0, mmdetection's mean of nothing), 'sum' 0; no classes: every
    row's loss is 0."""
    for shape in ((0, 5), (3, 0)):
        x, t = torch.zeros(shape), torch.zeros(shape)
        for reduction in REDUCTIONS:
            got = bce_ext.quality_focal_loss(x, t, reduction=reduction)
            want = quality_focal_loss_tensor_target_formula(x, t, reduction=reduction)
            torch.testing.assert_close(got, want, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_other_dtypes_within_their_rounding(device, dtype):
    """float32 and the half types (computed in float32, rounded once) against the float64
    formula rounded to the dtype."""
    x, pair, dense = _cases(device, rows=40, classes=9, seed=5)
    for target in (dense, pair):
        cast = target.to(dtype) if isinstance(target, torch.Tensor) else \
            (target[0], target[1].to(dtype))
        for reduction in REDUCTIONS:
            got = bce_ext.quality_focal_loss(x.to(dtype), cast, reduction=reduction)
            assert got.dtype == dtype
            x64 = x.to(dtype).double()
            t64 = cast.double() if isinstance(cast, torch.Tensor) else (cast[0], cast[1].double())
            fn = quality_focal_loss_tensor_target_formula if isinstance(cast, torch.Tensor) \
                else quality_focal_loss_formula
            assert_matches(got, fn(x64, t64, reduction=reduction).to(dtype), dtype)


def test_target_gradient_is_zero_where_the_target_is_zero():
    """mmdetection's negatives use a constant zero label: no gradient reaches a zero target,
    whatever the logit; elsewhere it does."""
    x = torch.tensor([[-3.0, 0.0, 2.5, 7.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.0, 0.6, 0.0]], dtype=torch.float64)
    _, gx, gt = _grads(bce_ext.quality_focal_loss, x, t, reduction="sum")
    assert gt[0, [0, 1, 3]].tolist() == [0.0, 0.0, 0.0] and gt[0, 2] != 0
    _, gx_ref, gt_ref = _grads(quality_focal_loss_tensor_target_formula, x, t, reduction="sum")
    _close(gx, gx_ref)
    _close(gt, gt_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=str)
def test_infinite_logits_give_the_limits(device, dtype):
    """Beyond mmdetection (NaN at some of these): the loss's limit, the input gradient's finite
    limit (p - t) * F, the target gradient's limit (infinite with its sign, or 0)."""
    x = torch.tensor([[INF, INF, -INF, -INF, INF]], dtype=dtype, device=device)
    t = torch.tensor([[0.0, 0.7, 0.0, 0.7, 1.0]], dtype=dtype, device=device)
    out = OP(x, t, None, 0, 2.0)
    xs, ts = _leaves(x, t)
    gx, gt = torch.autograd.grad(OP(xs, ts, None, 0, 2.0).sum(), (xs, ts))
    s = t[0, 1].double().item()  # 0.7 in the dtype
    # +inf, t = 0: C = inf, F = 1; -inf, t = 0: C = 0, F = 0; -inf, t = 0.7: C = inf,
    # F = 0.49; +inf, t = 0.7: C = 0.3 * inf, F = 0.09; +inf, t = 1: C = 0.
    assert out.double().tolist()[0] == [INF, INF, 0.0, INF, 0.0]
    want = [1.0, (1 - s) ** 3, 0.0, -s ** 3, 0.0]
    assert gx.double().tolist()[0] == pytest.approx(want, rel=8e-3 if dtype.itemsize == 2
                                                    else 1e-6)
    # gt = |x| (-sign(x) F - c dF/du), c = 1 - t at +inf, t at -inf; 0 where t = 0.
    assert gt.double().tolist()[0][:4] == [0.0, -INF, 0.0, INF]
    assert torch.isfinite(gx).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("beta", [0.25, 0.5, 1.0, 1.5])
def test_small_beta_is_as_good_as_sigmoids_last_bit(dtype, beta):
    """0 < beta < 2, targets within a few ulps of p = sigmoid(x) (and elsewhere): the loss and
    both gradients lie within what the float64 formula takes over the logits whose p is within 4
    ulps of the dtype of x's, taken as the targets within 4 ulps of t (the same u = p - t; backward
    stability in p: the gradients' derivative in u, and for beta < 1 the loss's, is unbounded at
    u = 0, or jumps for beta = 1, so no sigmoid does better there than its last bits)."""
    gen = torch.Generator().manual_seed(int(beta * 100))
    n = 3000
    x = (20 * torch.rand(n, generator=gen, dtype=torch.float64) - 10).to(dtype)
    p = torch.sigmoid(x.double())
    eps = torch.finfo(dtype).eps
    near = p * (1 + eps * torch.randint(-6, 7, (n,), generator=gen).double())
    t = torch.where(torch.arange(n) % 3 == 0, torch.rand(n, generator=gen, dtype=torch.float64),
                    near).clamp(0, 1).to(dtype)
    got = _grads(quality_focal_loss_elements, x, t, reduction="none", beta=beta, ones=True)
    # The float64 results over 65 targets across t +- 4 ulps of p in dtype: the same u = p - t as
    # p moved by that much (the cross entropy's change, -x dt, is far below the tolerances).
    dt = 4 * eps * torch.maximum(p, torch.full_like(p, torch.finfo(dtype).tiny))
    steps = torch.linspace(-1, 1, 65, dtype=torch.float64)
    ts = t.double().unsqueeze(0) + steps.unsqueeze(1) * dt.unsqueeze(0)
    spread = _grads(composite_quality_focal_elements, x.double().expand_as(ts), ts,
                    reduction="none", beta=beta, ones=True)
    # Where the window holds u = 0 the loss's least value is 0, and the gradients take any
    # value (unbounded there for beta < 1, a jump for beta = 1).
    holds_zero = (t.double() - p).abs() <= dt
    for name, a, s in zip(("loss", "grad_input", "grad_target"), got, spread):
        lo, hi = s.min(dim=0).values, s.max(dim=0).values
        if name == "loss":
            lo = torch.where(holds_zero, lo.clamp_max(0.0), lo)
        else:
            lo = torch.where(holds_zero, -math.inf, lo)
            hi = torch.where(holds_zero, math.inf, hi)
        tol = 1e-6 + 4e-6 * torch.maximum(lo.abs(), hi.abs()) if dtype == torch.float32 else \
            1e-12 + 1e-12 * torch.maximum(lo.abs(), hi.abs())
        a = a.double()
        bad = (a < lo - tol) | (a > hi + tol)
        first = [(x[i].item(), t[i].item(), a[i].item(), lo[i].item(), hi[i].item())
                 for i in bad.nonzero()[:4, 0]]
        assert not bad.any(), (name, int(bad.sum()), first)


def test_module_is_mmdetections():
    """loss_weight, reduction_override, weight and avg_factor in forward, both target forms."""
    x, pair, dense = _cases("cpu")
    w = torch.rand(x.size(0), dtype=torch.float64)
    module = bce_ext.QualityFocalLoss(beta=1.5, reduction="sum", loss_weight=2.5)
    for override in (None, "none", "mean", "sum"):
        for target, fn in ((pair, quality_focal_loss_formula),
                           (dense, quality_focal_loss_tensor_target_formula)):
            got = module(x, target, w, reduction_override=override)
            _close(got, 2.5 * fn(x, target, w, beta=1.5, reduction=override or "sum"))
    got = module(x, pair, avg_factor=4.0, reduction_override="mean")
    _close(got, 2.5 * quality_focal_loss_formula(x, pair, beta=1.5, avg_factor=4.0))


def test_mmdetections_own_cases_and_errors():
    """mmdetection's assertions: use_sigmoid=False, a reduction_override that is not a
    reduction, a pair that is not two, sizes that differ; a negative beta a ValueError."""
    with pytest.raises(AssertionError, match="Only sigmoid in QFL supported now"):
        bce_ext.QualityFocalLoss(use_sigmoid=False)
    pred, target = torch.rand(10, 4), torch.rand(10, 4)
    with pytest.raises(AssertionError):
        bce_ext.QualityFocalLoss()(pred, target, None, reduction_override=True)
    with pytest.raises(AssertionError):
        bce_ext.quality_focal_loss(pred, (torch.zeros(10, dtype=torch.long),))
    with pytest.raises(AssertionError):
        bce_ext.quality_focal_loss(pred, torch.rand(10, 3))
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        bce_ext.quality_focal_loss(pred, target, beta=-1.0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        bce_ext.quality_focal_loss(pred.sigmoid(), target, beta=-1.0, activated=True)
    with pytest.raises(IndexError, match="Dimension out of range"):
        bce_ext.quality_focal_loss(torch.rand(4), torch.rand(4))


def test_target_cast_to_preds_dtype():
    """mmdetection's target.type(pred.dtype): a float64 or integer target is cast first."""
    x, _, dense = _cases("cpu", torch.float32)
    got = bce_ext.quality_focal_loss(x, dense.double())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, quality_focal_loss_tensor_target_formula(x, dense))
    hard = (dense > 0).long()
    torch.testing.assert_close(bce_ext.quality_focal_loss(x, hard),
                               quality_focal_loss_tensor_target_formula(x, hard))


def test_suites_reference_is_mmdetections_elements():
    """The generic suites' reference (composite_quality_focal_elements) is mmdetection's element
    losses, values and gradients."""
    x, _, dense = _cases("cpu")
    x[0, :2] = torch.tensor([0.0, -0.0], dtype=x.dtype)
    for beta in (2.0, 0.5):
        ours = _grads(composite_quality_focal_elements, x, dense, reduction="none", beta=beta)
        theirs = _grads(lambda p, t, beta: _qfl_elements(p, t, beta, False), x, dense,
                        beta=beta)
        for a, e in zip(ours, theirs):
            _close(a, e)


@pytest.mark.parametrize("activated", [False, True])
def test_where_form_is_mmdetections(activated):
    """The benchmarks' baseline (torch.where) gives mmdetection's values and gradients."""
    x, _, dense = _cases("cpu")
    x = x.sigmoid() if activated else x
    w = torch.rand(x.size(0), dtype=x.dtype)
    for reduction in REDUCTIONS:
        kw = dict(weight=w, reduction=reduction, beta=1.5, activated=activated)
        for a, e in zip(_grads(quality_focal_loss_where, x, dense, **kw),
                        _grads(quality_focal_loss_tensor_target_formula, x, dense, **kw)):
            _close(a, e)


def test_row_is_in_the_table():
    assert ROW.name == "quality_focal_loss" and ROW.takes_weight
