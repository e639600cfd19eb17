"""The losses under test, one row each: bce_ext's functional and module, PyTorch's (the oracle),
the raw dispatcher ops, and what is particular to the loss: the values its input and target take,
its other broadcast tensors and extra arguments, the checks it makes.

Every suite runs every row (values, layouts, thresholds, transforms, autograd, errors, properties,
bad input, concurrency). A loss's row is ROW in its own test file, tests/test_<name>.py (with its
value generators and `extra` strategy where they differ, its formula where its library may be
missing, and its own cases); ALL_LOSSES gathers the rows of the registry's losses from there, on
first use, so a loss of the registry without its file or row fails the suites that run it.
"""
import importlib
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import torch
from oracle import assert_matches, expected, leaves, probabilities, run

import bce_ext._registry as registry

# Values that the kernels treat specially: exact 0 and 1 (the -100 clamp of each log, the 1e-12
# floor of the gradient's denominator, the infinite target gradient), -0.0, subnormal and tiny
# numbers, 0.5 and the floats next to 1. Drawn in float64 and rounded to the dtype under test (in
# float16 1e-40 becomes 0 and 1 - 1e-7 becomes 1: still probabilities).
SPECIAL_PROBABILITIES = (0.0, 1.0, -0.0, 0.5, 5e-324, 1e-45, 1e-40, 1.1754942e-38, 1e-12, 1e-7,
                         1.1920929e-7, 0.29289321881345254, 1 - 1e-7, 1 - 2.0 ** -24, 1 - 1e-12,
                         1 - 2.0 ** -53)

# How the values of one operand are drawn: uniform, hard labels (only 0 and 1, which sends blocks
# of targets down the kernels' one-log path), only special values, or uniform with about a fifth
# replaced by special values.
MIXES = ("uniform", "hard", "special", "mixed")


def probability_values(shape, mix, generator):
    """float64 values in [0, 1] of `shape`, drawn as `mix` says from the seeded `generator`."""
    uniform = torch.rand(shape, dtype=torch.float64, generator=generator)
    if mix == "uniform":
        return uniform
    if mix == "hard":
        return torch.randint(0, 2, shape, generator=generator).double()
    specials = torch.tensor(SPECIAL_PROBABILITIES, dtype=torch.float64)
    index = torch.randint(0, len(specials), shape, generator=generator)
    if mix == "special":
        return specials[index]
    replace = torch.rand(shape, generator=generator) < 0.2
    return torch.where(replace, specials[index], uniform)


# Logits the kernels treat specially: 0, the ends of exp's range in float32 (about 88 and 104),
# large values where the loss is linear. Not +-inf: there bce_ext gives the limits where PyTorch
# gives NaN (test_binary_cross_entropy_with_logits.py has those cases).
SPECIAL_LOGITS = (0.0, -0.0, 1e4, -1e4, 88.0, -88.0, 104.0, -104.0, 20.0, -20.0, 1e-7, -1e-7)


def logit_values(shape, mix, generator):
    """float64 logits of `shape`, drawn as `mix` says: spread over [-8, 8) (past where sigmoid
    saturates in float16), or special values."""
    uniform = 16 * torch.rand(shape, dtype=torch.float64, generator=generator) - 8
    if mix in ("uniform", "hard"):
        return uniform
    specials = torch.tensor(SPECIAL_LOGITS, dtype=torch.float64)
    index = torch.randint(0, len(specials), shape, generator=generator)
    if mix == "special":
        return specials[index]
    replace = torch.rand(shape, generator=generator) < 0.2
    return torch.where(replace, specials[index], uniform)


def logits(shape, dtype, device, generator=None, low=0.0):
    """Logits spread over [-8, 8), drawn in float64 and rounded to dtype."""
    return logit_values(shape, "uniform", generator).to(dtype).to(device)


def no_extra(draw, shape, dtype, device):
    """Extra keyword arguments of a loss that has none."""
    return {}


