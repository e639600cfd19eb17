"""The cases of tests/test_distributed.py, and the worker that runs them in each process.

Shared by both sides: the test process builds the same inputs and computes the single-process
result (the oracle); the workers (`python dist_cases.py`, one per rank, joined through a file
store) run each case on a 2-rank gloo mesh or under DistributedDataParallel and save what they got.

Table-driven: every loss of bce_ext/_registry.py is a row of LOSS_OPS (a row whose op this build
lacks is skipped), and the DTensor cases are every row x shape x placement x weight x reduction.
"""
import dataclasses
import gc
import inspect
import itertools
import os
import sys
import traceback
import zlib

import torch

if __name__ == "__main__" and sys.argv[1] == "1":
    # Rank 1 loads DTensor before bce_ext, rank 0 after: both ways must register the rules.
    import torch.distributed.tensor  # noqa: F401
DTENSOR_LOADED_BEFORE_BCE_EXT = "torch.distributed.tensor" in sys.modules
import bce_ext  # noqa: E402
import bce_ext._registry as registry  # noqa: E402

WORLD_SIZE = 2
REDUCTIONS = ("none", "mean", "sum")
REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}


@dataclasses.dataclass(frozen=True)
class LossOp:
    """A loss of bce_ext/_registry.py as the distributed cases run it: its ops, functional and
    module (`entry`), and values of its scalar arguments other than their defaults (`kwargs`).
    `broadcast` names the optional operands that broadcast right-aligned against the target (each
    case gives all of them the same shape)."""
    entry: object
    kwargs: tuple = ()        # further (name, value) arguments of the ops and the functional

    @property
    def key(self):
        return self.entry.name + ("-ignore" if self.ignore_index is not None else "")

    ignore_index = property(lambda self: dict(self.kwargs).get("ignore_index"))
    op = property(lambda self: self.entry.name)
    backward = property(lambda self: self.entry.name + "_backward")
    functional = property(lambda self: self.entry.name)
    module = property(lambda self: self.entry.module)
    logits = property(lambda self: self.entry.input == "logit")  # input is any real
    broadcast = property(lambda self: self.entry.tensors)

    @property
    def module_takes_tables(self):
        """Whether its module takes the broadcast tensors when constructed (PyTorch's modules), or
        in forward (mmdetection's: the DDP cases then run it unweighted)."""
        init = inspect.signature(self.entry.module_class.__init__).parameters
        return all(name in init for name in self.broadcast)

    def available(self):
        return all(hasattr(torch.ops.bce_ext, name) for name in (self.op, self.backward)) and \
            all(hasattr(bce_ext, name) for name in (self.functional, self.module))


def other_values(entry):
    """Values of a loss's scalar arguments other than their defaults, by one rule for every loss:
    a float d becomes d / 2 + 0.1 (label smoothing 0.1; the focal family's alpha 0.225 or 0.475,
    gamma 1.1); a flag keeps its default (the suites cover both)."""
    return tuple((name, default / 2 + 0.1) for name, default in entry.params
                 if isinstance(default, float))


LOSS_OPS = tuple(LossOp(entry, other_values(entry)) for entry in registry.LOSSES)
# The losses that take an ignore_index, with one (a quarter of the targets take it): 'mean' over
# shards divides by the global count of the elements kept.
IGNORE_OPS = tuple(LossOp(entry, other_values(entry) + (("ignore_index", 255.0),))
                   for entry in registry.LOSSES if entry.ignores)


