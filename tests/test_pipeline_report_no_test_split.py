"""Shards built without a test split (data.build.test_fraction=0): the pipeline evaluates on validation only, but its
report still headed the numbers "on the held-out test split" (they are the split that chose the checkpoint, so
optimistic), and its predict line scored `--split test`, which those shards do not have."""
from __future__ import annotations

import shlex

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.report import PAPER_COLUMNS, final_report, predict_line

URI = "sqlite:///m.db"


def _metrics():
    return {key: 0.5 for key, _ in PAPER_COLUMNS}


def test_a_report_without_a_test_split_says_its_numbers_are_validation_ones(tmp_path):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}"])
    report = final_report(cfg, [], {"patch": {"val": _metrics()}, "slide": {}}, None, URI, None, None)
    head = next(line for line in report.splitlines() if line.startswith("## Results"))
    assert "held-out test split" not in head and "validation split" in head and "chose" in head, head
    report = final_report(cfg, [], {"patch": {"test": _metrics(), "val": _metrics()}}, None, URI, None, None)
    head = next(line for line in report.splitlines() if line.startswith("## Results"))
    assert "on the held-out test split" in head, head


def test_the_predict_line_scores_the_split_the_shards_have(tmp_path):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}"])
    args = shlex.split(predict_line(cfg, "models:/m/1", "/s", URI, "/o.csv", False, None, split="val"))
    assert args[args.index("--split") + 1] == "val"
    args = shlex.split(predict_line(cfg, "models:/m/1", "/s", URI, "/o.csv", False, None))
    assert args[args.index("--split") + 1] == "test"
