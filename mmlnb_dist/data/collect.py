"""Collecting build inputs: a folder of class subfolders, or a CSV (path|file, label[, slide_id, description]),
plus descriptions from a JSONL or CSV file, matched to the inputs by path (`DescriptionTable`). Every problem is
raised before anything is written."""
from __future__ import annotations

import csv
import hashlib
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ..core.files import dict_reader, open_csv
from .build import SampleSpec, validate_samples
from .description_table import DescriptionsError, DescriptionTable
from .images import IMAGE_EXTENSIONS
from .shardset import ShardError

log = logging.getLogger(__name__)


def sample_key(rel: str, taken: Dict[str, str]) -> str:
    """A tar-safe sample key for the relative path `rel` (unsafe characters replaced); `taken` maps the keys
    given so far to their paths, so two paths that sanitise alike get distinct, stable keys."""
    stem = rel.rsplit(".", 1)[0]
    key = re.sub(r"[^A-Za-z0-9_-]", "_", stem)
    if key in taken and taken[key] != rel:  # two paths that sanitise to one key: disambiguate stably
        key = f"{key}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
    taken[key] = rel
    return key


def _listed(names: Sequence[str]) -> str:
    """The first three names, then `...` when there are more (for a one-line message)."""
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _attach_descriptions(samples: List[SampleSpec], source: Path, root: Path) -> None:
    """Give each sample the row of the descriptions file `source` that names it (`DescriptionTable`: by path,
    a bare name only when it fits one row and one input). Ambiguities and a file that names no input are
    refused; rows and inputs left without a partner are counted in a warning."""
    try:
        table = DescriptionTable.read(source, column="description")
        used, replaced = {}, []
        for spec, row in zip(samples, table.match([(spec.key, Path(spec.image)) for spec in samples])):
            if row is not None:
                text = table.description(row)
                if spec.description is not None and spec.description != text:
                    replaced.append(str(spec.meta.get("file", spec.key)))
                spec.description = text
                used[id(row)] = row
    except DescriptionsError as err:
        raise ShardError(str(err)) from None
    unused = [table.name(row) for row in table.rows if id(row) not in used]
    if not used:
        raise ShardError(f"{source}: not one of its {len(table.rows)} rows names an input (first: "
                         f"{_listed(unused)}); inputs are named by their path relative to {root}, like "
                         f"{', '.join(str(s.meta.get('file', s.key)) for s in samples[:3])}")
    if replaced:  # the file wins (the later, explicit source), but two texts for one patch deserve a word
        log.warning("%s: %d input%s own description (the CSV's description column) replaced by the file's other "
                    "text (%s)", source, len(replaced), "'s" if len(replaced) == 1 else "s'", _listed(replaced))
    described = sum(s.description is not None for s in samples)
    if unused or described < len(samples):
        missing = [str(s.meta.get("file", s.key)) for s in samples if s.description is None]
        rows = "1 row names" if len(unused) == 1 else f"{len(unused)} rows name"
        log.warning("%s: %d of %d inputs have a description%s; %s no input%s", source, described, len(samples),
                    f" (without: {_listed(missing)})" if missing else "", rows,
                    f" ({_listed(unused)})" if unused else "")


def _read_csv(csv_path: Path, classes: Sequence[str]) -> List[SampleSpec]:
    try:
        with open_csv(csv_path) as f:
            rows = list(dict_reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ShardError(f"cannot read CSV {csv_path}: {err}") from None
    columns = set(rows[0].keys()) if rows else set()
    path_col = "path" if "path" in columns else "file" if "file" in columns else None
    if path_col is None or "label" not in columns:
        raise ShardError(f"CSV {csv_path} must have columns 'path' (or 'file') and 'label' "
                         f"(optional 'slide_id', 'description'); found: {sorted(columns) or 'no rows'}")
    root = csv_path.parent
    samples, taken = [], {}
    for row in rows:
        rel = Path(row[path_col]).as_posix()
        slide = (row.get("slide_id") or "").strip() or None
        desc = row.get("description") or None
        samples.append(SampleSpec(sample_key(rel, taken), row["label"].strip(), root / rel, slide, desc,
                                  {"file": rel}))
    return samples


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
        samples = _read_csv(input_path, classes)
        root = input_path.parent
    elif (input_path / "labels.csv").is_file():
        samples = _read_csv(input_path / "labels.csv", classes)
        root = input_path
    else:
        root = input_path
        samples, taken = [], {}
        subdirs = sorted(p for p in input_path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subdirs:
            raise ShardError(f"{input_path}: no class subfolders (expected {', '.join(f'{c}/' for c in classes)}) "
                             f"and no labels.csv")
        for sub in subdirs:
            if sub.name not in classes:
                raise ShardError(f"{sub}: unknown label folder '{sub.name}' (classes: {', '.join(classes)})")
            files = sorted(p for p in sub.rglob("*")
                           if p.is_file() and p.suffix.lstrip(".").lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ShardError(f"{sub}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} images)")
            for p in files:
                rel = p.relative_to(input_path).as_posix()
                samples.append(SampleSpec(sample_key(rel, taken), sub.name, p, None, None, {"file": rel}))
    if descriptions is None and (root / "descriptions.jsonl").is_file():
        descriptions = root / "descriptions.jsonl"
    if descriptions is not None:
        _attach_descriptions(samples, Path(descriptions), root)
    validate_samples(samples, classes)
    return samples
