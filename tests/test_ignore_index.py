"""ignore_index, on every loss that takes one (the registry's `ignores`), CPU and CUDA: values and
both gradients against the row's reference over the elements kept (ignored elements masked out,
'mean' over their count; judged as the generic suites judge, with the float64 truth of the row's
exact formula where float32 roundings part), across dtypes, reductions,
weights, layouts, label smoothing and the kernels' thresholds; NaN and out-of-range operands where
the target is ignored; every element ignored; None and an index that matches nothing giving
today's bits; the autograd transforms, compile and opcheck; the modules; bad arguments.

The behaviour is docs/behaviour.md, "ignore_index"."""
import functools
import pickle
import zlib

import pytest
import torch
from losses import ALL_LOSSES
from oracle import _smoothed, assert_as_accurate, assert_matches, compute_dtype

import bce_ext
import bce_ext._registry as registry

CUDA = pytest.mark.skipif(not (torch.cuda.is_available() and bce_ext._C.with_cuda),
                          reason="needs a GPU and bce_ext's CUDA kernels")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
REDUCTIONS = ("none", "mean", "sum")
ROWS = [row for row in ALL_LOSSES if registry.get(row.name).ignores]
# Shapes that cross the CPU kernels' thresholds (a vector block, a 4096-element chunk and the
# parallel split; a vector's tail) and the CUDA kernels' (one group per thread and beyond).
SHAPES = ((5, 7), (3, 1367), (2, 40001))
# An index outside the targets' range, one inside it (0: the hard labels' and the masked tails'
# value), and a negative one.
INDICES = (255, 0, -100)


def _neutral(row):
    """An input value whose loss and gradients are finite: where the truth replaces an ignored
    element's input (its own input may be NaN)."""
    return 0.5 if registry.get(row.name).input == "probability" else 0.0


def draw(row, shape, dtype, device, ignore_index, gen, mix="uniform", weight="none"):
    """x, t (about a fifth of t ignore_index, their x NaN or out of range), and a weight."""
    x = row.input_values(shape, mix, gen)
    t = row.target_values(shape, mix, gen)
    ignored = torch.rand(shape, generator=gen) < 0.2
    t = torch.where(ignored, torch.tensor(float(ignore_index), dtype=torch.float64), t)
    bad = torch.where(torch.rand(shape, generator=gen) < 0.5, float("nan"), 7.0)
    x = torch.where(ignored, bad.double(), x)
    w = None
    if weight == "element":
        w = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.1
        w = torch.where(ignored, float("inf"), w)  # an ignored element's weight plays no part
    elif weight == "row":
        w = torch.rand(shape[-1:], generator=gen, dtype=torch.float64) + 0.1
    def cast(v):
        return None if v is None else v.to(dtype).to(device)
    return cast(x), cast(t), cast(w)


