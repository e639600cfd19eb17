"""DTensor support: sharding rules for bce_ext's ops, and 'mean' on sharded tensors.

A custom op gets no DTensor sharding rule of its own, so without these a DTensor argument fails
with "Operator bce_ext.... does not have a sharding strategy registered". What is registered, per
op of ``OPS`` that this build has:

* a sharding rule (``torch.distributed.tensor.experimental.register_sharding``), per mesh dim:
  all-``Replicate()``; or, for 'none' and 'sum', ``Shard(d)`` input and target for any dim d,
  with the broadcast operands (weight, pos_weight) following the dims they broadcast over.
  'none' gives a ``Shard(d)`` loss, 'sum' a ``Partial("sum")`` scalar; the backward op's
  gradients are ``Shard(d)`` like the input, and its incoming gradient follows the input for
  'none' and is ``Replicate()`` (one scalar for all elements) otherwise. For 'mean' the rule has
  all-``Replicate()`` only: a per-shard kernel divides by the shard's element count, and an
  average of shard means is wrong for uneven shards.
* a DTensor dispatch rule (``torch.library.register_torch_dispatch``) that computes 'mean' on
  tensors that are not all replicated as 'sum' with the weight scaled by 1/N, N the global element
  count: a ``Partial("sum")`` scalar, right for uneven shards, no gather. The backward op gets the
  same treatment, so gradients of a 'mean' loss divide by the global N.

Importing ``torch.distributed.tensor`` costs most of a second, so nothing is registered until the
program imports it (before or after bce_ext): ``install()`` adds an import hook for that.
"""
import dataclasses
import importlib.abc
import sys
import threading
import warnings

import torch

from ._registry import LOSSES

__all__ = ["OPS", "ShardedOp", "install", "registered_ops"]

REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = 0, 1, 2
_DTENSOR_MODULE = "torch.distributed.tensor"


@dataclasses.dataclass(frozen=True)
class ShardedOp:
    """One op under ``torch.ops.bce_ext`` and how its operands shard.

    The op's arguments are read by name from its schema: ``self`` and ``target`` (same shape),
    ``grad_output`` for a backward op (which returns two tensors and takes ``output_mask``),
    ``reduction``; the tensors named in ``broadcast`` broadcast right-aligned against the target;
    ``scale``, which multiplies each element's loss, carries 1/N when 'mean' runs as 'sum'. Other
    non-tensor arguments (``label_smoothing``, say) play no part in the sharding. An op with no
    such operand (``scale=None``: the focal loss) runs a sharded 'mean' as 'sum' times 1/N (its
    backward: 'sum' with the incoming gradient times 1/N).
    """
    name: str
    broadcast: tuple = ("weight",)
    scale: object = "weight"


# Every loss's forward and backward ops (bce_ext/_registry.py). An op that this build lacks is
# skipped; an op of the library missing here fails the tests.
OPS = tuple(ShardedOp(op, broadcast=entry.tensors, scale=entry.scale)
            for entry in LOSSES for op in (entry.name, entry.name + "_backward"))

_registered = {}   # op name -> OpOverload, once registered
_skipped = {}      # op name -> why its schema could not be read
_lock = threading.Lock()


def registered_ops():
    """Names of the ops with DTensor rules registered so far (none before torch.distributed.tensor
    is imported), and the ops of ``OPS`` whose schemas did not fit, with why."""
    return dict(_registered), dict(_skipped)


