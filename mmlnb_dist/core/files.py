"""File helpers shared by core and data: one implementation of "is this file unchanged" (digests of checkpoints
and shards), of "replace a file whole" and of "open a user's CSV"."""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import TextIO, Union


def sha256_file(path: Union[str, Path], block_size: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in blocks (checkpoints and shards can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_text(path: Union[str, Path], text: str) -> None:
    """Write `text` to `path` through a temporary file beside it and an atomic rename: a killed process leaves the
    old file or the new one, never half of one (and a reader never sees half of one). Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def open_csv(path: Union[str, Path]) -> TextIO:
    """A user's CSV file, opened for `csv.DictReader`: UTF-8 with or without the byte-order mark Excel writes ("CSV
    UTF-8"), which would otherwise stick to the first column's name ('\ufeffpath' is not 'path')."""
    return open(path, newline="", encoding="utf-8-sig")


def dict_reader(handle: TextIO) -> csv.DictReader:
    """`csv.DictReader` over a user's CSV (`open_csv`), comma-, semicolon- (Excel in locales whose decimal mark is
    the comma) or tab-separated: the header line's most frequent of the three separates the columns."""
    header = handle.readline()
    handle.seek(0)
    return csv.DictReader(handle, delimiter=max((",", ";", "\t"), key=header.count) if header else ",")
