"""`shards verify` passed ("ok") a manifest whose split-level `class_counts` were edited by hand (or left stale by a
hand-merged set), though training reads that table: the val split's classes decide whether `train.best_metric`
(AUROC, kappa) is defined, and the run's dataset lineage logs it. The split's table is now checked against its shard
entries (each checked against its samples), as a multi-label split's label_counts already were, and named with its
remedy."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.data.verify import verify_shards

from support.shards import make_shard_set


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_shard_set(tmp_path_factory.mktemp("set"), per_class=3, max_per_shard=4, val_fraction=0.34)


@pytest.mark.parametrize("edit", [{"UD": 7}, {"UD": 0, "PD": 0, "D": 0}, {"XX": 2}, None])
def test_a_hand_edited_split_class_table_is_a_problem_line_with_its_remedy(built, edit):
    original = (built / "manifest.json").read_text()
    manifest = json.loads(original)
    val = manifest["splits"]["val"]
    shards_counts = {c: sum(e["class_counts"].get(c, 0) for e in val["shards"]) for c in manifest["classes"]}
    assert val["class_counts"] == shards_counts and sum(shards_counts.values()) > 0
    val["class_counts"] = None if edit is None else {**val["class_counts"], **edit}
    (built / "manifest.json").write_text(json.dumps(manifest))
    try:
        problems = verify_shards(built, progress=False).problems
    finally:
        (built / "manifest.json").write_text(original)
    assert problems == [f"split val: class counts {val['class_counts']} differ from its shards' {shards_counts}; "
                        f"restore manifest.json or rebuild the shard set"]
    assert verify_shards(built, progress=False).problems == []
