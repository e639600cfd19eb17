"""Loads the native ops and adds what is written in Python: their vmap rules, and the public
autograd.Function.

Everything else is registered in C++ when the library loads: the kernels (CPU, CUDA), the Meta
kernels that serve fake tensors under torch.compile, autocast, and autograd (reverse mode to any
order and forward mode, as PyTorch's own ops have; csrc/autograd).
"""
import torch

from . import _C  # noqa: F401  (loading the library registers torch.ops.bce_ext.*)
from ._registry import LOSSES

forward_op = torch.ops.bce_ext.binary_cross_entropy.default
backward_op = torch.ops.bce_ext.binary_cross_entropy_backward.default

REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = 0, 1, 2
# bce_ext's own reduction, for a call with an ignore_index: a float64 tensor (sum, count of the
# elements not ignored), which hands 'mean''s divisor from the forward to the backward.
REDUCTION_SUM_AND_COUNT = 3

# Each loss op: how many broadcast tensors (weight, pos_weight) follow input and target in its
# schema. Its backward op has the same arguments after grad_output, and output_mask after reduction.
LOSS_OPS = {entry.name: len(entry.tensors) for entry in LOSSES}


def _batch_first(value, bdim, batch_size):
    """`value` with its batch dimension first (expanded, a view, where it had none)."""
    if bdim is None:
        return value.expand(batch_size, *value.shape)
    return value.movedim(bdim, 0)


def _batched_table(table, bdim, ndim):
    """A weight or pos_weight for inputs batched as (B, *S) with len(S) == ndim: it broadcasts
    right-aligned against S, so a batched one gets singleton dims between its batch dim and its
    own."""
    if table is None or bdim is None:
        return table
    table = table.movedim(bdim, 0)
    return table.reshape(table.shape[:1] + (1,) * (ndim - table.dim() + 1) + table.shape[1:])


def _all_arguments(op, in_dims, args, kwargs):
    """Every argument of a call of `op`, in schema order (defaults and keywords filled in; a
    vmap rule gets only those the caller gave), and their batch dims (None for the added ones)."""
    args = list(args)
    for argument in op._schema.arguments[len(args):]:
        args.append(kwargs.get(argument.name, argument.default_value))
    return args, tuple(in_dims) + (None,) * (len(args) - len(in_dims))


def _kept_per_sample(target, ignore_index, batch_size):
    """The elements of each sample (target batched first) whose target is not ignore_index, as
    float64: 'mean''s divisor under vmap, where the kernels' count is over the whole batch."""
    return (target.reshape(batch_size, -1) != ignore_index).sum(1, dtype=torch.float64)


