"""Predictions and the 2-rank gather worker of the metric tests.

The worker lives here, not in the test module, because `torch.multiprocessing.spawn` pickles it by module name:
children import `support.metrics` through the `tests/` folder on sys.path (conftest puts it there), whereas a
test module imported with `--import-mode=importlib` cannot be re-imported by name in a child.
"""
from __future__ import annotations

import os

import torch

CLASSES = ["UD", "PD", "D"]


def random_predictions(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % 3  # every class present (AUROC needs it)
    targets = targets[torch.randperm(n, generator=g)]
    logits = torch.randn(n, 3, generator=g) + 1.2 * torch.nn.functional.one_hot(targets, 3)
    return torch.softmax(logits, -1), targets


def gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Rank `rank` of `world` gloo ranks: gather uneven shares of 77 predictions, compute metrics, save them."""
    import torch.distributed as dist

    from mmlnb_dist.core.distributed import DistEnv, gather_tensors
    from mmlnb_dist.recipes.fusion.metrics import compute_metrics

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    probs, targets = random_predictions(77, 11)
    cut = 30  # uneven: rank 0 holds 30 samples, rank 1 holds 47
    mine = slice(0, cut) if rank == 0 else slice(cut, None)
    env = DistEnv(rank=rank, world_size=world)
    all_p, all_t = gather_tensors(env, (probs[mine], targets[mine]))
    metrics = compute_metrics(all_p, all_t, CLASSES)
    torch.save({"metrics": metrics, "n": len(all_t)}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()
