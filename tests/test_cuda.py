"""Behaviour that only the CUDA kernels have (SPEC sections 2 to 5): NaN rather than a device-side
assert for bad values, strict mode, autocast, bitwise reproducibility, the 128-bit and unaligned
paths, layouts, broadcast weights, CUDA graphs, empty inputs and the accuracy of large reductions.
The oracle is PyTorch: its BCE on float64 copies of the same inputs (or its own CPU kernels).
Without a GPU (or with a CPU-only build) every test here but the strict-mode switch is skipped."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import bce_ext

CUDA = torch.cuda.is_available() and bce_ext._C.with_cuda
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="needs a GPU and a CUDA build of bce_ext (bce_ext._C.with_cuda)")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
REDUCTIONS = ["none", "mean", "sum"]
# Against a float64 reference: the dtype's rounding of the result, with room for the float32
# arithmetic inside (half types compute in float32 and round once at the end).
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float16: dict(rtol=1e-3, atol=1e-5),
    torch.bfloat16: dict(rtol=8e-3, atol=1e-4),
}
INPUT_MESSAGE = "all elements of input should be between 0 and 1"
TARGET_MESSAGE = "all elements of target should be between 0 and 1"
# Elements of the large-N accuracy test; a sanitizer run makes it smaller (benchmarks/gpu_check.sh).
LARGE_N = int(os.environ.get("BCE_EXT_TEST_LARGE_N", 10**8))


@pytest.fixture(autouse=True)
def _restore_strict():
    before = bce_ext.is_strict()
    yield
    bce_ext.set_strict(before)


def probabilities(shape, dtype=torch.float32, device="cuda", low=0.01, high=0.99, seed=0):
    """Random values in [low, high], never exactly 0 or 1 (and never all zeros)."""
    gen = torch.Generator().manual_seed(seed)
    values = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)
    return values.to(dtype).to(device)


def reference(x, t, weight=None, reduction="mean"):
    """PyTorch's BCE in float64 on the CPU."""
    w = None if weight is None else weight.detach().cpu().double()
    return F.binary_cross_entropy(x.detach().cpu().double(), t.detach().cpu().double(), weight=w,
                                  reduction=reduction)


def reference_grads(x, t, weight=None, reduction="mean", grad=None):
    """Gradients of PyTorch's BCE in float64 on the CPU, for input and target."""
    xd = x.detach().cpu().double().requires_grad_()
    td = t.detach().cpu().double().requires_grad_()
    w = None if weight is None else weight.detach().cpu().double()
    loss = F.binary_cross_entropy(xd, td, weight=w, reduction=reduction)
    loss.backward(None if grad is None else grad.detach().cpu().double())
    return xd.grad, td.grad


def ours_with_grads(x, t, weight=None, reduction="mean", grad=None):
    """bce_ext's loss and gradients for input and target (on x's device and in its dtype)."""
    x = x.detach().requires_grad_()
    t = t.detach().requires_grad_()
    loss = bce_ext.binary_cross_entropy(x, t, weight=weight, reduction=reduction)
    loss.backward(grad)
    return loss.detach(), x.grad, t.grad


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual.cpu().double(), expected.cpu().double(), equal_nan=True,
                               **TOL[dtype])


# ---------------------------------------------------------------------------------------------
# Strict mode switch: runs everywhere.

def test_strict_round_trip_and_cpu_unchanged():
    bce_ext.set_strict(True)
    assert bce_ext.is_strict() is True
    # On CPU strict mode changes nothing: a bad value raises either way.
    x = torch.tensor([0.5, 1.5])
    t = torch.tensor([0.5, 0.5])
    with pytest.raises(RuntimeError, match=INPUT_MESSAGE):
        bce_ext.binary_cross_entropy(x, t)
    bce_ext.set_strict(False)
    assert bce_ext.is_strict() is False
    with pytest.raises(RuntimeError, match=INPUT_MESSAGE):
        bce_ext.binary_cross_entropy(x, t)
    good = torch.tensor([0.25, 0.75])
    torch.testing.assert_close(bce_ext.binary_cross_entropy(good, t),
                               F.binary_cross_entropy(good, t))


