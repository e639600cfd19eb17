"""Behaviour that only the CUDA kernels have, for every loss of the table (losses.ALL_LOSSES) where
the behaviour is shared: the 128-bit and unaligned paths, layouts, bitwise reproducibility
(whatever the alignment and the kernel variant), CUDA graphs and streams, empty inputs, second
devices, autocast and the accuracy of large reductions; and for the losses that take them
(losses.LOSSES: not the sigmoid focal loss) broadcast weights and pos_weights. Then what one loss
has: BCE's NaN rather than a device-side assert for bad values and its strict mode, PyTorch's
dtype labels and 'mean' backward to the bit; the logits loss's infinite logits, mixed dtypes,
pos_weight broadcasts and label smoothing; the focal loss's alpha and gamma over every dtype and
reduction, its infinite logits, broadcast operands and the determinism of each of its formula's
paths. The oracle is the harness the CPU suites use (oracle.py): truth(), the float64 result on
the CPU of PyTorch's loss or the row's exact formula, and bce_ext's own CPU kernels.

Without a GPU (or with a CPU-only build) the CUDA tests skip. Tests whose claim holds on the CPU
too are parametrised over the device (DEVICES below), so that their logic runs everywhere; the
others make their tensors on CUDA_DEVICE, which a copy of this file can point at the CPU to run
their logic there (the CUDA-only APIs aside).
Environment: BCE_EXT_TEST_LARGE_N (elements of the large-N accuracy test, default 1e8) and
BCE_EXT_TEST_HUGE_N (elements of the more-than-2^31 test, default just above 2^31; 0 skips it),
which benchmarks/gpu_check.sh lowers under the sanitizers."""
import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from losses import ALL_LOSSES, LOSSES
from oracle import TRUTH_TOLERANCES, assert_near_truth, ours, truth
from test_binary_cross_entropy import ROW as BCE
from test_binary_cross_entropy_with_logits import ROW as BCE_WITH_LOGITS
from test_sigmoid_focal_loss import ROW as FOCAL

import bce_ext

CUDA = torch.cuda.is_available() and bce_ext._C.with_cuda
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="needs a GPU and a CUDA build of bce_ext (bce_ext._C.with_cuda)")
# For claims that hold on both devices: the CPU runs them everywhere, CUDA where it can.
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
# The device of the CUDA-only tests.
CUDA_DEVICE = "cuda"

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
REDUCTIONS = ["none", "mean", "sum"]
INPUT_MESSAGE = "all elements of input should be between 0 and 1"
TARGET_MESSAGE = "all elements of target should be between 0 and 1"
# Elements of the large-N accuracy test; a sanitizer run makes it smaller (benchmarks/gpu_check.sh).
LARGE_N = int(os.environ.get("BCE_EXT_TEST_LARGE_N", 10**8))
# Elements of the test beyond 32-bit indices (0: skipped; gpu_check.sh sets 0 under the sanitizers).
HUGE_N = int(os.environ.get("BCE_EXT_TEST_HUGE_N", 2**31 + 2**20))
# The losses with weights (and label smoothing), and every loss (the focal loss too).
loss_ids = pytest.mark.parametrize("loss", LOSSES, ids=repr)
all_loss_ids = pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
# The focal loss's (alpha, gamma) grid: torchvision's default first; alpha < 0 turns the class
# weighting off; gamma 0, 1 and 2 are exact powers in the kernels, 0.5 and 5 go through exp/log.
FOCAL_ALPHAS = [0.25, -1.0, 0.75]
FOCAL_GAMMAS = [2.0, 0.0, 0.5, 1.0, 5.0]


@pytest.fixture(autouse=True)
def _restore_strict():
    before = bce_ext.is_strict()
    yield
    bce_ext.set_strict(before)


def probabilities(shape, dtype=torch.float32, device=CUDA_DEVICE, low=0.01, high=0.99, seed=0):
    """Random values in [low, high], never exactly 0 or 1 (and never all zeros)."""
    gen = torch.Generator().manual_seed(seed)
    values = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)
    return values.to(dtype).to(device)


def inputs(loss, shape, dtype=torch.float32, device=CUDA_DEVICE, seed=0):
    """The loss's input: probabilities in [0.01, 0.99] for BCE, logits in [-8, 8] for the others."""
    if loss is BCE:
        return probabilities(shape, dtype, device, seed=seed)
    return probabilities(shape, dtype, device, low=-8.0, high=8.0, seed=seed)


def extras(loss, shape, device=CUDA_DEVICE, seed=0, dtype=torch.float32):
    """The loss's other broadcast tensors (pos_weight: positive, in [0.5, 3])."""
    return {name: probabilities(shape, dtype, device, low=0.5, high=3.0, seed=seed + 1000)
            for name in loss.extras}


def weight_of(loss, shape, dtype=torch.float32, device=CUDA_DEVICE, low=0.01, high=0.99, seed=0):
    """A weight for the losses that take one (probabilities(...)); None for the focal loss."""
    if not loss.takes_weight:
        return None
    return probabilities(shape, dtype, device, low=low, high=high, seed=seed)


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
# BCE's bad values: NaN by default, no device-side assert; strict mode raises the CPU's messages.

def bad_pair(dtype, bad_input_at=None, bad_target_at=None, n=1000):
    x = probabilities((n,), dtype, device="cpu", seed=1)
    t = probabilities((n,), dtype, device="cpu", seed=2)
    if bad_input_at is not None:
        x[bad_input_at] = 1.5
    if bad_target_at is not None:
        t[bad_target_at] = float("nan")
    return x, t


@needs_cuda
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bad_values_give_nan_then_next_call_works(dtype, smoothing):
    """Each bad element (x or t outside [0, 1], NaN, inf) gives NaN and only it; the range check is
    of the target as given, before label smoothing."""
    x, t = bad_pair(dtype, bad_input_at=[3, 700], bad_target_at=[10])
    x[20] = -0.25
    t[30] = 2.0
    t[40] = float("inf")
    t[50] = -0.0  # in range
    bad = torch.zeros(x.numel(), dtype=torch.bool)
    bad[[3, 700, 10, 20, 30, 40]] = True
    xc, tc = x.to(CUDA_DEVICE), t.to(CUDA_DEVICE)
    none = bce_ext.binary_cross_entropy(xc, tc, reduction="none", label_smoothing=smoothing)
    assert torch.isnan(none.cpu()[bad]).all()
    # The good elements are untouched by their bad neighbours.
    expected = truth(x[~bad], t[~bad], reduction="none", label_smoothing=smoothing)[0]
    assert_near_truth(none.cpu()[~bad], expected, dtype)
    for reduction in ("mean", "sum"):
        out = bce_ext.binary_cross_entropy(xc, tc, reduction=reduction, label_smoothing=smoothing)
        assert torch.isnan(out).item()
    if CUDA:
        torch.cuda.synchronize()  # a device-side assert would surface here
    good_x, good_t = probabilities((64,), dtype, seed=3), probabilities((64,), dtype, seed=4)
    assert_near_truth(bce_ext.binary_cross_entropy(good_x, good_t), truth(good_x, good_t)[0], dtype)


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
        bce_ext.binary_cross_entropy(x.to(CUDA_DEVICE), t.to(CUDA_DEVICE), reduction=reduction)
    # After the error: a good call works, in strict mode and out of it.
    good_x, good_t = probabilities((100,), seed=5), probabilities((100,), seed=6)
    assert_near_truth(bce_ext.binary_cross_entropy(good_x, good_t, reduction=reduction),
                      truth(good_x, good_t, reduction=reduction)[0], torch.float32)
    bce_ext.set_strict(False)
    assert_near_truth(bce_ext.binary_cross_entropy(good_x, good_t, reduction=reduction),
                      truth(good_x, good_t, reduction=reduction)[0], torch.float32)


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
    assert_near_truth(bce_ext.binary_cross_entropy(x, t), truth(x, t)[0], torch.float32)


@needs_cuda
@pytest.mark.parametrize("loss", [BCE_WITH_LOGITS, FOCAL], ids=repr)
def test_strict_mode_does_not_touch_the_logits_loss_nor_its_capture(loss):
    """The logits losses make no range check (as PyTorch and torchvision): strict mode neither
    raises nor synchronises for them, so they can be captured in strict mode too; a NaN logit gives
    NaN."""
    x = inputs(loss, (300,), seed=7)
    t = probabilities((300,), seed=8)
    bad = x.clone()
    bad[5] = float("nan")
    bce_ext.set_strict(True)
    assert torch.isnan(loss.ours(bad, t)).item()
    value = loss.ours(x, t)  # warm-up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = loss.ours(x, t)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, value)


