"""What `slides tile` reads before any slide is opened: the slide list (a folder or a CSV), the label file, and
which label row is which slide. A problem with either file is a `TilingInputError` (a usage error, exit code 2);
a slide that cannot be tiled is a problem record in the report, never silently dropped."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..core.errors import UserError
from ..core.files import dict_reader, open_csv
from ..data.images import SLIDE_EXTENSIONS


class TilingInputError(UserError, ValueError):
    """The slide list or label file itself is unusable (a usage error, not a bad slide)."""


def find_slides(slides: Path) -> Dict[str, Path]:
    """`{slide_id: path}` from a folder (slide files at its top level) or a CSV with a `path` column."""
    slides = Path(slides)
    if slides.is_dir():
        paths = sorted(p for p in slides.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_EXTENSIONS)
        found = {p.stem: p for p in paths}
    elif slides.is_file():
        with open_csv(slides) as f:
            reader = dict_reader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise TilingInputError(f"{slides}: a slide list CSV needs a 'path' column (optional 'slide_id')")
            reject_misnamed_slide_column(slides, reader.fieldnames)
            found = {}
            for row in reader:
                p = Path(row["path"])
                p = p if p.is_absolute() else slides.parent / p
                found[row.get("slide_id") or p.stem] = p
    else:
        raise TilingInputError(f"--slides {slides}: no such folder or CSV file")
    return dict(sorted(found.items()))


def reject_misnamed_slide_column(path: Path, columns: Sequence[str]) -> None:
    """The slide column is `slide_id` (docs/slides.md). A look-alike (`slide`, `Slide_ID`, `slide_name`) is an
    error naming it: ignoring it silently would fall back to file stems and no label would match."""
    if "slide_id" in columns:
        return
    for name in columns:
        if name.strip().lower().replace(" ", "_") in ("slide", "slide_id", "slideid", "slide_name", "slidename"):
            raise TilingInputError(f"{path}: column '{name}' is not read; name the slide column 'slide_id'")


def read_labels(path: Path) -> Dict[str, str]:
    """`{slide_id: label}` from a CSV with `slide_id` and `label` columns; a slide given two labels is refused."""
    path = Path(path)
    if not path.is_file():
        raise TilingInputError(f"--labels {path}: no such file")
    with open_csv(path) as f:
        reader = dict_reader(f)
        if not reader.fieldnames or not {"slide_id", "label"} <= set(reader.fieldnames):
            reject_misnamed_slide_column(path, reader.fieldnames or [])
            raise TilingInputError(f"{path}: the label CSV needs 'slide_id' and 'label' columns; found "
                                   f"{list(reader.fieldnames or [])}")
        labels: Dict[str, str] = {}
        first_row: Dict[str, int] = {}
        for n, row in enumerate(reader, 2):  # row 1 is the header
            slide = (row.get("slide_id") or "").strip()
            if not slide:
                continue
            label = (row.get("label") or "").strip()
            if slide in labels and labels[slide] != label:  # which one is right is the user's call, not ours
                raise TilingInputError(f"{path}: slide {slide} is labelled '{labels[slide]}' and '{label}' (rows "
                                       f"{first_row[slide]} and {n}); give each slide one label")
            labels.setdefault(slide, label)
            first_row.setdefault(slide, n)
        return labels


def match_inputs(found: Dict[str, Path], labels: Dict[str, str],
                 classes: Sequence[str]) -> Tuple[Dict[str, Tuple[Path, str]], List[Dict[str, Any]]]:
    """Slides that can be tiled, and a problem record for each slide that cannot (never silently dropped). A label
    row may name a slide by its id (the file stem) or by its file name (`a.svs`)."""
    labels = dict(labels)
    for sid, path in found.items():
        if path.name != sid and path.name in labels and sid not in labels:
            labels[sid] = labels.pop(path.name)
    usable, problems = {}, []
    for sid in sorted(set(found) | set(labels)):
        if sid not in found:
            problems.append(problem_record(sid, labels[sid], "missing_slide", "named in the label file, no slide file"))
        elif sid not in labels:
            problems.append(problem_record(sid, "", "unlabelled", f"{found[sid].name} is not in the label file"))
        elif not found[sid].exists():
            problems.append(problem_record(sid, labels[sid], "missing_slide", f"{found[sid]} does not exist"))
        elif labels[sid] not in classes:
            problems.append(problem_record(sid, labels[sid], "bad_label",
                                           f"label {labels[sid]!r} is not one of {list(classes)}"))
        else:
            usable[sid] = (found[sid], labels[sid])
    return usable, problems


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
