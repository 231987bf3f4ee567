"""`search.png` drew a choice that mixes numbers with null or text (`vlm.lora.r: {choice: [null, 4, 16]}`) as
categories ordered as text: "16" before "4". Numbers are now ordered by value; null (None) comes first, then the
numbers, then any text (as text); booleans are text ("False", "True"). Checked on the ordering helper and on the
panel's tick labels and points (not pixels)."""
from __future__ import annotations

from mmlnb_dist.tuning.figure import category_order, search_figure

METRIC = "val/balanced_accuracy"
KEY = "vlm.lora.r"


def test_numbers_are_ordered_by_value_null_first_text_last():
    assert category_order([16, None, 4, 16, 4]) == [None, 4, 16]
    assert category_order(["auto", 16, 4.5, None, 100]) == [None, 4.5, 16, 100, "auto"]
    assert category_order([True, False]) == [False, True]
    assert category_order(["step", "cosine", "linear"]) == ["cosine", "linear", "step"]


def test_the_panel_draws_the_categories_in_that_order():
    rows = [{"status": "OK", "completed": True, METRIC: v, KEY: r, "trial_id": str(i)}
            for i, (r, v) in enumerate([(16, 0.8), (None, 0.5), (4, 0.6), (100, 0.7)])]
    fig = search_figure(rows, [KEY], METRIC, "max")
    panel = fig.axes[1]
    assert [t.get_text() for t in panel.get_xticklabels()] == ["None", "4", "16", "100"]
    drawn = next(c for c in panel.collections if c.get_gid() == f"param:{KEY}")
    assert [tuple(p) for p in drawn.get_offsets().tolist()] == [(2, 0.8), (0, 0.5), (1, 0.6), (3, 0.7)]