# ---------------------------------------------------------------------------------------------
# Autocast: the logits loss as PyTorch's (float32); BCE beyond PyTorch, which refuses it under
# CUDA autocast: computed in float32; the focal loss (which torchvision's formula leaves to its ops'
# autocast rules) computed in float32 as well.

@needs_cuda
@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@all_loss_ids
def test_autocast_computes_in_float32(loss, amp_dtype, reduction):
    x = inputs(loss, (33, 17), amp_dtype).requires_grad_()
    t = probabilities((33, 17), amp_dtype, seed=1)
    ex = extras(loss, (17,), dtype=amp_dtype)
    with torch.autocast("cuda", dtype=amp_dtype):
        out = loss.ours(x, t, reduction=reduction, **ex)
    assert out.dtype == torch.float32
    # The oracle: PyTorch's float32 loss on the upcast inputs (the focal loss: torchvision's
    # formula in float64, rounded to float32 once; in float32 its 1 - p_t cancels).
    xf = x.detach().float().requires_grad_()
    if loss is FOCAL:
        xf = x.detach().double().requires_grad_()
    expected = loss.theirs(xf, t.to(xf.dtype), reduction=reduction,
                           **{k: v.float() for k, v in ex.items()})
    torch.testing.assert_close(out, expected.float(), rtol=1e-5, atol=1e-6)
    grad = torch.rand_like(out)
    out.backward(grad)
    expected.backward(grad.to(expected.dtype))
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
@all_loss_ids
def test_bitwise_reproducible(loss, dtype, n):
    """Repeats of every reduction and of both gradients give the same bits, in default and in
    strict mode (one grid per device and N: strict mode is another kernel, not another order)."""
    x, t = inputs(loss, (n,), dtype, seed=8), probabilities((n,), dtype, seed=9)
    w = weight_of(loss, (n,), dtype, seed=10)
    ex = extras(loss, (n,), dtype=dtype)
    for reduction in REDUCTIONS:
        first = loss.ours(x, t, w, reduction=reduction, **ex)
        for strict in (False, True, False):
            bce_ext.set_strict(strict)
            for _ in range(20 // 3 + 1):
                assert torch.equal(loss.ours(x, t, w, reduction=reduction, **ex), first)
        bce_ext.set_strict(False)
        # A large float16 sum overflows to inf, as PyTorch's would: only the mean meets the oracle.
        if reduction == "mean":
            assert_near_truth(first, truth(x, t, w, reduction, None, loss, **ex)[0], dtype)
    grads = [ours(x, t, w, loss=loss, **ex)[1:] for _ in range(10)]
    assert all(torch.equal(grads[0][0], g[0]) and torch.equal(grads[0][1], g[1]) for g in grads)


@needs_cuda
@all_loss_ids
def test_large_float32_mean_is_accurate(loss):
    gen = torch.Generator(CUDA_DEVICE).manual_seed(11)
    x = torch.rand(LARGE_N, device=CUDA_DEVICE, generator=gen)
    if loss is not BCE:
        x = 16 * x - 8
    t = torch.rand(LARGE_N, device=CUDA_DEVICE, generator=gen)
    ours = loss.ours(x, t).double()
    exact = loss.theirs(x.double(), t.double())
    assert abs((ours - exact) / exact).item() < 1e-6
    ours_sum = loss.ours(x, t, reduction="sum").double()
    assert abs((ours_sum - exact * LARGE_N) / (exact * LARGE_N)).item() < 1e-6


def ulps(value, reference):
    """|value - reference| in float32 ulps of the float64 reference, element by element."""
    reference = reference.double()
    exponent = torch.frexp(reference.abs().clamp_min(2.0 ** -126))[1]
    return (value.cpu().double() - reference).abs() / torch.ldexp(
        torch.ones_like(reference), exponent - 24)


@needs_cuda
@all_loss_ids
def test_device_math_sweep(loss):
    """The CUDA Math's own functions where they run (cuda_math.cuh: the reciprocal of MUFU.RCP and
    a Newton step, the log1p polynomial; tests/cuda_math_host.cpp checks the same operations on
    the host, the hardware's reciprocal aside): every logits loss in float32 over logits of every
    magnitude and both signs, targets 0, 0.3 and 1, the loss and both gradients against the
    float64 truth. Where bce_ext's CPU kernels are within the float32 tolerances, so is CUDA; and
    where the CPU is within 8 ulp of the truth (the well-conditioned elements: elsewhere the
    formula's own cancellation decides, the same on both devices) CUDA is within 16."""
    if loss is BCE:
        pytest.skip("BCE takes probabilities: its logs are the host-checked ones")
    magnitudes = torch.logspace(-30, 2, 2**15, dtype=torch.float64)
    x = torch.cat([-magnitudes.flip(0), torch.zeros(1, dtype=torch.float64), magnitudes,
                   torch.linspace(-20, 20, 2**17, dtype=torch.float64)]).float()
    tol = TRUTH_TOLERANCES[torch.float32]
    for target in (0.0, 0.3, 1.0):
        t = torch.full_like(x, target)
        g = torch.ones_like(x)
        ref = truth(x, t, None, "none", g, loss)
        cpu = ours(x, t, None, "none", g, loss)
        cuda = ours(x.cuda(), t.cuda(), None, "none", g.cuda(), loss)
        for name, mine, theirs, exact in zip(("loss", "grad_input", "grad_target"), cuda, cpu, ref):
            where = f"{name}, target {target}"
            mine = mine.cpu().double()
            cpu_close = torch.isclose(theirs.double(), exact, equal_nan=True, **tol)
            assert cpu_close.double().mean() > 0.99, where  # the sweep is not vacuous
            bad = cpu_close & ~torch.isclose(mine, exact, equal_nan=True, **tol)
            assert not bad.any(), f"{where}: {int(bad.sum())} elements, first x = {x[bad][0]}"
            conditioned = ulps(theirs, exact) <= 8
            worst = ulps(mine, exact)[conditioned].max().item()
            assert worst <= 16, f"{where}: {worst:.1f} ulp where the CPU is within 8"


# ---------------------------------------------------------------------------------------------
# Memory paths and layouts, against the float64 oracle and bce_ext's own CPU kernels.

def check_against_oracles(x, t, weight=None, grad_none=None, loss=BCE, **kw):
    """bce_ext on x's device against float64 PyTorch and against bce_ext on the CPU, for every
    reduction, loss and both gradients."""
    dtype = x.dtype
    if grad_none is None:
        grad_none = probabilities(x.shape, dtype, device=x.device, seed=99)
    for reduction in REDUCTIONS:
        grad = grad_none if reduction == "none" else None
        out, gx, gt = ours(x, t, weight, reduction, grad, loss, **kw)
        ref, ref_gx, ref_gt = truth(x, t, weight, reduction, grad, loss, **kw)
        if reduction == "sum" and ref.abs() > torch.finfo(dtype).max:
            assert torch.isinf(out)  # a float16 sum beyond its range, as PyTorch's
        else:
            assert_near_truth(out, ref, dtype)
        assert_near_truth(gx, ref_gx, dtype)
        assert_near_truth(gt, ref_gt, dtype)
        cpu_kw = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        cpu = ours(x.cpu(), t.cpu(), None if weight is None else weight.cpu(),
                   reduction, None if grad is None else grad.cpu(), loss, **cpu_kw)
        for mine, theirs in zip((out, gx, gt), cpu):
            assert_near_truth(mine, theirs, dtype)
        if reduction == "none":
            # Layout as PyTorch: empty_like(input) (the logits loss: of the target); the focal
            # loss's as BCE's (docs/behaviour.md, 3; csrc/loss_prepare.cpp).
            like = t if loss is BCE_WITH_LOGITS else x
            assert out.stride() == torch.empty_like(like).stride()
            assert gx.stride() == torch.empty_like(x).stride()


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1031, 65_543])
@all_loss_ids
def test_vector_and_unaligned_paths(loss, dtype, n):
    # Offset by one element: no pointer is 16-byte aligned. Element-wise kernels peel elements until
    # most operands are aligned; the reduction reads each misaligned operand element by element.
    base_x = inputs(loss, (n + 1,), dtype, seed=13)
    base_t = probabilities((n + 1,), dtype, seed=14)
    base_g = probabilities((n + 1,), dtype, seed=15)
    unaligned = (base_x[1:], base_t[1:], base_g[1:])
    aligned = tuple(v.clone() for v in unaligned)
    assert aligned[0].data_ptr() % 16 == 0 and unaligned[0].data_ptr() % 16 != 0
    for x, t, g in (aligned, unaligned):
        check_against_oracles(x, t, grad_none=g, loss=loss)
    # Only x misaligned (t, g aligned), and only the gradient misaligned.
    check_against_oracles(unaligned[0], aligned[1], grad_none=aligned[2], loss=loss)
    check_against_oracles(aligned[0], aligned[1], grad_none=unaligned[2], loss=loss)
    # Both paths compute the same function, to the bit (the reduction adds in the same order).
    for reduction in REDUCTIONS:
        a = loss.ours(aligned[0], aligned[1], reduction=reduction)
        u = loss.ours(unaligned[0], unaligned[1], reduction=reduction)
        assert torch.equal(a, u)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@all_loss_ids
