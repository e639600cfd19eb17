"""Train a small autoencoder on scikit-learn's 8x8 digits, once with bce_ext's loss and once with
PyTorch's (BCELoss on sigmoid outputs, or with --loss logits BCEWithLogitsLoss on the logits), from
the same initial weights and batch order, and compare the two runs.

    python -m bce_ext.demo [--loss bce|logits] [--epochs N] [--device cpu|cuda] [--seed S]
                           [--out DIR]
    torchrun --nproc-per-node 2 -m bce_ext.demo [...]

Under torchrun both runs train with DistributedDataParallel (gloo on the CPU, nccl on GPUs): each
process takes its share of every batch, and the loss curve is that of one process.

Needs the demo extra: pip install --no-build-isolation "bce_ext[demo]"
"""
import argparse
import copy
import dataclasses
import gc
import importlib
import os
import statistics
import time
from contextlib import contextmanager

import torch

import bce_ext
from bce_ext import _registry

INSTALL_HINT = 'pip install --no-build-isolation "bce_ext[demo]"'
# (what pip installs, what the demo imports)
EXTRAS = (("scikit-learn", "sklearn.datasets"), ("tqdm", "tqdm"),
          ("matplotlib", "matplotlib.figure"))
PNG_NAME = "bce_ext_demo.png"
# --loss (a loss's name or alias, bce_ext/_registry.py): bce_ext's module, PyTorch's, and whether
# the model ends in a sigmoid.
LOSSES = {"binary_cross_entropy": (bce_ext.BCELoss, torch.nn.BCELoss, True),
          "binary_cross_entropy_with_logits": (bce_ext.BCEWithLogitsLoss,
                                               torch.nn.BCEWithLogitsLoss, False)}
LOSS_NAMES = sorted(key for entry in _registry.LOSSES if entry.name in LOSSES
                    for key in (entry.name,) + entry.aliases) + ["siglip"]
# --loss siglip: a two-tower model on SigLIP's pairwise loss instead (bce_ext/demo_siglip.py), with
# batches of this size unless --batch-size is given.
SIGLIP_BATCH = 1024


@dataclasses.dataclass
class DemoResult:
    losses_bce_ext: list      # mean training loss of each epoch
    losses_torch: list
    max_abs_diff: float       # largest |bce_ext - torch| over the epochs
    epoch_seconds_bce_ext: list
    epoch_seconds_torch: list
    png_path: str             # written by the first process only
    device: str
    world_size: int = 1       # processes that trained together (torchrun)
    loss: str = "binary_cross_entropy"  # --loss, by its one name


def import_extras():
    """The demo's own dependencies, or SystemExit naming the extra: no traceback, exit status 1."""
    modules, missing = {}, []
    for package, module in EXTRAS:
        try:
            modules[package] = importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise SystemExit(f"bce_ext.demo needs {', '.join(missing)}, which the 'demo' extra "
                         f"provides. Install it with:\n    {INSTALL_HINT}")
    return modules


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bce_ext.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--loss", choices=LOSS_NAMES, default="bce", metavar="{bce,logits,siglip}",
                   help="bce: BCELoss on the model's sigmoid outputs; logits: BCEWithLogitsLoss "
                        "on its logits (no final sigmoid); or the losses' own names, "
                        "binary_cross_entropy and binary_cross_entropy_with_logits; siglip: a "
                        "two-tower model on SigLIP's pairwise loss, bce_ext's beside the dense "
                        "formula's, step by step with each one's peak memory")
    p.add_argument("--epochs", type=int, default=40, help="epochs of each run")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per step (64; {SIGLIP_BATCH} for siglip)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (1e-2; 1e-3 for siglip)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    # A 64-wide model gains nothing from intra-op threads, and on a busy machine they stall.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default="bce_ext_demo_out", help="folder for the PNG")
    args = p.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = SIGLIP_BATCH if args.loss == "siglip" else 64
    if args.lr is None:
        args.lr = 1e-3 if args.loss == "siglip" else 1e-2
    if min(args.epochs, args.batch_size, args.threads, args.limit or 1) < 1:
        p.error("--epochs, --batch-size, --threads and --limit must be positive")
    if args.loss != "siglip":
        args.loss = _registry.canonical(args.loss)
    return args


