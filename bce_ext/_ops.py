"""Loads the native ops and registers what the dispatcher needs beyond the kernels: fake (meta)
kernels for torch.compile, and autograd for both ops (so double backward works)."""
import torch

from . import _C  # noqa: F401  (loading the library registers torch.ops.bce_ext.*)

forward_op = torch.ops.bce_ext.binary_cross_entropy.default
backward_op = torch.ops.bce_ext.binary_cross_entropy_backward.default

# The constant that PyTorch's double-backward formulas add to x and 1 - x (`auto eps = 1e-12;` in
# torch/csrc/autograd/FunctionsManual.cpp); a double, unlike the float EPSILON of the first gradient.
DOUBLE_BACKWARD_EPS = 1e-12
REDUCTION_MEAN = 1

WEIGHT_GRAD_ERROR = (
    "The function 'binary_cross_entropy' is not differentiable with respect to argument 'weight'. "
    "This input cannot have requires_grad True."
)


@torch.library.register_fake("bce_ext::binary_cross_entropy")
def _forward_fake(input, target, weight=None, reduction=REDUCTION_MEAN):
    return torch.empty_like(input) if reduction == 0 else input.new_empty(())


@torch.library.register_fake("bce_ext::binary_cross_entropy_backward")
def _backward_fake(grad_output, input, target, weight=None, reduction=REDUCTION_MEAN,
                   output_mask=(True, False)):
    def one(wanted):
        return torch.empty_like(input) if wanted else input.new_empty((0,))
    return one(output_mask[0]), one(output_mask[1])


class BinaryCrossEntropyFunction(torch.autograd.Function):
    """Binary cross entropy as a custom autograd Function over the native ops.

    ``BinaryCrossEntropyFunction.apply(input, target, weight=None, reduction=1)`` with ATen's
    reduction codes (0 none, 1 mean, 2 sum). Its setup_context and backward are also what is
    registered as the autograd of ``torch.ops.bce_ext.binary_cross_entropy``, so both paths are one.
    """

    @staticmethod
    def forward(input, target, weight=None, reduction=REDUCTION_MEAN):
        return forward_op(input, target, weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction = (tuple(inputs) + (None, REDUCTION_MEAN))[:4]
        if weight is not None and weight.requires_grad:
            raise RuntimeError(WEIGHT_GRAD_ERROR)
        ctx.save_for_backward(input, target, weight)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad):
        input, target, weight = ctx.saved_tensors
        want_input, want_target = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_input, grad_target = backward_op(grad, input, target, weight, ctx.reduction,
                                              [want_input, want_target])
        return (grad_input if want_input else None, grad_target if want_target else None,
                None, None)


def _backward_setup_context(ctx, inputs, output):
    grad, input, target, weight, reduction, output_mask = inputs
    # An output nobody differentiates must add nothing (not 0 * inf = NaN at x = 0 or 1).
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(grad, input, target, weight)
    ctx.reduction = reduction
    ctx.output_mask = output_mask


def _backward_backward(ctx, gg_input, gg_target):
    """Derivatives of (grad_input, grad_target) with PyTorch's formulas:
    binary_cross_entropy_double_backward{,_grad_output,_target} in FunctionsManual.cpp for
    grad_input, and the autograd of -logit(x) * g * w / N for grad_target. Written with torch ops,
    so they are differentiable in turn."""
    g, x, t, w = ctx.saved_tensors
    eps = DOUBLE_BACKWARD_EPS
    scale = 1.0 / x.numel() if ctx.reduction == REDUCTION_MEAN else 1.0
    if w is not None:
        w = w.to(x.dtype)

    def weighted(v):
        v = v * w if w is not None else v
        return v * scale if scale != 1.0 else v

    d_grad = d_input = d_target = None
    if ctx.output_mask[0] and gg_input is not None:
        d_grad = weighted(gg_input * (x - t) / ((x + eps) * (1 - x + eps)))
        d_input = weighted(gg_input * g * (x * x - 2 * x * t + t)
                           / ((x + eps).pow(2) * (1 - x + eps).pow(2)))
        d_target = weighted(-gg_input * g / ((1 - x) * x).clamp_min(eps))
    if ctx.output_mask[1] and gg_target is not None:
        dg = weighted(gg_target * -torch.logit(x))
        dx = weighted(-gg_target * g / (x * (1 - x)))
        d_grad = dg if d_grad is None else d_grad + dg
        d_input = dx if d_input is None else d_input + dx
    if d_grad is not None:
        d_grad = d_grad.sum_to_size(g.shape) if g.dim() else d_grad.sum().reshape(g.shape)
    return d_grad, d_input, d_target, None, None, None


torch.library.register_autograd("bce_ext::binary_cross_entropy", BinaryCrossEntropyFunction.backward,
                                setup_context=BinaryCrossEntropyFunction.setup_context)
torch.library.register_autograd("bce_ext::binary_cross_entropy_backward", _backward_backward,
                                setup_context=_backward_setup_context)
