"""What extracted features depend on in a shard set: each sample's split, key and image bytes, nothing else.

The manifest digest covers descriptions too, so a set rebuilt with other descriptions (the VLM-fusion flow trains
on `describe`'s output: same keys, same image bytes, new `txt`) has another one although every feature would be
the same. The extraction records the SHA-256 of every sample's image member in its per-shard files (`images`,
`split` metadata) and their digest in index.json (`images_sha256`); a run on another shard set reads that set's
image members (no decoding) and compares them sample by sample.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Tuple

from ..data.images import image_member
from ..data.reader import DEFAULT_MAX_MEMBER_BYTES, iter_shard_samples
from ..data.shardset import ShardSet

log = logging.getLogger(__name__)

NO_IMAGE = "none"
"""The digest recorded for a sample without an image member (it counts as a bad sample, as when reading images)."""

SampleImages = Dict[Tuple[str, str], str]
"""(split, key) -> SHA-256 of the sample's image member bytes."""


def sample_image_sha256(raw: Mapping[str, Any]) -> str:
    ext = image_member(raw)
    return hashlib.sha256(raw[ext]).hexdigest() if ext else NO_IMAGE


def images_sha256(images: SampleImages) -> str:
    """One digest over every (split, key, image digest), in sorted order (independent of the shard layout)."""
    h = hashlib.sha256()
    for (split, key), digest in sorted(images.items()):
        h.update(f"{split}\t{key}\t{digest}\n".encode("utf-8"))
    return h.hexdigest()


def shard_set_images(shards: ShardSet, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> SampleImages:
    """The image digest of every sample of `shards`, read from its tars (one sequential pass, no decoding)."""
    return {(split, raw["__key__"]): sample_image_sha256(raw)
            for split, _, entry in shards.entries()
            for raw in iter_shard_samples(shards.root / entry["file"], max_member_bytes)}


def recorded_images(folder: Path, files: Iterable[Mapping[str, Any]]) -> SampleImages:
    """The image digests an extraction recorded in its per-shard files (`index.json`'s `files`)."""
    from safetensors import safe_open

    out: SampleImages = {}
    for item in files:
        with safe_open(str(Path(folder) / item["file"]), framework="pt") as f:
            meta = f.metadata() or {}
        out.update({(meta["split"], key): digest for key, digest in json.loads(meta["images"]).items()})
    return out


def _listed(keys: List[Tuple[str, str]], limit: int = 5) -> str:
    shown = ", ".join(f"{key} ({split})" for split, key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def image_differences(recorded: SampleImages, ours: SampleImages) -> List[str]:
    """What differs between the samples the features were extracted from and this shard set's, one line per kind
    (empty: the same images under the same keys in the same splits)."""
    by_key_recorded = {key: split for split, key in recorded}
    by_key_ours = {key: split for split, key in ours}
    moved = sorted((split, key) for key, split in by_key_ours.items()
                   if key in by_key_recorded and by_key_recorded[key] != split)
    missing = sorted(k for k in ours if k[1] not in by_key_recorded)
    extra = sorted(k for k in recorded if k[1] not in by_key_ours)
    changed = sorted(k for k, d in ours.items() if k in recorded and recorded[k] != d)
    lines = []
    if changed:
        lines.append(f"{len(changed)} sample(s) whose image differs: {_listed(changed)}")
    if moved:
        lines.append(f"{len(moved)} sample(s) in another split than at extraction: {_listed(moved)}")
    if missing:
        lines.append(f"{len(missing)} sample(s) the features do not have: {_listed(missing)}")
    if extra:
        lines.append(f"{len(extra)} sample(s) the features have and this shard set does not: {_listed(extra)}")
    return lines
