"""SigLIP's pairwise sigmoid loss (bce_ext.siglip_loss, bce_ext.SigLipLoss) against open_clip's
SigLipLoss (open-clip-torch 3.3.0, its loss module loaded alone: installed with --no-deps, so that
its torchvision and timm requirements never move torch; without it, its formula below): values and
the gradients of both feature matrices, the scale and the bias, in float64 within 1e-10, float32
within 1e-5 of the float64 result, the half types within 1e-2; across batch sizes, tile budgets that
cut the B x B matrix into many ragged tiles, several positives per row, autocast, compile and
opcheck, the errors; and a memory cap that no B x B tensor could fit under. The distributed cases
are in test_siglip_distributed.py."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import bce_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CUDA = pytest.mark.skipif(not (torch.cuda.is_available() and bce_ext._C.with_cuda),
                          reason="needs a GPU and bce_ext's CUDA kernels")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def load_open_clip_loss():
    """open_clip's loss module alone (not the package, whose __init__ imports torchvision and
    timm), or None where open-clip-torch is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "loss.py")
    module_spec = importlib.util.spec_from_file_location("open_clip_loss_alone", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


OPEN_CLIP = load_open_clip_loss()


def formula(image, text, scale, bias=None, image_ids=None, text_ids=None):
    """open_clip's SigLipLoss._loss in torch ops (its get_logits and get_ground_truth), with
    positives by ids where given."""
    logits = scale * image @ text.T
    if bias is not None:
        logits = logits + bias
    if image_ids is None:
        labels = 2 * torch.eye(image.shape[0], dtype=image.dtype) - 1
    else:
        labels = 2 * (image_ids[:, None] == text_ids[None, :]).to(image.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / image.shape[0]


def reference(image, text, scale, bias):
    """open_clip's loss where installed, else its formula."""
    if OPEN_CLIP is not None:
        return OPEN_CLIP.SigLipLoss()(image, text, scale, bias)
    return formula(image, text, scale, bias)


def features(b, d, dtype=torch.float64, seed=0, bt=None):
    gen = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(b, d, generator=gen, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(bt or b, d, generator=gen, dtype=torch.float64), dim=-1)
    text[: min(b, bt or b)] += 0.5 * image[: min(b, bt or b)]  # matching pairs score higher
    return image.to(dtype), text.to(dtype)


def loss_and_grads(fn, image, text, scale, bias, **kw):
    leaves = [v.detach().clone().requires_grad_() if v is not None else None
              for v in (image, text, scale, bias)]
    out = fn(*leaves, **kw)
    grads = torch.autograd.grad(out, [v for v in leaves if v is not None])
    return out.detach(), grads


def relative(a, e):
    a, e = a.cpu().double(), e.cpu().double()
    return ((a - e).abs().max() / e.abs().max().clamp_min(1e-300)).item()


def on(device, *tensors):
    return [None if v is None else v.to(device) for v in tensors]


def test_the_oracle_is_open_clip_where_installed():
    if OPEN_CLIP is None:
        pytest.skip("open-clip-torch is not installed (pip install --no-deps open-clip-torch)")
    image, text = features(9, 4)
    scale, bias = torch.tensor(3.0, dtype=torch.float64), torch.tensor(-2.0, dtype=torch.float64)
    torch.testing.assert_close(OPEN_CLIP.SigLipLoss()(image, text, scale, bias),
                               formula(image, text, scale, bias), rtol=1e-14, atol=0)


# Batch, feature size and tile budget (bytes of float64 logits): one tile, ragged tiles of both
# dims, one row at a time, and a batch of one.
CASES = [(7, 5, 0), (300, 16, 8 * 64 * 7), (1000, 32, 8 * 4096 * 3), (257, 8, 8), (1, 3, 0),
         (130, 4, 8 * 130 * 129)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("b,d,tile", CASES, ids=str)
def test_float64_matches_open_clip(b, d, tile, bias, device):
    image, text = features(b, d)
    scale = torch.tensor(10.0, dtype=torch.float64)
    bias_t = torch.tensor(-10.0, dtype=torch.float64) if bias else None
    ours, our_grads = loss_and_grads(bce_ext.siglip_loss, *on(device, image, text, scale, bias_t),
                                     max_tile_bytes=tile)
    theirs, their_grads = loss_and_grads(reference, image, text, scale, bias_t)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert relative(ours, theirs) < 1e-10
    for a, e in zip(our_grads, their_grads):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert relative(a, e) < 1e-10


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2),
                                             (torch.float16, 1e-2)], ids=str)
