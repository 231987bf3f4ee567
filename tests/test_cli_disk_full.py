"""A full disk (ENOSPC, or a quota: EDQUOT) under any command is one clear line naming the file, not a traceback
from deep inside a library; the exit code is 1 (a failure, not a usage error)."""
from __future__ import annotations

import errno

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EDQUOT, "Disk quota exceeded")])
def test_a_full_disk_is_one_line_naming_the_file_and_what_to_do(tmp_path, monkeypatch, code, words):
    from mmlnb_dist.data import build

    shard = tmp_path / "out" / "train-000003.tar"

    def disk_fills(*args, **kwargs):
        raise OSError(code, words, str(shard))

    monkeypatch.setattr(build, "build_shards", disk_fills)
    from PIL import Image

    for label in ("UD", "PD", "D"):
        (tmp_path / "in" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "in" / label / "a.png")
    status, _, text = run_cli(["shards", "build", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                               "--classes", "UD,PD,D", "--no-progress"])
    assert status == 1, text
    assert text.startswith(f"mmlnb-dist shards: error: {words.lower()} writing {shard}"), text
    assert "Traceback" not in text and "Free space" in text and "run the same command again" in text, text
