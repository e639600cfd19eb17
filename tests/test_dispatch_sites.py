"""A loss missing from a dispatch site is a compile error (csrc/losses/registry.h): each site is an
overload per loss reached through visit_loss, with no default and no catch-all. This compiles one
site's translation unit (the second derivatives) as it is, then with one loss's overload removed,
and expects the second to fail for want of that overload."""
import os
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.path.join(ROOT, "csrc", "autograd", "loss_derivatives.cpp")
COMPILER = shlex.split(os.environ.get("CXX", "c++"))  # e.g. "ccache g++"


def syntax_check(source, std, tmp_path):
    """Compiles `source` (the site's text, its includes resolved from the site's folder) for syntax
    and types only; returns (ok, diagnostics)."""
    from torch.utils.cpp_extension import include_paths
    probe = tmp_path / "site.cpp"
    probe.write_text(source)
    cmd = COMPILER + [f"-std={std}", "-fsyntax-only", "-w", f"-I{os.path.dirname(SITE)}"]
    cmd += [f"-I{p}" for p in include_paths()] + [str(probe)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which(COMPILER[-1]) is None or not os.path.exists(SITE),
                    reason="needs the C++ compiler and the sources")
def test_a_site_missing_a_loss_does_not_compile(tmp_path):
    source = open(SITE).read()
    # The control: the site as it is compiles, with the C++ standard of the installed torch's
    # headers (C++20 from torch 2.13, C++17 before).
    for std in ("c++20", "c++17"):
        ok, diagnostics = syntax_check(source, std, tmp_path)
        if ok:
            break
    assert ok, diagnostics
    # The sigmoid focal loss's overload removed: from its signature to the end of its body.
    start = source.index("at::Tensor partial(Loss<losses::SigmoidFocal>")
    end = re.compile(r"^}\n", re.MULTILINE).search(source, start).end()
    ok, diagnostics = syntax_check(source[:start] + source[end:], std, tmp_path)
    assert not ok, "the site compiled without the sigmoid focal loss's overload"
    # (GCC and clang quote the name each their own way.)
    assert re.search(r"no matching function for call to .partial", diagnostics), diagnostics
