"""Resuming a checkpoint on a different number of processes: the layout a checkpoint was saved with, and the
re-partitioning of its model and optimizer state for the current world size.

Every checkpoint records its layout (`layout.json` in the tag folder, checksummed with the rest): world size,
ZeRO stage, micro batch, gradient accumulation and global batch. On load, a different world size is handled by
state kind:

- ZeRO-0 in fp32 or fp16: every rank holds the whole model and optimizer, saved once in the model-states file;
  DeepSpeed loads it on any number of processes as it is.
- ZeRO 1/2/3 (and bf16 when its optimizer keeps per-rank fp32 partitions at stage 0, `partition_files`; by default
  it keeps whole copies in the model-states file, as fp16 does, and loads as it is): the per-rank partitions
  are converted once into DeepSpeed's universal checkpoint (`deepspeed.checkpoint.ds_to_universal`: one folder per
  parameter with its fp32 weight and Adam moments), written beside the tag as `<tag>-universal/` (temporary name,
  checksums, rename, like a save), and loaded with DeepSpeed's `load_universal`, which slices every parameter for
  the new partitioning. Checked on the CPU with DeepSpeed 0.19.8 for ZeRO 1, 2 and 3, 2 -> 1 and 1 -> 2 processes.
  That load restores parameters only: the module's buffers (BatchNorm running statistics) are then copied back
  from the tag's model-states file (`restore_buffers`).

A changed ZeRO stage is refused (the run's config fixes it; `distributed.zero_stage` may not change on resume).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import torch

from .distributed import DistEnv, all_gather_object, barrier
from .errors import UserError
from .files import storage_failure

log = logging.getLogger(__name__)

LAYOUT = "layout.json"
UNIVERSAL_SUFFIX = "-universal"


class ReshardError(UserError):
    """A checkpoint that cannot be re-partitioned for the current processes."""


@dataclass(frozen=True)
class Layout:
    """How a checkpoint's state was partitioned and batched when it was saved."""

    world_size: int
    zero_stage: int
    micro_batch: int
    accumulation: int
    precision: str

    @property
    def global_batch(self) -> int:
        return self.world_size * self.micro_batch * self.accumulation

    @property
    def partitioned(self) -> bool:
        """Whether the optimizer state lives in per-rank partition files (ZeRO 1-3, or bf16's optimizer; a stage
        unknown, -1, is a layout inferred from such files)."""
        return self.zero_stage != 0 or self.precision == "bf16"


def engine_layout(engine) -> Layout:
    """The layout of a live DeepSpeed engine."""
    precision = "bf16" if engine.bfloat16_enabled() else "fp16" if engine.fp16_enabled() else "fp32"
    return Layout(world_size=int(engine.dp_world_size), zero_stage=int(engine.zero_optimization_stage()),
                  micro_batch=int(engine.train_micro_batch_size_per_gpu()),
                  accumulation=int(engine.gradient_accumulation_steps()), precision=precision)


def write_layout(tag_dir: Path, layout: Layout) -> None:
    (Path(tag_dir) / LAYOUT).write_text(json.dumps(asdict(layout), indent=1))


def read_layout(tag_dir: Path) -> Optional[Layout]:
    """The recorded layout, or one inferred from DeepSpeed's file names for checkpoints saved before layouts were
    recorded (None when neither tells: then the checkpoint is loaded as it is)."""
    path = Path(tag_dir) / LAYOUT
    if path.is_file():
        return Layout(**json.loads(path.read_text()))
    optim = partition_files(tag_dir)
    if optim:
        return Layout(world_size=len(optim), zero_stage=-1, micro_batch=0, accumulation=0, precision="unknown")
    return None


