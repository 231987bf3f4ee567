"""A shard set's manifest.json or one of its tar files given where the set's folder is asked for (`shards verify
shards/demo/manifest.json`, `data.shards=...`) was reported as "shard folder not found" though it is right there;
the message now says it is a file and names the folder to give."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.shardset import ShardError, ShardSet

from support.cli import run_cli
from support.shards import write_patch_folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("set")
    data = write_patch_folder(root / "data", per_class=2)
    assert run_cli(["shards", "build", "--input", str(data), "--out", str(root / "shards"), "--no-progress",
                    "data.build.val_fraction=0"])[0] == 0
    return root / "shards"


@pytest.mark.parametrize("name", ["manifest.json", "train-000000.tar"])
def test_a_file_of_the_set_names_the_folder_to_give(shards, name):
    with pytest.raises(ShardError, match=rf"{name} is a file, not a shard set folder: give the folder that holds "
                                         rf"it, .*shards$"):
        ShardSet.open(shards / name)
    code, _, err = run_cli(["shards", "verify", str(shards / name), "--no-progress"])
    assert code == 2 and "is a file, not a shard set folder" in err


def test_another_file_is_said_to_be_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ShardError, match=r"notes\.txt is a file, not a shard set folder$"):
        ShardSet.open(tmp_path / "notes.txt")
