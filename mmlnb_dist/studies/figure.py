"""The study table as a picture (`<study dir>/table.png`, also in the study's MLflow parent run): one panel per
metric (the first four of the recipe's), one line per row: its mean over seeds as a diamond, the standard deviation
as an error bar, each seed's value as a dot, and a dashed line at the reference row's mean (the reference on top;
no row is drawn as the reference when the study did not train the recipe's reference row).
Points, not bars: the rows differ by a few points near the top of the scale, which bars from 0 would flatten and
bars from elsewhere would exaggerate. A row with a run that diverged or failed has no point (nor, for the reference,
its dashed line), and its label says so. Built without
pyplot (no backend to choose, no display needed)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

SHOWN_METRICS = 4
"""Panels: the recipe's first metrics (fusion: accuracy, balanced accuracy, kappa, weighted F1)."""


_FIRST_ROW: Any = object()


def study_figure(table: Dict[str, Dict[str, Any]], metrics: Sequence[str], split: str, name: str,
                 reference: Optional[str] = _FIRST_ROW):
    """A `matplotlib.figure.Figure` of `table` (`studies.summarise`'s, rows in table order). `reference`: the row
    drawn as the one the others read against (its colour, a dashed line at its mean); default the first row; None
    when the study did not train the recipe's reference (`--rows sum,prmf`: `sum` is no baseline of `prmf`)."""
    from matplotlib.figure import Figure

    shown = list(metrics[:SHOWN_METRICS])
    rows = list(table)
    fig = Figure(figsize=(3.2 * len(shown) + 1.8, 0.45 * len(rows) + 1.6))
    axes = [fig.add_subplot(1, len(shown), i + 1) for i in range(len(shown))]
    ys = list(range(len(rows)))[::-1]  # the reference (first) row on top
    if reference is _FIRST_ROW:
        reference = rows[0] if rows else None
    marks = {row: _mark(table[row]) for row in rows}
    for ax, metric in zip(axes, shown):
        for y, row in zip(ys, rows):
            entry = table[row]
            if marks[row]:
                continue
            mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
            colour = "tab:blue" if row == reference else "tab:gray"
            if std is not None and math.isfinite(std):
                ax.errorbar(mean, y, xerr=std, color=colour, capsize=3, lw=1.2)
            ax.scatter([mean], [y], marker="D", s=36, color=colour, zorder=3, gid=f"mean:{row}")
            ax.scatter(entry[metric], [y] * len(entry[metric]), s=9, color="black", alpha=0.6, zorder=4,
                       gid=f"seeds:{row}")
            if row == reference:
                ax.axvline(mean, color=colour, ls="--", lw=0.8, gid=f"reference:{row}")
        ax.set(title=metric, yticks=ys, ylim=(-0.6, len(rows) - 0.4))
        ax.set_yticklabels([row + (f" ({marks[row]})" if marks[row] else "") for row in rows] if ax is axes[0] else [])
        ax.grid(axis="x", alpha=0.3)
    seeds = len(next(iter(table.values()))["seeds"]) if table else 0
    fig.suptitle(f"Study {name}: {split} split, " + (f"mean ± std over {seeds} seeds (dots: each seed)" if seeds > 1
                                                      else "one seed"))
    fig.tight_layout()
    return fig


def _mark(entry: Dict[str, Any]) -> str:
    """Why a row has no number to draw: a seed's run diverged or failed (as its table row says), else ""."""
    return ", ".join(what for what in ("diverged", "failed") if any(entry.get(what) or []))


def save_study_figure(table: Dict[str, Dict[str, Any]], metrics: Sequence[str], split: str, name: str,
                      path: Path, reference: Optional[str] = _FIRST_ROW) -> Path:
    study_figure(table, metrics, split, name, reference).savefig(path, dpi=110)
    return path
