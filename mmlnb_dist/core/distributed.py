"""Everything about processes: ranks, the process group, collectives and the batch math.

No other module imports torch.distributed. Recipes receive a `DistEnv` and pass rank and world size down
explicitly; models never see them. DeepSpeed configs and engines are built in `core.engine`.

Launchers: a plain `python`/`mmlnb-dist` process is rank 0 of 1; `deepspeed`, `torchrun` and Ray Train set
RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_ADDR/PORT), which `DistEnv.from_environment` reads once.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from .errors import ConfigError, UserError
from .logging import library_prints
from .sections import DistributedConfig


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its global and local rank, the world size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @staticmethod
    def from_environment(device: Optional[torch.device] = None) -> "DistEnv":
        """Read the launcher's variables (absent: one process) and pick this rank's device."""
        _refuse_bare_slurm_tasks()
        rank, world, local = (_launcher_number(k, d) for k, d in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
        if world < 1:
            raise UserError(f"WORLD_SIZE={world} is not a positive number ({SET_BY_LAUNCHER})")
        if rank >= world and "WORLD_SIZE" not in os.environ:
            raise UserError(f"RANK={rank} but WORLD_SIZE is not set ({SET_BY_LAUNCHER})")
        if rank >= world:
            raise UserError(f"RANK={rank} is not below WORLD_SIZE={world} ({SET_BY_LAUNCHER})")
        for key in ("RANK", "LOCAL_RANK"):  # absent, every process was rank 0, or every rank took GPU 0
            if world > 1 and key not in os.environ:
                raise UserError(f"WORLD_SIZE={world} but {key} is not set ({SET_BY_LAUNCHER})")
        if device is None:
            device = torch.device("cuda", local % torch.cuda.device_count()) if torch.cuda.is_available() \
                else torch.device("cpu")
        return DistEnv(rank=rank, world_size=world, local_rank=local, device=device)


SET_BY_LAUNCHER = ("set by the launcher: torchrun, deepspeed and launch/*.sh set RANK, WORLD_SIZE and LOCAL_RANK; "
                   "a job script that sets them by hand must give every process its own")


SLURM_TASK_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS")
"""What `srun` gives each task of a job step: its index and the step's task count (the batch script has no step)."""


