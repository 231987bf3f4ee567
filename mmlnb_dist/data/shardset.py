"""A shard set, opened once: its manifest, classes, splits and digest, passed down instead of a path.

    shards = ShardSet.open("shards/demo")
    shards.require_split("train")            # ShardError naming the folder and the remedy when it is empty
    shards.classes, shards.shards("val"), shards.digest, shards.dataset_specs()

A shard set is a folder with `{train,val,test}-NNNNNN.tar` and a `manifest.json` (format in docs/CONTRACTS.md
and docs/data.md). Each sample is a group of tar members sharing a key: the image, `cls` (class index),
`json` (metadata: label, slide id, source, provenance, optional `labels` list) and optionally `txt`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..core.errors import UserError

FORMAT = "mmlnb-shards/1"
MANIFEST = "manifest.json"
ENTRY_FIELDS = (("file", str), ("num_samples", int), ("class_counts", dict))
"""The fields of a manifest's shard entry and their JSON types (`shards build` writes them; a hand edit may not)."""


def bad_entry_fields(entry: Mapping[str, Any], fields: Sequence[Tuple[str, type]] = ENTRY_FIELDS) -> List[str]:
    """The names of `fields` that shard entry `entry` lacks or holds with another type (a bool is no count)."""
    return [name for name, kind in fields if not isinstance(entry.get(name), kind) or isinstance(entry.get(name), bool)]


SPLITS: Tuple[str, ...] = ("train", "val", "test")


