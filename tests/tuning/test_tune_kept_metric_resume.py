"""A search started before its trials kept the checkpoint best on `tune.metric` (`tune.metric=val/kappa` on a
profile whose `train.best_metric` was left at `balanced_accuracy`) recorded that base config. Its resume gave the
trials `kappa`, so it was refused as "started with another base config: train.best_metric", and setting
`train.best_metric=balanced_accuracy` to match was refused as set apart from tune.metric: no way to resume it. A
resume keeps the `train.best_metric` its search was started with. No test here starts Ray."""
from __future__ import annotations

import json

from mmlnb_dist.config import load_config

SPACE = "optimisation"


def test_a_search_started_with_the_other_kept_metric_resumes_with_it(tmp_path, monkeypatch):
    from mmlnb_dist.core.config import absolute_paths
    from mmlnb_dist.tuning import checks, driver
    from mmlnb_dist.tuning.space import load_space, resolve_space

    overrides = [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]", "tune.num_cpus=2",
                 "tune.metric=val/kappa", "tune.name=old"]
    monkeypatch.chdir(tmp_path)
    cfg = load_config("cpu-demo", overrides)
    base = absolute_paths(cfg, tmp_path).model_dump(mode="json")
    recorded = checks.recorded_base(base)
    assert recorded["train.best_metric"] == "balanced_accuracy"  # as a search before the fix recorded it
    space_path = resolve_space(SPACE)
    exp = tmp_path / "runs" / "tune" / "old"
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"")
    state = {"metric": "val/kappa", "mode": "max", "base": recorded, "space": str(space_path),
             "space_params": load_space(space_path, base)}
    (exp / "search.json").write_text(json.dumps(state))
    seen = {}
    monkeypatch.setattr(driver, "_run_held", lambda cfg, base, *rest: seen.setdefault("base", base))
    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)
    monkeypatch.setattr(checks, "check_recipe", lambda cfg: None)
    driver.run_search(load_config("cpu-demo", [*overrides, "tune.resume=true"]), SPACE)
    assert seen["base"]["train"]["best_metric"] == "balanced_accuracy"
