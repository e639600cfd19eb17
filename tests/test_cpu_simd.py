"""The vectorised CPU loops (csrc/cpu/vec/loops_impl.h) against the portable scalar loops and
against torch, for every instruction set this machine supports (AVX-512 is skipped where the CPU
lacks it). The scalar loops follow PyTorch's operation order; the vector ones use their own logs, so
losses and grad_target agree within a few ulp, and grad_input (no log) bitwise."""
import itertools
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import bce_ext
from bce_ext import _C

VECTOR_ISAS = ["avx2", "avx512"]
LANES = {"avx2": 8, "avx512": 16}
SUPPORTED = [isa for isa in VECTOR_ISAS if _C._cpu_isa_supported(isa)]
REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
# Element-wise agreement of the losses and of grad_target: a few float32 ulp (relative).
ULP = 2.0 ** -23
RTOL = 4 * ULP

backward_op = torch.ops.bce_ext.binary_cross_entropy_backward.default


def isa_params():
    return [pytest.param(isa, marks=pytest.mark.skipif(
        isa not in SUPPORTED, reason=f"this CPU cannot run {isa}")) for isa in VECTOR_ISAS]


@pytest.fixture(params=isa_params())
def isa(request):
    return request.param


class use_isa:
    """Runs the float32 CPU kernels with the loops of `name` inside the block."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.before = _C.cpu_isa()
        assert _C._set_cpu_isa(self.name) == self.name
        return self

    def __exit__(self, *exc):
        _C._set_cpu_isa(self.before)


def forward(isa, x, t, w=None, reduction="none"):
    with use_isa(isa):
        return bce_ext.binary_cross_entropy(x, t, w, reduction=reduction)


def backward(isa, g, x, t, w=None, reduction="none", mask=(True, True)):
    with use_isa(isa):
        return backward_op(g, x, t, w, REDUCTIONS[reduction], list(mask))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def assert_close_ulp(actual, expected, rtol=RTOL):
    """Equal where either is not finite, else within rtol relative (and 1e-30 absolute: -0 vs 0)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    a, e = actual.double(), expected.double()
    special = ~torch.isfinite(e) | ~torch.isfinite(a)
    assert torch.equal(a[special].nan_to_num(), e[special].nan_to_num()), (a[special], e[special])
    diff = (a - e).abs()[~special]
    bound = (rtol * e.abs() + 1e-30)[~special]
    bad = diff > bound
    assert not bad.any(), (
        f"{int(bad.sum())} elements off; worst "
        f"{(diff / e.abs()[~special].clamp_min(1e-30)).max().item():.3g} relative")


def boundary_values():
    tiny = [0.0, -0.0, 1e-45, 1e-40, 1.1754942e-38, 1.17549435e-38, 1e-30, 1e-10, 1e-7,
            1.1920929e-7, 1e-4, 0.29289320, 0.29289323, 0.49999997, 0.5, 0.50000006, 0.70710677,
            0.7071068, 0.9999, 0.9999999, 0.99999994, 1.0]
    return torch.tensor(tiny, dtype=torch.float32)


def inputs(n, seed, labels="soft"):
    g = gen(seed)
    x = torch.rand(n, generator=g)
    if labels == "hard":
        t = torch.randint(0, 2, (n,), generator=g).float()
    elif labels == "soft":
        t = torch.rand(n, generator=g)
    else:  # mixed: hard and soft labels in the same vectors and in whole vectors
        t = torch.rand(n, generator=g)
        hard = torch.rand(n, generator=g) < 0.5
        t[hard] = torch.randint(0, 2, (int(hard.sum()),), generator=g).float()
        t[: n // 2] = t[: n // 2].round()
    return x, t


# --- selection -----------------------------------------------------------------------------------

def test_selection_reports_and_falls_back():
    assert _C._cpu_isa_supported("scalar")
    assert not _C._cpu_isa_supported("bogus")
    chosen = _C.cpu_isa()
    try:
        assert _C._set_cpu_isa("scalar") == "scalar" and _C.cpu_isa() == "scalar"
        widest = _C._set_cpu_isa("avx512")
        assert widest == ("avx512" if "avx512" in SUPPORTED else "avx2" if "avx2" in SUPPORTED
                          else "scalar")
        assert _C._set_cpu_isa("no-such-isa") == widest
    finally:
        _C._set_cpu_isa(chosen)


def test_environment_forces_isa():
    widest = SUPPORTED[-1] if SUPPORTED else "scalar"
    code = "import bce_ext; print(bce_ext._C.cpu_isa())"
    for forced, expected in [("scalar", "scalar"), ("avx512", widest), ("", widest),
                             ("avx2", "avx2" if "avx2" in SUPPORTED else "scalar")]:
        env = dict(os.environ, BCE_EXT_CPU_ISA=forced)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(bce_ext.__file__)), check=True)
        assert out.stdout.strip() == expected, (forced, out.stdout, out.stderr)


