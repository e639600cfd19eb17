"""The benchmark scripts run every loss: their cases, each loss's inputs and incoming gradients,
checked here on the CPU, since the GPU scripts otherwise run only on a lent GPU machine, where a
crash costs the loan (a loss that returns one value per row once broke bench_gpu.py's 'none'
backward)."""
import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _losses  # noqa: E402
import bench_gpu  # noqa: E402
import bench_host  # noqa: E402

from bce_ext._registry import LOSSES, names  # noqa: E402

REDUCTIONS = ("mean", "sum", "none")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("entry", LOSSES, ids=names())
def test_backward_seed_fits_the_loss(entry, reduction):
    """A forward+backward with the seed runs, for bce_ext's loss and its baseline, and gives the
    same input gradient (float64: the seed's shape is the loss's, not the input's)."""
    gen = torch.Generator().manual_seed(0)
    x, t = _losses.inputs(entry, (640,), gen, dtype=torch.float64)
    grads = []
    for fn in (entry.function, _losses.baseline(entry)):
        seed = _losses.backward_seed(fn, x, t, reduction)
        assert seed is None if reduction != "none" else seed.shape != ()
        xg = x.clone().requires_grad_()
        fn(xg, t, reduction=reduction).backward(seed)
        grads.append(xg.grad)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("entry", LOSSES, ids=names())
def test_bench_gpu_cases_run(entry, monkeypatch):
    """bench_gpu.py's case for every loss and reduction runs its closures (on the CPU, timed by a
    stand-in for its CUDA-event timer) and reports both modes."""
    calls = []

    def fake_timed(fn, repeats, warmup=3):
        fn()
        calls.append(repeats)
        return 1.0

    monkeypatch.setattr(bench_gpu, "timed", fake_timed)
    args = type("Args", (), {"no_compile": True, "budget_s": 0.0})()
    x = _losses.DRAW[entry.input](torch.rand(_losses.shape_of(entry, 1 << 8)))
    for reduction in ("mean", "none"):
        rows = bench_gpu.bench_case(args, 0.0, 1e12, entry.name, torch.float32, 8, reduction, x,
                                    torch.rand(x.shape), x.clone().requires_grad_())
        assert [r["mode"] for r in rows] == ["fwd", "fwd+bwd"]
        assert all(r["bce_ext"] == r["eager"] == 1.0 for r in rows)
    assert len(calls) == 2 * 2 * 2  # reductions x modes x (bce_ext, eager)


def test_bench_host_runs_on_cpu(tmp_path):
    """bench_host.py at a small N on the CPU: a row per loss and reduction, with the operators
    and allocations each implementation dispatches (launches are counted on CUDA only)."""
    bench_host.main(["--device", "cpu", "--log2", "7", "--rounds", "1", "--dtypes", "float32",
                     "--out", str(tmp_path)])
    with open(tmp_path / "results.json") as f:
        rows = json.load(f)["rows"]
    assert {(r["loss"], r["reduction"]) for r in rows} == \
        {(name, red) for name in names() for red in ("mean", "none")}
    for r in rows:
        assert r["bce_ext_launches"] is None and r["eager_launches"] is None
        assert r["bce_ext_ops"] >= 2 and r["eager_ops"] >= 2, r  # a forward and a backward op
        assert r["bce_ext_us"] > 0 and r["eager_us"] > 0
    # The table: its header, its rule and a line per row.
    assert (tmp_path / "results.md").read_text().count("\n| ") == len(rows) + 2
