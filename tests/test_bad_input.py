"""Bad input for every loss in losses.ALL_LOSSES, through every entry point (functional, module,
the raw forward and backward ops): the exception its reference (PyTorch's loss, torchvision's focal
loss) raises for the same call, of the same type and, where the reference's text is part of the
contract, with the same first line; never a crash. Each error is followed by a valid call, which
must give the oracle's loss and gradients.

The errors (the argument checks of docs/behaviour.md, section 4): target size, reduction, weight
not broadcastable, dtypes that differ, dtypes not supported, devices that differ, values outside
[0, 1] on the CPU, a weight that requires grad, bad scalar arguments (the focal loss's alpha and
gamma); then a request for more memory than there is. Each runs the losses that have what it
tests (the weight tests the losses that take one, the range test the losses that check it).
Known defects are strict xfails that name the defect: they fail the suite once it is fixed, so the
mark is removed with the fix.
"""
import pytest
import torch
from conftest import DEVICES
from losses import ALL_LOSSES, assert_valid_call_works

ENTRY_POINTS = ["functional", "module", "forward_op", "backward_op"]
REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}


def weight_of(loss, w):
    """The weight as a keyword argument: none for a loss that takes none (whose ops have no such
    argument)."""
    assert loss.takes_weight or w is None, f"{loss} takes no weight"
    return {"weight": w} if loss.takes_weight else {}


def call(loss, entry, x, t, w=None, reduction="mean", **params):
    """The loss of x and t through `entry` (params: its scalar arguments, named alike in every
    entry point). The raw ops take a reduction code (an unknown string becomes 5); the backward op
    is asked for both gradients, with an incoming gradient of ones."""
    if entry == "functional":
        return loss.ours(x, t, weight=w, reduction=reduction, **params)
    if entry == "module" and loss.module_call is not None:
        return loss.module_call(loss.module, x, t, w, reduction, **params)
    if entry == "module":
        return loss.module(reduction=reduction, **weight_of(loss, w), **params)(x, t)
    code = REDUCTION_CODES.get(reduction, 5)
    if entry == "forward_op":
        return loss.forward_op(x, t, reduction=code, **weight_of(loss, w), **params)
    g = torch.ones((), dtype=x.dtype, device=x.device)
    g = g.expand(x.shape) if code == 0 else g
    return loss.backward_op(g, x, t, reduction=code, output_mask=[True, True],
                            **weight_of(loss, w), **params)


def reference(loss, entry, x, t, w=None, reduction="mean"):
    """What the reference does with the same call: its module for the module (torchvision has
    none: its function), its functional otherwise (the raw ops make the functional's checks;
    ATen's own raw op makes fewer)."""
    if entry == "module" and loss.reference_module is not None:
        return loss.reference_module(weight=w, reduction=reduction)(x, t)
    return loss.reference(x, t, weight=w, reduction=reduction)


def error_of(fn, *args, **kwargs):
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    return info.value


def first_line(e):
    return str(e).splitlines()[0] if str(e) else ""


def assert_same_error(loss, entry, x, t, w=None, reduction="mean", same_text=True):
    """`entry` raises PyTorch's exception for this call (its type; its first line if same_text),
    then a valid call on the same device works. PyTorch runs on one thread, whose element order
    decides which bad element it names. Returns our exception."""
    ours = error_of(call, loss, entry, x, t, w, reduction)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        theirs = error_of(reference, loss, entry, x, t, w, reduction)
    finally:
        torch.set_num_threads(threads)
    accepted = (type(theirs),) + tuple(v for k, v in loss.error_types if type(theirs) is k)
    assert isinstance(ours, accepted), (ours, theirs)
    if same_text and loss.error_texts and not (entry in ("forward_op", "backward_op") and
                                               reduction not in REDUCTION_CODES):
        assert first_line(ours) == first_line(theirs)
    assert_valid_call_works(loss, x.device)
    return ours