def test_layouts(loss, dtype):
    # Transposed.
    x = inputs(loss, (37, 53), dtype, seed=16).t()
    t = probabilities((53, 37), dtype, seed=17)
    check_against_oracles(x, t, grad_none=probabilities((37, 53), dtype, seed=18).t(), loss=loss)
    # Sliced with a step (not dense: copied into kernel order).
    x = inputs(loss, (40, 90), dtype, seed=19)[:, ::3]
    t = probabilities((40, 30), dtype, seed=20)
    check_against_oracles(x, t, loss=loss)
    # channels_last.
    x = inputs(loss, (2, 3, 9, 11), dtype, seed=21).to(memory_format=torch.channels_last)
    t = probabilities((2, 3, 9, 11), dtype, seed=22)
    check_against_oracles(x, t, grad_none=probabilities((2, 3, 9, 11), dtype, seed=23), loss=loss)
    # Expanded (stride 0) input and target, and an expanded incoming gradient.
    x = inputs(loss, (1, 77), dtype, seed=24).expand(5, 77)
    t = probabilities((5, 1), dtype, seed=25).expand(5, 77)
    grad = torch.ones((), dtype=dtype, device=CUDA_DEVICE).expand(5, 77)
    check_against_oracles(x, t, grad_none=grad, loss=loss)
    # 0-dim.
    check_against_oracles(inputs(loss, (), dtype, seed=26), probabilities((), dtype, seed=27),
                          loss=loss)


@needs_cuda
@pytest.mark.parametrize("weight_shape",
                         [(), (1,), (11,), (7, 1), (1, 7, 11), (3, 1, 11), (3, 7, 11)])
@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.float64])
@loss_ids
def test_broadcast_weights(loss, weight_shape, weight_dtype):
    """Weights (and, for the logits loss, pos_weights of the same shapes, alone and with a weight)
    read through their broadcast tables."""
    x = inputs(loss, (3, 7, 11), seed=28)
    t = probabilities((3, 7, 11), seed=29)
    w = probabilities(weight_shape, weight_dtype, low=0.0, high=3.0, seed=30)
    check_against_oracles(x, t, weight=w, loss=loss)
    for name in loss.extras:
        pw = probabilities(weight_shape, low=0.5, high=3.0, seed=31)
        check_against_oracles(x, t, loss=loss, **{name: pw})
        check_against_oracles(x, t, weight=w, loss=loss, **{name: pw})
    # The result keeps the input's dtype whatever the weight's.
    assert loss.ours(x, t, w).dtype == x.dtype


@needs_cuda
@loss_ids
def test_weight_table_with_inner_and_period(loss):
    # A (C, 1) weight: each value repeats over a row (inner > 1) and the rows cycle (period > 1), so
    # the kernels' stepping of the weight index (by one element, and by the grid's stride) runs on a
    # long run; a (C,) pos_weight steps its own index (inner 1, period C) beside it. Beyond 2^31
    # elements: test_more_than_2_31_elements.
    x = inputs(loss, (1000, 3001), seed=31)
    t = probabilities((1000, 3001), seed=32)
    w = probabilities((1000, 1), low=0.5, high=2.0, seed=33)
    ex = extras(loss, (3001,), seed=34)
    for reduction in REDUCTIONS:
        assert_near_truth(loss.ours(x, t, w, reduction=reduction, **ex),
                          truth(x, t, w, reduction, None, loss, **ex)[0], torch.float32)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bce_boundary_values(dtype):
    # x and t at 0 and 1: the -100 clamp, the 1e-12 epsilon, the +-inf target gradient.
    values = torch.tensor([0.0, 1.0, 0.5, 1e-7, 1 - 1e-7], dtype=dtype)
    x, t = torch.cartesian_prod(values, values).unbind(1)
    x, t = x.contiguous(), t.contiguous()
    for reduction in ("none", "sum"):
        grad = torch.ones_like(x) if reduction == "none" else None
        out, gx, gt = ours(x.to(CUDA_DEVICE), t.to(CUDA_DEVICE), reduction=reduction,
                           g=None if grad is None else grad.to(CUDA_DEVICE))
        cpu_out, cpu_gx, cpu_gt = ours(x, t, reduction=reduction, g=grad)
        assert_near_truth(out, cpu_out, dtype)
        assert_near_truth(gx, cpu_gx, dtype)
        assert_near_truth(gt, cpu_gt, dtype)
        expected = F.binary_cross_entropy(x, t, reduction=reduction)
        assert_near_truth(out, expected, dtype)


# ---------------------------------------------------------------------------------------------
# CUDA graphs, empty inputs, devices.

@needs_cuda
@pytest.mark.parametrize("reduction", REDUCTIONS)
@all_loss_ids
def test_cuda_graph_capture_forward_backward(loss, reduction):
    shape = (257, 129)
    x = inputs(loss, shape, seed=34).requires_grad_()
    t = probabilities(shape, seed=35)
    w = weight_of(loss, (129,), low=0.5, high=2.0, seed=36)
    # Label smoothing, or (the focal losses) scalars other than the defaults.
    ex = dict(extras(loss, (129,), seed=36),
              **(dict(label_smoothing=0.1) if loss.smoothing else dict(loss.param_cases[0])))
    grad = probabilities(shape, seed=37) if reduction == "none" else None

    def step():
        out = loss.ours(x, t, w, reduction=reduction, **ex)
        out.backward(grad)
        return out

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
        static_out = step()
    for seed in (38, 39):
        with torch.no_grad():
            x.copy_(inputs(loss, shape, seed=seed))
            t.copy_(probabilities(shape, seed=seed + 100))
        graph.replay()
        torch.cuda.synchronize()
        replayed_out, replayed_grad = static_out.clone(), x.grad.clone()
        eager_out, eager_grad, _ = ours(x, t, w, reduction, grad, loss, **ex)
        assert torch.equal(replayed_out, eager_out)
        assert torch.equal(replayed_grad, eager_grad)
        assert_near_truth(replayed_out, truth(x, t, w, reduction, None, loss, **ex)[0],
                          torch.float32)


@needs_cuda
@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0, 2)])
@pytest.mark.parametrize("dtype", DTYPES)
@all_loss_ids
def test_empty_inputs(loss, shape, dtype):
    x = torch.empty(shape, dtype=dtype, device=CUDA_DEVICE, requires_grad=True)
    t = torch.empty(shape, dtype=dtype, device=CUDA_DEVICE)
    mean = loss.ours(x, t)
    assert mean.shape == () and mean.dtype == dtype and torch.isnan(mean).item()
    total = loss.ours(x, t, reduction="sum")
    assert total.shape == () and total.item() == 0
    none = loss.ours(x, t, reduction="none")
    assert none.shape == shape and none.device == x.device
    mean.backward()
    assert x.grad.shape == shape


@needs_cuda
@all_loss_ids
def test_mixed_devices_raise(loss):
    x = inputs(loss, (4,))
    t = probabilities((4,), device="cpu")
    with pytest.raises(RuntimeError, match="cuda.*cpu|cpu.*cuda"):
        loss.ours(x, t)
    if loss.takes_weight:
        with pytest.raises(RuntimeError, match="cuda.*cpu|cpu.*cuda"):
            loss.ours(x, t.to(CUDA_DEVICE), torch.ones(4))
    for name in loss.extras:
        with pytest.raises(RuntimeError, match="cuda.*cpu|cpu.*cuda"):
            loss.ours(x, t.to(CUDA_DEVICE), **{name: torch.ones(4)})