def _register_vmap_rules(name, tables):
    op = getattr(torch.ops.bce_ext, name).default
    grad_op = getattr(torch.ops.bce_ext, name + "_backward").default
    has_ignore = op._schema.arguments[-1].name == "ignore_index"

    @torch.library.register_vmap("bce_ext::" + name)
    def forward_rule(info, in_dims, *args, **kwargs):
        # One call over the whole batch with reduction 'none', then the per-sample reduction (in
        # double, as the kernels reduce).
        (input, target, *rest), in_dims = _all_arguments(op, in_dims, args, kwargs)
        broadcast, (reduction, *params) = rest[:tables], rest[tables:]
        ignore_index = params[-1] if has_ignore else None
        ndim = input.dim() - (in_dims[0] is not None)
        x = _batch_first(input, in_dims[0], info.batch_size)
        t = _batch_first(target, in_dims[1], info.batch_size)
        batched = [_batched_table(v, d, ndim) for v, d in zip(broadcast, in_dims[2:])]
        loss = op(x, t, *batched, REDUCTION_NONE, *params)
        if reduction == REDUCTION_NONE:
            return loss, 0
        total = loss.reshape(info.batch_size, -1).sum(1, dtype=torch.float64)
        if ignore_index is not None and reduction != REDUCTION_SUM:
            kept = _kept_per_sample(t, ignore_index, info.batch_size)
            if reduction == REDUCTION_SUM_AND_COUNT:
                return torch.stack([total, kept], 1), 0
            return (total / kept).to(loss.dtype), 0
        if reduction == REDUCTION_MEAN:
            total = total / loss[0].numel()
        return total.to(loss.dtype), 0

    @torch.library.register_vmap("bce_ext::" + name + "_backward")
    def backward_rule(info, in_dims, *args, **kwargs):
        (grad_output, input, target, *rest), in_dims = _all_arguments(grad_op, in_dims, args,
                                                                      kwargs)
        broadcast, (reduction, output_mask, *params) = rest[:tables], rest[tables:]
        kept = None
        if has_ignore:  # ignore_index and kept close the schema
            *params, kept = params
            kept_dim = in_dims[-1]
        ignore_index = params[-1] if has_ignore else None
        ndim = input.dim() - (in_dims[1] is not None)
        x = _batch_first(input, in_dims[1], info.batch_size)
        t = _batch_first(target, in_dims[2], info.batch_size)
        g = _batch_first(grad_output, in_dims[0], info.batch_size)
        if reduction != REDUCTION_NONE:
            # One incoming value per sample, spread over its elements; the mean's 1/N comes after,
            # in the kernels' order (the gradient times g, times the weight, then / N).
            g = g.reshape(info.batch_size, *(1,) * ndim).expand(x.shape)
        batched = [_batched_table(v, d, ndim) for v, d in zip(broadcast, in_dims[3:])]
        grads = grad_op(g, x, t, *batched, REDUCTION_NONE, list(output_mask), *params,
                        *((None,) if has_ignore else ()))
        divisor = x[0].numel()
        if ignore_index is not None and reduction == REDUCTION_MEAN:
            if kept is None:
                kept = _kept_per_sample(t, ignore_index, info.batch_size)
            else:
                kept = _batch_first(kept.reshape(()) if kept_dim is None else kept, kept_dim,
                                    info.batch_size).reshape(info.batch_size)
            # A sample with every element ignored has gradients 0 (not 0 / 0).
            divisor = kept.clamp_min(1).reshape(info.batch_size, *(1,) * ndim)
        outputs, dims = [], []
        for wanted, grad in zip(output_mask, grads):
            if wanted and reduction == REDUCTION_MEAN:
                grad = (grad / divisor).to(grad.dtype)
            outputs.append(grad)
            dims.append(0 if wanted else None)
        return tuple(outputs), tuple(dims)


for _name, _tables in LOSS_OPS.items():
    _register_vmap_rules(_name, _tables)


class BinaryCrossEntropyFunction(torch.autograd.Function):
    """Binary cross entropy as a custom autograd Function over the native ops.

    ``BinaryCrossEntropyFunction.apply(input, target, weight=None, reduction=1)`` with ATen's
    reduction codes (0 none, 1 mean, 2 sum). Reverse mode (to any order: its backward calls the
    backward op, which is differentiable), forward mode (jvp) and vmap work.
    ``bce_ext.binary_cross_entropy`` does not need it: it calls the op, whose autograd is native.
    """

    generate_vmap_rule = True

    @classmethod
    def apply(cls, input, target, weight=None, reduction=REDUCTION_MEAN):
        if weight is not None and weight.requires_grad and torch.is_grad_enabled():
            forward_op(input, target, weight, reduction)  # raises PyTorch's message, as the op does
        return super().apply(input, target, weight, reduction)

    @staticmethod
    def forward(input, target, weight=None, reduction=REDUCTION_MEAN):
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
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
        grad_input, grad_target = backward_op(grad, input, target, weight, ctx.reduction, mask)
        return (grad_input if mask[0] else None, grad_target if mask[1] else None, None, None)

    @staticmethod
    def jvp(ctx, input_tangent, target_tangent, *unused_tangents):
        # PyTorch's formula (derivatives.yaml): the element-wise backward with each tangent as the
        # incoming gradient, then the reduction.
        input, target, weight = ctx.saved_tensors
        tangent = None
        for k, v in enumerate((input_tangent, target_tangent)):
            if v is not None:
                part = backward_op(v, input, target, weight, REDUCTION_NONE, [k == 0, k == 1])[k]
                tangent = part if tangent is None else tangent + part
        if ctx.reduction == REDUCTION_NONE:
            return tangent
        return tangent.mean() if ctx.reduction == REDUCTION_MEAN else tangent.sum()
