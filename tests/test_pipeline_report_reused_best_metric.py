"""`pipeline --from evaluate train.best_metric=loss` reuses the train stage as it is (its best checkpoint was chosen
on val balanced_accuracy), but the report headed the numbers "chosen on val loss": the heading took the metric
from this config, not from the run that chose the checkpoint. It now takes it from the train stage's record."""
from __future__ import annotations

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.report import PAPER_COLUMNS, final_report
from mmlnb_dist.pipeline.stages import StageResult

URI = "sqlite:///m.db"


def _evaluation():
    return {"patch": {"test": {key: 0.5 for key, _ in PAPER_COLUMNS}}, "slide": {}}


def _heading(report):
    return next(line for line in report.splitlines() if line.startswith("## Results"))


def test_the_heading_names_the_metric_the_reused_train_run_chose_its_checkpoint_on(tmp_path):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "train.best_metric=loss"])
    train = StageResult("train", tmp_path / "run", "f", True, 0.0,
                        {"status": "done", "settings": {"train.best_metric": "balanced_accuracy", "train.lr": 1e-3}},
                        status="reused-other")
    heading = _heading(final_report(cfg, [train], _evaluation(), None, URI, None, None))
    assert "chosen on val balanced_accuracy" in heading, heading


def test_a_train_record_without_its_settings_heads_with_this_configs_metric(tmp_path):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "train.best_metric=loss"])
    train = StageResult("train", tmp_path / "run", "f", True, 0.0, {"status": "done"}, status="reused")
    assert "chosen on val loss" in _heading(final_report(cfg, [train], _evaluation(), None, URI, None, None))