@pytest.mark.parametrize("b,d,tile", [(300, 16, 4 * 64 * 7), (1000, 64, 0)], ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_lower_precision_against_the_float64_result(device, b, d, tile, dtype, tolerance):
    image, text = features(b, d)
    scale = torch.tensor([10.0], dtype=torch.float64)  # shape (1,), as some models keep it
    bias = torch.tensor([-10.0], dtype=torch.float64)
    truth, truth_grads = loss_and_grads(reference, image, text, scale, bias)
    ours, our_grads = loss_and_grads(
        bce_ext.siglip_loss, *on(device, image.to(dtype), text.to(dtype), scale.float(),
                                 bias.float()), max_tile_bytes=tile)
    assert ours.dtype == dtype
    assert relative(ours, truth) < tolerance
    for a, e in zip(our_grads, truth_grads):
        assert relative(a, e) < tolerance


def test_several_positives_per_row():
    b = 64
    image, text = features(b, 8, seed=3)
    ids = torch.randint(0, 20, (b,), generator=torch.Generator().manual_seed(4))
    scale, bias = torch.tensor(5.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)
    ours, our_grads = loss_and_grads(bce_ext.siglip_loss, image, text, scale, bias,
                                     positives=ids, max_tile_bytes=8 * 8 * 10)
    theirs, their_grads = loss_and_grads(
        lambda *a: formula(*a, image_ids=ids, text_ids=ids), image, text, scale, bias)
    assert relative(ours, theirs) < 1e-10
    for a, e in zip(our_grads, their_grads):
        assert relative(a, e) < 1e-10
    # Texts of their own ids (a rectangular batch: more texts than images).
    text_ids = torch.arange(b + 5) % 20
    image, text = features(b, 8, seed=5, bt=b + 5)
    ours = bce_ext.siglip_loss(image, text, scale, bias, positives=ids, text_positives=text_ids)
    torch.testing.assert_close(ours, formula(image, text, scale, bias, ids, text_ids),
                               rtol=1e-12, atol=0)


def test_plain_numbers_as_scale_and_bias():
    image, text = features(12, 4)
    ours = bce_ext.SigLipLoss()(image, text, 10.0, -10.0)
    torch.testing.assert_close(ours, formula(image, text, 10.0, -10.0), rtol=1e-12, atol=0)


def test_module_is_open_clips():
    image, text = features(20, 6)
    scale, bias = torch.tensor(2.0, dtype=torch.float64), torch.tensor(-1.0, dtype=torch.float64)
    module = bce_ext.SigLipLoss()
    out = module(image, text, scale, bias, output_dict=True)
    assert set(out) == {"contrastive_loss"}
    torch.testing.assert_close(out["contrastive_loss"], reference(image, text, scale, bias))
    with pytest.raises(ValueError, match="dist_impl must be one of"):
        bce_ext.SigLipLoss(dist_impl="ring")


def test_autocast_gives_open_clips_dtype():
    image, text = features(32, 8, dtype=torch.float32)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = bce_ext.siglip_loss(image, text, scale, bias)
        theirs = reference(image, text, scale, bias)
    assert ours.dtype == theirs.dtype
    assert relative(ours, theirs) < 2e-2


def test_compile_and_opcheck():
    image, text = features(40, 8, dtype=torch.float32)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    ops = torch.ops.bce_ext
    torch.library.opcheck(ops.siglip_loss.default,
                          (image, text, scale, bias, None, None, 4096, None))
    torch.library.opcheck(ops.siglip_loss_and_grads.default,
                          (image, text, scale, bias, None, None, True, 4096, None),
                          test_utils=("test_schema", "test_faketensor"))
    compiled = torch.compile(bce_ext.siglip_loss, fullgraph=True, backend="aot_eager")
    ours, our_grads = loss_and_grads(compiled, image, text, scale, bias)
    eager, eager_grads = loss_and_grads(bce_ext.siglip_loss, image, text, scale, bias)
    torch.testing.assert_close(ours, eager)
    for a, e in zip(our_grads, eager_grads):
        torch.testing.assert_close(a, e)


def test_unsupported_transforms_raise():
    image, text = features(6, 3)
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    x = image.clone().requires_grad_()
    loss = bce_ext.siglip_loss(x, text, scale)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(loss, x, create_graph=True)  # a graph of the gradients: none here
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(image, torch.ones_like(image))
        with pytest.raises(RuntimeError, match="forward-mode AD is not supported"):
            bce_ext.siglip_loss(dual, text, scale)


def test_bad_input_raises_clear_errors():
    image, text = features(6, 3)
    scale = torch.tensor(1.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="same batch size"):
        bce_ext.siglip_loss(image, text[:5], scale)
    with pytest.raises(ValueError, match="same feature size"):
        bce_ext.siglip_loss(image, text[:, :2], scale)
    with pytest.raises(ValueError, match="same dtype"):
        bce_ext.siglip_loss(image, text.float(), scale)
    with pytest.raises(ValueError, match="must be 2-D"):
        bce_ext.siglip_loss(image[0], text, scale)
    with pytest.raises(ValueError, match="logit_scale must be 0-dim or of shape"):
        bce_ext.siglip_loss(image, text, torch.ones(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="positives must be int64 ids"):
        bce_ext.siglip_loss(image, text, scale, positives=torch.zeros(6))
    with pytest.raises(ValueError, match="one id per row"):
        bce_ext.siglip_loss(image, text, scale, positives=torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16"):
        bce_ext.siglip_loss(image.int(), text.int(), scale)


PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys, torch, bce_ext
    b, d = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(b, d, generator=gen).requires_grad_()
    text = torch.randn(b, d, generator=gen).requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    small = bce_ext.siglip_loss(image[:64], text[:64], scale, bias)  # warm-up: code, pools
    small.backward()
    image.grad = text.grad = None
    # Gradients the size of the inputs, allocated before the measurement starts.
    image.grad, text.grad = torch.zeros_like(image), torch.zeros_like(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bce_ext.siglip_loss(image, text, scale, bias).backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
""")


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under AddressSanitizer freed memory is held in quarantine")
def test_no_b_by_b_tensor_peak_memory():
    # B = 8192: the float32 logits alone would be 256 MiB; the default tile is 32 MiB.
    b, d = 8192, 64
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(b), str(d)], check=True,
                         capture_output=True, text=True, cwd=HERE)
    growth = int(out.stdout.strip().splitlines()[-1])
    assert growth < (b * b * 4) // 4, f"peak RSS grew by {growth / 2**20:.0f} MiB"


@CUDA
def test_no_b_by_b_tensor_peak_memory_cuda():
    b, d = 8192, 64
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(b, d, generator=gen).cuda().requires_grad_()
    text = torch.randn(b, d, generator=gen).cuda().requires_grad_()
    scale = torch.tensor(10.0, device="cuda", requires_grad=True)
    bias = torch.tensor(-10.0, device="cuda", requires_grad=True)
    bce_ext.siglip_loss(image[:64], text[:64], scale, bias).backward()  # warm-up
    image.grad, text.grad = torch.zeros_like(image), torch.zeros_like(text)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    image.grad = text.grad = None
    bce_ext.siglip_loss(image, text, scale, bias).backward()
    torch.cuda.synchronize()
    growth = torch.cuda.max_memory_allocated() - base
    assert growth < (b * b * 4) // 4, f"peak grew by {growth / 2**20:.0f} MiB"