def partition_files(tag_dir: Path) -> List[Path]:
    """The per-rank optimizer partition files of a checkpoint. A bf16 run at ZeRO-0 has none with DeepSpeed 0.19.8
    (its optimizer keeps whole fp32 copies in the model-states file, like fp16): it loads on any number of processes
    as it is, where a conversion to a universal checkpoint found nothing to convert and the resume was refused."""
    return sorted(Path(tag_dir).glob("*zero_pp_rank_*_optim_states.pt"))


def universal_name(tag: str) -> str:
    return tag + UNIVERSAL_SUFFIX


def convert_to_universal(ckpt_dir: Path, tag: str, env: DistEnv) -> str:
    """Collective: rank 0 converts `<tag>` into `<tag>-universal` once (reused when a complete one is there);
    every rank returns its tag name. Checksummed and renamed like a save, so a kill mid-conversion leaves nothing
    that looks complete."""
    from .checkpoint import PARTIAL, checkpoint_problem, record_checksums  # here: checkpoint imports this module

    ckpt_dir = Path(ckpt_dir)
    name = universal_name(tag)
    error: Optional[str] = None
    space: Optional[str] = None  # the storage refused the writes (full disk, quota): said so, not "cannot re-partition"
    if env.is_main and (not (ckpt_dir / name).is_dir() or checkpoint_problem(ckpt_dir / name) is not None):
        partial = ckpt_dir / (PARTIAL + name)
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(ckpt_dir / name, ignore_errors=True)
        try:
            _run_ds_to_universal(ckpt_dir / tag, partial)
            record_checksums(partial)
            partial.rename(ckpt_dir / name)
        except Exception as err:  # noqa: BLE001  (reported on every rank below, not only on rank 0)
            log.exception("converting %s to a universal checkpoint failed", ckpt_dir / tag)
            error, space = f"{type(err).__name__}: {err}", storage_failure(err)
            shutil.rmtree(partial, ignore_errors=True)
            if space is not None:
                space += f"; {shutil.disk_usage(ckpt_dir).free / 2**20:.0f} MB free there now"
        (ckpt_dir / "latest_universal").unlink(missing_ok=True)  # DeepSpeed's pointer; ours is `latest`
    error, space = all_gather_object(env, (error, space))[0]
    barrier(env)
    if error is not None:
        saved = _saved_world_size(ckpt_dir / tag)
        back = f"{saved} processes" if saved else f"the number of processes it was saved with (its {LAYOUT} says)"
        if space is not None:
            raise ReshardError(f"no space to convert checkpoint {ckpt_dir / tag} for {env.world_size} processes in "
                               f"{ckpt_dir} ({space}); the half-written conversion was removed. It needs at least "
                               f"three times the model's fp32 size (weights and both Adam moments): free space "
                               f"there (fewer train.keep_checkpoints) and resume again, or resume on {back}, which "
                               f"needs no conversion")
        raise ReshardError(f"checkpoint {ckpt_dir / tag}, saved on {saved or 'an unknown number of'} processes, could "
                           f"not be re-partitioned for {env.world_size} processes ({error}); resume on "
                           + (f"{saved} processes" if saved else f"the number of processes it was saved with "
                              f"(its {LAYOUT} says how many)"))
    return name


def _saved_world_size(tag_dir: Path) -> Optional[int]:
    """The world size a checkpoint was saved with (its layout, recorded or inferred), None when it cannot be told."""
    try:
        layout = read_layout(tag_dir)
    except (OSError, ValueError, TypeError):  # an unreadable layout.json: the error names the file instead
        return None
    return layout.world_size if layout is not None and layout.world_size > 0 else None


