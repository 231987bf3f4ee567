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
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, Optional

from filelock import FileLock, Timeout

from .errors import UserError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"


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


class FolderLock:
    """Exclusive, non-blocking lock on `folder` (created if missing). Not re-entrant: a second FolderLock on the
    same folder fails even in the same process, so exactly one layer (the recipe runner, a command) takes it."""

    def __init__(self, folder: Path, command: str):
        self.folder = Path(folder)
        self.command = command
        self._lock: Optional[FileLock] = None

    def refuse_if_held(self) -> None:
        """Raise `FolderInUseError` if a live job holds the folder; creates nothing (so a job can say "in use"
        before its config checks, which must not create the folder either)."""
        if not (self.folder / LOCK_FILE).is_file():
            return
        probe = FileLock(str(self.folder / LOCK_FILE), timeout=0)
        try:
            probe.acquire()
        except Timeout:
            raise self._in_use() from None
        probe.release()

    def _in_use(self) -> FolderInUseError:
        return FolderInUseError(f"{self.folder} is in use by {describe_holder(read_holder(self.folder))}; wait for "
                                f"it to finish, or write to another folder (another run.name / --out)")

    def acquire(self) -> "FolderLock":
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
        tmp = self.folder / (HOLDER_FILE + ".tmp")
        tmp.write_text(json.dumps(holder))
        tmp.replace(self.folder / HOLDER_FILE)
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
