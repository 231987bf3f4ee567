"""Frozen-feature cache: while an encoder is frozen (and no random augmentation touches its input) its output
for a sample never changes, so it is computed once and looked up by sample key afterwards.

A cache belongs to one encoder *identity*: a hash of the encoder's name and current weights
(`models.module_fingerprint`). An encoder that trained in an earlier phase has new weights, hence a new
identity and an empty cache: stale features cannot be served. Keys are the shard sample keys, unique within a
shard set, so one cache serves the train, val and test splits.

With `fusion.feature_cache: disk` (or a set `run.cache_dir`) the train-split table is also written to
`<cache folder>/<kind>-<identity>.safetensors` (`<run.cache_dir>/features`, else `<run dir>/feature_cache`) and
read back on resume (safetensors: no pickles). A saved table also records what made it beyond the encoder
(`provenance`: the shard set's manifest digest, the preprocessing): the identity says nothing about which images
a key names, so a cache folder shared by runs on two shard sets with the same keys would serve one set's
features to the other. Loading a table recorded with different provenance is refused (`ProvenanceError`
naming every differing key, the file and how to start over); a table that records none (older versions) or
cannot be read back is not used (a warning): its features are computed again and the file rewritten.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import torch

from ...core.provenance import refuse_changes
from ...features import os_error_of

log = logging.getLogger(__name__)


class FeatureCache:
    """key -> feature vector (fp32, CPU) for one encoder identity."""

    def __init__(self, kind: str, identity: str, directory: Optional[Path] = None,
                 provenance: Optional[Mapping[str, Any]] = None):
        self.kind = kind
        self.identity = identity
        self.directory = Path(directory) if directory is not None else None
        self.provenance = dict(provenance) if provenance is not None else None
        """What the features depend on besides the encoder (shard set digest, preprocessing); saved with them."""
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
        metadata = {"keys": json.dumps(keys)}
        if self.provenance is not None:
            metadata["provenance"] = json.dumps(self.provenance, sort_keys=True, default=str)
        try:
            save_file({"features": self.stacked(keys).contiguous()}, str(tmp), metadata=metadata)
            tmp.replace(self.path)  # atomic: a killed run never leaves a half-written cache
        except BaseException as err:  # (disk full, Ctrl-C): no half-written temporary left in the shared folder
            tmp.unlink(missing_ok=True)
            os_error = os_error_of(err, tmp)  # (safetensors' own error for a full disk: the OSError it is)
            if os_error is None:
                raise
            raise os_error from err
        return self.path

    def load(self) -> bool:
        """Read this identity's saved table; False when there is none or it is not used: it cannot be read back
        (copied half-way), or it records no provenance while this cache has one (written by an older version: which
        shard set and preprocessing made it cannot be checked). Then the features are computed again and `save`
        rewrites the file. A table recorded with other provenance is refused (`ProvenanceError`)."""
        if self.path is None or not self.path.is_file():
            return False
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                keys = json.loads(meta["keys"])
                feats = f.get_tensor("features")
        except Exception as err:  # noqa: BLE001 - an unreadable table is recomputed, as if absent
            log.warning("feature cache %s cannot be read back (%s: %s): not used; its features are computed again "
                        "and the file rewritten", self.path, type(err).__name__, err)
            return False
        if self.provenance is not None:
            if "provenance" not in meta:
                log.warning("feature cache %s records no provenance (written by an older version): which shard set "
                            "and preprocessing made it cannot be checked, so it is not used; its features are "
                            "computed again and the file rewritten", self.path)
                return False
            # compared on what the features depend on now (a text table saved with an image size still loads)
            recorded = {k: v for k, v in json.loads(meta["provenance"]).items() if k in self.provenance}
            refuse_changes(f"feature cache {self.path}", recorded, self.provenance,
                           remedy=f"Delete {self.path} (it is rebuilt), or use another run.cache_dir.")
        self._store.update({k: v for k, v in zip(keys, feats)})
        self.loaded_from_disk = True
        return True


def merge_gathered(parts: Iterable[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Union of per-rank {key: feature} dicts (eval-mode loading yields each key on exactly one rank)."""
    merged: Dict[str, torch.Tensor] = {}
    for part in parts:
        merged.update(part)
    return merged


class CachedKeys:
    """A loader preprocess that only names samples: `decode` keeps the key of a sample whose features are
    cached and reads nothing else (no image decoding). A train loader built with it deals exactly the samples, in
    exactly the order and batches, that the recipe's own train loader deals (same shards, seed, epoch, rank and
    batch size), so training from cached features sees the batches an uncached run sees. A key without features
    (its sample was bad when the cache was filled) is a bad sample here too, replaced as the loader replaces one."""

    def __init__(self, keys: Iterable[str]):
        self.keys = frozenset(keys)

    def decode(self, raw: Dict[str, Any], ctx: Any) -> Dict[str, Any]:
        key = raw["__key__"]
        if key not in self.keys:
            raise ValueError("no cached features (the sample could not be read when the cache was filled)")
        return {"key": key}

    def collate(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"key": [s["key"] for s in samples]}

    def finalize(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return batch


class FeatureTable:
    """The whole train split as tensors (keys, labels, image/text features): the final phase trains the heads
    from this alone, without decoding an image or running an encoder. `order` is a train loader over
    `CachedKeys`: it decides which samples make each batch, the same as the uncached run's loader would."""

    def __init__(self, keys: List[str], labels: torch.Tensor, image: Optional[torch.Tensor],
                 text: Optional[torch.Tensor], order: Any):
        self.keys = keys
        self.labels = labels
        self.image = image
        self.text = text
        self.order = order
        self.index = {k: i for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def batches(self, *, epoch: int, num_micro_batches: int, **_: Any):
        """This rank's micro batches of `epoch`, in the train loader's order (it holds the seed, rank, world
        size and micro batch size); at most `num_micro_batches` of them."""
        self.order.set_epoch(epoch)
        for _, batch in zip(range(num_micro_batches), self.order):
            idx = torch.tensor([self.index[k] for k in batch["key"]], dtype=torch.long)
            yield {
                "key": list(batch["key"]),
                "label": self.labels[idx],
                "image_features": self.image[idx] if self.image is not None else None,
                "text_features": self.text[idx] if self.text is not None else None,
            }
