"""Every size threshold of the CPU kernels, crossed in every input layout times every weight layout,
forward and both gradients, against the oracle.

The thresholds come from the kernels themselves (bce_ext._C._cpu_thresholds(), from
csrc/cpu/tuning.h): the chunk of the parallel loop and of the reduction blocking, the size below
which a call runs on one thread, the run block (the loops' calls), the vector block (float partial
sums and the hard-label decision), the portable loops' sum block, and the weight-table tiling
(short runs tiled once a call has many of them, short repeats written out). Small random tests
never reach most of them: a dense weight in a non-identity layout gave wrong results only past the
tiling threshold. test_tiling_decisions_cover_both_sides checks, through the kernels' own plan,
that the sizes here do land on both sides of each tiling threshold.
"""
import itertools
import zlib

import pytest
import torch
from losses import ALL_LOSSES
from oracle import REDUCTIONS, assert_loss_matches
from test_binary_cross_entropy import ROW as BCE

from bce_ext import _C

T = _C._cpu_thresholds()
CHUNK, RUN, VEC = T["chunk"], T["run_block"], T["vec_block"]
MIN_PARALLEL = T["min_parallel"]
MIN_RUN, MAX_RUNS, MIN_REPEAT = T["min_run"], T["max_short_runs"], T["min_repeat"]


