"""Forward values and gradients against PyTorch over a grid, for every loss of the table
(losses.ALL_LOSSES; the focal loss, which takes no weight, without one), and the inputs that are
not plain."""
import itertools
import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from conftest import DTYPES
from losses import ALL_LOSSES, LOSSES
from oracle import REDUCTIONS, assert_loss_matches, assert_matches, oracle, ours, probabilities
from test_binary_cross_entropy import ROW as BCE

import bce_ext

# Shapes: 0-dim, tiny, a tail that is not a multiple of any vector width, and one that spans
# many of the kernel's 4096-element chunks, past its one-thread limit of 32768 elements (so both
# threads and the chunk blocking run).
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (3, 40001)]
WEIGHTS = ["none", "full", "last_dim", "per_sample"]


def make_weight(kind, shape, device, gen):
    if kind == "none":
        return None
    if kind == "full" or len(shape) == 0:
        wshape = shape
    elif kind == "last_dim":  # right-aligned broadcast: a (C,) weight applies along the last dim
        wshape = shape[-1:]
    else:  # one weight per sample: (B, 1, ..., 1)
        wshape = shape[:1] + (1,) * (len(shape) - 1)
    return (2 * torch.rand(wshape, dtype=torch.float64, generator=gen)).to(device)


def _extras(loss, kind, shape, device, dtype, gen):
    """The loss's other broadcast tensors (pos_weight), drawn like a weight of another kind."""
    other = {"none": "last_dim", "full": "per_sample", "last_dim": "full", "per_sample": "none"}
    extras = {}
    for name in loss.extras:
        v = make_weight(other[kind], shape, device, gen)
        extras[name] = None if v is None else (2 * v).to(dtype)
    return extras


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("loss,weight", [(loss, kind) for loss in ALL_LOSSES for kind in WEIGHTS
                                         if loss.takes_weight or kind == "none"],
                         ids=lambda v: v if isinstance(v, str) else repr(v))
def test_grid(device, loss, dtype, reduction, weight, shape):
    gen = torch.Generator().manual_seed(
        zlib.crc32(f"{loss}{dtype}{reduction}{weight}{shape}".encode()))
    x = loss.inputs(shape, dtype, device, gen)
    t = loss.targets(shape, dtype, device, gen)
    w = make_weight(weight, shape, device, gen)
    if w is not None:
        w = w.to(dtype)
    g = None if reduction != "none" else probabilities(shape, dtype, device, gen) - 0.5
    extras = _extras(loss, weight, shape, device, dtype, gen)
    assert_loss_matches(x, t, w, reduction, g, loss=loss, **extras)