# --- forward -------------------------------------------------------------------------------------

@pytest.mark.parametrize("labels", ["soft", "hard", "mixed"])
def test_forward_matches_scalar_and_torch(isa, labels):
    x, t = inputs(100_003, seed=1, labels=labels)
    ref = F.binary_cross_entropy(x, t, reduction="none")
    scalar = forward("scalar", x, t)
    assert torch.equal(scalar, ref)  # the reference loops are PyTorch's to the bit
    out = forward(isa, x, t)
    assert_close_ulp(out, ref)
    for reduction in ["sum", "mean"]:
        r = forward(isa, x, t, reduction=reduction)
        exact = F.binary_cross_entropy(x.double(), t.double(), reduction=reduction)
        assert abs(r.item() - exact.item()) <= 1e-6 * abs(exact.item())
        assert torch.equal(r, forward(isa, x, t, reduction=reduction))  # run to run


def test_forward_boundaries(isa):
    v = boundary_values()
    labels = torch.tensor([0.0, -0.0, 1.0, 0.3, 0.5, 0.999, 1e-7])
    x = v.repeat_interleave(len(labels))
    t = labels.repeat(len(v))
    out = forward(isa, x, t)
    ref = F.binary_cross_entropy(x, t, reduction="none")
    assert_close_ulp(out, ref)
    # Signs of zeros too (x = t = 1 gives -0.0, as PyTorch).
    zero = ref == 0
    assert torch.equal(torch.signbit(out[zero]), torch.signbit(ref[zero]))
    one = forward(isa, torch.ones(9), torch.ones(9))
    assert torch.equal(torch.signbit(one), torch.ones(9, dtype=torch.bool))
    # A subnormal x: log(1e-40) = -92.1034, not clamped.
    sub = forward(isa, torch.full((11,), 1e-40), torch.ones(11))
    assert torch.allclose(sub, torch.full((11,), 92.1034088), rtol=1e-6)
    # Clamped: log(0) and log1p(-1) are -100 at most.
    assert torch.equal(forward(isa, torch.zeros(10), torch.ones(10)), torch.full((10,), 100.0))
    assert torch.equal(forward(isa, torch.ones(10), torch.zeros(10)), torch.full((10,), 100.0))
    # Each value in every lane of a vector and of the tail: boundary values, shuffled.
    g = gen(3)
    for n in [37, 64, 129]:
        idx = torch.randint(0, len(v), (n,), generator=g)
        xs, ts = v[idx], labels[torch.randint(0, len(labels), (n,), generator=g)]
        assert_close_ulp(forward(isa, xs, ts), F.binary_cross_entropy(xs, ts, reduction="none"))


def test_tails_every_length(isa):
    lanes = LANES[isa]
    for n in range(0, 2 * 16 + 2):
        for labels in ["soft", "hard"]:
            x, t = inputs(n, seed=100 + n, labels=labels)
            w = torch.rand(n, generator=gen(n)) + 0.5
            for weight in [None, w]:
                ref = F.binary_cross_entropy(x, t, weight, reduction="none")
                assert_close_ulp(forward(isa, x, t, weight), ref)
                for reduction in ["sum", "mean"]:
                    r = forward(isa, x, t, weight, reduction=reduction)
                    exact = F.binary_cross_entropy(x.double(), t.double(),
                                                   None if weight is None else weight.double(),
                                                   reduction=reduction)
                    if n == 0 and reduction == "mean":
                        assert r.isnan()
                    else:
                        assert abs(r.item() - exact.item()) <= 2e-6 * abs(exact.item()) + 1e-30
                # A poisoned output: every element written, nothing past the end.
                out = forward(isa, x, t, weight)
                assert out.numel() == n and torch.isfinite(out).all()
    assert lanes in (8, 16)