def masked(fn, row, x, t, w, reduction, ignore_index, dtype, **extra):
    """fn (a row's reference) in `dtype` on the elements whose target is not ignore_index
    (compared in the target's dtype), 'mean' over their count; and its gradients, 0 at the
    ignored elements. The loss and gradients come back in x's dtype."""
    ignored = (t == ignore_index).cpu()
    xl = x.detach().cpu().to(dtype).requires_grad_()
    tl = t.detach().cpu().to(dtype).requires_grad_()
    xs = torch.where(ignored, _neutral(row), xl)
    ts = torch.where(ignored, 0.5, tl)
    wd = None if w is None else torch.where(ignored, 0.0, w.cpu().to(dtype).expand(x.shape))
    extra = {k: (v.cpu().to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in extra.items()}
    loss = _smoothed(fn)(xs, ts, weight=wd, reduction="none", **extra)
    loss = torch.where(ignored, 0.0, loss)
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        loss = loss.sum() / (~ignored).sum()
    gx, gt = torch.autograd.grad(loss, (xl, tl), torch.ones_like(loss))
    return tuple(v.detach().to(x.dtype) for v in (loss, gx, gt))


def assert_matches_masked(row, actual, x, t, w, reduction, ignore_index, **extra):
    """actual against the row's reference (PyTorch's formula) over the elements kept, in bce_ext's
    compute type, as the generic suites judge a loss: in float32 at least as accurate as it,
    element by element, against the float64 truth of the row's exact formula."""
    dtype = x.dtype
    expected = masked(row.reference, row, x, t, w, reduction, ignore_index,
                      compute_dtype(dtype), **extra)
    truth = functools.cache(lambda: masked(row.exact.reference, row, x, t, w, reduction,
                                           ignore_index, torch.float64, **extra))
    for k, (a, e) in enumerate(zip(actual, expected)):
        a = a.cpu()
        if dtype == torch.float32:
            assert_as_accurate(a, e, lambda k=k: truth()[k].double(), f"output {k}")
        else:
            assert_matches(a, e)


def ours(row, x, t, w, reduction, ignore_index, **extra):
    xl, tl = x.detach().requires_grad_(), t.detach().requires_grad_()
    kwargs = dict(weight=w) if row.takes_weight else {}
    out = row.ours(xl, tl, reduction=reduction, ignore_index=ignore_index, **kwargs, **extra)
    gx, gt = torch.autograd.grad(out, (xl, tl), torch.ones_like(out))
    return out.detach(), gx, gt


def assert_ignored_exactly_zero(out, grads, t, ignore_index, reduction):
    ignored = t == ignore_index
    tensors = ([out] if reduction == "none" else []) + list(grads)
    for v in tensors:
        assert (v[ignored] == 0).all(), "an ignored element contributes"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_matches_masked_truth(row, dtype, reduction, shape, layout, device, request):
    gen = torch.Generator().manual_seed(zlib.crc32(request.node.name.encode()))
    ignore_index = INDICES[int(torch.randint(len(INDICES), (), generator=gen))]
    mix = ("uniform", "hard", "mixed")[int(torch.randint(3, (), generator=gen))]
    weight = ("none", "element", "row")[int(torch.randint(3, (), generator=gen))]
    weight = weight if row.takes_weight else "none"
    if layout == "transposed":  # the same values, read through transposed strides
        x, t, w = draw(row, shape[::-1], dtype, device, ignore_index, gen, mix, weight)
        x, t = x.t(), t.t()
        w = None if w is None else (w.t() if w.dim() == 2 else torch.ones(
            shape[-1:], dtype=dtype, device=device))
    else:
        x, t, w = draw(row, shape, dtype, device, ignore_index, gen, mix, weight)
    extra = {}
    if row.smoothing and torch.rand((), generator=gen) < 0.5:
        extra["label_smoothing"] = 0.1
    actual = ours(row, x, t, w, reduction, ignore_index, **extra)
    assert_ignored_exactly_zero(actual[0], actual[1:], t, ignore_index, reduction)
    assert_matches_masked(row, actual, x, t, w, reduction, ignore_index, **extra)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_an_index_that_matches_nothing_gives_todays_bits(row, dtype, device):
    gen = torch.Generator().manual_seed(1)
    x = row.input_values((4, 1000), "mixed", gen).to(dtype).to(device)
    t = row.target_values((4, 1000), "mixed", gen).to(dtype).to(device)
    for reduction in REDUCTIONS:
        plain = ours(row, x, t, None, reduction, None)
        unmatched = ours(row, x, t, None, reduction, 255)
        for a, b in zip(plain, unmatched):
            assert torch.equal(a, b), reduction


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_every_element_ignored(row, device):
    x = torch.full((3, 5), float("nan"), device=device)
    t = torch.full((3, 5), 255.0, device=device)
    out, gx, gt = ours(row, x, t, None, "mean", 255)
    assert out.isnan() and (gx == 0).all() and (gt == 0).all()  # 0/0, as CrossEntropyLoss
    out, gx, gt = ours(row, x, t, None, "sum", 255)
    assert out == 0 and (gx == 0).all() and (gt == 0).all()
    out, gx, gt = ours(row, x, t, None, "none", 255)
    assert (out == 0).all() and (gx == 0).all() and (gt == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_bce_range_check_skips_ignored_elements_only(device):
    x = torch.tensor([0.3, 7.0, float("nan")], device=device)
    t = torch.tensor([1.0, 255.0, 255.0], device=device)
    assert torch.isfinite(bce_ext.binary_cross_entropy(x, t, ignore_index=255))
    if device == "cpu":  # the CUDA kernels give NaN (strict mode raises), as without an index
        with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
            bce_ext.binary_cross_entropy(torch.tensor([1.5, 0.2]), torch.tensor([0.0, 255.0]),
                                         ignore_index=255)
        with pytest.raises(RuntimeError,
                           match="all elements of target should be between 0 and 1"):
            bce_ext.binary_cross_entropy(torch.tensor([0.5, 0.2]), torch.tensor([254.0, 255.0]),
                                         ignore_index=255)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16, torch.float32), ids=str)
def test_the_index_is_rounded_to_the_targets_dtype(dtype):
    index = 0.1  # not exact in any of them: the target's 0.1 is the index rounded
    x = torch.tensor([0.3, 0.6], dtype=dtype)
    t = torch.tensor([index, 1.0], dtype=dtype)
    out = bce_ext.binary_cross_entropy(x, t, ignore_index=index, reduction="none")
    assert out[0] == 0 and out[1] > 0


def test_label_smoothing_leaves_ignored_elements_out():
    x = torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0, 255.0], dtype=torch.float64)
    out = bce_ext.binary_cross_entropy(x, t, ignore_index=255, label_smoothing=0.2)
    ref = bce_ext.binary_cross_entropy(x[:2], t[:2], label_smoothing=0.2)
    torch.testing.assert_close(out, ref, rtol=1e-15, atol=0)


