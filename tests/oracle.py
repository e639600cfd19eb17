"""The one harness that every suite, CPU and CUDA, judges bce_ext by (the losses themselves, one
row each, are in losses.py and the tests/test_<loss>.py files):

- oracle() / expected(): the row's reference (PyTorch's own loss, or the peer library's formula
  in torch ops) in bce_ext's compute type, compared with assert_matches at tolerances();
- truth(): the float64 truth on the CPU (the row's exact formula where it has one), compared with
  assert_near_truth at TRUTH_TOLERANCES, or used by assert_as_accurate where a float32 reference
  loses digits that bce_ext keeps;
- ours() / run(): bce_ext's loss and gradients on any device.

For float32/float64 bce_ext follows PyTorch's kernels. For float16/bfloat16 it computes in float32
(beyond PyTorch), so there the oracle is PyTorch run on the float32 upcast of the inputs, rounded
to the half type at the end. Label smoothing (beyond PyTorch) is PyTorch's loss of the smoothed
target t * (1 - s) + s / 2, differentiated through the smoothing.
"""
import functools

import torch

HALF_TYPES = (torch.float16, torch.bfloat16)
REDUCTIONS = ("none", "mean", "sum")


def compute_dtype(dtype):
    return torch.float32 if dtype in HALF_TYPES else dtype


def probabilities(shape, dtype, device, generator=None, low=0.0):
    """Uniform values in [low, 1), drawn in float64 so every dtype sees the same numbers."""
    v = torch.rand(shape, dtype=torch.float64, generator=generator)
    return (low + (1 - low) * v).to(dtype).to(device)


def _smoothed(fn):
    """PyTorch's loss of the smoothed target (the oracle of label_smoothing)."""
    def loss(x, t, weight=None, reduction="mean", label_smoothing=0.0, **kwargs):
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / 2
        return fn(x, t, weight, reduction=reduction, **kwargs)
    return loss


def run(fn, x, t, w=None, reduction="mean", g=None, wrt="both", extra=None):
    """fn's loss and the gradients that autograd asks for (`wrt`: "input", "target" or "both",
    of which x and t must be the leaves that require grad), for the incoming gradient g (default
    ones)."""
    out = fn(x, t, weight=w, reduction=reduction, **(extra or {}))
    wanted = [v for v, name in ((x, "input"), (t, "target")) if wrt in (name, "both")]
    grads = torch.autograd.grad(out, wanted, torch.ones_like(out) if g is None else g)
    return (out.detach(),) + tuple(grads)


def leaves(x, t, wrt="both", dtype=None):
    """x and t as autograd leaves (in `dtype`; as they are, layout included, when it is None), the
    ones `wrt` names requiring grad."""
    def leaf(v, wanted):
        v = v.detach() if dtype is None else v.detach().to(dtype)
        return v.requires_grad_(wanted)
    return leaf(x, wrt in ("input", "both")), leaf(t, wrt in ("target", "both"))


def expected(loss, x, t, w=None, reduction="mean", g=None, wrt="both", extra=None):
    """The oracle: PyTorch's loss and gradients in bce_ext's compute type (float32 for the half
    types, rounded to them once at the end: oracle.py), in x's dtype."""
    up = compute_dtype(x.dtype)
    # bce_ext computes every operand of a half-type call in float32 (pos_weight - 1 included).
    extra = {k: v.to(up) if isinstance(v, torch.Tensor) and v.dtype != up and
             v.is_floating_point() else v for k, v in (extra or {}).items()}
    results = run(loss.reference, *leaves(x, t, wrt, up), w, reduction,
                  None if g is None else g.to(up), wrt, extra)
    return tuple(r.to(x.dtype) for r in results)


def loss_and_grads(fn, x, t, w, reduction, g=None, **kwargs):
    """fn's loss and its gradients w.r.t. x and t (upstream gradient g, default ones)."""
    return run(fn, *leaves(x, t), w, reduction, g, "both", kwargs)


def _bce():
    from losses import ROWS  # losses.py imports this module
    return ROWS["binary_cross_entropy"]


def oracle(x, t, w, reduction, g=None, loss=None, **kwargs):
    """PyTorch's loss and gradients, in bce_ext's compute type, returned in x's dtype."""
    loss = loss or _bce()
    dtype = x.dtype
    up = compute_dtype(dtype)
    up_g = None if g is None else g.to(up)
    # bce_ext computes every operand of a half-type call in float32 (pos_weight - 1 included).
    kwargs = {k: v.to(up) if isinstance(v, torch.Tensor) and v.dtype in HALF_TYPES else v
              for k, v in kwargs.items()}
    out, gx, gt = loss_and_grads(_smoothed(loss.theirs), x.to(up), t.to(up), w, reduction, up_g,
                                 **kwargs)
    return out.to(t.dtype), gx.to(dtype), gt.to(t.dtype)


