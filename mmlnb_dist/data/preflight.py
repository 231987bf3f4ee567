"""The pre-flight shard check: every shard file present and exactly as the manifest records it, before any work.

    check_shard_files(ShardSet.open("shards/demo"), cfg.data.loader.preflight, rank=env.rank,
                      world_size=env.world_size)

A missing, truncated or altered shard found an hour into training ends a run with a traceback or, worse, a
shard cut cleanly between two samples is read to its end and the run trains on fewer samples without a word.
The manifest records every shard's byte size and SHA-256, so `train`, `finetune-vlm`, `describe` and `evaluate`
compare the files with it first and stop with one `ShardError` (exit code 2) naming every bad shard.

Modes (`data.loader.preflight`): `checksum` (size and SHA-256), `size` (presence and size, a stat per shard,
for sets too large to hash at every start; a shard modified at or after its manifest was written is hashed too),
`off`. A tar's size moves in 10 KiB records, so a shard edited or replaced in place (another image, another
shard's bytes) often keeps its size; `shards build` and `describe` write the manifest after every shard, so only
a shard changed since (or a copy made without keeping times, `cp -r`) is newer, and only it costs a hash.
Every rank checks every file's size (cheap); the hashing is shared: rank r hashes shards r, r + W, ... in a
thread pool (hashlib releases the GIL), so each file is read once per job whatever the number of ranks, and a bad
shard stops the rank that found it (the launcher stops the others).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..core.files import sha256_file
from .shardset import MANIFEST, ShardError, ShardSet

log = logging.getLogger(__name__)

MODES = ("checksum", "size", "off")


def _size_problem(path: Path, entry: Dict[str, Any]) -> Optional[str]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{entry['file']}: missing"
    if entry.get("bytes") is not None and size != int(entry["bytes"]):
        return f"{entry['file']}: {size} bytes, the manifest says {entry['bytes']} (truncated or replaced)"
    return None


def _hash_problem(path: Path, entry: Dict[str, Any]) -> Optional[str]:
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        return f"{entry['file']}: sha256 differs from the manifest (altered or corrupt)"
    return None


def check_shard_files(shard_set: ShardSet, mode: str = "checksum", *, splits: Optional[List[str]] = None,
                      rank: int = 0, world_size: int = 1, threads: Optional[int] = None) -> int:
    """Compare the shard files of `splits` (default all) with the manifest; raise one `ShardError` listing every
    problem (shard and what is wrong, and the remedy). Returns the number of shards this rank checked."""
    if mode not in MODES:
        raise ShardError(f"data.loader.preflight: {mode!r} is not one of {', '.join(MODES)}")
    if mode == "off":
        return 0
    for split in shard_set.manifest["splits"]:
        if splits is None or split in splits:
            shard_set.shards(split)  # a ShardError naming a hand-edited entry without a file or count
    entries = [e for split, _, e in shard_set.entries() if splits is None or split in splits]
    problems = [p for p in (_size_problem(shard_set.root / e["file"], e) for e in entries) if p]
    bad = {p.split(":", 1)[0] for p in problems}
    mine = [e for e in entries[rank::world_size] if e["file"] not in bad]
    if mode == "size":  # the same size is no proof of the same bytes: hash what changed after the manifest
        written = (shard_set.root / MANIFEST).stat().st_mtime_ns
        mine = [e for e in mine if (shard_set.root / e["file"]).stat().st_mtime_ns >= written]
    if mine:
        workers = threads or min(8, os.cpu_count() or 1, len(mine))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            problems += [p for p in pool.map(lambda e: _hash_problem(shard_set.root / e["file"], e), mine) if p]
    if problems:
        listing = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ShardError(f"{shard_set.root}: {len(problems)} shard file(s) do not match {MANIFEST}:\n  {listing}\n"
                         f"Restore or rebuild these shards (`mmlnb-dist shards verify {shard_set.root}` lists every "
                         f"problem); data.loader.preflight=size skips the checksums, =off the whole check.")
    log.debug("pre-flight: %d shard(s) of %s match the manifest (%s)", len(entries), shard_set.root, mode)
    return len(mine) if mode == "checksum" else len(entries)
