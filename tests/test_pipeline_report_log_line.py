"""The report's last line described the pipeline log as holding "per-epoch tables; the best checkpoint's per-class
metrics and confusion matrices" also for a slice that stopped before train (`--until shards`), whose log holds
none of them: it names the log alone there, and keeps the description when a train stage is in the run."""
from __future__ import annotations

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.report import final_report
from mmlnb_dist.pipeline.stages import StageResult

URI = "sqlite:////nowhere/mlflow.db"


def _last(report):
    return report.rstrip().splitlines()[-1]


def test_a_slice_without_train_does_not_promise_epoch_tables(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    shards = StageResult("shards", tmp_path / "shards", "s", False, 1.0, {})
    line = _last(final_report(cfg, [shards], None, None, URI, None, "/tmp/p.log"))
    assert line == "Full log: `/tmp/p.log`", line


def test_a_run_with_train_describes_its_log(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    train = StageResult("train", tmp_path / "run", "t", True, 0.0, {"metrics": {}}, status="skipped")
    line = _last(final_report(cfg, [train], None, None, URI, None, "/tmp/p.log"))
    assert "per-epoch tables" in line and line.endswith("`/tmp/p.log`"), line