def ours(x, t, w=None, reduction="mean", g=None, loss=None, **kwargs):
    """bce_ext's loss and both gradients, on x's device and in its dtype."""
    return loss_and_grads((loss or _bce()).ours, x, t, w, reduction, g, **kwargs)


def _cpu64(v):
    if not isinstance(v, torch.Tensor):
        return v
    v = v.detach().cpu()
    return v.double() if v.is_floating_point() else v


def truth(x, t, w=None, reduction="mean", g=None, loss=None, **kwargs):
    """The float64 truth of any device's result: the loss and both gradients of the row's exact
    formula where it has one (else of its oracle), on float64 CPU copies of every operand."""
    loss = loss or _bce()
    return oracle(_cpu64(x), _cpu64(t), _cpu64(w), reduction, _cpu64(g),
                  loss=getattr(loss, "exact", loss), **{n: _cpu64(v) for n, v in kwargs.items()})


def tolerances(dtype):
    """rtol/atol: float32 allows a few ulp (the reduced sums are added in another order, and the
    vector logs and exps are ours); the half types one rounding of the result."""
    return {
        torch.float64: dict(rtol=1e-12, atol=1e-12),
        torch.float32: dict(rtol=4e-6, atol=1e-6),
        torch.float16: dict(rtol=1e-3, atol=1e-5),
        torch.bfloat16: dict(rtol=8e-3, atol=1e-5),
    }[dtype]


# Against the float64 truth (truth()): the dtype's rounding of the result, with room for the
# float32 arithmetic inside (half types compute in float32 and round once at the end).
TRUTH_TOLERANCES = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float16: dict(rtol=1e-3, atol=1e-5),
    torch.bfloat16: dict(rtol=8e-3, atol=1e-4),
}


def assert_near_truth(actual, expected, dtype, **tolerances):
    """actual (in dtype, on any device) against a float64 truth rounded to dtype first: the best
    result the dtype holds (a value beyond its range is inf there, as PyTorch's result is).
    tolerances: TRUTH_TOLERANCES[dtype]'s, or these."""
    torch.testing.assert_close(actual.cpu().double(), expected.cpu().to(dtype).double(),
                               equal_nan=True, **(tolerances or TRUTH_TOLERANCES[dtype]))


def assert_matches(actual, expected, dtype=None):
    dtype = dtype or expected.dtype
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, equal_nan=True, **tolerances(dtype))


def float64_of(v):
    return v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v


def assert_as_accurate(actual, expected, reference, what="output"):
    """actual matches expected within the tolerances, or where the two differ by more (PyTorch's own
    float32 rounding, where terms cancel: sigmoid(x) - t, or pos_weight * t against the rest) is
    as close as expected to `reference()`, the float64 result, element by element, within the
    tolerances of actual's dtype."""
    try:
        assert_matches(actual, expected)
    except AssertionError:
        r = reference()
        ours_error = (actual.cpu().double() - r).abs().nan_to_num(0.0)
        theirs_error = (expected.cpu().double() - r).abs().nan_to_num(0.0)
        tol = tolerances(actual.dtype)
        worse = ours_error > theirs_error + tol["atol"] + tol["rtol"] * r.abs()
        assert torch.equal(actual.isnan(), expected.isnan()) and not worse.any(), (
            f"{what}: {int(worse.sum())} elements less accurate than PyTorch's; worst "
            f"{(ours_error - theirs_error).max().item():.3g}")


def assert_loss_matches(x, t, w, reduction, g=None, loss=None, strides=False, **kwargs):
    """bce_ext's loss and both gradients against PyTorch's (in float32 at least as accurate:
    assert_as_accurate). strides: also PyTorch's output strides."""
    actual = ours(x, t, w, reduction, g, loss=loss, **kwargs)
    expected = oracle(x, t, w, reduction, g, loss=loss, **kwargs)
    reference = functools.cache(lambda: truth(x, t, w, reduction, g, loss, **kwargs))
    for k, (a, e) in enumerate(zip(actual, expected)):
        if x.dtype == torch.float32:
            assert_as_accurate(a, e, lambda k=k: reference()[k], f"output {k}")
        else:
            assert_matches(a, e)
        if strides and a.dim():
            assert a.stride() == e.stride()
