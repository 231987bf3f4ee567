"""Shard set in -> shard set out: a function over every sample, distributed, batched, resumable, exactly once.

    result = map_shard_set(ShardSet.open("shards/nbpath"), "shards/nbpath-described", describe_batch,
                           env=env, batch_size=8, provenance={"describe": {...}}, has_descriptions=True)

`fn(raw_samples) -> updates` takes a batch of raw samples (`{"__key__", "jpg", "cls", "json", "txt", ...}` as
bytes) and returns, per sample, the members to set (`{"txt": "...", "json": {...}}`; text, bytes or JSON-able
values). The output keeps the input's split and shard file names, keys and every other member.

- Ranks take input shards round-robin by their global index (rank r: shards r, r + W, ...): never a shared shard.
- An output shard is written under a temporary name and renamed when complete, so an existing output tar is
  final. While a shard is in progress, each finished batch's updates are appended to `.progress/<shard>.jsonl`
  (flushed and fsynced); a restarted run skips those batches, and gives `fn` only the undone samples of a batch
  that is partly done (a resume at another batch size). Batch boundaries are fixed offsets in the shard, so a
  deterministic `fn` gives a resumed run exactly the output of an uninterrupted one (across a batch size change,
  an `fn` whose result for a sample does not depend on the rest of its batch, as describe's).
- Rank 0 then writes the manifest (the input's, with the new shard entries counted from the written shards,
  `provenance` merged in and the given top-level fields) and checks that the output holds every input key
  exactly once, in the same shard, except the samples `fn` skipped.
- One job per output: rank 0 holds a `FolderLock` on `out` (`lock=False`: the caller holds it).
- What made the output: `record` (the settings that decide its content) is stored in `out/provenance.json` on
  the first run; a later run with a different record is refused (`ProvenanceError` listing every differing key)
  unless `restart=True`, which first deletes the old output (only a folder holding nothing but map outputs and
  the caller's `reports`).
- Bad samples: `fn` returns `SkipSample(reason)` for a sample it cannot use (an undecodable image); it is left
  out of the output, listed under the manifest's `skipped`, and counted against `max_bad_sample_rate` (one rate
  over all ranks: skipped / input samples; `BadSampleRateError`). An input shard holding fewer samples than its
  manifest entry stops the run with a `ShardError` naming it (a tar cut cleanly between two samples).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..core.distributed import DistEnv, all_gather_object, barrier
from ..core.errors import UserError
from ..core.progress import progress_bar
from ..core.provenance import check_or_record
from ..core.runlock import HOLDER_FILE, LOCK_FILE, FolderLock, is_lock_file
from .ledger import BadSample, BadSampleRateError, exceeds, rate_message
from .reader import DEFAULT_MAX_MEMBER_BYTES, iter_shard_samples
from .shardset import MANIFEST, ShardError, ShardSet, updated_manifest
from .writer import SIZES, as_bytes, has_text, shard_entry, write_manifest, write_tar_shard

PROGRESS_DIR = ".progress"
PROVENANCE_FILE = "provenance.json"
Updates = Dict[str, Union[str, bytes, Mapping[str, Any], List[Any]]]


@dataclass(frozen=True)
class SkipSample:
    """What `fn` returns for a sample it cannot use: left out of the output, listed with the reason."""

    reason: str


Done = Dict[str, Union[Dict[str, bytes], SkipSample]]


def _encode_updates(updates: Updates) -> Dict[str, Any]:
    return {ext: ({"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else {"text": as_bytes(v).decode()})
            for ext, v in updates.items()}


def _decode_updates(stored: Dict[str, Any]) -> Dict[str, bytes]:
    return {ext: base64.b64decode(v["b64"]) if "b64" in v else v["text"].encode("utf-8") for ext, v in stored.items()}


def read_progress(path: Path) -> Done:
    """key -> member updates (or `SkipSample`) of the batches already done; a torn last line (killed
    mid-write) is ignored."""
    done: Done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            done[row["key"]] = SkipSample(row["skip"]) if "skip" in row else _decode_updates(row["members"])
    return done


def _drop_torn_tail(path: Path) -> None:
    """Cut a journal after its last complete line. A kill mid-write leaves a torn last line, and the resumed run's
    rows appended to it would share its line, which `read_progress` stops at: every batch journaled since would
    be done again after the next stop."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)


