"""Collecting build inputs: a folder of class subfolders, or a CSV (path|file, label[, slide_id, description]),
plus descriptions from a JSONL file. Every problem is raised before anything is written."""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .build import SampleSpec, validate_samples
from .images import IMAGE_EXTENSIONS
from .shardset import ShardError


def sample_key(rel: str, taken: Dict[str, str]) -> str:
    """A tar-safe sample key for the relative path `rel` (unsafe characters replaced); `taken` maps the keys
    given so far to their paths, so two paths that sanitise alike get distinct, stable keys."""
    stem = rel.rsplit(".", 1)[0]
    key = re.sub(r"[^A-Za-z0-9_-]", "_", stem)
    if key in taken and taken[key] != rel:  # two paths that sanitise to one key: disambiguate stably
        key = f"{key}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
    taken[key] = rel
    return key


def load_descriptions(path: Union[str, Path]) -> Dict[str, str]:
    """Read a descriptions JSONL (`{"file": ..., "description": ...}` per line) into {file: description}."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"descriptions file not found: {path}")
    out: Dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out[str(rec["file"])] = str(rec["description"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ShardError(f"{path}:{n}: expected a JSON object with 'file' and 'description' ({err})") from None
    return out


def _attach_descriptions(samples: List[SampleSpec], rels: List[str], descriptions: Mapping[str, str]) -> None:
    """Match by relative path first, then by file name (when that name is unique among the inputs)."""
    by_name = Counter(Path(r).name for r in rels)
    desc_by_name = {Path(k).name: v for k, v in descriptions.items()}
    for spec, rel in zip(samples, rels):
        name = Path(rel).name
        if rel in descriptions:
            spec.description = descriptions[rel]
        elif by_name[name] == 1 and name in desc_by_name:
            spec.description = desc_by_name[name]


def _read_csv(csv_path: Path, classes: Sequence[str]) -> Tuple[List[SampleSpec], List[str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ShardError(f"cannot read CSV {csv_path}: {err}") from None
    columns = set(rows[0].keys()) if rows else set()
    path_col = "path" if "path" in columns else "file" if "file" in columns else None
    if path_col is None or "label" not in columns:
        raise ShardError(f"CSV {csv_path} must have columns 'path' (or 'file') and 'label' "
                         f"(optional 'slide_id', 'description'); found: {sorted(columns) or 'no rows'}")
    root = csv_path.parent
    samples, rels, taken = [], [], {}
    for row in rows:
        rel = Path(row[path_col]).as_posix()
        slide = (row.get("slide_id") or "").strip() or None
        desc = row.get("description") or None
        samples.append(SampleSpec(sample_key(rel, taken), row["label"].strip(), root / rel, slide, desc,
                                  {"file": rel}))
        rels.append(rel)
    return samples, rels


def collect_samples(
    input_path: Union[str, Path],
    classes: Sequence[str],
    descriptions: Optional[Union[str, Path]] = None,
) -> List[SampleSpec]:
    """Input samples from a folder of class subfolders (`UD/*.png`, ...) or a CSV (path|file, label[, slide_id]).

    A folder that holds a `labels.csv` is read through it (to get slide ids); a `descriptions.jsonl` beside
    the inputs is used when `descriptions` is not given. Errors (missing folder, unknown label folder, empty
    class folder, bad CSV columns) are raised before anything is written.
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise ShardError(f"input not found: {input_path}")
    if input_path.is_file():
        samples, rels = _read_csv(input_path, classes)
        root = input_path.parent
    elif (input_path / "labels.csv").is_file():
        samples, rels = _read_csv(input_path / "labels.csv", classes)
        root = input_path
    else:
        root = input_path
        samples, rels, taken = [], [], {}
        subdirs = sorted(p for p in input_path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subdirs:
            raise ShardError(f"{input_path}: no class subfolders (expected {', '.join(f'{c}/' for c in classes)}) and no labels.csv")
        for sub in subdirs:
            if sub.name not in classes:
                raise ShardError(f"{sub}: unknown label folder '{sub.name}' (classes: {', '.join(classes)})")
            files = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lstrip(".").lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ShardError(f"{sub}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} images)")
            for p in files:
                rel = p.relative_to(input_path).as_posix()
                samples.append(SampleSpec(sample_key(rel, taken), sub.name, p, None, None, {"file": rel}))
                rels.append(rel)
    if descriptions is None and (root / "descriptions.jsonl").is_file():
        descriptions = root / "descriptions.jsonl"
    if descriptions is not None:
        _attach_descriptions(samples, rels, load_descriptions(descriptions))
    validate_samples(samples, classes)
    return samples
