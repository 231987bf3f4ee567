"""Mutation-audit gaps of core.runlock: the holder record a job leaves and clears, a stale record replaced, release
twice, the in-use probe creating nothing, which reader records count as live (this host's dead pids dropped, other
hosts' and other users' kept), two readers of one process each keeping their own record, and a writer named as the
holder even when reader records of another host are lying about."""
from __future__ import annotations

import json
import os
import socket

import pytest

import mmlnb_dist.core.runlock as runlock
from mmlnb_dist.core.runlock import (HOLDER_FILE, LOCK_FILE, FolderInUseError, FolderLock, ReadLock, is_lock_file,
                                     live_readers, pid_alive, read_holder)

HERE = socket.gethostname()


def reader_record(folder, host, pid, name="x"):
    path = folder / f".lock.reader-{host}-{pid}-{name}.json"
    path.write_text(json.dumps({"command": "train", "pid": pid, "host": host, "started": 0}))
    return path


def test_the_holder_record_names_this_job_replaces_a_stale_one_and_goes_on_release(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / HOLDER_FILE).write_text(json.dumps({"command": "old", "pid": 999999999, "host": HERE}))
    lock = FolderLock(folder, "train").acquire()
    holder = read_holder(folder)
    assert holder["command"] == "train" and holder["pid"] == os.getpid() and holder["host"] == HERE
    lock.release()
    lock.release()  # a second release (an error path releasing again) is harmless
    assert read_holder(folder) is None and not lock.held
    with FolderLock(folder, "again"):  # and the folder is free
        pass


def test_asking_whether_a_folder_is_in_use_creates_nothing_and_keeps_it_free(tmp_path):
    missing = tmp_path / "not-yet"
    FolderLock(missing, "train").refuse_if_held()
    assert not missing.exists()
    folder = tmp_path / "run"
    with FolderLock(folder, "train"):
        pass
    FolderLock(folder, "train").refuse_if_held()  # a lock file but no holder: free
    with FolderLock(folder, "train"):  # the probe let go of the lock
        with pytest.raises(FolderInUseError, match=f"{folder} is in use by `train`"):
            FolderLock(folder, "other").refuse_if_held()


def test_a_writer_is_named_as_the_holder_even_beside_reader_records_of_another_host(tmp_path):
    """Reader records of another host cannot be checked for liveness and stay; while a writer holds the folder, the
    refusal must name that writer, not those records."""
    folder = tmp_path / "shards"
    folder.mkdir()
    reader_record(folder, "other-host", 4242)
    with FolderLock(folder, "shards build"):
        with pytest.raises(FolderInUseError, match="is in use by `shards build`"):
            FolderLock(folder, "tile").acquire()


def test_which_reader_records_count_as_live(tmp_path, monkeypatch):
    folder = tmp_path / "shards"
    folder.mkdir()
    elsewhere = reader_record(folder, "other-host", 999999999)  # another host's pid: cannot be judged here
    no_pid = reader_record(folder, HERE, 0, "nopid")  # a record without a process
    alive = reader_record(folder, HERE, os.getpid(), "me")
    assert sorted(r["host"] for r in live_readers(folder)) == sorted(["other-host", HERE])
    assert elsewhere.exists() and not no_pid.exists() and alive.exists()

    def not_permitted(pid, sig):  # a process of another user
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(runlock.os, "kill", not_permitted)
    assert pid_alive(12345) and not pid_alive(0)


def test_two_readers_in_one_process_keep_their_own_records(tmp_path):
    """Releasing one reader must not remove the record of another still reading (the writer's refusal names it)."""
    folder = tmp_path / "shards"
    folder.mkdir()
    first = ReadLock(folder, "evaluate").acquire()
    with ReadLock(folder, "train"):
        first.release()
        with pytest.raises(FolderInUseError, match="being read by `train`"):
            FolderLock(folder, "shards build").acquire()
    assert not list(folder.glob(".lock.reader-*"))


def test_lock_files_are_told_apart_from_outputs():
    assert is_lock_file(LOCK_FILE) and is_lock_file(HOLDER_FILE)
    assert is_lock_file(f".lock.reader-{HERE}-12-abc.json") and not is_lock_file("manifest.json")
