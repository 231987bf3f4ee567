"""One job per output folder: an exclusive lock held for the whole life of a job.

Two `train` commands pointed at one run folder would delete each other's checkpoints and report each other's
metrics; two `describe` runs into one output would interleave their shards. Every command that writes an output
folder (training, VLM fine-tuning, describe, shard builds, slide tiling) holds a `FolderLock` on it:

    with FolderLock(run_dir, "train"):
        ...

The lock is `filelock.FileLock` (an OS `flock` on `<folder>/.lock`): the kernel releases it when the process
exits in any way, SIGKILL included, so a lock left by a killed job is never mistaken for a live one. Beside it,
`<folder>/.lock.json` names the holder (command, pid, host, start time) so that the second job's error can say
who has the folder. A holder file whose lock is free is a stale record from a killed job and is replaced.
Needs a filesystem with working `flock` (local disks, NFSv4, Lustre with flock enabled).

Jobs that read a folder for a long time (training reads its shard set every epoch) hold a `ReadLock`: a shared
`flock` on the same file, which any number of readers hold together and which keeps writers out (a rebuild of
the shard set under a running training would mix two splits in one run). Each reader leaves a record
`.lock.reader-<host>-<pid>.json`, so a refused writer can name who reads. A folder the reader cannot write (a
read-only dataset) is read without a lock.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from filelock import FileLock, Timeout

from .errors import UserError
from .files import refuse_file_in_the_way, replace_text

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"
READER_PREFIX = ".lock.reader-"


def is_lock_file(name: str) -> bool:
    """Whether a folder entry is one of the locks' own files (never a job's output)."""
    return name in (LOCK_FILE, HOLDER_FILE) or name.startswith(READER_PREFIX)


class FolderInUseError(UserError):
    """Another live job holds the folder."""


def read_holder(folder: Path) -> Optional[Dict[str, Any]]:
    """Who took the folder last (a live holder if the lock is held, else a stale record); None if unknown."""
    path = Path(folder) / HOLDER_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe_holder(holder: Optional[Dict[str, Any]]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"`{holder.get('command', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since})"


STUDY_MARKERS = ("study.log", "table.json", "study.json")
"""Files `ablate` leaves in its study folder (<run.output_dir>/<run.name>-study): its log, table, MLflow state."""
SEARCH_MARKER = "search.json"
"""The file each `tune` search keeps in its folder <tune.storage_path>/<tune.name>."""


def refuse_other_jobs_folder(folder: Path, command: str) -> None:
    """Refuse `folder` when it holds another kind of job than a run: a study (`train run.name=<x>-study` put a
    run's files among the study's rows and table) or the storage of searches (`train run.name=tune` at the
    default <run.output_dir>/tune). A run's own folder (its config.yaml) is its own, whatever else lies there."""
    if not folder.is_dir() or (folder / "config.yaml").is_file():
        return
    study = [m for m in STUDY_MARKERS if (folder / m).is_file()]
    if study:
        raise UserError(f"{command}: {folder} holds an ablate study (its {', '.join(study)}), not a run: give this "
                        f"job another run.name (or output folder), or move the study away")
    searches = sorted(p.parent.name for p in folder.glob(f"*/{SEARCH_MARKER}"))
    if searches:
        raise UserError(f"{command}: {folder} holds tune searches ({', '.join(searches[:5])}: the storage of "
                        f"tune.storage_path, else <run.output_dir>/tune), not a run: give this job another run.name "
                        f"(or output folder)")


