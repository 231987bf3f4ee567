"""The metric that decides an alias must be one the run logged: a mistyped `register --metric
best/val/balanced_acc` (or `tracking.register_metric`) registered a first version with no metric, and every later
one "None does not beat None", so the alias never moved again. It is refused before anything is registered,
naming the metric, the closest name the run has and the metrics it has.
"""
from __future__ import annotations

import difflib
from typing import List, Mapping, Optional

from ..errors import UserError

BEST = "best/"
"""`best/<split>/<name>`: the exported best checkpoint's value, which falls back to `<split>/<name>`."""
SELECTABLE = ("best/", "val/", "test/")


class UnknownMetricError(UserError):
    """The selection metric is none the run logged; the message names the metric and the run's metrics."""


def has_metric(metrics: Mapping[str, float], metric: str) -> bool:
    """Whether `metric` has a value in `metrics` (`best/x` falls back to `x`, as `registry.run_metric` reads it)."""
    return metric in metrics or (metric.startswith(BEST) and metric[len(BEST):] in metrics)


def closest(metrics: Mapping[str, float], metric: str) -> Optional[str]:
    """The metric name the run has that `metric` was most likely meant to be (None when none is close)."""
    names = set(metrics) | {BEST + k for k in metrics if k.startswith(SELECTABLE[1:])}
    found = difflib.get_close_matches(metric, sorted(names), n=1, cutoff=0.6)
    return found[0] if found else None


def selectable(metrics: Mapping[str, float]) -> List[str]:
    """The run's metrics a selection would use (scored on a split; the `best/` form of a `val/` or `test/`
    metric left out, as every one of them may be given so), else all of them."""
    names = sorted(k for k in metrics if k.startswith(SELECTABLE[1:])
                   or (k.startswith(BEST) and k[len(BEST):] not in metrics))
    return names or sorted(metrics)


def require_metric(metrics: Mapping[str, float], metric: str, run_id: str, what: str = "the selection metric") \
        -> None:
    """Refuse (`UnknownMetricError`) a `metric` the run `run_id` did not log; `what` names where it was given."""
    if has_metric(metrics, metric):
        return
    near = closest(metrics, metric)
    listed = selectable(metrics)
    shown = ", ".join(listed[:30]) + (f", ... ({len(listed) - 30} more)" if len(listed) > 30 else "")
    raise UnknownMetricError(
        f"{what} {metric} is not a metric of run {run_id}" + (f" (did you mean {near}?)" if near else "")
        + f"; its metrics (each also as best/<metric>, the exported checkpoint's): {shown or 'none'}. Nothing was "
        f"registered")
