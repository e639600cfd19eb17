"""bce_ext in PyTorch's distributed engines, on 2 CPU processes with gloo: DTensor sharding rules
for every op (each result, gathered, against the single-process result), DistributedDataParallel
training (parameters against one process with torch.nn), and the demo under torchrun.

The behaviour is docs/behaviour.md, section 8. The processes run once for the module
(tests/dist_cases.py) and save their results; each test here builds the same inputs and compares.
Everything skips where torch.distributed or gloo is missing.
"""
import importlib.util
import os
import signal
import subprocess
import sys
import time

import dist_cases
import pytest
import torch
import torch.distributed as dist
from dist_cases import WORLD_SIZE

import bce_ext

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend")

HERE = os.path.dirname(os.path.abspath(__file__))
# Generous: a stuck collective fails inside the workers after 60 s, long before this.
WORKER_TIMEOUT_S = 300


class Processes:
    """Commands started at once (stdout and stderr to files); `finish` waits for them and returns
    their output, or fails the test with it. A process still running at the deadline is killed."""

    def __init__(self, commands, cwd, timeout):
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.logs = [open(os.path.join(cwd, f"process{i}.log"), "w+") for i in range(len(commands))]
        # Each in a session of its own, so that a kill reaches what it started (torchrun's workers).
        self.procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
                      for cmd, log in zip(commands, self.logs)]

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def finish(self):
        killed = False
        for proc in self.procs:
            try:
                proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                killed = True
        outputs = []
        for log in self.logs:
            log.seek(0)
            outputs.append(log.read())
            log.close()
        if killed or any(p.returncode != 0 for p in self.procs):
            pytest.fail((f"killed after {self.timeout} s\n" if killed else "") + "\n".join(
                f"--- process {i} (exit {p.returncode}):\n{out[-4000:]}"
                for i, (p, out) in enumerate(zip(self.procs, outputs))))
        return outputs


DEMO_FLAGS = ["--epochs", "3", "--limit", "200", "--batch-size", "25"]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """The test workers and the demo under torchrun, started together (they overlap on a 2-core
    machine): (workers, their folder, torchrun or None, its folder)."""
    tmp = tmp_path_factory.mktemp("dist")
    script = os.path.join(HERE, "dist_cases.py")
    workers = Processes([[sys.executable, script, str(rank), str(tmp / "store"), str(tmp)]
                         for rank in range(WORLD_SIZE)], str(tmp), WORKER_TIMEOUT_S)
    demo_dir, torchrun = tmp_path_factory.mktemp("demo"), None
    if all(importlib.util.find_spec(m) for m in ("sklearn", "tqdm", "matplotlib")):
        torchrun = Processes([[sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={WORLD_SIZE}", "-m", "bce_ext.demo",
                               *DEMO_FLAGS, "--out", str(demo_dir / "ddp")]],
                             str(demo_dir), WORKER_TIMEOUT_S)
    yield workers, tmp, torchrun, demo_dir
    for group in (workers, torchrun):  # a test that failed first may leave them running
        if group is not None:
            group.kill()