def install():
    """Registers the DTensor rules now if ``torch.distributed.tensor`` is loaded, and otherwise as
    soon as it is. Nothing happens where torch.distributed is not available."""
    if not torch.distributed.is_available():
        return
    if _DTENSOR_MODULE in sys.modules:
        _register_all()
    elif not any(isinstance(f, _ImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook())


class _ImportHook(importlib.abc.MetaPathFinder):
    """Runs the registration right after ``torch.distributed.tensor`` has been executed, then
    leaves ``sys.meta_path`` and the module's loader as they were."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _DTENSOR_MODULE:
            return None
        for finder in sys.meta_path:  # the finder that would have found it, had we not been first
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if finder is not self and find else None
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader, self)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader, hook):
        self._loader, self._hook = loader, hook

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self._loader
        try:
            sys.meta_path.remove(self._hook)
        except ValueError:
            pass
        self._loader.exec_module(module)
        _register_all()


def _register_all():
    # A failure here must not break the user's import of torch.distributed.tensor: warn instead.
    try:
        with _lock:
            for entry in OPS:
                if entry.name not in _registered and entry.name not in _skipped and \
                        hasattr(torch.ops.bce_ext, entry.name):
                    _register(entry)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"bce_ext: DTensor sharding rules not registered: {exc!r}", stacklevel=2)


class _Signature:
    """Reads an op's arguments by name: positional and keyword, with the schema's defaults."""

    KNOWN = {"grad_output", "self", "target", "reduction", "output_mask", "kept"}

    def __init__(self, op, entry):
        schema = op._schema
        self.names = [a.name for a in schema.arguments]
        self.defaults = {a.name: a.default_value for a in schema.arguments if a.has_default_value()}
        self.backward = "output_mask" in self.names
        tensors = {a.name for a in schema.arguments if "Tensor" in str(a.type)}
        required = {"self", "target", "reduction"} | ({"grad_output"} if self.backward else set())
        missing = required - set(self.names)
        unknown = tensors - self.KNOWN - set(entry.broadcast)
        if missing or unknown or (entry.scale is not None and entry.scale not in self.names):
            raise ValueError(f"schema {schema} does not fit: missing {sorted(missing)}, "
                             f"unknown tensors {sorted(unknown)}, scale {entry.scale!r}")
        if len(schema.returns) != (2 if self.backward else 1):
            raise ValueError(f"schema {schema}: unexpected returns")

    def bind(self, args, kwargs):
        values = dict(self.defaults)
        values.update(zip(self.names, args))
        values.update(kwargs)
        return values

    def layout(self, args, kwargs):
        """The argument names in the order DTensor lists placements: positional, then keyword."""
        return list(self.names[:len(args)]) + list(kwargs)


def _register(entry):
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.experimental import register_sharding

    op = getattr(torch.ops.bce_ext, entry.name).default
    try:
        sig = _Signature(op, entry)
    except ValueError as exc:
        _skipped[entry.name] = str(exc)
        return

    def sharding(*args, **kwargs):
        return _strategies(entry, sig, args, kwargs)

    register_sharding(op)(sharding)

    def mean_as_sum(cls, func, types, args, kwargs):
        return _mean_as_sum(entry, sig, func, args, kwargs)

    torch.library.register_torch_dispatch(op, DTensor, mean_as_sum)
    _registered[entry.name] = op


def _broadcast_placement(shape, ndim, dim, placement_cls):
    """Placement of an operand of `shape` broadcast right-aligned against an `ndim`-dim tensor
    sharded on `dim`: sharded on its matching dim where that is not a broadcast 1."""
    j = dim - (ndim - len(shape))
    return placement_cls(j) if j >= 0 and shape[j] != 1 else None


def _broadcastable(shape, full):
    return len(shape) <= len(full) and all(
        s in (1, f) for s, f in zip(reversed(shape), reversed(full)))


def _strategies(entry, sig, args, kwargs):
    """Acceptable (output placements, input placements) on one mesh dim."""
    from torch.distributed.tensor import Partial, Replicate, Shard

    values = sig.bind(args, kwargs)
    layout = sig.layout(args, kwargs)
    x, target, reduction = values["self"], values["target"], values["reduction"]
    grad = values.get("grad_output")
    n_out = 2 if sig.backward else 1
    mask = values["output_mask"] if sig.backward else None

    def is_spec(v):
        return hasattr(v, "placements")

    def inputs(placement_of):
        return [placement_of(name) if is_spec(values[name]) else None for name in layout]

    strategies = [([Replicate()] * n_out, inputs(lambda name: Replicate()))]
    shape = tuple(x.shape)
    operands = [name for name in entry.broadcast if is_spec(values.get(name))]
    if grad is not None and reduction == REDUCTION_NONE:
        operands.append("grad_output")
    fits = (is_spec(target) and tuple(target.shape) == shape
            and all(_broadcastable(tuple(values[n].shape), shape) for n in operands))
    # 'mean' per shard would divide by the shard's count: all-Replicate only (see the module doc).
    if not fits or reduction == REDUCTION_MEAN:
        return strategies
    for dim in range(len(shape)):
        placements = {"self": Shard(dim), "target": Shard(dim)}
        for name in operands:
            placements[name] = _broadcast_placement(
                tuple(values[name].shape), len(shape), dim, Shard) or Replicate()
        if grad is not None and reduction != REDUCTION_NONE:
            placements["grad_output"] = Replicate()
        if sig.backward:
            outputs = [Shard(dim) if want else Replicate() for want in mask]
        else:
            outputs = [Shard(dim) if reduction == REDUCTION_NONE else Partial("sum")]
        strategies.append((outputs, inputs(placements.__getitem__)))
    return strategies


def _mean_as_sum(entry, sig, func, args, kwargs):
    """'mean' over tensors that are not all replicated: 'sum' with the loss-multiplying operand
    scaled by 1/N, N the global element count (the DTensor's numel). Otherwise DTensor's own
    dispatch (NotImplemented), which applies the sharding rule."""
    from torch.distributed.tensor import DTensor, Replicate

    values = sig.bind(args, kwargs)
    if values["reduction"] != REDUCTION_MEAN:
        return NotImplemented
    dtensors = [v for v in values.values() if isinstance(v, DTensor)]
    if all(isinstance(p, Replicate) for t in dtensors for p in t.placements):
        return NotImplemented
    x = values["self"]
    n = x.numel()
    if n == 0:  # nothing to gather; the rule's all-Replicate path gives the NaN of an empty mean
        return NotImplemented
    if values.get("ignore_index") is not None:
        # With an ignore_index, N is the global count of the elements not ignored: the forward's
        # (kept, in a backward called by autograd), or counted here; one all-reduce of a scalar.
        n = values.get("kept")
        if n is None:
            n = (values["target"] != values["ignore_index"]).sum(dtype=torch.float64)
        n = n.redistribute(n.device_mesh, [Replicate()] * n.device_mesh.ndim)
        values["kept"] = None
    if entry.scale is None:  # no operand to scale: the sum's result (or incoming gradient) / N
        values["reduction"] = REDUCTION_SUM
        if sig.backward:
            values["grad_output"] = values["grad_output"] / n
            return func(*[values[name] for name in sig.names])
        return func(*[values[name] for name in sig.names]) / n
    scale = values.get(entry.scale)
    dtype = torch.promote_types(x.dtype, torch.float32)
    if scale is not None:
        dtype = torch.promote_types(dtype, scale.dtype)
        values[entry.scale] = scale.to(dtype) / n
    elif isinstance(n, DTensor):
        values[entry.scale] = (1.0 / n).to(dtype)
    else:
        ref = dtensors[0]
        mesh = ref.device_mesh
        local = torch.full((), 1.0 / n, dtype=dtype, device=ref.device)
        values[entry.scale] = DTensor.from_local(local, mesh, [Replicate()] * mesh.ndim,
                                                 run_check=False)
    values["reduction"] = REDUCTION_SUM
    return func(*[values[name] for name in sig.names])
