"""Bad input: PyTorch's exception type and text (docs/behaviour.md, section 4), and a working call
right after."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from losses import ALL_LOSSES
from oracle import assert_matches
from test_binary_cross_entropy import ROW as BCE
from test_binary_cross_entropy_with_logits import ROW as BCE_WITH_LOGITS

import bce_ext


def raised(fn, *args, **kwargs):
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    return info.value


def assert_same_error(args, kwargs=None, match_text=True, loss=BCE):
    """bce_ext raises what PyTorch raises for the same call, then still works. PyTorch runs on one
    thread: with more, which of two bad elements it reports depends on the thread timing, and the
    contract is its serial, element-by-element order."""
    kwargs = kwargs or {}
    ours = raised(loss.ours, *args, **kwargs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        theirs = raised(loss.theirs, *args, **kwargs)
    finally:
        torch.set_num_threads(threads)
    assert isinstance(ours, type(theirs)), (ours, theirs)
    if match_text:
        assert str(ours).splitlines()[0] == str(theirs).splitlines()[0]
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    device = "cpu" if device.type == "meta" else device
    x, t = torch.rand(4, device=device), torch.rand(4, device=device)
    assert_matches(loss.ours(x, t), loss.theirs(x, t))
    return ours


def _logits_cases(device):
    """Bad calls of the logits loss, each with PyTorch's exception and text."""
    x, t = torch.randn(2, 3, device=device), torch.rand(2, 3, device=device)
    r = lambda *shape: torch.rand(*shape, device=device)  # noqa: E731
    yield "target_size", (x, t.reshape(3, 2)), {}
    yield "reduction", (x, t), {"reduction": "avg"}
    yield "weight_broadcast", (x, t), {"weight": r(4)}
    yield "weight_larger", (x, t), {"weight": r(4, 2, 3)}
    yield "pos_weight_broadcast", (x, t), {"pos_weight": r(4)}
    yield "pos_weight_larger", (x, t), {"pos_weight": r(4, 2, 3)}
    yield "integer_target", (x, t.long()), {}
    yield "bool_target", (x, t.bool()), {}
    yield "integer_input", (x.long(), t), {}
    yield "complex_input", (x.to(torch.complex64), t.to(torch.complex64)), {}
    yield "complex_weight", (x, t), {"weight": r(3).to(torch.complex64)}
    yield "weight_requires_grad", (x, t), {"weight": r(3).requires_grad_()}
    yield "pos_weight_requires_grad", (x, t), {"pos_weight": r(3).requires_grad_()}
    yield "meta_weight", (x, t), {"weight": torch.rand(3, device="meta")}
    yield "meta_pos_weight", (x, t), {"pos_weight": torch.rand(3, device="meta")}
    yield "meta_target", (x, torch.rand(2, 3, device="meta")), {}
    yield "meta_input", (torch.rand(2, 3, device="meta"), t), {}
    yield "none_target", (x, None), {}


@pytest.mark.parametrize("case", [name for name, _, _ in _logits_cases("cpu")])
def test_logits_errors(device, case):
    args, kwargs = next((a, k) for name, a, k in _logits_cases(device) if name == case)
    assert_same_error(args, kwargs, loss=BCE_WITH_LOGITS)


# The other errors here are BCE's and the logits loss's texts; the focal loss's, through every entry
# point, are test_bad_input.py's and test_sigmoid_focal_loss.py's.
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_backward_op_takes_one_value_for_a_reduced_loss(loss):
    x, t = torch.rand(3), torch.rand(3)
    with pytest.raises(RuntimeError, match="a reduced loss takes a one-element gradient"):
        loss.backward_op(torch.ones(3), x, t, reduction=1, output_mask=[True, True])


def test_target_size(device):
    e = assert_same_error((torch.rand(3, device=device), torch.rand(3, 1, device=device)))
    assert isinstance(e, ValueError)
    assert "Using a target size (torch.Size([3, 1]))" in str(e)