@pytest.mark.parametrize("kind", ["broadcast_row", "broadcast_repeat", "element"])
def test_weights(isa, kind):
    g = gen(7)
    x = torch.rand(40, 300, generator=g)
    t = torch.rand(40, 300, generator=g)
    t[:20] = t[:20].round()
    if kind == "broadcast_row":  # (C,): a weight run per row (stride 1)
        w = torch.rand(300, generator=g) * 2
    elif kind == "broadcast_repeat":  # (R, 1): one value per run of 300 (stride 0)
        w = torch.rand(40, 1, generator=g) * 2
    else:
        w = torch.rand(40, 300, generator=g) * 2
    ref = F.binary_cross_entropy(x, t, w, reduction="none")
    assert_close_ulp(forward(isa, x, t, w), ref)
    for reduction in ["sum", "mean"]:
        r = forward(isa, x, t, w, reduction=reduction)
        exact = F.binary_cross_entropy(x.double(), t.double(), w.double(), reduction=reduction)
        assert abs(r.item() - exact.item()) <= 1e-6 * abs(exact.item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_type_loops_match_the_portable_loops(isa, dtype):
    x, t = inputs(5000, seed=11, labels="mixed")
    x, t = x.to(dtype), t.to(dtype)
    w = (torch.rand(5000, generator=gen(12)) + 0.5).to(dtype)
    for weight in [None, w]:
        ref = forward("scalar", x, t, weight)
        out = forward(isa, x, t, weight)
        # Both round the same float32 loss (within a few float ulp) to the half type.
        torch.testing.assert_close(out, ref, rtol=2 * torch.finfo(dtype).eps, atol=0)
        exact = F.binary_cross_entropy(x.float(), t.float(),
                                       None if weight is None else weight.float(), reduction="none")
        torch.testing.assert_close(out, exact.to(dtype), rtol=torch.finfo(dtype).eps, atol=0)
        for reduction in ["sum", "mean"]:
            torch.testing.assert_close(forward(isa, x, t, weight, reduction=reduction),
                                       forward("scalar", x, t, weight, reduction=reduction))
        # backward through the same loops: gi bitwise, as for float32
        g = torch.rand(5000, generator=gen(13)).to(dtype)
        gi_v, gt_v = backward(isa, g, x, t, weight)
        gi_s, gt_s = backward("scalar", g, x, t, weight)
        assert torch.equal(gi_v, gi_s)
        torch.testing.assert_close(gt_v, gt_s, rtol=2 * torch.finfo(dtype).eps, atol=0)


def _half_run(isa, loss, x, t, w, pw):
    """'none' loss, its gradients (incoming 0.75) and the 'sum' loss of one call, on one ISA."""
    def f(xx, tt, reduction):
        if loss == "bce":
            return bce_ext.binary_cross_entropy(xx, tt, w, reduction=reduction)
        return bce_ext.binary_cross_entropy_with_logits(xx, tt, w, pos_weight=pw,
                                                        reduction=reduction)
    with use_isa(isa):
        xx, tt = x.clone().requires_grad_(), t.clone().requires_grad_()
        out = f(xx, tt, "none")
        gx, gt = torch.autograd.grad(out, (xx, tt), torch.full_like(out, 0.75))
        return out, gx, gt, f(x, t, "sum")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("loss", ["bce", "logits"])
def test_half_types_tails_and_tables(isa, loss, dtype):
    """The half types are converted in registers as the loops load and store: every tail length of
    a vector (masked 16-bit loads and stores), with each kind of weight and positive weight (none,
    one value, a float32 table of a (C,) weight, a full table in the half type), against the
    portable loops (c10's conversions, libm) and against torch computing in float32."""
    g = gen(21)
    tol = dict(rtol=2 * torch.finfo(dtype).eps, atol=0)
    for n in list(range(1, 2 * 16 + 2)) + [300 + 7]:
        x = torch.rand(n, generator=g)
        x = ((x - 0.5) * 12 if loss == "logits" else x).to(dtype)
        t = torch.rand(n, generator=g).to(dtype)
        full = (torch.rand(n, generator=g) + 0.5).to(dtype)
        one = (torch.rand(1, generator=g) + 0.5).to(dtype)
        tables = [None, one, full]
        for w, pw in itertools.product(tables, tables if loss == "logits" else [None]):
            cases = [(x, t, w, pw)]
            if w is full:  # (40, n) inputs: the (n,) weight becomes a float32 table of runs of n
                cases.append((x.repeat(40, 1), t.repeat(40, 1), full, None if pw is full else pw))
            for xs, ts, ws, pws in cases:
                vec, ref = _half_run(isa, loss, xs, ts, ws, pws), _half_run("scalar", loss, xs, ts,
                                                                            ws, pws)
                f32 = [None if v is None else v.float() for v in (ws, pws)]
                if loss == "bce":
                    exact = F.binary_cross_entropy(xs.float(), ts.float(), f32[0],
                                                   reduction="none")
                else:
                    exact = F.binary_cross_entropy_with_logits(xs.float(), ts.float(), f32[0],
                                                               pos_weight=f32[1], reduction="none")
                torch.testing.assert_close(vec[0], exact.to(dtype), **tol)
                for a, b in zip(vec[:3], ref[:3]):
                    torch.testing.assert_close(a, b, **tol)
                # the sums differ in float32's last bits before their rounding to the half type
                torch.testing.assert_close(vec[3].float(), ref[3].float(), rtol=1e-2, atol=0)


def test_sum_accuracy_large(isa):
    # Float32 mean relative error against float64 under 1e-6 (docs/behaviour.md); all-large losses
    # (x near 0, t = 1) stress the float lanes most.
    n = 3_000_000
    g = gen(5)
    x = torch.rand(n, generator=g) * 1e-3
    t = torch.ones(n)
    for xs, ts in [(x, t), inputs(n, seed=6)]:
        r = forward(isa, xs, ts, reduction="mean").item()
        exact = F.binary_cross_entropy(xs.double(), ts.double()).item()
        assert abs(r - exact) <= 1e-6 * exact


def test_sum_threads_and_repeats(isa):
    x, t = inputs(1_000_003, seed=8)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in [1, 2, 1]:
            torch.set_num_threads(threads)
            results.append(forward(isa, x, t, reduction="sum"))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(r, results[0]) for r in results)


