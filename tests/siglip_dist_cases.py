"""The worker of test_siglip_distributed.py: `python siglip_dist_cases.py RANK WORLD INIT_FILE
OUT_DIR` joins a gloo group and, for every case, computes on its rank the loss and the gradients
(local image and text features, scale, bias) of open_clip's SigLipLoss (its loss module alone) and
of bce_ext.SigLipLoss, with the same rank, world size and dist_impl, on its slice of the same
global batch; it saves them for the test to compare."""
import datetime
import os
import sys

import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# (local batch, feature size, dist_impl, bias)
CASES = [(6, 5, "bidir", True), (6, 5, "shift", True), (6, 5, "reduce", False),
         (6, 5, "gather", True), (1, 3, "bidir", True), (40, 16, "shift", True)]


def case_id(case):
    b, d, impl, bias = case
    return f"{b}x{d}-{impl}-{'bias' if bias else 'no_bias'}"


def global_inputs(case, world):
    """The global batch (every rank builds the same), the scale and the bias, in float64."""
    b, d, _, bias = case
    gen = torch.Generator().manual_seed(b * 1000 + d)
    image = torch.nn.functional.normalize(torch.randn(world * b, d, generator=gen,
                                                      dtype=torch.float64), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(world * b, d, generator=gen,
                                                     dtype=torch.float64), dim=-1) + 0.5 * image
    scale = torch.tensor(10.0, dtype=torch.float64)
    return image, text, scale, torch.tensor(-10.0, dtype=torch.float64) if bias else None


def run_case(module, case, rank, world):
    image, text, scale, bias = global_inputs(case, world)
    b = case[0]
    leaves = [image[rank * b:(rank + 1) * b].clone().requires_grad_(),
              text[rank * b:(rank + 1) * b].clone().requires_grad_(),
              scale.clone().requires_grad_(),
              None if bias is None else bias.clone().requires_grad_()]
    loss = module(*leaves)
    grads = torch.autograd.grad(loss, [v for v in leaves if v is not None])
    return [loss.detach()] + [g.detach() for g in grads]


def main(rank, world, init_file, out_dir):
    from test_siglip_loss import load_open_clip_loss

    import bce_ext
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    open_clip = load_open_clip_loss()
    results = {}
    for case in CASES:
        impl = case[2]
        ours = run_case(bce_ext.SigLipLoss(rank=rank, world_size=world, dist_impl=impl), case,
                        rank, world)
        theirs = None
        if open_clip is not None:
            theirs = run_case(open_clip.SigLipLoss(rank=rank, world_size=world, dist_impl=impl),
                              case, rank, world)
        results[case_id(case)] = {"ours": ours, "theirs": theirs}
    # Unequal local batches raise on every rank (open_clip's exchange needs equal ones).
    try:
        x = torch.randn(3 + rank, 4, dtype=torch.float64)
        bce_ext.SigLipLoss(rank=rank, world_size=world)(x, x, torch.tensor(1.0,
                                                                           dtype=torch.float64))
        results["unequal"] = None
    except ValueError as exc:
        results["unequal"] = str(exc)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
