"""Binary cross entropy on probabilities: its row in the suites' table (the suites over
losses.ALL_LOSSES run it everywhere: values, layouts, thresholds, transforms, autograd, errors,
properties, bad input, concurrency; test_cuda.py its CUDA behaviour), and what only it has: the
-100 clamp of each log and PyTorch's message for values outside [0, 1]."""
import pytest
import torch
import torch.nn.functional as F
from losses import row

import bce_ext

ROW = row(
    "binary_cross_entropy",
    reference=F.binary_cross_entropy,
    reference_module=torch.nn.BCELoss,
)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_each_log_is_clamped_at_minus_100(dtype):
    """PyTorch's clamp: a certain wrong prediction costs 100, not inf; its gradients are finite
    where PyTorch's are."""
    x = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=dtype, requires_grad=True)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    ours = bce_ext.binary_cross_entropy(x, t, reduction="none")
    theirs = F.binary_cross_entropy(x, t, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert ours.tolist() == [100.0, 100.0, 0.0, 0.0]
    xr = x.detach().clone().requires_grad_()
    g, = torch.autograd.grad(ours.sum(), x)
    g_ref, = torch.autograd.grad(F.binary_cross_entropy(xr, t, reduction="none").sum(), xr)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=0)


@pytest.mark.parametrize("bad", (-0.5, 1.5, float("nan")))
def test_values_outside_0_1_raise_pytorchs_error(bad):
    x = torch.full((3,), 0.5)
    x[1] = bad
    with pytest.raises(RuntimeError) as ours:
        bce_ext.binary_cross_entropy(x, torch.full((3,), 0.5))
    with pytest.raises(RuntimeError) as theirs:
        F.binary_cross_entropy(x, torch.full((3,), 0.5))
    assert str(ours.value) == str(theirs.value)
