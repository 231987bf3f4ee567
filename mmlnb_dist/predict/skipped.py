"""The inputs `predict` could not read, kept beside the predictions (`<out stem>.skipped.<ext>`: input, reason).
They were only printed on stderr, gone with the terminal or a job log that was not kept, and the journal that held
them is removed once the output is written."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..core.files import replace_text


SIDE_FILES = {"slides": "per-slide aggregates", "skipped": "unreadable inputs"}
"""The files `predict --out preds.csv` writes (or removes) beside its predictions: `preds.<kind>.csv`."""


def side_file(out: Path, kind: str) -> Path:
    """`preds.<kind>.csv` beside `--out preds.csv` (`.jsonl` beside a JSONL output), `kind` one of `SIDE_FILES`."""
    return out.with_name(f"{out.stem}.{kind}{out.suffix}")


def skipped_file(out: Path) -> Path:
    """Where `predict --out preds.csv` lists the inputs it could not read: `preds.skipped.csv`, next to the
    predictions as the slide aggregates are."""
    return side_file(out, "skipped")


def write_skipped(out: Path, failed: Sequence[Tuple[str, str]]) -> Optional[Path]:
    """Write the unreadable inputs (input, reason) beside the predictions `out`, whole or not at all, and return the
    file; with none, remove such a file an earlier run left (it would name inputs this run read)."""
    path = skipped_file(Path(out))
    if not failed:
        path.unlink(missing_ok=True)
        return None
    if path.suffix == ".jsonl":
        text = "".join(json.dumps({"input": str(item), "reason": str(reason)}) + "\n" for item, reason in failed)
    else:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(["input", "reason"])
        writer.writerows((str(item), str(reason)) for item, reason in failed)
        text = buffer.getvalue()
    replace_text(path, text)
    return path
