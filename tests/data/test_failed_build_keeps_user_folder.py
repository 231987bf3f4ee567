"""A build that fails removes the output folder only when the job made it: an empty folder the user had made
for it (`mkdir out` before `shards build --out out`) stays, without the job's lock files; a folder the job made,
or one a killed job left holding only its lock files, goes."""
from __future__ import annotations

from support.shards import write_patch_folder

from mmlnb_dist.cli import main
from mmlnb_dist.core.runlock import HOLDER_FILE, LOCK_FILE


def _failing_build(src, out) -> int:
    """Every image unreadable is above any skip rate: the build fails after taking the output folder."""
    return main(["shards", "build", "--input", str(src), "--out", str(out), "--no-progress",
                 "data.build.max_skipped_rate=0.01"])


def _unreadable_patches(tmp_path):
    src = write_patch_folder(tmp_path / "src", per_class=2)
    for png in src.rglob("*.png"):
        png.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return src


def test_an_empty_folder_the_user_made_survives_a_failed_build(tmp_path, capsys):
    src = _unreadable_patches(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert _failing_build(src, out) == 2
    assert "unreadable" in capsys.readouterr().err
    assert out.is_dir() and list(out.iterdir()) == []


def test_a_folder_the_job_made_or_a_killed_job_left_goes(tmp_path, capsys):
    src = _unreadable_patches(tmp_path)
    made = tmp_path / "made"
    assert _failing_build(src, made) == 2 and not made.exists()
    left = tmp_path / "left"
    left.mkdir()
    (left / LOCK_FILE).write_text("")
    (left / HOLDER_FILE).write_text('{"command": "shards build", "pid": 1, "host": "gone", "started": 0}')
    assert _failing_build(src, left) == 2 and not left.exists()
