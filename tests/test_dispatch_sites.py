"""A loss missing from a dispatch site is a compile error (csrc/losses/registry.h): each site calls
a member of the loss's Traits (its checks, its second derivatives) or an overload per loss, reached
through visit_loss, with no default and no catch-all. This compiles one site's translation unit
(the second derivatives) as it is, then with one loss's member removed from its header, and expects
the second to fail for want of that member."""
import os
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
SITE = os.path.join("autograd", "loss_derivatives.cpp")
HEADER = os.path.join("losses", "sigmoid_focal.h")
COMPILER = shlex.split(os.environ.get("CXX", "c++"))  # e.g. "ccache g++"


def syntax_check(tree, std):
    """Compiles the site in the source tree `tree` for syntax and types only; returns (ok,
    diagnostics)."""
    from torch.utils.cpp_extension import include_paths
    cmd = COMPILER + [f"-std={std}", "-fsyntax-only", "-w"]
    cmd += [f"-I{p}" for p in include_paths()] + [os.path.join(tree, SITE)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which(COMPILER[-1]) is None or not os.path.exists(CSRC),
                    reason="needs the C++ compiler and the sources")
def test_a_site_missing_a_loss_does_not_compile(tmp_path):
    tree = str(tmp_path / "csrc")
    shutil.copytree(CSRC, tree)
    # The control: the site as it is compiles, with the C++ standard of the installed torch's
    # headers (C++20 from torch 2.13, C++17 before).
    for std in ("c++20", "c++17"):
        ok, diagnostics = syntax_check(tree, std)
        if ok:
            break
    assert ok, diagnostics
    # The sigmoid focal loss's second derivatives removed from its Traits: from the member's
    # template line to the end of its body.
    path = os.path.join(tree, HEADER)
    source = open(path).read()
    start = source.index("  template <class Tn>\n  static Tn partial(const Partial<Tn>& a) {")
    end = re.compile(r"^  }\n", re.MULTILINE).search(source, start).end()
    with open(path, "w") as f:
        f.write(source[:start] + source[end:])
    ok, diagnostics = syntax_check(tree, std)
    assert not ok, "the site compiled without the sigmoid focal loss's partial"
    # (GCC and clang word it each their own way.)
    assert re.search(r"partial.* is not a member|no member named .partial", diagnostics), \
        diagnostics