# --- backward ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [None, "broadcast", "element"])
def test_backward_matches_scalar(isa, reduction, weighted):
    n = 64 * 65 + 3 * 16 + 5
    x, t = inputs(n, seed=21, labels="mixed")
    b = boundary_values()
    x[: len(b)] = b
    x[-len(b):] = b
    w = None
    if weighted == "broadcast":
        x, t = x[: 64 * 65].view(64, 65), t[: 64 * 65].view(64, 65)
        w = torch.rand(65, generator=gen(22)) + 0.5
    elif weighted == "element":
        w = torch.rand(n, generator=gen(23)) + 0.5
    g = torch.randn(x.shape, generator=gen(24)) if reduction == "none" else torch.tensor(0.7)
    gi_v, gt_v = backward(isa, g, x, t, w, reduction)
    gi_s, gt_s = backward("scalar", g, x, t, w, reduction)
    assert torch.equal(gi_v, gi_s)  # no log in grad_input: bitwise
    assert_close_ulp(gt_v, gt_s)
    # the oracle for grad_input
    xr = x.clone().requires_grad_(True)
    F.binary_cross_entropy(xr, t, w, reduction=reduction).backward(g)
    assert torch.equal(gi_v, xr.grad)
    # only one of the two wanted
    gi_only, empty = backward(isa, g, x, t, w, reduction, mask=(True, False))
    assert torch.equal(gi_only, gi_s) and empty.numel() == 0
    empty, gt_only = backward(isa, g, x, t, w, reduction, mask=(False, True))
    assert torch.equal(gt_only, gt_v) and empty.numel() == 0


def test_backward_tails_and_specials(isa):
    for n in range(0, 2 * 16 + 2):
        x, t = inputs(n, seed=300 + n, labels="mixed")
        g = torch.randn(n, generator=gen(n))
        gi_v, gt_v = backward(isa, g, x, t, None, "none")
        gi_s, gt_s = backward("scalar", g, x, t, None, "none")
        assert torch.equal(gi_v, gi_s)
        assert_close_ulp(gt_v, gt_s)
    # x = 0 and 1: the epsilon of grad_input, +-inf grad_target; a NaN or out-of-range x (the
    # backward does not check) propagates as in the scalar loops.
    x = torch.tensor([0.0, 1.0, -0.0, 1e-40, 0.5, 1.0, 0.0, 0.99999994, float("nan"), 1.5, -0.5]
                     * 3)
    t = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.5, 0.5, 0.5] * 3)
    for g, reduction in [(torch.full_like(x, 0.5), "none"), (torch.tensor(0.5), "mean")]:
        gi_v, gt_v = backward(isa, g, x, t, None, reduction)
        gi_s, gt_s = backward("scalar", g, x, t, None, reduction)
        assert torch.equal(gi_v.nan_to_num(), gi_s.nan_to_num())
        assert torch.equal(gi_v.isnan(), gi_s.isnan())
        assert torch.equal(gt_v.isnan(), gt_s.isnan())
        assert torch.equal(gt_v.isinf(), gt_s.isinf())
        assert torch.equal(gt_v[gt_v.isinf()], gt_s[gt_s.isinf()])
        assert_close_ulp(gt_v.nan_to_num(0.0, 1e30, -1e30), gt_s.nan_to_num(0.0, 1e30, -1e30))


