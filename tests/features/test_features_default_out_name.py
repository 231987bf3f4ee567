"""`features extract` without `--out` names its folder after the shard set: `<shards>-features-<encoder>`, beside
the shard set, whatever spelling of the shard folder the user typed (`--shards .` from inside it, `x/..`)."""
from __future__ import annotations

import json

import pytest

from support.cli import run_cli


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("set"), per_class=2, max_per_shard=4, val_fraction=0.25)


@pytest.mark.parametrize("spelling", [".", "sub/.."])
def test_the_default_out_sits_beside_the_shard_set_whatever_its_spelling(shards, monkeypatch, spelling):
    # `--shards .` run from inside the shard folder wrote the features to a hidden `.-features-tiny` folder inside
    # the shard set itself (and `sub/..` to `sub/..-features-tiny`, i.e. again inside the shard set).
    (shards / "sub").mkdir(exist_ok=True)
    monkeypatch.chdir(shards)
    code, stdout, stderr = run_cli(["features", "extract", "--encoder", "tiny", "--shards", spelling,
                                    "--batch-size", "4", "data.loader.num_workers=0"])
    assert code == 0, stderr
    expected = shards.parent / "shards-features-tiny"
    assert json.loads(stdout[stdout.index("{"):])["num_features"] == 6
    assert (expected / "index.json").is_file()
    assert sorted(p.name for p in shards.iterdir() if "features" in p.name) == []