@pytest.mark.parametrize("value,expected", [("1", True), ("0", False), (None, False)])
def test_strict_from_environment(value, expected):
    env = dict(os.environ)
    env.pop("BCE_EXT_STRICT", None)
    # The child imports the same bce_ext as this process (an in-place build is not installed).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(bce_ext.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    if value is not None:
        env["BCE_EXT_STRICT"] = value
    out = subprocess.run([sys.executable, "-c", "import bce_ext; print(bce_ext.is_strict())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(expected)


# ---------------------------------------------------------------------------------------------
# Bad values: NaN by default, no device-side assert; strict mode raises the CPU's messages.

def bad_pair(dtype, bad_input_at=None, bad_target_at=None, n=1000):
    x = probabilities((n,), dtype, device="cpu", seed=1)
    t = probabilities((n,), dtype, device="cpu", seed=2)
    if bad_input_at is not None:
        x[bad_input_at] = 1.5
    if bad_target_at is not None:
        t[bad_target_at] = float("nan")
    return x, t


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_bad_values_give_nan_then_next_call_works(dtype):
    x, t = bad_pair(dtype, bad_input_at=[3, 700], bad_target_at=[10])
    x[20] = -0.25
    t[30] = 2.0
    t[40] = float("inf")
    bad = torch.zeros(x.numel(), dtype=torch.bool)
    bad[[3, 700, 10, 20, 30, 40]] = True
    xc, tc = x.cuda(), t.cuda()
    none = bce_ext.binary_cross_entropy(xc, tc, reduction="none")
    assert torch.isnan(none.cpu()[bad]).all()
    # The good elements are untouched by their bad neighbours.
    expected = reference(x[~bad], t[~bad], reduction="none")
    assert_close(none.cpu()[~bad], expected, dtype)
    for reduction in ("mean", "sum"):
        assert torch.isnan(bce_ext.binary_cross_entropy(xc, tc, reduction=reduction)).item()
    torch.cuda.synchronize()  # a device-side assert would surface here
    good_x, good_t = probabilities((64,), dtype, seed=3), probabilities((64,), dtype, seed=4)
    assert_close(bce_ext.binary_cross_entropy(good_x, good_t), reference(good_x, good_t), dtype)


@needs_cuda
@pytest.mark.parametrize("bad_input_at,bad_target_at", [
    ([5], None), (None, [5]), ([7], [3]), ([3], [7]), ([4], [4]), ([900, 2], [1, 800])])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_strict_mode_raises_cpu_message(bad_input_at, bad_target_at, reduction):
    x, t = bad_pair(torch.float32, bad_input_at, bad_target_at)
    # The CPU kernels are the oracle for which message comes first.
    with pytest.raises(RuntimeError) as cpu_error:
        bce_ext.binary_cross_entropy(x, t, reduction=reduction)
    expected = INPUT_MESSAGE if INPUT_MESSAGE in str(cpu_error.value) else TARGET_MESSAGE
    bce_ext.set_strict(True)
    with pytest.raises(RuntimeError, match=expected):
        bce_ext.binary_cross_entropy(x.cuda(), t.cuda(), reduction=reduction)
    # After the error: a good call works, in strict mode and out of it.
    good_x, good_t = probabilities((100,), seed=5), probabilities((100,), seed=6)
    assert_close(bce_ext.binary_cross_entropy(good_x, good_t, reduction=reduction),
                 reference(good_x, good_t, reduction=reduction), torch.float32)
    bce_ext.set_strict(False)
    assert_close(bce_ext.binary_cross_entropy(good_x, good_t, reduction=reduction),
                 reference(good_x, good_t, reduction=reduction), torch.float32)


@needs_cuda
def test_strict_mode_refuses_graph_capture_clearly():
    x, t = probabilities((256,)), probabilities((256,), seed=1)
    bce_ext.binary_cross_entropy(x, t)  # warm up outside the capture
    torch.cuda.synchronize()
    bce_ext.set_strict(True)
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="strict mode"):
        with torch.cuda.graph(graph):
            x * 2  # the graph is not empty
            bce_ext.binary_cross_entropy(x, t)
    bce_ext.set_strict(False)
    assert_close(bce_ext.binary_cross_entropy(x, t), reference(x, t), torch.float32)


# ---------------------------------------------------------------------------------------------
# Autocast (beyond PyTorch, which refuses BCE under CUDA autocast).

@needs_cuda
@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_autocast_computes_in_float32(amp_dtype, reduction):
    x = probabilities((33, 17), amp_dtype).requires_grad_()
    t = probabilities((33, 17), amp_dtype, seed=1)
    with torch.autocast("cuda", dtype=amp_dtype):
        loss = bce_ext.binary_cross_entropy(x, t, reduction=reduction)
    assert loss.dtype == torch.float32
    # The oracle: PyTorch's float32 BCE on the upcast inputs.
    xf = x.detach().float().requires_grad_()
    expected = F.binary_cross_entropy(xf, t.float(), reduction=reduction)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    grad = torch.rand_like(loss)
    loss.backward(grad)
    expected.backward(grad)
    assert x.grad.dtype == amp_dtype
    torch.testing.assert_close(x.grad, xf.grad.to(amp_dtype))


@needs_cuda
def test_autocast_module_with_sigmoid():
    model = torch.nn.Sequential(torch.nn.Linear(8, 1), torch.nn.Sigmoid()).cuda()
    data = torch.randn(64, 8, device="cuda")
    target = probabilities((64, 1), seed=7)
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(data)
        assert out.dtype == torch.float16
        loss = bce_ext.BCELoss()(out, target)
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Reproducibility and accuracy of the reductions.

@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 4099, 3_000_017])
def test_bitwise_reproducible(dtype, n):
    x, t = probabilities((n,), dtype, seed=8), probabilities((n,), dtype, seed=9)
    w = probabilities((n,), dtype, seed=10)
    for reduction in ("mean", "sum"):
        runs = [bce_ext.binary_cross_entropy(x, t, w, reduction=reduction) for _ in range(3)]
        assert all(torch.equal(runs[0], r) for r in runs[1:])
        # A large float16 sum overflows to inf, as PyTorch's would: only the mean meets the oracle.
        if reduction == "mean":
            assert_close(runs[0], reference(x, t, w, reduction=reduction), dtype)
    grads = [ours_with_grads(x, t, w)[1:] for _ in range(2)]
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


