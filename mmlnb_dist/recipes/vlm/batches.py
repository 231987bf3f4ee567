"""The fine-tuning data: image-description pairs, their order, their encoding, and the per-step seed.

Data order: the pairs of a shard set's train split are few (NBITP: 1,500) and are held in memory as encoded
bytes. Optimizer step `s` takes global batch `s` of a permutation seeded by (run.seed, epoch), every rank its own
contiguous slice; the random numbers of step `s` (LoRA dropout) come from a seed derived from (run.seed, s, the micro
batch's place in the global batch). Both depend on the step alone, so a resumed run replays exactly the steps an
uninterrupted one would have taken, on the same number of processes or (with the same micro batch) another.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np
import torch

from ...core.distributed import BatchPlan, all_reduce_sum, plan_batch
from ...core.errors import ConfigError
from ...data.images import image_member
from ...data.reader import iter_shard_samples
from ...data.shardset import ShardError, ShardSet
from . import model as V

if TYPE_CHECKING:
    from ...config import Config
    from ...core.distributed import DistEnv
    from .config import VLMConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    key: str
    image: bytes
    text: str
    label: str


def read_pairs(shards: ShardSet, split: str) -> List[Pair]:
    """Every (image, description) pair of one split, in manifest order; samples without a description (or an
    image) are skipped, and said with their first keys (they used to go without a word)."""
    if split not in shards.manifest["splits"]:
        return []
    classes = shards.classes
    pairs, skipped = [], []
    for path, _ in shards.shards(split):
        for s in iter_shard_samples(path):
            text = s.get("txt", b"").decode("utf-8").strip()
            ext = image_member(s)
            if not text or ext is None:
                skipped.append(s["__key__"])
                continue
            pairs.append(Pair(s["__key__"], s[ext], text, classes[int(s["cls"])]))
    if skipped:
        log.warning("%d of %d %s samples of %s have no description or no image and are left out of fine-tuning: "
                    "%s%s", len(skipped), len(skipped) + len(pairs), split, shards.root,
                    ", ".join(skipped[:5]), ", ..." if len(skipped) > 5 else "")
    return pairs


def count_pairs(shards: ShardSet, split: str) -> int:
    """How many samples of `split` `read_pairs` would return (for config checks; decodes no image)."""
    if split not in shards.manifest["splits"]:
        return 0
    return sum(1 for path, _ in shards.shards(split) for s in iter_shard_samples(path)
               if s.get("txt", b"").decode("utf-8").strip() and image_member(s) is not None)


def total_steps(vcfg: "VLMConfig", n_train: int) -> int:
    """The optimizer steps of a fine-tuning run of `n_train` train pairs (an epoch's last partial batch dropped)."""
    return vcfg.max_steps or vcfg.epochs * (n_train // vcfg.global_batch_size)


def check_resume_length(vcfg: "VLMConfig", total: int, latest: Optional[str]) -> None:
    """Refuse (ConfigError) a resume whose run ends at step `total` while its newest complete checkpoint
    `latest` (a `step-NNNNNN` tag) is past it: it would train nothing and keep the later step's adapter under a
    config (vlm.max_steps / vlm.epochs) that does not describe it."""
    if not latest or not latest.startswith("step-") or int(latest.split("-", 1)[1]) <= total:
        return
    key = f"vlm.max_steps={vcfg.max_steps}" if vcfg.max_steps else f"vlm.epochs={vcfg.epochs}"
    trained = int(latest.split("-", 1)[1])
    raise ConfigError(f"{key}: this resume ends at step {total}, but the run has trained to step {trained} (its "
                      f"latest checkpoint {latest}); resume with at least {trained} steps, or start a new run "
                      f"(another run.name) for a shorter one")


def validation_reports(vcfg: "VLMConfig", n_train: int) -> int:
    """How many times a fine-tuning run of `n_train` train pairs reports its validation (to a Tune trial): every
    `vlm.eval_every` steps before the last step, and once at the end."""
    total = total_steps(vcfg, n_train)
    return (total - 1) // vcfg.eval_every + 1 if vcfg.eval_every else 1


def report_count(cfg: "Config") -> Optional[int]:
    """The validation reports a fine-tuning run of `cfg` makes (the recipe table's `reports`, ASHA's max_t for a
    `tune.recipe=vlm` search); None when its pairs cannot be read (the recipe's own check names them)."""
    try:
        return validation_reports(cfg.vlm, count_pairs(ShardSet.open(cfg.vlm.pairs), "train"))
    except (ShardError, OSError):
        return None


def step_indices(n: int, global_batch: int, step: int, seed: int) -> List[int]:
    """Indices of global batch `step` (counted across epochs; the last partial batch of an epoch is dropped)."""
    per_epoch = n // global_batch
    epoch, within = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[within * global_batch:(within + 1) * global_batch].tolist()


def token_weights(env: "DistEnv", batches: Sequence[Dict[str, torch.Tensor]], accumulation: int) -> List[float]:
    """Per micro batch of this rank's share of an optimizer step: the factor its loss (the mean over its answer
    tokens) is multiplied by before `engine.backward`, so that the step's gradient is that of the mean over every
    answer token of the step, on all ranks. DeepSpeed divides each backward by the accumulation and averages the
    gradients over ranks, hence the factor accumulation x world size. An equal weight per micro batch (the mean of
    means, Hugging Face Trainer's behaviour before 4.46) weighed the tokens of short answers more, and made the
    update depend on `vlm.micro_batch_per_gpu`: adapters trained at micro batch 1 and 4 differed by 4e-3."""
    tokens = [float((b["labels"][:, 1:] != V.IGNORE_INDEX).sum()) for b in batches]  # as the loss counts them
    device = batches[0]["labels"].device if batches else torch.device("cpu")
    total = all_reduce_sum(env, torch.tensor([sum(tokens)], dtype=torch.float64, device=device)).item()
    return [t * accumulation * env.world_size / max(total, 1.0) for t in tokens]


def truncate_data_order(path: Path, step: int) -> None:
    """Keep the records of `data_order.jsonl` before optimizer step `step`, where a run starts (a killed run may
    have recorded steps after its last checkpoint: they are taken again; a line it was killed writing is dropped)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if _step_of(ln) is not None and _step_of(ln) < step]
        path.write_text("".join(ln + "\n" for ln in lines))


def _step_of(line: str) -> Optional[int]:
    """The step of a `data_order.jsonl` line, None for a blank or torn one."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None


def step_seed(seed: int, step: int, micro: int) -> int:
    """The seed of micro batch `micro` (its place in the global batch: rank x accumulation + index) of optimizer
    step `step`: dropout masks differ per micro batch and per step. Derived from the step, not from where the RNG
    stood: a resumed run draws what an uninterrupted one drew, on the CPU and on GPUs alike (CUDA generators are not
    in a checkpoint's RNG state), and the same micro batch draws the same masks whatever the number of processes."""
    return int(np.random.SeedSequence([seed, step, micro]).generate_state(1, dtype=np.uint64)[0] >> 1)


class PairEncoder:
    """Pairs -> `Encoded` sequences with the one template (`model.encode_pair`), cached when the split fits.

    Images are not augmented, so the processor's resize/normalise/patchify of a pair never changes; on small
    models it dominates a step, so encodings are kept in memory when all pairs fit in `cache_bytes`.
    """

    def __init__(self, processor, prompt: str, max_length: int, n_pairs: int = 0, cache_bytes: int = 1 << 30):
        self.processor, self.prompt, self.max_length = processor, prompt, max_length
        self.n_pairs, self.cache_bytes = n_pairs, cache_bytes
        self.cache: Dict[str, V.Encoded] = {}
        self.cached_pairs: Dict[str, Pair] = {}
        """The pair each cached encoding is of: a shard set may hold one key twice (a train and a val sample of a
        hand-merged set), and the other pair must not take its encoding."""

    def __call__(self, pairs: List[Pair]) -> List[V.Encoded]:
        out = []
        for p in pairs:
            enc = self.cache.get(p.key)
            if enc is None or self.cached_pairs[p.key] != p:
                enc = V.encode_pair(self.processor, p.image, self.prompt, p.text, self.max_length)
                size = enc.pixel_values.numel() * enc.pixel_values.element_size()
                if p.key not in self.cache and size * self.n_pairs <= self.cache_bytes:
                    self.cache[p.key], self.cached_pairs[p.key] = enc, p
            out.append(enc)
        return out


def pair_encoder(processor, vcfg: "VLMConfig", n_pairs: int = 0) -> PairEncoder:
    """The encoder of the `vlm` section: its prompt (`vlm.prompt`, the one describe generates from) and
    `vlm.max_length`."""
    return PairEncoder(processor, vcfg.prompt, vcfg.max_length, n_pairs)


def vlm_batch_plan(cfg: "Config", world_size: int) -> BatchPlan:
    """The fine-tune's batch plan: `vlm.global_batch_size` over `world_size` ranks in micro batches of
    `vlm.micro_batch_per_gpu` (else `distributed.micro_batch_per_gpu`); a refusal names the vlm keys."""
    micro = cfg.vlm.micro_batch_per_gpu or cfg.distributed.micro_batch_per_gpu
    return plan_batch(cfg.vlm.global_batch_size, world_size, micro, key="vlm.global_batch_size",
                      micro_key="vlm.micro_batch_per_gpu", resuming=cfg.run.resume)
