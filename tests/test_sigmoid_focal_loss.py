"""What only the sigmoid focal loss has: its alpha and gamma over the grid, gamma = 0 as BCE with
logits, the limits where torchvision's formula gives NaN (gamma < 1 at p_t = 1, infinite logits),
torchvision's errors, the module, opcheck and compile of its ops. The suites over losses.ALL_LOSSES
run it too (values, layouts, thresholds, transforms)."""
import copy
import decimal
import math
import pickle
import zlib

import pytest
import torch
import torch.nn.functional as F
from conftest import DTYPES
from losses import FOCAL_FAMILY, bad_values, row
from oracle import REDUCTIONS, assert_loss_matches, assert_matches, oracle, ours
from references import exact_cross_entropy

import bce_ext
import bce_ext._registry as registry


def sigmoid_focal_loss_formula(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (torchvision 0.29) in torch ops."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    loss = ce * (1 - (p * targets + (1 - p) * (1 - targets))) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    # torchvision's order: only the reduction asked for (the benchmarks time this as eager), then
    # its error, after the work as there.
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction "
                     "modes: 'none', 'mean', 'sum'")


# The formula of record where torchvision is not installed (references.reference).
FORMULA = sigmoid_focal_loss_formula
# torchvision's function, or its formula: the oracle of the tests below.
TORCHVISION = registry.get("sigmoid_focal_loss").replaced() or sigmoid_focal_loss_formula


def composite_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision's formula written without its cancellations (the cross entropy as
    exact_cross_entropy, 1 - p_t as below), the suites' oracle of the focal loss; its errors are
    torchvision's (the literal formula's)."""
    tensors = isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)
    if not tensors or not (inputs.is_floating_point() and targets.is_floating_point()) or \
            inputs.shape != targets.shape or reduction not in ("none", "mean", "sum"):
        return TORCHVISION(inputs, targets, alpha, gamma, reduction)
    p = torch.sigmoid(inputs)
    ce_loss = exact_cross_entropy(inputs, targets)
    # 1 - p_t as t (1 - p) + (1 - t) p, with 1 - p = sigmoid(-x): 1 - p_t cancels where p_t is
    # close to 1 (x = -88, t = 1e-7: relative 1e-9 in float64).
    one_minus_p_t = targets * torch.sigmoid(-inputs) + (1 - targets) * p
    loss = ce_loss * (one_minus_p_t ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _target_gradient_to_50_digits(x, t, alpha, gamma):
    """d loss / d t of one element, its product rule in 50-digit decimals (no cancellation left at
    float64's precision): M (dA/dt C - A x) + A C gamma m ** (gamma - 1) dm/dt."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        x, t, alpha, gamma = (decimal.Decimal(float(v)) for v in (x, t, alpha, gamma))
        e = (-abs(x)).exp()
        p, q = (1 / (1 + e), e / (1 + e)) if x >= 0 else (e / (1 + e), 1 / (1 + e))
        m = t * q + (1 - t) * p
        ce = (-t * x if x < 0 else (1 - t) * x) + (1 + e).ln()
        a, da = (alpha * t + (1 - alpha) * (1 - t), 2 * alpha - 1) if alpha >= 0 else (1, 0)
        power = (lambda k: m ** (gamma - k)) if gamma != 0 else (lambda k: 1 if k == 0 else 0)
        return float(power(0) * (da * ce - a * x) + a * ce * gamma * power(1) * (q - p))


class _ExactFocal(torch.autograd.Function):
    """The element loss of composite_sigmoid_focal_loss, whose target gradient is computed to 50
    digits where it is finite: in float64 its terms (each about |x|) cancel to a result about an
    ulp of them off (x = -1e4, t = 1, alpha 0.25, gamma 1: 9.1e-13 for 0), which bce_ext's
    regrouped float64 formula does not."""

    @staticmethod
    def forward(ctx, x, t, alpha, gamma):
        ctx.save_for_backward(x, t)
        ctx.alpha, ctx.gamma = alpha, gamma
        return composite_sigmoid_focal_loss(x, t, alpha, gamma)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        alpha, gamma = ctx.alpha, ctx.gamma
        with torch.enable_grad():
            xr, tr = x.detach().requires_grad_(), t.detach().requires_grad_()
            gx, gt = torch.autograd.grad(composite_sigmoid_focal_loss(xr, tr, alpha, gamma),
                                         (xr, tr), torch.ones_like(g))
        # The elements whose terms cancel to a thousandth of their size or less (the others lose
        # no digit worth a 50-digit recount).
        p, q = torch.sigmoid(x), torch.sigmoid(-x)
        m, ce = t * q + (1 - t) * p, exact_cross_entropy(x, t)
        a, da = (alpha * t + (1 - alpha) * (1 - t), 2 * alpha - 1) if alpha >= 0 else (1.0, 0.0)
        big_m = m ** gamma
        d1 = gamma * torch.where(m > 0, m, 1.0) ** (gamma - 1) if gamma else torch.zeros_like(m)
        size = (big_m * da * ce).abs() + (big_m * a * x).abs() + (a * ce * d1 * (q - p)).abs()
        at_risk = ((size > 1e3 * gt.abs()) & gt.isfinite()).flatten().nonzero().flatten().tolist()
        flat = gt.flatten().clone()
        xs, ts = x.flatten(), t.flatten()
        for i in at_risk:
            flat[i] = _target_gradient_to_50_digits(xs[i].item(), ts[i].item(), alpha, gamma)
        return gx * g, flat.view_as(gt) * g, None, None


def exact_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """The float64 truth of the focal loss: composite_sigmoid_focal_loss, its target gradient to
    50 digits (_ExactFocal). Its errors are the composite's."""
    tensors = isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)
    if not tensors or inputs.shape != targets.shape or inputs.device.type != "cpu" or \
            reduction not in ("none", "mean", "sum"):
        return composite_sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    loss = _ExactFocal.apply(inputs, targets, alpha, gamma)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def focal_extra(draw, shape, dtype, device):
    """The focal loss's alpha (torchvision's default, off, the other class weighted more) and gamma
    (0: alpha_t times BCE with logits; the exact powers 1 and 2; exp(gamma log m) the others)."""
    from hypothesis import strategies as st
    return {"alpha": draw(st.sampled_from((0.25, -1.0, 0.75)), label="alpha"),
            "gamma": draw(st.sampled_from((0.0, 0.5, 1.0, 2.0, 5.0)), label="gamma")}


