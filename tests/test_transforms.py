"""torch.func transforms and their nestings over every bce_ext loss, alone and under
torch.compile, against the same composition of PyTorch's own loss.

bce_ext's ops carry their autograd as PyTorch's own ops do (graph nodes, forward-mode tangents,
differentiable second derivatives), vmap rules, and Meta kernels for fake tensors, so every
composition that works for PyTorch's loss must work, and agree, for bce_ext's.
"""
import os
import subprocess
import sys

import pytest
import torch
import torch._dynamo.testing
from losses import ALL_LOSSES
from oracle import REDUCTIONS, probabilities
from test_binary_cross_entropy import ROW as BCE
from torch import func

leaves = torch.utils._pytree.tree_leaves


def _inputs(loss):
    gen = torch.Generator().manual_seed(0)
    x = loss.inputs((3, 4), torch.float64, "cpu", gen, low=0.05)
    if loss is BCE:  # away from 0 and 1, where the derivatives blow up
        x = x.mul(0.9)
    t = probabilities((3, 4), torch.float64, "cpu", gen, low=0.05).mul(0.9)
    w = torch.rand(4, dtype=torch.float64, generator=gen) + 0.5 if loss.takes_weight else None
    extras = {name: 3 * torch.rand(4, dtype=torch.float64, generator=gen) for name in loss.extras}
    return x, t, w, extras


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


def _losses(loss, reduction, w, extras):
    def ours(a, b):
        return loss.ours(a, b, w, reduction=reduction, **extras)

    reference = loss.composite_reference or loss.theirs

    def theirs(a, b):
        return reference(a, b, w, reduction=reduction, **extras)

    return ours, theirs


def _assert_same(actual, expected):
    a, e = leaves(actual), leaves(expected)
    assert len(a) == len(e)
    for u, v in zip(a, e):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_transform(loss, name, reduction):
    x, t, w, extras = _inputs(loss)
    ours, theirs = _losses(loss, reduction, w, extras)
    transform = TRANSFORMS[name]
    _assert_same(transform(ours, x, t), transform(theirs, x, t))


# Under torch.compile: one reduction per transform and loss (compiles are slow), cycling through
# all three.
COMPILED = [(loss, name, REDUCTIONS[(k + j) % 3]) for j, loss in enumerate(ALL_LOSSES)
            for k, name in enumerate(TRANSFORMS)]


def _compiled(transform, loss):
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    return torch.compile(lambda a, b: transform(loss, a, b), backend=counter), counter


# One compiled case in a fresh process: prints OK or FAIL.
_FRESH = """
import sys, torch
sys.path.insert(0, {tests!r})
import test_transforms as T
from losses import ALL_LOSSES
loss = [l for l in ALL_LOSSES if l.name == {loss!r}][0]
x, t, w, extras = T._inputs(loss)
fn = T._losses(loss, {reduction!r}, w, extras)[{which}]
counter = torch._dynamo.testing.CompileCounterWithBackend({backend!r})
try:
    torch.compile(lambda a, b: T.TRANSFORMS[{name!r}](fn, a, b), backend=counter,
                  fullgraph={fullgraph!r})(x, t)
    # A frame that dynamo skips runs eagerly: that is no compilation either.
    print("OK" if counter.frame_count >= 1 else "FAIL")
except Exception:
    print("FAIL")
"""


def _compiles_alone(loss, name, reduction, which, backend="aot_eager", fullgraph=False):
    code = _FRESH.format(tests=os.path.dirname(os.path.abspath(__file__)), loss=loss.name,
                         reduction=reduction, which=which, name=name, backend=backend,
                         fullgraph=fullgraph)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    return out.stdout.strip().endswith("OK")


@pytest.mark.parametrize("loss,name,reduction", COMPILED,
                         ids=[f"{loss}-{n}-{r}" for loss, n, r in COMPILED])
def test_transform_under_compile(loss, name, reduction):
    """As PyTorch's op under the same compiled composition: the same values, wherever torch.compile
    can compile the composition for PyTorch's op.

    Where compiling fails, the case is run again alone, in a fresh process, for bce_ext's loss and
    PyTorch's: torch.compile around torch.func transforms keeps state from one compilation to the
    next within a process (seen with PyTorch's own op: a composition that fails after another one
    compiles alone, and the reverse), and some compositions fail for PyTorch's op in any case
    (functionalize, or vmap of hessian, inside a compiled function). bce_ext's must then compile
    wherever PyTorch's does. Compiling means that dynamo compiled a frame: one it skips runs
    eagerly, and counts as a failure to compile."""
    x, t, w, extras = _inputs(loss)
    ours, theirs = _losses(loss, reduction, w, extras)
    transform = TRANSFORMS[name]
    compiled, counter = _compiled(transform, ours)
    try:
        result = compiled(x, t)
    except Exception:  # noqa: BLE001 (decided in fresh processes below)
        result = None
    if result is not None:
        _assert_same(result, transform(theirs, x, t))
    # Dynamo may also skip the frame and run it eagerly (torch 2.14 does for vmap(hessian), where
    # PyTorch's op raises inside dynamo): no compilation either.
    if result is None or counter.frame_count == 0:
        if not _compiles_alone(loss, name, reduction, 0):
            assert not _compiles_alone(loss, name, reduction, 1), \
                "PyTorch's op compiles in this composition and bce_ext's does not"


@pytest.mark.parametrize("name", ["grad", "vmap", "jvp"])
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_transform_under_inductor(loss, name):
    x, t, w, extras = _inputs(loss)
    ours, theirs = _losses(loss, "mean", w, extras)
    transform = TRANSFORMS[name]
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: transform(ours, a, b), fullgraph=True)
    try:
        result = compiled(x, t)
    except Exception:  # noqa: BLE001 (see test_transform_under_compile)
        assert _compiles_alone(loss, name, "mean", 0, "inductor", True)
        return
    _assert_same(result, transform(theirs, x, t))
