"""A resume runs its remaining trials on the config it is given: `tune.resume=true train.epochs=20` (or another
`data.shards`, `train.lr` outside the space) trained the unfinished trials under other settings than the finished
ones, whose results were then ranked together, and Ray's restored ASHA kept the old horizon; nothing was said. The
search records its base config (all but `tune.*`, `tracking.*`, `run.resume` and the keys each trial sets) in
search.json, and a resume with another one is refused before Ray starts, naming the changed keys and both values. A
search recorded before goes on."""
from __future__ import annotations

import json

import pytest

from support.tune_search import RayStarts, run_until_ray, tune_saved_its_state

from mmlnb_dist.tuning.checks import SearchError


def test_a_resume_with_another_base_config_is_refused_naming_the_keys(tmp_path, monkeypatch):
    first = run_until_ray(tmp_path, monkeypatch, "optimisation", "train.epochs=2")
    assert first["base"]["train.epochs"] == 2 and not any(k.startswith("tune.") for k in first["base"])
    tune_saved_its_state(tmp_path)
    with pytest.raises(SearchError, match=r"search 'search' at .* was started with another base config: "
                                          r"run\.seed=0 \(now 3\), train\.epochs=2 \(now 5\); "):
        run_until_ray(tmp_path, monkeypatch, "optimisation", "train.epochs=5", "run.seed=3",
                      "tune.resume=true")
    # the same config resumes (another tune.* setting, run.resume or a key each trial sets is not the base config)
    run_until_ray(tmp_path, monkeypatch, "optimisation", "train.epochs=2", "tune.resume=true", "tune.num_cpus=1",
                  "run.resume=true", "train.evaluate_test=false")


def test_a_search_recorded_before_the_base_config_was_resumes(tmp_path, monkeypatch):
    first = run_until_ray(tmp_path, monkeypatch, "optimisation", "train.epochs=2")
    path = tmp_path / "runs" / "tune" / "search" / "search.json"
    path.write_text(json.dumps({k: v for k, v in first.items() if k != "base"}))
    tune_saved_its_state(tmp_path)
    with pytest.raises(RayStarts):
        from mmlnb_dist.tuning import driver
        from support.tune_search import search_config, stop_where_ray_starts

        stop_where_ray_starts(monkeypatch)
        driver.run_search(search_config(tmp_path, "train.epochs=5", "tune.resume=true"), "optimisation")
