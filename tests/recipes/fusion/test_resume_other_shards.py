"""A resumed run reads the shard sets it was trained on. The config names `data.shards` by path, so a set rebuilt
at the same path between the kill and the resume (another seed, other slides) passed the config check: the rest of
the run trained on other patches, the best checkpoint was picked over two validation sets, and `datasets.json`
was overwritten with the new set (the record of what the first epochs read was lost). It is refused now, before
any checkpoint is loaded, naming the split and both manifests; a set moved elsewhere unchanged still resumes."""
from __future__ import annotations

import json
import shutil

import pytest

from support.fusion import make_shards, tiny_config

ONE_PHASE = ["fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1",
             "fusion.curriculum.phases=[{start_epoch: 0}]"]


def test_resuming_on_a_shard_set_rebuilt_at_the_same_path_is_refused(tmp_path):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path / "a", n=48, size=32)
    run(FusionRecipe, tiny_config(shards, tmp_path / "runs", "r", ["train.epochs=1", *ONE_PHASE]))
    run_dir = tmp_path / "runs" / "r"
    recorded = (run_dir / "datasets.json").read_text()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())

    shutil.rmtree(shards)
    shutil.copytree(make_shards(tmp_path / "b", n=48, size=32, seed=1), shards)  # rebuilt in place: other patches
    resumed = tiny_config(shards, tmp_path / "runs", "r", ["train.epochs=2", "run.resume=true", *ONE_PHASE])
    with pytest.raises(UserError, match=r"(?s)trained on other shards than data\.shards holds now.*"
                                               r"train: trained on .*shards \(manifest [0-9a-f]{12}\), now"):
        run(FusionRecipe, resumed)
    assert (run_dir / "datasets.json").read_text() == recorded  # what the first epoch read is still on record
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == checkpoints


def test_a_moved_shard_set_and_a_run_without_digests_resume(tmp_path):
    from mmlnb_dist.core.tracking.lineage import check_resumed_datasets, record_datasets
    from mmlnb_dist.data.shardset import ShardSet

    specs = ShardSet.open(make_shards(tmp_path, n=24, size=32)).dataset_specs()
    record_datasets(tmp_path / "run", "train", specs)
    moved = [{**s, "source": "/elsewhere/shards"} for s in specs]
    check_resumed_datasets(tmp_path / "run", "train", moved)  # same manifest: the same patches
    check_resumed_datasets(tmp_path / "other", "train", specs)  # nothing recorded: nothing to compare
    older = [{**s, "profile": {k: v for k, v in s["profile"].items() if k != "manifest_sha256"}} for s in specs]
    record_datasets(tmp_path / "old", "train", older)
    check_resumed_datasets(tmp_path / "old", "train", specs)
    assert json.loads((tmp_path / "run" / "datasets.json").read_text())["train"][0]["profile"]["manifest_sha256"]


def test_an_evaluation_with_the_run_s_resumed_config_is_not_taken_for_a_resume(tmp_path):
    """`evaluate` reads the run's own config.yaml, which says `run.resume: true` after a resumed run: evaluating a
    test set rebuilt since is an evaluation, not a resume, and its logger records the new set."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.tracking import build_logger
    from mmlnb_dist.core.tracking.lineage import recorded_datasets
    from mmlnb_dist.data.shardset import ShardSet

    cfg = load_config("cpu-demo", ["tracking.backends=[stdout]", f"run.output_dir={tmp_path}", "run.resume=true"])
    first = ShardSet.open(make_shards(tmp_path / "a", n=24, size=32)).dataset_specs()
    second = ShardSet.open(make_shards(tmp_path / "b", n=24, size=32, seed=1)).dataset_specs()
    for specs in (first, second):
        build_logger(cfg.tracking, cfg.run, 0, tmp_path / "ev", "evaluate", config=cfg, datasets=specs).close()
    assert recorded_datasets(tmp_path / "ev", "evaluate") == second
