"""The pairwise sigmoid (SigLIP) loss without its B x B matrix: siglip_loss and SigLipLoss, a
drop-in for open_clip's SigLipLoss (open-clip-torch 3.3.0), on bce_ext's tiled op
(csrc/siglip/siglip_loss.cpp). Not an element-wise loss: it is outside the registry of those.
"""
import torch
import torch.distributed as dist

from .. import _C  # noqa: F401  (loading the library registers the ops)
from .._common import ArgumentError

__all__ = ["SigLipLoss", "siglip_loss"]

op = torch.ops.bce_ext.siglip_loss.default

DIST_IMPLS = ("bidir", "shift", "reduce", "gather")


def _autocast(image_features, text_features):
    """The features in autocast's dtype where autocast is on for their device: open_clip's logits
    are a matrix product, which autocast runs in its lower precision."""
    device = image_features.device.type
    if device in ("cpu", "cuda") and torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        return image_features.to(dtype), text_features.to(dtype)
    return image_features, text_features


def siglip_loss(image_features, text_features, logit_scale, logit_bias=None, *, positives=None,
                text_positives=None, max_tile_bytes=None):
    r"""SigLIP's pairwise sigmoid loss of one process, without the B x B logits:
    ``-logsigmoid(z * (logit_scale * image_features @ text_features.T + logit_bias)).sum() / B``
    with z = +1 for a positive pair and -1 otherwise, B = ``image_features.shape[0]``; the value
    and gradients of open_clip's ``SigLipLoss`` with ``world_size=1``.

    Args:
        image_features, text_features: (B, D) and (Bt, D), one floating dtype (float32, float64,
            float16, bfloat16; half types accumulate in float32), on one device.
        logit_scale: the already-exponentiated scale, 0-dim or of shape (1,); learnable (a plain
            number is a constant).
        logit_bias: the bias, 0-dim or (1,), or None (no bias); learnable (a number: constant).
        positives: keyword only: int64 ids, one per image (and, unless ``text_positives`` is
            given, per text): pairs with equal ids are positives (several positives per row, for
            multi-caption batches). None: the diagonal (image i with text i; B == Bt).
        text_positives: the texts' ids where they differ from ``positives``'s.
        max_tile_bytes: the budget of the one tile of logits that exists at a time (default 32
            MiB). Forward and backward never hold more than one tile of the B x Bt matrix.

    With gradients wanted, they are computed in the forward's pass over the tiles (three matrix
    products per tile, as the dense loss's forward and backward), saved, and scaled by the
    incoming gradient in the backward; without, one product per tile. Double backward and
    forward-mode AD raise (not supported); so does vmap.
    """
    if positives is None and text_positives is not None:
        raise ValueError("siglip_loss: text_positives needs positives")
    text_ids = text_positives if text_positives is not None else positives
    # A plain number as scale or bias, as open_clip's formula takes it: a constant.
    wide = torch.float64 if image_features.dtype == torch.float64 else torch.float32
    if logit_scale is not None and not isinstance(logit_scale, torch.Tensor):
        logit_scale = torch.tensor(float(logit_scale), dtype=wide, device=image_features.device)
    if logit_bias is not None and not isinstance(logit_bias, torch.Tensor):
        logit_bias = torch.tensor(float(logit_bias), dtype=wide, device=image_features.device)
    # Under autocast open_clip's logits are a product in autocast's dtype and its loss is in the
    # features' dtype (its labels have it).
    dtype = image_features.dtype
    image_features, text_features = _autocast(image_features, text_features)
    return op(image_features, text_features, logit_scale, logit_bias, positives, text_ids,
              0 if max_tile_bytes is None else int(max_tile_bytes),
              None if image_features.dtype == dtype else dtype)


# --- the exchange of text blocks around the ring, with their gradients coming back -------------

