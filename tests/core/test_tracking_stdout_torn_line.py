"""A resumed stdout backend never appends to a line a killed process left cut short. `describe` and `evaluate`
resume their logger without `resumed_at` (no checkpoint step), so the new record was glued onto the torn one:
one unreadable line in the middle of `metrics.jsonl`, which lost the new record and made `tracking import` refuse
the folder."""
from __future__ import annotations

import json

from mmlnb_dist.core.tracking.loggers import StdoutLogger


def test_a_resumed_log_drops_a_torn_last_line_and_keeps_every_record_readable(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "describe/rows": 8.0}) + "\n" + '{"step": 2, "describe/ro')
    logger = StdoutLogger(tmp_path, resume=True)
    logger.log_metrics({"describe/rows": 16.0}, step=2)
    logger.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"step": 1, "describe/rows": 8.0}, {"step": 2, "describe/rows": 16.0}]


def test_a_damaged_record_before_the_resumed_step_is_named_by_line(tmp_path, caplog):
    """A damaged line (a disk error, a hand edit) was dropped at resume and counted among the records after the
    checkpoint "replaced by this run's": a record lost with no word of where."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train/loss": 2.0}\n{"step": 2, "train/lo#\n{"step": 3, "train/loss": 1.0}\n'
                    '{"step": 9, "train/loss": 0.5}\n')
    logger = StdoutLogger(tmp_path, resume=True)
    with caplog.at_level("INFO"):
        logger.resumed_at(5)
    logger.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 3]
    damaged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert damaged and f"{path}:2" in damaged[0]
    assert any("1 record(s) after step 5" in r.getMessage() for r in caplog.records)