def check_device(name):
    """A torch.device that both losses can run on, or SystemExit saying why not."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise SystemExit(f"bce_ext.demo: --device must be cpu or cuda[:N], not {name!r}")
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise SystemExit("bce_ext.demo: --device cuda was asked for, but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}, torch.version.cuda={torch.version.cuda})")
    if not bce_ext._C.with_cuda:
        raise SystemExit("bce_ext.demo: --device cuda was asked for, but this bce_ext was built "
                         "without its CUDA kernels (rebuild with FORCE_CUDA=1; see "
                         "`python -m bce_ext.info`)")
    return device


def load_digits(datasets, limit):
    """(N, 64) float32 pixels in [0, 1] and the (N,) labels."""
    digits = datasets.load_digits()
    x = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0  # pixels are 0..16
    y = torch.as_tensor(digits.target)
    return x[:limit], y[:limit]


def build_model(seed, sigmoid=True):
    """The autoencoder, ending in a sigmoid (for BCELoss) or in logits (for BCEWithLogitsLoss):
    the same initial weights either way."""
    # A private RNG state: an in-process caller's global RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(),
            torch.nn.Linear(32, 16), torch.nn.ReLU(),
            torch.nn.Linear(16, 32), torch.nn.ReLU(),
            torch.nn.Linear(32, 64), *([torch.nn.Sigmoid()] if sigmoid else []))


@dataclasses.dataclass(frozen=True)
class Processes:
    """The processes that train together: one, or torchrun's (rank `rank` of `world_size`)."""
    rank: int = 0
    world_size: int = 1
    backend: str = ""

    @property
    def main(self):
        return self.rank == 0

    def share(self, batch):
        """This process's rows of a global batch: the rank-th of world_size near-equal slices."""
        return batch if self.world_size == 1 else batch.tensor_split(self.world_size)[self.rank]


@contextmanager
def processes(device):
    """Joins torchrun's process group (gloo on the CPU, nccl on CUDA) for the duration, and gives
    the device this process trains on (a CUDA process takes the GPU of its local rank)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Processes(), device
        return
    import torch.distributed as dist
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available() or not dist.is_backend_available(backend):
        raise SystemExit(f"bce_ext.demo: started by torchrun with WORLD_SIZE={world_size}, but "
                         f"this torch has no torch.distributed {backend} backend")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        yield Processes(dist.get_rank(), dist.get_world_size(), backend), device
    finally:
        # DistributedDataParallel sits in reference cycles that keep the group alive past
        # destroy_process_group: collected only at exit, the group's threads went down with the
        # interpreter and aborted the process ("terminate called without an active exception",
        # once in CI). Freed here, the group ends while Python is whole.
        gc.collect()
        dist.destroy_process_group()


class Run:
    """One model trained with one loss; its epochs are timed one at a time.

    Under torchrun the model trains in DistributedDataParallel, and the loss is a 'sum' over this
    process's rows scaled by world_size / (elements in the global batch): DDP averages the
    processes' gradients, so every step applies the gradient of the global batch's mean loss, as
    one process would, even where the batch does not split evenly.
    """

    def __init__(self, name, model, loss_fn, lr, procs=Processes()):
        self.name, self.model, self.loss_fn, self.procs = name, model, loss_fn, procs
        self.trained = model
        if procs.world_size > 1:
            device = next(model.parameters()).device
            self.trained = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.losses, self.seconds = [], []

    def step(self, x, scale=None):
        """One optimiser step; returns the loss before `scale`."""
        loss = self.loss_fn(self.trained(x), x)
        self.opt.zero_grad(set_to_none=True)
        (loss if scale is None else loss * scale).backward()
        self.opt.step()
        return loss.detach()

    def epoch(self, data, perm, batch_size):
        sync = torch.cuda.synchronize if data.is_cuda else (lambda: None)
        sync()
        start = time.perf_counter()
        # Summed on the device and read once per epoch: no host sync per step.
        total = torch.zeros((), dtype=torch.float64, device=data.device)
        world_size = self.procs.world_size
        for batch in perm.split(batch_size):
            if world_size == 1:
                total += self.step(data[batch]).double() * len(batch)
            else:  # this process's summed loss, as images' worth of mean loss (below)
                scale = world_size / (len(batch) * data.shape[1])
                total += self.step(data[self.procs.share(batch)], scale).double() / data.shape[1]
        if world_size > 1:
            torch.distributed.all_reduce(total)
        self.losses.append(total.item() / len(data))
        self.seconds.append(time.perf_counter() - start)


def warm_up(runs, x):
    """One untimed step of each loss on throwaway copies, so that one-time costs (lazy
    initialisation, first kernel launches) land in neither run's first epoch."""
    for run in runs:
        Run(run.name, copy.deepcopy(run.model), run.loss_fn, 0.0).step(x)


def train(runs, data, perms, batch_size, tqdm, show=True):
    # Epochs alternate between the runs, which take turns going first, so that both see the
    # same machine load and neither always runs on the other's warm caches.
    bars = [tqdm(total=len(perms), desc=f"{run.name:>7}", unit="epoch", position=i,
                 disable=not show)
            for i, run in enumerate(runs)]
    pairs = list(zip(runs, bars))
    for epoch, perm in enumerate(perms):
        for run, bar in pairs if epoch % 2 == 0 else pairs[::-1]:
            run.epoch(data, perm, batch_size)
            bar.set_postfix(loss=f"{run.losses[-1]:.5f}")
            bar.update()
    for bar in bars:
        bar.close()


def one_per_class(labels, count=10):
    """Index of the first image of each digit present, at most `count`."""
    firsts = {}
    for i, label in enumerate(labels.tolist()):
        firsts.setdefault(label, i)
    return [firsts[k] for k in sorted(firsts)][:count]


