"""bce_ext.SigLipLoss across processes (gloo, 2 and 4 CPU processes; siglip_dist_cases.py is the
worker): on every rank, its loss and gradients against open_clip's SigLipLoss on that rank (every
dist_impl; float64 within 1e-10), and the ranks' losses together against one process's loss of the
global batch. Skips where torch.distributed or gloo is missing."""
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from siglip_dist_cases import CASES, case_id, global_inputs

import bce_ext

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend")

HERE = os.path.dirname(os.path.abspath(__file__))


def run_world(world, tmp_path):
    init_file = tmp_path / "init"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "siglip_dist_cases.py"),
                               str(rank), str(world), str(init_file), str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(world)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out}"
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(world)]


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"world{w}")
def world_results(request, tmp_path_factory):
    world = request.param
    return world, run_world(world, tmp_path_factory.mktemp(f"siglip{world}"))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_rank_matches_open_clip(world_results, case):
    world, results = world_results
    for rank, result in enumerate(results):
        ours, theirs = result[case_id(case)]["ours"], result[case_id(case)]["theirs"]
        if theirs is None:
            pytest.skip("open-clip-torch is not installed (pip install --no-deps open-clip-torch)")
        assert len(ours) == len(theirs)
        for a, e in zip(ours, theirs):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12, msg=f"rank {rank}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_ranks_together_are_one_process(world_results, case):
    world, results = world_results
    image, text, scale, bias = global_inputs(case, world)
    one = bce_ext.siglip_loss(image, text, scale, bias)
    b = case[0]
    together = sum(r[case_id(case)]["ours"][0] for r in results) * b / (world * b)
    torch.testing.assert_close(together, one, rtol=1e-10, atol=0)


def test_unequal_local_batches_raise(world_results):
    _, results = world_results
    for result in results:
        assert result["unequal"] is not None and "same local batch" in result["unequal"]
