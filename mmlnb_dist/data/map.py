"""Shard set in -> shard set out: a function over every sample, distributed, batched, resumable, exactly once.

    result = map_shard_set(ShardSet.open("shards/nbpath"), "shards/nbpath-described", describe_batch,
                           env=env, batch_size=8, provenance={"describe": {...}}, has_descriptions=True)

`fn(raw_samples) -> updates` takes a batch of raw samples (`{"__key__", "jpg", "cls", "json", "txt", ...}` as
bytes) and returns, per sample, the members to set (`{"txt": "...", "json": {...}}`; text, bytes or JSON-able
values). The output keeps the input's split and shard file names, keys and every other member.

- Ranks take input shards round-robin by their global index (rank r: shards r, r + W, ...): never a shared shard.
- An output shard is written under a temporary name and renamed when complete, so an existing output tar is
  final. While a shard is in progress, each finished batch's updates are appended to `.progress/<shard>.jsonl`
  (flushed and fsynced); a restarted run skips those batches. Batch boundaries are fixed offsets in the shard,
  so a deterministic `fn` gives a resumed run exactly the output of an uninterrupted one.
- Rank 0 then writes the manifest (the input's, with the new shard entries, `provenance` merged in and the
  given top-level fields) and checks that the output holds every input key exactly once, in the same shard.
"""
from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

from ..core.distributed import DistEnv, all_gather_object, barrier
from .reader import iter_shard_samples
from .shardset import ShardError, ShardSet, updated_manifest
from .writer import as_bytes, shard_entry, write_manifest, write_tar_shard

PROGRESS_DIR = ".progress"
Updates = Dict[str, Union[str, bytes, Mapping[str, Any], List[Any]]]


def _encode_updates(updates: Updates) -> Dict[str, Any]:
    return {ext: ({"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else {"text": as_bytes(v).decode()})
            for ext, v in updates.items()}


def _decode_updates(stored: Dict[str, Any]) -> Dict[str, bytes]:
    return {ext: base64.b64decode(v["b64"]) if "b64" in v else v["text"].encode("utf-8") for ext, v in stored.items()}


def read_progress(path: Path) -> Dict[str, Dict[str, bytes]]:
    """key -> member updates of the batches already done; a torn last line (killed mid-write) is ignored."""
    done: Dict[str, Dict[str, bytes]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            done[row["key"]] = _decode_updates(row["members"])
    return done


def _append_progress(path: Path, rows: Iterable[Tuple[str, Updates]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for key, updates in rows:
            f.write(json.dumps({"key": key, "members": _encode_updates(updates)}, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _existing_entry(path: Path, classes: Sequence[str]) -> Dict[str, Any]:
    """Manifest entry of a finished output shard (after a restart)."""
    counts = Counter(classes[int(s["cls"])] for s in iter_shard_samples(path))
    return shard_entry(path, sum(counts.values()), counts, classes)


def _map_shard(src: Path, dst: Path, fn: Callable[[List[Dict[str, Any]]], List[Updates]], batch_size: int,
               classes: Sequence[str], on_batch: Callable[[int], None]) -> Dict[str, Any]:
    progress = dst.parent / PROGRESS_DIR / (dst.name + ".jsonl")
    done = read_progress(progress)
    samples = list(iter_shard_samples(src))
    for start in range(0, len(samples), batch_size):  # fixed boundaries: a resumed run batches identically
        batch = samples[start:start + batch_size]
        if all(s["__key__"] in done for s in batch):
            continue
        updates = fn(batch)
        if len(updates) != len(batch):
            raise RuntimeError(f"map function returned {len(updates)} results for a batch of {len(batch)}")
        rows = [(s["__key__"], u) for s, u in zip(batch, updates)]
        _append_progress(progress, rows)
        done.update({k: {ext: as_bytes(v) for ext, v in u.items()} for k, u in rows})
        on_batch(len(batch))
    out = ({**{k: v for k, v in s.items() if k != "__shard__"}, **done[s["__key__"]]} for s in samples)
    entry = write_tar_shard(dst, out, classes)
    progress.unlink(missing_ok=True)
    return entry


def verify_exactly_once(source: ShardSet, out: Path) -> int:
    """Every input key appears exactly once in the output, in the same shard; returns the count."""
    n = 0
    for split, _, entry in source.entries():
        want = Counter(s["__key__"] for s in iter_shard_samples(source.root / entry["file"]))
        got = Counter(s["__key__"] for s in iter_shard_samples(out / entry["file"]))
        if want != got:
            missing = set(want) - set(got)
            dup = [k for k, c in got.items() if c > 1]
            raise ShardError(f"{out / entry['file']} ({split}) does not match its input: {len(missing)} missing, "
                             f"{len(dup)} duplicated keys")
        n += sum(want.values())
    return n


def map_shard_set(source: ShardSet, out: Union[str, Path], fn: Callable[[List[Dict[str, Any]]], List[Updates]], *,
                  env: DistEnv, batch_size: int, provenance: Mapping[str, Any] = (), progress: bool = True,
                  desc: str = "map", **manifest_fields: Any) -> Dict[str, Any]:
    """Apply `fn` to every sample of `source` into the shard set `out` (see the module docstring).

    Collective: every rank calls it. Returns on every rank {"out", "processed_now", "seconds"}; rank 0 also
    gets "num_samples" (verified exactly once) and "manifest".
    """
    from tqdm import tqdm

    out = Path(out)
    if out.resolve() == source.root.resolve():
        raise ShardError(f"the output shard set must differ from its input ({out})")
    classes = source.classes
    (out / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    mine = source.entries()[env.rank::env.world_size]
    todo = [m for m in mine if not (out / m[2]["file"]).is_file()]
    total = sum(m[2]["num_samples"] for m in todo)
    already = sum(len(read_progress(out / PROGRESS_DIR / (m[2]["file"] + ".jsonl"))) for m in todo)
    bar = tqdm(total=total, initial=already, unit="sample", desc=f"{desc}[rank {env.rank}]", disable=not progress,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    entries: List[Tuple[str, int, Dict[str, Any]]] = []
    for split, i, entry in mine:
        dst = out / entry["file"]
        if dst.is_file():  # finished by an earlier run (written atomically)
            entries.append((split, i, _existing_entry(dst, classes)))
        else:
            entries.append((split, i, _map_shard(source.root / entry["file"], dst, fn, batch_size, classes,
                                                 bar.update)))
    bar.close()
    seconds = time.perf_counter() - t0
    gathered = all_gather_object(env, {"entries": entries, "processed": total - already, "seconds": seconds})
    result: Dict[str, Any] = {"out": str(out), "processed_now": sum(g["processed"] for g in gathered),
                              "seconds": max(g["seconds"] for g in gathered)}
    if env.is_main:
        by_pos = {(s, i): e for g in gathered for s, i, e in g["entries"]}
        merged = {**source.provenance, **dict(provenance)}
        manifest = updated_manifest(source.manifest, by_pos, provenance=merged, **manifest_fields)
        write_manifest(out, manifest)
        result["num_samples"] = verify_exactly_once(source, out)
        result["manifest"] = manifest
        try:
            (out / PROGRESS_DIR).rmdir()
        except OSError:
            pass
    barrier(env)
    return result