def _focal(fn):
    """The focal loss with the suites' calling convention (weight, reduction 'mean' by default):
    it takes no weight. Keywords of bce_ext's own (ignore_index) pass through."""
    def loss(input, target, weight=None, reduction="mean", alpha=0.25, gamma=2.0, **own):
        assert weight is None, "the focal loss takes no weight"
        return fn(input, target, alpha=alpha, gamma=gamma, reduction=reduction, **own)
    loss.__name__ = fn.__name__
    return loss


# The sigmoid focal loss (torchvision's API: no weight, no label smoothing): the suites run it where
# an argument it has is tested (ALL_LOSSES), and test_sigmoid_focal_loss.py what only it has.
ROW = row(
    "sigmoid_focal_loss",
    ours=_focal(bce_ext.sigmoid_focal_loss),
    reference=_focal(TORCHVISION),
    # torchvision's formula without its cancellations (composite_sigmoid_focal_loss), its target
    # gradient to 50 digits: the float64 truth; in elementary ops, the reference under nested
    # forward AD.
    exact_reference=_focal(exact_sigmoid_focal_loss),
    composite_reference=_focal(composite_sigmoid_focal_loss),
    **FOCAL_FAMILY,
    extra=focal_extra,
    param_cases=({"gamma": 0.5, "alpha": -1.0}, {"gamma": 0.0}, {"gamma": 5.0, "alpha": 0.75}),
    bad_params=bad_values(
        ("gamma", (-1.0, -1e-9, math.inf, math.nan), "gamma must be a finite number >= 0, got "),
        ("alpha", (math.inf, -math.inf, math.nan), "alpha must be finite, got ")),
)