@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@all_loss_ids
def test_second_device(loss):
    """Inputs on cuda:1 while cuda:0 is current: kernels run there, outputs stay there, strict mode
    synchronises the right device, and cuda:0 is untouched."""
    x = inputs(loss, (1000, 13), device="cuda:1")
    t = probabilities((1000, 13), device="cuda:1", seed=1)
    w = weight_of(loss, (13,), device="cuda:1", low=0.5, high=2.0, seed=2)
    ex = extras(loss, (13,), device="cuda:1")
    with torch.cuda.device(0):
        for reduction in REDUCTIONS:
            grad = probabilities(x.shape, device="cuda:1", seed=3) if reduction == "none" else None
            out, gx, gt = ours(x, t, w, reduction, grad, loss, **ex)
            assert out.device == x.device and gx.device == x.device and gt.device == x.device
            ref, ref_gx, ref_gt = truth(x, t, w, reduction, grad, loss, **ex)
            assert_near_truth(out, ref, torch.float32)
            assert_near_truth(gx, ref_gx, torch.float32)
            assert_near_truth(gt, ref_gt, torch.float32)
        if loss is BCE:
            bce_ext.set_strict(True)
            bad = x.clone()
            bad[5, 3] = 2.0
            with pytest.raises(RuntimeError, match=INPUT_MESSAGE):
                bce_ext.binary_cross_entropy(bad, t)
            assert_near_truth(bce_ext.binary_cross_entropy(x, t), truth(x, t)[0], torch.float32)
        assert torch.cuda.current_device() == 0


# ---------------------------------------------------------------------------------------------
# Argument checks come before the device guard; PyTorch's messages on each device.

