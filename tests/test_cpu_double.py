"""The vectorised float64 CPU loops of every loss (vec/loops_impl.h over the double backends and
vec_math_double.h), per instruction set, against the portable float64 loops (libm, PyTorch's values
to the bit): the loss (none, sum, mean) and both gradients, every value mix of the loss's table
(tests/losses.py), every tail length, the loss's other coefficients, and bitwise the same on AVX2
and AVX-512. Their math is within 1 ulp (test_cpu_math.py), so they stay within float64's
tolerances of PyTorch (oracle.tolerances)."""
import pytest
import torch
from losses import ALL_LOSSES, MIXES
from oracle import run, tolerances
from test_cpu_simd import SUPPORTED, isa_params, use_isa

LANES = 8  # AVX-512's double lanes; AVX2 has 4
LENGTHS = list(range(0, 2 * LANES + 3)) + [4099]


@pytest.fixture(params=isa_params())
def isa(request):
    return request.param


def cases(loss):
    return [{}] + list(loss.param_cases)


def draw(loss, n, mix, seed):
    """Leaves x and t of n float64 elements, a weight (where the loss takes one), and the loss's
    per-element pos_weight (where it has one) drawn as `mix` says."""
    gen = torch.Generator().manual_seed(seed)
    x = loss.input_values((n,), mix, gen).requires_grad_(True)
    t = loss.target_values((n,), mix, gen).requires_grad_(True)
    w = torch.rand(n, dtype=torch.float64, generator=gen) + 0.5 if loss.takes_weight else None
    extra = {name: 3 * torch.rand(n, dtype=torch.float64, generator=gen) for name in loss.extras}
    return x, t, w, extra


def results(isa, loss, x, t, w, extra, reduction):
    """The loss and both gradients, with the loops of `isa`."""
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    with use_isa(isa):
        return run(loss.ours, x, t, w, reduction, g if reduction == "none" else None, extra=extra)


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=str)
def test_matches_the_portable_loops(isa, loss, mix):
    for k, params in enumerate(cases(loss)):
        for n in LENGTHS:
            x, t, w, extra = draw(loss, n, mix, seed=1000 * k + n)
            for reduction in ("none", "sum", "mean"):
                args = (loss, x, t, w, dict(extra, **params), reduction)
                for a, e in zip(results(isa, *args), results("scalar", *args)):
                    assert a.dtype == torch.float64
                    torch.testing.assert_close(a, e, equal_nan=True, **tolerances(torch.float64),
                                               msg=lambda m: f"{params} n={n} {reduction}: {m}")  # noqa: B023 (called at once)


@pytest.mark.skipif(len(SUPPORTED) < 2, reason="needs both AVX2 and AVX-512")
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=str)
def test_avx2_and_avx512_agree_bitwise(loss):
    for k, params in enumerate(cases(loss)):
        x, t, w, extra = draw(loss, 10_007, "mixed", seed=77 + k)
        for reduction in ("none", "mean"):
            args = (loss, x, t, w, dict(extra, **params), reduction)
            for a, b in zip(results("avx2", *args), results("avx512", *args)):
                assert torch.equal(a.view(torch.int64), b.view(torch.int64))
