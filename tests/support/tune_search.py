"""A search of the smoke recipe driven up to the moment it would start Ray: for tests of what `run_search` checks
and records before any trial runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from mmlnb_dist.config import Config, load_config


class RayStarts(Exception):
    """Raised where the search would start Ray."""


def search_config(tmp_path: Path, *extra: str) -> Config:
    """The smoke recipe's search under `<tmp_path>/runs`, tracked on the console only."""
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]",
                                    "tune.recipe=mmlnb_dist.tuning.smoke:run", "tune.num_cpus=2", *extra])


def stop_where_ray_starts(monkeypatch) -> None:
    from mmlnb_dist.tuning import driver

    def stop(cfg):
        raise RayStarts

    monkeypatch.setattr(driver, "_init_ray", stop)


def run_until_ray(tmp_path: Path, monkeypatch, space: Any = "optimisation", *extra: str) -> Dict[str, Any]:
    """Start the search until Ray would start; returns what it recorded (search.json)."""
    from mmlnb_dist.tuning import driver

    stop_where_ray_starts(monkeypatch)
    with pytest.raises(RayStarts):
        driver.run_search(search_config(tmp_path, *extra), space)
    return json.loads((tmp_path / "runs" / "tune" / "search" / "search.json").read_text())


def tune_saved_its_state(tmp_path: Path) -> None:
    """What a started search leaves for `Tuner.restore`: Tune's tuner.pkl in the search folder."""
    from ray import tune

    tune.Tuner(lambda config: None, param_space={"train.lr": tune.uniform(1e-4, 1e-3)},
               tune_config=tune.TuneConfig(metric="val/balanced_accuracy", mode="max", num_samples=4),
               run_config=tune.RunConfig(name="search", storage_path=str(tmp_path / "runs" / "tune"), verbose=0))


def replace_ray_tuner(monkeypatch, tuner_cls, with_resources=None) -> None:
    """Run a search without Ray: `tuner_cls` stands in for `tune.Tuner` (its `fit()` returns the trials' results),
    no shard set is read and Ray is not started. `with_resources`: a stand-in that records what trials ask for."""
    from ray import tune

    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)  # no shard set needed
    monkeypatch.setattr(driver, "_init_ray", lambda cfg: False)
    monkeypatch.setattr(tune, "Tuner", tuner_cls)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", with_resources or (lambda fn, res: fn))
