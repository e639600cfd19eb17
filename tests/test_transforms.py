"""torch.func transforms and their nestings over bce_ext, alone and under torch.compile, against
the same composition of PyTorch's own binary cross entropy.

bce_ext's ops carry their autograd as PyTorch's own ops do (graph nodes, forward-mode tangents,
differentiable second derivatives), vmap rules, and Meta kernels for fake tensors, so every
composition that works for F.binary_cross_entropy must work, and agree, for bce_ext.
"""
import pytest
import torch
import torch._dynamo.testing
import torch.nn.functional as F
from torch import func

import bce_ext
from oracle import REDUCTIONS, probabilities

leaves = torch.utils._pytree.tree_leaves


def _inputs(reduction):
    x = probabilities((3, 4), torch.float64, "cpu", low=0.05).mul(0.9)
    t = probabilities((3, 4), torch.float64, "cpu", low=0.05).mul(0.9)
    w = torch.rand(4, dtype=torch.float64) + 0.5
    return x, t, w


def _transforms():
    """name -> (loss, x, t) -> result, each a transform or a nesting of transforms."""

    def summed(loss):
        return lambda a, b: loss(a, b).sum()

    def tangents(x):
        return torch.linspace(0.1, 0.9, x.numel(), dtype=x.dtype).reshape(x.shape)

    def jvp(loss, x, t):
        return func.jvp(loss, (x, t), (tangents(x), tangents(t).flip(0)))

    def vjp(loss, x, t):
        out, pull = func.vjp(loss, x, t)
        return out, pull(torch.ones_like(out) if out.dim() == 0 else tangents(out))

    return {
        "grad": lambda loss, x, t: func.grad(summed(loss), argnums=(0, 1))(x, t),
        "jacrev": lambda loss, x, t: func.jacrev(loss, argnums=(0, 1))(x, t),
        "jacfwd": lambda loss, x, t: func.jacfwd(loss, argnums=(0, 1))(x, t),
        "jvp": jvp,
        "vjp": vjp,
        "vmap": lambda loss, x, t: func.vmap(loss)(x, t),
        "hessian": lambda loss, x, t: func.hessian(summed(loss), argnums=(0, 1))(x[0], t[0]),
        "functionalize": lambda loss, x, t: func.functionalize(loss)(x, t),
        "jacfwd(jacfwd)": lambda loss, x, t: func.jacfwd(func.jacfwd(summed(loss)))(x[0], t[0]),
        "jacrev(jacrev)": lambda loss, x, t: func.jacrev(func.jacrev(summed(loss)))(x[0], t[0]),
        "jacfwd(jacrev)": lambda loss, x, t: func.jacfwd(func.jacrev(summed(loss), argnums=1))(
            x[0], t[0]),
        "jvp(jvp)": lambda loss, x, t: func.jvp(
            lambda a: func.jvp(lambda b: loss(b, t), (a,), (tangents(a),))[1], (x,),
            (tangents(x).flip(1),)),
        "grad(grad)": lambda loss, x, t: func.grad(
            lambda a: func.grad(summed(loss))(a, t).pow(2).sum())(x),
        "vmap(grad)": lambda loss, x, t: func.vmap(func.grad(summed(loss), argnums=(0, 1)))(x, t),
        "vmap(jvp)": lambda loss, x, t: func.vmap(lambda a, b: jvp(loss, a, b))(x, t),
        "vmap(hessian)": lambda loss, x, t: func.vmap(func.hessian(summed(loss)))(x, t),
        "vmap(vmap)": lambda loss, x, t: func.vmap(func.vmap(loss))(x[None].expand(2, 3, 4),
                                                                   t[None].expand(2, 3, 4)),
        "functionalize(grad)": lambda loss, x, t: func.functionalize(
            func.grad(summed(loss)))(x, t),
        "vjp(jvp)": lambda loss, x, t: vjp(lambda a, b: jvp(loss, a, b)[1], x, t),
    }


TRANSFORMS = _transforms()


def _losses(reduction, w):
    def ours(a, b):
        return bce_ext.binary_cross_entropy(a, b, w, reduction=reduction)

    def theirs(a, b):
        return F.binary_cross_entropy(a, b, w, reduction=reduction)

    return ours, theirs


def _assert_same(actual, expected):
    a, e = leaves(actual), leaves(expected)
    assert len(a) == len(e)
    for u, v in zip(a, e):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transform(name, reduction):
    x, t, w = _inputs(reduction)
    ours, theirs = _losses(reduction, w)
    transform = TRANSFORMS[name]
    _assert_same(transform(ours, x, t), transform(theirs, x, t))


# Under torch.compile: one reduction per transform (compiles are slow), cycling through all three.
COMPILED = [(name, REDUCTIONS[k % 3]) for k, name in enumerate(TRANSFORMS)]


def _compiled(transform, loss):
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    return torch.compile(lambda a, b: transform(loss, a, b), backend=counter), counter


@pytest.mark.parametrize("name,reduction", COMPILED, ids=[f"{n}-{r}" for n, r in COMPILED])
def test_transform_under_compile(name, reduction):
    """As PyTorch's op under the same compiled composition: the same values, or, where torch.compile
    cannot handle the composition for PyTorch's op either (functionalize inside a compiled function
    fails in AOTAutograd for any op), the same error."""
    x, t, w = _inputs(reduction)
    ours, theirs = _losses(reduction, w)
    transform = TRANSFORMS[name]
    compiled, counter = _compiled(transform, ours)
    try:
        result = compiled(x, t)
    except Exception as ours_error:  # noqa: BLE001 (compared with PyTorch's below)
        with pytest.raises(type(ours_error)) as theirs_error:
            _compiled(transform, theirs)[0](x, t)
        # (the first line names the backend object)
        assert str(ours_error).splitlines()[1:2] == str(theirs_error.value).splitlines()[1:2]
        return
    _assert_same(result, transform(theirs, x, t))
    assert counter.frame_count >= 1  # it did compile (no silent fallback to eager)


@pytest.mark.parametrize("name", ["grad", "vmap", "jvp"])
def test_transform_under_inductor(name):
    x, t, w = _inputs("mean")
    ours, theirs = _losses("mean", w)
    transform = TRANSFORMS[name]
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: transform(ours, a, b), fullgraph=True)
    _assert_same(compiled(x, t), transform(theirs, x, t))