@needs_cuda
@all_loss_ids
def test_cpu_operand_among_cuda_ones_gives_the_device_message(loss):
    """A CPU input with a CUDA target (or weight, or gradient) is dispatched to the CUDA kernel,
    which must check devices before it guards one: PyTorch's message, not CUDAGuard's."""
    cpu = probabilities((8,), device="cpu")
    gpu = cpu.cuda()
    message = "Expected all tensors to be on the same device"
    with pytest.raises(RuntimeError, match=message):
        loss.theirs(cpu, gpu)  # what PyTorch says
    forward, backward = loss.forward_op, loss.backward_op
    calls = [
        lambda: loss.ours(cpu, gpu),
        lambda: loss.ours(gpu, cpu),
        lambda: forward(cpu, gpu),
        lambda: backward(gpu.sum(), cpu, cpu, reduction=1, output_mask=[True, False]),
        lambda: backward(torch.ones(()), cpu, gpu, reduction=1, output_mask=[True, True]),
    ]
    if loss.takes_weight:
        calls.append(lambda: loss.ours(cpu, cpu, weight=gpu))
    for call in calls:
        with pytest.raises(RuntimeError, match=message):
            call()
        assert_near_truth(loss.ours(gpu, gpu), truth(gpu, gpu, loss=loss)[0], torch.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_unsupported_dtype_names_pytorchs_kernel(device, dtype):
    """PyTorch's message names its kernel's dispatch label: binary_cross_entropy on the CPU,
    binary_cross_entropy_out_cuda on CUDA. The backward op gives the functional's message
    (tests/test_bad_input.py), so the same."""
    x = torch.ones(3, device=device).to(dtype)
    with pytest.raises(NotImplementedError) as pytorch:
        torch.ops.aten.binary_cross_entropy(x, x, None, 1)
    expected = str(pytorch.value).splitlines()[0]
    for call in (lambda: torch.ops.bce_ext.binary_cross_entropy(x, x, None, 1),
                 lambda: torch.ops.bce_ext.binary_cross_entropy_backward(x, x, x, None, 1,
                                                                         [True, False])):
        with pytest.raises(NotImplementedError) as mine:
            call()
        assert str(mine.value).splitlines()[0] == expected


# ---------------------------------------------------------------------------------------------
# 'mean' in the backward: PyTorch's CUDA multiplies by 1/N (its CPU divides by N).

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_backward_matches_pytorch_to_the_bit(device, dtype, weighted):
    """BCE's grad_input as PyTorch's kernel of the same device: g * (x - t) / max((1 - x) x, eps),
    times the weight, then the mean's scale (CUDA: times 1/N rounded first; CPU: / N). N = 999 is
    not a power of two, so the two scalings differ in the last bit for many elements."""
    x = probabilities((27, 37), dtype, device=device, seed=40)
    t = probabilities((27, 37), dtype, device=device, seed=41)
    w = probabilities((37,), dtype, device=device, low=0.5, high=2.0, seed=42) if weighted else None
    for reduction in (0, 1, 2):
        g = (probabilities(x.shape, dtype, device=device, seed=43) if reduction == 0
             else torch.tensor(0.75, dtype=dtype, device=device))
        ours, _ = torch.ops.bce_ext.binary_cross_entropy_backward(g, x, t, w, reduction,
                                                                  [True, False])
        theirs = torch.ops.aten.binary_cross_entropy_backward(g, x, t, w, reduction)
        assert torch.equal(ours, theirs), (reduction, (ours - theirs).abs().max())


# ---------------------------------------------------------------------------------------------
# Determinism: the same values give the same bits whatever the alignment and the kernel variant.

def _mixed_targets(n, dtype, device, seed):
    """Targets whose first half is hard (0 or 1: BCE's one-log path) and the rest soft."""
    t = probabilities((n,), dtype, device=device, seed=seed)
    t[: n // 2] = t[: n // 2].round()
    return t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@all_loss_ids
def test_reduction_bits_do_not_depend_on_alignment_or_variant(device, loss, dtype):
    """(The focal loss has no weight, pos_weight nor label smoothing: its variants are alignments
    and strict mode; test_focal_paths_are_deterministic has its alpha and gamma.)"""
    n = 100_003
    base = [inputs(loss, (n + 1,), dtype, device=device, seed=50),
            _mixed_targets(n + 1, dtype, device, 51),
            probabilities((n + 1,), dtype, device=device, low=0.5, high=2.0, seed=52)]
    misaligned = [v[1:] for v in base]  # one element off every 16-byte boundary
    aligned = [v.clone() for v in misaligned]
    ones = torch.ones(n, dtype=dtype, device=device)
    weighted = loss.takes_weight
    for reduction in ("mean", "sum"):
        def f(x, t, w=None, **kw):
            return loss.ours(x, t, w, reduction=reduction, **kw)  # noqa: B023 (used in this iteration)
        ref = f(aligned[0], aligned[1])
        ref_w = f(aligned[0], aligned[1], aligned[2]) if weighted else ref
        for xi, ti, wi in [(0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1)]:  # which are misaligned
            x = (aligned, misaligned)[xi][0]
            t = (aligned, misaligned)[ti][1]
            w = (aligned, misaligned)[wi][2] if weighted else None
            assert torch.equal(f(x, t), ref)
            assert torch.equal(f(x, t, w), ref_w)
        # Other kernel variants: a weight of ones (weighted kernel), a pos_weight of ones (the
        # pos_weight kernel), label smoothing 0 given, strict mode.
        if weighted:
            assert torch.equal(f(misaligned[0], aligned[1], ones), ref)
            if loss.smoothing:
                assert torch.equal(f(misaligned[0], aligned[1], label_smoothing=0.0), ref)
        for name in loss.extras:
            assert torch.equal(f(misaligned[0], aligned[1], **{name: ones}), ref)
        bce_ext.set_strict(True)
        assert torch.equal(f(misaligned[0], misaligned[1]), ref)
        assert torch.equal(f(aligned[0], aligned[1], aligned[2] if weighted else None), ref_w)
        bce_ext.set_strict(False)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@all_loss_ids
def test_elementwise_bits_do_not_depend_on_alignment(device, loss, dtype):
    """'none' and both gradients, with operands at every offset from a 16-byte boundary (the
    element-wise kernels peel to the alignment of most operands and read the rest one by one)."""
    n = 1000
    vec = 16 // torch.empty((), dtype=dtype).element_size()
    x = inputs(loss, (n + vec,), dtype, device=device, seed=53)
    t = _mixed_targets(n + vec, dtype, device, 54)
    g = probabilities((n + vec,), dtype, device=device, seed=55)
    ref = (x[:n].clone(), t[:n].clone(), g[:n].clone())
    backward = loss.backward_op
    expected_out = loss.ours(ref[0], ref[1], reduction="none")
    expected_grads = backward(ref[2], ref[0], ref[1], reduction=0, output_mask=[True, True])
    for offsets in [(1, 1, 1), (1, 0, 0), (0, 3 % vec, 1), (vec - 1, 1, 0)]:
        xo, to, go = (v[o:o + n] for v, o in zip((x, t, g), offsets))
        for view, values in zip((xo, to, go), ref):
            view.copy_(values)
        assert torch.equal(loss.ours(xo, to, reduction="none"), expected_out)
        grads = backward(go, xo, to, reduction=0, output_mask=[True, True])
        assert torch.equal(grads[0], expected_grads[0]) and torch.equal(grads[1], expected_grads[1])


# ---------------------------------------------------------------------------------------------
# Gradients asked for one at a time; weights of any layout.

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", [0, 1, 2])
@all_loss_ids
def test_backward_target_gradient_only(device, loss, dtype, reduction):
    """output_mask (False, True): no grad_input, and grad_target as with both asked for."""
    x = inputs(loss, (1025,), dtype, device=device, seed=56)[1:]
    t = probabilities((1024,), dtype, device=device, seed=57)
    w = weight_of(loss, (1024,), dtype, device=device, low=0.5, high=2.0, seed=58)
    ex = extras(loss, (1024,), device=device, dtype=dtype)
    g = (probabilities((1024,), dtype, device=device, seed=59) if reduction == 0
         else torch.tensor(0.5, dtype=dtype, device=device))
    op = loss.backward_op

    def call(mask):
        if not loss.takes_weight:  # the focal op: no weight argument
            return op(g, x, t, reduction=reduction, output_mask=mask, **ex)
        return op(g, x, t, w, reduction=reduction, output_mask=mask, **ex)

    gi, gt = call([False, True])
    assert gi.numel() == 0 and gt.shape == x.shape
    both = call([True, True])
    assert torch.equal(gt, both[1])
    assert torch.equal(call([True, False])[0], both[0])
    name = ["none", "mean", "sum"][reduction]
    _, ref_gt = truth(x, t, w, name, g if reduction == 0 else None, loss, **ex)[1:]
    if reduction != 0:
        ref_gt = ref_gt * 0.5
    assert_near_truth(gt, ref_gt, dtype)


def _weights_of_other_layouts(device):
    """(input shape, weight) pairs whose weight is not a contiguous tensor in the input's order."""
    cl = probabilities((2, 3, 5, 7), device=device, low=0.5, high=2.0, seed=60)
    return [
        ((11, 13), probabilities((13, 11), device=device, low=0.5, high=2.0, seed=61).t()),
        ((2, 3, 5, 7), cl.to(memory_format=torch.channels_last)),
        ((3, 5, 7), probabilities((5, 14), device=device, low=0.5, high=2.0, seed=62)[:, ::2]),
        ((6, 9), probabilities((6, 1), device=device, low=0.5, high=2.0, seed=63).expand(6, 9)),
        ((4, 6, 5), probabilities((6, 1), device=device, low=0.5, high=2.0, seed=64).t()[0:1].t()),
        ((4, 5, 6), probabilities((6, 5), device=device, low=0.5, high=2.0, seed=65).t()),
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(6))
@loss_ids
def test_weights_of_other_layouts(device, loss, case):
    """Weights (and pos_weights) that are not contiguous in the input's order: read in memory
    order as tables, or materialised."""
    shape, w = _weights_of_other_layouts(device)[case]
    x = inputs(loss, shape, device=device, seed=66)
    t = probabilities(shape, device=device, seed=67)
    other = x.to(memory_format=torch.channels_last) if x.dim() == 4 else x.mT.contiguous().mT
    for xs in (x, other):  # the input's layout sets the kernels' element order
        for reduction in REDUCTIONS:
            grad = probabilities(shape, device=device, seed=68) if reduction == "none" else None
            for weight, ex in [(w, {})] + [(None, {name: w}) for name in loss.extras]:
                out, gx, gt = ours(xs, t, weight, reduction, grad, loss, **ex)
                ref, ref_gx, ref_gt = truth(xs, t, weight, reduction, grad, loss, **ex)
                assert_near_truth(out, ref, torch.float32)
                assert_near_truth(gx, ref_gx, torch.float32)
                assert_near_truth(gt, ref_gt, torch.float32)


# ---------------------------------------------------------------------------------------------
# Strict mode: half types with the bad element outside the 16-byte groups; a capture elsewhere.

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("where", ["tail", "head", "group"])
def test_strict_half_types_bad_element_outside_the_groups(device, dtype, reduction, where):
    """n = 8 * 37 + 5 elements, one element off alignment: the element-wise kernels do the first
    seven one by one (the head), every kernel does the last few one by one (the tail). A bad element
    in either raises as one inside a group does; the CPU raises whatever the mode."""
    n = 8 * 37 + 5
    index = {"tail": n - 2, "head": 0, "group": 9}[where]
    bce_ext.set_strict(True)
    for which, message in (("input", INPUT_MESSAGE), ("target", TARGET_MESSAGE)):
        x = probabilities((n + 1,), dtype, device=device, seed=69)[1:]
        t = probabilities((n + 1,), dtype, device=device, seed=70)[1:]
        (x if which == "input" else t)[index] = 1.5 if which == "input" else float("nan")
        with pytest.raises(RuntimeError, match=message):
            bce_ext.binary_cross_entropy(x, t, reduction=reduction)
        good = probabilities((n,), dtype, device=device, seed=71)
        t_good = t.nan_to_num(0.5)
        assert_near_truth(bce_ext.binary_cross_entropy(good, t_good, reduction=reduction),
                          truth(good, t_good, reduction=reduction)[0], dtype)


@needs_cuda
def test_strict_mode_while_another_stream_captures():
    """Strict mode while this thread captures on another stream: CUDA refuses strict mode's
    synchronisation (cudaErrorStreamCaptureUnsupported, seen on an H200) and so invalidates that
    capture; the caller gets a RuntimeError, not a dead context: strict and default calls work
    after it. (Strict mode on the capturing stream itself gets bce_ext's own message: the test
    above.)"""
    x, t = probabilities((4096,), seed=72), probabilities((4096,), seed=73)
    bad = x.clone()
    bad[4000] = 1.5
    other = torch.cuda.Stream()
    bce_ext.set_strict(True)
    try:
        graph = torch.cuda.CUDAGraph()
        with pytest.raises(RuntimeError):
            with torch.cuda.graph(graph):
                x * 2
                with torch.cuda.stream(other):
                    bce_ext.binary_cross_entropy(x, t)
        torch.cuda.synchronize()
        assert_near_truth(bce_ext.binary_cross_entropy(x, t), truth(x, t)[0], torch.float32)
        with pytest.raises(RuntimeError, match=INPUT_MESSAGE):
            bce_ext.binary_cross_entropy(bad, t)
    finally:
        bce_ext.set_strict(False)
    assert_near_truth(bce_ext.binary_cross_entropy(x, t), truth(x, t)[0], torch.float32)


@needs_cuda
def test_first_call_ever_inside_a_graph_capture():
    """In a fresh process whose first bce_ext call is being captured: no query or allocation of the
    host code may break the capture (the grid comes from a constant per SM, not an occupancy query;
    kernels load lazily during a capture on CUDA 12.3+ drivers). Every loss, forward and
    backward (the focal loss against torchvision's formula, tests/references.py's)."""
    script = textwrap.dedent("""
        import functools
        import torch, bce_ext
        import torch.nn.functional as F
        from test_sigmoid_focal_loss import sigmoid_focal_loss_formula

        focal = functools.partial(sigmoid_focal_loss_formula, alpha=0.75, gamma=0.5,
                                  reduction="mean")

        x = torch.rand(5000, device="cuda", requires_grad=True)
        t = torch.rand(5000, device="cuda")
        pw = torch.rand(5000, device="cuda") + 0.5
        (x.detach() * 2).sum().item()  # CUDA is up; bce_ext has not run yet
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = bce_ext.binary_cross_entropy(x, t)
            grad, = torch.autograd.grad(loss, x)
            logits_loss = bce_ext.binary_cross_entropy_with_logits(x, t, pos_weight=pw)
            logits_grad, = torch.autograd.grad(logits_loss, x)
            focal_loss = bce_ext.sigmoid_focal_loss(x, t, alpha=0.75, gamma=0.5, reduction="mean")
            focal_grad, = torch.autograd.grad(focal_loss, x)
        for _ in range(2):
            with torch.no_grad():
                x.uniform_(0.01, 0.99)
            graph.replay()
            torch.cuda.synchronize()
            xd = x.detach().double().requires_grad_()
            for fn, out, g, kw in ((F.binary_cross_entropy, loss, grad, {}),
                                   (F.binary_cross_entropy_with_logits, logits_loss, logits_grad,
                                    {"pos_weight": pw.double()}),
                                   (focal, focal_loss, focal_grad, {})):
                ref = fn(xd, t.double(), **kw)
                ref_grad, = torch.autograd.grad(ref, xd)
                assert abs(out.item() - ref.item()) <= 1e-5 * abs(ref.item()), (out, ref)
                torch.testing.assert_close(g.double(), ref_grad, rtol=1e-5, atol=1e-9)
        print("first capture ok")
    """)
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(bce_ext.__file__)))
    tests_dir = os.path.dirname(os.path.abspath(__file__))  # references.py
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, tests_dir,
                                                      env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "first capture ok" in out.stdout, out.stderr[-3000:]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_nan_default_and_strict_each_followed_by_a_valid_call(device, dtype):
    """Default mode: NaN (CUDA; the CPU raises, as PyTorch). Strict mode: the CPU's message. After
    each, in either mode, a valid call gives the right value."""
    x = probabilities((777,), dtype, device=device, seed=74)
    t = probabilities((777,), dtype, device=device, seed=75)
    bad = x.clone()
    bad[700] = float("nan")
    expected = truth(x, t)[0]
    for strict in (False, True, False, True):
        bce_ext.set_strict(strict)
        if device == "cuda" and not strict:
            assert torch.isnan(bce_ext.binary_cross_entropy(bad, t)).item()
        else:
            with pytest.raises(RuntimeError, match=INPUT_MESSAGE):
                bce_ext.binary_cross_entropy(bad, t)
        for mode in (strict, not strict):
            bce_ext.set_strict(mode)
            assert_near_truth(bce_ext.binary_cross_entropy(x, t), expected, dtype)