def probabilities(loss, shape, device, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (loss.input_values(shape, "uniform", gen).to(dtype).to(device),
            loss.target_values(shape, "uniform", gen).to(dtype).to(device))


params = pytest.mark.parametrize
each_loss = params("loss", ALL_LOSSES, ids=repr)
# The weight's errors: the losses that take one.
WEIGHTED = [loss for loss in ALL_LOSSES if loss.takes_weight]
each_weighted_loss = params("loss", WEIGHTED, ids=repr)
each_entry = params("entry", ENTRY_POINTS)
each_device = params("device", DEVICES)


@each_device
@each_entry
@each_loss
@params("shapes", [((3,), (3, 1)), ((), (1,)), ((0,), (1,)), ((2, 3), (3, 2)), ((4,), ())],
        ids=str)
def test_target_size(loss, entry, device, shapes):
    x, _ = probabilities(loss, shapes[0], device)
    _, t = probabilities(loss, shapes[1], device)
    assert isinstance(assert_same_error(loss, entry, x, t), ValueError)


@each_device
@each_entry
@each_loss
@params("reduction", ["avg", "", "MEAN", None])
def test_unknown_reduction(loss, entry, device, reduction):
    x, t = probabilities(loss, (3,), device)
    assert isinstance(assert_same_error(loss, entry, x, t, reduction=reduction), ValueError)


@each_device
@each_entry
@each_weighted_loss
@params("wshape", [(4, 2, 3), (1, 2, 3), (2, 2, 3), (3, 2, 1, 1)], ids=str)
def test_weight_broadcasts_beyond_the_input(loss, entry, device, wshape):
    """A weight that broadcasts with the target, but to a larger shape: PyTorch's in-place multiply
    raises "output with shape [2, 3] doesn't match the broadcast shape [4, 2, 3]"."""
    x, t = probabilities(loss, (2, 3), device)
    w = torch.rand(wshape, device=device)
    if loss.reference_broadcasts_up:  # mmdetection's loss * weight: bce_ext keeps PyTorch's error
        e = error_of(call, loss, entry, x, t, w)
        assert_valid_call_works(loss, x.device)
    else:
        e = assert_same_error(loss, entry, x, t, w)
    assert isinstance(e, RuntimeError)


NOT_BROADCASTABLE = [((2, 3), (5,)), ((2, 3), (3, 3)), ((0, 3), (2, 3)), ((4, 1, 3), (2, 2))]


@each_device
@each_entry
@each_weighted_loss
@params("shapes", NOT_BROADCASTABLE, ids=str)
def test_weight_not_broadcastable(loss, entry, device, shapes):
    x, t = probabilities(loss, shapes[0], device)
    e = assert_same_error(loss, entry, x, t, torch.rand(shapes[1], device=device), same_text=False)
    assert isinstance(e, RuntimeError)


@each_weighted_loss
def test_weight_not_broadcastable_message(loss):
    for xshape, wshape in NOT_BROADCASTABLE:
        x, t = probabilities(loss, xshape, "cpu")
        assert_same_error(loss, "functional", x, t, torch.rand(wshape))


@each_device
@each_entry
@each_loss
@params("dtypes", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                   (torch.float16, torch.float32), (torch.bfloat16, torch.float16),
                   (torch.float32, torch.int64), (torch.float32, torch.bool)], ids=str)
def test_dtypes_differ(loss, entry, device, dtypes):
    """BCE raises; the logits loss takes two floating dtypes (its result has the target's), as
    PyTorch, and raises for an integer or bool target."""
    x, t = probabilities(loss, (3,), device)
    x, t = x.to(dtypes[0]), t.round().to(dtypes[1])
    if loss.casts_target and entry in ("forward_op", "backward_op"):
        pytest.skip("its functional casts the target (mmdetection's type_as); its raw ops "
                    "promote, as the focal loss's (test_values.py)")
    try:
        expected = reference(loss, entry, x, t)
    except Exception:  # noqa: BLE001 (then ours must raise the same)
        assert isinstance(assert_same_error(loss, entry, x, t), RuntimeError)
        return
    got = call(loss, entry, x, t)
    got, expected = (got[0], expected) if entry == "backward_op" else (got, expected)
    if entry != "backward_op":
        # (mmdetection's float32 masks make its loss of a half-type pred float32; bce_ext's has
        # pred's dtype, docs/behaviour.md.)
        assert got.dtype == (x.dtype if loss.casts_target else expected.dtype)
        torch.testing.assert_close(got.double(), expected.double(), rtol=1e-2, atol=1e-3)


