"""`describe --out` inside the `--shards` folder: the descriptions landed among the input shard set's files,
where `shards verify` and the manifest reader met a folder they do not know and a rebuild of the input would
delete them. Refused before any work, naming both folders."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.vlm import ROOT, make_pairs

PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("describe_inside") / "pairs", n=6)


@pytest.mark.parametrize("inside", ["described", "a/b/described"])
def test_an_out_inside_the_input_shard_set_is_refused_naming_both(pairs, tmp_path, inside):
    before = sorted(str(p.relative_to(pairs)) for p in pairs.rglob("*"))
    out = pairs / inside
    code, _, err = run_cli(["describe", "--config", PROFILE, "--vlm", "tiny", "--shards", str(pairs),
                            "--out", str(out), f"run.output_dir={tmp_path / 'runs'}",
                            f"vlm.cache_dir={tmp_path / 'cache'}", "vlm.tiny_vision=random",
                            "vlm.generation.max_new_tokens=2", "tracking.backends=[stdout]",
                            "data.loader.num_workers=0"])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--out {out}" in last and f"--shards {pairs}" in last and "inside" in last, last
    assert sorted(str(p.relative_to(pairs)) for p in pairs.rglob("*")) == before
    assert not (tmp_path / "cache").exists()  # refused before the model was looked up


def test_an_out_holding_the_input_shard_set_is_refused_even_with_restart(pairs, tmp_path):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.describe import check_out_folder

    with pytest.raises(UserError, match=r"holds the input shard set --shards") as err:
        check_out_folder(pairs.parent, ShardSet.open(pairs), restart=True)
    assert f"--out {pairs.parent}" in str(err.value)
    check_out_folder(pairs.parent / "pairs-described", ShardSet.open(pairs))  # beside it: accepted
