"""A descriptions file handed to `predict` (CSV or JSONL: an image column, a description column, optional
`slide_id`), matched to the images being predicted by path first.

    table = DescriptionTable.read(Path("descs.csv"), column="description")
    rows = table.match([("S1_p1", Path("in/S1/p1.png")), ...])   # a row or None each, or DescriptionsError

Patches of different slides often share a file name (`S1/p1.png`, `S2/p1.png`), so a row matches an image by its
path: the path resolved against the file's folder or the working directory, or the longest tail of the image's
own path that a row names (a tail that two images end with, `S1/p1.png` of `A/S1/p1.png` and `B/S1/p1.png`, is
refused unless the row resolves to one of them exactly, which then owns it). A bare name, stem or sample key is
used only when exactly one row carries it, no image names that row by its path, and only one image asks for it;
anything else would give an image another image's description, and is refused by name.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..core.errors import UserError
from ..core.files import dict_reader, open_csv

ID_COLUMNS = ("key", "path", "image", "file")
"""Columns that may name a row's image, in the order they are tried."""


class DescriptionsError(UserError, ValueError):
    """The descriptions file cannot be read, or a row could belong to more than one image."""


def _posix(path: str) -> str:
    """`path` with forward slashes and without `./` parts, as rows and image paths are compared."""
    return PurePosixPath(str(path).replace("\\", "/")).as_posix()