def test_target_size_zero_dim(device):
    assert_same_error((torch.rand((), device=device), torch.rand(1, device=device)))


def test_unknown_reduction(device):
    e = assert_same_error((torch.rand(3, device=device), torch.rand(3, device=device)),
                          {"reduction": "avg"})
    assert isinstance(e, ValueError)


def test_reduction_code_of_the_op(device):
    x = torch.rand(3, device=device)
    with pytest.raises(ValueError, match="5 is not a valid value for reduction"):
        torch.ops.bce_ext.binary_cross_entropy(x, x, None, 5)


@pytest.mark.parametrize("shape,wshape", [((2, 3), (5,)), ((2, 4), (3, 4)), ((2, 1), (3, 4)),
                                          ((5,), (2, 3)), ((2, 3), (2, 5, 3)),
                                          ((4, 2, 3), (3, 1, 1))],
                         ids=str)
def test_weight_not_broadcastable(device, shape, wshape):
    """PyTorch's message, from torch.broadcast_shapes in its functional (the shape it reports is the
    common shape as far as it got)."""
    x, t = torch.rand(shape, device=device), torch.rand(shape, device=device)
    e = assert_same_error((x, t, torch.rand(wshape, device=device)))
    assert isinstance(e, RuntimeError)


def test_target_or_input_not_a_tensor():
    """As PyTorch's functional, which reads target.size() then input.size(): AttributeError."""
    x = torch.rand(3)
    for args in ((x, None), (None, x), (x, [0.5, 0.5, 0.5])):
        ours = raised(bce_ext.binary_cross_entropy, *args)
        theirs = raised(F.binary_cross_entropy, *args)
        assert type(ours) is type(theirs) is AttributeError
        assert str(ours) == str(theirs)


@pytest.mark.parametrize("which", ["input", "target", "weight"])
def test_meta_tensor_mixed_with_cpu_tensors(which):
    """A meta tensor among CPU tensors: PyTorch's message, never uninitialised memory or a meta
    result (the dispatcher sends such a call to the Meta kernel, which checks as the real ones)."""
    args = [torch.rand(2, 3), torch.rand(2, 3), torch.rand(3)]
    args[["input", "target", "weight"].index(which)] = torch.empty(
        args[["input", "target", "weight"].index(which)].shape, device="meta")
    assert_same_error(tuple(args))


def test_meta_tensors_alone():
    """All-meta calls give what the real kernels would: shapes, strides and dtypes, no data."""
    x = torch.empty(4, 3, 5, 2, device="meta").contiguous(memory_format=torch.channels_last)
    for reduction in ("none", "mean", "sum"):
        out = bce_ext.binary_cross_entropy(x, x, torch.empty(2, device="meta"), reduction=reduction)
        ref = F.binary_cross_entropy(x, x, torch.empty(2, device="meta"), reduction=reduction)
        assert (out.device, out.shape, out.stride(), out.dtype) == \
            (ref.device, ref.shape, ref.stride(), ref.dtype)
    gi, gt = torch.ops.bce_ext.binary_cross_entropy_backward(
        torch.empty((), device="meta"), x, x, None, 1, [True, True])
    assert gi.device.type == gt.device.type == "meta"
    assert gi.shape == gt.shape == x.shape and gi.stride() == x.stride()