@each_device
@each_entry
@each_loss
@params("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64], ids=str)
def test_dtype_not_supported(loss, entry, device, dtype):
    x = torch.ones(3, device=device).to(dtype)
    assert_same_error(loss, entry, x, x.clone())


# the backward checks no values (PyTorch's neither)
@params("entry", ["functional", "module", "forward_op"])
@params("loss", [loss for loss in ALL_LOSSES if loss.checks_range], ids=repr)  # others take any
@params("where", ["input", "target"])
@params("bad", [-0.5, 1.5, float("nan"), float("inf"), -float("inf")])
@params("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_values_outside_zero_one_on_the_cpu(loss, entry, where, bad, dtype):
    x, t = probabilities(loss, (70_001,), "cpu", dtype)
    (x if where == "input" else t)[40_000] = bad  # in a later chunk, on the second thread
    e = assert_same_error(loss, entry, x, t)
    assert first_line(e) == f"all elements of {where} should be between 0 and 1"


@params("entry", ["functional", "module", "forward_op"])  # autograd's check: not the backward op
@each_weighted_loss
def test_weight_requires_grad(loss, entry):
    x, t = probabilities(loss, (3,), "cpu")
    x.requires_grad_(True)
    w = torch.rand(3, requires_grad=True)
    if not loss.reference_refuses_weight_grad:
        e = error_of(call, loss, entry, x, t, w)
        assert isinstance(e, RuntimeError)
        assert_valid_call_works(loss, x.device)
    else:
        e = assert_same_error(loss, entry, x, t, w)
    assert "not differentiable with respect to argument 'weight'" in str(e)


@each_entry
@each_loss
def test_devices_differ(loss, entry):
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU (the meta device mixed with the CPU: the test below)")
    x, t = probabilities(loss, (3,), "cuda")
    for args in [(x.cpu(), t), (x, t.cpu())] + ([(x, t, torch.rand(3))] if loss.takes_weight
                                                else []):
        e = error_of(call, loss, entry, *args)
        assert isinstance(e, RuntimeError) and "cpu" in str(e) and "cuda" in str(e), e
        assert_valid_call_works(loss, "cuda")


@each_entry
@params("loss,which", [(loss, which) for loss in ALL_LOSSES
                       for which in ("input", "target", "weight")
                       if which != "weight" or loss.takes_weight], ids=str)
def test_meta_and_cpu_mixed(loss, entry, which):
    x, t = probabilities(loss, (3,), "cpu")
    w = torch.rand(3) if loss.takes_weight else None
    args = tuple(v if v is None else v.to("meta" if name == which else "cpu")
                 for name, v in (("input", x), ("target", t), ("weight", w)))
    e = error_of(call, loss, entry, *args)
    if loss.casts_target and which == "target" and entry in ("functional", "module"):
        # mmdetection's target.type_as(pred) copies the target to pred's device first: its error.
        assert type(e) is type(error_of(reference, loss, entry, *args))
        return
    assert isinstance(e, RuntimeError) and "meta" in str(e) and "cpu" in str(e)


@params("entry", ["functional", "module"])
@params("loss", ALL_LOSSES, ids=repr)
def test_target_none(loss, entry):
    x, _ = probabilities(loss, (3,), "cpu")
    assert_same_error(loss, entry, x, None)


@params("entry,which", [("forward_op", "input"), ("forward_op", "target"),
                         ("backward_op", "grad"), ("backward_op", "input"),
                         ("backward_op", "target")])
@params("loss", ALL_LOSSES, ids=repr)
def test_raw_op_tensor_none(loss, entry, which):
    """A None for a required tensor of the raw ops: ATen's RuntimeError, naming the argument by its
    position and name (as torch.ops.aten.binary_cross_entropy does), not a size error."""
    x, t = probabilities(loss, (3,), "cpu")
    index = {"grad": 0, "input": 1, "target": 2}[which] - (entry == "forward_op")
    name = {"grad": "grad_output", "input": "self", "target": "target"}[which]
    g = None if which == "grad" else torch.ones(3)
    x_, t_ = (None if which == "input" else x), (None if which == "target" else t)
    if entry == "forward_op":
        e = error_of(loss.forward_op, x_, t_, reduction=0)
    else:
        e = error_of(loss.backward_op, g, x_, t_, reduction=0, output_mask=[True, True])
    assert isinstance(e, RuntimeError) and first_line(e) == (
        "Expected a proper Tensor but got None (or an undefined Tensor in C++) for argument "
        f"#{index} '{name}'")
    if loss.name == "binary_cross_entropy" and entry == "forward_op":
        theirs = error_of(torch.ops.aten.binary_cross_entropy, x_, t_)
        assert first_line(theirs) == first_line(e)
    assert_valid_call_works(loss, x.device)


@each_device
@each_entry
@params("loss,bad,error,message", [
    pytest.param(loss, *case, id=f"{loss}-" + ",".join(f"{k}={v}" for k, v in case[0].items()))
    for loss in ALL_LOSSES for case in loss.bad_params])
def test_bad_scalar_argument(loss, entry, device, bad, error, message):
    """Beyond the reference, which takes them silently (torchvision's focal loss: a NaN or negative
    gamma, an infinite alpha): bce_ext's own error, whatever the entry point."""
    x, t = probabilities(loss, (3,), device)
    e = error_of(call, loss, entry, x, t, **bad)
    assert isinstance(e, error) and first_line(e).startswith(message), e
    assert_valid_call_works(loss, device)


# More elements than any memory: 2**48 float32 elements (1 PiB), expanded from one element so that
# the operands themselves cost nothing. Beyond the 128 TiB of a process's address space, the
# allocation fails whatever the machine's overcommit setting.
HUGE = 2**48


@each_device
@each_entry
@each_loss
@params("reduction", ["none", "mean"])
def test_huge_request_is_out_of_memory(loss, entry, device, reduction):
    x, t = probabilities(loss, (1,), device)
    x, t = x.expand(HUGE), t.expand(HUGE)
    ours = error_of(call, loss, entry, x, t, reduction=reduction)
    theirs = error_of(torch.empty, HUGE, device=device)
    assert type(ours) is type(theirs), (ours, theirs)
    assert "allocate" in str(ours), ours
    assert_valid_call_works(loss, device)


@each_loss
def test_backward_op_gradient_of_the_wrong_size(loss):
    """The raw backward op: a reduced loss takes a one-element gradient, 'none' one of the input's
    shape; anything else is a Python exception."""
    if loss.backward_op is None:
        pytest.skip("no raw backward op")
    x, t = probabilities(loss, (3,), "cpu")
    for g, code in [(torch.ones(2), 1), (torch.ones(2), 2), (torch.ones(2), 0),
                    (torch.ones(3, 1), 0)]:
        e = error_of(loss.backward_op, g, x, t, reduction=code, output_mask=[True, True])
        assert isinstance(e, RuntimeError), e
        assert_valid_call_works(loss, "cpu")


@each_loss
def test_many_errors_then_valid_calls(loss):
    """Errors of every kind, one after another, interleaved with valid calls of every dtype."""
    x, t = probabilities(loss, (4, 9), "cpu")
    bad_value = x.clone()
    bad_value[1, 1] = 2.0
    bad_calls = [((x, t[:2]), {}), ((x.long(), t.long()), {})]
    if not loss.casts_target:
        bad_calls += [((x, t.long()), {})]
    bad_calls += [((x, t), params) for params, _, _ in loss.bad_params]
    if loss.takes_weight:
        bad_calls += [((x, t, torch.rand(5)), {})]
    if loss.checks_range:
        bad_calls += [((bad_value, t), {}), ((x, t.double()), {})]
    for i in range(3):
        for args, kwargs in bad_calls:
            with pytest.raises((RuntimeError, ValueError, NotImplementedError)):
                loss.ours(*args, **kwargs)
            for dtype in loss.dtypes:
                assert_valid_call_works(loss, "cpu", dtype, seed=i)
