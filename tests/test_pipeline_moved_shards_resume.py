"""An interrupted train stage whose shard set moved since: the pipeline started it again "because the recipe
refuses a resume on a changed path", but recipes now resume on a moved set with the same manifest digest in every
split (`core.recipe.moved_data`). The stage resumes such a run; a set not known to be the same (no recorded
digests, or others) still starts again."""
from __future__ import annotations

import json
import shutil

import yaml

from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking.lineage import record_datasets
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.pipeline import steps
from mmlnb_dist.pipeline.stages import StageResult, stage_file
from support.shards import make_shard_set


def _interrupted_on(tmp_path, digest_change=False):
    """A train stage stopped while reading the shard set built under tmp_path, which then moved; returns
    (fingerprint it ran under, the fingerprint planned now)."""
    shards = make_shard_set(tmp_path, per_class=3, val_fraction=0.34)
    specs = ShardSet.open(shards).dataset_specs()
    if digest_change:
        specs = [{**s, "profile": {**s["profile"], "manifest_sha256": "0" * 64}} for s in specs]
    moved = tmp_path / "moved" / "shards"
    moved.parent.mkdir()
    shutil.move(str(shards), str(moved))
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]"])
    described = StageResult("describe", moved, "digest-1", True, 0.0, {}, status="skipped")
    planned = steps.plan_train(cfg, described)
    planned.output.mkdir(parents=True)
    (planned.output / "config.yaml").write_text(yaml.safe_dump({"data": {"shards": str(shards)}}))
    record_datasets(planned.output, "train", specs)
    stage_file(planned.output).write_text(json.dumps({"fingerprint": planned.fingerprint, "status": "running"}))
    return planned.fingerprint, steps.plan_train(cfg, described).fingerprint


def test_an_interrupted_training_whose_shards_moved_unchanged_resumes(tmp_path):
    ran, now = _interrupted_on(tmp_path)
    assert now == ran  # the same stage: resumed, not started again


def test_an_interrupted_training_on_a_set_recorded_with_other_digests_starts_again(tmp_path):
    ran, now = _interrupted_on(tmp_path, digest_change=True)
    assert now != ran