INF = math.inf
OPS = torch.ops.bce_ext
GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
ALPHAS = (0.25, -1.0, 0.75, 0.0, 1.0)
# A tail that is no multiple of a vector width, and one past the one-thread limit (32768 elements)
# (test_thresholds.py crosses every threshold exactly).
SHAPES = [(), (7,), (3, 5), (2, 40001)]


def _operands(shape, dtype, device, key, hard=False):
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    x = ROW.inputs(shape, dtype, device, gen)
    if hard:  # detection targets: mostly 0, some 1
        t = (torch.rand(shape, generator=gen) < 0.1).to(dtype).to(device)
    else:
        t = torch.rand(shape, dtype=torch.float64, generator=gen).to(dtype).to(device)
    return x, t


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_alpha_gamma_grid(device, dtype, reduction, alpha, gamma, shape, hard):
    """torchvision's values and gradients (the half types: its formula in float32, rounded)."""
    x, t = _operands(shape, dtype, device, f"{dtype}{reduction}{alpha}{gamma}{shape}{hard}", hard)
    g = None
    if reduction == "none":
        g = torch.rand(shape, dtype=torch.float64).to(dtype).to(device) - 0.5
    assert_loss_matches(x, t, None, reduction, g, loss=ROW, alpha=alpha, gamma=gamma)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_gamma_zero_is_bce_with_logits(device, dtype, reduction):
    """gamma = 0 and no alpha: BCE with logits, to the last bit of bce_ext's own logits loss up to
    the order of the additions (its ce is written without the logits loss's cancellation);
    with alpha, alpha_t times it."""
    x, t = _operands((5, 9), dtype, device, "gamma0")
    x[0, :4] = torch.tensor([30.0, -30.0, 0.0, 1e-3])
    for alpha in (-1.0, 0.25):
        alpha_t = 1.0 if alpha < 0 else alpha * t + (1 - alpha) * (1 - t)
        focal = bce_ext.sigmoid_focal_loss(x, t, alpha=alpha, gamma=0.0, reduction="none")
        logits = bce_ext.binary_cross_entropy_with_logits(x, t, reduction="none")
        torch.testing.assert_close(focal, alpha_t * logits)
        reduced = bce_ext.sigmoid_focal_loss(x, t, alpha=alpha, gamma=0.0, reduction=reduction)
        expected = {"none": alpha_t * logits, "mean": (alpha_t * logits).mean(),
                    "sum": (alpha_t * logits).sum()}[reduction]
        torch.testing.assert_close(reduced, expected)
        if alpha < 0:
            assert_matches(reduced, F.binary_cross_entropy_with_logits(x, t, reduction=reduction))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_infinite_logits_give_the_limits(device, dtype, gamma):
    """Beyond torchvision (NaN there): the loss at an infinite logit is its limit (0 for the right
    class, +inf for the wrong one, as the logits loss), the input's gradient is finite: the limit
    of the gradient, which at saturation is that at a large finite logit."""
    xs = [INF, INF, INF, -INF, -INF, -INF]
    ts = [1.0, 0.0, 0.5, 1.0, 0.0, 0.5]
    x = torch.tensor(xs, dtype=dtype, device=device, requires_grad=True)
    t = torch.tensor(ts, dtype=dtype, device=device)
    out = bce_ext.sigmoid_focal_loss(x, t, gamma=gamma)
    # the wrong class (t = 0 at +inf, t = 1 at -inf) and soft targets: (1 - p_t) ** gamma is not 0
    assert out.double().tolist() == [0.0, INF, INF, INF, 0.0, INF]
    (gx,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(gx).all()
    # The same gradients at a logit of +-30 in float64, where sigmoid is within 1e-13 of 1 or 0
    # and torchvision's formula is still finite (its 1 - p_t is 0 beyond about 37).
    big = torch.tensor([30.0 if v > 0 else -30.0 for v in xs], dtype=torch.float64,
                       requires_grad=True)
    ref = TORCHVISION(big, t.double().cpu(), gamma=gamma)
    (gref,) = torch.autograd.grad(ref.sum(), big)
    torch.testing.assert_close(gx.double().cpu(), gref, rtol=1e-2, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_gamma_below_one_where_p_t_is_one(device, dtype, gamma):
    """At p_t = 1 (1 - p_t rounds to 0: a logit past exp's underflow, on the right side) the
    derivative of (1 - p_t) ** gamma is infinite for gamma < 1 while the cross entropy and
    d(1 - p_t)/dx vanish faster: bce_ext gives the limit of their product, 0 (torchvision: NaN).
    The gradient is then finite and at most that at a smaller logit, and where torchvision's
    formula is finite the two agree."""
    edge = 104.0 if dtype == torch.float32 else 746.0  # exp(-edge) rounds to 0
    x = torch.tensor([edge, -edge, 2 * edge, 5.0, -5.0], dtype=dtype, device=device,
                     requires_grad=True)
    t = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=dtype, device=device, requires_grad=True)
    out = bce_ext.sigmoid_focal_loss(x, t, gamma=gamma)
    gx, gt = torch.autograd.grad(out.sum(), (x, t))
    assert torch.isfinite(out).all() and torch.isfinite(gx).all() and torch.isfinite(gt).all()
    assert out[:3].tolist() == [0.0, 0.0, 0.0]
    assert gx[:3].abs().max() <= gx[3:].abs().min()
    # the saturated right class: torchvision's gradient is NaN there
    xr, tr = x.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    theirs = torch.autograd.grad(TORCHVISION(xr, tr, gamma=gamma).sum(), xr)[0]
    assert theirs[:3].isnan().any()
    torch.testing.assert_close(gx[3:], theirs[3:], rtol=1e-5, atol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                    (torch.float16, torch.float32),
                                    (torch.bfloat16, torch.float16)],
                         ids=str)
