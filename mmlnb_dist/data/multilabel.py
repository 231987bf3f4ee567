"""Multi-label inputs: an image / text / label-set CSV read into build samples, bad rows dropped and reported.

    opts = MultiLabelConfig(separator="|", label_merge="merge.yaml", min_frequency=5, max_labels=3)
    manifest = build_multilabel_shards("pairs.csv", "shards/ml", BuildConfig(), opts)
    manifest["classes"], manifest["label_counts"], manifest["splits"]["val"]["label_counts"], manifest["dropped_rows"]

A row is dropped (and reported by its row number, the 1-based data row after the header, with every reason
found) when its image path is empty, missing or unreadable, its text is empty, it has no label, a label falls
outside a given vocabulary after merging, it has more labels than `max_labels`, it repeats an earlier row whole
(the same image and label set, every other cell equal), or all of its labels are rarer than `min_frequency`.
The good rows are still built. Each kept sample carries its label set in the `json` member (`labels`: names,
`multi_hot`: 0/1 per class), never pickled, and its text in the `txt` member.
"""
from __future__ import annotations

import ast
import csv
import json
import logging
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..core.files import dict_reader, load_yaml, open_csv
from .build import SampleSpec, build_shards
from .collect import MISSING_CELLS, sample_keys
from .config import BuildConfig, MultiLabelConfig
from .generated import refuse_incomplete
from .shardset import ShardError

log = logging.getLogger(__name__)

GROUP_COLUMNS = ("slide_id", "patient_id")
"""Columns used as the split group when `data.multilabel.group_column` is not set, first present wins."""


@dataclass
class MultiLabelInput:
    """What `read_multilabel_csv` found: the samples to build, their vocabulary, the dropped rows, label counts."""

    samples: List[SampleSpec]
    classes: List[str]
    dropped: List[Dict[str, Any]] = field(default_factory=list)
    """`{"row": n, "image": cell, "reason": "..."}` per dropped row, in row order."""
    label_counts: Dict[str, int] = field(default_factory=dict)
    """Kept samples holding each class."""


