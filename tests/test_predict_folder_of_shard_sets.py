"""A folder that holds shard sets (`shards/`, the parent of the `shards/NAME` a pipeline writes) but no images was
reported as "folder holds no images", as if it were empty: now the shard sets in it are named, to be given
themselves (predict reads a shard set given as its folder, with its manifest.json)."""
from __future__ import annotations

from mmlnb_dist.predict.inputs import collect_inputs


def test_a_folder_of_shard_sets_names_them(tmp_path):
    for name in ("ds1", "ds2"):
        (tmp_path / "shards" / name).mkdir(parents=True)
        (tmp_path / "shards" / name / "manifest.json").write_text("{}")
        (tmp_path / "shards" / name / "train-000000.tar").write_bytes(b"")
    items, failed = collect_inputs([tmp_path / "shards"])
    assert items == [] and len(failed) == 1, failed
    reason = failed[0][1]
    assert "2 shard set" in reason and str(tmp_path / "shards" / "ds1") in reason, reason


def test_an_empty_folder_is_still_told_it_holds_no_images(tmp_path):
    (tmp_path / "empty").mkdir()
    assert collect_inputs([tmp_path / "empty"])[1] == [(str(tmp_path / "empty"), "folder holds no images")]
