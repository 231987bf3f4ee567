"""Mutation-audit guards of the core file helpers the pipeline's records rest on (`mmlnb_dist.core.files`): a record
replaced whole or not at all, a file's digest over all its blocks, a user's CSV read with Excel's byte-order mark
and separators; and of the progress bars' interval (`mmlnb_dist.core.progress`)."""
from __future__ import annotations

import hashlib
import io

import pytest

from mmlnb_dist.core.files import dict_reader, open_csv, replace_text, sha256_file
from mmlnb_dist.core.progress import PROGRESS_INTERVAL_ENV, progress_bar, redraw_interval


def test_a_replace_that_fails_leaves_the_old_file_whole(tmp_path):
    """The text goes to a temporary file first: a failed write (here text UTF-8 cannot encode) never truncates the
    file readers rely on, and a good one leaves no temporary file behind."""
    record = tmp_path / "deep" / "er" / ".out.stage.json"
    replace_text(record, '{"status": "done"}')  # (its folder made)
    with pytest.raises(UnicodeEncodeError):
        replace_text(record, '{"status": "\ud800"}')
    assert record.read_text() == '{"status": "done"}'
    replace_text(record, '{"status": "running"}')
    assert record.read_text() == '{"status": "running"}'
    assert sorted(p.name for p in record.parent.iterdir()) == [".out.stage.json"]


def test_a_file_s_digest_covers_every_block(tmp_path):
    path = tmp_path / "shard.tar"
    data = bytes(range(256)) * 5 + b"tail"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_file(path, block_size=7) == expected  # many blocks, the last one short
    path.write_bytes(data[:-1] + b"T")  # a change in the last block only
    assert sha256_file(path, block_size=7) != expected


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_a_user_s_csv_reads_with_its_own_separator_and_without_excel_s_byte_order_mark(tmp_path, sep):
    path = tmp_path / "labels.csv"
    path.write_text("\ufeff" + sep.join(["path", "label", "note"]) + "\n" + sep.join(["a.png", "UD", "x,y"
                                                                                    if sep != "," else "xy"]) + "\n",
                    encoding="utf-8")
    with open_csv(path) as handle:
        rows = list(dict_reader(handle))
    assert [r["path"] for r in rows] == ["a.png"] and rows[0]["label"] == "UD"


def test_a_negative_progress_interval_is_refused(monkeypatch):
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "-1")
    with pytest.raises(ValueError, match="must be at least 0"):
        redraw_interval(io.StringIO())
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "2.5")
    assert redraw_interval(io.StringIO()) == 2.5


@pytest.mark.parametrize("value", ["nan", "NaN", "-inf"])
def test_a_progress_interval_that_is_no_number_of_seconds_is_refused(monkeypatch, value):
    """NaN passed the "at least 0" check (every comparison with NaN is false) and became tqdm's mininterval: the
    bar never redrew, so a long job's log showed no progress at all."""
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, value)
    with pytest.raises(ValueError, match=f"{PROGRESS_INTERVAL_ENV}='{value}' must be"):
        redraw_interval(io.StringIO())


def test_a_bar_kept_off_on_another_rank_writes_nothing_even_when_it_would_redraw_every_step(monkeypatch):
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "0")
    log = io.StringIO()
    bar = progress_bar(total=3, file=log, enabled=False, desc="describe")
    for _ in range(3):
        bar.update(1)
        bar.set_postfix(loss="0.1")
    bar.close()
    assert log.getvalue() == ""