@pytest.mark.parametrize("smoothing", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_label_smoothing(device, loss, dtype, reduction, smoothing):
    """The loss of the smoothed target t * (1 - s) + s / 2, and the gradient of that formula with
    respect to the target as given (hard labels included: their one-log path must not be taken)."""
    shape = (5, 37)
    gen = torch.Generator().manual_seed(zlib.crc32(f"{loss}{dtype}{reduction}{smoothing}".encode()))
    x = loss.inputs(shape, dtype, device, gen)
    t = loss.targets(shape, dtype, device, gen)
    t[:2] = t[:2].round()
    w = make_weight("last_dim", shape, device, gen).to(dtype)
    g = None if reduction != "none" else probabilities(shape, dtype, device, gen) - 0.5
    extras = _extras(loss, "per_sample", shape, device, dtype, gen)
    assert_loss_matches(x, t, w, reduction, g, loss=loss, label_smoothing=smoothing, **extras)


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
@pytest.mark.parametrize("smoothing", [-0.1, 1.5, float("nan")])
def test_label_smoothing_out_of_range(loss, smoothing):
    x, t = torch.rand(3), torch.rand(3)
    with pytest.raises(ValueError, match="label_smoothing"):
        loss.ours(x, t, label_smoothing=smoothing)
    module = {BCE: bce_ext.BCELoss}.get(loss, bce_ext.BCEWithLogitsLoss)(label_smoothing=smoothing)
    with pytest.raises(ValueError, match="label_smoothing"):
        module(x, t)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_boundaries(device, dtype, reduction):
    """x, t in {0, 1} (and 0.5): the clamp at -100, the 1e-12 floor, the infinite target
    gradient."""
    pairs = list(itertools.product([0.0, 1.0, 0.5], [0.0, 1.0, 0.5]))
    x = torch.tensor([p[0] for p in pairs], dtype=dtype, device=device)
    t = torch.tensor([p[1] for p in pairs], dtype=dtype, device=device)
    for a, e in zip(ours(x, t, None, reduction), oracle(x, t, None, reduction)):
        assert_matches(a, e)


def test_negative_zero_and_largest_loss(device):
    """x = t = 1 gives -0.0 with the sign bit, as PyTorch; the largest element loss is exactly
    100."""
    x = torch.tensor([1.0, 0.0, 1.0], device=device)
    t = torch.tensor([1.0, 1.0, 0.0], device=device)
    out = bce_ext.binary_cross_entropy(x, t, reduction="none")
    ref = F.binary_cross_entropy(x, t, reduction="none")
    assert torch.equal(out, ref)
    assert torch.equal(torch.signbit(out), torch.signbit(ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_tiny_and_denormal_inputs(device, dtype):
    tiny = torch.finfo(dtype).tiny
    x = torch.tensor([1e-7, 1 - 1e-7, tiny, tiny / 4, 1e-40 if dtype == torch.float32 else 1e-310,
                      0.5 + 1e-7], dtype=dtype, device=device)
    t = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 0.5], dtype=dtype, device=device)
    for reduction in REDUCTIONS:
        for a, e in zip(ours(x, t, None, reduction), oracle(x, t, None, reduction)):
            assert_matches(a, e)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_empty(device, loss, reduction):
    x = torch.empty(0, 3, device=device, requires_grad=True)
    t = torch.empty(0, 3, device=device)
    out = loss.ours(x, t, reduction=reduction)
    ref = loss.theirs(x, t, reduction=reduction)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, equal_nan=True)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_zero_dim(device, loss):
    x = torch.tensor(0.3, device=device)
    t = torch.tensor(1.0, device=device)
    extras = {name: torch.tensor(2.0, device=device) for name in loss.extras}
    for reduction in REDUCTIONS:
        for a, e in zip(ours(x, t, None, reduction, loss=loss, **extras),
                        oracle(x, t, None, reduction, loss=loss, **extras)):
            assert a.shape == ()
            assert_matches(a, e)


def _layouts(device):
    torch.rand(4, 6, 5, 3, dtype=torch.float64)  # unused; keeps the global RNG's draws as they were
    yield "transposed", lambda v: v.reshape(24, 15).t()
    yield "sliced", lambda v: v[:, ::2, 1:, :]
    yield "expanded", lambda v: v[:1].expand(4, 6, 5, 3)
    yield "channels_last", lambda v: v.contiguous(memory_format=torch.channels_last)
    yield "permuted", lambda v: v.permute(2, 0, 3, 1)


@pytest.mark.parametrize("layout", [name for name, _ in _layouts("cpu")])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_layouts(device, loss, dtype, reduction, layout):
    """Non-contiguous, expanded and channels_last tensors: PyTorch's values, and for 'none' and the
    gradients PyTorch's output strides (empty_like of the input; for the logits loss's 'none' of
    the target). With a pos_weight PyTorch's layouts follow from its chain of ops (its
    grad_target is contiguous then, say): bce_ext keeps its own rule and the values agree."""
    make = dict(_layouts(device))[layout]
    shape = (4, 6, 5, 3)
    x = make(loss.inputs(shape, torch.float64, "cpu")).to(dtype).to(device)
    t = make(torch.rand(shape, dtype=torch.float64)).to(dtype).to(device)
    w = torch.rand(x.shape[-1], dtype=dtype, device=device) if loss.takes_weight else None
    extras = {name: make(torch.rand(shape, dtype=torch.float64)).to(dtype).to(device) * 2
              for name in loss.extras}
    for x_, t_, ex in itertools.product((x, x.contiguous()), (t, t.contiguous()), ({}, extras)):
        assert_loss_matches(x_, t_, w, reduction, loss=loss,
                            strides=not ex and loss.oracle_strides, **ex)


