"""The register stage's printed reason showed metrics at full float precision ("val/balanced_accuracy
0.6666666666666666 beats 0.5"). The human-readable lines (the report's, the log's) now give them to 4 significant
places; the registration record keeps the full values."""
from __future__ import annotations

from mmlnb_dist.pipeline.finish import readable_reason

REASON = "val/balanced_accuracy 0.6666666666666666 beats 0.3333333333333333 (version 1)"
RECORD = {"registered": True, "name": "m", "version": "2", "alias": "champion", "alias_moved": True,
          "metric": "val/balanced_accuracy", "value": 2 / 3, "previous_value": 1 / 3, "reason": REASON}


def test_the_readable_reason_gives_metrics_to_four_significant_places():
    assert readable_reason(RECORD) == "val/balanced_accuracy 0.6667 beats 0.3333 (version 1)"
    assert RECORD["reason"] == REASON and RECORD["value"] == 2 / 3  # the record keeps the full values
    assert readable_reason({**RECORD, "value": 0.5, "previous_value": None,
                            "reason": "first version with alias 'champion'"}) == "first version with alias 'champion'"
    assert readable_reason({**RECORD, "value": 1e-7, "previous_value": 12345.678,
                            "reason": "val/loss 1e-07 beats 12345.678 (version 1)"}) == \
        "val/loss 1e-07 beats 1.235e+04 (version 1)"


def test_the_report_line_is_the_readable_one(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.pipeline.report import final_report

    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}"])
    report = final_report(cfg, [], {}, RECORD, f"file:{tmp_path / 'mlruns'}", None, None)
    line = next(x for x in report.splitlines() if x.startswith("- registered:"))
    assert "(val/balanced_accuracy 0.6667 beats 0.3333 (version 1))" in line, line
    assert "0.666666" not in report
