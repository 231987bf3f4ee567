"""`pipeline --until train` (a slice that stops before evaluate): its report had a stage table and no number at all,
though the training run had scored its best checkpoint on val and test. The report now shows those numbers, as
the training run's own (not the evaluate stage's), from the train stage's record; with no train stage, none."""
from __future__ import annotations

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.report import final_report
from mmlnb_dist.pipeline.stages import StageResult

URI = "sqlite:////nowhere/mlflow.db"


def _train(tmp_path, metrics):
    return StageResult("train", tmp_path / "runs" / "x-clip", "f", False, 3.0,
                       {"metrics": metrics, "run_dir": str(tmp_path / "runs" / "x-clip")})


def test_a_slice_ending_with_train_reports_the_training_runs_numbers(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path / 'runs'}"])
    metrics = {"val/micro_f1": 0.25, "test/micro_f1": 0.5, "test/num_samples": 20, "val/num_samples": 10,
               "export_dir": str(tmp_path / "export"), "best/epoch": 3}
    report = final_report(cfg, [_train(tmp_path, metrics)], None, None, URI, None, None)
    head = next(line for line in report.splitlines() if line.startswith("## "))
    assert "training run" in head and "evaluate" in head, head
    assert "| metric | test (n=20) | val (n=10) |" in report, report
    assert "| micro_f1 | 0.5000 | 0.2500 |" in report, report
    assert report.index(head) < report.index("## Stages")


def test_a_slice_before_train_has_no_results(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path / 'runs'}"])
    shards = StageResult("shards", tmp_path / "shards", "s", False, 1.0, {})
    report = final_report(cfg, [shards], None, None, URI, None, None)
    assert "## Results" not in report and "training run" not in report