def test_inputs_of_two_dtypes(device, dtypes, reduction):
    """As torchvision's chain of ops: the result in the promoted dtype, each gradient in its own
    tensor's."""
    x = ROW.inputs((4, 6), torch.float64, device).to(dtypes[0])
    t = torch.rand(4, 6, dtype=torch.float64, device=device).to(dtypes[1])
    promoted = torch.promote_types(*dtypes)
    actual = ours(x, t, None, reduction, loss=ROW)
    expected = oracle(x.to(promoted), t.to(promoted), None, reduction, loss=ROW)
    for a, e, dtype in zip(actual, expected, (promoted,) + dtypes):
        assert a.dtype == dtype
        assert_matches(a, e.to(dtype))


def test_errors():
    x, t = torch.randn(3, 4), torch.rand(3, 4)
    for gamma in (-1.0, -1e-9, INF, math.nan):
        with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
            bce_ext.sigmoid_focal_loss(x, t, gamma=gamma)
    for alpha in (INF, math.nan):
        with pytest.raises(ValueError, match="alpha must be finite"):
            bce_ext.sigmoid_focal_loss(x, t, alpha=alpha)
    # torchvision's messages, verbatim
    with pytest.raises(ValueError, match=r"Invalid Value for arg 'reduction': 'avg \n Supported "
                                         r"reduction modes: 'none', 'mean', 'sum'"):
        bce_ext.sigmoid_focal_loss(x, t, reduction="avg")
    for shape in ((4,), (3, 1, 4), (1, 4)):
        with pytest.raises(ValueError, match=r"Target size \(torch.Size\(\[" + str(shape[0])):
            bce_ext.sigmoid_focal_loss(x, torch.rand(shape))
        with pytest.raises(ValueError, match="Target size"):
            TORCHVISION(x, torch.rand(shape))
    with pytest.raises(TypeError, match="argument 'inputs' must be Tensor, not NoneType"):
        bce_ext.sigmoid_focal_loss(None, t)
    with pytest.raises(AttributeError, match="'list' object has no attribute 'size'"):
        bce_ext.sigmoid_focal_loss(x, [0.0] * 4)
    with pytest.raises((RuntimeError, NotImplementedError)):
        bce_ext.sigmoid_focal_loss(torch.arange(4), torch.rand(4))
    # nothing was left broken: a valid call works
    assert_matches(bce_ext.sigmoid_focal_loss(x, t), TORCHVISION(x, t))


