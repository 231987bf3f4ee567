"""Writing shards: `webdataset.TarWriter` with fixed headers, a temporary name and a rename, and the manifest.

The headers are fixed (mtime 0, owner names empty, ids 0, mode 0644; the POSIX tar format TarWriter uses) and
TarWriter writes the members of a sample sorted by extension, so the same samples give the same bytes:
rebuilds are byte-identical. A shard is
written to `<name>.partial` and renamed when complete, so a crash never leaves a finished-looking shard.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Sequence, Union

from ..core.files import replace_text, sha256_file
from .shardset import MANIFEST, ShardError

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
"""Allowed sample keys: they become tar member stems, and readers split names at the first dot."""


def as_bytes(value: Any) -> bytes:
    """A member's bytes: bytes as they are, text as UTF-8, dicts and lists as sorted-key JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return str(value).encode("utf-8")


def shard_entry(path: Path, num_samples: int, counts: Mapping[str, int], classes: Sequence[str],
                described: int) -> Dict[str, Any]:
    """A shard's manifest entry. `num_described`: its samples with a non-empty `txt` member (a set described in
    part feeds its text branch empty strings for the rest; `ShardSet.num_described` tells training)."""
    return {"file": path.name, "num_samples": num_samples,
            "class_counts": {c: int(counts.get(c, 0)) for c in classes}, "sha256": sha256_file(path),
            "bytes": path.stat().st_size, "num_described": int(described)}


def has_text(sample: Mapping[str, Any]) -> bool:
    """Whether a raw sample carries a description (a `txt` member that is not blank)."""
    return "txt" in sample and bool(as_bytes(sample["txt"]).strip())


def _class_index(sample: Mapping[str, Any], n_classes: int, shard: str) -> int:
    """The sample's `cls` as an index into the classes; a value that is none (-1 would count under the last class)
    is a `ShardError` naming the shard and the sample."""
    text = as_bytes(sample["cls"]).decode("ascii", errors="replace").strip()
    if not (text.isdigit() and int(text) < n_classes):
        raise ShardError(f"{shard}: sample {sample['__key__']!r} has class index {text!r}; the classes are "
                         f"0-{n_classes - 1}")
    return int(text)


def write_tar_shard(path: Union[str, Path], samples: Iterable[Mapping[str, Any]],
                    classes: Sequence[str]) -> Dict[str, Any]:
    """Write raw samples (`{"__key__": ..., "jpg": bytes, "cls": ..., ...}`) to one tar; return its manifest entry.

    Samples are written in the order given. Keys starting with `__` (`__key__`, `__shard__`) are not written.
    """
    from webdataset import TarWriter

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    counts: Counter = Counter()
    n = described = 0
    seen = set()
    try:
        with open(tmp, "wb") as stream:
            writer = TarWriter(stream, user="", group="", mode=0o644, mtime=0, encoder=False)
            try:
                for sample in samples:
                    key = sample["__key__"]
                    if not KEY_RE.match(key):
                        raise ShardError(f"{path.name}: invalid sample key {key!r} (allowed: [A-Za-z0-9_-])")
                    if key in seen:
                        raise ShardError(f"{path.name}: duplicate sample key {key!r}")
                    seen.add(key)
                    writer.write({"__key__": key, **{ext: as_bytes(v) for ext, v in sample.items()
                                                      if not ext.startswith("__")}})
                    counts[classes[_class_index(sample, len(classes), path.name)]] += 1
                    n += 1
                    described += has_text(sample)
            finally:
                writer.close()  # also on errors: the tar stream must not outlive the file it writes to
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return shard_entry(path, n, counts, classes, described)


SIZES = "sizes.json"
"""`{shard file name: sample count}` beside the shards: what WebDataset clients such as open_clip read when no
sample count is given."""


def write_manifest(shard_dir: Union[str, Path], manifest: Mapping[str, Any]) -> Path:
    """Write `manifest.json` whole (`core.files.replace_text`), with sorted keys for stable bytes, and
    `sizes.json` (every shard's sample count, from the manifest's entries) before it."""
    sizes = {e["file"]: int(e["num_samples"]) for info in manifest.get("splits", {}).values()
             for e in info.get("shards", [])}
    replace_text(Path(shard_dir) / SIZES, json.dumps(sizes, indent=2, sort_keys=True) + "\n")
    path = Path(shard_dir) / MANIFEST
    replace_text(path, json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return path
