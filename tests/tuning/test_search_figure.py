"""`tune` ended with a table: the search figure shows every trial's metric with the best so far, and the metric
against each searched parameter. Checked against the rows it draws."""
from __future__ import annotations

import pytest

from mmlnb_dist.tuning.figure import best_so_far, save_search_figure, search_figure

METRIC = "val/balanced_accuracy"
ROWS = [
    {"status": "OK", "completed": True, METRIC: 0.70, "train.lr": 1e-4, "fusion.curriculum.schedule": "step"},
    {"status": "OK", "completed": False, METRIC: 0.60, "train.lr": 3e-3, "fusion.curriculum.schedule": "cosine"},
    {"status": "DIVERGED", "completed": False, METRIC: float("nan"), "train.lr": 1.0,
     "fusion.curriculum.schedule": "step"},
    {"status": "OK", "completed": True, METRIC: 0.85, "train.lr": 5e-4, "fusion.curriculum.schedule": "linear"},
    {"status": "ERROR", "completed": False, METRIC: None, "train.lr": 2e-4, "fusion.curriculum.schedule": "step"},
]
PARAMS = ["train.lr", "fusion.curriculum.schedule"]


def points(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, gid
    return [tuple(p) for p in found[0].get_offsets().tolist()]


def test_best_so_far_follows_the_mode():
    assert best_so_far([0.7, 0.6, None, 0.85, None], "max") == [0.7, 0.7, 0.7, 0.85, 0.85]
    assert best_so_far([None, 0.6, 0.7, 0.5], "min") == [None, 0.6, 0.6, 0.5]


def test_each_trial_is_drawn_where_its_row_says():
    fig = search_figure(ROWS, PARAMS, METRIC, "max")
    trials, lr, schedule = fig.axes
    assert points(trials, "trials:completed") == [(0, 0.70), (3, 0.85)]
    assert points(trials, "trials:stopped_early") == [(1, 0.60)]
    assert points(trials, "trials:failed") == [(2, 0.60), (4, 0.60)]  # on the bottom edge: no value
    line = next(li for li in trials.lines if li.get_gid() == "best_so_far")
    assert list(line.get_xdata()) == [0, 1, 2, 3, 4] and list(line.get_ydata()) == [0.7, 0.7, 0.7, 0.85, 0.85]
    assert points(lr, "param:train.lr") == [(1e-4, 0.70), (3e-3, 0.60), (5e-4, 0.85)]
    categories = [t.get_text() for t in schedule.get_xticklabels()]
    assert categories == ["cosine", "linear", "step"]
    assert points(schedule, "param:fusion.curriculum.schedule") == [(2, 0.70), (0, 0.60), (1, 0.85)]


def test_the_figure_is_written_as_png(tmp_path):
    path = save_search_figure(ROWS, PARAMS, METRIC, "max", tmp_path / "search.png", name="demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("rows", [[], [{"status": "ERROR", METRIC: None, "train.lr": 1e-3}]])
def test_a_search_without_a_finished_trial_still_draws(rows, tmp_path):
    assert save_search_figure(rows, ["train.lr"], METRIC, "max", tmp_path / "s.png").is_file()
