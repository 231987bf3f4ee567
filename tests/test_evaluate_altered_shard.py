"""`evaluate` compares the shard files of the split it reads with their manifest first, as `train` does (the
pre-flight, `data.loader.preflight`): a shard edited in place after it was built (here a description rewritten
with the same length, so the tar keeps its size) was scored silently, its metrics taken for the set's."""
from __future__ import annotations

import tarfile

import pytest

from mmlnb_dist.cli import main

from support import clip, fusion


def _alter_in_place(shard) -> None:
    """Rewrite the first byte of the shard's first description: same size, other bytes."""
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".txt"))
        first = tar.extractfile(member).read(1)
    with open(shard, "r+b") as f:
        f.seek(member.offset_data)
        f.write(b"X" if first != b"X" else b"Y")


def _train(recipe: str, tmp_path) -> str:
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    if recipe == "fusion":
        shards = fusion.make_shards(tmp_path, n=45, size=32)
        cfg = fusion.tiny_config(shards, tmp_path / "runs", "ev", ["train.epochs=1", "data.loader.image_size=32"])
    else:
        shards = clip.caption_shards(tmp_path, n=48, size=32)
        cfg = clip.clip_config(shards, tmp_path / "runs", "train.epochs=1", name="ev")
    return run(recipe_class(recipe), cfg)["export_dir"]


@pytest.mark.parametrize("recipe", ["fusion", "clip"])
def test_evaluate_refuses_a_split_whose_shard_was_altered_in_place(tmp_path, capsys, recipe):
    export = _train(recipe, tmp_path)
    shards = tmp_path / "shards"
    val = sorted(shards.glob("val-*.tar"))[0]
    before = val.stat().st_size
    _alter_in_place(val)
    assert val.stat().st_size == before
    capsys.readouterr()
    code = main(["evaluate", "--export", export, "--split", "val", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and f"{val.name}: sha256 differs from the manifest" in err, (out, err)
    assert out == ""  # no metrics of the altered shard
