"""python -m bce_ext.info: build information and the self-check against torch."""
import importlib
import os
import subprocess
import sys

import torch.nn.functional as F

import bce_ext
from bce_ext import info


def test_self_check_passes():
    lines = []
    assert info.self_check(print_fn=lines.append)
    assert lines and not [line for line in lines if "FAIL" in line]


def test_self_check_catches_a_wrong_result(monkeypatch):
    def off_by_a_percent(input, target, weight=None, reduction="mean"):
        return F.binary_cross_entropy(input, target, weight, reduction=reduction) * 1.01
    # Where the registry finds the functional (bce_ext/losses/<name>.py).
    module = importlib.import_module("bce_ext.losses.binary_cross_entropy")
    monkeypatch.setattr(module, "binary_cross_entropy", off_by_a_percent)
    lines = []
    assert not info.self_check(print_fn=lines.append)
    assert any("FAIL" in line for line in lines)


def test_command_line():
    # From the folder that holds the bce_ext under test, so the child imports that one too.
    root = os.path.dirname(os.path.dirname(bce_ext.__file__))
    proc = subprocess.run([sys.executable, "-m", "bce_ext.info"], capture_output=True, text=True,
                          cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert bce_ext.__version__ in proc.stdout
    assert bce_ext._C.cpu_isa() in proc.stdout
