"""A search as a picture (`<experiment>/search.png`, also in the search's MLflow parent run): the first panel is
every trial's metric in the order the trials started, with the best so far as a step line (trials stopped
early by the scheduler hollow: their metric is an earlier epoch's; diverged or errored ones as crosses on the bottom
edge; the trial the search picked as best, a star); then one panel per searched parameter, the metric against its
value (choices as categories, numbers by value: `category_order`; a log axis for a log-uniform one; hollow again
for trials stopped early). Built without pyplot."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

MAX_PARAMETER_PANELS = 8
LOG_DISTRIBUTIONS = ("loguniform", "qloguniform")
"""Distributions sampled uniformly in log space: their parameter's panel has a log axis."""


def _value(row: Dict[str, Any], metric: str) -> Optional[float]:
    value = row.get(metric)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and row.get("status") == "OK" else None


def best_so_far(values: Sequence[Optional[float]], mode: str) -> List[Optional[float]]:
    """The best value among the first i + 1 (None until a trial has one)."""
    out: List[Optional[float]] = []
    best = None
    for v in values:
        if v is not None and (best is None or (v > best if mode == "max" else v < best)):
            best = v
        out.append(best)
    return out


def category_order(values: Sequence[Any]) -> List[Any]:
    """The distinct values of a parameter drawn as categories, in axis order: None first, then numbers by value (they
    were ordered as text: 16 before 4), then the rest as text (booleans too). Values are told apart by their text."""
    def rank(value: Any):
        if value is None:
            return (0, 0.0, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (1, float(value), str(value))
        return (2, 0.0, str(value))

    distinct = {str(v): v for v in reversed(list(values))}  # the first of each text
    return sorted(distinct.values(), key=rank)


def search_figure(rows: Sequence[Dict[str, Any]], params: Union[Sequence[str], Mapping[str, Any]], metric: str,
                  mode: str, name: str = "", best: Optional[str] = None):
    """A `matplotlib.figure.Figure` of the trials' rows (`trials.csv`'s, in the order the trials started); `params`:
    the searched keys, or the space ({key: spec}), whose log-uniform keys get a log axis; `best`: the trial id the
    search picked (`results.pick_best`, as summary.json names it), marked with a star."""
    from matplotlib.figure import Figure

    specs = params if isinstance(params, Mapping) else {}
    shown = list(params)[:MAX_PARAMETER_PANELS]
    panels = 1 + len(shown)
    cols = min(3, panels)
    lines = math.ceil(panels / cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * lines))
    axes = [fig.add_subplot(lines, cols, i + 1) for i in range(panels)]
    values = [_value(r, metric) for r in rows]
    finite = [v for v in values if v is not None]
    floor = min(finite) if finite else 0.0
    order = list(range(len(rows)))
    done = [i for i in order if values[i] is not None and str(rows[i].get("completed")) == "True"]
    early = [i for i in order if values[i] is not None and i not in done]
    failed = [i for i in order if values[i] is None]
    ax = axes[0]
    ax.scatter(done, [values[i] for i in done], color="tab:blue", zorder=3, gid="trials:completed")
    ax.scatter(early, [values[i] for i in early], facecolors="none", edgecolors="tab:blue", zorder=3,
               gid="trials:stopped_early")
    ax.scatter(failed, [floor] * len(failed), marker="x", color="tab:red", zorder=3, gid="trials:failed")
    so_far = best_so_far(values, mode)
    steps = [(i, b) for i, b in zip(order, so_far) if b is not None]
    if steps:
        ax.step([i for i, _ in steps], [b for _, b in steps], where="post", color="black", lw=1, gid="best_so_far")
    picked = [i for i in order if best is not None and rows[i].get("trial_id") == best and values[i] is not None]
    if picked:
        ax.scatter(picked, [values[i] for i in picked], marker="*", s=160, color="tab:orange", zorder=4,
                   gid="best_trial", label="best")
    ax.set(title=f"{metric} per trial ({mode}; line: best so far)", xlabel="trial (start order)", ylabel=metric)
    for ax, key in zip(axes[1:], shown):
        points = [(rows[i].get(key), values[i]) for i in order if values[i] is not None]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in points)
        if numeric:
            xs = [float(x) for x, _ in points]
        else:
            categories = [str(x) for x in category_order([x for x, _ in points])]
            xs = [float(categories.index(str(x))) for x, _ in points]
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels(categories)
        fill = ["tab:blue" if i in done else "none" for i in order if values[i] is not None]  # hollow: stopped early
        ax.scatter(xs, [v for _, v in points], facecolors=fill, edgecolors="tab:blue", gid=f"param:{key}")
        if numeric and any(kind in (specs.get(key) or {}) for kind in LOG_DISTRIBUTIONS):
            ax.set_xscale("log")
        ax.set(title=key, ylabel=metric)
    if name:
        fig.suptitle(f"Search {name}: {len(rows)} trial(s)")
    fig.tight_layout()
    return fig


def save_search_figure(rows: Sequence[Dict[str, Any]], params: Union[Sequence[str], Mapping[str, Any]], metric: str,
                       mode: str, path: Path, name: str = "", best: Optional[str] = None) -> Path:
    search_figure(rows, params, metric, mode, name, best).savefig(path, dpi=110)
    return path