def _append_progress(path: Path, rows: Iterable[Tuple[str, Union[Updates, SkipSample]]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for key, updates in rows:
            row = ({"key": key, "skip": updates.reason} if isinstance(updates, SkipSample)
                   else {"key": key, "members": _encode_updates(updates)})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _skipped_path(out: Path, shard: str) -> Path:
    """Samples skipped in a finished shard (kept until the manifest lists them)."""
    return out / PROGRESS_DIR / f"{shard}.skipped.json"


def _existing_entry(path: Path, classes: Sequence[str]) -> Dict[str, Any]:
    """Manifest entry of a finished output shard (after a restart)."""
    counts: Counter = Counter()
    described = 0
    for sample in iter_shard_samples(path):
        counts[classes[int(sample["cls"])]] += 1
        described += has_text(sample)
    return shard_entry(path, sum(counts.values()), counts, classes, described)


def _map_shard(src: Path, expected: int, dst: Path, fn: Callable[[List[Dict[str, Any]]], List[Any]],
               batch_size: int, classes: Sequence[str], on_batch: Callable[[int], None], max_member_bytes: int,
               on_skip: Callable[[List[Dict[str, str]]], None]) -> Tuple[Dict[str, Any], int]:
    """Map one shard into `dst`: (its manifest entry, how many samples `fn` skipped in this run)."""
    progress = dst.parent / PROGRESS_DIR / (dst.name + ".jsonl")
    _drop_torn_tail(progress)
    done = read_progress(progress)
    samples = list(iter_shard_samples(src, max_member_bytes))
    if len(samples) != expected:
        raise ShardError(f"input shard {src} holds {len(samples)} samples, its manifest entry says {expected} "
                         f"(truncated or replaced); restore or rebuild it (`mmlnb-dist shards verify`)")
    skipped = [{"shard": dst.name, "key": k, "reason": u.reason} for k, u in done.items() if isinstance(u, SkipSample)]
    on_skip(skipped)
    skipped_before = len(skipped)
    for start in range(0, len(samples), batch_size):  # fixed boundaries: a resumed run batches identically
        # only the samples not journaled yet: a batch is partly done after a resume at another batch size (describe
        # allows it) or a kill between its journal lines, and mapping it whole did the done samples again
        batch = [s for s in samples[start:start + batch_size] if s["__key__"] not in done]
        if not batch:
            continue
        updates = fn(batch)
        if len(updates) != len(batch):
            raise RuntimeError(f"map function returned {len(updates)} results for a batch of {len(batch)}")
        rows = [(s["__key__"], u) for s, u in zip(batch, updates)]
        _append_progress(progress, rows)
        new_skips = [{"shard": dst.name, "key": k, "reason": u.reason} for k, u in rows if isinstance(u, SkipSample)]
        skipped += new_skips
        done.update({k: u if isinstance(u, SkipSample) else {ext: as_bytes(v) for ext, v in u.items()}
                     for k, u in rows})
        on_batch(len(batch))
        on_skip(new_skips)
    out = ({**{k: v for k, v in s.items() if k != "__shard__"}, **done[s["__key__"]]} for s in samples  # type: ignore
           if not isinstance(done[s["__key__"]], SkipSample))
    _skipped_path(dst.parent, dst.name).write_text(json.dumps(skipped))  # before the shard: a kill in between
    entry = write_tar_shard(dst, out, classes)                             # leaves a file that is rewritten
    progress.unlink(missing_ok=True)
    return entry, len(skipped) - skipped_before


def _finished_skips(out: Path, shard: str, desc: str, source: ShardSet) -> List[Dict[str, str]]:
    """The skips of a shard an earlier run finished: its skip list, or, once a finished run has removed the
    journal folder, the manifest that run wrote (a rerun into a finished output must not read its shards as
    skipping nothing: the skip list would be lost and the exactly-once check fail on the skipped keys). That
    manifest lists the input's skips first: those (an earlier stage of the same name) are not this run's."""
    path = _skipped_path(out, shard)
    if path.is_file():
        return json.loads(path.read_text())
    listed = json.loads((out / MANIFEST).read_text()).get("skipped", []) if (out / MANIFEST).is_file() else []
    inherited = source.manifest.get("skipped", [])
    return [{k: v for k, v in s.items() if k != "stage"} for s in listed[len(inherited):]
            if isinstance(s, dict) and s.get("stage") == desc and s.get("shard") == shard]


def verify_exactly_once(source: ShardSet, out: Path, skipped: Iterable[str] = ()) -> int:
    """Every input key but the `skipped` ones appears exactly once in the output, in the same shard; returns
    the count."""
    n = 0
    skip = set(skipped)
    for split, _, entry in source.entries():
        want = Counter(s["__key__"] for s in iter_shard_samples(source.root / entry["file"])
                       if s["__key__"] not in skip)
        got = Counter(s["__key__"] for s in iter_shard_samples(out / entry["file"]))
        if want != got:
            missing = set(want) - set(got)
            dup = [k for k, c in got.items() if c > 1]
            raise ShardError(f"{out / entry['file']} ({split}) does not match its input: {len(missing)} missing, "
                             f"{len(dup)} duplicated keys")
        n += sum(want.values())
    return n


MAP_OUTPUTS = (MANIFEST, SIZES, PROVENANCE_FILE, PROGRESS_DIR, LOCK_FILE, HOLDER_FILE)
"""What a map output folder may hold (besides shards and the caller's `reports`): `restart` deletes only such a
folder."""


def clear_output(out: Path, reports: Sequence[str] = ()) -> None:
    """Delete an earlier (partial or finished) map output, keeping the lock files; refuse a folder holding
    anything else than map outputs and the caller's `reports` (a wrong --out must never cost the user their
    files)."""
    if not out.is_dir():
        return
    ours = set(MAP_OUTPUTS) | set(reports)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not is_lock_file(p.name)
                     and not p.name.endswith((".tar", ".partial", ".tmp")))
    if foreign:
        raise ShardError(f"refusing to start over in {out}: it holds {', '.join(foreign[:5])}, which this run does "
                         f"not write; choose another output folder")
    for p in out.iterdir():
        if not is_lock_file(p.name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _claim_output(out: Path, record: Optional[Mapping[str, Any]], allow: Sequence[str], restart: bool,
                  desc: str, reports: Sequence[str]) -> None:
    """Rank 0: start over if asked, then record what makes the output or refuse a different maker. A folder with
    shards or a manifest but no record (a built shard set named by mistake) is refused, restart or not."""
    if record is not None and not (out / PROVENANCE_FILE).is_file() and (
            (out / MANIFEST).is_file() or any(out.glob("*.tar"))):
        raise ShardError(f"refusing to write into {out}: it holds a shard set that no {desc} run recorded "
                         f"(no {PROVENANCE_FILE}); choose another output folder")
    if restart:
        clear_output(out, reports)
    out.mkdir(parents=True, exist_ok=True)
    if record is not None:
        check_or_record(out / PROVENANCE_FILE, record, what=f"{out} ({desc} output)", allow=allow,
                        remedy=f"Continue it with the recorded settings ({out / PROVENANCE_FILE}), write to another "
                               f"folder, or start over (`--restart` deletes the old output).")


def map_shard_set(source: ShardSet, out: Union[str, Path], fn: Callable[[List[Dict[str, Any]]], List[Any]], *,
                  env: DistEnv, batch_size: int, provenance: Mapping[str, Any] = (), progress: bool = True,
                  desc: str = "map", record: Optional[Mapping[str, Any]] = None, allow: Sequence[str] = (),
                  restart: bool = False, lock: bool = True, max_bad_sample_rate: float = 0.01,
                  max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES, reports: Sequence[str] = (),
                  **manifest_fields: Any) -> Dict[str, Any]:
    """Apply `fn` to every sample of `source` into the shard set `out` (see the module docstring). `reports`: names
    of files the caller writes into `out` (e.g. describe's quality report), deleted with it by `restart`.

    Collective: every rank calls it. Returns on every rank {"out", "processed_now", "skipped_now", "seconds"}
    (`processed_now` counts the samples given to `fn` in this run, `skipped_now` those of them it skipped); rank 0 also
    gets "num_samples" (verified exactly once), "skipped" and "manifest".
    """
    out = Path(out)
    if out.resolve() == source.root.resolve():
        raise ShardError(f"the output shard set must differ from its input ({out})")
    held = FolderLock(out, desc) if lock and env.is_main else None
    if held is not None:
        held.acquire()
    try:
        return _map_locked(source, out, fn, env=env, batch_size=batch_size, provenance=provenance,
                           progress=progress, desc=desc, record=record, allow=allow, restart=restart,
                           max_bad_sample_rate=max_bad_sample_rate, max_member_bytes=max_member_bytes,
                           reports=reports, manifest_fields=manifest_fields)
    finally:
        if held is not None:
            held.release()


def _map_locked(source: ShardSet, out: Path, fn: Callable, *, env: DistEnv, batch_size: int,
                provenance: Mapping[str, Any], progress: bool, desc: str, record: Optional[Mapping[str, Any]],
                allow: Sequence[str], restart: bool, max_bad_sample_rate: float, max_member_bytes: int,
                reports: Sequence[str], manifest_fields: Dict[str, Any]) -> Dict[str, Any]:
    refusal: Optional[Tuple[type, str]] = None
    if env.is_main:
        try:
            _claim_output(out, record, allow, restart, desc, reports)
        except UserError as err:
            refusal = (type(err), str(err))
    refusal = all_gather_object(env, refusal)[0]  # every rank stops when rank 0 refused, before any work
    if refusal is not None:
        raise refusal[0](refusal[1])
    classes = source.classes
    total_in = sum(e["num_samples"] for _, _, e in source.entries())
    (out / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    mine = source.entries()[env.rank::env.world_size]
    todo = [m for m in mine if not (out / m[2]["file"]).is_file()]
    total = sum(m[2]["num_samples"] for m in todo)
    already = sum(len(read_progress(out / PROGRESS_DIR / (m[2]["file"] + ".jsonl"))) for m in todo)
    bar = progress_bar(total=total, initial=already, unit="sample", desc=f"{desc}[rank {env.rank}]",
                       enabled=progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    entries: List[Tuple[str, int, Dict[str, Any]]] = []
    skipped: List[Dict[str, str]] = []
    skipped_now = 0

    def on_skip(new: List[Dict[str, str]]) -> None:
        # This rank's skips alone over ALL input samples: a lower bound of the global rate, so stopping here
        # never contradicts the final decision below.
        skipped.extend(new)
        if new and exceeds(len(skipped), total_in, max_bad_sample_rate):
            raise BadSampleRateError(_skip_message(skipped, total_in, max_bad_sample_rate, desc))

    for split, i, entry in mine:
        dst = out / entry["file"]
        if dst.is_file():  # finished by an earlier run (written atomically)
            on_skip(_finished_skips(out, dst.name, desc, source))
            entries.append((split, i, _existing_entry(dst, classes)))
        else:
            done_entry, n_skipped = _map_shard(source.root / entry["file"], int(entry["num_samples"]), dst, fn,
                                               batch_size, classes, bar.update, max_member_bytes, on_skip)
            entries.append((split, i, done_entry))
            skipped_now += n_skipped
    bar.close()
    seconds = time.perf_counter() - t0
    gathered = all_gather_object(env, {"entries": entries, "processed": total - already, "seconds": seconds,
                                       "skipped_now": skipped_now,
                                       "skipped": skipped})
    result: Dict[str, Any] = {"out": str(out), "processed_now": sum(g["processed"] for g in gathered),
                              "skipped_now": sum(g["skipped_now"] for g in gathered),
                              "seconds": max(g["seconds"] for g in gathered)}
    all_skipped = sorted((s for g in gathered for s in g["skipped"]), key=lambda s: (s["shard"], s["key"]))
    if exceeds(len(all_skipped), total_in, max_bad_sample_rate):  # the same numbers on every rank
        raise BadSampleRateError(_skip_message(all_skipped, total_in, max_bad_sample_rate, desc))
    if env.is_main:
        by_pos = {(s, i): e for g in gathered for s, i, e in g["entries"]}
        merged = {**source.provenance, **dict(provenance)}
        listed = list(source.manifest.get("skipped", [])) + [{"stage": desc, **s} for s in all_skipped]
        manifest = updated_manifest(source.manifest, by_pos, provenance=merged, skipped=listed, **manifest_fields)
        write_manifest(out, manifest)
        result["num_samples"] = verify_exactly_once(source, out, (s["key"] for s in all_skipped))
        result["skipped"] = all_skipped
        result["manifest"] = manifest
        shutil.rmtree(out / PROGRESS_DIR, ignore_errors=True)  # only the finished shards' skip lists are left
    barrier(env)
    return result


def _skip_message(skipped: List[Dict[str, str]], total: int, limit: float, desc: str) -> str:
    bad = [BadSample(s["shard"], s["key"], s["reason"], 0) for s in skipped]
    return f"{desc}: " + rate_message(bad, total, limit)
