"""What a search checks before Ray starts: the trial recipe's own config checks and whether a trial could ever be
placed. A failure is a `SearchError` (or the recipe's own error) instead of every trial failing, or waiting, later."""
from __future__ import annotations

import os

from ..config import Config
from ..core.errors import UserError


class SearchError(UserError, RuntimeError):
    """The search cannot start or resume as configured; the message says what to change."""


def check_recipe(cfg: Config) -> None:
    """The trial recipe's own checks (`check(cfg, env)` of the recipe protocol) on the base config and the trials'
    world size, before Ray starts: a missing shard set is one clear error instead of an error in every trial."""
    from ..core.distributed import DistEnv
    from ..recipes import RECIPES, load_class

    spec = RECIPES.get(cfg.tune.recipe)
    if spec is None:  # a pipeline, or a recipe class outside the table: its trials check it
        return
    check = getattr(load_class(spec.target), "check", None)
    if check is not None:
        check(cfg, DistEnv(world_size=cfg.tune.workers_per_trial))


def check_resources(cfg: Config) -> None:
    """Refuse, before Ray starts, a search whose trial could never be placed on the local instance it would start
    (Tune and Ray Train otherwise wait for the resources forever, silently). Not for a cluster (`tune.address`,
    RAY_ADDRESS), which may add nodes as trials wait."""
    import ray

    t = cfg.tune
    if ray.is_initialized() or t.address or os.environ.get("RAY_ADDRESS"):
        return
    parts = [f"{t.workers_per_trial} rank(s) x {t.cpus_per_trial:g} CPU"]
    cpus = t.workers_per_trial * t.cpus_per_trial
    if t.worker_groups and not t.worker_pool:
        cpus += 1
        parts.insert(0, "1 for the trial process driving its TorchTrainer")
    have = {"CPU": float(t.num_cpus or os.cpu_count() or 1)}
    need = {"CPU": cpus}
    if t.gpus_per_trial > 0:
        import torch

        need["GPU"] = t.workers_per_trial * t.gpus_per_trial
        have["GPU"] = float(torch.cuda.device_count())
    short = [k for k in need if need[k] > have[k] + 1e-9]
    if short:
        raise SearchError(
            f"one trial needs {need['CPU']:g} CPU ({' + '.join(parts)})"
            + (f" and {need['GPU']:g} GPU" if "GPU" in need else "")
            + f", but the local Ray instance has {have['CPU']:g} CPU" + (f" and {have['GPU']:g} GPU" if "GPU" in have
                                                                          else "")
            + " (tune.num_cpus, else this machine's count): lower tune.workers_per_trial or tune.cpus_per_trial, or "
              "raise tune.num_cpus (Ray may be told of more CPUs than the machine has)")
