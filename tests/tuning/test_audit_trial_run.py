"""What one Tune trial hands to Tune and leaves on disk, found unguarded by a mutation audit of `tuning/trial.py`:
only numbers reach Tune (booleans as 0/1, numpy and torch scalars as floats; text, paths and arrays dropped, since
they break the searchers); the result file keeps every value JSON can hold and names the rest, with the trial's
last epoch; a table recipe runs through `core.recipe.run` while a `package.module:function` target is called
as it is; a trial folder whose stored values equal the trial's (paths included) is kept; a finished trial that
never reported an epoch reports its result at epoch -1; a recipe that reports once per epoch marks its own last
epoch final, and a report already marked is left as it is."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from support.fusion import CPU_DEMO

from mmlnb_dist.config import load_config
from mmlnb_dist.core.recipe import FINAL_REPORT

METRIC = "val/balanced_accuracy"


def test_only_numbers_reach_tune():
    from mmlnb_dist.tuning.trial import clean_metrics

    got = clean_metrics({"stopped": True, "epoch": 3, "val/a": np.float32(0.5), "val/b": torch.tensor(0.25),
                         "note": "text", "none": None, "run_dir": Path("runs/x"), "pair": np.array([1.0, 2.0]),
                         "vector": torch.tensor([1.0, 2.0])})
    assert got == {"stopped": 1.0, "epoch": 3.0, "val/a": 0.5, "val/b": 0.25}
    assert all(type(v) is float for v in got.values())
    assert clean_metrics(None) == {}


def test_the_result_file_keeps_json_values_names_the_rest_and_the_last_epoch(tmp_path):
    from mmlnb_dist.tuning.trial import _write_result, read_trial_result

    run_dir = tmp_path / "trial"
    assert read_trial_result(run_dir) is None  # not finished
    _write_result(run_dir, {METRIC: 0.75, "ok": True, "name": "t", "none": None, "run_dir": Path("a/b"),
                            "trained": {"k": 1}}, 12.5, 4)
    stored = read_trial_result(run_dir)
    assert {k: stored[k] for k in (METRIC, "ok", "name", "none", "run_dir", "trained")} == {
        METRIC: 0.75, "ok": True, "name": "t", "none": None, "run_dir": "a/b", "trained": "{'k': 1}"}
    assert (stored["trial_seconds"], stored["last_epoch"]) == (12.5, 4) and isinstance(stored["pid"], int)


def test_a_table_recipe_runs_through_the_recipe_runner_and_a_function_target_as_it_is(monkeypatch):
    import mmlnb_dist.core.recipe as core_recipe
    from mmlnb_dist.recipes import RECIPES, load_class
    from mmlnb_dist.tuning.trial import resolve_target

    import support.failing_trial as failing_trial

    assert resolve_target("support.failing_trial:run") is failing_trial.run
    calls = []
    monkeypatch.setattr(core_recipe, "run", lambda target, cfg, env, report: calls.append((target, cfg)) or {"x": 1})
    assert resolve_target("fusion")("cfg") == {"x": 1}
    assert calls == [(load_class(RECIPES["fusion"].target), "cfg")]


def test_a_trial_folder_holding_this_trials_own_values_is_kept(tmp_path):
    """The values are stored as JSON: a path (or any value JSON writes as text) read back equals the trial's."""
    from mmlnb_dist.tuning.trial import PARAMS_FILE, set_aside_other_trials_folder

    folder = tmp_path / "s-t0"
    folder.mkdir()
    applied = {"train.lr": 0.1, "data.shards": Path("/data/shards")}
    (folder / PARAMS_FILE).write_text(json.dumps(applied, default=str))
    assert set_aside_other_trials_folder(folder, applied) is None
    assert folder.is_dir() and not list(tmp_path.glob("*.lost-*"))


def test_a_finished_trial_that_never_reported_an_epoch_reports_at_epoch_minus_one(tmp_path, monkeypatch):
    from ray import tune

    from mmlnb_dist.tuning.trial import RESULT_FILE, trial_main

    run_dir = tmp_path / "s-t0"
    run_dir.mkdir()
    (run_dir / RESULT_FILE).write_text(json.dumps({METRIC: 0.5, "last_epoch": None}))
    reports = []
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t0"))
    monkeypatch.setattr(tune, "report", reports.append)
    ctx = {"base": load_config(CPU_DEMO).model_dump(mode="json"), "space": {}, "name": "s",
           "trials_dir": str(tmp_path), "cache_dir": str(tmp_path / "c"), "uri": "sqlite:///t.db",
           "parent_run_id": "p1", "recipe": "fusion", "tune": {}}
    trial_main({}, ctx)
    assert reports == [{METRIC: 0.5, "epoch": -1.0, FINAL_REPORT: 1.0}]


def test_an_epoch_recipe_marks_its_own_last_epoch_final_and_leaves_a_marked_report(tmp_path):
    from mmlnb_dist.tuning.trial import marked_final

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", "train.epochs=3"])
    assert [marked_final("fusion", cfg, e, {METRIC: 0.5})[FINAL_REPORT] for e in (0, 1, 2)] == [0.0, 0.0, 1.0]
    assert marked_final("fusion", cfg, 0, {METRIC: 0.5, FINAL_REPORT: 1.0})[FINAL_REPORT] == 1.0
    assert marked_final("mypkg.mod:Recipe", cfg, 2, {METRIC: 0.5}) == {METRIC: 0.5}
