"""Property tests (hypothesis) of every loss in losses.ALL_LOSSES against its reference (PyTorch's,
torchvision's focal loss), each example with the loss's extra arguments drawn (pos_weight; alpha and
gamma).

Each example draws a dtype, a shape (0-d, empty, small, or long enough to cross the kernels' vector
widths, blocks and chunks), a reduction, and for every operand (input, target, weight, incoming
gradient) its values and its layout: contiguous, permuted (transposed, channels_last), sliced
(strided, with an offset), expanded (stride 0) or a mix. Gaps of a sliced operand hold NaN (or a
large number in an integer weight): a kernel that reads a byte it should not gets a range error or
a NaN. Every example checks:

- the loss and the gradients that autograd asks for (input, target or both) against the oracle
  (PyTorch; for float16/bfloat16 on the float32 upcast, rounded once: see oracle.py), within
  oracle.py's tolerances, or where the two part at least as close as the oracle to its float64
  result (oracle.assert_as_accurate); where the oracle's gradient is NaN at these finite operands,
  the limit for a loss that gives it (losses.Loss.limits_beyond_reference);
- dtype, shape and strides as PyTorch's (PyTorch run on the operands as they are), the strides
  that address elements: those of dims longer than 1, of a tensor that has elements (as PyTorch's
  own tests compare them; PyTorch itself returns an empty (0, 2) target gradient as (2, 1) where
  its input gradient is (1, 0));
- no operand's storage changed by a single byte (gaps included), and no output sharing one.

Weights of every broadcastable shape are drawn (for the losses that take one); weights that do not
broadcast (any other shape) must raise PyTorch's error, after which a valid call works. The number
of examples is the hypothesis profile's (tests/conftest.py): "ci" by default, "long" by hand with
HYPOTHESIS_PROFILE=long.
"""
import functools
import math
from dataclasses import dataclass, replace
from typing import Optional

import pytest
import torch

pytest.importorskip("hypothesis", reason="the property tests need hypothesis (the test extra)")
from conftest import DEVICES  # noqa: E402
from hypothesis import currently_in_test_context, given, note  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from losses import ALL_LOSSES, MIXES, assert_valid_call_works  # noqa: E402
from oracle import REDUCTIONS, assert_as_accurate, expected, float64_of, leaves, run  # noqa: E402
from test_sigmoid_focal_loss import ROW as FOCAL  # noqa: E402

# None: the input's dtype, the common case (drawn more often).
WEIGHT_DTYPES = (None, None, None, torch.float32, torch.float64, torch.float16, torch.bfloat16,
                 torch.int64)
GAP_FLOAT = float("nan")
GAP_INT = 7777