@needs_cuda
def test_large_float32_mean_is_accurate():
    x = torch.rand(LARGE_N, device="cuda", generator=torch.Generator("cuda").manual_seed(11))
    t = torch.rand(LARGE_N, device="cuda", generator=torch.Generator("cuda").manual_seed(12))
    ours = bce_ext.binary_cross_entropy(x, t).double()
    exact = F.binary_cross_entropy(x.double(), t.double())
    assert abs((ours - exact) / exact).item() < 1e-6
    ours_sum = bce_ext.binary_cross_entropy(x, t, reduction="sum").double()
    assert abs((ours_sum - exact * LARGE_N) / (exact * LARGE_N)).item() < 1e-6


# ---------------------------------------------------------------------------------------------
# Memory paths and layouts, against the float64 oracle and bce_ext's own CPU kernels.

def check_against_oracles(x, t, weight=None, grad_none=None):
    """bce_ext on x's device against float64 PyTorch and against bce_ext on the CPU, for every
    reduction, loss and both gradients."""
    dtype = x.dtype
    if grad_none is None:
        grad_none = probabilities(x.shape, dtype, device=x.device, seed=99)
    for reduction in REDUCTIONS:
        grad = grad_none if reduction == "none" else None
        loss, gx, gt = ours_with_grads(x, t, weight, reduction, grad)
        ref_gx, ref_gt = reference_grads(x, t, weight, reduction, grad)
        assert_close(loss, reference(x, t, weight, reduction), dtype)
        assert_close(gx, ref_gx, dtype)
        assert_close(gt, ref_gt, dtype)
        cpu = ours_with_grads(x.cpu(), t.cpu(), None if weight is None else weight.cpu(),
                              reduction, None if grad is None else grad.cpu())
        for mine, theirs in zip((loss, gx, gt), cpu):
            assert_close(mine, theirs, dtype)
        if reduction == "none":
            # Layout as PyTorch: empty_like(input).
            assert loss.stride() == torch.empty_like(x).stride()
            assert gx.stride() == torch.empty_like(x).stride()


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1031, 65_543])
def test_vector_and_unaligned_paths(dtype, n):
    # Offset by one element: no pointer is 16-byte aligned, so the scalar loop does it all.
    base_x = probabilities((n + 1,), dtype, seed=13)
    base_t = probabilities((n + 1,), dtype, seed=14)
    base_g = probabilities((n + 1,), dtype, seed=15)
    unaligned = (base_x[1:], base_t[1:], base_g[1:])
    aligned = tuple(v.clone() for v in unaligned)
    assert aligned[0].data_ptr() % 16 == 0 and unaligned[0].data_ptr() % 16 != 0
    for x, t, g in (aligned, unaligned):
        check_against_oracles(x, t, grad_none=g)
    # Only x misaligned (t, g aligned), and only the gradient misaligned.
    check_against_oracles(unaligned[0], aligned[1], grad_none=aligned[2])
    check_against_oracles(aligned[0], aligned[1], grad_none=unaligned[2])
    # Both paths compute the same function.
    for reduction in ("none", "mean"):
        a = bce_ext.binary_cross_entropy(aligned[0], aligned[1], reduction=reduction)
        u = bce_ext.binary_cross_entropy(unaligned[0], unaligned[1], reduction=reduction)
        assert_close(a, u, dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_layouts(dtype):
    # Transposed.
    x = probabilities((37, 53), dtype, seed=16).t()
    t = probabilities((53, 37), dtype, seed=17)
    check_against_oracles(x, t, grad_none=probabilities((37, 53), dtype, seed=18).t())
    # Sliced with a step (not dense: copied into kernel order).
    x = probabilities((40, 90), dtype, seed=19)[:, ::3]
    t = probabilities((40, 30), dtype, seed=20)
    check_against_oracles(x, t)
    # channels_last.
    x = probabilities((2, 3, 9, 11), dtype, seed=21).to(memory_format=torch.channels_last)
    t = probabilities((2, 3, 9, 11), dtype, seed=22)
    check_against_oracles(x, t, grad_none=probabilities((2, 3, 9, 11), dtype, seed=23))
    # Expanded (stride 0) input and target, and an expanded incoming gradient.
    x = probabilities((1, 77), dtype, seed=24).expand(5, 77)
    t = probabilities((5, 1), dtype, seed=25).expand(5, 77)
    check_against_oracles(x, t, grad_none=torch.ones((), dtype=dtype, device="cuda").expand(5, 77))
    # 0-dim.
    check_against_oracles(probabilities((), dtype, seed=26), probabilities((), dtype, seed=27))


@needs_cuda
@pytest.mark.parametrize("weight_shape", [(), (1,), (11,), (7, 1), (1, 7, 11), (3, 1, 11), (3, 7, 11)])
@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.float64])
def test_broadcast_weights(weight_shape, weight_dtype):
    x = probabilities((3, 7, 11), seed=28)
    t = probabilities((3, 7, 11), seed=29)
    w = probabilities(weight_shape, weight_dtype, low=0.0, high=3.0, seed=30)
    check_against_oracles(x, t, weight=w)
    # The result keeps the input's dtype whatever the weight's.
    assert bce_ext.binary_cross_entropy(x, t, w).dtype == x.dtype


