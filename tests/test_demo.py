"""python -m bce_ext.demo, run in-process on a small subset."""
import math
import os
import subprocess
import sys

import pytest
import torch

import bce_ext
from bce_ext import demo


def needs_extras():
    for module in ("sklearn", "tqdm", "matplotlib"):
        pytest.importorskip(module)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    needs_extras()
    out = tmp_path_factory.mktemp("demo")
    epochs = 4
    argv = ["--epochs", str(epochs), "--limit", "256", "--batch-size", "32", "--out", str(out)]
    return epochs, out, demo.main(argv)


def test_png_written(short_run):
    _, out, result = short_run
    assert result.png_path.startswith(str(out))
    with open(result.png_path, "rb") as f:
        png = f.read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000  # curves and a digit grid, not an empty canvas


def test_loss_curves(short_run):
    epochs, _, result = short_run
    for curve in (result.losses_bce_ext, result.losses_torch):
        assert len(curve) == epochs
        assert all(math.isfinite(v) for v in curve)
        assert curve[-1] < curve[0]  # it trains
    assert len(result.epoch_seconds_bce_ext) == len(result.epoch_seconds_torch) == epochs


def test_curves_agree_with_torch(short_run):
    _, _, result = short_run
    pairs = list(zip(result.losses_bce_ext, result.losses_torch))
    assert result.max_abs_diff == max(abs(a - b) for a, b in pairs)
    assert result.max_abs_diff < 1e-4 * max(result.losses_torch)


def test_global_state_restored(tmp_path):
    needs_extras()
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    demo.main(["--epochs", "1", "--limit", "64", "--threads", "1", "--out", str(tmp_path)])
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("missing", ["sklearn", "tqdm", "matplotlib"])
def test_missing_extra_names_the_install(monkeypatch, tmp_path, missing):
    # None in sys.modules makes `import` fail as for a package that is not installed.
    for name in [m for m in sys.modules if m.startswith(missing + ".")] + [missing]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SystemExit) as exc:
        demo.main(["--epochs", "1", "--out", str(tmp_path)])
    message = str(exc.value.code)  # a string code: Python prints it, no traceback, status 1
    assert demo.INSTALL_HINT in message
    assert {"sklearn": "scikit-learn"}.get(missing, missing) in message
    assert not list(tmp_path.iterdir())


def test_missing_extra_exits_without_traceback(tmp_path):
    hide_tqdm = ("import runpy, sys; sys.modules['tqdm'] = None; "
                 "runpy.run_module('bce_ext.demo', run_name='__main__')")
    root = os.path.dirname(os.path.dirname(bce_ext.__file__))  # the bce_ext under test
    proc = subprocess.run([sys.executable, "-c", hide_tqdm, "--out", str(tmp_path)], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert demo.INSTALL_HINT in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_asked_without_gpu():
    with pytest.raises(SystemExit) as exc:
        demo.main(["--device", "cuda"])
    assert "cuda" in str(exc.value.code)


def test_logits_flag(tmp_path):
    """--loss logits: the model ends in logits, bce_ext.BCEWithLogitsLoss against
    torch.nn.BCEWithLogitsLoss, the same curves."""
    needs_extras()
    result = demo.main(["--loss", "logits", "--epochs", "3", "--limit", "128", "--batch-size", "32",
                        "--out", str(tmp_path)])
    assert result.loss == "binary_cross_entropy_with_logits"
    assert result.losses_bce_ext[-1] < result.losses_bce_ext[0]
    assert result.max_abs_diff < 1e-4 * max(result.losses_torch)
    assert not isinstance(demo.build_model(0, sigmoid=False)[-1], torch.nn.Sigmoid)


def test_siglip_demo_trains_both_alike_and_ours_in_less_memory(capsys):
    needs_extras()
    history, peaks = demo.main(["--loss", "siglip", "--epochs", "3", "--batch-size", "512"])
    ours, dense = history["bce_ext"], history["dense"]
    assert len(ours) == len(dense) == 3 * (1797 // 512)
    for a, b in zip(ours, dense):  # float32, the same batches and weights
        assert math.isclose(a, b, rel_tol=1e-4)
    assert ours[-1] < ours[0]  # it learns
    # The dense loss holds B x B tensors (1 MiB each here); bce_ext one 256 KiB tile.
    assert max(peaks["bce_ext"]) < min(peaks["dense"]) - 2 * 512 * 512 * 4
    assert "bce_ext loss" in capsys.readouterr().out
