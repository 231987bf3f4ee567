"""Folders a generator writes (`data synth`, its multi-label form, `slides synth`): a generator writes into a folder
only when everything in it is its own earlier output. A user's patch folder (class folders and a labels.csv, the
layout the patch generator writes) would otherwise get its labels.csv and descriptions replaced and synthetic
patches mixed in with the real ones."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterable, Iterator, Union

from ..core.errors import UserError
from ..core.runlock import FolderLock
from .shardset import ShardError


def refuse_foreign_files(out_dir: Union[str, Path], own: "re.Pattern[str]", what: str, writes: str) -> None:
    """Raise a `UserError` before anything is written when `out_dir` holds a file whose path (relative, `/`) does
    not match `own`, the generator's own files; hidden files (`.DS_Store`) are not counted. `what` names the
    generator, `writes` what it writes."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file: {what} writes a folder ({writes}); give a new or empty folder")
    if not out_dir.is_dir():
        return
    foreign = sorted(rel for rel in (p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
                     if not own.fullmatch(rel) and not any(part.startswith(".") for part in rel.split("/")))
    if foreign:
        shown = ", ".join(foreign[:4]) + (f", ... ({len(foreign)} in all)" if len(foreign) > 4 else "")
        raise UserError(f"{out_dir} holds files {what} did not write ({shown}); it writes {writes}, which would "
                        f"replace or mix with them: give a new or empty folder")


def remove_stale_files(out_dir: Union[str, Path], own: "re.Pattern[str]", keep: Iterable[str]) -> None:
    """Delete the generator's own files in `out_dir` (paths matching `own`) that this run does not write (`keep`,
    relative paths): an earlier run with more patches or slides left them, and whatever reads the folder next
    would take them for this run's (`slides tile` reported the extra slides as unlabelled)."""
    out_dir, keep = Path(out_dir), set(keep)
    if not out_dir.is_dir():
        return
    for p in out_dir.rglob("*"):
        rel = p.relative_to(out_dir).as_posix()
        if p.is_file() and own.fullmatch(rel) and rel not in keep:
            p.unlink()


@contextlib.contextmanager
def generator_output(out_dir: Union[str, Path], own: "re.Pattern[str]", what: str, writes: str) -> Iterator[None]:
    """`refuse_foreign_files`, then the folder's `FolderLock` for the whole generation: a second generator (or a
    `data synth` beside a pipeline's synth stage) into the same folder stops at once (`FolderInUseError` naming the
    holder) instead of writing its patches among the first one's under the other's labels.csv."""
    refuse_foreign_files(out_dir, own, what, writes)
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # (an OSError here: --out below a file, said as before)
    with FolderLock(Path(out_dir), what):
        # Marked incomplete until the job returns: a generator stopped part-way (Ctrl-C, a killed job) left class
        # folders without labels.csv (written last), or an earlier run's labels.csv over half-rewritten patches,
        # and a build read them as a finished set (`refuse_incomplete` refuses it; a rerun completes it).
        marker = Path(out_dir) / INCOMPLETE_MARKER
        marker.write_text(f"{what} started writing this folder and has not finished\n")
        yield
        marker.unlink()


INCOMPLETE_MARKER = ".generating"
"""The file a generator keeps in its output folder while it writes it (hidden: never taken for an input)."""


def refuse_incomplete(folder: Union[str, Path]) -> None:
    """Raise a `ShardError` (a build input error) when `folder` is a generator's output it has not finished
    (`INCOMPLETE_MARKER`)."""
    marker = Path(folder) / INCOMPLETE_MARKER
    if marker.is_file():
        what = marker.read_text(errors="replace").split(" started", 1)[0].strip() or "a generator"
        raise ShardError(f"{folder}: a `{what}` into it did not finish (stopped part-way: its patches are incomplete "
                        f"and labels.csv missing or an earlier run's); rerun the same `{what}` to complete it, or "
                        f"give another folder")