class FolderLock:
    """Exclusive, non-blocking lock on `folder` (created if missing). Not re-entrant: a second FolderLock on the
    same folder fails even in the same process, so exactly one layer (the recipe runner, a command) takes it."""

    def __init__(self, folder: Path, command: str, study: bool = False):
        self.folder = Path(folder)
        self.command = command
        self.study = study
        """The folder is the study's that takes it (`ablate`): its study files are its own, not another job's."""
        self._lock: Optional[FileLock] = None
        self.found_empty = False
        """Whether `folder` existed and was empty when the lock was taken (made by the user for the job: a job
        that fails leaves it, where it removes a folder it made)."""

    def refuse_if_held(self) -> None:
        """Raise `FolderInUseError` if a live job holds the folder; creates nothing (so a job can say "in use"
        before its config checks, which must not create the folder either). A file where the folder would be is
        a `UserError` naming it (every recipe's run folder; it was a NotADirectoryError traceback)."""
        refuse_file_in_the_way(self.folder, f"{self.command}: its folder")
        self._refuse_other_jobs()
        if not (self.folder / LOCK_FILE).is_file():
            return
        probe = FileLock(str(self.folder / LOCK_FILE), timeout=0)
        try:
            probe.acquire()
        except Timeout:
            raise self._in_use() from None
        probe.release()

    def _refuse_other_jobs(self) -> None:
        if not self.study:  # a study's own files (`study.json`, `study.log`) are no other job's
            refuse_other_jobs_folder(self.folder, self.command)

    def _in_use(self) -> FolderInUseError:
        readers = live_readers(self.folder) if _shared_free(self.folder) else []
        if readers:  # jobs that read the folder (training on a shard set) hold it, not a writer
            return FolderInUseError(f"{self.folder} is being read by {'; '.join(map(describe_holder, readers))}; "
                                    f"writing it now would change the data under that job: wait for it to finish, "
                                    f"or write to another folder")
        return FolderInUseError(f"{self.folder} is in use by {describe_holder(read_holder(self.folder))}; wait for "
                                f"it to finish, or write to another folder (another run.name / --out)")

    def acquire(self) -> "FolderLock":
        refuse_file_in_the_way(self.folder, f"{self.command}: its folder")
        self._refuse_other_jobs()  # (also here: some jobs take the lock directly)
        self.found_empty = self.folder.is_dir() and not any(self.folder.iterdir())
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder / LOCK_FILE), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise self._in_use() from None
        stale = read_holder(self.folder)
        if stale and stale.get("pid") != os.getpid():
            log.info("%s: taking over from %s, which ended without releasing it", self.folder, describe_holder(stale))
        holder = {"command": self.command, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        replace_text(self.folder / HOLDER_FILE, json.dumps(holder))
        self._lock = lock
        return self

    def release(self) -> None:
        if self._lock is None:
            return
        lock, self._lock = self._lock, None
        holder = read_holder(self.folder)
        if holder and holder.get("pid") == os.getpid():
            (self.folder / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()

    @property
    def held(self) -> bool:
        return self._lock is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _shared_free(folder: Path) -> bool:
    """Whether a shared lock on the folder can be had now (only readers, if anyone, hold it)."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # (closing drops the probe's lock)


def live_readers(folder: Path) -> List[Dict[str, Any]]:
    """The reader records of `folder`, without those of dead processes on this host."""
    here, found = socket.gethostname(), []
    for path in sorted(Path(folder).glob(READER_PREFIX + "*.json")):
        try:
            record = json.loads(path.read_text())
            pid = int(record.get("pid", 0))
        except (OSError, ValueError, TypeError, AttributeError):  # torn, or not a record: nobody to name
            continue
        if record.get("host") == here and not pid_alive(pid):
            path.unlink(missing_ok=True)
            continue
        found.append(record)
    return found


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (one owned by another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ReadLock:
    """A shared lock on `folder` for a job that reads it: writers (`FolderLock`) are refused while it is held,
    other readers are not. A folder being written refuses the reader (`FolderInUseError`, naming the writer). A
    missing folder, or one the reader may not write where no lock file exists yet, is read without a lock."""

    def __init__(self, folder: Path, command: str):
        self.folder = Path(folder)
        self.command = command
        self._fd: Optional[int] = None
        self._record: Optional[Path] = None

    def acquire(self) -> "ReadLock":
        path = self.folder / LOCK_FILE
        if not self.folder.is_dir():
            return self  # the job's own checks say it is missing
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if os.access(self.folder, os.W_OK) \
                else os.open(path, os.O_RDONLY)
        except OSError:
            log.debug("%s: read without a lock (no lock file, and the folder is read-only)", self.folder)
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FolderInUseError(f"{self.folder} is being written by {describe_holder(read_holder(self.folder))}; "
                                   f"wait for it to finish before reading it") from None
        self._fd = fd
        live_readers(self.folder)  # (drops the records of readers on this host that were killed)
        record = {"command": self.command, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        path = self.folder / f"{READER_PREFIX}{record['host']}-{record['pid']}-{id(self):x}.json"
        try:
            path.write_text(json.dumps(record))
            self._record = path
        except OSError:  # a read-only folder: the lock still keeps writers out, unnamed
            pass
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self._record is not None:
            self._record.unlink(missing_ok=True)
            self._record = None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> "ReadLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