class _Shift(torch.autograd.Function):
    """Sends `tensor` to the right neighbour and returns the left one's; its gradient goes back
    the other way (open_clip's neighbour_exchange_with_grad)."""

    @staticmethod
    def forward(ctx, left, right, group, tensor):
        ctx.left, ctx.right, ctx.group = left, right, group
        return _exchange(left, right, group, tensor)

    @staticmethod
    def backward(ctx, grad):
        return None, None, None, _exchange(ctx.right, ctx.left, ctx.group, grad.contiguous())


def _exchange(left, right, group, tensor):
    """Sends tensor to `right`, receives an alike tensor from `left` (every rank at once: the
    send does not wait)."""
    received = torch.empty_like(tensor)
    request = dist.isend(tensor.contiguous(), right, group=group)
    dist.recv(received, left, group=group)
    request.wait()
    return received


class SigLipLoss(torch.nn.Module):
    r"""Drop-in for open_clip's ``SigLipLoss`` (open-clip-torch 3.3.0): the same constructor and
    ``forward(image_features, text_features, logit_scale, logit_bias=None, output_dict=False)``,
    the same value and gradients on every rank (each divides by its local batch), on bce_ext's
    tiled loss: no B x B tensor on any rank.

    With ``world_size > 1`` (torch.distributed initialised, one rank per process), each rank adds
    to its own pairs' loss the negatives of its images against every other rank's text block,
    which travels around the ring (every ``dist_impl`` runs the one-way ring of ``'shift'``:
    W - 1 exchanges of one text block, the same values; the gradients of each block return to its
    owner along the ring). Local batches must be equal (open_clip's exchange needs them).
    ``cache_labels`` is accepted and unused (there are no labels to cache).
    """

    def __init__(self, cache_labels=False, rank=0, world_size=1, dist_impl=None, *,
                 max_tile_bytes=None):
        super().__init__()
        self.cache_labels, self.rank, self.world_size = cache_labels, rank, world_size
        self.dist_impl = dist_impl or "bidir"
        if self.dist_impl not in DIST_IMPLS:  # open_clip asserts it
            raise ArgumentError(f"dist_impl must be one of {', '.join(DIST_IMPLS)} or None, got "
                                f"{dist_impl!r}")
        self.max_tile_bytes = max_tile_bytes

    def forward(self, image_features, text_features, logit_scale, logit_bias=None,
                output_dict=False):
        loss = siglip_loss(image_features, text_features, logit_scale, logit_bias,
                           max_tile_bytes=self.max_tile_bytes)
        if self.world_size > 1:
            loss = loss + self._other_ranks(image_features, text_features, logit_scale,
                                            logit_bias)
        return {"contrastive_loss": loss} if output_dict else loss

    def _other_ranks(self, image_features, text_features, logit_scale, logit_bias):
        """The negatives of this rank's images against the other ranks' text blocks."""
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("SigLipLoss: world_size > 1 needs torch.distributed initialised")
        sizes = [torch.zeros((), dtype=torch.long, device=image_features.device)
                 for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor(image_features.shape[0],
                                            device=image_features.device))
        if any(int(s) != image_features.shape[0] for s in sizes):
            raise ValueError(f"SigLipLoss: every rank needs the same local batch (open_clip's "
                             f"exchange does), got {[int(s) for s in sizes]}")
        b = image_features.shape[0]
        device = image_features.device
        # Ids that make every pair of another rank's block a negative.
        image_ids = torch.zeros(b, dtype=torch.long, device=device)
        text_ids = torch.ones(text_features.shape[0], dtype=torch.long, device=device)
        left = (self.rank - 1) % self.world_size
        right = (self.rank + 1) % self.world_size
        total = None
        block = text_features
        for _ in range(self.world_size - 1):
            block = _Shift.apply(left, right, None, block)
            part = siglip_loss(image_features, block, logit_scale, logit_bias,
                               positives=image_ids, text_positives=text_ids,
                               max_tile_bytes=self.max_tile_bytes)
            total = part if total is None else total + part
        return total