def _read_jsonl(path: Path) -> List[Dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-empty line; a bad line is named by its number."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DescriptionsError(f"{path}:{n}: not a JSON object ({err})") from None
        if not isinstance(row, dict):
            raise DescriptionsError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


class DescriptionTable:
    """Rows of a descriptions file indexed by path, and by name / stem / key where those are unambiguous."""

    def __init__(self, rows: List[Dict[str, Any]], folder: Path, column: str, source: str,
                 slide_column: str = "slide_id"):
        self.column, self.slide_column, self.source = column, slide_column, source
        self.rows = rows
        self.by_path: Dict[str, Dict[str, Any]] = {}
        self.by_alias: Dict[str, List[Dict[str, Any]]] = {}
        self._alias_users: Dict[int, str] = {}  # id(row) -> the image that matched it by a bare name
        for row in rows:
            names = [str(row[c]) for c in ID_COLUMNS if row.get(c)]
            for name in names:
                for path in {_posix(name), str((folder / name).resolve()), str(Path(name).resolve())}:
                    other = self.by_path.setdefault(path, row)
                    if other is not row and other.get(column) != row.get(column):
                        raise DescriptionsError(f"{source}: two rows with different descriptions name '{name}'; "
                                                f"name each image by its path (relative to the file)")
                for alias in {name, Path(name).name, Path(name).stem}:
                    same = self.by_alias.setdefault(alias, [])
                    if all(r is not row for r in same):
                        same.append(row)

    @classmethod
    def read(cls, path: Path, column: str = "description", slide_column: Optional[str] = None,
             require_text: bool = True) -> "DescriptionTable":
        """Read a CSV or JSONL file; its text is in `column`, slide ids in `slide_column` (default `slide_id`
        when the file has one; a named column must exist). `require_text=False`: the text comes from elsewhere
        (a VLM) and the file may be a plain labels table, read for its slide ids."""
        path = Path(path)
        if path.is_dir():  # (not "not found": the user sees the folder is there)
            inside = sorted(p.name for p in path.iterdir() if p.suffix in (".csv", ".jsonl", ".json"))[:3]
            text = f" and its text in a '{column}' column" if require_text else " and its slide id"
            raise DescriptionsError(f"{path} is a folder, not a descriptions file: give the CSV or JSONL file itself "
                                    f"(a row per image: an image column, {' / '.join(ID_COLUMNS)},{text})"
                                    + (f"; the folder holds {', '.join(inside)}" if inside else ""))
        if not path.is_file():
            raise DescriptionsError(f"descriptions file not found: {path}")
        try:
            if path.suffix in (".jsonl", ".json"):
                rows = _read_jsonl(path)
            else:
                with open_csv(path) as fh:
                    rows = list(dict_reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DescriptionsError(f"cannot read {path}: {err}") from None
        columns = [c for c in rows[0] if c is not None] if rows else []
        long = next((n for n, row in enumerate(rows, 1) if row.get(None)), None)  # DictReader's extra cells
        if long is not None:  # (else the text is cut at the comma without a word)
            raise DescriptionsError(f"{path}: row {long} has {len(columns) + len(rows[long - 1][None])} cells for "
                                    f"the header's {len(columns)}: quote a text that holds a comma (\"a, b\", with "
                                    f"no space before the quote)")
        if not rows or (require_text and any(column not in row for row in rows)):
            spaced = [c for c in columns if c.strip() == column and c != column]
            raise DescriptionsError(f"{path}: no '{column}' column (its columns: {', '.join(columns) or 'none'}); "
                                    + (f"its column {spaced[0]!r} has spaces around the name (a header written "
                                       f"`a, b`): write the header without them" if spaced else
                                       "name the column that holds the text with --description-column"))
        if slide_column is not None and slide_column not in columns:
            raise DescriptionsError(f"{path}: no '{slide_column}' column (its columns: {', '.join(columns)})")
        if not any(c in columns for c in ID_COLUMNS):
            raise DescriptionsError(f"{path}: no column names the images (one of {', '.join(ID_COLUMNS)}; its "
                                    f"columns: {', '.join(columns)})")
        return cls(rows, path.parent.resolve(), column, str(path), slide_column or "slide_id")

    def match(self, wanted: Sequence[Tuple[str, Optional[Path]]]) -> List[Optional[Dict[str, Any]]]:
        """The row of each image, given as (sample key, file path or None for a shard sample), or None. Paths are
        matched first, for every image: a row one image names by its path belongs to it alone, so another image
        of the same name (`PD/001.png` beside `UD/001.png`) never takes it by that name, whatever the order.
        A row whose path only two different images end with (`S1/p1.png` for `A/S1/p1.png` and `B/S1/p1.png`)
        could be either: refused, naming the row and both images."""
        found = [self._by_path(path) for _, path in wanted]
        exact_owners = {id(row) for row, exact in found if row is not None and exact}
        tail_users: Dict[int, Path] = {}  # id(row) -> the first image whose path ends with it
        rows: List[Optional[Dict[str, Any]]] = []
        for (row, exact), (_, path) in zip(found, wanted):
            if row is not None and not exact:
                if id(row) in exact_owners:  # the row resolves to another image: it is that image's alone
                    row = None
                else:
                    first = tail_users.setdefault(id(row), Path(path))
                    if first.resolve() != Path(path).resolve():  # (one file given twice, as a link: same text)
                        raise DescriptionsError(
                            f"{self.source}: the row for '{self.name(row)}' fits both {first} and {path}; name "
                            f"each image by a longer path (relative to the file), e.g. its class or site folder")
            rows.append(row)
        owned = {id(row) for row, _ in found if row is not None}
        return [row if row is not None else self._by_alias(key, path, owned)
                for row, (key, path) in zip(rows, wanted)]

    def _by_path(self, path: Optional[Path]) -> Tuple[Optional[Dict[str, Any]], bool]:
        """(the row naming `path`, whether it names it exactly): its resolved path, else the longest tail of it
        a row names (then not exact: another image may end the same way)."""
        if path is None:
            return None, False
        resolved = str(Path(path).resolve())
        if resolved in self.by_path:
            return self.by_path[resolved], True
        parts = PurePosixPath(_posix(str(path))).parts
        for i in range(len(parts) - 1):  # the longest tail of the image's path a row names (a bare name: below)
            tail = "/".join(parts[i:])
            if tail in self.by_path:
                return self.by_path[tail], False
        return None, False

    def _by_alias(self, key: str, path: Optional[Path], owned: Set[int]) -> Optional[Dict[str, Any]]:
        """The one row carrying the image's key, file name or stem, left to it by the images matched by path."""
        source = str(path) if path is not None else key
        # the file name first: it is the most specific (`rgb.png` beside `rgb.bmp`, whose key and stem are `rgb`)
        aliases = (key,) if path is None else tuple(dict.fromkeys((Path(path).name, key, Path(path).stem)))
        for alias in aliases:
            rows = [row for row in self.by_alias.get(alias, []) if id(row) not in owned]
            if len(rows) > 1:
                raise DescriptionsError(f"{self.source}: {len(rows)} rows name '{alias}', which could be the "
                                        f"image {source}; name each image by its path (relative to the file)")
            if rows:
                taken = self._alias_users.setdefault(id(rows[0]), source)
                if taken != source:
                    raise DescriptionsError(f"{self.source}: the row for '{alias}' fits both {taken} and {source}; "
                                            f"name each image by its path (relative to the file)")
                return rows[0]
        return None

    def name(self, row: Dict[str, Any]) -> str:
        """How the row names its image (its first id column), for messages."""
        return next((str(row[c]) for c in ID_COLUMNS if row.get(c)), "?")

    def description(self, row: Dict[str, Any]) -> Optional[str]:
        """The row's text; None for a missing, empty or blank cell (a short CSV row, JSON null), not "None"."""
        value = row.get(self.column)
        return str(value) if value is not None and str(value).strip() else None

    def slide_id(self, row: Dict[str, Any]) -> Optional[str]:
        value = row.get(self.slide_column)
        return str(value) if value not in (None, "") else None