def test_meta_kernels_check_shapes_and_dtypes():
    """The Meta kernels (and so torch.compile's fake tensors) make the real kernels' checks."""
    x = torch.empty(2, 3, device="meta")
    with pytest.raises(ValueError, match="Using a target size"):
        bce_ext.binary_cross_entropy(x, torch.empty(3, 2, device="meta"))
    with pytest.raises(RuntimeError, match="Found dtype Double but expected Float"):
        bce_ext.binary_cross_entropy(x, x.double())
    # A weight that does not broadcast: the installed PyTorch's message (it changed in 2.13).
    with pytest.raises(RuntimeError) as theirs:
        F.binary_cross_entropy(torch.rand(2, 3), torch.rand(2, 3), torch.rand(4))
    with pytest.raises(RuntimeError) as ours:
        bce_ext.binary_cross_entropy(x, x, torch.empty(4, device="meta"))
    assert str(ours.value).splitlines()[0] == str(theirs.value).splitlines()[0]
    # Under torch.compile the fake kernel raises while tracing (dynamo wraps the error).
    torch._dynamo.reset()
    with pytest.raises(Exception, match="Using a target size"):
        torch.compile(bce_ext.binary_cross_entropy, backend="eager", fullgraph=True)(
            torch.rand(2, 3), torch.rand(3, 2))


def test_weight_larger_than_input(device):
    x, t = torch.rand(2, 3, device=device), torch.rand(2, 3, device=device)
    assert_same_error((x, t, torch.rand(4, 2, 3, device=device)))


@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                    (torch.float16, torch.float32), (torch.float32, torch.int64),
                                    (torch.float32, torch.bool)], ids=str)
def test_dtype_mismatch(device, dtypes):
    x = torch.rand(3, device=device).to(dtypes[0])
    t = torch.rand(3, device=device).round().to(dtypes[1])
    e = assert_same_error((x, t))
    assert isinstance(e, RuntimeError)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64], ids=str)
def test_dtype_not_supported(device, dtype):
    x = torch.ones(3, device=device).to(dtype)
    assert_same_error((x, x.clone()))


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["input", "target"])
def test_out_of_range_cpu(which, bad):
    for position in (0, 5, 40_000):  # first element, inside, another chunk
        x = torch.rand(50_000)
        t = torch.rand(50_000)
        (x if which == "input" else t)[position] = bad
        e = assert_same_error((x, t))
        assert str(e) == f"all elements of {which} should be between 0 and 1"


def test_first_bad_element_decides_the_message():
    """PyTorch checks input then target element by element: the first bad element names the one."""
    x, t = torch.rand(70_000), torch.rand(70_000)
    x[60_000] = 2.0
    t[50_000] = -1.0
    assert_same_error((x, t))
    x[10] = float("nan")
    assert_same_error((x, t))


def test_weight_requires_grad():
    x = torch.rand(3, requires_grad=True)
    t = torch.rand(3)
    w = torch.rand(3, requires_grad=True)
    e = assert_same_error((x, t, w))
    assert "not differentiable with respect to argument 'weight'" in str(e)
    with torch.no_grad():  # as PyTorch: allowed without grad mode
        assert_matches(bce_ext.binary_cross_entropy(x, t, w), F.binary_cross_entropy(x, t, w))


def test_devices_differ():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    x, t = torch.rand(3), torch.rand(3, device="cuda")
    with pytest.raises(RuntimeError, match="cpu") as info:
        bce_ext.binary_cross_entropy(x, t)
    assert "cuda" in str(info.value)


def _warnings_of(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(w.message) for w in caught]


@pytest.mark.parametrize("legacy", [{"size_average": False}, {"reduce": False},
                                    {"size_average": True, "reduce": True},
                                    {"reduction": "elementwise_mean"}], ids=str)
def test_legacy_arguments_warn_and_map(device, legacy):
    x, t = torch.rand(4, 3, device=device), torch.rand(4, 3, device=device)
    ours, ours_warnings = _warnings_of(bce_ext.binary_cross_entropy, x, t, **legacy)
    theirs, their_warnings = _warnings_of(F.binary_cross_entropy, x, t, **legacy)
    assert ours_warnings == their_warnings and ours_warnings
    assert_matches(ours, theirs)
    module, module_warnings = _warnings_of(bce_ext.BCELoss, **legacy)
    ref_module, ref_warnings = _warnings_of(torch.nn.BCELoss, **legacy)
    assert module_warnings == ref_warnings
    assert module.reduction == ref_module.reduction