@pytest.fixture(scope="module")
def results(launched):
    """What each rank saved: {"dtensor": {case id: ...}, "ddp": {...}, ...}, per rank."""
    workers, tmp, _, _ = launched
    workers.finish()
    return [torch.load(tmp / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


def ok(result):
    if "error" in result:
        pytest.fail(f"failed in the worker:\n{result['error']}")
    return result["ok"]


def needs(loss):
    if not loss.available():
        pytest.skip(f"this build has no {loss.op}")


def tolerances(dtype):
    # float64 and float32: the partial sums add up in another order than one sum. A half type's
    # partial sums are each rounded to it before they are added: two roundings, not one.
    return {torch.float64: {"rtol": 1e-11, "atol": 1e-13},
            torch.float32: {"rtol": 1e-5, "atol": 1e-6},
            torch.float16: {"rtol": 2e-3, "atol": 1e-5},
            torch.bfloat16: {"rtol": 1.6e-2, "atol": 1e-4}}[dtype]


# ------------------------------------------------------------------------------------------------
# Registration

# The SigLIP loss's ops have no DTensor rules: the loss spans processes by its own ring
# (bce_ext.SigLipLoss's world_size, docs/siglip.md), as open_clip's does.
NOT_SHARDED = {"siglip_loss", "siglip_loss_and_grads"}


def _library_ops():
    return sorted(name.split("::")[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("bce_ext::") and name.split("::")[1] not in NOT_SHARDED)


def test_every_op_has_dtensor_rules(results):
    # Rank 0 imported bce_ext and then torch.distributed.tensor (the import hook's path), rank 1
    # the other way round.
    assert set(_library_ops()) <= {entry.name for entry in bce_ext._distributed.OPS}
    for rank in results:
        assert not rank["skipped"]
        assert rank["registered"] == _library_ops()


def test_import_bce_ext_leaves_dtensor_unloaded(results):
    # torch.distributed.tensor costs most of a second to import: bce_ext must not pull it in.
    assert results[0]["dtensor_loaded_by_bce_ext"] is False


def test_nothing_registered_without_torch_distributed():
    # As on a torch built without distributed support: no import hook, and the loss still works.
    code = ("import sys, torch; torch.distributed.is_available = lambda: False; import bce_ext; "
            "x = torch.full((3,), 0.5); print(bce_ext.binary_cross_entropy(x, x).item(), "
            "[type(f).__name__ for f in sys.meta_path "
            "if type(f).__module__.startswith('bce_ext')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [f"{0.6931471824645996}", "[]"]


# ------------------------------------------------------------------------------------------------
# DTensor: every rule against the single-process result

def expected_placements(case, path):
    from torch.distributed.tensor import Partial, Replicate, Shard
    like_input = Replicate() if case.shard_dim is None else Shard(case.shard_dim)
    if case.reduction == "none" or case.shard_dim is None:
        value = like_input
    else:  # 'sum', and 'mean' as a sum over 1/N-weighted elements: a partial sum
        value = Partial("sum")
    if path == "functional":
        wanted = [value, like_input, like_input]
    elif path == "forward_op":
        wanted = [value]
    else:  # an unwanted gradient is an empty tensor, the same on every rank
        wanted = [like_input if want else Replicate() for want in case.mask]
    return [(str(p),) for p in wanted]


DTENSOR_CASES = dist_cases.dtensor_cases()


@pytest.mark.parametrize("case", DTENSOR_CASES, ids=[c.id for c in DTENSOR_CASES])
def test_dtensor(results, case):
    needs(case.loss)
    got = ok(results[0]["dtensor"][case.id])
    x, t, operands, g_none, g_reduced = case.inputs()
    g = g_none if case.reduction == "none" else g_reduced
    expected = {"functional": dist_cases.call_functional(case, x, t, operands, g),
                "forward_op": [dist_cases.call_forward(case, x, t, operands)],
                "backward_op": dist_cases.call_backward(case, g, x, t, operands)}
    for path, values in expected.items():
        assert [p for _, p in got[path]] == expected_placements(case, path), path
        for (value, _), want in zip(got[path], values):
            torch.testing.assert_close(value, want.detach(), **tolerances(case.dtype),
                                       msg=lambda m, path=path: f"{path}: {m}")
    # Every rank gathered the same tensors.
    other = ok(results[1]["dtensor"][case.id])
    for path in expected:
        for (a, _), (b, _) in zip(got[path], other[path]):
            assert torch.equal(a, b), path


# ------------------------------------------------------------------------------------------------
# DistributedDataParallel: bce_ext's module on 2 ranks against torch.nn on one

DDP_CASES = dist_cases.ddp_cases()


@pytest.mark.parametrize("case", DDP_CASES, ids=[c.id for c in DDP_CASES])
def test_ddp_matches_one_process(results, case):
    needs(case.loss)
    state, losses = ok(results[0]["ddp"][case.id])
    want_state, want_losses = dist_cases.train_single(case, dist_cases.oracle_module(case.loss))
    initial = dist_cases.ddp_setup(case)[0].state_dict()
    for name, want in want_state.items():
        assert not torch.allclose(want, initial[name], rtol=0, atol=1e-3), f"{name} did not train"
        torch.testing.assert_close(state[name], want, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(want_losses), rtol=1e-5,
                               atol=1e-6)
    # DDP keeps the replicas equal.
    other_state, _ = ok(results[1]["ddp"][case.id])
    for name, value in state.items():
        assert torch.equal(value, other_state[name]), name


# ------------------------------------------------------------------------------------------------
# The demo under torchrun

def test_demo_under_torchrun(launched):
    _, _, torchrun, demo_dir = launched
    if torchrun is None:
        pytest.skip("needs the demo extra (scikit-learn, tqdm, matplotlib)")
    from bce_ext import demo
    (out,) = torchrun.finish()
    # 200 images in batches of 25 on 2 processes: 12 or 13 images each per step (uneven).
    single = demo.main(DEMO_FLAGS + ["--out", str(demo_dir / "one")])
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] in ([str(e)] for e in range(1, 4)) and len(line.split()) == 6]
    assert len(rows) == 3, out
    assert f"{WORLD_SIZE} processes (gloo)" in out
    for row, ours, theirs in zip(rows, single.losses_bce_ext, single.losses_torch):
        assert float(row[1]) == pytest.approx(ours, rel=1e-5)
        assert float(row[2]) == pytest.approx(theirs, rel=1e-5)
    assert os.path.exists(demo_dir / "ddp" / demo.PNG_NAME)