class ReferenceLoss(torch.nn.Module):
    """A loss's reference function (tests/references.py) as a module: the DDP oracle of a loss
    whose library has no module, or is not installed (reference_module names the loss)."""
    loss_name = None

    def __init__(self, reduction="none"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        from references import reference
        return reference(self.loss_name)(input, target, reduction=self.reduction)


def reference_module(name):
    """The class of the reference module of the loss called `name`."""
    return type(f"Reference_{name}", (ReferenceLoss,), {"loss_name": name})


def oracle_module(loss):
    """The class of the loss's one-process oracle: torch.nn's module of the same name where
    PyTorch has it, else its reference function as a module."""
    return getattr(torch.nn, loss.module, None) or reference_module(loss.key)


# ------------------------------------------------------------------------------------------------
# DTensor cases

# (shape, placement): 8 x 6 splits evenly on 2 ranks along both dims, 7 x 5 along neither.
LAYOUTS = (((8, 6), "S0"), ((8, 6), "S1"), ((7, 5), "S0"), ((7, 5), "S1"), ((7, 5), "R"),
           ((3, 4, 5), "S2"))
# Shapes of the broadcast operands, for an input of shape (..., B, C): none, (C,) (per class,
# replicated), (B, 1) (per sample, replicated), the input's shape (sharded like the input).
WEIGHTS = ("none", "class", "sample", "full")
# The backward op is asked for both gradients, or only one of them.
MASKS = ((True, True), (True, False), (False, True))


@dataclasses.dataclass(frozen=True)
class Case:
    loss: LossOp
    shape: tuple
    placement: str            # "S<d>": Shard(d); "R": Replicate()
    weight: str
    reduction: str
    dtype: torch.dtype = torch.float64

    @property
    def id(self):
        dtype = "" if self.dtype == torch.float64 else "-" + str(self.dtype).split(".")[-1]
        return (f"{self.loss.key}-{'x'.join(map(str, self.shape))}-{self.placement}-"
                f"{self.weight}-{self.reduction}{dtype}")

    @property
    def mask(self):
        # Cycles through MASKS, so that every mask meets every reduction and layout.
        return MASKS[zlib.crc32(self.id.encode()) % len(MASKS)]

    @property
    def shard_dim(self):
        return None if self.placement == "R" else int(self.placement[1:])

    def inputs(self):
        """(input, target, {operand: tensor or None}, grad_output of 'none', grad_output of a
        reduction): the full tensors, the same in every process."""
        gen = torch.Generator().manual_seed(zlib.crc32(self.id.encode()))

        def rand(*shape):
            return torch.rand(shape, generator=gen, dtype=torch.float64).to(self.dtype)

        x = torch.randn(self.shape, generator=gen, dtype=torch.float64).to(self.dtype) \
            if self.loss.logits else rand(*self.shape).clamp(0.02, 0.98)
        t = rand(*self.shape)
        if self.loss.ignore_index is not None:
            ignored = torch.rand(self.shape, generator=gen) < 0.25
            t = torch.where(ignored, torch.tensor(self.loss.ignore_index, dtype=t.dtype), t)
        operand_shape = {"none": None, "class": self.shape[-1:],
                         "sample": self.shape[:-1] + (1,), "full": self.shape}[self.weight]
        operands = {name: None if operand_shape is None else rand(*operand_shape) + 0.5
                    for name in self.loss.broadcast}
        return x, t, operands, rand(*self.shape), rand()


def dtensor_cases():
    cases = []
    for loss, (shape, placement), weight, reduction in itertools.product(
            LOSS_OPS, LAYOUTS, WEIGHTS, REDUCTIONS):
        if loss.broadcast or weight == "none":  # a loss with no weight: one case, not four
            cases.append(Case(loss, shape, placement, weight, reduction))
    # The rounding of the other dtypes (a half type's partial sums are rounded on each rank).
    for loss, dtype, reduction in itertools.product(
            LOSS_OPS, (torch.float32, torch.float16, torch.bfloat16), REDUCTIONS):
        cases.append(Case(loss, (7, 5), "S0", "class" if loss.broadcast else "none", reduction,
                          dtype))
    for loss, (shape, placement), reduction in itertools.product(
            IGNORE_OPS, (((7, 5), "S0"), ((8, 6), "S1"), ((3, 4, 5), "S2"), ((7, 5), "R")),
            REDUCTIONS):
        cases.append(Case(loss, shape, placement, "class" if loss.broadcast else "none",
                          reduction))
    return cases


def call_forward(case, x, t, operands):
    op = getattr(torch.ops.bce_ext, case.loss.op).default
    return op(self=x, target=t, reduction=REDUCTION_CODES[case.reduction], **operands,
              **dict(case.loss.kwargs))


def call_backward(case, g, x, t, operands):
    op = getattr(torch.ops.bce_ext, case.loss.backward).default
    return op(grad_output=g, self=x, target=t, reduction=REDUCTION_CODES[case.reduction],
              output_mask=list(case.mask), **operands, **dict(case.loss.kwargs))


def call_functional(case, x, t, operands, g):
    """The public function's loss, and its gradients for input and target (incoming g)."""
    x = x.detach().requires_grad_()
    t = t.detach().requires_grad_()
    out = case.loss.entry.element_function(x, t, reduction=case.reduction, **operands,
                                           **dict(case.loss.kwargs))
    gx, gt = torch.autograd.grad(out, (x, t), g)
    return out, gx, gt


def run_dtensor_case(case, mesh):
    """What a 2-rank mesh gives for `case`: each result gathered (full_tensor) with its
    placements, for the functional (value and gradients), the forward op and the backward op."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    x, t, operands, g_none, g_reduced = case.inputs()
    dim = case.shard_dim
    like_input = [Replicate() if dim is None else Shard(dim)]

    def dist(tensor, placements=like_input):
        return distribute_tensor(tensor, mesh, placements)

    d_operands = {}
    for name, value in operands.items():  # a "full" operand is sharded like the input
        d_operands[name] = None if value is None else dist(
            value, like_input if case.weight == "full" else [Replicate()])
    dx, dt = dist(x), dist(t)
    dg = dist(g_none) if case.reduction == "none" else dist(g_reduced, [Replicate()])

    results = {}
    out, gx, gt = call_functional(case, dx, dt, d_operands, dg)
    results["functional"] = [out, gx, gt]
    results["forward_op"] = [call_forward(case, dx, dt, d_operands)]
    results["backward_op"] = list(call_backward(case, dg, dx, dt, d_operands))
    return {path: [(r.full_tensor(), tuple(map(str, r.placements))) for r in values]
            for path, values in results.items()}


# ------------------------------------------------------------------------------------------------
# DDP cases: a small model, a few SGD steps on the same global batches

@dataclasses.dataclass(frozen=True)
class DDPCase:
    loss: LossOp
    reduction: str
    weighted: bool
    batches: tuple            # global batch sizes, one per step

    @property
    def id(self):
        return (f"{self.loss.key}-{self.reduction}-{'weighted' if self.weighted else 'plain'}-"
                f"{'-'.join(map(str, self.batches))}")


FEATURES = 6
LR = 0.5


def ddp_cases():
    cases = []
    for loss in LOSS_OPS:
        cases += [DDPCase(loss, "mean", False, (8, 8, 8)),          # even shares
                  DDPCase(loss, "mean", True, (8, 7, 5, 3)),        # uneven shares
                  DDPCase(loss, "sum", True, (8, 7, 5))]
    return cases


def ddp_setup(case):
    """The initial model (float32), the global batches and the loss's constructor arguments."""
    gen = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(case.id.encode()))
        layers = [torch.nn.Linear(FEATURES, 8), torch.nn.Tanh(), torch.nn.Linear(8, FEATURES)]
        if not case.loss.logits:
            layers.append(torch.nn.Sigmoid())
        model = torch.nn.Sequential(*layers)
    batches = [(torch.randn(n, FEATURES, generator=gen), torch.rand(n, FEATURES, generator=gen))
               for n in case.batches]
    kwargs = {"reduction": case.reduction}
    if case.weighted and case.loss.module_takes_tables:
        kwargs.update({name: torch.rand(FEATURES, generator=gen) + 0.5
                       for name in case.loss.broadcast})
    return model, batches, kwargs


