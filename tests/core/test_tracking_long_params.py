"""MLflow takes param values of at most 6000 characters. A longer value (a VLM prompt, a class list) was cut
silently, in three copies of the rule (the run's logger, a search's parent run, `tracking import`): the run showed
a truncated value as if it were the setting. Now one function owns the limit and a warning names each cut key and
where the full value is (the run's config.yaml artifact)."""
from __future__ import annotations

import logging

import pytest

from support.fake_mlflow import URI, install

from mmlnb_dist.config import load_config
from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import build_logger
from mmlnb_dist.core.tracking.folder_import import import_run_folder
from mmlnb_dist.core.tracking.runs import ParentRun

LONG = "describe the patch " * 400  # 7600 characters


@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def test_a_runs_long_param_is_cut_and_named_with_its_config_artifact(tmp_path, stores, caplog):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]",
                                   f"tracking.uri={URI}", f"vlm.prompt={LONG}"])
    run_dir = tmp_path / "runs" / "r"
    with caplog.at_level(logging.WARNING):
        lg = build_logger(cfg.tracking, cfg.run, 0, run_dir, "train", config=cfg)
    params = next(iter(stores[URI].runs.values())).data.params
    assert params["vlm.prompt"] == LONG[:6000]
    assert "vlm.prompt" in caplog.text and "6000" in caplog.text, caplog.text
    assert str(run_dir / "config.yaml") in caplog.text, caplog.text
    assert "train.lr" not in caplog.text  # short values are not named
    lg.close()


def test_an_imported_runs_long_param_is_named(tmp_path, stores, caplog):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"run: {{name: r}}\ntracking: {{uri: '{URI}'}}\nvlm: {{prompt: '{LONG}'}}\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "a": 0.5}\n')
    with caplog.at_level(logging.WARNING):
        result = import_run_folder(run_dir)
    assert stores[URI].runs[result["run_id"]].data.params["vlm.prompt"] == LONG[:6000]
    assert "vlm.prompt" in caplog.text and "config.yaml" in caplog.text, caplog.text


def test_a_parent_runs_long_param_is_named(tmp_path, stores, caplog):
    with caplog.at_level(logging.WARNING):
        parent = ParentRun.open(TrackingConfig(), URI, tmp_path, "search", params={"tune.note": LONG, "tune.x": 1})
    assert stores[URI].runs[parent.run_id].data.params["tune.note"] == LONG[:6000]
    assert "tune.note" in caplog.text and "tune.x" not in caplog.text, caplog.text
