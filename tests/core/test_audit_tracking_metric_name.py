"""Mutation-audit guards of the refusal of an unknown selection metric (`core/tracking/metric_name.py`): the
metrics it lists, the `best/` name it suggests, and a long list cut with a count."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.tracking.metric_name import UnknownMetricError, require_metric, selectable


def test_the_listed_metrics_are_the_scored_ones_with_a_best_form_only_when_it_has_no_plain_one():
    metrics = {"val/acc": 1.0, "best/val/acc": 1.0, "best/test/f1": 1.0, "train/loss": 1.0}
    assert selectable(metrics) == ["best/test/f1", "val/acc"]
    assert selectable({"train/loss": 1.0, "epoch": 2.0}) == ["epoch", "train/loss"]


def test_a_mistyped_best_metric_is_pointed_to_its_best_form():
    with pytest.raises(UnknownMetricError, match="did you mean best/val/acc\\?"):
        require_metric({"val/acc": 0.5}, "best/val/ac", "r1")


def test_a_long_metric_list_is_cut_at_thirty_with_the_count_of_the_rest():
    metrics = {f"val/m{i:02d}": 0.0 for i in range(31)}
    with pytest.raises(UnknownMetricError, match=r"val/m29, \.\.\. \(1 more\)") as refused:
        require_metric(metrics, "val/zzz", "r1")
    assert "val/m30" not in str(refused.value)
