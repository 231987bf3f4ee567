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
    from mmlnb_dist.config.tune import search_mode
    from mmlnb_dist.tuning.driver import run_search

    shards = caption_shards(tmp_path, n=48, size=32)
    cfg = clip_config(shards, tmp_path / "runs", "tracking.backends=[mlflow]", "train.epochs=2",
                      "tune.use_ray_train=false", "tune.scheduler=fifo", "tune.num_samples=2", "tune.num_cpus=2",
                      "tune.register_best=true", "tracking.register_name=clip-best")
    assert (cfg.tune.recipe, cfg.tune.metric, search_mode(cfg)) == ("clip", "val/micro_f1", "max")  # the profile's
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
    from mmlnb_dist.tuning.outcome import register_best

    cfg = clip_config(tmp_path / "shards", tmp_path / "runs", "tune.register_best=true",
                      "tracking.register_name=clip-best")
    best = tmp_path / "runs" / "tune" / "search" / "trials" / "search-1"
    out = register_best(cfg, None, {"best_run_dir": str(best)})
    assert out["registered"] is False and "not reachable" in out["reason"]
    assert out["register_later"] == (f"mmlnb-dist tracking sync {best} && mmlnb-dist register --run {best} "
                                     f"--name clip-best")


@pytest.mark.slow
def test_a_trial_that_diverges_is_a_result_of_the_search_not_an_error_and_is_not_rerun(tmp_path):
    """A learning rate in the searched range that sends the loss to NaN is an answer (that setting is bad), not a
    failure: the trial ends at once as diverged, with the reason in trials.csv, without the retry
    `tune.max_failures` gives errors (it would resume and diverge at the same step again); the search picks the
    best of the rest and ends with exit code 0. Before, it was retried, then counted as errored (exit code 1)."""
    import csv
    import json

    import ray

    from mmlnb_dist.tuning.driver import run_search

    shards = caption_shards(tmp_path, n=48, size=32)
    space = tmp_path / "lr.yaml"
    space.write_text("description: a sane and a diverging tower lr\nparams:\n"
                     "  clip.tower_lr: {grid: [1.0e-3, 1.0e+3]}\n")
    cfg = clip_config(shards, tmp_path / "runs", "train.epochs=2", "tune.use_ray_train=false", "tune.scheduler=fifo",
                      "tune.searcher=grid", "tune.num_samples=1", "tune.num_cpus=2", "tune.max_failures=1")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        summary = run_search(cfg, space)
    finally:
        ray.shutdown()
    assert summary["trials"] == 2 and summary["errored"] == 0 and summary["diverged"] == 1, summary
    assert summary["best_params"]["clip.tower_lr"] == pytest.approx(1e-3), summary
    rows = {float(r["clip.tower_lr"]): r
            for r in csv.DictReader(open(Path(summary["experiment_dir"]) / "trials.csv"))}
    bad = rows[1e3]
    assert bad["status"] == "DIVERGED" and "training diverged at step" in bad["error"], bad
    result = json.loads((Path(bad["run_dir"]) / "trial_result.json").read_text())
    assert "training diverged at step" in result["diverged"]
    assert rows[1e-3]["status"] == "OK"
    trial_log = (Path(bad["run_dir"]) / "trial.log").read_text()  # appended to by every attempt
    assert trial_log.count("parameters train;") == 1, trial_log  # the recipe's first line: one attempt
