"""Resuming an interrupted `predict`: what each finished chunk gave, kept beside the output until it is written.

A `predict --vlm` over a slide set runs for hours (the VLM writes every description); killed at 90% it started
again from the first image. Now every chunk's rows, unreadable inputs and description writers are appended to
`<out>.resume/journal.jsonl` as the chunk finishes (flushed and synced: a kill loses at most the chunk in flight,
and a line cut by the kill is dropped on reading). The same command again reads them back and predicts only the
inputs after them; the predictions file is then what one uninterrupted run writes, and the folder is removed.

The journal's first line is the job: the model (its URI and the `model_uuid` the URI resolved to, so a moved
alias is another job), the inputs in order, each shard set's manifest digest (a set rebuilt in place under the
same names is another job), each image file's and lone shard's path, size and mtime_ns (`files_digest`: an image
overwritten in place is another job), the descriptions file's digest, the VLM (by its weights' digest where
recorded: a copy of the same weights is the same VLM) and adapter, the split and the label-set rule. A journal
of another job is dropped with a warning naming what changed (its rows could not become this output), and the job
starts from the first input. The folder is held with a `FolderLock`: a second `predict` into the same output while
the first runs is refused, naming it, instead of both writing one file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.files import replace_text
from ..core.runlock import FolderLock
from ..data.text_writer import WEIGHTS_KEY

log = logging.getLogger(__package__)  # "[predict]" on the console

JOURNAL_FILE = "journal.jsonl"


def resume_folder(out: Path) -> Path:
    """Where the journal of the job writing `out` lives: `<out>.resume` beside it."""
    return Path(out).with_name(Path(out).name + ".resume")


def digest(texts: Sequence[str]) -> str:
    """sha256 of the texts in order (the inputs of a job)."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def files_digest(paths: Sequence[Path]) -> str:
    """sha256 of each file's path, size and mtime_ns, in order (what rsync and make compare: cheap, and a file
    overwritten in place between a kill and the rerun tells); a file gone or unreadable counts as such."""
    def stamp(path: Path) -> str:
        try:
            st = os.stat(path)
        except OSError:
            return f"{path}\0-"
        return f"{path}\0{st.st_size}\0{st.st_mtime_ns}"

    return digest([stamp(p) for p in paths])


def file_digest(path: Optional[Path]) -> Optional[str]:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def writer_job(writer: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The job's part of `writer` (`run.vlm_writer`): without the VLM's name when its weights' digest is recorded,
    so the same bytes under another name (a copied folder, a hub id vs its local copy) continue the job, as they
    continue a describe (`describe.resume_may_change`); other weights, adapter or settings still start over."""
    if not writer or not writer.get(WEIGHTS_KEY):
        return writer
    return {k: v for k, v in writer.items() if k != "model"}


class Done:
    """What the journal's chunks gave: `upto` inputs handled, their rows, unreadable inputs and, per good input,
    who wrote its description (for `text_writer_warnings`)."""

    def __init__(self) -> None:
        self.upto = 0
        self.rows: List[Dict[str, Any]] = []
        self.failed: List[Tuple[str, str]] = []
        self.writers: List[Dict[str, Any]] = []

    def add(self, record: Dict[str, Any]) -> None:
        self.upto = int(record["upto"])
        self.rows.extend(record["rows"])
        self.failed.extend((str(src), str(reason)) for src, reason in record["failed"])
        for writer, n in record["writers"]:
            self.writers.extend([{"written_by": writer}] * int(n))


class PredictJournal:
    """The resume folder of one output, locked for the life of the job (`lock` ... `finish` or `release`)."""

    def __init__(self, out: Path):
        self.folder = resume_folder(out)
        self.path = self.folder / JOURNAL_FILE
        self._lock = FolderLock(self.folder, "predict")

    def lock(self) -> "PredictJournal":
        self._lock.acquire()
        return self

    def resume(self, job: Dict[str, Any]) -> Done:
        """The chunks an earlier run of this `job` finished (none for a new job); the journal then belongs to
        `job` and `append` adds to it."""
        done, earlier = Done(), self._read()
        if earlier is not None:
            recorded, records, cut = earlier
            if recorded == job:
                for record in records:
                    done.add(record)
                if cut and records:  # later chunks must not follow the cut line
                    self._rewrite([{"job": job}, *records])
            else:
                changed = sorted(k for k in set(recorded) | set(job) if recorded.get(k) != job.get(k))
                log.warning("%s holds an interrupted predict of another job (changed: %s); starting from the first "
                            "input", self.folder, ", ".join(changed))
        if done.upto == 0:
            self._rewrite([{"job": job}])
        return done

    def append(self, upto: int, rows: List[Dict[str, Any]], failed: List[Tuple[str, str]],
               writers: List[Tuple[Any, int]]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"upto": upto, "rows": rows, "failed": failed, "writers": writers}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self) -> None:
        """The output is written: the journal is no longer needed. Removed while still held: removed after the
        release, the folder took the lock file of a job into the same output that started in between, and a third
        job then got a lock of its own beside it (two jobs writing one file)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self._lock.release()

    def release(self) -> None:
        """The job stopped before its output was written: keep the journal for the next run (a folder with no
        journal yet is removed, so a refused command leaves nothing behind; while held, as in `finish`)."""
        if not self.path.is_file():
            shutil.rmtree(self.folder, ignore_errors=True)
        self._lock.release()

    def _read(self) -> Optional[Tuple[Dict[str, Any], List[Dict[str, Any]], bool]]:
        """(job, finished chunks, whether a cut line followed them), or None without a journal."""
        if not self.path.is_file():
            return None
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:  # the line a kill cut short: that chunk is predicted again
                break
        if not records or "job" not in records[0]:
            return None
        return records[0]["job"], records[1:], len(records) < len(lines)

    def _rewrite(self, records: List[Dict[str, Any]]) -> None:
        """The journal as `records`, replaced whole (a kill leaves the old one or the new one)."""
        replace_text(self.path, "".join(json.dumps(r) + "\n" for r in records))