def test_autograd_end_to_end(isa):
    x, t = inputs(10_007, seed=31)
    w = torch.rand(10_007, generator=gen(32)) + 0.5
    xr, tr = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
    with use_isa(isa):
        bce_ext.binary_cross_entropy(xr, tr, w).backward()
    xs, ts = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
    F.binary_cross_entropy(xs, ts, w).backward()
    assert torch.equal(xr.grad, xs.grad)
    assert_close_ulp(tr.grad, ts.grad)


# --- bad values ----------------------------------------------------------------------------------

BAD = [float("nan"), -0.1, 1.1, float("inf"), -float("inf"), -1e-30, 1.0000001]


@pytest.mark.parametrize("labels", ["soft", "hard"])
def test_bad_values_every_position(isa, labels):
    n = 2 * LANES[isa] + 3
    x0, t0 = inputs(n, seed=41, labels=labels)
    for reduction in ["none", "sum"]:
        for pos in range(n):
            for bad in BAD:
                x = x0.clone()
                x[pos] = bad
                with pytest.raises(RuntimeError,
                                   match="all elements of input should be between 0 and 1"):
                    forward(isa, x, t0, reduction=reduction)
                t = t0.clone()
                t[pos] = bad
                with pytest.raises(RuntimeError,
                                   match="all elements of target should be between 0 and 1"):
                    forward(isa, x0, t, reduction=reduction)
        # and the next call works
        assert_close_ulp(forward(isa, x0, t0), F.binary_cross_entropy(x0, t0, reduction="none"))


def test_bad_values_in_long_runs(isa):
    # A bad value deep inside a run of several blocks and chunks, in each ISA's main loop.
    x, t = inputs(70_001, seed=51, labels="hard")
    for pos in [0, 4095, 40_000, 70_000]:
        xb = x.clone()
        xb[pos] = float("nan")
        with pytest.raises(RuntimeError, match="input should be between 0 and 1"):
            forward(isa, xb, t, reduction="mean")
        tb = t.clone()
        tb[pos] = 2.0
        with pytest.raises(RuntimeError, match="target should be between 0 and 1"):
            forward(isa, x, tb, reduction="mean")


def test_hard_label_blocks_match_soft_path_bitwise(isa):
    # Blocks whose targets are all 0 or 1 take one log per element; the losses must be bitwise those
    # of the two-log path (the same block with one soft target), zero signs included.
    g = gen(61)
    x = torch.rand(1024, generator=g)
    x[::37] = 1.0
    x[5::41] = 0.0
    x[7::43] = -0.0
    t = torch.randint(0, 2, (1024,), generator=g).float()
    t[3::29] = -0.0
    hard = forward(isa, x, t)
    soft_t = t.clone()
    soft_t[0::256] = 0.5  # one soft target per block of 256: every block takes the two-log path
    soft = forward(isa, x, soft_t)
    keep = soft_t != 0.5
    assert torch.equal(hard[keep], soft[keep])
    assert torch.equal(torch.signbit(hard[keep]), torch.signbit(soft[keep]))
    ref = F.binary_cross_entropy(x, t, reduction="none")
    assert torch.equal(torch.signbit(hard), torch.signbit(ref))
    assert_close_ulp(hard, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("conv_isa", ["scalar"] + isa_params())
def test_half_conversions_are_c10s(conv_isa, dtype):
    """The half-type conversions of the CPU loops (the portable ones, c10's algorithm written out,
    and the vectorised ones), bitwise against torch's (c10's): every 16-bit pattern to float, and
    floats to the half type (every float16/bfloat16 value, the points halfway between neighbours
    (ties to even), random floats, and the specials), lengths with tails."""
    isa = conv_isa
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    halves = bits.view(dtype)
    up = _C._cpu_convert(isa, halves, torch.float32)
    assert torch.equal(up.view(torch.int32)[~halves.isnan()],
                       halves.float().view(torch.int32)[~halves.isnan()])
    assert up[halves.isnan()].isnan().all()
    finite = halves[halves.isfinite()].float().sort().values
    floats = torch.cat([finite, (finite[1:] + finite[:-1]) / 2, torch.randn(100_003) * 1e4,
                        torch.tensor([float("inf"), -float("inf"), float("nan"), 1e-45, -0.0,
                                      3.4e38, 65504.0, 65520.0])])
    for n in (floats.numel(), 7, 1):
        down = _C._cpu_convert(isa, floats[:n], dtype)
        ref = floats[:n].to(dtype)
        nan = ref.isnan()
        assert torch.equal(down.view(torch.int16)[~nan], ref.view(torch.int16)[~nan])
        assert down[nan].isnan().all()