# --- operands ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where an operand's elements sit in memory. Its storage is allocated with dims in `perm` order
    (row-major), then dim d is read every steps[d]-th element from offsets[d]; dims in `expanded`
    are one element broadcast (stride 0)."""
    perm: tuple
    steps: tuple
    offsets: tuple
    expanded: tuple

    def __repr__(self):
        parts = []
        if self.perm != tuple(range(len(self.perm))):
            parts.append(f"perm={self.perm}")
        if any(s != 1 for s in self.steps) or any(self.offsets):
            parts.append(f"steps={self.steps} offsets={self.offsets}")
        if any(self.expanded):
            parts.append(f"expanded={self.expanded}")
        return "Layout(" + (", ".join(parts) or "contiguous") + ")"


@st.composite
def layouts(draw, ndim):
    identity = tuple(range(ndim))
    perms = [st.just(identity)]
    if ndim >= 2:
        perms += [st.just(identity[::-1]), st.permutations(identity).map(tuple)]
    if ndim == 4:
        perms.append(st.just((0, 2, 3, 1)))  # channels_last
    if ndim == 5:
        perms.append(st.just((0, 2, 3, 4, 1)))  # channels_last_3d
    perm = draw(st.one_of(perms))
    steps, offsets, expanded = (1,) * ndim, (0,) * ndim, (False,) * ndim
    if ndim and draw(st.booleans()):  # sliced
        steps = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
        offsets = tuple(draw(st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim)))
    if ndim and draw(st.booleans()):  # expanded
        expanded = tuple(draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim)))
    return Layout(perm, steps, offsets, expanded)


@dataclass(frozen=True)
class Values:
    """An operand: `mix` of values (losses.MIXES) from `seed`, laid out as `layout`."""
    seed: int
    mix: str
    layout: Layout


def values_of(ndim, mixes=MIXES, layout=None):
    return st.builds(Values, st.integers(0, 2**32 - 1), st.sampled_from(mixes),
                     layouts(ndim) if layout is None else layout)


def materialize(spec, shape, dtype, device, generate):
    """The operand `spec` of `shape`: values from generate(shape, mix, generator) (float64),
    rounded to dtype, in spec.layout. Expanded dims keep the first slice of the values."""
    lay = spec.layout
    values = generate(shape, spec.mix, torch.Generator().manual_seed(spec.seed))
    for d, e in enumerate(lay.expanded):
        if e:
            values = values.narrow(d, 0, min(1, shape[d]))
    vshape = values.shape
    full = [o + (s - 1) * st_ + 1 if s else o for s, st_, o in zip(vshape, lay.steps, lay.offsets)]
    gap = GAP_INT if not dtype.is_floating_point else GAP_FLOAT
    storage = torch.full([full[p] for p in lay.perm], gap, dtype=dtype, device=device)
    inverse = [lay.perm.index(d) for d in range(len(shape))]
    view = storage.permute(inverse)[tuple(slice(o, f, s) for o, f, s in
                                          zip(lay.offsets, full, lay.steps))]
    assert view.shape == vshape, (view.shape, vshape)
    view.copy_(values.to(dtype))
    return view.expand(shape) if vshape != torch.Size(shape) else view


def grad_values(shape, mix, generator):
    """Values of an incoming gradient: the mix decides their range (negative ones too)."""
    v = torch.rand(shape, dtype=torch.float64, generator=generator)
    return {"uniform": 2 * v, "hard": v.round(), "special": torch.zeros(shape, dtype=torch.float64),
            "mixed": 2 * v - 0.5}[mix]


def weight_values(shape, mix, generator):
    """Values of a weight, in [0, 2): not negative, so that a reduced loss is a sum without
    cancellation, which the oracle's float32 sum and the kernels' blocked one would round apart."""
    return grad_values(shape, mix, generator).abs()


def integer_weight(shape, mix, generator):
    return torch.randint(0, 4, shape, generator=generator).double()


# --- shapes --------------------------------------------------------------------------------------

SMALL = st.lists(st.integers(0, 6), max_size=5).map(tuple)


@st.composite
def long_shapes(draw):
    """A long dim (vector bodies and tails, several 2048-element blocks, sometimes more than the
    one-thread limit of 32768 elements, so that both threads run) among up to three short ones: a
    weight along the short ones repeats hundreds of times (the kernels' tiled weight tables)."""
    short = draw(st.lists(st.integers(1, 8), max_size=3))
    long_dim = draw(st.integers(17, 5000))
    at = draw(st.integers(0, len(short)))
    long_dim = max(17, min(long_dim, 100_000 // max(1, math.prod(short))))
    return tuple(short[:at] + [long_dim] + short[at:])


SHAPES = st.one_of(SMALL, long_shapes())


@st.composite
def broadcastable_weight_shapes(draw, shape, keep=(True, False)):
    """Right-aligned: the last k dims of `shape`, each kept or 1 as drawn from `keep` (k = 0 is a
    0-d weight)."""
    k = draw(st.integers(0, len(shape)))
    suffix = shape[len(shape) - k:]
    return tuple(s if draw(st.sampled_from(keep)) else 1 for s in suffix)


# --- running and checking ------------------------------------------------------------------------

def storage_bytes(t):
    """Every byte of t's storage, gaps of a sliced tensor included."""
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage()).clone()


def significant_strides(t):
    """The strides that address elements: of the dims longer than 1, where t has elements."""
    return t.numel() and tuple(s if n > 1 else None for n, s in zip(t.shape, t.stride()))


@dataclass
class Example:
    x: torch.Tensor
    t: torch.Tensor
    w: Optional[torch.Tensor]
    g: torch.Tensor
    reduction: str
    wrt: str
    extra: dict

    def operands(self):
        return [v for v in (self.x, self.t, self.w, self.g, *self.extra.values())
                if isinstance(v, torch.Tensor)]


def draw_example(data, loss, device, shapes=SHAPES, alike=st.booleans(), weighted=st.booleans(),  # noqa: B008 (strategies are immutable)
                 weight_dtypes=WEIGHT_DTYPES, weight_layout=True, weight_keep=(True, False),
                 input_layouts=None):
    """One example, drawn step by step (each draw is reported when a test fails). `alike`: whether
    target, weight and grad take the input's dim order (all channels_last, all transposed...);
    weight_layout: whether the weight may also be sliced or expanded; weight_keep: how a weight dim
    is drawn (True: the input's size, False: 1); input_layouts(shape): the input's layouts (by
    default those of every operand). A loss without a weight is drawn none."""
    shape = data.draw(shapes, label="shape")
    dtype = data.draw(st.sampled_from(loss.dtypes), label="dtype")
    reduction = data.draw(st.sampled_from(REDUCTIONS), label="reduction")
    wrt = data.draw(st.sampled_from(["both", "input", "target"]), label="gradients of")
    ndim = len(shape)
    alike = data.draw(alike, label="target, weight and grad in the input's dim order")
    xspec = data.draw(values_of(ndim, layout=input_layouts and input_layouts(shape)),
                      label="input")

    def like_input(spec, lead=0):
        """spec with the dim order of the input's last ndim - lead dims."""
        perm = tuple(d - lead for d in xspec.layout.perm if d >= lead)
        return replace(spec, layout=replace(spec.layout, perm=perm)) if alike else spec

    x = materialize(xspec, shape, dtype, device, loss.input_values)
    t = materialize(like_input(data.draw(values_of(ndim), label="target")), shape, dtype, device,
                    loss.target_values)
    w = None
    if loss.takes_weight and data.draw(weighted, label="weighted"):
        wshape = data.draw(broadcastable_weight_shapes(shape, weight_keep), label="weight shape")
        wdtype = data.draw(st.sampled_from(weight_dtypes), label="weight dtype") or dtype
        wspec = like_input(data.draw(values_of(len(wshape)), label="weight"), ndim - len(wshape))
        if not weight_layout:
            wspec = replace(wspec, layout=Layout(wspec.layout.perm, *(
                (v,) * len(wshape) for v in (1, 0, False))))
        w = materialize(wspec, wshape, wdtype, device,
                        integer_weight if wdtype == torch.int64 else weight_values)
    if reduction == "none":
        g = materialize(like_input(data.draw(values_of(ndim), label="grad")), shape, dtype, device,
                        grad_values)
    else:
        g = torch.tensor(data.draw(st.floats(-2, 2), label="grad"), dtype=dtype, device=device)
    extra = loss.extra(data.draw, shape, dtype, device)
    note(f"strides: input {x.stride()} target {t.stride()} "
         f"weight {None if w is None else w.stride()} grad {g.stride()}")
    return Example(x, t, w, g, reduction, wrt, extra)


def check(loss, ex):
    """The example's loss and gradients against the oracle, their strides against PyTorch's, the
    operands' storages byte for byte."""
    operands = ex.operands()
    before = [storage_bytes(v) for v in operands]
    actual = run(loss.ours, *leaves(ex.x, ex.t, ex.wrt), ex.w, ex.reduction, ex.g, ex.wrt,
                 ex.extra)
    for v, b in zip(operands, before):
        assert torch.equal(storage_bytes(v), b), "an operand's storage was written"
    for a in actual:
        if a.numel():
            assert all(a.untyped_storage().data_ptr() != v.untyped_storage().data_ptr()
                       for v in operands), "an output shares an operand's storage"

    # PyTorch on the operands as they are: the layout (strides) of every output.
    layout_ref = run(loss.reference, *leaves(ex.x, ex.t, ex.wrt), ex.w, ex.reduction, ex.g, ex.wrt,
                     ex.extra)
    values_ref = expected(loss, ex.x, ex.t, ex.w, ex.reduction, ex.g, ex.wrt, ex.extra)
    # Where ours and the oracle part, ours must be as close to float64 (oracle.py): the float32 of
    # the reference, in which the half types are computed too, cancels where ours need not.
    float64_ref = functools.cache(lambda: expected(loss.exact, *(float64_of(v) for v in (
        ex.x, ex.t, ex.w)), ex.reduction, float64_of(ex.g), ex.wrt,
        {k: float64_of(v) for k, v in ex.extra.items()}))
    for k, (name, a, v, s) in enumerate(zip(("loss", "grad 1", "grad 2"), actual, values_ref,
                                            layout_ref)):
        if currently_in_test_context():  # check() also serves plain tests
            note(f"{name}: ours strides {a.stride()}, PyTorch's {s.stride()}")
        if loss.limits_beyond_reference and name != "loss":
            v = with_limits(a, v, lambda k=k: float64_ref()[k])
        assert_as_accurate(a, v, lambda k=k: float64_ref()[k], name)
        assert significant_strides(a) == significant_strides(layout_of(loss, name, ex, s)), (
            name, a.stride(), s.stride())


def with_limits(actual, expected, reference):
    """A gradient's expected value, where it is NaN (at finite operands: the drawn values are),
    replaced by the loss's limit: the float64 reference() where that is a number, else actual,
    which must be finite."""
    nan = expected.isnan()
    if not nan.any():
        return expected
    assert actual[nan].isfinite().all(), "NaN or inf where the limit is finite"
    reference = reference().to(expected.dtype)
    return torch.where(nan, torch.where(reference.isnan(), actual, reference), expected)


def layout_of(loss, name, ex, theirs):
    """The layout bce_ext's output must have: PyTorch's for BCE (empty_like of the input); for the
    others their own rule (the 'none' loss like loss.loss_like, the gradients like the input),
    since the reference's there follow from its chain of ops and vary with the operands."""
    if loss.pytorch_layouts or theirs.dim() == 0:
        return theirs
    return torch.empty_like({"input": ex.x, "target": ex.t}[loss.loss_like] if name == "loss"
                            else ex.x)


each_device = pytest.mark.parametrize("device", DEVICES)
each_loss = pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
# The weight tests: the losses that take a weight.
each_weighted_loss = pytest.mark.parametrize(
    "loss", [loss for loss in ALL_LOSSES if loss.takes_weight], ids=repr)


@each_device
@each_loss
@given(data=st.data())
def test_matches_oracle(loss, device, data):
    check(loss, draw_example(data, loss, device))


@st.composite
def many_rows(draw):
    """Hundreds to thousands of rows over one to three short dims, among them in any place."""
    short = draw(st.lists(st.integers(1, 8), min_size=1, max_size=3))
    rows = draw(st.integers(257, max(257, 20_000 // math.prod(short))))
    at = draw(st.integers(0, len(short)))
    return tuple(short[:at] + [rows] + short[at:])


def rows_outermost(shape):
    """Layouts with the longest dim (the rows) outermost in memory, the others in any order."""
    rows = max(range(len(shape)), key=lambda d: shape[d])
    others = [d for d in range(len(shape)) if d != rows]
    return st.builds(lambda order: Layout((rows,) + tuple(order), *(
        (v,) * len(shape) for v in (1, 0, False))), st.permutations(others))


@each_device
@each_weighted_loss
@given(data=st.data())
def test_weight_tables(loss, device, data):
    """A weight of mostly real (not 1) dims that repeats over many rows, the operands laid out
    alike, rows outermost and the other dims in any order (as channels_last, say), the weight of
    the input's dtype: the kernels read it in place, or tile it."""
    ex = draw_example(data, loss, device, shapes=many_rows(), alike=st.just(True),
                      weighted=st.just(True), weight_dtypes=(None,), weight_layout=False,
                      weight_keep=(True, True, True, False), input_layouts=rows_outermost)
    check(loss, ex)


@st.composite
def weights_that_do_not_broadcast(draw, shape):
    """(weight shape, larger): a weight shape that torch.broadcast_shapes refuses with the target's
    (larger False: a dim of another size than the target's, not 1), or that broadcasts with it
    to more than the input's shape (larger True: more dims, or a size > 1 where the target has 1),
    which PyTorch's in-place multiply refuses."""
    ndim = len(shape)
    wshape = list(draw(broadcastable_weight_shapes(shape)))
    lead = ndim - len(wshape)
    free = [d for d in range(len(wshape)) if shape[lead + d] != 1]
    if free and draw(st.booleans()):
        d = draw(st.sampled_from(free))
        wshape[d] = draw(st.integers(2, 7).filter(lambda n: n != shape[lead + d]))
        return tuple(wshape), False
    ones = [d for d in range(len(wshape)) if shape[lead + d] == 1]
    if ones and draw(st.booleans()):
        wshape[draw(st.sampled_from(ones))] = draw(st.integers(2, 5))
    else:  # more dims than the input
        wshape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)) + list(shape)
    return tuple(wshape), True


@each_device
@each_weighted_loss
@given(data=st.data())
def test_weight_that_does_not_broadcast(loss, device, data):
    """PyTorch's exception (type; text for a weight that broadcasts to more than the input: the
    text of the other kind is a known defect, test_bad_input.test_weight_not_broadcastable_message),
    then a valid call works."""
    shape = data.draw(SMALL, label="shape")
    dtype = data.draw(st.sampled_from(loss.dtypes), label="dtype")
    reduction = data.draw(st.sampled_from(REDUCTIONS), label="reduction")
    wshape, larger = data.draw(weights_that_do_not_broadcast(shape), label="weight shape, larger")
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = loss.input_values(shape, "uniform", gen).to(dtype).to(device)
    t = loss.target_values(shape, "uniform", gen).to(dtype).to(device)
    w = weight_values(wshape, "uniform", gen).to(dtype).to(device)
    errors = []
    # (mmdetection's loss * weight broadcasts the loss up where it can: bce_ext raises there.)
    fns = (loss.ours,) if loss.reference_broadcasts_up and larger else (loss.ours, loss.reference)
    for fn in fns:
        with pytest.raises(RuntimeError) as info:
            fn(x, t, weight=w, reduction=reduction)
        errors.append(info.value)
    ours, theirs = errors[0], errors[-1]
    assert type(ours) is type(theirs)
    if larger and loss.error_texts:
        assert str(ours).splitlines()[0] == str(theirs).splitlines()[0]
    assert_valid_call_works(loss, device, dtype)


@each_weighted_loss
def test_dense_noncontiguous_weight(loss):
    """A weight dense in a non-identity layout over many rows (the weight table is tiled): a defect
    once (tiled in the weight's logical order, not its memory order)."""
    gen = torch.Generator().manual_seed(0)
    x = loss.input_values((300, 8, 4), "uniform", gen).float().transpose(1, 2)
    t = loss.target_values((300, 8, 4), "uniform", gen).float().transpose(1, 2)
    w = torch.rand(8, 4, generator=gen).t()
    for reduction in REDUCTIONS:
        g = torch.rand(x.shape, generator=gen) if reduction == "none" else torch.tensor(0.5)
        check(loss, Example(x, t, w, g, reduction, "both", {}))


# Found by HYPOTHESIS_PROFILE=long: the focal loss's grad_target at a large |x| in float32, where
# its terms (dalpha_t/dt * ce against alpha_t * x, each about |x| / 2) cancel to a result about
# |x| t (true values from mpmath: 3.8766861, -0.099423260). Once less accurate than torchvision's
# there (3.8764648, -0.09942767); now summed without the cancellation (sigmoid_focal.h).
CANCELLING = [(-1e4, 0.7496123313903809, 0.25, 0.0), (104.0, 0.0006377352983690798, 0.75, 1.0)]


@pytest.mark.parametrize("x,t,alpha,gamma", CANCELLING, ids=str)
def test_focal_grad_target_where_terms_cancel(x, t, alpha, gamma):
    check(FOCAL, Example(torch.tensor([x]), torch.tensor([t]), None, torch.ones(1), "none", "both",
                         {"alpha": alpha, "gamma": gamma}))
    # Within float32's rounding of the float64 truth, not only as close to it as torchvision.
    kw = {"alpha": alpha, "gamma": gamma, "reduction": "none"}
    grads = []
    for fn, dtype in ((FOCAL.ours, torch.float32), (FOCAL.exact.reference, torch.float64)):
        tt = torch.tensor([t], dtype=dtype, requires_grad=True)
        grads.append(torch.autograd.grad(fn(torch.tensor([x], dtype=dtype), tt, **kw).sum(), tt)[0])
    torch.testing.assert_close(grads[0].double(), grads[1], rtol=2 ** -22, atol=0)