@needs_cuda
def test_weight_table_with_inner_and_period():
    # A (C, 1) weight: each value repeats over a row (inner > 1) and the rows cycle (period > 1), so
    # the kernels' index division is exercised on a long run. (The 64-bit division needs more than
    # 2^31 elements and is not tested.)
    x = probabilities((1000, 3001), seed=31)
    t = probabilities((1000, 3001), seed=32)
    w = probabilities((1000, 1), low=0.5, high=2.0, seed=33)
    for reduction in REDUCTIONS:
        assert_close(bce_ext.binary_cross_entropy(x, t, w, reduction=reduction),
                     reference(x, t, w, reduction), torch.float32)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_boundary_values(dtype):
    # x and t at 0 and 1: the -100 clamp, the 1e-12 epsilon, the +-inf target gradient.
    values = torch.tensor([0.0, 1.0, 0.5, 1e-7, 1 - 1e-7], dtype=dtype)
    x, t = torch.cartesian_prod(values, values).unbind(1)
    x, t = x.contiguous(), t.contiguous()
    for reduction in ("none", "sum"):
        grad = torch.ones_like(x) if reduction == "none" else None
        loss, gx, gt = ours_with_grads(x.cuda(), t.cuda(), reduction=reduction,
                                       grad=None if grad is None else grad.cuda())
        cpu_loss, cpu_gx, cpu_gt = ours_with_grads(x, t, reduction=reduction, grad=grad)
        assert_close(loss, cpu_loss, dtype)
        assert_close(gx, cpu_gx, dtype)
        assert_close(gt, cpu_gt, dtype)
        expected = F.binary_cross_entropy(x, t, reduction=reduction)
        assert_close(loss, expected, dtype)


