"""Concurrency: Python threads that run every loss forward and backward at once, on different sizes,
dtypes, weights (for the losses that take one), scalar arguments (the focal loss's alpha and gamma)
and reductions, get the bits of a serial run; so do 1 and 2 intra-op threads (beyond PyTorch: a
fixed blocking of the reductions, no float atomics, docs/behaviour.md, "Bitwise reproducible").

The kernels release the GIL (torch.ops calls do), so the Python threads run the native code at
the same time, each call with its own at::parallel_for team.
"""
import re
import threading

import pytest
import torch
from losses import ALL_LOSSES
from oracle import leaves, run

BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
        torch.bfloat16: torch.int16}

# Sizes: vector tails, one block, several 2048-element blocks, and more than
# the one-thread limit of 32768 elements (so that the intra-op threads split the work).
JOBS = [((7,), torch.float32, "none", None), ((3, 333), torch.float64, "mean", "row"),
        ((70_001,), torch.float32, "sum", None), ((257, 260), torch.float16, "none", "full"),
        ((40, 2049), torch.bfloat16, "mean", "row"), ((100_003,), torch.float64, "none", "full"),
        ((2, 50_000), torch.float32, "mean", "sample"), ((0, 5), torch.float32, "sum", None),
        ((), torch.float64, "none", None), ((33, 4, 250), torch.float32, "none", "sample")]


def operands(loss, shape, dtype, weight, seed):
    gen = torch.Generator().manual_seed(seed)
    x = loss.input_values(shape, "mixed", gen).to(dtype)
    t = loss.target_values(shape, "mixed", gen).to(dtype)
    wshape = {None: None, "row": shape[-1:], "full": shape,
              "sample": shape[:1] + (1,) * (len(shape) - 1)}[weight if loss.takes_weight else None]
    w = None if wshape is None else (2 * torch.rand(wshape, generator=gen)).to(dtype)
    g = (torch.rand(shape, generator=gen) - 0.5).to(dtype)
    return x, t, w, g


def params_of(loss, job):
    """The loss's scalar arguments in a job: its defaults and its param_cases in turn."""
    cases = [{}, *loss.param_cases]
    return cases[JOBS.index(job) % len(cases)]


def compute(loss, job, ops):
    """The loss and both gradients of one job on its operands (incoming gradient g for 'none',
    1 otherwise)."""
    _, _, reduction, _ = job
    x, t, w, g = ops
    return run(loss.ours, *leaves(x, t), w, reduction, g if reduction == "none" else None,
               extra=params_of(loss, job))


def all_operands(loss):
    return [operands(loss, *job[:2], job[3], seed) for seed, job in enumerate(JOBS)]


def assert_bitwise_equal(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == e.dtype and a.shape == e.shape and a.stride() == e.stride()
        assert torch.equal(a.contiguous().view(BITS[a.dtype]), e.contiguous().view(BITS[e.dtype]))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_python_threads_get_the_serial_bits(loss):
    ops = all_operands(loss)  # read by every thread at once
    serial = [compute(loss, job, o) for job, o in zip(JOBS, ops)]
    threads, rounds = 4, 3
    barrier = threading.Barrier(threads)
    results, errors = {}, []

    def worker(k):
        try:
            barrier.wait()
            for r in range(rounds):
                order = list(range(len(JOBS)))[k + r:] + list(range(len(JOBS)))[:k + r]
                for i in order:  # each thread starts at another job
                    results[(k, r, i)] = compute(loss, JOBS[i], ops[i])
                    # and an error in between, which must not disturb anything: of the values,
                    # or of a scalar argument
                    if loss.checks_range:
                        with pytest.raises(RuntimeError, match="between 0 and 1"):
                            loss.ours(torch.full((5,), 2.0), torch.rand(5))
                    for params, error, message in loss.bad_params[:1]:
                        with pytest.raises(error, match=re.escape(message)):
                            loss.ours(torch.rand(5), torch.rand(5), **params)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for p in pool:
        p.start()
    for p in pool:
        p.join()
    if errors:
        raise errors[0]
    assert len(results) == threads * rounds * len(JOBS)
    for (_k, _r, i), result in results.items():
        assert_bitwise_equal(result, serial[i])


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
@pytest.mark.parametrize("job", JOBS, ids=lambda j: f"{j[0]}-{j[1]}-{j[2]}-{j[3]}")
def test_one_and_two_intra_op_threads_give_the_same_bits(loss, job):
    ops = operands(loss, *job[:2], job[3], seed=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compute(loss, job, ops)
        torch.set_num_threads(2)
        two = compute(loss, job, ops)
    finally:
        torch.set_num_threads(before)
    assert_bitwise_equal(two, one)
