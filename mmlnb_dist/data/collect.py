"""Collecting build inputs: a folder of class subfolders, or a CSV (path|file, label[, slide_id, description]),
plus descriptions from a JSONL or CSV file, matched to the inputs by path (`DescriptionTable`). Every problem is
raised before anything is written."""
from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ..core.files import dict_reader, open_csv
from .build import SampleSpec, near_class_hint, validate_samples
from .description_table import DescriptionsError, DescriptionTable
from .generated import refuse_incomplete
from .images import IMAGE_EXTENSIONS, image_files, other_files
from .shardset import ShardError

log = logging.getLogger(__name__)


def sample_keys(rels: Sequence[str]) -> Dict[str, str]:
    """A tar-safe sample key for each relative path (unsafe characters replaced). Paths that clean to one key
    (`a b.png`, `a_b.png`) all get a digest of their path after it, so every path's key is the same whatever the
    order it was listed in."""
    cleaned = {rel: re.sub(r"[^A-Za-z0-9_-]", "_", rel.rsplit(".", 1)[0]) for rel in rels}
    shared = Counter(cleaned.values())
    return {rel: key if shared[key] == 1 else f"{key}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            for rel, key in cleaned.items()}


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
                if text is not None:  # (a row without text names its input but leaves its description)
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


MISSING_CELLS = frozenset({"nan", "none", "null", "na", "n/a", "<na>"})
"""Whole cells that mean "no value" (how pandas writes a missing cell with `astype(str)` or `na_rep`, and the
markers pandas itself reads as missing): no slide, description or label, not one named `nan`."""


def present(cell: Optional[str]) -> Optional[str]:
    """`cell` stripped, or None when it is empty or a missing-value marker (`MISSING_CELLS`)."""
    text = (cell or "").strip()
    return None if not text or text.casefold() in MISSING_CELLS else text


def read_patch_csv(csv_path: Path) -> List[SampleSpec]:
    """The samples a patches CSV lists (path|file, label[, slide_id, patient_id, description]). A row without a
    path or label is refused by its line; blank rows (Excel's `,,`) are skipped and counted."""
    try:
        with open_csv(csv_path) as f:
            reader = dict_reader(f)
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ShardError(f"cannot read CSV {csv_path}: {err}") from None
    columns = set(rows[0][1].keys()) if rows else set()
    path_col = "path" if "path" in columns else "file" if "file" in columns else None
    if path_col is None or "label" not in columns:
        raise ShardError(f"CSV {csv_path} must have columns 'path' (or 'file') and 'label' "
                         f"(optional 'slide_id', 'description'); found: {sorted(columns) or 'no rows'}")
    listed, blank = [], []
    for line, row in rows:
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if not any(values.values()):
            blank.append(line)
            continue
        for column, what in ((path_col, "image path"), ("label", "label")):
            if not values[column]:
                short = " missing: the row has fewer fields than the header" if row[column] is None else ""
                raise ShardError(f"{csv_path} line {line}: no {what} (column '{column}'{short})")
        # a CSV written on Windows names `UD\x.png`; a backslash is no file-name character anyone means here
        listed.append((Path(values[path_col].replace("\\", "/")).as_posix(), values, present(row.get("description"))))
    if blank:
        log.warning("%s: %d blank row%s skipped (line%s %s)", csv_path, len(blank), "s" if len(blank) > 1 else "",
                    "s" if len(blank) > 1 else "", _listed([str(n) for n in blank]))
    keys = sample_keys([rel for rel, _, _ in listed])
    # a patient's slides (blocks, re-scans) share tissue and diagnosis: the split keeps the patient whole
    return [SampleSpec(keys[rel], values["label"], csv_path.parent / rel, present(values.get("slide_id")), desc,
                       {"file": rel, **({"patient_id": patient} if (patient := present(values.get("patient_id")))
                                        else {})}) for rel, values, desc in listed]


def _compare_with_folder(samples: List[SampleSpec], root: Path, classes: Sequence[str]) -> None:
    """A folder read through its labels.csv: warn about the images under it that the file does not list (patches
    added beside generated ones) and the rows whose label is not their class folder's."""
    listed = {Path(s.image).resolve() for s in samples}
    left_out = [p.relative_to(root).as_posix() for p in image_files(root) if p.resolve() not in listed]
    if left_out:
        log.warning("%s: %d images under %s that labels.csv does not list are left out (%s); list them in it, or "
                    "move the file away to read the class folders", root / "labels.csv", len(left_out), root,
                    _listed(left_out))
    crossed = [f"{s.meta['file']} labelled {s.label}" for s in samples
               if s.meta["file"].split("/", 1)[0] in classes and s.meta["file"].split("/", 1)[0] != s.label]
    if crossed:
        log.warning("%s: %d row%s an image in a class folder another class (%s); labels.csv wins",
                    root / "labels.csv", len(crossed), "s give" if len(crossed) > 1 else " gives", _listed(crossed))


def _warn_other_files(folder: Path, images: Sequence[Path]) -> None:
    """Name the files of a class folder that are left out for not being images (a .jp2 or .heic patch, a note)."""
    others = other_files(folder, images)
    if others:
        log.warning("%s: %d file%s not read as %s not a %s image (%s)", folder, len(others),
                    "s" if len(others) > 1 else "", "they are" if len(others) > 1 else "it is",
                    "/".join(IMAGE_EXTENSIONS), _listed(others))


def _is_shard_output(folder: Path) -> bool:
    """Whether `folder` is a shard set or a build's output in progress (its manifest, the marker of a stopped
    replacement, a partial build folder, or the output lock's files)."""
    from ..core.runlock import is_lock_file
    from .build import INCOMPLETE
    from .build_journal import PARTIAL_PREFIX
    from .shardset import MANIFEST

    return (folder / MANIFEST).is_file() or (folder / INCOMPLETE).exists() or any(
        p.name.startswith(PARTIAL_PREFIX) or is_lock_file(p.name) for p in folder.iterdir())


def check_patch_source(path: Path) -> None:
    """Refuse an image file given where patches come from (it was read as a CSV: "'utf-8' codec can't decode")."""
    if Path(path).is_file() and Path(path).suffix.lower().lstrip(".") in IMAGE_EXTENSIONS:
        raise ShardError(f"{path}: an image file; patches come from a folder (class subfolders or labels.csv) or a "
                         f"CSV of image paths and labels (a whole-slide image: tile it with --slides)")


def collect_samples(
    input_path: Union[str, Path],
    classes: Sequence[str],
    descriptions: Optional[Union[str, Path]] = None,
    flag: Optional[str] = None,
) -> List[SampleSpec]:
    """Input samples from a folder of class subfolders (`UD/*.png`, ...) or a CSV (path|file, label[, slide_id]).

    A folder that holds a `labels.csv` is read through it (to get slide ids); a `descriptions.jsonl` beside
    the inputs is used when `descriptions` is not given. Errors (missing folder, unknown label folder, empty
    class folder, bad CSV columns) are raised before anything is written; with `flag` (`--patches`: the
    option that gave `input_path`), each starts with `<flag> <input_path>: `, so a command with several inputs
    says which one is wrong.
    """
    try:
        return _collect(Path(input_path), classes, descriptions)
    except ShardError as err:
        if flag is None:
            raise
        text, given = str(err), f"{flag} {input_path}"
        raise ShardError(f"{flag} {text}" if text.startswith(f"{input_path}: ") else f"{given}: {text}") from None


def _collect(input_path: Path, classes: Sequence[str], descriptions: Optional[Union[str, Path]]) -> List[SampleSpec]:
    if not input_path.exists():
        raise ShardError(f"input not found: {input_path}")
    check_patch_source(input_path)
    refuse_incomplete(input_path if input_path.is_dir() else input_path.parent)  # a stopped `data synth`
    if input_path.is_file():
        samples = read_patch_csv(input_path)
        root = input_path.parent
    elif (input_path / "labels.csv").is_file():
        samples = read_patch_csv(input_path / "labels.csv")
        root = input_path
        _compare_with_folder(samples, root, classes)
    else:
        root = input_path
        samples = []
        subdirs = sorted(p for p in input_path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subdirs:
            raise ShardError(f"{input_path}: no class subfolders (expected {', '.join(f'{c}/' for c in classes)}) "
                             f"and no labels.csv")
        for sub in [d for d in subdirs if _is_shard_output(d)]:  # `--out data/shards` of an earlier build
            log.warning("%s: a shard set (or a stopped build of one), not a class folder: skipped", sub)
            subdirs.remove(sub)
        for sub in subdirs:
            if sub.name not in classes:
                # as an unknown CSV label is (`build.validate_samples`): the class it likely means, and the way on
                hint = near_class_hint(sub.name, classes, "folder names")
                raise ShardError(f"{sub}: unknown label folder '{sub.name}' (classes: {', '.join(classes)}){hint}; "
                                 f"rename the folder, or give the classes its folders name with --classes "
                                 f"(data.classes)")
            files = image_files(sub)
            if not files:
                raise ShardError(f"{sub}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} images)")
            _warn_other_files(sub, files)
            samples += [SampleSpec("", sub.name, p, None, None, {"file": p.relative_to(input_path).as_posix()})
                        for p in files]
        keys = sample_keys([s.meta["file"] for s in samples])
        for spec in samples:
            spec.key = keys[spec.meta["file"]]
    if descriptions is None and (root / "descriptions.jsonl").is_file():
        descriptions = root / "descriptions.jsonl"
    if descriptions is not None:
        _attach_descriptions(samples, Path(descriptions), root)
    validate_samples(samples, classes)
    return samples