# ---------------------------------------------------------------------------------------------
# CUDA graphs, empty inputs, devices.

@needs_cuda
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_graph_capture_forward_backward(reduction):
    shape = (257, 129)
    x = probabilities(shape, seed=34).requires_grad_()
    t = probabilities(shape, seed=35)
    w = probabilities((129,), low=0.5, high=2.0, seed=36)
    grad = probabilities(shape, seed=37) if reduction == "none" else None

    def step():
        loss = bce_ext.binary_cross_entropy(x, t, w, reduction=reduction)
        loss.backward(grad)
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            x.grad = None
            step()
    torch.cuda.current_stream().wait_stream(side)
    x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()
    for seed in (38, 39):
        with torch.no_grad():
            x.copy_(probabilities(shape, seed=seed))
            t.copy_(probabilities(shape, seed=seed + 100))
        graph.replay()
        torch.cuda.synchronize()
        replayed_loss, replayed_grad = static_loss.clone(), x.grad.clone()
        eager_loss, eager_grad, _ = ours_with_grads(x, t, w, reduction, grad)
        assert torch.equal(replayed_loss, eager_loss)
        assert torch.equal(replayed_grad, eager_grad)
        assert_close(replayed_loss, reference(x, t, w, reduction), torch.float32)


@needs_cuda
@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0, 2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_inputs(shape, dtype):
    x = torch.empty(shape, dtype=dtype, device="cuda", requires_grad=True)
    t = torch.empty(shape, dtype=dtype, device="cuda")
    mean = bce_ext.binary_cross_entropy(x, t)
    assert mean.shape == () and mean.dtype == dtype and torch.isnan(mean).item()
    total = bce_ext.binary_cross_entropy(x, t, reduction="sum")
    assert total.shape == () and total.item() == 0
    none = bce_ext.binary_cross_entropy(x, t, reduction="none")
    assert none.shape == shape and none.device == x.device
    mean.backward()
    assert x.grad.shape == shape


@needs_cuda
def test_mixed_devices_raise():
    x = probabilities((4,))
    t = probabilities((4,), device="cpu")
    with pytest.raises(RuntimeError, match="cuda.*cpu|cpu.*cuda"):
        bce_ext.binary_cross_entropy(x, t)
    with pytest.raises(RuntimeError, match="cuda.*cpu|cpu.*cuda"):
        bce_ext.binary_cross_entropy(x, x, weight=torch.ones(4))


@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    x = probabilities((1000,), device="cuda:1")
    t = probabilities((1000,), device="cuda:1", seed=1)
    with torch.cuda.device(0):
        loss, gx, _ = ours_with_grads(x, t)
    assert loss.device == x.device and gx.device == x.device
    assert_close(loss, reference(x, t), torch.float32)
