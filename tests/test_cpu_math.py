"""The float64 vector math of the CPU loops (csrc/cpu/vec/vec_math_double.h), per instruction set:
each function over a dense sweep of its domain against numpy.longdouble (x87 80-bit, 11 bits more
than double: its own error is below 0.001 double ulp), within MAX_ULP of the exact value, plus the
special values (zeros and their signs, subnormals, 1 and the doubles beside it, infinities, NaN),
and bitwise the same results on AVX2 and AVX-512."""
import numpy as np
import pytest
import torch
from test_cpu_simd import SUPPORTED, isa_params

from bce_ext import _C

# vec_math_double.h's claim is "about 1 ulp"; these sweeps measure at most 0.913 (exp), 0.868
# (log01, log_any), 0.867 (log1m), 0.796 (log1p01) and 1.886 (sigmoid) on both instruction sets.
MAX_ULP = 1.0
N = 1_000_000
TINY = 5e-324  # the smallest subnormal
DBL_MIN = 2.2250738585072014e-308
BELOW_ONE = 1 - 2.0 ** -53  # the largest double below 1

pytestmark = pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63,
                                reason="numpy.longdouble is not the 80-bit x87 type here")


@pytest.fixture(params=isa_params())
def isa(request):
    return request.param


def math(isa, name, x):
    return _C._cpu_math(isa, name, torch.from_numpy(np.ascontiguousarray(x, np.float64))).numpy()


def ulp_error(got, exact):
    """|got - exact| in ulps of the double nearest exact (the subnormal spacing below DBL_MIN)."""
    nearest = exact.astype(np.float64)
    ulp = np.spacing(np.abs(nearest)).astype(np.longdouble)
    return np.abs((got.astype(np.longdouble) - exact) / ulp).astype(np.float64)


def unit_interval(rng):
    """[0, 1] densely: an even grid, uniform draws (as torch.rand), log-uniform draws down to the
    subnormals, and the doubles right below 1 (where 1 - x and log1p(-x) need every bit)."""
    below_one = 1 - np.arange(1, 10_001) * 2.0 ** -53
    return np.concatenate([np.linspace(0, 1, N), rng.random(N), np.exp(rng.uniform(-744, 0, N)),
                           below_one, [TINY, 1e-310, DBL_MIN, BELOW_ONE, 1.0]])


# name: (exact value from longdouble x, domain mask)
LOGS = {
    "log01": (np.log, lambda x: x > 0),
    "log1m": (lambda x: np.log1p(-x), lambda x: x < 1),
    "log1p01": (np.log1p, lambda x: x >= 0),
    "log_any": (np.log, lambda x: x > 0),
}


@pytest.mark.parametrize("name", LOGS)
def test_logs_sweep(isa, name):
    x = unit_interval(np.random.default_rng(1))
    exact_of, domain = LOGS[name]
    x = x[domain(x)]
    err = ulp_error(math(isa, name, x), exact_of(x.astype(np.longdouble)))
    assert err.max() <= MAX_ULP, (name, err.max(), x[err.argmax()])


def test_log_any_beyond_one(isa):
    rng = np.random.default_rng(2)
    x = np.concatenate([np.exp(rng.uniform(0, 709, N)), [np.finfo(np.float64).max, 1 + 2.0 ** -52]])
    err = ulp_error(math(isa, "log_any", x), np.log(x.astype(np.longdouble)))
    assert err.max() <= MAX_ULP, (err.max(), x[err.argmax()])


def test_exp_sweep(isa):
    rng = np.random.default_rng(3)
    # The loss formulas' exp(-|x|) over the logits, the whole range with finite nonzero results
    # (subnormal ones included), and exp(gamma log m) of the focal loss near 1.
    y = np.concatenate([np.linspace(-40, 0, N), rng.uniform(-745, 709.7, N),
                        rng.uniform(-1e-3, 1e-3, N), [-745.1, 709.78, -2.0 ** -60, 2.0 ** -60]])
    err = ulp_error(math(isa, "exp", y), np.exp(y.astype(np.longdouble)))
    assert err.max() <= MAX_ULP, (err.max(), y[err.argmax()])


def test_sigmoid_sweep(isa):
    # A division after exp: within two roundings' worth.
    y = np.linspace(-745, 745, N)
    yl = y.astype(np.longdouble)
    err = ulp_error(math(isa, "sigmoid", y), 1 / (1 + np.exp(-yl)))
    assert err.max() <= 2 * MAX_ULP, (err.max(), y[err.argmax()])


def same_bits(got, expected):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return bool(np.array_equal(got.view(np.int64), expected.view(np.int64)))


def test_specials(isa):
    inf, nan = np.inf, np.nan
    # log01 and log1m at their poles give a large negative finite value (below the forward's
    # clamp at -100), signs of zero as log and log1p.
    zero_log = math(isa, "log01", np.array([0.0, -0.0]))
    assert (zero_log < -100).all() and np.isfinite(zero_log).all()
    assert math(isa, "log1m", np.array([1.0]))[0] < -100
    assert same_bits(math(isa, "log01", np.array([1.0])), [0.0])
    assert same_bits(math(isa, "log1m", np.array([0.0, -0.0])), [-0.0, 0.0])
    # log1p01(0) is a zero of either sign (-0 here, as the float Math's; its caller adds it).
    assert math(isa, "log1p01", np.array([0.0]))[0] == 0
    assert same_bits(math(isa, "log_any", np.array([1.0])), [0.0])
    # Subnormal arguments are exact to the ulp like the rest (the sweeps cover them); spot values.
    for name, x, exact in [("log01", TINY, -1074 * np.log(np.longdouble(2))),
                           ("log_any", TINY, -1074 * np.log(np.longdouble(2))),
                           ("log1m", BELOW_ONE, -53 * np.log(np.longdouble(2))),
                           ("log1p01", TINY, np.longdouble(TINY))]:
        assert ulp_error(math(isa, name, np.array([x])), np.array([exact]))[0] <= MAX_ULP, name
    # log_any as std::log outside (0, inf); exp's limits.
    q = np.array([0.0, -0.0, -1.0, -TINY, -inf, inf, nan])
    assert same_bits(math(isa, "log_any", q)[:2], [-inf, -inf])
    assert np.isnan(math(isa, "log_any", q)[2:5]).all()
    assert math(isa, "log_any", q)[5] == inf and np.isnan(math(isa, "log_any", q)[6])
    e = math(isa, "exp", np.array([-inf, inf, nan, 0.0, -0.0, -746.0, 710.0, -1e300, 1e300]))
    assert same_bits(e[[0, 3, 4, 5, 6, 7, 8]], [0.0, 1.0, 1.0, 0.0, inf, 0.0, inf])
    assert e[1] == inf and np.isnan(e[2])
    s = math(isa, "sigmoid", np.array([-inf, inf, nan, 0.0]))
    assert same_bits(s[[0, 1, 3]], [0.0, 1.0, 0.5]) and np.isnan(s[2])


@pytest.mark.skipif(len(SUPPORTED) < 2, reason="needs both AVX2 and AVX-512")
@pytest.mark.parametrize("name", list(LOGS) + ["exp", "sigmoid"])
def test_avx2_and_avx512_agree_bitwise(name):
    rng = np.random.default_rng(4)
    x = unit_interval(rng) if name in LOGS else rng.uniform(-750, 750, N)
    x = x[: N + 13]  # a tail for each
    assert same_bits(math("avx2", name, x), math("avx512", name, x))
