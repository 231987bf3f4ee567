"""`describe --shards .` (run from inside the shard set) with no --out: the default output `<shards>-described`
was `.-described`, a hidden folder inside the input shard set itself (and `--shards ..` gave `..-described` in the
current folder). The default is now named after the set's folder and lies beside it."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import run_cli
from support.vlm import ROOT, make_pairs

PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("describe_dot") / "pairs", n=6, per_shard=6)


def test_the_default_out_of_shards_dot_lies_beside_the_set(pairs, tmp_path, monkeypatch):
    from mmlnb_dist.data.shardset import ShardSet

    before = sorted(p.name for p in pairs.iterdir())
    monkeypatch.chdir(pairs)
    code, _, err = run_cli(["describe", "--config", PROFILE, "--vlm", "tiny", "--shards", ".",
                            f"run.output_dir={tmp_path / 'runs'}", f"vlm.cache_dir={tmp_path / 'cache'}",
                            "vlm.tiny_vision=random", "vlm.generation.max_new_tokens=1", "vlm.min_pixels=3136",
                            "vlm.max_pixels=3136", "tracking.backends=[stdout]", "data.loader.num_workers=0"])
    assert code == 0, err[-2000:]
    assert sorted(p.name for p in pairs.iterdir()) == before  # nothing written inside the input
    out = pairs.parent / "pairs-described"
    assert ShardSet.open(out).digest and sorted(p.name for p in out.glob("*.tar")) == \
        sorted(p.name for p in pairs.glob("*.tar"))


def test_the_default_out_of_shards_dotdot_is_named_after_the_set(pairs, monkeypatch):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.describe import default_out

    monkeypatch.chdir(pairs.parent)
    assert default_out(ShardSet.open("pairs")) == Path("pairs-described")  # as given
    nested = pairs / "sub"
    nested.mkdir()
    try:
        monkeypatch.chdir(nested)
        assert default_out(ShardSet.open("..")) == pairs.resolve().parent / "pairs-described"
    finally:
        monkeypatch.chdir(pairs.parent)
        nested.rmdir()