def _refuse_bare_slurm_tasks() -> None:
    """`srun -n 2 mmlnb-dist ...`: several Slurm tasks and no launcher variables. Each task ran as rank 0 of 1 on the
    same run folder (one trained alone, the other failed on the folder's lock); refused in every task instead."""
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS", "")
    if any(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")) or not tasks.isdigit() or int(tasks) < 2:
        return
    raise UserError(
        f"started as a Slurm task (SLURM_PROCID={os.environ.get('SLURM_PROCID', '?')}, SLURM_STEP_NUM_TASKS={tasks}) "
        f"without a launcher: each of the {tasks} tasks would run alone as rank 0 of 1 in the same run folder. Start "
        f"one task per node that runs torchrun (launch/slurm/train.sbatch; docs/scaling.md, Slurm), or run one task "
        f"(srun -n 1), or set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each task")


def _launcher_number(key: str, default: int) -> int:
    """A launcher variable as a number (absent: `default`), refused with its name when it is none."""
    text = os.environ.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{key}={text!r} is not a whole number ({SET_BY_LAUNCHER})") from None
    if value < 0:
        raise UserError(f"{key}={value} is negative ({SET_BY_LAUNCHER})")
    return value


def resolve_backend(cfg: DistributedConfig, device: torch.device) -> str:
    if cfg.backend != "auto":
        return cfg.backend
    return "nccl" if device.type == "cuda" else "gloo"


def init_process_group(env: DistEnv, cfg: DistributedConfig, timeout_s: int = 1800) -> None:
    """Create the process group once (DeepSpeed and Ray Train reuse an existing one)."""
    if not env.is_distributed or dist.is_initialized():
        return
    for key in ("MASTER_ADDR", "MASTER_PORT"):  # the env:// rendezvous; absent, DeepSpeed failed on mpi4py
        if not os.environ.get(key):
            raise UserError(f"WORLD_SIZE={env.world_size} but {key} is not set, the rendezvous address "
                            f"({SET_BY_LAUNCHER})")
    if env.device.type == "cuda":
        # The group is created here rather than by DeepSpeed (which adopts it) to bind it to this rank's GPU:
        # without device_id NCCL guesses a barrier's GPU from the global rank, the wrong GPU (a hang) where a
        # node's ranks do not map to its GPUs in order; torch warns "Guessing device ID based on global rank".
        torch.cuda.set_device(env.device)
        dist.init_process_group(backend=resolve_backend(cfg, env.device), device_id=env.device,
                                timeout=datetime.timedelta(seconds=timeout_s))
    import deepspeed

    with library_prints("deepspeed"):  # its "op built successfully" print goes to the log, not the console
        deepspeed.init_distributed(
            dist_backend=resolve_backend(cfg, env.device),
            timeout=datetime.timedelta(seconds=timeout_s),
            verbose=False,
        )


def init_engine_process_group(env: DistEnv, cfg: DistributedConfig, timeout_s: int = 1800) -> None:
    """Like `init_process_group`, but also gives a single process a 1-rank group.

    A DeepSpeed engine needs a process group and `LOCAL_RANK` even alone. A plain process gets a 1-rank group
    over an in-memory store: no rendezvous port is opened or written to the environment, so nothing stale is
    inherited by child processes (launchers, Ray trials) and concurrent single-process runs cannot collide.
    The group lives as long as the process: DeepSpeed caches its groups at module level.
    """
    if not env.is_distributed:
        # read by every DeepSpeed engine, also one built on a group an earlier run of this process made (a reused
        # trial process, whose launcher variables were dropped); a launcher sets its own
        os.environ.setdefault("LOCAL_RANK", "0")
    if not env.is_distributed and not dist.is_initialized():
        gpu = env.device if env.device.type == "cuda" else None
        if gpu is not None:
            torch.cuda.set_device(gpu)
        dist.init_process_group(backend=resolve_backend(cfg, env.device), store=dist.HashStore(), rank=0,
                                world_size=1, timeout=datetime.timedelta(seconds=timeout_s), device_id=gpu)
        import deepspeed

        with library_prints("deepspeed"):
            deepspeed.init_distributed(dist_backend=resolve_backend(cfg, env.device), verbose=False)
        return
    init_process_group(env, cfg, timeout_s)


LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun and the deepspeed launcher set for each rank (`DistEnv.from_environment` reads them)."""


def forget_launcher() -> None:
    """Make this process rank 0 of 1 (a Ray trial): drop the launcher variables it may have inherited from whoever
    started Ray, which would make it rendezvous (a stale MASTER_PORT failed trials with EADDRINUSE), and the Slurm
    task's identity of a `ray start` run by `srun -N 2` (refused as a task without a launcher otherwise)."""
    for key in LAUNCHER_VARIABLES + SLURM_TASK_VARIABLES:
        os.environ.pop(key, None)


def destroy_process_group() -> bool:
    """End this process's process groups; True when there were any."""
    if not dist.is_initialized():
        return False
    dist.destroy_process_group()
    return True


def barrier(env: DistEnv) -> None:
    if env.is_distributed and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def rank0_alone(env: DistEnv, wait_s: Optional[int] = None) -> Iterator[None]:
    """Around work that rank 0 does alone (the caller skips it on the other ranks): every rank leaves once rank 0
    is done.

    The others wait in a gloo group of their own whose timeout is `wait_s` (None: `distributed.rank0_wait_s`'s
    default), not in the default group, whose collectives' timeout (30 minutes) hours of tiling would exceed.
    When rank 0 fails it raises without reaching the barrier; its process ends, its connections close and the
    others stop at once."""
    if not env.is_distributed or not dist.is_initialized():
        yield
        return
    wait_s = DistributedConfig().rank0_wait_s if wait_s is None else wait_s
    # made before rank 0 starts: creating a group is collective, so every rank must still be here
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=wait_s))
    yield
    dist.barrier(group=group)
    dist.destroy_process_group(group)


