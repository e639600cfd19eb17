"""Autograd, the dispatcher registrations, torch.compile and autocast."""
import pytest
import torch
import torch._dynamo.testing
import torch.nn.functional as F
from losses import ALL_LOSSES, LOSSES
from oracle import REDUCTIONS, assert_matches, oracle, ours, probabilities
from test_binary_cross_entropy import ROW as BCE

import bce_ext

OPS = torch.ops.bce_ext


def _f64(shape, device, low=0.05):
    # Away from 0 and 1 so that the finite differences stay inside [0, 1].
    return probabilities(shape, torch.float64, device, low=low).mul(0.9).requires_grad_()


def _inputs64(loss, shape, device):
    x = _f64(shape, device) if loss is BCE else loss.inputs(shape, torch.float64, device)
    return x.detach().requires_grad_(), _f64(shape, device)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_gradcheck_and_gradgradcheck(device, loss, weighted, reduction, smoothing):
    x, t = _inputs64(loss, (3, 4), device)
    w = torch.rand(4, dtype=torch.float64, device=device) if weighted else None
    extras = {name: 3 * torch.rand(4, dtype=torch.float64, device=device) if weighted else None
              for name in loss.extras}

    def fn(a, b):
        return loss.ours(a, b, w, reduction=reduction, label_smoothing=smoothing, **extras)

    assert torch.autograd.gradcheck(fn, (x, t))
    assert torch.autograd.gradgradcheck(fn, (x, t))
    # forward over reverse, and forward mode alone
    assert torch.autograd.gradcheck(fn, (x, t), check_forward_ad=True, check_backward_ad=False)
    assert torch.autograd.gradgradcheck(fn, (x, t), check_fwd_over_rev=True,
                                        check_rev_over_rev=False, check_undefined_grad=False)


def test_double_backward_matches_pytorch(device):
    """Second derivatives use PyTorch's formulas (additive 1e-12), including at the boundaries."""
    x = torch.tensor([0.0, 0.0, 0.5, 0.3, 0.9], dtype=torch.float64, device=device)
    t = torch.tensor([1.0, 0.0, 0.5, 0.8, 0.1], dtype=torch.float64, device=device)
    for fn in (bce_ext.binary_cross_entropy, F.binary_cross_entropy):
        a, b = x.clone().requires_grad_(), t.clone().requires_grad_()
        gx, gt = torch.autograd.grad(fn(a, b, reduction="sum"), (a, b), create_graph=True)
        second = torch.autograd.grad(gx.sum(), (a, b), retain_graph=True)
        second += torch.autograd.grad(gx.sum() + gt[2:].sum(), (a, b))
        if fn is bce_ext.binary_cross_entropy:
            mine = second
        else:
            for m, r in zip(mine, second):
                torch.testing.assert_close(m, r, rtol=1e-9, atol=0, equal_nan=True)


def test_function_apply(device):
    x = torch.rand(5, 3, device=device, requires_grad=True)
    t = torch.rand(5, 3, device=device, requires_grad=True)
    w = torch.rand(3, device=device)
    out = bce_ext.BinaryCrossEntropyFunction.apply(x, t, w, 2)
    gx, gt = torch.autograd.grad(out, (x, t))
    expected = oracle(x, t, w, "sum")
    for a, e in zip((out.detach(), gx, gt), expected):
        assert_matches(a, e)


def test_only_requested_gradients_are_computed(device):
    x = torch.rand(4, device=device, requires_grad=True)
    t = torch.rand(4, device=device)
    loss = bce_ext.binary_cross_entropy(x, t)
    (gx,) = torch.autograd.grad(loss, (x,))
    gi, gt = OPS.binary_cross_entropy_backward(torch.tensor(1.0, device=device), x, t, None, 1,
                                               [True, False])
    assert gt.numel() == 0
    assert_matches(gi, gx)


@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_opcheck_forward(device, reduction, weighted):
    x = torch.rand(3, 5, device=device, requires_grad=True)
    t = torch.rand(3, 5, device=device, requires_grad=True)
    w = torch.rand(5, device=device) if weighted else None
    torch.library.opcheck(OPS.binary_cross_entropy.default, (x, t, w, reduction))
    torch.library.opcheck(OPS.binary_cross_entropy.default,
                          (x.detach().t(), t.detach().t(), None, reduction, 0.1))
    pw = 3 * torch.rand(5, device=device) if weighted else None
    torch.library.opcheck(OPS.binary_cross_entropy_with_logits.default,
                          (4 * x - 2, t, w, pw, reduction))
    torch.library.opcheck(OPS.binary_cross_entropy_with_logits.default,
                          (x.detach().t(), t.detach().t(), None, None if pw is None else pw[:3],
                           reduction, 0.3))