def load_label_merge(path: Union[str, Path]) -> Dict[str, str]:
    """Read a merge mapping YAML (`target: [source, ...]`) into {source: target}; a `ShardError` naming the file
    and key when it is malformed or maps one source onto two targets."""
    import yaml

    path = Path(path)
    try:
        raw = load_yaml(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ShardError(f"label merge file {path} (data.multilabel.label_merge) cannot be read: {err}") from None
    if not isinstance(raw, dict):
        raise ShardError(f"label merge file {path}: expected a mapping `target: [source, ...]`, "
                         f"got {type(raw).__name__}")
    merge: Dict[str, str] = {}
    for target, sources in raw.items():
        if isinstance(sources, str):
            sources = [sources]
        if not isinstance(sources, list) or not all(isinstance(x, (str, int)) for x in sources):
            raise ShardError(f"label merge file {path}: '{target}' must map to a list of label names")
        for source in map(str, sources):
            if merge.get(source, str(target)) != str(target):
                raise ShardError(f"label merge file {path}: '{source}' is merged into both '{merge[source]}' and "
                                 f"'{target}'; list it under one target")
            merge[source] = str(target)
    return merge


INDICATOR_VALUES = frozenset({"0", "1", "true", "false", "yes", "no", "y", "n"})
"""Cell values of a one-hot indicator column: a labels column holding only these is not a column of label sets."""


def parse_label_cell(cell: str, separator: str) -> List[str]:
    """Label names of one cell: a JSON list (`["a", "b"]`), a Python list or tuple literal (`['a', 'b']`: a
    pandas list column saved with `to_csv`), or names joined by `separator`; blanks, nulls and NaNs removed. A
    missing-value marker (`MISSING_CELLS`), whole or as one of the names (`fat|nan`: columns joined after
    `astype(str)`), is no label."""
    cell = (cell or "").strip()
    if cell.casefold() in MISSING_CELLS:
        return []
    names: Optional[List[Any]] = _list_literal(cell) if cell.startswith(("[", "(")) else None
    if names is None:
        names = cell.split(separator)
    names = [_trimmed(str(n)) for n in names if not _missing(n)]
    return [n for n in names if n and n.casefold() not in MISSING_CELLS]


def _trimmed(name: str) -> str:
    """`name` without the spaces and invisible format characters around it (a zero-width space or BOM pasted with
    it: `fat` + U+200B would be a second class that prints as `fat`)."""
    i, j = 0, len(name)
    while i < j and (name[i].isspace() or unicodedata.category(name[i]) == "Cf"):
        i += 1
    while j > i and (name[j - 1].isspace() or unicodedata.category(name[j - 1]) == "Cf"):
        j -= 1
    return name[i:j]


def _list_literal(cell: str) -> Optional[List[Any]]:
    """The items of a cell written as a JSON list or a Python list / tuple literal, else None (plain text)."""
    try:
        names = json.loads(cell)
    except json.JSONDecodeError:
        try:  # literals only: nothing in the cell is run; a bare `nan` item is how pandas writes a missing one
            names = ast.literal_eval(_NanAsNone().visit(ast.parse(cell, mode="eval")))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return list(names) if isinstance(names, (list, tuple)) else None


class _NanAsNone(ast.NodeTransformer):
    """`['a', nan]` (a pandas list column with a missing item, saved with `to_csv`): the name `nan` read as None,
    a missing item, instead of the whole cell failing to parse and becoming one label named `['a', nan]`."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Constant(None), node) if node.id in ("nan", "NaN") else node


def _missing(item: Any) -> bool:
    """A list item that holds no label: null / None, or a float NaN."""
    return item is None or (isinstance(item, float) and item != item)


def _merged(names: Sequence[str], merge: Mapping[str, str]) -> List[str]:
    """Names mapped through the merge, duplicates removed, first occurrence order kept."""
    return list(dict.fromkeys(merge.get(n, n) for n in names))


def _repeated_rows(candidates: Sequence[int], rows: Sequence[Mapping[str, Any]], paths: Mapping[int, Path],
                   parsed: Mapping[int, List[str]], opts: MultiLabelConfig) -> Dict[int, List[str]]:
    """{row: [reason]} for each row that repeats an earlier one whole (the same image file and label set, every
    other cell equal: text, slide): one sample, not two that count twice in the label counts and the metrics."""
    first: Dict[Any, int] = {}
    out: Dict[int, List[str]] = {}
    for n in candidates:
        cells = sorted((str(k), str(v or "").strip()) for k, v in rows[n - 1].items()
                       if k not in (opts.image_column, opts.labels_column))
        same = (paths[n].resolve(), frozenset(parsed[n]), tuple(cells))
        if same in first:
            out[n] = [f"repeats row {first[same]} (the same image, text and labels)"]
        else:
            first[same] = n
    return out


def _image_problem(path: Path) -> Optional[str]:
    """Why the image cannot be used, or None. Decodes it fully: a truncated file fails here, not in the build."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
    except Exception as err:  # PIL raises many types for corrupt data; all mean "unreadable"
        return f"unreadable image ({type(err).__name__}: {err})"
    return None


def _columns(rows_header: Sequence[str], csv_path: Path, opts: MultiLabelConfig) -> Optional[str]:
    """The group column (None: no split group); a ShardError for a used column that is missing or written twice
    (csv.DictReader would read the last copy without a word)."""
    for key in ("image_column", "text_column", "labels_column"):
        name = getattr(opts, key)
        if name not in rows_header:
            spaced = [h for h in rows_header if h.strip() == name.strip()]
            hint = (f"its column {spaced[0]!r} has spaces around the name (a header written `a, b, c`): write the "
                    f"header without them" if spaced else f"Name the column with `data.multilabel.{key}=...` or "
                    f"the matching shards build flag")
            raise ShardError(f"CSV {csv_path} has no column '{name}' (data.multilabel.{key}); it has: "
                             f"{', '.join(repr(h) for h in rows_header) or 'no header'}. {hint}")
    if opts.group_column is not None and opts.group_column not in rows_header:
        raise ShardError(f"CSV {csv_path} has no column '{opts.group_column}' (data.multilabel.group_column); "
                         f"it has: {', '.join(rows_header)}")
    group = opts.group_column or next((c for c in GROUP_COLUMNS if c in rows_header), None)
    for name in (opts.image_column, opts.text_column, opts.labels_column, group):
        where = [str(i + 1) for i, column in enumerate(rows_header) if column == name]
        if len(where) > 1:
            raise ShardError(f"CSV {csv_path} has the column '{name}' twice (columns {' and '.join(where)}): "
                             f"which one holds the data is unclear; rename or remove the other copy")
    return group


def read_multilabel_csv(csv_path: Union[str, Path], opts: MultiLabelConfig,
                        classes: Optional[Sequence[str]] = None) -> MultiLabelInput:
    """Read an image / text / label-set CSV into build samples; bad rows are dropped and listed, not raised.

    `classes` fixes the vocabulary (rows with a label outside it after merging are dropped); without it the
    vocabulary is the sorted labels kept. Image paths are relative to the CSV's folder. A `ShardError` when the
    file or a column is missing, or when no row is usable.
    """
    csv_path = Path(csv_path)
    refuse_incomplete(csv_path.parent)  # a stopped `data synth --task multilabel`: an earlier run's pairs.csv
    twice = [c for c, n in Counter(classes or ()).items() if n > 1]
    if twice:  # two outputs of one name; the multi-hot vector would set only the last
        raise ShardError(f"the vocabulary names {', '.join(repr(c) for c in twice)} twice ({', '.join(classes)}); "
                         f"name each label once")
    try:
        with open_csv(csv_path) as f:
            reader = dict_reader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ShardError(f"cannot read CSV {csv_path}: {err}") from None
    group_col = _columns(header, csv_path, opts)
    merge = load_label_merge(opts.label_merge) if opts.label_merge is not None else {}
    vocab = set(classes) if classes is not None else None
    root = csv_path.parent
    reasons: Dict[int, List[str]] = {}
    parsed: Dict[int, List[str]] = {}
    paths: Dict[int, Path] = {}
    for n, row in enumerate(rows, 1):
        why: List[str] = []
        cell = (row.get(opts.image_column) or "").strip().replace("\\", "/")  # a CSV written on Windows too
        path = Path(cell) if Path(cell).is_absolute() else root / cell
        if not cell:
            why.append("no image path")
        elif not path.is_file():
            why.append("image file not found")
        text = (row.get(opts.text_column) or "").strip()
        if not text or text.casefold() in MISSING_CELLS:  # `nan`: a missing caption written by pandas
            why.append("empty text")
        labels = _merged(parse_label_cell(row.get(opts.labels_column) or "", opts.separator), merge)
        if not labels:
            why.append("no labels")
        outside = [x for x in labels if vocab is not None and x not in vocab]
        if outside:
            why.append(f"labels outside the vocabulary after merging: {', '.join(outside)}")
        if opts.max_labels is not None and len(labels) > opts.max_labels:
            why.append(f"{len(labels)} labels after merging, more than max_labels={opts.max_labels}")
        if why:
            reasons[n] = why
        parsed[n], paths[n] = labels, path
    # Decode only the images of otherwise good rows, in threads (PIL releases the GIL while decoding).
    candidates = [n for n in parsed if n not in reasons]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for n, problem in zip(candidates, pool.map(lambda k: _image_problem(paths[k]), candidates)):
            if problem:
                reasons[n] = [problem]
    reasons.update(_repeated_rows([n for n in parsed if n not in reasons], rows, paths, parsed, opts))
    kept = [n for n in parsed if n not in reasons]
    freq = Counter(x for n in kept for x in parsed[n])
    rare = {x for x, c in freq.items() if c < opts.min_frequency}
    for n in kept:
        removed = [x for x in parsed[n] if x in rare]
        parsed[n] = [x for x in parsed[n] if x not in rare]
        if not parsed[n]:
            reasons[n] = [f"no label left after min_frequency={opts.min_frequency} (removed: {', '.join(removed)})"]
    if rare:
        log.info("labels on fewer than %d rows removed (data.multilabel.min_frequency): %s", opts.min_frequency,
                 ", ".join(sorted(rare)))
    dropped = [{"row": n, "image": (rows[n - 1].get(opts.image_column) or "").strip(), "reason": "; ".join(reasons[n])}
               for n in sorted(reasons)]
    kept = [n for n in parsed if n not in reasons]
    if not kept:
        listing = "; ".join(f"row {d['row']}: {d['reason']}" for d in dropped[:10])
        raise ShardError(f"no usable row in {csv_path} ({len(dropped)} dropped): {listing}")
    used = {x for n in kept for x in parsed[n]}
    if classes is None and all(x.casefold() in INDICATOR_VALUES for x in used):
        raise ShardError(f"CSV {csv_path}: the labels column '{opts.labels_column}' holds only indicator values "
                         f"({', '.join(sorted(used))}), not label names: a one-hot CSV (one 0/1 or yes/no column "
                         f"per label) is not read, and these values would be classes of their own. Write each "
                         f"row's label names into one column (e.g. `fat{opts.separator}necrosis`) and name it with "
                         f"data.multilabel.labels_column (--labels-column)")
    check_label_spellings(parsed, kept, csv_path, opts.separator)
    if classes is not None:
        vocabulary = [c for c in classes if c not in rare]
        unused = [c for c in vocabulary if c not in used]
        if unused:
            log.warning("classes with no kept sample (their counts are 0): %s", ", ".join(unused))
    else:
        vocabulary = sorted(used)
    order = {c: i for i, c in enumerate(vocabulary)}
    samples: List[SampleSpec] = []
    rels = {n: Path(rows[n - 1][opts.image_column].strip().replace("\\", "/")).as_posix() for n in kept}
    key_of = sample_keys(list(dict.fromkeys(rels.values())))
    keys = set()
    for n in kept:
        row, labels = rows[n - 1], sorted(parsed[n], key=order.__getitem__)
        rel = rels[n]
        key = key_of[rel]
        while key in keys:  # one image with several captions (Quilt-style): one sample per row; again if another
            key = f"{key}-r{n}"  # image's own key reads so (`a-r3.png`)
        keys.add(key)
        group = (row.get(group_col) or "").strip() if group_col else ""
        group = None if not group or group.casefold() in MISSING_CELLS else group  # `nan`: a missing cell
        # a patient column beside the slide group: the split keeps the patient whole too (its slides share tissue)
        patient = (row.get("patient_id") or "").strip() if group_col == "slide_id" and not opts.group_column else ""
        patient_meta = {"patient_id": patient} if patient and patient.casefold() not in MISSING_CELLS else {}
        samples.append(SampleSpec(key, labels[0], paths[n], group, row[opts.text_column].strip(),
                                  {"file": rel, "row": n, "labels": labels, **patient_meta}))
    counts = Counter(x for s in samples for x in s.meta["labels"])
    return MultiLabelInput(samples, vocabulary, dropped, {c: counts.get(c, 0) for c in vocabulary})


SEPARATOR_LOOKALIKES = (";", ",", "|")
"""Characters that separate label names in common CSV exports: inside a label name they mean the cell was written
with another separator than `data.multilabel.separator`."""


def check_label_spellings(parsed: Mapping[int, List[str]], rows: Sequence[int], csv_path: Path,
                          separator: str) -> None:
    """Refuse label names of `rows` that differ only in case, spacing or Unicode form (two classes of one label,
    each with half its samples); warn about names holding another separator character (`fat;necrosis` read whole
    under `|`)."""
    first_row: Dict[str, int] = {}
    for n in rows:
        for label in parsed[n]:
            first_row.setdefault(label, n)
    spellings: Dict[str, List[str]] = {}
    for label in first_row:
        # one Unicode form (NFKC: composed `Ö` and `O` + combining diaeresis alike), no spaces, no invisible format
        # characters (a zero-width space or BOM pasted with the name), one case
        plain = "".join(c for c in unicodedata.normalize("NFKC", "".join(label.split()))
                        if unicodedata.category(c) != "Cf")
        spellings.setdefault(plain.casefold(), []).append(label)
    clashes = [names for names in spellings.values() if len(names) > 1]
    if clashes:
        listing = "; ".join(" and ".join(f"'{_shown(name)}' (row {first_row[name]})" for name in names)
                            for names in clashes)
        raise ShardError(f"{csv_path}: label names that differ only in case, spacing or Unicode form would be "
                         f"separate classes: {listing}. Write each label one way, or unite the spellings with a "
                         f"label merge (data.multilabel.label_merge / --label-merge: `Target: [spelling, ...]`)")
    odd = {label: [c for c in SEPARATOR_LOOKALIKES if c != separator and c in label] for label in first_row}
    odd = {label: chars for label, chars in odd.items() if chars}
    if odd:
        log.warning("%s: label names hold a separator character other than the configured '%s' (each read as one "
                    "label): %s; if these cells list several labels, set data.multilabel.separator (--separator)",
                    csv_path, separator, "; ".join(f"'{label}' (row {first_row[label]}: "
                                                   f"{', '.join(repr(c) for c in chars)})"
                                                   for label, chars in sorted(odd.items())))


def _shown(name: str) -> str:
    """A label name with its invisible format characters written out (`fat\\u200b`): two names that print alike
    in an error are told apart."""
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cf" else c for c in name)


def format_dropped(dropped: Sequence[Mapping[str, Any]]) -> List[str]:
    """One line per dropped row: `row N: reason (image)`."""
    return [f"row {d['row']}: {d['reason']}" + (f"  [{d['image']}]" if d.get("image") else "") for d in dropped]


def build_multilabel_shards(csv_path: Union[str, Path], out_dir: Union[str, Path], build: BuildConfig,
                            opts: MultiLabelConfig, classes: Optional[Sequence[str]] = None,
                            provenance: Optional[Mapping[str, Any]] = None, progress: bool = True) -> Dict[str, Any]:
    """Read the CSV (`read_multilabel_csv`) and build its good rows into a shard set; return the manifest, which
    records the vocabulary (`classes`), `label_counts` per shard, split and overall, and `dropped_rows`."""
    got = read_multilabel_csv(csv_path, opts, classes)
    if got.dropped:  # the command prints the full list; the log keeps a trace for batch jobs
        log.warning("%d row(s) of %s dropped (listed in manifest.json 'dropped_rows'): %s", len(got.dropped),
                    csv_path, "; ".join(format_dropped(got.dropped[:5])) + (" ..." if len(got.dropped) > 5 else ""))
    prov = {"input": str(csv_path), "task": "multilabel", **opts.model_dump(mode="json"), **dict(provenance or {})}
    return build_shards(got.samples, out_dir, build, got.classes, provenance=prov, progress=progress,
                        dropped_rows=got.dropped)