def train_single(case, module):
    """One process, the whole of every batch: the oracle (module is PyTorch's loss class)."""
    model, batches, kwargs = ddp_setup(case)
    loss_fn = module(**kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for x, y in batches:
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.state_dict(), losses


def train_ddp(case):
    """This rank's share of every global batch under DistributedDataParallel, with bce_ext's
    module. DDP averages the ranks' gradients: a 'mean' is scaled by share * W / batch (1 for
    even shares) and a 'sum' by W, so that each step applies the global batch's gradient."""
    import torch.distributed as dist
    rank, world = dist.get_rank(), dist.get_world_size()
    model, batches, kwargs = ddp_setup(case)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss_fn = getattr(bce_ext, case.loss.module)(**kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for x, y in batches:
        rows = torch.arange(len(x)).tensor_split(world)[rank]
        loss = loss_fn(ddp(x[rows]), y[rows])
        scale = len(rows) * world / len(x) if case.reduction == "mean" else world
        opt.zero_grad()
        (loss * scale).backward()
        opt.step()
        total = (loss * scale / world).detach()  # the global batch's loss, summed over ranks
        dist.all_reduce(total)
        losses.append(total.item())
    return model.state_dict(), losses


# ------------------------------------------------------------------------------------------------
# The worker: `python dist_cases.py RANK INIT_FILE OUT_DIR`

def run_all(rank, out_dir, dtensor_loaded_by_bce_ext):
    from torch.distributed.device_mesh import init_device_mesh
    registered, skipped = bce_ext._distributed.registered_ops()
    results = {"dtensor_loaded_by_bce_ext": dtensor_loaded_by_bce_ext,
               "registered": sorted(registered), "skipped": skipped, "dtensor": {}, "ddp": {}}
    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    for case in dtensor_cases():
        if case.loss.available():
            results["dtensor"][case.id] = _capture(run_dtensor_case, case, mesh)
    for case in ddp_cases():
        if case.loss.available():
            results["ddp"][case.id] = _capture(train_ddp, case)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


def _capture(fn, *args):
    # A failing case is recorded and the others still run (every rank fails it alike).
    try:
        return {"ok": fn(*args)}
    except Exception:  # noqa: BLE001
        return {"error": traceback.format_exc()}


def main(rank, init_file, out_dir):
    import datetime
    import importlib

    import torch.distributed as dist
    torch.set_num_threads(1)
    # Unless rank 1 loaded it first, importing bce_ext must not have loaded
    # torch.distributed.tensor (most of a second); the rules register when the program does.
    dtensor_loaded_by_bce_ext = (not DTENSOR_LOADED_BEFORE_BCE_EXT
                                 and "torch.distributed.tensor" in sys.modules)
    importlib.import_module("torch.distributed.tensor")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60))
    try:
        run_all(rank, out_dir, dtensor_loaded_by_bce_ext)
    finally:
        gc.collect()  # the DDP cases' modules hold the group from reference cycles (demo.py)
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