@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("mask", [[True, False], [False, True], [True, True]], ids=str)
def test_opcheck_backward(device, reduction, mask):
    x = _f64((3, 5), device)
    t = _f64((3, 5), device)
    g = torch.rand((3, 5) if reduction == 0 else (), dtype=torch.float64, device=device,
                   requires_grad=True)
    w = torch.rand(5, dtype=torch.float64, device=device)
    torch.library.opcheck(OPS.binary_cross_entropy_backward.default, (g, x, t, w, reduction, mask))
    torch.library.opcheck(OPS.binary_cross_entropy_backward.default,
                          (g, x, t, w, reduction, mask, 0.25))
    pw = 3 * torch.rand(5, dtype=torch.float64, device=device)
    torch.library.opcheck(OPS.binary_cross_entropy_with_logits_backward.default,
                          (g, 4 * x - 2, t, w, pw, reduction, mask, 0.25))


def test_compile_training_step_fullgraph(device):
    """A training step's forward and loss trace as one graph with fullgraph=True (no graph break);
    AOTAutograd compiles its backward, which runs our backward op. Loss and gradients match
    eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                                torch.nn.Sigmoid()).to(device)
    loss_fn = bce_ext.BCELoss(weight=torch.rand(8, device=device))
    x = torch.rand(32, 8, device=device)

    def forward_loss(inp):
        return loss_fn(model(inp), inp)

    eager_loss = forward_loss(x)
    eager_loss.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled_loss = torch.compile(forward_loss, fullgraph=True, backend=counter)(x)
    compiled_loss.backward()
    assert counter.frame_count == 1
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-6, atol=1e-6)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_compile_functional_with_grads(device, loss, reduction):
    """fullgraph=True, dynamic shapes too: the Meta kernels take symbolic sizes."""
    torch._dynamo.reset()
    x = torch.rand(6, 7, device=device, requires_grad=True)
    t = torch.rand(6, 7, device=device, requires_grad=True)
    w = torch.rand(7, device=device) if loss.takes_weight else None
    extras = {name: 2 * torch.rand(7, device=device) for name in loss.extras}
    prep = torch.sigmoid if loss is BCE else (lambda v: 3 * v)

    def f(a, b):
        return loss.ours(prep(a), b, w, reduction=reduction, **extras).sum()

    for dynamic in (False, True):
        torch._dynamo.reset()
        out = torch.compile(f, fullgraph=True, dynamic=dynamic)(x, t)
        gx, gt = torch.autograd.grad(out, (x, t))
        ref = loss.theirs(prep(x), t, w, reduction=reduction, **extras).sum()
        rx, rt = torch.autograd.grad(ref, (x, t))
        for a, e in zip((out, gx, gt), (ref, rx, rt)):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_autocast_logits_gives_float32(dtype):
    """As PyTorch (binary_cross_entropy_with_logits is in autocast's fp32 list): every tensor cast,
    the loss float32, the gradients in each input's own dtype."""
    x = (4 * torch.rand(4, 3) - 2).to(dtype).requires_grad_()
    t = torch.rand(4, 3).to(dtype)
    pw = torch.rand(3).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        out = bce_ext.binary_cross_entropy_with_logits(x, t, pos_weight=pw)
        ref = F.binary_cross_entropy_with_logits(x, t, pos_weight=pw)
    assert out.dtype == ref.dtype == torch.float32
    assert_matches(out.detach(), ref.detach())
    (gx,), (rx,) = torch.autograd.grad(out, (x,)), torch.autograd.grad(ref, (x,))
    assert gx.dtype == rx.dtype == dtype
    assert_matches(gx, rx)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_autocast_gives_float32(dtype):
    """As PyTorch: under CPU autocast the loss is computed and returned in float32."""
    x = torch.rand(4, 3).to(dtype).requires_grad_()
    t = torch.rand(4, 3).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        out = bce_ext.binary_cross_entropy(x, t)
        ref = F.binary_cross_entropy(x, t)
        mixed = bce_ext.binary_cross_entropy(x.float(), t)  # f32 input, half target: both cast
    assert out.dtype == ref.dtype == mixed.dtype == torch.float32
    assert_matches(out.detach(), ref.detach())
    (gx,) = torch.autograd.grad(out, (x,))
    (rx,) = torch.autograd.grad(ref, (x,))
    assert gx.dtype == dtype
    assert_matches(gx, rx)


def test_half_gradients_are_finite_where_pytorch_gives_nan(device):
    """Beyond PyTorch: half types are computed in float32, so the 1e-12 floor survives."""
    x = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float16, device=device)
    t = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float16, device=device)
    _, gx, _ = ours(x, t, None, "sum")
    assert torch.isfinite(gx).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_func_transforms(device, reduction):
    """Forward mode (jvp), vmap, vmap(grad) and the Hessian (forward over reverse) as PyTorch."""
    x, t = _f64((3, 4), device), _f64((3, 4), device)
    w = torch.rand(4, dtype=torch.float64, device=device)
    tx, tt = torch.rand_like(x), torch.rand_like(t)

    def run(fn):
        def loss(a, b):
            return fn(a, b, w, reduction=reduction)

        def summed(a, b):
            return loss(a, b).sum()

        return (torch.func.jvp(loss, (x, t), (tx, tt))[1],
                torch.func.vmap(loss)(x, t),
                torch.func.vmap(torch.func.grad(summed, argnums=(0, 1)))(x, t),
                torch.func.hessian(summed, argnums=(0, 1))(x[0], t[0]),
                torch.func.jacfwd(torch.func.jacrev(summed))(x[0], t[0]))

    leaves = torch.utils._pytree.tree_leaves
    for a, e in zip(leaves(run(bce_ext.binary_cross_entropy)),
                    leaves(run(F.binary_cross_entropy))):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_forward_mode_ad_with_dual_tensors(device):
    import torch.autograd.forward_ad as fwAD

    x, t = _f64((5,), device), _f64((5,), device)
    tangent = torch.rand_like(x)
    results = []
    for fn in (bce_ext.binary_cross_entropy, F.binary_cross_entropy):
        with fwAD.dual_level():
            out = fn(fwAD.make_dual(x.detach(), tangent), t.detach())
            results.append(fwAD.unpack_dual(out).tangent)
    assert results[0] is not None
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_autocast_forward_mode_tangent_dtype(dtype):
    """Under CPU autocast the loss and its forward-mode tangent are both float32, as PyTorch."""
    import torch.autograd.forward_ad as fwAD

    x = torch.rand(5).to(dtype)
    t = torch.rand(5).to(dtype)
    tangent = torch.rand(5).to(dtype)
    results = []
    for fn in (bce_ext.binary_cross_entropy, F.binary_cross_entropy):
        with torch.autocast("cpu", dtype=dtype), fwAD.dual_level():
            primal, tan = fwAD.unpack_dual(fn(fwAD.make_dual(x, tangent), t))
        results.append((primal, tan))
    (p, tn), (rp, rtn) = results
    assert p.dtype == tn.dtype == rp.dtype == rtn.dtype == torch.float32
    assert_matches(tn, rtn)


def test_nested_forward_mode_and_graph_node_names():
    """jvp of jvp (forward over forward) gives PyTorch's second derivatives, and the graph has one
    node per op, named like PyTorch's."""
    x = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0, 0.3], dtype=torch.float64)
    results = []
    for fn in (bce_ext.binary_cross_entropy, F.binary_cross_entropy):
        def loss(a):
            return fn(a, t, reduction="sum")  # noqa: B023 (called in this iteration)
        results.append(torch.func.jacfwd(torch.func.jacfwd(loss))(x))
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(results[0].diag(), torch.tensor([1.5625, 4.0, 8.390022675736962],
                                                               dtype=torch.float64))
    a = x.clone().requires_grad_()
    out = bce_ext.binary_cross_entropy(a, t)
    assert out.grad_fn.name() == "BinaryCrossEntropyBackward"
    (g,) = torch.autograd.grad(out, a, create_graph=True)
    assert g.grad_fn.name() == "BinaryCrossEntropyBackwardBackward"
