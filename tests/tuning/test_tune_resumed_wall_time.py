"""A resumed search reports the whole search's wall time: `summary.json`'s `wall_s` (and the parent run's
`tune/wall_s`) held the resume's own seconds only, 0.1 s for a resume of a finished search that ran for minutes.
The time of each run is added up in search.json. Ray's Tuner is replaced by one that takes given seconds."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from support.tune_search import replace_ray_tuner

from mmlnb_dist.config import load_config

METRIC = "val/balanced_accuracy"


def test_a_resumed_search_reports_the_time_of_all_its_runs(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver

    clock = [1000.0]
    takes = []

    class Tuner:
        def __init__(self, *args, **kwargs):
            pass

        @staticmethod
        def can_restore(path):
            return (Path(path) / "search.json").is_file()

        @classmethod
        def restore(cls, path, trainable, resume_errored=False):
            return cls()

        def fit(self):
            clock[0] += takes.pop(0)
            return [SimpleNamespace(config={"train.lr": 1e-4}, error=None,
                                    metrics={METRIC: 0.6, "trial_id": "t1", "training_iteration": 2})]

    monkeypatch.setattr(driver, "time", SimpleNamespace(time=lambda: clock[0]))
    replace_ray_tuner(monkeypatch, Tuner)
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [1.0e-4, 5.0e-3]}\n")

    def search(*extra):
        cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]",
                                       "train.epochs=2", "tune.num_cpus=2", "tune.name=wall", "tune.searcher=grid",
                                       "tune.num_samples=1", *extra])
        return driver.run_search(cfg, tmp_path / "space.yaml")

    takes.extend([120.0, 0.5])
    assert search()["wall_s"] == 120.0
    summary = search("tune.resume=true")
    assert summary["wall_s"] == 120.5, summary
    assert json.loads((Path(summary["experiment_dir"]) / "summary.json").read_text())["wall_s"] == 120.5
