"""A pipeline on an existing shard set (data.shards, no --slides / --patches / --synthetic) checks it once in a
`shards` stage whose record lives in `<run.output_dir>/verified/<digest>`. The report's stage table gave that
record folder as the stage's output, where a user looks for the shard set the later stages read: it now names
the shard set, and the record beside it."""
from __future__ import annotations

from pathlib import Path

from mmlnb_dist.pipeline.report import stage_rows
from mmlnb_dist.pipeline.stages import StageResult


def _row(result):
    return stage_rows([result])[2]


def test_the_verified_shard_set_is_the_output_the_report_names(tmp_path):
    record = tmp_path / "runs" / "verified" / "a063812fd6c3d795"
    user = tmp_path / "my-shards"
    for status, skipped in (("ran", False), ("skipped", True)):
        result = StageResult("shards", record, "a063812fd6c3d795", skipped, 0.1,
                             {"shards": str(user), "counts": {"train": 3}}, status=status)
        row = _row(result)
        output = row.rsplit(" | ", 1)[1]
        assert output.startswith(f"`{user}`"), row
        assert str(record) in output, row  # where the check is recorded, after it


def test_other_stages_keep_their_output(tmp_path):
    result = StageResult("train", tmp_path / "runs" / "x-clip", "f", False, 2.0, {"metrics": {}})
    assert _row(result).endswith(f"| `{Path(tmp_path / 'runs' / 'x-clip')}` |")
