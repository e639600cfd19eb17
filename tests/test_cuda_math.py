"""The CUDA kernels' element math and GPU check plan, verified without a GPU.

tests/cuda_math_host.cpp compiles the loss formulas (csrc/losses/) over the CUDA backend and its
Math (csrc/cuda/cuda_math.cuh) as host code (the same operations, single roundings and FMAs as on
the device) and checks the float logs' accuracy (within 1.5 ulp, log1p within 1; every 97th float
of [0, 1] here, `cuda_math_host all` every float, about 5 minutes on 2 cores), the one-log path
for hard labels against the two-log formula (bitwise), signs of zeros, the range check behind the
kernels' NaN, the gradients, and the logits loss (its formula, the limits at +-inf logits, its
gradients). benchmarks/gpu_check.sh must fit its device calls: each part's caps add up to less
than its deadline."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


@pytest.fixture(scope="module")
def host_math(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler")
    exe = str(tmp_path_factory.mktemp("cuda_math") / "cuda_math_host")
    # -ffp-contract=off: no FMA the device code does not have (it keeps its own from contracting).
    subprocess.run([CXX, "-O2", "-std=c++17", "-ffp-contract=off", "-pthread",
                    os.path.join(ROOT, "tests", "cuda_math_host.cpp"), "-o", exe],
                   check=True, capture_output=True, text=True)
    return exe


def test_device_math_on_the_host(host_math):
    out = subprocess.run([host_math, "sample", "97"], capture_output=True, text=True, timeout=600)
    print(out.stdout)
    assert out.returncode == 0 and "ALL PASS" in out.stdout, out.stdout + out.stderr
    for check in ("log(x)", "log1p(-x)", "log1p(e)", "hard", "soft", "special", "grads",
                  "logits"):
        assert re.search(rf"^{re.escape(check)}: PASS", out.stdout, re.MULTILINE), check


def test_gpu_check_fits_its_deadline():
    """In each part of gpu_check.sh (tests, bench, extra: one device call each on one warm machine)
    the caps of the steps add up to less than the part's deadline minus its margin, every planned
    step has a cap and is run by the script, and each deadline is about 6 minutes, so that a call
    can run again within a 15-minute loan."""
    with open(os.path.join(ROOT, "benchmarks", "gpu_check.sh")) as f:
        script = f.read()
    parts = {part: names.split() for part, names in
             re.findall(r"^\s*(\w+)\) STEPS=\(([^)]*)\)", script, re.MULTILINE)}
    assert set(parts) == {"tests", "bench", "extra"}

    def table(name):
        body = re.search(rf"declare -A {name}=\(([^)]*)\)", script, re.DOTALL).group(1)
        return {k: int(v) for k, v in re.findall(r"\[([\w-]+)\]=(\d+)", body)}

    caps, deadlines = table("CAP"), table("PART_DEADLINE")
    overrides = {}
    for part, name, v in re.findall(r'^\[ "\$PART" = (\w+) \] && CAP\[([\w-]+)\]=(\d+)', script,
                                    re.MULTILINE):
        overrides.setdefault(part, {})[name] = int(v)
    margin = int(re.search(r"^MARGIN=(\d+)", script, re.MULTILINE).group(1))
    assert set(deadlines) == set(parts)
    assert set(caps) == {name for steps in parts.values() for name in steps}
    for part, steps in parts.items():
        assert deadlines[part] <= 370, part
        part_caps = {**caps, **overrides.get(part, {})}
        assert sum(part_caps[name] for name in steps) <= deadlines[part] - margin, part
    # Every planned step is run by the script (a step left out of it would show as NOT RUN).
    for name in caps:
        assert re.search(rf"^\s*step {re.escape(name)}\b", script, re.MULTILINE), name
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", os.path.join(ROOT, "benchmarks", "gpu_check.sh")], check=True)
