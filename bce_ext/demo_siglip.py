"""`python -m bce_ext.demo --loss siglip`: a two-tower model trained with SigLIP's pairwise loss on
scikit-learn's 8x8 digits, each image against a noisy view of itself, once with bce_ext's tiled
loss and once with the dense formula in torch ops (open_clip's: the B x B logits), from the same
weights and batches. Prints both losses step by step, with the peak memory of each loss's step
(forward and backward) beyond what was allocated before it: torch.cuda.max_memory_allocated on a
GPU, the tensors the step allocated on the CPU (torch.profiler's memory records).
"""
import contextlib
import copy
import math
import os

import torch
import torch.nn.functional as F

import bce_ext

# The tile budget of this demo's bce_ext loss: small, so that a batch of 1024 is cut into tiles
# (with the default 32 MiB a batch under 2896 is one tile).
TILE_BYTES = 256 * 1024
NOISE = 0.25  # the text tower's view: the image plus this much Gaussian noise


def dense_siglip(image, text, scale, bias):
    """open_clip's SigLipLoss in torch ops: the B x B logits and labels."""
    logits = scale * image @ text.T + bias
    labels = 2 * torch.eye(image.shape[0], device=image.device, dtype=image.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / image.shape[0]


class TwoTowers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.image = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                         torch.nn.Linear(64, 32))
        self.text = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                        torch.nn.Linear(64, 32))
        # SigLIP's initialisation: scale 10 (learned as its log), bias -10.
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = torch.nn.Parameter(torch.tensor(-10.0))

    def forward(self, x, view):
        return (F.normalize(self.image(x), dim=-1), F.normalize(self.text(view), dim=-1),
                self.log_scale.exp(), self.bias)


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 to /dev/null: the profiler's native start and stop lines."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_of(step, device):
    """step()'s result and its peak memory beyond what was allocated before it, in bytes."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = step()
        torch.cuda.synchronize(device)
        return out, torch.cuda.max_memory_allocated(device) - base
    with quiet_stderr(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                profile_memory=True) as prof:
        out = step()
    # The running sum of the step's allocations and frees, in the order they happened.
    events = sorted((e for e in prof.events() if e.cpu_memory_usage != 0),
                    key=lambda e: e.time_range.start)
    level = peak = 0
    for e in events:
        level += e.cpu_memory_usage
        peak = max(peak, level)
    return out, peak


def run(args, device, extras):
    """Trains both runs; returns their per-step losses and peaks (prints them as it goes)."""
    from .demo import load_digits
    data, _ = load_digits(extras["scikit-learn"], args.limit)
    data = data.to(device)
    batch = args.batch_size
    gen = torch.Generator().manual_seed(args.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        initial = TwoTowers()
    losses = {"bce_ext": lambda i, t, s, b: bce_ext.siglip_loss(i, t, s, b,
                                                              max_tile_bytes=TILE_BYTES),
              "dense": dense_siglip}
    models = {name: copy.deepcopy(initial).to(device) for name in losses}
    optims = {name: torch.optim.Adam(m.parameters(), lr=args.lr) for name, m in models.items()}
    history = {name: [] for name in losses}
    peaks = {name: [] for name in losses}
    print(f"SigLIP two-tower demo: {len(data)} digits, batch {batch}, {args.epochs} epochs, "
          f"{device}; bce_ext's tile {TILE_BYTES // 1024} KiB, the dense logits "
          f"{batch * batch * 4 // 1024} KiB")
    print(f"{'step':>5} {'bce_ext loss':>13} {'dense loss':>13} {'|diff|':>9} "
          f"{'bce_ext peak':>13} {'dense peak':>11}")
    step_index = 0
    for _ in range(args.epochs):
        perm = torch.randperm(len(data), generator=gen).to(device)
        for start in range(0, len(data) - batch + 1, batch):  # full batches only
            x = data[perm[start:start + batch]]
            view = x + NOISE * torch.randn(x.shape, generator=gen).to(device)
            for name, loss_fn in losses.items():
                model, opt = models[name], optims[name]

                def step(model=model, loss_fn=loss_fn, x=x, view=view):
                    loss = loss_fn(*model(x, view))
                    loss.backward()
                    return loss.detach()
                opt.zero_grad()
                loss, peak = peak_of(step, device)
                opt.step()
                history[name].append(float(loss))
                peaks[name].append(peak)
            a, b = history["bce_ext"][-1], history["dense"][-1]
            pa, pb = peaks["bce_ext"][-1] / 2**20, peaks["dense"][-1] / 2**20
            print(f"{step_index:>5} {a:>13.8f} {b:>13.8f} {abs(a - b):>9.2e} "
                  f"{pa:>9.2f} MiB {pb:>7.2f} MiB")
            step_index += 1
    return history, peaks
