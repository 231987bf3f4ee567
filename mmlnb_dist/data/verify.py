"""Checking a shard set against its manifest: files, sizes, checksums, counts, keys, images and labels."""
from __future__ import annotations

import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from ..core.files import sha256_file
from ..core.progress import progress_bar
from .images import image_member, undecodable
from .reader import iter_shard_samples, lacks_end_block
from .shardset import SPLITS, ShardError, ShardSet, bad_entry_fields
from .writer import has_text

log = logging.getLogger(__package__)


@dataclass
class VerifyReport:
    """What `verify_shards` found: problems (one line each, naming shard and key), per-split class counts, and
    warnings (true of the set as built, yet worth knowing before training: a class no split holds a sample of)."""

    problems: List[str]
    counts: Dict[str, Dict[str, int]]
    classes: List[str]
    warnings: List[str] = field(default_factory=list)
    strays: List[str] = field(default_factory=list)
    """Tar files in the folder that the manifest does not list (each also a problem line, with its own remedy)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        head = ["split", *self.classes, "total"]
        rows = [[split, *(str(c.get(k, 0)) for k in self.classes), str(sum(c.values()))] for split, c in self.counts.items()]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [head, *rows])


def _label_set(sample: Dict) -> Optional[List[str]]:
    """A multi-label sample's `json["labels"]`, or None when it is not a non-empty list."""
    try:
        names = json.loads(sample["json"]).get("labels")
    except (KeyError, ValueError, AttributeError):
        return None
    return names if isinstance(names, list) and names else None


def _malformed(split: str, i: int, entry: object) -> Optional[str]:
    """Why a manifest shard entry cannot be checked (a field missing or of the wrong type: a hand edit), or None."""
    if not isinstance(entry, dict):
        return f"manifest split {split} shard #{i}: not a JSON object ({entry!r}); rebuild the shard set or restore " \
               f"its manifest.json"
    bad = bad_entry_fields(entry)
    if not bad:
        return None
    name = entry["file"] if isinstance(entry.get("file"), str) else f"split {split} shard #{i}"
    return (f"manifest {name}: field(s) {', '.join(bad)} missing or of the wrong type; rebuild the shard set or "
            f"restore its manifest.json")


def _split_class_table(split: str, info: Dict, counts: Counter) -> List[str]:
    """The split's `class_counts`, the table training reads (whether the val split can score AUROC / kappa, the
    run's dataset lineage), against the classes its shards hold. Called only for a split whose shards were found
    right (a wrong shard is reported, and leaves the table stale, already)."""
    listed = info.get("class_counts")
    if isinstance(listed, dict) and all(listed.get(c, 0) == counts.get(c, 0) for c in set(listed) | set(counts)):
        return []
    return [f"split {split}: class counts {listed} differ from its shards' {dict(counts)}; restore manifest.json "
            f"or rebuild the shard set"]


