"""The Tune driver runs the CLIP recipe with the shipped space (tune/spaces/clip.yaml) on the clip-multilabel
profile: two short trials, each a whole recipe run, the best config a ready-to-use full config, and the best
trial's model registered (`tune.register_best`), which no test checked."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.clip import ROOT, caption_shards, clip_config


@pytest.mark.slow
def test_two_trial_search_over_the_shipped_clip_space(tmp_path):
    import ray

    from mmlnb_dist.config import load_config
    from mmlnb_dist.tuning.driver import run_search

    shards = caption_shards(tmp_path, n=48, size=32)
    cfg = clip_config(shards, tmp_path / "runs", "tracking.backends=[mlflow]", "train.epochs=2",
                      "tune.use_ray_train=false", "tune.scheduler=fifo", "tune.num_samples=2", "tune.num_cpus=2",
                      "tune.register_best=true", "tracking.register_name=clip-best")
    assert (cfg.tune.recipe, cfg.tune.metric, cfg.tune.mode) == ("clip", "val/micro_f1", "max")  # the profile's
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        summary = run_search(cfg, ROOT / "tune" / "spaces" / "clip.yaml")
    finally:
        ray.shutdown()
    assert summary["trials"] == 2 and summary["errored"] == 0, summary
    best = load_config(summary["best_config"])
    assert best.train.recipe == "clip"
    assert best.clip.model.towers.unfreeze_blocks == summary["best_params"]["clip.model.towers.unfreeze_blocks"]

    # the best trial's run (its MLflow child run, by run folder) is the registered version, and only it
    import mlflow

    reg = summary["registered"]
    assert reg["registered"] is True and reg["name"] == "clip-best" and reg["version"] == "1", reg
    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias("clip-best", "champion")
    run = client.get_run(version.run_id)
    assert run.data.tags["run_dir"] == str(Path(summary["best_run_dir"]).resolve())
    assert run.data.metrics["val/micro_f1"] == pytest.approx(summary["best_metric"])
    assert len(client.search_model_versions("name='clip-best'")) == 1


def test_a_search_without_its_mlflow_parent_run_says_how_to_register_its_best_trial(tmp_path):
    """The tracking server was down when the search started (no parent run): the search used to skip the
    registration without a word; its summary now says why and gives the commands for the best trial's folder."""
    from mmlnb_dist.tuning.driver import _register_best

    cfg = clip_config(tmp_path / "shards", tmp_path / "runs", "tune.register_best=true",
                      "tracking.register_name=clip-best")
    best = tmp_path / "runs" / "tune" / "search" / "trials" / "search-1"
    out = _register_best(cfg, None, {"best_run_dir": str(best)})
    assert out["registered"] is False and "not reachable" in out["reason"]
    assert out["register_later"] == (f"mmlnb-dist tracking sync {best} && mmlnb-dist register --run {best} "
                                     f"--name clip-best")