def test_varifocal_avg_factor_takes_precedence_over_the_count():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    t = torch.rand(6, 4, generator=gen, dtype=torch.float64)
    t[0] = -1
    total = bce_ext.varifocal_loss(x, t, reduction="sum", ignore_index=-1)
    out = bce_ext.varifocal_loss(x, t, avg_factor=7.5, ignore_index=-1)
    torch.testing.assert_close(out, total / (7.5 + torch.finfo(torch.float32).eps))
    kept = bce_ext.varifocal_loss(x[1:], t[1:], reduction="sum")
    torch.testing.assert_close(total, kept)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_gradcheck_to_second_order_and_forward_mode(row, reduction):
    gen = torch.Generator().manual_seed(4)
    x, t, _ = draw(row, (3, 4), torch.float64, "cpu", 255, gen)
    t[0, 0] = 255
    ignored = t == 255
    x = torch.where(ignored, _neutral(row) + 0.1, x)  # finite differences need finite values
    # The ignored targets stay the index while gradcheck moves the others (moved, an index would
    # no longer be one): their gradient is 0, as bce_ext's.
    t = torch.where(ignored, 0.5, t)
    x.requires_grad_()
    t.requires_grad_()

    def f(x, t):
        t = torch.where(ignored, 255.0, t)
        return row.ours(x, t, reduction=reduction, ignore_index=255)

    assert torch.autograd.gradcheck(f, (x, t), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(f, (x, t))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_vmap_matches_a_loop(row, reduction):
    gen = torch.Generator().manual_seed(5)
    x, t, _ = draw(row, (4, 3, 6), torch.float64, "cpu", 255, gen)
    x = torch.where(t == 255, 0.25, x)
    t[1] = 255  # a sample with every element ignored

    def f(x, t):
        return row.ours(x, t, reduction=reduction, ignore_index=255)

    batched = torch.func.vmap(f)(x, t)
    looped = torch.stack([f(a, b) for a, b in zip(x, t)])
    torch.testing.assert_close(batched, looped, equal_nan=True)
    grads = torch.func.vmap(torch.func.grad(lambda a, b: f(a, b).sum(), argnums=(0, 1)))(x, t)
    for k in range(2):
        one = torch.stack([torch.func.grad(lambda a, b: f(a, b).sum(), argnums=(0, 1))(a, b)[k]
                           for a, b in zip(x, t)])
        torch.testing.assert_close(grads[k], one, equal_nan=True)


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_opcheck_and_compile(row):
    gen = torch.Generator().manual_seed(6)
    x, t, _ = draw(row, (3, 5), torch.float32, "cpu", 255, gen)
    x = torch.where(t == 255, 0.25, x)
    entry = registry.get(row.name)
    params = [default for _, default in entry.params]
    tables = [None] * len(entry.tensors)
    for reduction in (0, 1, 2):
        torch.library.opcheck(entry.op, (x, t, *tables, reduction, *params, 255.0))
    xl = x.clone().requires_grad_()

    def step(x, t):
        return row.ours(x, t, reduction="mean", ignore_index=255)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    out = compiled(xl, t)
    out.backward()
    ref_x = x.clone().requires_grad_()
    ref = step(ref_x, t)
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xl.grad, ref_x.grad)


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_module_takes_it_and_pickles(row):
    module = row.module(ignore_index=255)
    gen = torch.Generator().manual_seed(7)
    x, t, _ = draw(row, (3, 5), torch.float32, "cpu", 255, gen)
    expected = row.ours(x, t, reduction=module.reduction, ignore_index=255)
    torch.testing.assert_close(module(x, t), expected, equal_nan=True)
    again = pickle.loads(pickle.dumps(module))
    assert again.ignore_index == 255.0
    old = row.module()  # a module pickled before ignore_index existed
    del old.__dict__["ignore_index"]
    assert pickle.loads(pickle.dumps(old)).ignore_index is None


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_bad_arguments(row):
    x, t = torch.rand(2, 3), torch.rand(2, 3)
    for bad in ("255", True, torch.tensor(255)):
        with pytest.raises(TypeError, match="ignore_index must be a number or None"):
            row.ours(x, t, ignore_index=bad)
    entry = registry.get(row.name)
    params = [default for _, default in entry.params]
    tables = [None] * len(entry.tensors)
    with pytest.raises(ValueError, match="3 is not a valid value for reduction"):
        entry.op(x, t, *tables, 3, *params, None)  # bce_ext's reduction 3 needs an index
    sum_count = entry.op(x, t, *tables, 3, *params, 255.0)
    assert sum_count.dtype == torch.float64 and sum_count.shape == (2,) and sum_count[1] == 6
    with pytest.raises(ValueError, match="is not differentiable"):
        entry.op(x.requires_grad_(), t, *tables, 3, *params, 255.0)
    g = torch.ones(())
    with pytest.raises(ValueError, match="kept must be a one-element float64 tensor"):
        entry.backward_op(g, x, t, *tables, 1, [True, False], *params, 255.0, torch.ones(2))
    with pytest.raises(ValueError, match="kept is the divisor of 'mean'"):
        entry.backward_op(g, x, t, *tables, 2, [True, False], *params, 255.0,
                          torch.ones((), dtype=torch.float64))


def test_the_loss_without_an_index_refuses_one():
    assert not registry.get("quality_focal_loss").ignores
    with pytest.raises(TypeError):
        bce_ext.quality_focal_loss_tensor_target(torch.zeros(2, 3), torch.zeros(2, 3),
                                                 ignore_index=255)