# ---------------------------------------------------------------------------------------------
# Training: a whole step in a CUDA graph, another stream, mixed precision.

def _train_step(model, optimizer, loss_fn, x, t):
    optimizer.zero_grad(set_to_none=False)
    out = loss_fn(model(x), t)
    out.backward()
    optimizer.step()
    return out


def _model_and_loss(loss, width):
    """A small model ending in probabilities (BCE) or logits (the logits losses), and its
    module."""
    layers = [torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, width)]
    if loss is BCE:
        layers.append(torch.nn.Sigmoid())
        module = bce_ext.BCELoss(weight=probabilities((width,), low=0.5, high=2.0, seed=76))
    elif loss is FOCAL:
        module = bce_ext.SigmoidFocalLoss(alpha=0.75, gamma=0.5, reduction="mean")
    else:
        module = bce_ext.BCEWithLogitsLoss(
            weight=probabilities((width,), low=0.5, high=2.0, seed=76),
            pos_weight=probabilities((width,), low=0.5, high=3.0, seed=77))
    return torch.nn.Sequential(*layers).cuda(), module


@needs_cuda
@all_loss_ids
def test_training_step_in_a_cuda_graph_replays_with_new_data(loss):
    torch.manual_seed(0)
    model, loss_fn = _model_and_loss(loss, 4)
    eager = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    eager_opt = torch.optim.SGD(eager.parameters(), lr=0.5, momentum=0.9)
    gen = torch.Generator(device="cuda").manual_seed(1)
    batches = [(torch.randn(64, 16, device="cuda", generator=gen),
                torch.rand(64, 4, device="cuda", generator=gen).round()) for _ in range(8)]
    static_x, static_t = batches[0][0].clone(), batches[0][1].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up, as PyTorch's graph recipe asks
        for x, t in batches[:3]:
            _train_step(model, opt, loss_fn, x, t)
            _train_step(eager, eager_opt, loss_fn, x, t)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = _train_step(model, opt, loss_fn, static_x, static_t)
    for x, t in batches[3:]:
        static_x.copy_(x)
        static_t.copy_(t)
        graph.replay()
        eager_out = _train_step(eager, eager_opt, loss_fn, x, t)
        torch.testing.assert_close(static_out, eager_out)
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q)


@needs_cuda
@all_loss_ids
def test_non_default_stream_with_an_event_dependency(loss):
    """Inputs written on one stream, the loss and gradients computed on another that waits for an
    event: the kernels run on the current stream, so the dependency holds (a delay on the writer
    makes a missing one show)."""
    n = 1 << 20
    x = torch.empty(n, device="cuda")
    t = torch.empty(n, device="cuda")
    writer, reader = torch.cuda.Stream(), torch.cuda.Stream()
    written, done = torch.cuda.Event(), torch.cuda.Event()
    gen = torch.Generator(device="cuda").manual_seed(2)
    writer.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(writer):
        torch.cuda._sleep(50_000_000)
        x.uniform_(0.01, 0.99, generator=gen)
        t.uniform_(0.0, 1.0, generator=gen)
        written.record()
    with torch.cuda.stream(reader):
        reader.wait_event(written)
        xr = x.detach().requires_grad_()
        out = loss.ours(xr, t, reduction="sum")
        grad, = torch.autograd.grad(out, xr)
        done.record()
    torch.cuda.current_stream().wait_event(done)
    assert_near_truth(out, truth(x, t, reduction="sum", loss=loss)[0], torch.float32)
    assert_near_truth(grad, truth(x, t, reduction="sum", loss=loss)[1], torch.float32)


@needs_cuda
@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16])
@all_loss_ids
def test_autocast_mixed_precision_training_loop(loss, amp_dtype):
    """A model trained under CUDA autocast with bce_ext's module (and GradScaler for float16): the
    loss is float32, finite, and goes down."""
    torch.manual_seed(3)
    true_w = torch.randn(20, 3, device="cuda")
    layers = [torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3)]
    if loss is BCE:
        layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if loss is FOCAL:
        loss_fn = bce_ext.SigmoidFocalLoss(reduction="mean")
    else:
        loss_fn = bce_ext.BCELoss() if loss is BCE else bce_ext.BCEWithLogitsLoss()
    losses = []
    for _ in range(60):
        x = torch.randn(256, 20, device="cuda")
        t = (x @ true_w > 0).float()
        opt.zero_grad()
        with torch.autocast("cuda", dtype=amp_dtype):
            out = model(x)
            assert out.dtype == amp_dtype
            value = loss_fn(out, t)
        assert value.dtype == torch.float32 and torch.isfinite(value)
        scaler.scale(value).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(value.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), losses


# ---------------------------------------------------------------------------------------------
# Beyond 32-bit indices.

@needs_cuda
@pytest.mark.skipif(HUGE_N <= 0, reason="BCE_EXT_TEST_HUGE_N=0")
@pytest.mark.parametrize("loss,dtype", [(BCE, torch.bfloat16), (BCE, torch.float16),
                                        (BCE_WITH_LOGITS, torch.bfloat16),
                                        (FOCAL, torch.bfloat16)], ids=str)