def test_module():
    """SigmoidFocalLoss(alpha, gamma, reduction)(x, t) is the functional; it has no state, so
    state_dict is empty and pickling, deepcopy and .to() keep its arguments."""
    x, t = ROW.inputs((6, 3), torch.float32, "cpu"), torch.rand(6, 3)
    module = bce_ext.SigmoidFocalLoss(alpha=0.5, gamma=1.5, reduction="sum")
    assert repr(module) == "SigmoidFocalLoss(alpha=0.5, gamma=1.5, reduction='sum')"
    assert module.state_dict() == {}
    expected = bce_ext.sigmoid_focal_loss(x, t, alpha=0.5, gamma=1.5, reduction="sum")
    for m in (module, pickle.loads(pickle.dumps(module)), copy.deepcopy(module),
              module.to(torch.float64)):
        assert torch.equal(m(x, t), expected)
    default = bce_ext.SigmoidFocalLoss()
    assert (default.alpha, default.gamma, default.reduction) == (0.25, 2.0, "none")
    assert torch.equal(default(x, t), bce_ext.sigmoid_focal_loss(x, t))


@pytest.mark.parametrize("reduction", [0, 1, 2])
def test_opcheck(device, reduction):
    x = (4 * torch.rand(3, 5, dtype=torch.float64, device=device) - 2).requires_grad_()
    t = torch.rand(3, 5, dtype=torch.float64, device=device, requires_grad=True)
    for alpha, gamma in ((0.25, 2.0), (-1.0, 0.5), (0.75, 0.0), (0.3, 5.0)):
        torch.library.opcheck(OPS.sigmoid_focal_loss.default, (x, t, reduction, alpha, gamma))
    torch.library.opcheck(OPS.sigmoid_focal_loss.default,
                          (x.detach().t(), t.detach().t(), reduction, 0.25, 1.0))
    g = torch.rand((3, 5) if reduction == 0 else (), dtype=torch.float64, device=device,
                   requires_grad=True)
    for mask in ([True, False], [False, True], [True, True]):
        torch.library.opcheck(OPS.sigmoid_focal_loss_backward.default,
                              (g, x, t, reduction, mask, 0.25, 1.5))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_and_gradgradcheck(device, reduction, alpha, gamma):
    """Reverse mode, forward mode, and both second orders, in float64."""
    gen = torch.Generator().manual_seed(1)
    x = (6 * torch.rand(3, 4, dtype=torch.float64, generator=gen) - 3).to(device)
    t = torch.rand(3, 4, dtype=torch.float64, generator=gen).to(device)
    x.requires_grad_(), t.requires_grad_()

    def fn(a, b):
        return bce_ext.sigmoid_focal_loss(a, b, alpha=alpha, gamma=gamma, reduction=reduction)

    assert torch.autograd.gradcheck(fn, (x, t), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(fn, (x, t))
    assert torch.autograd.gradgradcheck(fn, (x, t), check_fwd_over_rev=True,
                                        check_rev_over_rev=False, check_undefined_grad=False)


def test_compile_detector_head_fullgraph(device):
    """A dense detector's classification head with the focal loss traces as one graph (no graph
    break), dynamic shapes too; loss and gradients match eager torchvision."""
    torch.manual_seed(0)
    head = torch.nn.Conv2d(4, 6, 3, padding=1).to(device)
    feats = torch.randn(2, 4, 8, 8, device=device)
    targets = (torch.rand(2, 6, 8, 8, device=device) < 0.05).float()

    def step(loss_fn, f, tgt):
        return (loss_fn(head(f), tgt, alpha=0.25, gamma=2.0, reduction="sum")
                / tgt.sum().clamp(min=1))

    results = []
    for fn, compiled in ((TORCHVISION, False),
                         (bce_ext.sigmoid_focal_loss, True)):
        for dynamic in ((False, True) if compiled else (None,)):
            torch._dynamo.reset()
            run = torch.compile(step, fullgraph=True, dynamic=dynamic) if compiled else step
            head.zero_grad()
            loss = run(fn, feats, targets)
            loss.backward()
            results.append((loss.detach(), head.weight.grad.clone()))
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_autocast(dtype):
    """Under autocast the loss is float32 (torchvision's chain gives float32 there too: its
    binary_cross_entropy_with_logits is in autocast's fp32 list), the gradient the input's dtype."""
    x = ROW.inputs((4, 3), torch.float32, "cpu").to(dtype).requires_grad_()
    t = torch.rand(4, 3).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        out = bce_ext.sigmoid_focal_loss(x, t, reduction="mean")
        ref = TORCHVISION(x, t, reduction="mean")
    assert out.dtype == ref.dtype == torch.float32
    (gx,) = torch.autograd.grad(out, x)
    assert gx.dtype == dtype
    torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("name", ["alpha", "gamma"])
def test_alpha_or_gamma_that_requires_grad_is_refused(name):
    """torchvision's formula differentiates a tensor alpha or gamma; bce_ext takes numbers, and
    says so rather than cut the graph silently. A tensor that needs no gradient is its value."""
    x, t = torch.randn(4, 3), torch.rand(4, 3)
    value = torch.tensor(0.75 if name == "alpha" else 1.5, requires_grad=True)
    with pytest.raises(RuntimeError, match=f"the derivative for '{name}' is not implemented"):
        bce_ext.sigmoid_focal_loss(x, t, **{name: value})
    with pytest.raises(RuntimeError, match=f"the derivative for '{name}' is not implemented"):
        bce_ext.SigmoidFocalLoss(**{name: value})(x, t)
    want = TORCHVISION(x, t, **{name: value.item()})
    assert_matches(bce_ext.sigmoid_focal_loss(x, t, **{name: value.detach()}), want)
    with torch.no_grad():
        assert_matches(bce_ext.sigmoid_focal_loss(x, t, **{name: value}), want)


@pytest.mark.parametrize("loss", ["binary_cross_entropy_with_logits", "sigmoid_focal_loss"])
def test_complex_target_is_a_clear_error(loss):
    """PyTorch's and torchvision's chains of ops return a complex loss for a complex target;
    bce_ext's losses are real, and it says so."""
    x, t = torch.randn(4), torch.rand(4, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match=f"{loss}: a complex target .* is not supported"):
        getattr(bce_ext, loss)(x, t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_target_gradient_at_huge_finite_logits(device, dtype, gamma):
    """The target gradient's terms (each about (1 + gamma) |x|) overflow near the type's largest
    values where their sum does not: x = 2e38, t = 0.5 gave -inf in float32 for -8.75e37. The
    oracle is torchvision's formula in float64; at such |x| the gradient is linear in x, so the
    float64 cases compare on x scaled by 2^-900, where float64 holds the terms."""
    big = torch.finfo(dtype).max
    xs = torch.tensor([2e38, -2e38, 3e38, -3.3e38, 1e31, -1e31, 1.5e30], dtype=torch.float64)
    if dtype == torch.float64:
        xs = xs / 3.4e38 * big
    ts = torch.tensor([0.5, 0.5, 0.3, 0.9, 0.0, 1.0, 0.7], dtype=torch.float64)
    x = xs.to(dtype).to(device)
    t = ts.to(dtype).to(device).requires_grad_()
    got, = torch.autograd.grad(bce_ext.sigmoid_focal_loss(x, t, gamma=gamma).sum(), t)
    assert torch.isfinite(got).all(), got
    # The limit formula at large |x| (the log term vanishes): the gradient is linear in x, so
    # float64 computes it exactly for the float32 cases, and for float64 on x scaled by 2^-900.
    scale = 2.0 ** -900 if dtype == torch.float64 else 1.0
    xr = (x.double() * scale).cpu()
    tr = ts.clone().requires_grad_()
    want, = torch.autograd.grad(TORCHVISION(xr, tr, gamma=gamma).sum(), tr)
    # Within a few roundings of the terms' size (they cancel exactly for some t, gamma and alpha:
    # x = -3.3e38, t = 0.9, gamma = 0.5 has the value 0).
    bound = 8 * torch.finfo(dtype).eps * (1 + gamma) * xr.abs() + 1e-5 * want.abs()
    assert ((got.double().cpu() * scale - want).abs() <= bound).all(), (got, want)
