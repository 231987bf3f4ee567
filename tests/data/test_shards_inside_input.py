"""`shards build --input data --out data/shards`: the first build worked, then every rebuild stopped with "unknown
label folder 'shards'", the shard set now being a subfolder of the class-folder input. A subfolder that is a shard
set (its manifest, or a stopped build's marker, partial folder or lock) is no class folder: it is skipped, with a
word, and the rebuild gives the same shards. Files of a class folder that are not images (a .jp2 patch, a note)
were left out silently; they are named in a warning."""
from __future__ import annotations

import hashlib

from mmlnb_dist.data.collect import collect_samples

from support.cli import run_cli
from support.shards import CLASSES, write_patch_folder


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tar"))}


def test_a_shard_set_inside_the_input_folder_is_not_read_as_a_class(tmp_path, caplog):
    data = write_patch_folder(tmp_path / "data", per_class=4)
    args = ["shards", "build", "--input", str(data), "--out", str(data / "shards"), "--no-progress",
            "data.build.val_fraction=0.25"]
    assert run_cli(args)[0] == 0
    first = _digest(data / "shards")
    code, _, err = run_cli(args)
    assert code == 0, err
    assert _digest(data / "shards") == first
    assert "not a class folder" in err + caplog.text, err


def test_a_stopped_builds_folder_inside_the_input_is_skipped(tmp_path):
    data = write_patch_folder(tmp_path / "data", per_class=2)
    (data / "out" / ".partial-123").mkdir(parents=True)  # a build stopped before its first shard set
    (data / "out" / ".partial-123" / "train-000000.tar").write_bytes(b"")
    samples = collect_samples(data, CLASSES)
    assert sorted({s.label for s in samples}) == sorted(CLASSES) and len(samples) == 6


def test_files_of_a_class_folder_that_are_not_images_are_named(tmp_path, caplog):
    import logging

    data = write_patch_folder(tmp_path / "data", per_class=2)
    (data / "UD" / "case 7.jp2").write_bytes(b"jpeg 2000")
    (data / "UD" / "notes.txt").write_text("x")
    (data / "PD" / ".DS_Store").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.collect"):
        samples = collect_samples(data, CLASSES)
    assert len(samples) == 6
    warned = [r.getMessage() for r in caplog.records if "not read" in r.getMessage()]
    assert len(warned) == 1 and "2 files" in warned[0] and "UD/case 7.jp2, UD/notes.txt" in warned[0], warned