def restore_buffers(module: torch.nn.Module, tag_dir: Path) -> List[str]:
    """Put `module`'s buffers (BatchNorm running statistics and batch counts) back as they were saved in
    `tag_dir`; returns their names. DeepSpeed's universal load restores parameters only (from `zero/`), so after
    it the buffers would start afresh and evaluation drift from the uninterrupted run's. Buffers are whole on
    every rank (never partitioned): rank 0's model-states file holds them all."""
    files = sorted(Path(tag_dir).glob("*mp_rank_00_model_states.pt"))
    if not files:
        raise ReshardError(f"{tag_dir} has no model-states file to restore the module's buffers from")
    # DeepSpeed pickles Python objects into this file (client and RNG state): weights_only=False, acceptable
    # because the caller has checked the checkpoint's digests recorded at save time (`checkpoint_problem`).
    # mmap: under ZeRO 1/2 this file holds the whole module; only the buffers are read from it
    saved = torch.load(files[0], map_location="cpu", weights_only=False, mmap=True).get("module") or {}
    restored, missing, persistent = [], [], set(module.state_dict())
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name in saved:
                buffer.copy_(saved[name].to(device=buffer.device, dtype=buffer.dtype))
                restored.append(name)
            elif name in persistent:  # a persistent buffer the checkpoint lacks: it starts afresh
                missing.append(name)
    if missing:
        log.warning("%s holds no value for the buffers %s: they keep their initial values", tag_dir,
                    ", ".join(missing))
    return restored


def _run_ds_to_universal(src: Path, out: Path) -> None:
    """DeepSpeed's converter, in this process (one worker: no process pool inside a training rank)."""
    from deepspeed.checkpoint import ds_to_universal

    args = argparse.Namespace(input_folder=str(src), output_folder=str(out), num_extract_workers=1,
                              num_merge_workers=1, keep_temp_folder=False, strict=True,
                              inject_missing_state=True)  # universal_checkpoint_info: Megatron's, absent here
    ds_to_universal.main(args)


def describe_change(saved: Layout, current: Layout) -> str:
    """One line for the log: the world size change and how the global batch is kept."""
    line = f"checkpoint saved on {saved.world_size} processes, resuming on {current.world_size}"
    if saved.micro_batch:
        line += (f": global batch {saved.global_batch} = {saved.micro_batch} x {saved.accumulation} x "
                 f"{saved.world_size} becomes {current.global_batch} = {current.micro_batch} x "
                 f"{current.accumulation} x {current.world_size} (micro batch x accumulation x processes)")
    return line


def check_compatible(saved: Layout, current: Layout, where: Path, param_groups: int = 1) -> None:
    """Refuse what re-partitioning cannot do: a changed ZeRO stage or global batch (naming both and the remedy),
    and a ZeRO-3 checkpoint of an optimizer with several parameter groups (`param_groups` of the current run)."""
    if saved.zero_stage == 3 and param_groups > 1:
        # Measured with DeepSpeed 0.19.8 (tests/recipes/vlm/test_vlm_world_size.py with the merger in a group of its
        # own at the same rate): a 1 -> 2 process resume loads without error and trains on, but the validation loss
        # drifts 4e-3 from the uninterrupted run instead of 1e-7 (DeepSpeed #7585: ZeRO-3 universal checkpoints
        # assume one parameter group). Refused rather than silently different.
        raise ReshardError(f"{where} was saved under ZeRO-3 on {saved.world_size} processes with an optimizer of "
                           f"{param_groups} parameter groups; DeepSpeed's universal checkpoint does not re-partition "
                           f"several ZeRO-3 groups correctly. Resume on {saved.world_size} processes, or use ZeRO 1/2 "
                           f"(or one group, e.g. without vlm.merger_lr / vlm.vision_lr) for runs that change size")
    if saved.zero_stage >= 0 and saved.zero_stage != current.zero_stage:
        raise ReshardError(f"{where} was saved under ZeRO stage {saved.zero_stage}, this run uses stage "
                           f"{current.zero_stage}; resume with distributed.zero_stage={saved.zero_stage}")
    if saved.micro_batch and saved.global_batch != current.global_batch:
        raise ReshardError(f"{where} was saved with global batch {saved.global_batch}, this run has "
                           f"{current.global_batch}; resume with the same global batch (the optimizer state and "
                           f"the data order depend on it)")