def test_more_than_2_31_elements(loss, dtype):
    """Above 2^31 elements (BCE_EXT_TEST_HUGE_N) with a (C,) weight (and pos_weight), C prime
    (the focal loss: none, and alpha and gamma other than the defaults): 'sum' (bfloat16 only: a
    float16 sum overflows, as PyTorch's) and 'mean' against float64 references computed in chunks,
    and the elements and gradients of the last rows (whose indices pass 2^31)."""
    cols = 4099
    rows = -(-HUGE_N // cols)
    n = rows * cols
    element = torch.empty((), dtype=dtype).element_size()
    free, _ = torch.cuda.mem_get_info()
    if free < 4 * n * element + (4 << 30):
        pytest.skip(f"needs {(4 * n * element + (4 << 30)) / 2**30:.0f} GiB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(4)
    x = torch.rand((rows, cols), device="cuda", dtype=dtype, generator=gen)
    if loss is not BCE:
        x.mul_(16).sub_(8)
    t = torch.rand((rows, cols), device="cuda", dtype=dtype, generator=gen)
    w = torch.rand((cols,), device="cuda", generator=gen) + 0.5
    ex = {name: (torch.rand((cols,), device="cuda", generator=gen) + 0.5).to(dtype)
          for name in loss.extras}
    ex64 = {k: v.double() for k, v in ex.items()}
    if not loss.takes_weight:
        w = None
        ex = ex64 = dict(alpha=0.75, gamma=0.5)
    wd, wt = (None, None) if w is None else (w.double(), w.to(dtype))
    total = torch.zeros((), dtype=torch.float64, device="cuda")
    for start in range(0, rows, 1 << 14):
        rx, rt = x[start:start + (1 << 14)].double(), t[start:start + (1 << 14)].double()
        total += loss.theirs(rx, rt, wd, reduction="sum", **ex64)
    reductions = ["mean", "sum"] if dtype == torch.bfloat16 else ["mean"]
    for reduction in reductions:
        value = loss.ours(x, t, wt, reduction=reduction, **ex).double()
        exact = total / n if reduction == "mean" else total
        # The float accumulation is far inside the half type's rounding of the result.
        assert abs((value - exact) / exact).item() < TRUTH_TOLERANCES[dtype]["rtol"], (
            reduction, value, exact)
    # The last rows, one by one: their table indices are beyond 2^31.
    tail = slice(rows - 3, rows)
    none = loss.ours(x, t, wt, reduction="none", **ex)
    assert_near_truth(none[tail], truth(x[tail], t[tail], w, "none", None, loss, **ex)[0], dtype)
    del none
    op = loss.backward_op
    weight_arg = (wt,) if loss.takes_weight else ()
    gi, _ = op(torch.ones((), dtype=dtype, device="cuda"), x, t, *weight_arg, reduction=2,
               output_mask=[True, False], **ex)
    assert_near_truth(gi[tail], truth(x[tail], t[tail], w, "sum", None, loss, **ex)[1], dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@all_loss_ids
def test_expanded_gradient_of_another_dtype(device, loss, dtype):
    """A stride-0 incoming gradient of another dtype is one value: converted alone (not
    materialised to N elements first) and read as the scalar gradient, with the same bits as the
    same value given in the input's dtype."""
    x = inputs(loss, (300, 7), dtype, device=device, seed=77)
    t = probabilities((300, 7), dtype, device=device, seed=78)
    op = loss.backward_op
    other = torch.full((), 0.375, dtype=torch.float64, device=device).expand(300, 7)
    same = torch.full((), 0.375, dtype=dtype, device=device).expand(300, 7)
    got = op(other, x, t, reduction=0, output_mask=[True, True])
    want = op(same, x, t, reduction=0, output_mask=[True, True])
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert_near_truth(got[0], truth(x, t, None, "none", same, loss)[1], dtype)


# ---------------------------------------------------------------------------------------------
# The logits loss: infinite logits, inputs of two dtypes, pos_weight broadcasts, label smoothing.

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_logits_infinite_logits_give_the_limits(device, dtype, with_pos_weight):
    """Beyond PyTorch (whose formula gives NaN there): loss(+inf, t) = (1 - t) inf, 0 at t = 1;
    loss(-inf, t) = pw t inf, 0 where pw t = 0; finite gradients; the same on both devices."""
    x = torch.tensor([float("inf")] * 3 + [-float("inf")] * 3 + [0.5], dtype=dtype, device=device)
    t = torch.tensor([0.0, 0.5, 1.0] * 2 + [0.5], dtype=dtype, device=device)
    pw = torch.tensor([2.0, 0.0, 3.0, 2.0, 0.0, 3.0, 1.0], dtype=dtype, device=device)
    kw = {"pos_weight": pw} if with_pos_weight else {}
    inf = float("inf")
    want_plus = [inf, inf, 0.0]
    want_minus = [0.0, 0.0 if with_pos_weight else inf, inf]
    out, gx, gt = ours(x, t, None, "none", torch.ones_like(x), BCE_WITH_LOGITS, **kw)
    assert out[:3].tolist() == want_plus and out[3:6].tolist() == want_minus
    assert torch.isfinite(gx).all()
    assert torch.isinf(bce_ext.binary_cross_entropy_with_logits(x, t, reduction="sum", **kw))
    # (The target's gradient keeps PyTorch's formula: NaN where pw = 0 meets x = -inf.)
    if device != "cpu":
        cpu = ours(x.cpu(), t.cpu(), None, "none", torch.ones_like(x).cpu(),
                   BCE_WITH_LOGITS, **{k: v.cpu() for k, v in kw.items()})
        for mine, theirs in zip((out, gx, gt), cpu):
            torch.testing.assert_close(mine[:6].cpu(), theirs[:6], rtol=0, atol=0, equal_nan=True)
            assert_near_truth(mine[6:], theirs[6:], dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float64), (torch.float16, torch.float32),
                                    (torch.bfloat16, torch.float32),
                                    (torch.float64, torch.bfloat16)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logits_inputs_of_two_dtypes(device, dtypes, reduction):
    """Input and target of different floating dtypes: computed in the promoted type, the loss in
    the target's dtype and each gradient in its own tensor's (as PyTorch)."""
    x = inputs(BCE_WITH_LOGITS, (9, 31), dtypes[0], device=device, seed=80)
    t = probabilities((9, 31), dtypes[1], device=device, seed=81)
    pw = probabilities((31,), dtypes[1], device=device, low=0.5, high=3.0, seed=82)
    grad = None
    if reduction == "none":
        grad = probabilities((9, 31), dtypes[1], device=device, seed=83)
    out, gx, gt = ours(x, t, None, reduction, grad, BCE_WITH_LOGITS, pos_weight=pw)
    ref = F.binary_cross_entropy_with_logits(x, t, reduction=reduction, pos_weight=pw)
    assert out.dtype == ref.dtype == t.dtype and gx.dtype == x.dtype and gt.dtype == t.dtype
    worst = max(dtypes, key=lambda d: torch.finfo(d).eps)
    ref, ref_gx, ref_gt = truth(x, t, None, reduction, grad, BCE_WITH_LOGITS, pos_weight=pw)
    assert_near_truth(out, ref, worst)
    assert_near_truth(gx, ref_gx, worst)
    assert_near_truth(gt, ref_gt, worst)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pw_shape", [(), (1,), (13,), (5, 1), (3, 1, 13), (3, 5, 13)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logits_pos_weight_broadcasts(device, pw_shape, reduction):
    """pos_weight broadcast right-aligned against the target, with and without a weight of
    another broadcast, in float32 and bfloat16."""
    shape = (3, 5, 13)
    for dtype in (torch.float32, torch.bfloat16):
        x = inputs(BCE_WITH_LOGITS, shape, dtype, device=device, seed=84)
        t = probabilities(shape, dtype, device=device, seed=85)
        pw = probabilities(pw_shape, dtype, device=device, low=0.5, high=3.0, seed=86)
        grad = probabilities(shape, dtype, device=device, seed=87) if reduction == "none" else None
        for w in (None, probabilities((5, 1), dtype, device=device, low=0.5, high=2.0, seed=88)):
            out, gx, gt = ours(x, t, w, reduction, grad, BCE_WITH_LOGITS, pos_weight=pw)
            ref, ref_gx, ref_gt = truth(x, t, w, reduction, grad, BCE_WITH_LOGITS, pos_weight=pw)
            assert_near_truth(out, ref, dtype)
            assert_near_truth(gx, ref_gx, dtype)
            assert_near_truth(gt, ref_gt, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("smoothing", [0.05, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@loss_ids
def test_label_smoothing_on_every_path(device, loss, smoothing, dtype):
    """Label smoothing in every kernel: reductions and 'none', aligned and not, weighted and with a
    pos_weight, and both gradients (the target's scaled by 1 - s); hard labels take the general
    path (BCE's one-log path is for the raw targets 0 and 1 only)."""
    n = 4099
    x = inputs(loss, (n + 1,), dtype, device=device, seed=89)
    t = _mixed_targets(n + 1, dtype, device, 90)
    w = probabilities((n + 1,), dtype, device=device, low=0.5, high=2.0, seed=91)
    grad = probabilities((n,), dtype, device=device, seed=92)
    ex = extras(loss, (n,), device=device, dtype=dtype)
    # The smoothed target is rounded to float32 once (the reference keeps it in float64): BCE's
    # grad_input divides that rounding by x (1 - x), up to 100 times.
    tol = TRUTH_TOLERANCES[dtype]
    tol = dict(tol, atol=1e-5) if dtype == torch.float32 else tol
    for sl in (slice(1, None), slice(None, n)):  # misaligned and aligned
        for weight in (None, w[sl]):
            for reduction in REDUCTIONS:
                g = grad if reduction == "none" else None
                kw = dict(ex, label_smoothing=smoothing)
                out, gx, gt = ours(x[sl], t[sl], weight, reduction, g, loss, **kw)
                expected = truth(x[sl], t[sl], weight, reduction, g, loss, **kw)
                for mine, theirs in zip((out, gx, gt), expected):
                    torch.testing.assert_close(mine.cpu().double(), theirs, **tol)


# ---------------------------------------------------------------------------------------------
# The sigmoid focal loss: its alpha and gamma over every dtype and reduction, infinite logits,
# layouts and broadcast operands, the determinism of each path of its formula (gamma 0, 1, 2 are
# exact powers, others exp(gamma log m); alpha < 0 drops the class weight).

def _focal_logits(n, dtype, device, seed):
    """Logits in [-8, 8] with every 50th at +-10 and +-20 (+-12 in float64), where 1 - p_t is
    down to 2e-9 on hard targets: the kernels compute it without cancellation. Not beyond: the
    oracle's own 1 - p_t (torchvision's formula in float64) loses digits to cancellation there,
    more than float64's tolerance past +-12 and 0.05% at +-30."""
    x = inputs(FOCAL, (n,), torch.float64, device="cpu", seed=seed)
    big = 12.0 if dtype == torch.float64 else 20.0
    every = torch.arange(0, n, 50)
    x[every] = torch.tensor([big, -big, 10.0, -10.0], dtype=torch.float64)[every // 50 % 4]
    return x.to(dtype).to(device)


@needs_cuda
@pytest.mark.parametrize("gamma", FOCAL_GAMMAS)
@pytest.mark.parametrize("alpha", FOCAL_ALPHAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_alpha_gamma_grid_matches_cpu_and_oracle(dtype, alpha, gamma):
    """Every (alpha, gamma) of the grid in every dtype, hard and soft targets: each reduction's
    loss and both gradients against torchvision's formula in float64 and against bce_ext's CPU
    kernels. The operands are one element off alignment, so that each call has a head, 128-bit
    groups and a tail (test_vector_and_unaligned_paths has the other alignments)."""
    n = 4099
    x = _focal_logits(n + 1, dtype, CUDA_DEVICE, 100)[1:]
    t = _mixed_targets(n + 1, dtype, CUDA_DEVICE, 101)[1:]
    g = probabilities((n + 1,), dtype, seed=102)[1:]
    check_against_oracles(x, t, grad_none=g, loss=FOCAL, alpha=alpha, gamma=gamma)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("gamma", FOCAL_GAMMAS)
@pytest.mark.parametrize("alpha", FOCAL_ALPHAS)
def test_focal_infinite_logits_give_the_limits(device, dtype, alpha, gamma):
    """Beyond torchvision (whose formula gives NaN there): a confident right logit (+inf with
    t = 1, -inf with t = 0) has loss 0 and gradient 0, a wrong one an infinite loss (where the
    class weight is not 0) and a finite input gradient; a batch of right infinite logits and
    finite ones has finite 'mean' and 'sum', those of the finite ones; the infinite logits' results
    in the same bits on both devices (the finite one's within rounding: the devices' exp and log
    differ in the last bit)."""
    inf = float("inf")
    x = torch.tensor([inf, -inf, inf, -inf, inf, -inf, 0.75], dtype=dtype, device=device)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.25], dtype=dtype, device=device)
    kw = dict(alpha=alpha, gamma=gamma)
    out, gx, gt = ours(x, t, None, "none", torch.ones_like(x), FOCAL, **kw)
    assert out[:2].tolist() == [0.0, 0.0] and gx[:2].tolist() == [0.0, 0.0]
    weight_wrong = [1 - alpha, alpha] if alpha >= 0 else [1.0, 1.0]
    for i, w in zip((2, 3), weight_wrong):
        assert out[i].item() == (inf if w > 0 else 0.0), (i, out[i])
    assert torch.isfinite(gx).all(), gx
    finite = ours(x[6:], t[6:], None, "none", torch.ones_like(x[6:]), FOCAL, **kw)
    assert torch.equal(out[6:], finite[0]) and torch.equal(gx[6:], finite[1])
    right = torch.tensor([0, 1, 6], device=device)
    for reduction in ("mean", "sum"):
        value, gxr, _ = ours(x[right], t[right], None, reduction, None, FOCAL, **kw)
        assert torch.isfinite(value) and torch.isfinite(gxr).all()
        scale = 3 if reduction == "mean" else 1
        assert_near_truth(value * scale, finite[0][0], dtype)
    if device != "cpu":
        cpu = ours(x.cpu(), t.cpu(), None, "none", torch.ones_like(x).cpu(), FOCAL, **kw)
        for mine, theirs in zip((out, gx, gt), cpu):
            torch.testing.assert_close(mine[:6].cpu(), theirs[:6], rtol=0, atol=0, equal_nan=True)
            assert_near_truth(mine[6:], theirs[6:], dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.75, 0.5), (0.25, 1.0),
                                         (0.25, 5.0)], ids=str)
def test_focal_paths_are_deterministic(device, dtype, alpha, gamma):
    """Each path of the focal formula (gamma 0, 1, 2 and the exp/log powers; alpha off): 'mean',
    'sum' and both gradients give the same bits on every repeat and whatever the operands'
    alignment, N = 1,000,003 (many blocks of the grid and a tail), in default and strict mode."""
    n = 1_000_003
    x = inputs(FOCAL, (n + 1,), dtype, device=device, seed=103)
    t = _mixed_targets(n + 1, dtype, device, 104)
    aligned = (x[:n].clone(), t[:n].clone())
    misaligned = (x[1:], t[1:])
    misaligned[0].copy_(aligned[0])
    misaligned[1].copy_(aligned[1])
    kw = dict(alpha=alpha, gamma=gamma)
    for reduction in ("mean", "sum"):
        first = FOCAL.ours(*aligned, reduction=reduction, **kw)
        assert torch.isfinite(first)
        for strict in (False, True):
            bce_ext.set_strict(strict)
            for operands in (aligned, misaligned, aligned):
                assert torch.equal(FOCAL.ours(*operands, reduction=reduction, **kw), first)
        bce_ext.set_strict(False)
    grads = [ours(*operands, loss=FOCAL, **kw)[1:]
             for operands in (aligned, misaligned, aligned)]
    assert all(torch.equal(grads[0][0], g[0]) and torch.equal(grads[0][1], g[1]) for g in grads)


@needs_cuda
@pytest.mark.parametrize("params", FOCAL.param_cases, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_focal_layouts_and_broadcasts(dtype, params):
    """Non-default alpha and gamma through the non-contiguous layouts (transposed, sliced with a
    step, channels_last, expanded) against both oracles; operands of different shapes raise
    torchvision's ValueError."""
    check_against_oracles(inputs(FOCAL, (37, 53), dtype, seed=105).t(),
                          probabilities((53, 37), dtype, seed=106), loss=FOCAL,
                          grad_none=probabilities((37, 53), dtype, seed=107).t(), **params)
    check_against_oracles(inputs(FOCAL, (40, 90), dtype, seed=108)[:, ::3],
                          probabilities((40, 30), dtype, seed=109).round(), loss=FOCAL, **params)
    check_against_oracles(
        inputs(FOCAL, (2, 3, 9, 11), dtype, seed=110).to(memory_format=torch.channels_last),
        probabilities((2, 3, 9, 11), dtype, seed=111), loss=FOCAL, **params)
    check_against_oracles(inputs(FOCAL, (1, 77), dtype, seed=112).expand(5, 77),
                          probabilities((5, 1), dtype, seed=113).expand(5, 77), loss=FOCAL,
                          grad_none=torch.ones((), dtype=dtype, device=CUDA_DEVICE).expand(5, 77),
                          **params)
    # Operands of different shapes: torchvision's ValueError (its binary_cross_entropy_with_logits
    # refuses them), not a broadcast.
    x = inputs(FOCAL, (5, 1, 7), dtype, seed=114)
    t = probabilities((3, 7), dtype, seed=115).round()
    with pytest.raises(ValueError) as theirs:
        FOCAL.theirs(x, t, reduction="mean", **params)
    with pytest.raises(ValueError) as ours:
        FOCAL.ours(x, t, reduction="mean", **params)
    assert str(ours.value) == str(theirs.value)
