"""Audit of the search figure (`tuning.figure`): the trial the search picked is the star (and only when it has a
value), a trial counts only with status OK, the parameter panels are hollow for trials stopped early, a boolean
parameter is a category, at most MAX_PARAMETER_PANELS parameters get a panel (three per line), and the title
counts the trials."""
from __future__ import annotations

import math

import pytest

from mmlnb_dist.tuning.figure import MAX_PARAMETER_PANELS, best_so_far, search_figure

METRIC = "val/loss"


def _collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) <= 1, gid
    return found[0] if found else None


def _offsets(ax, gid):
    col = _collection(ax, gid)
    return [] if col is None else [tuple(p) for p in col.get_offsets().tolist()]


ROWS = [
    {"trial_id": "a", "status": "OK", "completed": "True", METRIC: "0.9", "p": True},
    {"trial_id": "b", "status": "OK", "completed": "False", METRIC: 0.4, "p": False},
    {"trial_id": "c", "status": "OK", "completed": True, METRIC: 0.6, "p": True},
    {"trial_id": "d", "status": "ERROR", "completed": False, METRIC: 0.1, "p": False},  # a value, yet failed
]


def test_the_picked_trial_is_the_star_and_min_mode_steps_down():
    fig = search_figure(ROWS, ["p"], METRIC, "min", best="b")
    trials = fig.axes[0]
    assert _offsets(trials, "best_trial") == [(1, 0.4)]
    line = next(li for li in trials.lines if li.get_gid() == "best_so_far")
    assert list(line.get_ydata()) == [0.9, 0.4, 0.4, 0.4]  # trial d's 0.1 is an ERROR's, not a result
    assert _offsets(trials, "trials:failed") == [(3, 0.4)]  # on the lowest finite value
    assert _offsets(trials, "trials:completed") == [(0, 0.9), (2, 0.6)]  # "True" from a CSV counts
    assert _offsets(trials, "trials:stopped_early") == [(1, 0.4)]


@pytest.mark.parametrize("best", [None, "d", "nobody"])
def test_no_star_without_a_picked_trial_with_a_value(best):
    assert _collection(search_figure(ROWS, ["p"], METRIC, "min", best=best).axes[0], "best_trial") is None


def test_parameter_panels_are_hollow_for_trials_stopped_early_and_booleans_are_categories():
    fig = search_figure(ROWS, ["p"], METRIC, "min")
    panel = fig.axes[1]
    assert [t.get_text() for t in panel.get_xticklabels()] == ["False", "True"]
    assert _offsets(panel, "param:p") == [(1, 0.9), (0, 0.4), (1, 0.6)]
    faces = _collection(panel, "param:p").get_facecolors()
    assert [face[3] for face in faces] == [1.0, 0.0, 1.0]  # b stopped early: no fill


def test_at_most_the_panel_limit_three_to_a_line_and_the_title_counts_trials():
    params = [f"x{i}" for i in range(MAX_PARAMETER_PANELS + 2)]
    rows = [{"status": "OK", "completed": True, METRIC: 0.5, **{k: i for k in params}} for i in range(2)]
    rows.append({"status": "ERROR", METRIC: None})  # counted in the title, though it has no point
    fig = search_figure(rows, params, METRIC, "max", name="demo")
    assert [ax.get_title() for ax in fig.axes[1:]] == params[:MAX_PARAMETER_PANELS]
    geometry = fig.axes[0].get_subplotspec().get_geometry()[:2]
    assert geometry == (math.ceil((1 + MAX_PARAMETER_PANELS) / 3), 3)
    assert fig._suptitle.get_text() == "Search demo: 3 trial(s)"
    assert search_figure(rows[:1], [], METRIC, "max").axes[0].get_subplotspec().get_geometry()[:2] == (1, 1)


def test_best_so_far_is_none_until_a_value():
    assert best_so_far([None, None, 0.3, 0.2], "max") == [None, None, 0.3, 0.3]
