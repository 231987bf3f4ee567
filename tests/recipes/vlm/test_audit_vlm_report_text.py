"""Mutation audit of `quality.format_report`, the lines `describe` logs and the pipeline's report copies: each
figure goes under its own name (median and p90 were interchangeable to the tests), the per-split class-naming
rates keep the report's order, and the reference and class-naming lines appear only when the report has them."""
from __future__ import annotations

from mmlnb_dist.recipes.vlm.quality import format_report


def _report(**extra):
    return {"n": 7, "distinct": 6, "words": {"mean": 4.5, "min": 1.0, "p50": 3.0, "p90": 8.0, "max": 12.0},
            "empty_share": 0.125, "repeated_share": 0.25, "reference": None, **extra}


def test_every_figure_is_written_under_its_own_name():
    assert format_report(_report()).splitlines() == [
        "descriptions: 7 (6 distinct)",
        "words: mean 4.5, min 1, median 3, p90 8, max 12",
        "empty: 12.5%, same text as another description: 25.0%",
    ]


def test_reference_scores_and_class_naming_lines_follow_in_the_report_s_split_order():
    report = _report(reference={"rouge_l": 0.4567, "bleu4": 0.1234, "n": 5},
                     class_naming={"rate": 0.75, "by_split": {"test": 1.0, "train": 0.5, "val": 0.25}})
    lines = format_report(report).splitlines()
    assert lines[3:] == ["vs references (n=5): ROUGE-L 0.457, BLEU-4 0.123",
                         "names its class: 0.75 (test 1.00, train 0.50, val 0.25)"]