def plot(mpl_figure, result, originals, reconstructions, path):
    # A bare Figure, not pyplot: no GUI backend, no global figure state; PNG is drawn by Agg.
    fig = mpl_figure.Figure(figsize=(10, 6.5), layout="constrained")
    curves, grid = fig.subfigures(2, 1, height_ratios=[3, 2])
    ax = curves.subplots()
    epochs = range(1, len(result.losses_torch) + 1)
    ours, theirs, _ = LOSSES[result.loss]
    ax.plot(epochs, result.losses_torch, "-", lw=3, alpha=0.5, label=f"torch.nn.{theirs.__name__}")
    ax.plot(epochs, result.losses_bce_ext, "--", color="k", label=f"bce_ext.{ours.__name__}")
    ax.set(xlabel="epoch", ylabel="mean training loss",
           title=f"Autoencoder on 8x8 digits ({result.device}"
                 f"{f' x {result.world_size} processes' if result.world_size > 1 else ''}): "
                 f"max |difference| = {result.max_abs_diff:.3g}")
    ax.legend()
    grid.suptitle("originals (top) and bce_ext model reconstructions (bottom)", fontsize=10)
    cells = grid.subplots(2, len(originals), squeeze=False)
    for row, images in zip(cells, (originals, reconstructions)):
        for cell, image in zip(row, images):
            cell.imshow(image.reshape(8, 8).numpy(), cmap="gray_r", vmin=0, vmax=1,
                        interpolation="nearest")
            cell.set_axis_off()
    fig.savefig(path, dpi=100)


def print_report(result, procs=Processes()):
    if procs.world_size > 1:
        print(f"{procs.world_size} processes ({procs.backend}), DistributedDataParallel: each "
              f"trains on its share of every batch; losses are over the whole batch")
    print(f"{'epoch':>5} {'bce_ext loss':>14} {'torch loss':>14} {'|diff|':>10} "
          f"{'bce_ext ms':>10} {'torch ms':>10}")
    rows = zip(result.losses_bce_ext, result.losses_torch,
               result.epoch_seconds_bce_ext, result.epoch_seconds_torch)
    for epoch, (a, b, ta, tb) in enumerate(rows, 1):
        print(f"{epoch:5d} {a:14.8f} {b:14.8f} {abs(a - b):10.3g} "
              f"{ta * 1e3:10.2f} {tb * 1e3:10.2f}")
    print(f"max |bce_ext - torch| over the loss curves: {result.max_abs_diff:.3g}")
    # The median: on a busy machine a few epochs stall, and a mean would report the stalls.
    ours, theirs = (statistics.median(s) * 1e3
                    for s in (result.epoch_seconds_bce_ext, result.epoch_seconds_torch))
    print(f"time per epoch (median): bce_ext {ours:.2f} ms, torch {theirs:.2f} ms")


def main(argv=None):
    """Runs the demo; returns a DemoResult. Bad flags or a missing extra raise SystemExit."""
    args = parse_args(argv)
    device = check_device(args.device)
    extras = import_extras()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        if args.loss == "siglip":
            from . import demo_siglip
            return demo_siglip.run(args, device, extras)
        with processes(device) as (procs, device):
            return run_demo(args, device, extras, procs)
    finally:
        torch.set_num_threads(threads)  # an in-process caller keeps its own setting


def run_demo(args, device, extras, procs=Processes()):
    data, labels = load_digits(extras["scikit-learn"], args.limit)
    data = data.to(device)
    # Both runs see the same batches in the same order, and start from the same weights.
    gen = torch.Generator().manual_seed(args.seed)
    perms = [torch.randperm(len(data), generator=gen).to(device) for _ in range(args.epochs)]
    ours_cls, theirs_cls, sigmoid = LOSSES[args.loss]
    initial = build_model(args.seed, sigmoid)
    # Under torchrun: a 'sum' that Run scales to the global batch's mean (see Run).
    reduction = "mean" if procs.world_size == 1 else "sum"
    runs = [Run(name, copy.deepcopy(initial).to(device), loss_fn, args.lr, procs)
            for name, loss_fn in (("bce_ext", ours_cls(reduction=reduction)),
                                  ("torch", theirs_cls(reduction=reduction)))]
    warm_up(runs, data[:args.batch_size])
    train(runs, data, perms, args.batch_size, extras["tqdm"].tqdm, show=procs.main)
    ours, theirs = runs

    diff = max(abs(a - b) for a, b in zip(ours.losses, theirs.losses))
    result = DemoResult(ours.losses, theirs.losses, diff, ours.seconds, theirs.seconds,
                        os.path.abspath(os.path.join(args.out, PNG_NAME)), str(device),
                        procs.world_size, args.loss)
    if not procs.main:  # the other processes trained the same models; the first one reports
        return result
    os.makedirs(args.out, exist_ok=True)
    shown = one_per_class(labels)
    with torch.no_grad():
        recon = ours.model(data[shown]).cpu()
        if not sigmoid:
            recon = recon.sigmoid()
    plot(extras["matplotlib"], result, data[shown].cpu(), recon, result.png_path)
    print_report(result, procs)
    print(f"wrote {result.png_path}")
    return result


if __name__ == "__main__":
    main()