@dataclass(frozen=True)
class Loss:
    name: str
    # bce_ext's functional: (input, target, weight=None, ..., reduction=..., **extra)
    ours: Callable
    reference: Callable  # PyTorch's functional, the same signature: the oracle
    module: type
    reference_module: type
    forward_op: Callable  # torch.ops.bce_ext.<name>: (input, target, weight, reduction code, ...)
    backward_op: Optional[Callable]  # (grad, input, target, weight, reduction code, output_mask)
    # float64 values of the input and of the target: (shape, mix, torch.Generator) -> Tensor.
    input_values: Callable = probability_values
    target_values: Callable = probability_values
    # Whether an input or target element outside [0, 1] (or NaN, inf) raises on the CPU, with
    # PyTorch's "all elements of input/target should be between 0 and 1".
    checks_range: bool = True
    # A hypothesis draw of the loss's extra keyword arguments (pos_weight, gamma, ...):
    # (draw, shape, dtype, device) -> dict.
    extra: Callable = no_extra
    # The names of its other tensors that broadcast like the weight (pos_weight).
    extras: tuple = ()
    # Whether its outputs are laid out as PyTorch's are in every case (docs/behaviour.md, 3).
    pytorch_layouts: bool = True
    # Where it keeps its own layouts (pytorch_layouts False): the operand its 'none' loss is laid
    # out like (its gradients are like the input).
    loss_like: str = "target"
    # Whether its outputs and gradients have the oracle's strides where no extra tensor is given
    # (torchvision's focal loss is a chain of ops, whose order decides its strides; bce_ext lays
    # the focal loss's out like the input, docs/behaviour.md, 3).
    oracle_strides: bool = True
    # Whether it takes a weight, and bce_ext's label smoothing.
    takes_weight: bool = True
    smoothing: bool = True
    # Whether it gives the limits where its reference is NaN at finite operands (the focal loss's
    # gradients at p_t = 1 for gamma < 1, docs/behaviour.md, 2; test_sigmoid_focal_loss.py checks
    # the limits).
    limits_beyond_reference: bool = False
    # Other values of its scalar arguments that the grids run besides the defaults.
    param_cases: tuple = ()
    # Bad values of its scalar arguments, beyond the reference's API (which takes them silently):
    # (keyword arguments, the exception's type, the start of its text).
    bad_params: tuple = ()
    dtypes: tuple = field(default=(torch.float32, torch.float64, torch.float16, torch.bfloat16))
    # Its inputs and targets as tensors: (shape, dtype, device, generator=None, low=0.0).
    inputs: Callable = probabilities
    targets: Callable = probabilities
    # The reference in elementary ops, for the torch.func nestings where the reference itself
    # fails (PyTorch's loss under nested forward AD); None: the reference works everywhere.
    composite_reference: Optional[Callable] = None
    # Its reference written without the reference library's own cancellations: the float64
    # truth that outputs are judged by where they and the reference part (None: the reference).
    exact_reference: Optional[Callable] = None
    # Its module's loss of (x, t): (module class, x, t, weight, reduction, **params) -> Tensor;
    # None: PyTorch's convention, the weight and the reduction given to the constructor.
    module_call: Optional[Callable] = None
    # Whether its errors' texts are the reference's (PyTorch's and torchvision's are part of the
    # contract; mmdetection's chain of ops raises whatever its first op raises).
    error_texts: bool = True
    # Exceptions the reference raises where bce_ext raises another, documented, type:
    # {the reference's type: bce_ext's}.
    error_types: tuple = ()
    # Whether its functional casts the target to the input's dtype and device first
    # (mmdetection's type_as; its raw ops then take two dtypes as the focal loss's do).
    casts_target: bool = False
    # Whether the reference's `loss * weight` broadcasts the loss up to a larger weight's shape
    # (mmdetection's); bce_ext raises PyTorch's error there (the weight broadcasts to the input).
    reference_broadcasts_up: bool = False
    # Whether the reference, as bce_ext, refuses a weight that requires grad (PyTorch's losses);
    # mmdetection's chain of ops differentiates it, bce_ext raises PyTorch's error there too.
    reference_refuses_weight_grad: bool = True

    @property
    def theirs(self):
        return self.reference

    @property
    def exact(self):
        """The row with its exact reference as the reference (the float64 truth)."""
        return replace(self, reference=self.exact_reference) if self.exact_reference else self

    def __repr__(self):
        return self.name


def row(name, **particular):
    """The table's row of the loss called `name`: what bce_ext/_registry.py says of it (its
    functional, module, ops, broadcast tensors) and what is `particular` to it here."""
    entry = registry.get(name)
    return Loss(**{"name": entry.name, "ours": entry.element_function,
                   "module": entry.module_class,
                   "forward_op": entry.op, "backward_op": entry.backward_op,
                   "extras": tuple(v for v in entry.tensors if v != "weight"),
                   "takes_weight": entry.takes_weight,
                   "smoothing": "label_smoothing" in dict(entry.params), **particular})


def bad_values(*specs):
    """A row's bad_params from (argument name, bad values, the ValueError's text) specs."""
    return tuple(({name: v}, ValueError, text) for name, values, text in specs for v in values)


# What the focal family's rows share: logits, no range check, no module in the reference library,
# the layouts and the limits of their own (docs/behaviour.md, 2 and 3).
FOCAL_FAMILY = dict(reference_module=None, input_values=logit_values, inputs=logits,
                    checks_range=False, pytorch_layouts=False, loss_like="input",
                    limits_beyond_reference=True, oracle_strides=False)


def _rows():
    """The row of each loss of the registry, ROW in its test file tests/test_<name>.py."""
    return [importlib.import_module(f"test_{entry.name}").ROW for entry in registry.LOSSES]


def __getattr__(name):
    """ALL_LOSSES (every row), LOSSES (the rows of PyTorch's own losses, which take a weight and
    bce_ext's label smoothing) and ROWS (by name), gathered on first use: the loss's test files,
    which hold the rows, import this module first."""
    if name not in ("ALL_LOSSES", "LOSSES", "ROWS"):
        raise AttributeError(f"module 'losses' has no attribute {name!r}")
    rows = _rows()
    torch_losses = [r for r in rows if registry.get(r.name).replaces.startswith("torch.")]
    globals().update(ALL_LOSSES=rows, LOSSES=torch_losses, ROWS={r.name: r for r in rows})
    return globals()[name]


def assert_valid_call_works(loss, device, dtype=torch.float32, shape=(5, 7), seed=0):
    """A plain call (weighted where the loss takes a weight, mean) gives the oracle's loss and
    gradients: what must hold right after any error."""
    gen = torch.Generator().manual_seed(seed)
    x = loss.input_values(shape, "mixed", gen).to(dtype).to(device)
    t = loss.target_values(shape, "mixed", gen).to(dtype).to(device)
    w = torch.rand(shape[-1:], generator=gen).to(dtype).to(device) if loss.takes_weight else None
    for a, e in zip(run(loss.ours, *leaves(x, t), w), expected(loss, x, t, w)):
        assert_matches(a, e)
