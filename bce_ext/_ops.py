"""Loads the native ops (kernels and autograd are registered in C++), registers their fake kernels
for torch.compile, and defines the autograd.Functions that torch.func transforms and forward-mode
AD use: the C++ autograd has no forward mode."""
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


def _reject_weight_grad(weight):
    # As PyTorch's autograd codegen: only with grad mode on (setup_context runs with it off).
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(WEIGHT_GRAD_ERROR)


class BinaryCrossEntropyFunction(torch.autograd.Function):
    """Binary cross entropy as a custom autograd Function over the native ops.

    ``BinaryCrossEntropyFunction.apply(input, target, weight=None, reduction=1)`` with ATen's
    reduction codes (0 none, 1 mean, 2 sum). Reverse mode (to any order), forward mode (jvp) and
    vmap work. ``bce_ext.binary_cross_entropy`` uses it under torch.func transforms and forward-mode
    AD; otherwise it calls the op, whose autograd is the same math in C++ (csrc/autograd).
    """

    generate_vmap_rule = True

    @classmethod
    def apply(cls, input, target, weight=None, reduction=REDUCTION_MEAN):
        _reject_weight_grad(weight)
        return super().apply(input, target, weight, reduction)

    @staticmethod
    def forward(input, target, weight=None, reduction=REDUCTION_MEAN):
        # Straight to the kernels: the op's own (C++) autograd is not for torch.func.
        with torch._C._AutoDispatchBelowAutograd():
            return forward_op(input, target, weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction = inputs
        ctx.save_for_backward(input, target, weight)
        ctx.save_for_forward(input, target, weight)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad):
        input, target, weight = ctx.saved_tensors
        want_input, want_target = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_input, grad_target = BinaryCrossEntropyBackwardFunction.apply(
            grad, input, target, weight, ctx.reduction, want_input, want_target)
        return (grad_input if want_input else None, grad_target if want_target else None,
                None, None)

    @staticmethod
    def jvp(ctx, input_tangent, target_tangent, weight_tangent=None, reduction_tangent=None):
        # PyTorch's formula (derivatives.yaml): the reduction of the element-wise backward with
        # each tangent as the incoming gradient.
        input, target, weight = ctx.saved_tensors
        parts = []
        if input_tangent is not None:
            parts.append(BinaryCrossEntropyBackwardFunction.apply(
                input_tangent, input, target, weight, 0, True, False)[0])
        if target_tangent is not None:
            parts.append(BinaryCrossEntropyBackwardFunction.apply(
                target_tangent, input, target, weight, 0, False, True)[1])
        tangent = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        if ctx.reduction == 0:
            return tangent
        return tangent.mean() if ctx.reduction == REDUCTION_MEAN else tangent.sum()


def _second_derivatives(g, x, t, w, reduction, output_mask):
    """Partial derivatives of grad_input (gi) and grad_target (gt) with respect to the incoming
    gradient g, x and t, element-wise, with PyTorch's formulas: the
    binary_cross_entropy_double_backward{,_grad_output,_target} functions of FunctionsManual.cpp
    for gi, and the derivatives of -logit(x) * g * w / N for gt. Unwanted outputs get None."""
    eps = DOUBLE_BACKWARD_EPS
    scale = 1.0 / x.numel() if reduction == REDUCTION_MEAN else 1.0

    def weighted(v):
        v = v * w.to(x.dtype) if w is not None else v
        return v * scale if scale != 1.0 else v

    gi = gt = None
    if output_mask[0]:
        gi = {"g": weighted((x - t) / ((x + eps) * (1 - x + eps))),
              "x": weighted(g * (x * x - 2 * x * t + t) / ((x + eps).pow(2) * (1 - x + eps).pow(2))),
              "t": weighted(-g / ((1 - x) * x).clamp_min(eps))}
    if output_mask[1]:
        gt = {"g": weighted(-torch.logit(x)), "x": weighted(-g / (x * (1 - x)))}
    return gi, gt


class BinaryCrossEntropyBackwardFunction(torch.autograd.Function):
    """The backward op as an autograd Function, so that gradients of gradients (reverse or forward
    mode) work under torch.func. The op's own autograd (csrc/autograd) has the same backward."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, input, target, weight, reduction, want_input, want_target):
        # The mask is two arguments, not a list: torch.func treats a list as two more inputs.
        with torch._C._AutoDispatchBelowAutograd():
            return backward_op(grad, input, target, weight, reduction, [want_input, want_target])

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad, input, target, weight, reduction, want_input, want_target = inputs
        output_mask = (want_input, want_target)
        # An output nobody differentiates must add nothing (not 0 * inf = NaN at x = 0 or 1).
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grad, input, target, weight)
        ctx.save_for_forward(grad, input, target, weight)
        ctx.reduction = reduction
        ctx.output_mask = output_mask

    @staticmethod
    def backward(ctx, gg_input, gg_target):
        g, x, t, w = ctx.saved_tensors
        gi, gt = _second_derivatives(g, x, t, w, ctx.reduction, ctx.output_mask)
        terms = {"g": [], "x": [], "t": []}
        for d, gg in ((gi, gg_input), (gt, gg_target)):
            if d is not None and gg is not None:
                for name, coefficient in d.items():
                    terms[name].append(gg * coefficient)
        d_grad, d_input, d_target = (sum(terms[k][1:], terms[k][0]) if terms[k] else None
                                     for k in ("g", "x", "t"))
        if d_grad is not None:  # g was broadcast over the elements: sum back to its shape
            d_grad = d_grad.sum_to_size(g.shape) if g.dim() else d_grad.sum().reshape(g.shape)
        return d_grad, d_input, d_target, None, None, None, None

    @staticmethod
    def jvp(ctx, g_tangent, x_tangent, t_tangent, *unused_tangents):
        g, x, t, w = ctx.saved_tensors
        tangents = {"g": g_tangent, "x": x_tangent, "t": t_tangent}
        outputs = []
        for d in _second_derivatives(g, x, t, w, ctx.reduction, ctx.output_mask):
            if d is None:
                outputs.append(x.new_empty((0,)))
                continue
            parts = [tangents[k] * c for k, c in d.items() if tangents[k] is not None]
            outputs.append(sum(parts[1:], parts[0]) if parts else torch.zeros_like(x))
        return tuple(outputs)