@pytest.mark.parametrize("wshape", [(1, 6, 1, 1), (6, 1, 1), (4, 1, 5, 1), (4, 1, 1, 3), (1,), ()],
                         ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_weight_broadcasts(device, loss, wshape):
    """Weights (and pos_weights) broadcast along any set of dims, including ones that are not one
    run of dims."""
    shape = (4, 6, 5, 3)
    x = loss.inputs(shape, torch.float32, device)
    t = torch.rand(shape, device=device)
    w = torch.rand(wshape, device=device)
    for extras in [{}] + [{name: 3 * torch.rand(wshape, device=device)} for name in loss.extras]:
        for weight in (w, None):
            for reduction in REDUCTIONS:
                assert_loss_matches(x, t, weight, reduction, loss=loss, **extras)


@pytest.mark.parametrize("wdtype", [torch.float64, torch.float16, torch.int64], ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_weight_dtype(device, loss, wdtype):
    """Any weight (and pos_weight) dtype is accepted and the result keeps the input's dtype."""
    x = loss.inputs((5, 4), torch.float32, device)
    t = torch.rand(5, 4, device=device)
    w = torch.randint(0, 3, (4,), device=device).to(wdtype)
    extras = {name: torch.randint(1, 4, (4,), device=device).to(wdtype) for name in loss.extras}
    for reduction in REDUCTIONS:
        assert_loss_matches(x, t, w, reduction, loss=loss, **extras)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_expanded_upstream_gradient(device, loss):
    """A 'none' loss summed by the user hands back an expanded (stride 0) gradient."""
    x = loss.inputs((3, 50), torch.float32, device).requires_grad_()
    t = torch.rand(3, 50, device=device)
    loss.ours(x, t, reduction="none").sum().mul(3).backward()
    ours_grad = x.grad
    x.grad = None
    loss.theirs(x, t, reduction="none").sum().mul(3).backward()
    assert_matches(ours_grad, x.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_bitwise_identical_whatever_the_threads(loss, reduction):
    """Beyond PyTorch: the CPU reduction is blocked the same way for any number of threads."""
    x = loss.inputs(1_000_003, torch.float32, "cpu")
    t = torch.rand(1_000_003, dtype=torch.float32)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3, threads):
            torch.set_num_threads(n)
            results.append(loss.ours(x, t, reduction=reduction))
            results.append(loss.ours(x, t, reduction=reduction))
    finally:
        torch.set_num_threads(threads)
    for r in results[1:]:
        assert torch.equal(r, results[0])


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_float32_mean_accuracy_large_n(device, loss):
    """Beyond PyTorch: the float32 mean stays within 1e-6 (relative) of a float64 reference."""
    n = 20_000_000
    gen = torch.Generator().manual_seed(0)
    x = loss.inputs(n, torch.float32, "cpu", gen).to(device)
    t = (torch.rand(n, generator=gen) > 0.5).float().to(device)
    got = loss.ours(x, t).double().item()
    ref = loss.theirs(x.double(), t.double()).item()
    assert abs(got - ref) / ref < 1e-6


# The tutorial examples the project started from, as written there but for the
# import: `from torch.nn import BCELoss` becomes `from bce_ext import BCELoss`.
def _tutorial(BCELoss, seed):
    torch.manual_seed(seed)
    results = []
    loss = BCELoss()
    input = torch.rand(6, requires_grad=True)
    target = torch.rand(6)
    output = loss(input, target)
    output.backward()
    results += [output.detach(), input.grad]

    input = torch.rand(3, 5, requires_grad=True)
    target = torch.randn(3, 5).softmax(dim=1)
    output = loss(input, target)
    output.backward()
    results += [output.detach(), input.grad]

    input = torch.tensor([[0.123, 0.984, 0.452], [0.977, 0.491, 0.830], [0.421, 0.382, 0.628]],
                         requires_grad=True)
    target = torch.tensor([[0.289, 0.999, 0.693], [0.899, 0.231, 0.384], [0.452, 0.071, 0.049]])
    output = loss(input, target)
    output.backward()
    results += [output.detach(), input.grad]
    return results


def test_tutorial_examples():
    from torch.nn import BCELoss as TorchBCELoss

    from bce_ext import BCELoss

    for a, e in zip(_tutorial(BCELoss, 0), _tutorial(TorchBCELoss, 0)):
        assert_matches(a, e)
    # The third example against the float64 value of the formula.
    x = torch.tensor([[0.123, 0.984, 0.452], [0.977, 0.491, 0.830], [0.421, 0.382, 0.628]])
    t = torch.tensor([[0.289, 0.999, 0.693], [0.899, 0.231, 0.384], [0.452, 0.071, 0.049]])
    exact = sum(-(b * math.log(a) + (1 - b) * math.log1p(-a))
                for a, b in zip(x.double().flatten().tolist(), t.double().flatten().tolist())) / 9
    assert abs(BCELoss()(x, t).item() - exact) < 1e-7


@pytest.mark.parametrize("shape,wshape", [((3000, 10), (10,)), ((3000, 3), (3000, 1)),
                                          ((40, 30, 50), (30, 1)), ((2, 70000), (70000,))],
                         ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_weight_tables_of_large_inputs(device, loss, shape, wshape):
    """Many elements over a small weight: the CPU kernel tiles or repeats the weight tables (the
    pos_weight's has another shape, so the runs of the two tables end at different elements)."""
    x, t = loss.inputs(shape, torch.float32, device), torch.rand(shape, device=device)
    w = torch.rand(wshape, device=device)
    extras = {name: 3 * torch.rand(shape[-1:], device=device) for name in loss.extras}
    for reduction in REDUCTIONS:
        assert_loss_matches(x, t, w, reduction, loss=loss, **extras)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("values", [[1e40, 1e40, 2.0, 0.5], [1e-45, 1e-40, 3.0, 1e-50],
                                    [1e300, 0.0, 1.0, 1e-300]], ids=["huge", "tiny", "extreme"])
@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_float64_weight_beyond_float_range(device, loss, dtype, values):
    """A float64 weight that float32 cannot hold is applied as PyTorch applies it: the loss
    computed unweighted, then multiplied in float64 and rounded once. For a half type the
    gradient's 1/N of 'mean' is applied in float64 too, before that rounding (PyTorch's float32
    product overflows first where the result fits the half type: bfloat16 holds 3e38): the
    oracle there is the float64 computation, rounded to the half type."""
    x = torch.tensor([1e-30, 0.5, 0.25, 1.0], device=device).to(dtype)
    t = torch.tensor([0.0, 0.5, 1.0, 1.0], device=device).to(dtype)
    w = torch.tensor(values, dtype=torch.float64, device=device)
    for reduction in REDUCTIONS:
        g = None if reduction != "none" else torch.full_like(x, 0.5)
        if dtype == torch.float32:
            want = oracle(x, t, w, reduction, g, loss=loss)
        else:
            want = [v.to(dtype) for v in oracle(x.double(), t.double(), w, reduction,
                                                 None if g is None else g.double(), loss=loss)]
        for a, e in zip(ours(x, t, w, reduction, g, loss=loss), want):
            assert_matches(a, e)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_float64_weight_scales_a_half_gradient_before_its_rounding(device, reduction):
    """Half types are computed in float32: with a float64 weight too, the weight scales the
    gradient before its one rounding to the half type. At x = 1e-6 (1.013e-6 in float16), t = 0.5
    the unweighted float16 gradient overflows (-4.9e5), the weighted one does not: about -8.7e3
    for 'mean' of 17 (PyTorch, rounding first, gives -inf)."""
    x = torch.full((17,), 1e-6, device=device).half()
    t = torch.full((17,), 0.5, device=device).half()
    w = torch.full((17,), 0.3, dtype=torch.float64, device=device)
    xr = x.clone().requires_grad_()
    out = bce_ext.binary_cross_entropy(xr, t, w, reduction=reduction)
    grad, = torch.autograd.grad(out.sum(), xr)
    xd = x.double().requires_grad_()
    want = F.binary_cross_entropy(xd, t.double(), w, reduction=reduction)
    want_grad, = torch.autograd.grad(want.sum(), xd)
    if reduction == "mean":
        assert torch.isfinite(grad).all()
    # The float64 values rounded once ('sum' and 'none' overflow float16 there: -1.5e5).
    torch.testing.assert_close(grad, want_grad.half(), rtol=2e-3, atol=0)
    torch.testing.assert_close(out, want.half(), rtol=2e-3, atol=0)


@pytest.mark.parametrize("layout", ["same", "transposed", "expanded"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_half_full_weight_read_in_its_dtype(loss, dtype, layout):
    """A weight (and pos_weight) of the input's half type with one value per element is read in
    its own dtype by the CPU loops (no float32 copy of it); laid out otherwise it is
    copied to float32 first. Either way the bits of the float32 computation on the upcast
    operands, rounded once, for the loss and both gradients, across several chunks."""
    shape = (3, 40001)
    gen = torch.Generator().manual_seed(7)
    x = loss.inputs(shape, dtype, "cpu", gen)
    t = torch.rand(shape, generator=gen).to(dtype)
    w = (torch.rand(shape, generator=gen) + 0.5).to(dtype)
    if layout == "transposed":
        w = w.t().contiguous().t()
    elif layout == "expanded":
        w = w[:1].expand(shape)
    extras = {name: (2 * w).contiguous() for name in loss.extras}
    for reduction in REDUCTIONS:
        g = torch.rand(shape if reduction == "none" else (), generator=gen).to(dtype)
        half = ours(x, t, w, reduction, g, loss=loss, **extras)
        single = ours(x.float(), t.float(), w.float(), reduction, g.float(), loss=loss,
                      **{k: v.float() for k, v in extras.items()})
        for a, e in zip(half, single):
            assert torch.equal(a, e.to(dtype))
