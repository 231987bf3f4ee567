"""`core.files.replace_text` is the one way a record (stage records, checkpoint pointers, configs, journals,
indexes) is replaced whole: two writers of one record never rename each other's half-written file, the data reaches
the disk before the rename does, and a failed write leaves nothing behind."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from mmlnb_dist.core import files
from mmlnb_dist.core.files import replace_text


def test_two_writers_of_one_record_never_tear_it_or_fail(tmp_path):
    """Concurrent writers (trials sharing a cache, a rank and a helper thread) each replace the record whole. With one
    fixed temporary name, one writer renamed the other's half-written file (a torn record) or found its temporary
    file gone (FileNotFoundError)."""
    record = tmp_path / "index.json"
    texts = ["a" * 200_000, "b" * 300_000]
    errors, seen = [], set()

    def write(text):
        try:
            for _ in range(60):
                replace_text(record, text)
        except Exception as err:  # noqa: BLE001 - the test reports any failure
            errors.append(err)

    writers = [threading.Thread(target=write, args=(t,)) for t in texts]
    for w in writers:
        w.start()
    while any(w.is_alive() for w in writers):
        if record.exists():
            seen.add(record.read_text())
    for w in writers:
        w.join()
    seen.add(record.read_text())
    assert errors == []
    assert seen <= set(texts)
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


def test_the_data_is_on_disk_before_the_rename(tmp_path, monkeypatch):
    """Without an fsync before the rename, a power cut can leave an empty file under the record's name (the rename
    reached the disk, the data did not)."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    replace_text(tmp_path / "latest", "epoch-3")
    assert (tmp_path / "latest").read_text() == "epoch-3"
    assert "replace" in events and "fsync" in events[:events.index("replace")]


def test_a_failed_write_leaves_the_old_record_and_no_temporary_file(tmp_path):
    record = tmp_path / "best.json"
    replace_text(record, "old")
    with pytest.raises(UnicodeEncodeError):
        replace_text(record, "\ud800")
    assert record.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


def test_a_record_keeps_the_user_s_umask(tmp_path):
    """Records are read by other users of a shared run folder: the temporary file is not made private (0600)."""
    old = os.umask(0o022)
    try:
        replace_text(tmp_path / "config.yaml", "x: 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o644
