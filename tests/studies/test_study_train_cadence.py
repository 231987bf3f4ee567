"""A study rerun that changes only how often a row's run logs or checkpoints (or another setting its resume
accepts and that changes no weight: `core.recipe.TRAIN_CADENCE`) retrained every finished row: the row's
fingerprint held those settings. It now leaves them out, as the pipeline's train stage does, and a row recorded
under the fingerprint that held them is kept (no retraining on upgrade)."""
from __future__ import annotations

import pytest

from support.clip import clip_config
from support.shards import make_shard_set


def _run_cfg(tmp_path, shards, *extra, name="cad"):
    from mmlnb_dist.studies import row_config

    cfg = clip_config(shards, tmp_path / "runs", *extra, name=name)
    return row_config(cfg, "concat", [], 0, tmp_path / "runs" / name)


@pytest.mark.parametrize("folder", [False, True])
def test_a_rows_fingerprint_ignores_logging_and_checkpoint_cadence(tmp_path, folder):
    from mmlnb_dist.studies import job_fingerprint

    shards = make_shard_set(tmp_path / "a") if folder else tmp_path / "no-shards"
    base = job_fingerprint(_run_cfg(tmp_path, shards))
    for setting in ("train.log_every=7", "train.keep_checkpoints=5", "train.checkpoint_every_steps=3",
                    "data.loader.preflight=off", "data.loader.max_bad_sample_rate=0.2"):
        assert job_fingerprint(_run_cfg(tmp_path, shards, setting)) == base, setting
    assert job_fingerprint(_run_cfg(tmp_path, shards, "train.lr=0.123")) != base  # a result setting still counts


def test_a_row_recorded_with_the_cadence_in_its_fingerprint_is_kept(tmp_path):
    from mmlnb_dist.pipeline.stages import fingerprint, stage_file
    from mmlnb_dist.studies import job_fingerprint
    from mmlnb_dist.studies.fingerprints import _result_settings

    shards = make_shard_set(tmp_path / "a")
    run_cfg = _run_cfg(tmp_path, shards, name="old")
    settings = _result_settings(run_cfg)
    from mmlnb_dist.data.shardset import ShardSet
    old = fingerprint("study-run", {**settings, "data": {**settings["data"],
                                                           "shards": ShardSet.open(shards).digest}})
    assert job_fingerprint(run_cfg) != old
    run_cfg.run.dir.mkdir(parents=True)
    stage_file(run_cfg.run.dir).write_text(f'{{"fingerprint": "{old}", "status": "done"}}')
    assert job_fingerprint(run_cfg) == old
