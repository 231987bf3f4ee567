"""`data_order.jsonl` on a resume (`batches.truncate_data_order`): a run killed mid-append leaves a torn last line."""
from __future__ import annotations

import json

from mmlnb_dist.recipes.vlm import batches as B


def test_a_data_order_line_torn_by_a_kill_is_dropped_not_fatal(tmp_path):
    """A run killed while appending a step's keys leaves a cut last line: the resume used to stop on rank 0 with a
    JSONDecodeError (the other ranks waiting); the torn record is dropped and written again by the resume."""
    path = tmp_path / "data_order.jsonl"
    whole = "".join(json.dumps({"step": s, "keys": [f"k{s}"]}) + "\n" for s in range(3))
    path.write_text(whole + json.dumps({"step": 3, "keys": ["k3"]})[:9])
    B.truncate_data_order(path, 5)
    assert path.read_text() == whole
    B.truncate_data_order(path, 2)
    assert [json.loads(ln)["step"] for ln in path.read_text().splitlines()] == [0, 1]