def verify_shards(shard_dir: Union[str, Path], progress: bool = True) -> VerifyReport:
    """Check every shard against the manifest: file present, bytes, sha256, counts per class, unique keys,
    every image decodable, every `cls` a valid class index matching the `json` label; on multi-label sets also
    every `json["labels"]` a list of classes and the per-shard `label_counts`."""
    from PIL import Image

    shard_dir = Path(shard_dir)
    manifest = ShardSet.open(shard_dir).manifest
    classes = list(manifest["classes"])
    problems: List[str] = []
    counts: Dict[str, Dict[str, int]] = {}
    keys: Dict[str, str] = {}
    held: Counter = Counter()  # samples holding each class anywhere (as its `cls`, or among multi-label `labels`)
    listed = set()
    missing: Dict[Optional[str], Tuple[int, str]] = {}  # sha256 -> (problem line, file) of shards not found
    total = sum(s["num_samples"] for split in manifest["splits"].values() for s in split["shards"]
                if isinstance(s, dict) and isinstance(s.get("num_samples"), int))
    bar = progress_bar(total=total, desc="verify", unit="sample", enabled=progress)
    ordered = sorted(manifest["splits"].items(), key=lambda kv: (SPLITS + (kv[0],)).index(kv[0]))
    for split, info in ordered:
        split_counts: Counter = Counter()
        found_before = len(problems)
        for i, entry in enumerate(info["shards"]):
            malformed = _malformed(split, i, entry)
            if malformed:
                problems.append(malformed)
                if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                    listed.add(entry["file"])
                continue
            path = shard_dir / entry["file"]
            listed.add(entry["file"])
            if not path.is_file():
                missing[entry.get("sha256")] = (len(problems), entry["file"])
                problems.append(f"{entry['file']}: missing")
                continue
            size = path.stat().st_size
            # a tar cut on a block boundary reads as a short one without error: said "truncated" after the read
            cut = size != entry.get("bytes") and lacks_end_block(path)
            if size != entry.get("bytes") and not cut:
                problems.append(f"{entry['file']}: {size} bytes, manifest says {entry.get('bytes')}")
            if sha256_file(path) != entry.get("sha256"):
                problems.append(f"{entry['file']}: sha256 differs from the manifest")
            shard_counts: Counter = Counter()
            shard_labels: Counter = Counter()  # multi-label sets: samples holding each label
            n, key, described = 0, None, 0
            try:
                for sample in iter_shard_samples(path):
                    n += 1
                    described += has_text(sample)
                    bar.update(1)
                    key = sample["__key__"]
                    where = f"{entry['file']} key {key}"
                    if key in keys:
                        problems.append(f"{where}: duplicate key (also in {keys[key]})")
                    keys[key] = entry["file"]
                    ext = image_member(sample)
                    if ext is None:
                        problems.append(f"{where}: no image member")
                    else:
                        try:
                            Image.open(io.BytesIO(sample[ext])).load()
                        except Exception as err:
                            problems.append(f"{where}: {undecodable(err)}")
                    try:
                        cls = int(sample["cls"].decode("ascii"))
                        label = classes[cls] if 0 <= cls < len(classes) else None
                    except (KeyError, ValueError, UnicodeDecodeError):
                        label = None
                    if label is None:
                        problems.append(f"{where}: missing or invalid cls {sample.get('cls')!r}")
                        continue
                    try:
                        meta_label = json.loads(sample["json"]).get("label") if "json" in sample else label
                    except (ValueError, AttributeError):
                        meta_label = None
                        problems.append(f"{where}: json member is not a JSON object")
                    if meta_label is not None and meta_label != label:
                        problems.append(f"{where}: cls says {label} but json label says {meta_label}")
                    shard_counts[label] += 1
                    if "label_counts" in entry:
                        names = _label_set(sample)
                        if names is None or any(name not in classes for name in names):
                            problems.append(f"{where}: json 'labels' {names!r} is not a non-empty list of classes")
                        else:
                            shard_labels.update(set(names))
            except ShardError as err:
                problems.append(str(err))
                cut = False
            if cut:  # (a cut inside a member raised ShardError above, which says "truncated" itself)
                after = f"after key '{key}'" if key is not None else "before its first sample"
                problems.append(f"{entry['file']}: truncated: the tar ends {after} without its end-of-archive block "
                                f"({size} bytes, manifest says {entry.get('bytes')}); restore the shard or rebuild "
                                f"the shard set")
            if n != entry["num_samples"]:
                problems.append(f"{entry['file']}: {n} samples, manifest says {entry['num_samples']}")
            if isinstance(entry.get("num_described"), int) and described != entry["num_described"]:
                # training's text check reads this count (a set described in part is refused)
                problems.append(f"{entry['file']}: {described} samples with a description, manifest says "
                                f"{entry['num_described']}")
            if any(shard_counts.get(c, 0) != entry["class_counts"].get(c, 0) for c in classes):
                problems.append(f"{entry['file']}: class counts {dict(shard_counts)} differ from manifest {entry['class_counts']}")
            if "label_counts" in entry and any(shard_labels.get(c, 0) != entry["label_counts"].get(c, 0) for c in classes):
                problems.append(f"{entry['file']}: label counts {dict(shard_labels)} differ from manifest {entry['label_counts']}")
            split_counts.update(shard_counts)
            held.update(shard_counts + shard_labels)
        if manifest.get("task") == "multilabel":  # the per-label table `shards verify` prints reads these
            # against its shards' entries (each checked against its samples above): a hand edit of the table
            listed_labels = info.get("label_counts")
            total_labels = {c: sum(int((e.get("label_counts") or {}).get(c, 0)) for e in info["shards"]
                                   if isinstance(e, dict)) for c in classes}
            if not isinstance(listed_labels, dict) or any(total_labels[c] != listed_labels.get(c, 0)
                                                          for c in classes):
                problems.append(f"split {split}: label counts {listed_labels} differ from its shards' "
                                f"{total_labels}; restore manifest.json or rebuild the shard set")
        if len(problems) == found_before:
            problems.extend(_split_class_table(split, info, Counter({c: split_counts[c] for c in classes})))
        if sum(split_counts.values()) != info["num_samples"]:
            problems.append(f"split {split}: {sum(split_counts.values())} valid samples, manifest says {info['num_samples']}")
        counts[split] = {c: split_counts.get(c, 0) for c in classes}
    bar.close()
    strays: List[str] = []
    for extra in sorted(p.name for p in shard_dir.glob("*.tar")):
        if extra not in listed:
            found = missing.pop(sha256_file(shard_dir / extra), None) if missing else None
            if found is None:
                problems.append(f"{extra}: tar file not listed in the manifest; move it out of the shard folder "
                                f"(a shard of another set?) or rebuild the set")
                strays.append(extra)
                continue
            line, name = found  # a listed shard renamed: the same bytes under another name
            problems[line] = (f"{name}: missing, but {extra} holds its exact bytes (sha256): rename {extra} back "
                              f"to {name}")
    # a class of the manifest no split holds (a hand edit, or a build with a class its data lacks): the model gets
    # an output no sample trains, and every metric leaves the class out; a set may be built so, so not a problem
    # (and not judged beside problems: a shard missing or unreadable leaves the counts short)
    warnings = [] if problems else [
        f"class {c}: no sample in any split; the model trained on this set gets an output no sample trains and no "
        f"metric scores it (unless that is meant: rebuild without it, or undo a hand edit of manifest.json)"
        for c in classes if not held[c]]
    for line in warnings:
        log.warning("%s: %s", shard_dir, line)
    return VerifyReport(problems, counts, classes, warnings, strays)
