"""What `slides tile` reads before any slide is opened: the slide list (a folder or a CSV), the label file, and
which label row is which slide, and which corrected mask (`--mask-dir`) is which slide's. A problem with either
file is a `TilingInputError` (a usage error, exit code 2); a slide that cannot be tiled is a problem record in the
report, never silently dropped."""
from __future__ import annotations

import glob
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO, Tuple

from ..core.errors import UserError
from ..core.files import dict_reader, open_csv
from ..data.images import SLIDE_EXTENSIONS

log = logging.getLogger(__name__)
MASK_SUFFIX = ".geojson"
DICOM = ".dcm"


class TilingInputError(UserError, ValueError):
    """The slide list or label file itself is unusable (a usage error, not a bad slide)."""


def safe_key(text: str) -> str:
    """A slide id as a file key: shard keys allow [A-Za-z0-9_-] only, and the staging folder and the QC files
    (`qc/masks/`, `qc/pictures/`) are named by the same key."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def qc_file_name(slide_id: str, suffix: str) -> str:
    """The name of a slide's file in `<out>/qc/<kind>/`: the one place that decides it, so the mask `slides tile`
    writes is a file `--mask-dir` reads back."""
    return f"{safe_key(slide_id)}{suffix}"


def mask_names(slide_id: str, file_name: Optional[str] = None) -> List[str]:
    """The names a corrected mask of the slide may have in `--mask-dir`: `<slide_id>.geojson` (as docs/slides.md
    says), the name `slides tile` exported it under (they differ when the id holds '.' or a space, as every
    TCGA id does: QuPath saves back under the exported name) and, given the slide's `file_name`,
    `<file name>.geojson` (`S1.svs.geojson`: QuPath's object export and many scripts name it so)."""
    names = [f"{slide_id}{MASK_SUFFIX}", qc_file_name(slide_id, MASK_SUFFIX)]
    return list(dict.fromkeys(names + ([f"{file_name}{MASK_SUFFIX}"] if file_name else [])))


def mask_path(mask_dir: Optional[Path], slide_id: str, file_name: Optional[str] = None) -> Optional[Path]:
    """The slide's corrected mask in `mask_dir` (an absolute path), or None (its tissue is then detected)."""
    if mask_dir is None:
        return None
    mask_dir = Path(mask_dir).absolute()  # read by workers, which may run elsewhere (see find_slides)
    names = mask_names(slide_id, file_name)
    for name in names:
        if (mask_dir / name).is_file():
            return mask_dir / name
    found = _masks_by_name(mask_dir) if mask_dir.is_dir() else {}
    for name in names:  # the suffix in another case: S1.GEOJSON
        if name in found:
            return found[name][0]
    return None


def _masks_by_name(mask_dir: Path) -> Dict[str, List[Path]]:
    """The mask files of `mask_dir` by their name with the suffix in lower case: `S1.GEOJSON` and `S1.GeoJSON`
    (Windows and some QuPath scripts write these) are masks named `S1.geojson`."""
    found: Dict[str, List[Path]] = {}
    for p in sorted(mask_dir.iterdir()):
        if p.suffix.lower() == MASK_SUFFIX and p.is_file():
            found.setdefault(p.stem + MASK_SUFFIX, []).append(p)
    return found


def check_mask_dir(mask_dir: Path, slide_ids: Iterable[str],
                   file_names: Optional[Dict[str, str]] = None) -> None:
    """Refuse a slide with two different masks (which one the user corrected is their call, not ours), and warn,
    naming them, about mask files that match no slide being tiled: a mask is never left unused silently.
    `file_names`: `{slide_id: slide file name}`, for masks named `<file name>.geojson`."""
    mask_dir = Path(mask_dir)
    if mask_dir.is_file():  # the mask itself, given for its folder
        raise TilingInputError(f"slides.mask_dir {mask_dir} is a file: give the folder that holds the masks (each "
                               f"named <slide_id>{MASK_SUFFIX})")
    if not mask_dir.is_dir():
        raise TilingInputError(f"slides.mask_dir {mask_dir}: no such folder")
    used = set()
    slide_ids = list(slide_ids)
    found = _masks_by_name(mask_dir)
    for sid in slide_ids:
        paths = [p for n in mask_names(sid, (file_names or {}).get(sid)) for p in found.get(n, ())]
        differ = [p for p in paths if p.read_bytes() != paths[0].read_bytes()]
        if differ:
            raise TilingInputError(f"slides.mask_dir {mask_dir}: slide '{sid}' has two different masks, "
                                   f"{paths[0].name} and {differ[0].name}; keep the corrected one")
        used.update(p.name for p in paths)
    if slide_ids and not used:  # the wrong folder, or masks not exported yet: every slide is detected
        log.warning("slides.mask_dir %s: none of the %d slide(s) being tiled has a mask there (<slide_id>%s or "
                    "<slide file name>%s): "
                    "their tissue is detected automatically", mask_dir, len(slide_ids), MASK_SUFFIX, MASK_SUFFIX)
    unused = sorted(p.name for ps in found.values() for p in ps if p.name not in used and not p.name.startswith("."))
    if unused:
        log.warning("slides.mask_dir %s: %d mask file(s) match no slide being tiled and are not used: %s%s (a "
                    "slide's mask is <slide_id>%s, <slide file name>%s or the name slides tile wrote it under in "
                    "qc/masks/)", mask_dir, len(unused), ", ".join(unused[:10]), ", ..." if len(unused) > 10 else "",
                    MASK_SUFFIX, MASK_SUFFIX)


def find_slides(slides: Path) -> Dict[str, Path]:
    """`{slide_id: path}` from a folder (slide files at its top level) or a CSV with a `path` column (optional
    `slide_id`). Two files under one id, or two ids that make one file key, are refused: one would overwrite the
    other and a slide would be dropped silently (multi-site cohorts reuse names like `S001`).

    The paths are absolute: a Ray worker on an existing cluster runs in the cluster's working directory, not
    ours. They are not resolved: a link keeps its own name, which the tiles' `source`, the result records and
    the resume fingerprints use (a folder of links named by slide id to files named by the scanner)."""
    slides = Path(slides)
    if slides.is_dir():
        # hidden files are no slides: macOS copies leave an AppleDouble `._S1.svs` beside each `S1.svs`
        paths = sorted(p for p in slides.absolute().iterdir() if p.is_file() and p.suffix.lower() in SLIDE_EXTENSIONS
                       and p.suffix.lower() != DICOM and not p.name.startswith("."))
        entries = [(p.stem, p, None) for p in paths] + _dicom_slides(slides.absolute())
        remedy = ("rename one, or list the slides in a CSV with 'path' and 'slide_id' columns (--slides) to give "
                  "each its own id")
    elif slides.is_file():
        if slides.suffix.lower() in SLIDE_EXTENSIONS:
            raise TilingInputError(f"--slides {slides} is a slide file: give the folder that holds the slides, or a "
                                   f"CSV listing them (a 'path' column)")
        with _csv_text(slides, "--slides") as f:
            entries = _slide_rows(slides, dict_reader(f))
        remedy = "give each its own id in a 'slide_id' column of that CSV (where it is empty, the id is the file stem)"
    else:
        raise TilingInputError(f"--slides {slides}: no such folder or CSV file")
    found = _one_file_per_id(slides, entries, remedy)
    _one_key_per_id(slides, found, remedy)
    return dict(sorted(found.items()))


def _dicom_slides(folder: Path) -> List[Tuple[str, Path, None]]:
    """The DICOM slides of a `--slides` folder: a DICOM whole-slide image is a folder of `.dcm` files (its levels,
    label and overview; OpenSlide opens any one and finds the rest of its series beside it), so each folder of
    them is one slide, named by the folder: `folder` itself when it holds them, and each subfolder that does. One
    slide per file tiled one scan once per level, under as many ids (and split its tiles between train and val)."""
    entries = []
    for d in [folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        files = _dicom_files(d)
        if files:
            entries.append((d.name, files[0], None))
    return entries


def _dicom_files(folder: Path) -> List[Path]:
    """The `.dcm` files of `folder` (not of its subfolders), sorted: a DICOM slide opens by any one of them."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() == DICOM and not p.name.startswith("."))


def _one_file_per_id(slides: Path, entries: List[Tuple[str, Path, Optional[int]]],
                     remedy: str) -> Dict[str, Path]:
    """`{slide_id: path}` from (id, path, CSV row or None), refusing an id given to two different files (one file
    listed twice is one slide)."""
    found: Dict[str, Path] = {}
    row: Dict[str, Optional[int]] = {}
    id_of: Dict[Path, str] = {}
    for sid, path, n in entries:
        if sid in found and found[sid].resolve() != path.resolve():
            rows = f" (rows {row[sid]} and {n})" if n is not None else ""
            raise TilingInputError(f"--slides {slides}: slide id '{sid}' names two files{rows}, {found[sid]} and "
                                   f"{path}; {remedy}")
        # a slide file a CSV lists under two ids would be tiled as two slides, its tiles split between train and
        # val (a folder's links to one file are the user's own doing: not judged)
        other = id_of.setdefault(path.resolve(), sid) if n is not None else sid
        if other != sid:
            raise TilingInputError(f"--slides {slides}: {path} is listed under two slide ids, '{other}' (row "
                                   f"{row[other]}) and '{sid}' (row {n}); list each slide file once")
        found.setdefault(sid, path)
        row.setdefault(sid, n)
    return found


def _slide_rows(slides: Path, reader) -> List[Tuple[str, Path, int]]:
    """(slide_id, absolute path, row number) per row of a slide list CSV."""
    if not reader.fieldnames or "path" not in reader.fieldnames:
        raise TilingInputError(f"{slides}: a slide list CSV needs a 'path' column (optional 'slide_id')")
    reject_misnamed_slide_column(slides, reader.fieldnames)
    entries = []
    for n, row in enumerate(reader, 2):  # row 1 is the header
        if not any((cell or "").strip() for cell in row.values() if isinstance(cell, str)):
            continue  # a spreadsheet's trailing ",," row: no slide
        # trimmed as read_labels trims ids; a path written on Windows (`site\S1.svs`) read as one
        text = (row["path"] or "").strip().replace("\\", "/")
        if not text:  # Path("") is the CSV's own folder, which would become a slide
            sid = (row.get("slide_id") or "").strip()
            raise TilingInputError(f"{slides}: row {n}{f' (slide_id {sid!r})' if sid else ''} has no path; "
                                   f"give the slide's file in its 'path' cell or delete the row")
        p = Path(text)
        p = p if p.is_absolute() else slides.absolute().parent / p
        if p.is_dir():  # a DICOM slide is its folder (see _dicom_slides); any other folder is no slide
            files = _dicom_files(p)
            if not files:
                raise TilingInputError(f"{slides}: row {n}: path {text} is a folder with no .dcm files (only a DICOM "
                                       f"slide is a folder); give the slide's file in its 'path' cell")
            entries.append(((row.get("slide_id") or "").strip() or p.name, files[0], n))
            continue
        entries.append(((row.get("slide_id") or "").strip() or p.stem, p, n))
    return entries


@contextmanager
def _csv_text(path: Path, flag: str) -> Iterator[TextIO]:
    """The CSV opened as text; one that is not UTF-8 (a slide, a spreadsheet saved in a legacy encoding) is a
    usage error naming it, wherever in the file the first bad byte is."""
    try:
        with open_csv(path) as f:
            yield f
    except UnicodeDecodeError as err:
        raise TilingInputError(f"{flag} {path}: not UTF-8 text ({err.reason}: byte 0x{err.object[err.start]:02x} at "
                               f"offset {err.start}); save it as a CSV in UTF-8") from None


def _one_key_per_id(slides: Path, found: Dict[str, Path], remedy: str) -> None:
    """Refuse two ids that make one file key (`case-é`, `case-ü`): their staged tiles, tile keys and QC files
    would collide, found only after every slide was tiled."""
    by_key: Dict[str, str] = {}
    for sid in sorted(found):
        key = safe_key(sid)
        if key in by_key:
            raise TilingInputError(f"--slides {slides}: slide ids '{by_key[key]}' ({found[by_key[key]]}) and "
                                   f"'{sid}' ({found[sid]}) make the same file key '{key}' (tile keys keep only "
                                   f"letters, digits, '_' and '-'); {remedy}")
        by_key[key] = sid


def reject_misnamed_slide_column(path: Path, columns: Sequence[str]) -> None:
    """The slide column is `slide_id` (docs/slides.md). A look-alike (`slide`, `Slide_ID`, `slide_name`) is an
    error naming it: ignoring it silently would fall back to file stems and no label would match."""
    if "slide_id" in columns:
        return
    for name in columns:
        if name.strip().lower().replace(" ", "_") in ("slide", "slide_id", "slideid", "slide_name", "slidename"):
            raise TilingInputError(f"{path}: column '{name}' is not read; name the slide column 'slide_id'")


def read_labels(path: Path) -> Dict[str, str]:
    """`{slide_id: label}` from a CSV with `slide_id` and `label` columns; a slide given two labels is refused. In a
    CSV that also has a `path` column (the `--slides` list used as the label file), an empty id is the file stem."""
    path = Path(path)
    if path.is_dir():  # the slide folder, its labels.csv left off
        csvs = sorted(p.name for p in path.glob("*.csv"))[:3]
        raise TilingInputError(f"--labels {path} is a folder: give the label CSV (slide_id,label)"
                               + (f", e.g. {path / csvs[0]} (CSVs there: {', '.join(csvs)})" if csvs else ""))
    if not path.is_file():
        raise TilingInputError(f"--labels {path}: no such file")
    with _csv_text(path, "--labels") as f:
        reader = dict_reader(f)
        if not reader.fieldnames or not {"slide_id", "label"} <= set(reader.fieldnames):
            reject_misnamed_slide_column(path, reader.fieldnames or [])
            raise TilingInputError(f"{path}: the label CSV needs 'slide_id' and 'label' columns; found "
                                   f"{list(reader.fieldnames or [])}")
        labels: Dict[str, str] = {}
        first_row: Dict[str, int] = {}
        for n, row in enumerate(reader, 2):  # row 1 is the header
            slide = (row.get("slide_id") or "").strip()
            # one table as --slides and --labels: as there, an empty id is the file stem (of a row with a label)
            if not slide and (row.get("path") or "").strip() and (row.get("label") or "").strip():
                slide = Path(row["path"].strip().replace("\\", "/")).stem
            if not slide:
                continue
            label = (row.get("label") or "").strip()
            if slide in labels and labels[slide] != label:  # which one is right is the user's call, not ours
                raise TilingInputError(f"{path}: slide {slide} is labelled '{labels[slide]}' and '{label}' (rows "
                                       f"{first_row[slide]} and {n}); give each slide one label")
            labels.setdefault(slide, label)
            first_row.setdefault(slide, n)
        return labels


def refuse_file_out(out: Path) -> None:
    """Refuse an `--out` the shard set cannot replace (a file, or a folder of other files: the slide folder
    itself, say) before any slide is tiled, not after hours of tiling when the shards are written."""
    from ..data.build import check_replaceable
    from ..data.shardset import ShardError

    try:
        check_replaceable(Path(out))
    except ShardError as err:
        raise TilingInputError(f"--out {out}: {err}") from None


def nested_slides(folder: Path, stem: str = "*", limit: int = 3) -> List[str]:
    """Up to `limit` slide files (named `<stem>.*`) one or two subfolders below `folder`, as paths relative to it:
    `--slides` reads its top level only, and a cohort kept one folder per site or patient is passed over."""
    import itertools

    found = (p for pattern in (f"*/{stem}.*", f"*/*/{stem}.*") for p in Path(folder).glob(pattern)
             if p.suffix.lower() in SLIDE_EXTENSIONS and p.is_file() and not p.name.startswith("."))
    return sorted(p.relative_to(folder).as_posix() for p in itertools.islice(found, limit))


def no_slide_files(slides: Path) -> str:
    """The message for a `--slides` with no slide file, naming slides in its subfolders when there are some."""
    message = f"--slides {slides}: no slide files ({', '.join(SLIDE_EXTENSIONS)})"
    nested = nested_slides(slides) if Path(slides).is_dir() else []
    if nested:
        message += (f"; subfolders hold some ({', '.join(nested)}{', ...' if len(nested) == 3 else ''}), which are "
                    f"not searched: list the slides in a CSV with a 'path' column and pass it as --slides")
    return message


def check_input_paths(slides: Path, labels: Path, out: Path) -> None:
    """The usage errors about the paths themselves, before anything is written (a tracking run in `<out>.work`):
    `--out` a file, no slide in `--slides`, an unreadable `--labels`. `tile_slides` meets them again."""
    refuse_file_out(out)
    if not find_slides(Path(slides)):
        raise TilingInputError(no_slide_files(Path(slides)))
    read_labels(Path(labels))


def match_inputs(found: Dict[str, Path], labels: Dict[str, str], classes: Sequence[str],
                 folder: Optional[Path] = None) -> Tuple[Dict[str, Tuple[Path, str]], List[Dict[str, Any]]]:
    """Slides that can be tiled, and a problem record for each slide that cannot (never silently dropped). A label
    row may name a slide by its id (the file stem) or by its file name (`a.svs`). `folder`: the slide folder, where
    a labelled slide with no slide file may be there in a format that is not read (said so in its record)."""
    labels = dict(labels)
    conflicts: Dict[str, str] = {}  # a file-name row whose label differs from its slide's id row
    # a file-name row with the suffix in another case (`S1.svs` for the scanner's `S1.SVS`) names the file too
    by_suffix = {(head, tail.lower()): k for k in labels for head, _, tail in [k.rpartition(".")] if head}
    for sid, path in found.items():
        name = path.name if path.name in labels else by_suffix.get((path.stem, path.suffix[1:].lower()))
        if name is not None and name != path.name and path.name != sid:
            labels[path.name] = labels.pop(name)
        if path.name != sid and path.name in labels and (sid not in labels or labels[sid] == labels[path.name]):
            labels[sid] = labels.pop(path.name)  # (a row by id and one by file name, one label: one slide)
        elif path.name != sid and path.name in labels:
            conflicts[path.name] = (f"names the file of slide '{sid}' and labels it {labels[path.name]!r}, but the "
                                    f"row of '{sid}' labels it {labels[sid]!r} (used); give each slide one row")
    usable, problems = {}, []
    for sid in sorted(set(found) | set(labels)):
        if sid not in found:
            problems.append(problem_record(sid, labels[sid], "missing_slide",
                                           conflicts.get(sid) or _no_slide_file(sid, folder)))
        elif sid not in labels:
            problems.append(problem_record(sid, "", "unlabelled", f"{found[sid].name} is not in the label file"))
        elif not found[sid].exists():
            problems.append(problem_record(sid, labels[sid], "missing_slide", f"{found[sid]} does not exist"))
        elif labels[sid] not in classes:
            near = [c for c in classes if c.lower() == labels[sid].lower()]
            hint = f"; did you mean {near[0]!r}? labels are matched exactly, case included" if near else ""
            problems.append(problem_record(sid, labels[sid], "bad_label",
                                           f"label {labels[sid]!r} is not one of {list(classes)}{hint}"))
        else:
            usable[sid] = (found[sid], labels[sid])
    return usable, problems


def _no_slide_file(slide_id: str, folder: Optional[Path]) -> str:
    """Why a labelled slide has no slide file: none of that name, or one in a format that is not read."""
    others = sorted(p.name for p in Path(folder).glob(f"{glob.escape(slide_id)}.*")
                    if p.is_file() and p.stem == slide_id) if folder is not None and Path(folder).is_dir() else []
    if not others:
        nested = nested_slides(Path(folder), glob.escape(slide_id), 1) if folder is not None else []
        if nested and Path(nested[0]).stem == slide_id:
            return (f"named in the label file; {nested[0]} is in a subfolder, which is not searched (list the slides "
                    f"in a CSV with a 'path' column and pass it as --slides)")
        return "named in the label file, no slide file"
    return (f"named in the label file; {others[0]} is there, but {Path(others[0]).suffix or 'its suffix'} is not a "
            f"slide format ({', '.join(SLIDE_EXTENSIONS)})")


def no_usable_slide(slides: Path, labels: Path, problems: List[Dict[str, Any]]) -> str:
    """Why no slide can be tiled, by problem, with examples of both sides when the ids do not match."""
    by_status: Dict[str, List[str]] = {}
    for p in problems:
        by_status.setdefault(p["status"], []).append(p["slide_id"])

    def some(ids: List[str]) -> str:
        return ", ".join(f"'{i}'" for i in ids[:3]) + (", ..." if len(ids) > 3 else "")

    parts = []
    if by_status.get("unlabelled"):
        parts.append(f"{len(by_status['unlabelled'])} slide file(s) are not in the label file "
                     f"({some(by_status['unlabelled'])})")
    if by_status.get("missing_slide"):
        parts.append(f"{len(by_status['missing_slide'])} label row(s) name no slide file "
                     f"({some(by_status['missing_slide'])})")
    if by_status.get("bad_label"):
        parts.append(f"{len(by_status['bad_label'])} slide(s) have a label that is not a class "
                     f"({some(by_status['bad_label'])})")
    hint = ("; a slide's id is its file stem (or the slide_id of a --slides CSV), and the label file's slide_id "
            "must name it or its file name"
            if by_status.get("unlabelled") and by_status.get("missing_slide") else "")
    return f"--slides {slides} with --labels {labels}: no slide can be tiled: {'; '.join(parts)}{hint}"


def problem_record(slide_id: str, label: str, status: str, error: str) -> Dict[str, Any]:
    return {"slide_id": slide_id, "label": label, "status": status, "error": error, "candidates": 0, "kept": 0,
            "rejected": {}, "seconds": 0.0}