def all_gather_object(env: DistEnv, obj: Any) -> List[Any]:
    """Every rank's `obj`, in rank order (a list of one on a single process)."""
    if not env.is_distributed:
        return [obj]
    out: List[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(env: DistEnv, tensor: torch.Tensor) -> torch.Tensor:
    if env.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_tensors(env: DistEnv, tensors: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
    """Each tensor concatenated over ranks along dim 0, in rank order (uneven per-rank lengths are fine):
    how evaluation collects a split's predictions when every rank predicted its own share."""
    local = tuple(t.detach().cpu() for t in tensors)
    parts = all_gather_object(env, local)
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(local)))


# ---------------------------------------------------------------------------------------------------------
# Batch math: derived from the typed config, never typed twice.
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchPlan:
    """global = micro x accumulation x world."""

    global_batch: int
    micro_batch: int
    accumulation: int
    world_size: int


def plan_batch(global_batch: int, world_size: int, micro_batch: Optional[int],
               key: str = "train.global_batch_size", micro_key: str = "distributed.micro_batch_per_gpu",
               resuming: bool = False) -> BatchPlan:
    """Derive micro batch and gradient accumulation; an indivisible combination is a `ConfigError` naming `key`
    and a remedy that plans: global batches or process counts the world size fits, or micro batches (`micro_key`)
    that divide a rank's share. `resuming` (`run.resume`): the process counts come first, since a resume keeps
    the global batch it was saved with."""
    if global_batch % world_size:
        # No micro batch helps (global = micro x accumulation x world): the refusal said to set one, in vain.
        lower = global_batch - global_batch % world_size
        batches = " or ".join(str(b) for b in (lower, lower + world_size) if b > 0)
        fitting = [n for n in range(1, 2 * world_size + 1) if global_batch % n == 0][-6:]
        counts = f"{', '.join(map(str, fitting))} process{'' if fitting == [1] else 'es'}"
        why = (f"{key}: global batch {global_batch} is not divisible by world size {world_size} (global = micro x "
               f"accumulation x world, whatever the micro batch)")
        if resuming:  # "set {key} to ..." led a resume into the refusal of a changed global batch
            raise ConfigError(f"{why}, and a resumed run keeps the global batch it was saved with: resume on "
                              f"{counts}, or start a new run (another run.name) with {key} set to {batches}")
        raise ConfigError(f"{why}: set {key} to {batches}, or run on {counts} (a resumed run keeps its global batch)")
    if micro_batch is None:
        micro_batch = global_batch // world_size
    per_step = micro_batch * world_size
    if global_batch % per_step:
        share = global_batch // world_size  # each rank's samples per optimizer step: the micro batch divides it
        fitting = [m for m in range(1, share + 1) if share % m == 0]
        if resuming:  # the micro batch is the run's too (config.yaml): "set it to ..." led into a refused change
            counts = [n for n in range(1, 2 * world_size + 1) if global_batch % (micro_batch * n) == 0][-6:]
            raise ConfigError(
                f"{key}: global batch {global_batch} is not a multiple of micro batch {micro_batch} x world size "
                f"{world_size} = {per_step}, and a resumed run keeps the {micro_key}={micro_batch} it was saved "
                f"with: resume on {', '.join(map(str, counts))} process{'' if counts == [1] else 'es'}, or start a "
                f"new run (another run.name) with {micro_key} set to {', '.join(map(str, fitting[-6:]))} or unset")
        raise ConfigError(
            f"{key}: global batch {global_batch} is not a multiple of micro batch {micro_batch} x world size "
            f"{world_size} = {per_step}; set {micro_key} to {', '.join(map(str, fitting[-6:]))} (a divisor of "
            f"{share}, a rank's share), or leave it unset"
        )
    return BatchPlan(global_batch, micro_batch, global_batch // per_step, world_size)
