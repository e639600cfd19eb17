"""The oracle: PyTorch's own binary cross entropy, run on the same inputs as bce_ext.

For float32/float64 bce_ext follows PyTorch's kernels. For float16/bfloat16 it computes in float32
(SPEC section 2, beyond PyTorch), so there the oracle is PyTorch run on the float32 upcast of the
inputs, rounded to the half type at the end.
"""
import torch
import torch.nn.functional as F

import bce_ext

HALF_TYPES = (torch.float16, torch.bfloat16)
REDUCTIONS = ("none", "mean", "sum")


def compute_dtype(dtype):
    return torch.float32 if dtype in HALF_TYPES else dtype


def loss_and_grads(fn, x, t, w, reduction, g=None):
    """fn's loss and its gradients w.r.t. x and t (upstream gradient g, default ones)."""
    x = x.detach().clone().requires_grad_(True)
    t = t.detach().clone().requires_grad_(True)
    out = fn(x, t, weight=w, reduction=reduction)
    if g is None:
        g = torch.ones_like(out)
    gx, gt = torch.autograd.grad(out, (x, t), g)
    return out.detach(), gx, gt


def oracle(x, t, w, reduction, g=None):
    """PyTorch's loss and gradients, in bce_ext's compute type, returned in x's dtype."""
    dtype = x.dtype
    up = compute_dtype(dtype)
    up_g = None if g is None else g.to(up)
    out, gx, gt = loss_and_grads(F.binary_cross_entropy, x.to(up), t.to(up), w, reduction, up_g)
    return out.to(dtype), gx.to(dtype), gt.to(dtype)


def ours(x, t, w, reduction, g=None):
    return loss_and_grads(bce_ext.binary_cross_entropy, x, t, w, reduction, g)


def tolerances(dtype):
    """rtol/atol: float32 allows a few ulp (the reduced sums are added in another order);
    the half types one rounding of the result."""
    return {
        torch.float64: dict(rtol=1e-12, atol=1e-12),
        torch.float32: dict(rtol=4e-6, atol=1e-6),
        torch.float16: dict(rtol=1e-3, atol=1e-5),
        torch.bfloat16: dict(rtol=8e-3, atol=1e-5),
    }[dtype]


def assert_matches(actual, expected, dtype=None):
    dtype = dtype or expected.dtype
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, equal_nan=True, **tolerances(dtype))


def probabilities(shape, dtype, device, generator=None, low=0.0):
    """Uniform values in [low, 1), drawn in float64 so every dtype sees the same numbers."""
    v = torch.rand(shape, dtype=torch.float64, generator=generator)
    return (low + (1 - low) * v).to(dtype).to(device)
