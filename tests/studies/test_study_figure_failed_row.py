"""The study figure (table.png, also the MLflow parent run's artifact) marked a diverged row, but a row whose run
failed (an exception: the table says "failed (seed N)") was drawn as an unlabelled empty line, or, for a failed
reference row, a NaN reference line: a reader of the figure could not tell it had no result."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.studies import summarise
from mmlnb_dist.studies.figure import study_figure

METRICS = ["accuracy", "balanced_accuracy"]


def _table(failed_row: str):
    rng = np.random.default_rng(0)
    available = {"full": ("the paper's model", []), "no_text": ("image only", []), "concat": ("concat", [])}
    results = {}
    for row in available:
        for seed in (0, 1):
            results[(row, seed)] = {"run_dir": f"runs/{row}-seed{seed}",
                                    **{f"test/{m}": float(rng.uniform(0.5, 1.0)) for m in METRICS}}
    results[(failed_row, 1)] = {"run_dir": f"runs/{failed_row}-seed1", "failed": "RuntimeError: out of memory"}
    return summarise(results, available, list(available), [0, 1], METRICS, "test")


def _labels(fig):
    ax = fig.axes[0]
    return [label.get_text() for _, label in sorted(zip(ax.get_yticks(), ax.get_yticklabels()), key=lambda p: -p[0])]


def _drawn(fig):
    return {c.get_gid().split(":")[1] for ax in fig.axes for c in ax.collections if c.get_gid()}


def test_a_failed_row_is_labelled_failed_and_has_no_point():
    fig = study_figure(_table("concat"), METRICS, "test", "demo")
    assert _labels(fig) == ["full", "no_text", "concat (failed)"]
    assert _drawn(fig) == {"full", "no_text"}


def test_a_failed_reference_row_draws_no_reference_line():
    fig = study_figure(_table("full"), METRICS, "test", "demo")
    assert _labels(fig) == ["full (failed)", "no_text", "concat"]
    assert _drawn(fig) == {"no_text", "concat"}
    for ax in fig.axes:
        assert all(np.isfinite(np.asarray(line.get_xdata(), dtype=float)).all() for line in ax.lines)