def _check_fields(path: Path, manifest: Mapping[str, Any]) -> None:
    """The shapes of a manifest's `classes` and `splits`, which a hand edit may break: a class list written as one
    string was read character by character (a model of 'U', 'D', ',' ... classes trained without a word), and a
    list where a mapping belongs was an AttributeError traceback."""
    remedy = "restore the manifest or rebuild the shard set"
    classes = manifest["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) \
            or len(set(classes)) != len(classes):
        raise ShardError(f"{path}: 'classes' must be a list of distinct class names (got {classes!r:.80}); {remedy}")
    if not isinstance(manifest["splits"], dict):
        raise ShardError(f"{path}: 'splits' must map each split name to its entry (got {manifest['splits']!r:.80}); "
                         f"{remedy}")
    for name, split in manifest["splits"].items():
        if not isinstance(split, dict) or "shards" not in split or "num_samples" not in split:
            raise ShardError(f"{path}: split '{name}' lacks 'shards' or 'num_samples'")
        if not isinstance(split["shards"], list):
            raise ShardError(f"{path}: split '{name}': 'shards' must be a list of shard entries (got "
                             f"{split['shards']!r:.80}); {remedy}")
    # a shard file listed twice (a hand-made manifest): under val too, the model was scored on what it trained on;
    # twice in train, trained on twice an epoch; the size and checksum checks pass either way
    where: Dict[str, str] = {}
    for name, split in manifest["splits"].items():
        for entry in split["shards"]:
            file = entry.get("file") if isinstance(entry, dict) else None
            if not isinstance(file, str):
                continue  # a malformed entry: `ShardSet.shards` names it
            same = os.path.normpath(file)
            if same in where:
                raise ShardError(f"{path}: {file} is listed twice (split '{where[same]}' and split '{name}'); list "
                                 f"each shard once, or rebuild the shard set")
            where[same] = name


class ShardError(UserError, ValueError):
    """A shard set, shard or build input is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class ShardSet:
    """An opened shard set: the folder, its parsed manifest and the manifest's SHA-256."""

    root: Path
    manifest: Dict[str, Any]
    digest: str
    """SHA-256 of manifest.json, which lists every shard's own SHA-256: equal digests, equal shards."""

    @classmethod
    def open(cls, shard_dir: Union[str, Path]) -> "ShardSet":
        root = Path(shard_dir)
        path = root / MANIFEST
        if root.is_file():  # the manifest or a shard of the set, given for the set
            inside = f": give the folder that holds it, {root.parent}" if (root.parent / MANIFEST).is_file() else ""
            raise ShardError(f"{root} is a file, not a shard set folder{inside}")
        if not root.is_dir():
            # A run's config.yaml keeps the path as given: read from another folder (evaluate, predict), a
            # relative one names nothing, and the bare path did not say where it was looked for.
            where = "" if root.is_absolute() else (
                f" (a relative path, looked for at {root.absolute()}: run from the folder it is relative to, or "
                f"give the set's absolute path, e.g. data.shards=/path/to/{root.name})")
            raise ShardError(f"shard folder not found: {root}{where}")
        if not path.is_file():
            raise ShardError(f"{path} not found: {root} is not a shard set (build one with `mmlnb-dist shards "
                             f"build`)")
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ShardError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise ShardError(f"{path}: not a {FORMAT} manifest (format={found!r})")
        for key in ("classes", "splits"):
            if key not in manifest:
                raise ShardError(f"{path}: missing field '{key}'")
        _check_fields(path, manifest)
        return cls(root, manifest, hashlib.sha256(raw).hexdigest())

    # -- what it holds ------------------------------------------------------------------------------------------
    @property
    def classes(self) -> List[str]:
        """The label vocabulary, in index order (`cls` indexes it; multi-label `labels` name its entries)."""
        return list(self.manifest["classes"])

    @property
    def has_descriptions(self) -> bool:
        return bool(self.manifest.get("has_descriptions"))

    def num_described(self, split: str) -> Optional[int]:
        """Samples of `split` that carry a description (`txt`), from the shard entries; None when the manifest
        predates the count. `has_descriptions` says only that some sample of the set has one."""
        entries = self.manifest["splits"].get(split, {}).get("shards", [])
        counts = [e.get("num_described") for e in entries if isinstance(e, dict)]
        if len(counts) != len(entries) or not all(isinstance(n, int) and not isinstance(n, bool) for n in counts):
            return None
        return sum(counts)

    def undescribed_shards(self, split: str) -> List[Tuple[str, int]]:
        """(shard file, samples without a description) of every shard of `split` holding such samples, as far as
        the manifest records it."""
        return [(e["file"], e["num_samples"] - e["num_described"])
                for e in self.manifest["splits"].get(split, {}).get("shards", [])
                if isinstance(e, dict) and isinstance(e.get("num_described"), int)
                and e["num_described"] < e["num_samples"]]

    @property
    def task(self) -> str:
        """`single` (one class per sample, `cls`) or `multilabel` (a label set per sample: `shards build --task
        multilabel`)."""
        return str(self.manifest.get("task", "single"))

    @property
    def provenance(self) -> Dict[str, Any]:
        return dict(self.manifest.get("provenance") or {})

    def num_samples(self, split: str) -> int:
        return int(self.manifest["splits"].get(split, {}).get("num_samples", 0))

    def shards(self, split: str) -> List[Tuple[Path, int]]:
        """`(path, num_samples)` of every shard of `split`, in manifest order."""
        if split not in self.manifest["splits"]:
            raise ShardError(f"{self.root / MANIFEST}: no split '{split}' (has: {', '.join(self.manifest['splits'])})")
        found = []
        for i, s in enumerate(self.manifest["splits"][split]["shards"]):
            if not isinstance(s, dict) or bad_entry_fields(s, ENTRY_FIELDS[:2]):  # a hand edit
                raise ShardError(f"{self.root / MANIFEST}: split '{split}' shard #{i} ({s!r:.120}) lacks a 'file' name "
                                 f"or a 'num_samples' count; restore the manifest or rebuild the shard set")
            found.append((self.root / s["file"], s["num_samples"]))
        return found

    def entries(self) -> List[Tuple[str, int, Dict[str, Any]]]:
        """(split, position in split, manifest entry) of every shard, in manifest order."""
        return [(split, i, entry) for split, info in self.manifest["splits"].items()
                for i, entry in enumerate(info["shards"])]

    def copies_of_train(self) -> Dict[str, int]:
        """{held-out split: how many of its samples are copies of a train image} from the build's "duplicates"
        (`data.duplicates`): metrics on those samples score what the model trained on. Empty when there are none
        (or the set was built before copies were looked for)."""
        counts: Dict[str, int] = {}
        for group in (self.manifest.get("duplicates") or {}).get("across_splits", []):
            if any(m["split"] == "train" for m in group):
                for m in group:
                    if m["split"] != "train":
                        counts[m["split"]] = counts.get(m["split"], 0) + 1
        return counts

    def require_split(self, split: str, purpose: str = "") -> int:
        """The split's sample count; a `ShardError` naming the folder and the remedy when it is empty."""
        n = self.num_samples(split)
        if n == 0:
            why = f" ({purpose})" if purpose else ""
            raise ShardError(f"data.shards: {self.root} has no '{split}' samples{why}; rebuild the shards with a "
                             f"'{split}' split (data.build.val_fraction / test_fraction)")
        return n

    def dataset_specs(self) -> List[Dict[str, Any]]:
        """One JSON-ready dataset description per split (name, digest, counts, provenance): the run's lineage
        to its exact shards, logged as MLflow dataset inputs."""
        specs = []
        for split, info in self.manifest["splits"].items():
            profile = {
                "num_samples": info.get("num_samples"), "class_counts": info.get("class_counts"),
                "num_shards": len(info.get("shards", [])), "classes": self.classes,
                "has_descriptions": self.manifest.get("has_descriptions"), "manifest_sha256": self.digest,
                "provenance": self.manifest.get("provenance"),
            }
            specs.append({"name": f"{self.root.resolve().name}:{split}",  # MLflow merges equal name+digest
                          "digest": self.digest[:16], "source": str(self.root.resolve()), "profile": profile,
                          "context": split})
        return specs


def updated_manifest(base: Mapping[str, Any], entries: Mapping[Tuple[str, int], Dict[str, Any]],
                     **updates: Any) -> Dict[str, Any]:
    """A copy of `base` with shard entries replaced by position ((split, i) -> entry), split counts recomputed
    from them, and top-level fields updated (a derived shard set's manifest)."""
    new = json.loads(json.dumps(base))
    classes = new["classes"]
    for split, info in new["splits"].items():
        info["shards"] = [entries[(split, i)] for i in range(len(info["shards"]))]
        info["num_samples"] = sum(e["num_samples"] for e in info["shards"])
        info["class_counts"] = {c: sum(e["class_counts"].get(c, 0) for e in info["shards"]) for c in classes}
    new.update(updates)
    return new
