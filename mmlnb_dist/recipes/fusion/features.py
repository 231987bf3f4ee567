"""Frozen-feature cache: while an encoder is frozen (and no random augmentation touches its input) its output
for a sample never changes, so it is computed once and looked up by sample key afterwards.

A cache belongs to one encoder *identity*: a hash of the encoder's name and current weights
(`models.module_fingerprint`). An encoder that trained in an earlier phase has new weights, hence a new
identity and an empty cache: stale features cannot be served. Keys are the shard sample keys, unique within a
shard set, so one cache serves the train, val and test splits.

With `fusion.feature_cache: disk` (or a set `run.cache_dir`) the train-split table is also written to
`<cache folder>/<kind>-<identity>.safetensors` (`<run.cache_dir>/features`, else `<run dir>/feature_cache`) and
read back on resume (safetensors: no pickles).
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import torch


class FeatureCache:
    """key -> feature vector (fp32, CPU) for one encoder identity."""

    def __init__(self, kind: str, identity: str, directory: Optional[Path] = None):
        self.kind = kind
        self.identity = identity
        self.directory = Path(directory) if directory is not None else None
        self._store: Dict[str, torch.Tensor] = {}
        self.loaded_from_disk = False
        """Whether `load()` found this identity's features on disk (a cache hit: no encoder pass needed)."""

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    @property
    def path(self) -> Optional[Path]:
        if self.directory is None:
            return None
        return self.directory / f"{self.kind}-{self.identity}.safetensors"

    def lookup(self, keys: Sequence[str]) -> Optional[torch.Tensor]:
        """Stacked features when every key is cached, else None (the caller computes the whole batch)."""
        try:
            return torch.stack([self._store[k] for k in keys])
        except KeyError:
            return None

    def put(self, keys: Sequence[str], features: torch.Tensor) -> None:
        features = features.detach().float().cpu()
        for k, f in zip(keys, features):
            self._store[k] = f.clone()

    def update(self, other: Dict[str, torch.Tensor]) -> None:
        self._store.update(other)

    def items(self) -> Dict[str, torch.Tensor]:
        return self._store

    def stacked(self, keys: Sequence[str]) -> torch.Tensor:
        return torch.stack([self._store[k] for k in keys])

    # -- disk ----------------------------------------------------------------------------------------------

    def save(self) -> Optional[Path]:
        if self.path is None or not self._store:
            return None
        from safetensors.torch import save_file

        keys = sorted(self._store)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name: concurrent trials sharing a cache folder may write the same entry at once.
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        save_file({"features": self.stacked(keys).contiguous()}, str(tmp), metadata={"keys": json.dumps(keys)})
        tmp.replace(self.path)  # atomic: a killed run never leaves a half-written cache
        return self.path

    def load(self) -> bool:
        if self.path is None or not self.path.is_file():
            return False
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            keys = json.loads(f.metadata()["keys"])
            feats = f.get_tensor("features")
        self._store.update({k: v for k, v in zip(keys, feats)})
        self.loaded_from_disk = True
        return True


def merge_gathered(parts: Iterable[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Union of per-rank {key: feature} dicts (eval-mode loading yields each key on exactly one rank)."""
    merged: Dict[str, torch.Tensor] = {}
    for part in parts:
        merged.update(part)
    return merged


class FeatureTable:
    """The whole train split as tensors (keys, labels, image/text features): the final phase trains the heads
    from this alone, without decoding an image or running an encoder."""

    def __init__(self, keys: List[str], labels: torch.Tensor, image: Optional[torch.Tensor],
                 text: Optional[torch.Tensor]):
        self.keys = keys
        self.labels = labels
        self.image = image
        self.text = text

    def __len__(self) -> int:
        return len(self.keys)

    def batches(self, *, epoch: int, seed: int, rank: int, world_size: int, micro_batch: int,
                num_micro_batches: int):
        """This rank's micro batches for one epoch: an epoch-seeded permutation shared by all ranks, dealt
        round-robin, `num_micro_batches` each (the same count on every rank, so no collective waits)."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.keys), generator=g)
        need = num_micro_batches * micro_batch * world_size
        if need > len(order):  # more steps than samples: wrap around (the loader resamples the same way)
            order = order.repeat(need // len(order) + 1)
        order = order[:need].view(num_micro_batches, world_size, micro_batch)[:, rank]
        for idx in order:
            yield {
                "key": [self.keys[i] for i in idx.tolist()],
                "label": self.labels[idx],
                "image_features": self.image[idx] if self.image is not None else None,
                "text_features": self.text[idx] if self.text is not None else None,
            }