def _shapes():
    """(B, C, H, W) shapes, each named for the threshold it sits beside."""
    return {
        # a (C, H, W) weight has a period of C*H*W = 60 (< min_run) over B runs
        "runs_above": (MAX_RUNS + 1, 3, 4, 5),
        "runs_at": (MAX_RUNS, 3, 4, 5),
        # a (C, 1, 1) weight repeats each value H*W times: min_repeat - 1 = 3 * 5, and 4 * 4
        "repeat_below": (MAX_RUNS + 44, 3, 3, (MIN_REPEAT - 1) // 3),
        "repeat_at": (MAX_RUNS + 44, 3, 4, MIN_REPEAT // 4),
        # a (C, H, W) weight with a period of exactly min_run, and one element less; more than one
        # chunk of elements
        "run_at_min": (CHUNK // MIN_RUN + 8, 4, MIN_RUN // 64, 16),
        "run_below_min": (CHUNK // (MIN_RUN - 1) + 8, 3, 11, (MIN_RUN - 1) // 33),
        # N = one chunk exactly, and just over it (the last chunk holds a partial vector block)
        "chunk_exact": (2, 4, 64, CHUNK // 512),
        "chunk_over": (2, 4, 64, CHUNK // 512 + 1),
        # one thread at most, and just over it (two threads where there are two)
        "parallel_at": (2, 4, 64, MIN_PARALLEL // 512),
        "parallel_over": (2, 4, 64, MIN_PARALLEL // 512 + 1),
        # a few loop calls, ending mid vector block
        "run_block": (3, 1, RUN // 64, 64 + VEC // 8 + 3),
    }


SHAPES = _shapes()


def _channels_last(v):
    return v.contiguous(memory_format=torch.channels_last)


# Input layouts: each maps a float64 (B, C, H, W) tensor to a tensor of the same values and shape.
INPUT_LAYOUTS = {
    "contiguous": lambda v: v.contiguous(),
    "transposed": lambda v: v.transpose(2, 3).contiguous().transpose(2, 3),
    "channels_last": _channels_last,
    "sliced": lambda v: torch.cat([v, v], dim=3)[..., ::2],
    "expanded": lambda v: v[:1].expand(v.shape),
}


def _weight(layout, shape, input_layout, gen):
    """A weight of the given layout for inputs of `shape` (B, C, H, W), values in [0, 2)."""
    b, c, h, w = shape

    def rand(*size):
        return 2 * torch.rand(size, dtype=torch.float64, generator=gen)

    if layout == "none":
        return None
    if layout == "contiguous":  # broadcast over the batch
        return rand(c, h, w)
    if layout == "own_layout":  # full size, laid out like the input
        return INPUT_LAYOUTS[input_layout](rand(b, c, h, w))
    if layout == "transposed":
        return rand(c, w, h).transpose(1, 2)
    if layout == "sliced":
        return rand(c, h, 2 * w)[..., ::2]
    if layout == "expanded":  # stride 0 inside the weight itself
        return rand(c, 1, w).expand(c, h, w)
    if layout == "channels_last":  # the (1, C, H, W) weight of a channels_last model
        return _channels_last(rand(1, c, h, w))
    if layout == "per_channel":  # broadcast over batch and space: repeats of each value
        return rand(c, 1, 1)
    if layout == "over_channels":  # per sample and position, broadcast over channels
        return rand(b, 1, h, w)
    raise ValueError(layout)


WEIGHT_LAYOUTS = ["none", "contiguous", "own_layout", "transposed", "sliced", "expanded",
                  "channels_last", "per_channel", "over_channels"]


def _case(shape_name, input_layout, weight_layout, dtype, loss=BCE):
    shape = SHAPES[shape_name]
    gen = torch.Generator().manual_seed(zlib.crc32(
        f"{shape_name}{input_layout}{weight_layout}{dtype}{loss}".encode()))
    make = INPUT_LAYOUTS[input_layout]
    x = make(loss.inputs(shape, torch.float64, "cpu", gen)).to(dtype)
    t = torch.rand(shape, dtype=torch.float64, generator=gen)
    # Hard labels (0 or 1) in alternating runs of 300 elements: some vector blocks all hard, some
    # mixed, some soft.
    runs = (torch.arange(t.numel()) // 300 % 2 == 0).reshape(shape)
    t = make(torch.where(runs, t.round(), t)).to(dtype)
    w = _weight(weight_layout, shape, input_layout, gen)
    g = make(torch.rand(shape, dtype=torch.float64, generator=gen) - 0.5).to(dtype)
    return x, t, (None if w is None else w.to(dtype)), g


def _check(loss, x, t, w, g):
    """Forward and both gradients against the oracle; a loss's other broadcast tensors (pos_weight)
    take the weight's layout, and then that of a per-channel weight, so that the runs of the two
    tables end at different elements; a loss's other scalar arguments take its param_cases."""
    extras_cases = [{}, *loss.param_cases]
    if loss.extras and w is not None:
        per_channel = 3 * torch.rand(w.shape[-3] if w.dim() >= 3 else 3, 1, 1, dtype=w.dtype)
        extras_cases += [{name: 3 * w for name in loss.extras},
                         {name: per_channel for name in loss.extras}]
    for extras in extras_cases:
        for reduction in REDUCTIONS:
            grad = g if reduction == "none" else None
            # PyTorch's output strides too, but where its chain of ops with a pos_weight sets them.
            assert_loss_matches(x, t, w, reduction, grad, loss=loss,
                                strides=reduction == "none" and not extras and loss.takes_weight,
                                **extras)


def _grid(weight_layouts, input_layouts, shape_names):
    """(loss, shape, input layout, weight layout) of every loss; a loss that takes no weight (the
    focal loss) gets the weight layout 'none' only."""
    return [pytest.param(loss, s, i, w, id=f"{loss}-{s}-{i}-{w}") for loss in ALL_LOSSES
            for s in shape_names for i in input_layouts for w in weight_layouts
            if loss.takes_weight or w == "none"]


@pytest.mark.parametrize("loss,shape_name,input_layout,weight_layout",
                         _grid(WEIGHT_LAYOUTS, list(INPUT_LAYOUTS), list(SHAPES)))
def test_float32_layout_grid(loss, shape_name, input_layout, weight_layout):
    _check(loss, *_case(shape_name, input_layout, weight_layout, torch.float32, loss))


@pytest.mark.parametrize("loss,shape_name,input_layout,weight_layout",
                         _grid(WEIGHT_LAYOUTS, ["contiguous", "channels_last", "transposed"],
                               ["runs_above", "repeat_below", "run_below_min", "chunk_over",
                                "run_block"]))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_other_dtypes_layout_grid(loss, dtype, shape_name, input_layout, weight_layout):
    _check(loss, *_case(shape_name, input_layout, weight_layout, dtype, loss))


def test_tiling_decisions_cover_both_sides():
    """For each input layout, the grid's weights land on both sides of both tiling thresholds (as
    the kernels decide them), so test_float32_layout_grid crosses them in every input layout."""
    for input_layout in INPUT_LAYOUTS:
        seen = set()
        for shape_name, weight_layout in itertools.product(SHAPES, WEIGHT_LAYOUTS[1:]):
            x, t, w, _ = _case(shape_name, input_layout, weight_layout, torch.float32)
            inner, period, write_repeats, copies = _C._cpu_weight_plan(x, t, w, 0)
            seen.add(("repeats written", bool(write_repeats)))
            seen.add(("tiled", copies > 1))
            if inner == 1:
                seen.add(("run vs min_run", period >= MIN_RUN))
        wanted = {(k, v) for k in ("repeats written", "tiled", "run vs min_run")
                  for v in (False, True)}
        assert wanted <= seen, (input_layout, sorted(wanted - seen))


def test_sizes_cross_the_size_thresholds():
    """The grid's element counts fall on both sides of the chunk, of the one-thread limit and of a
    run block, and end inside a vector block, so partial chunks and blocks and tails all run."""
    counts = [torch.Size(s).numel() for s in SHAPES.values()]
    assert any(n <= CHUNK for n in counts) and any(n > CHUNK for n in counts)
    assert any(n == CHUNK for n in counts)
    assert any(n == MIN_PARALLEL for n in counts) and any(n > MIN_PARALLEL for n in counts)
    assert any(n % RUN and n > RUN for n in counts)
    assert any(n % VEC for n in counts)
