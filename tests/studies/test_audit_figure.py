"""Audit of the study figure (`studies.figure`): the error bars span mean ± std, the reference row's mean is the
dashed line and the only highlighted row, a one-seed study draws no error bar and says "one seed", and only the
first panel names the rows."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.studies import summarise
from mmlnb_dist.studies.figure import study_figure

METRICS = ["accuracy", "kappa"]


def _table(seeds):
    rng = np.random.default_rng(1)
    available = {"full": ("reference", []), "no_text": ("image only", []), "concat": ("concat", [])}
    results = {(row, s): {"run_dir": f"runs/{row}-{s}", **{f"test/{m}": float(rng.uniform(0.4, 0.9))
                                                           for m in METRICS}}
               for row in available for s in seeds}
    return summarise(results, available, list(available), list(seeds), METRICS, "test")


def _error_bars(ax):
    """{y: (x_low, x_high)} of the horizontal error bars (LineCollections of the errorbar containers)."""
    spans = {}
    for container in ax.containers:
        for col in container.lines[2]:
            for seg in col.get_segments():
                (x0, y0), (x1, _) = seg
                assert np.isfinite([x0, x1]).all(), seg
                spans[round(float(y0))] = (min(x0, x1), max(x0, x1))
    return spans


def test_error_bars_span_the_mean_plus_minus_the_standard_deviation():
    table = _table((0, 1, 2))
    fig = study_figure(table, METRICS, "test", "demo")
    for ax, metric in zip(fig.axes, METRICS):
        spans = _error_bars(ax)
        assert sorted(spans) == [0, 1, 2]
        for y, row in zip([2, 1, 0], table):  # reference on top
            mean, std = table[row][f"{metric}_mean"], table[row][f"{metric}_std"]
            assert spans[y] == pytest.approx((mean - std, mean + std))


def test_the_reference_mean_is_the_dashed_line_and_the_only_highlighted_row():
    from matplotlib.colors import to_rgba

    table = _table((0, 1, 2))
    fig = study_figure(table, METRICS, "test", "demo")
    for ax, metric in zip(fig.axes, METRICS):
        dashed = [li for li in ax.lines if li.get_linestyle() == "--"]
        assert len(dashed) == 1
        assert list(dashed[0].get_xdata()) == pytest.approx([table["full"][f"{metric}_mean"]] * 2)
        colours = {c.get_gid().split(":")[1]: tuple(c.get_facecolor()[0]) for c in ax.collections
                   if (c.get_gid() or "").startswith("mean:")}
        assert colours["full"] == to_rgba("tab:blue")
        assert colours["no_text"] == colours["concat"] == to_rgba("tab:gray")


def test_one_seed_draws_no_error_bar_and_says_so():
    table = _table((0,))
    fig = study_figure(table, METRICS, "test", "demo")
    assert all(not _error_bars(ax) for ax in fig.axes)
    assert fig._suptitle.get_text() == "Study demo: test split, one seed"
    three = study_figure(_table((0, 1, 2)), METRICS, "val", "demo")
    assert "mean ± std over 3 seeds" in three._suptitle.get_text() and "val split" in three._suptitle.get_text()


def test_only_the_first_panel_names_the_rows():
    fig = study_figure(_table((0, 1)), METRICS, "test", "demo")
    first, second = fig.axes
    top_down = [t.get_text() for _, t in sorted(zip(first.get_yticks(), first.get_yticklabels()),
                                                key=lambda pair: -pair[0])]
    assert top_down == ["full", "no_text", "concat"]
    assert all(not t.get_text() for t in second.get_yticklabels())


def test_a_row_with_a_missing_seed_value_has_no_error_bar():
    table = _table((0, 1, 2))
    table["no_text"]["accuracy"][1] = float("nan")  # a seed whose run logged no accuracy (not diverged)
    table["no_text"]["accuracy_std"] = float("nan")
    fig = study_figure(table, METRICS, "test", "demo")
    assert sorted(_error_bars(fig.axes[0])) == [0, 2]  # full (top) and concat keep theirs
