"""`ablate` wrote its table as text only: the study figure shows each row's mean over seeds as a diamond, the
standard deviation as an error bar and every seed's value as a dot. Checked against the table it draws: the
diamonds sit at the means, the dots at the per-seed values, a diverged row has no point."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.studies import summarise
from mmlnb_dist.studies.figure import SHOWN_METRICS, save_study_figure, study_figure

METRICS = ["accuracy", "balanced_accuracy", "kappa", "f1_weighted", "auroc"]


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    available = {"full": ("the paper's model", []), "no_text": ("image only", []), "concat": ("concat", [])}
    results = {}
    for row in available:
        for seed in (0, 1, 2):
            results[(row, seed)] = {"run_dir": f"runs/{row}-seed{seed}",
                                    **{f"test/{m}": float(rng.uniform(0.5, 1.0)) for m in METRICS}}
    results[("concat", 1)]["diverged"] = "step 4"
    return summarise(results, available, list(available), [0, 1, 2], METRICS, "test")


def test_the_points_are_the_means_and_the_dots_each_seed(table):
    fig = study_figure(table, METRICS, "test", "demo")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == METRICS[:SHOWN_METRICS]
    for ax, metric in zip(axes, METRICS):
        def points(kind):
            return {c.get_gid().split(":")[1]: sorted(c.get_offsets()[:, 0]) for c in ax.collections
                    if (c.get_gid() or "").startswith(kind + ":")}

        means = points("mean")
        assert {row: m[0] for row, m in means.items()} == pytest.approx(
            {row: table[row][f"{metric}_mean"] for row in ("full", "no_text")})
        dots = points("seeds")
        assert sorted(dots) == ["full", "no_text"]
        for row in dots:
            assert dots[row] == pytest.approx(sorted(table[row][metric]))
    top_down = [label.get_text() for _, label in sorted(zip(axes[0].get_yticks(), axes[0].get_yticklabels()),
                                                        key=lambda pair: -pair[0])]
    assert top_down == ["full", "no_text", "concat (diverged)"]  # the reference on top


def test_the_figure_is_written_as_png(table, tmp_path):
    path = save_study_figure(table, METRICS, "test", "demo", tmp_path / "table.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
