"""Metric names: the one that decides an alias must be one the run logged: a mistyped `register --metric
best/val/balanced_acc` (or `tracking.register_metric`) registered a first version with no metric, and every later
one "None does not beat None", so the alias never moved again. It is refused before anything is registered,
naming the metric, the closest name the run has and the metrics it has.

A metric name MLflow refuses (`val/acc@5`) is logged under one it takes (`mlflow_key`): refused, the call turned
the run's tracking off, and the journal, sent in order, failed on it at every later resume and `tracking sync`.
Two names it takes as one key are refused when logged (`MLflowLogger.log_metrics`): the store mixed their values.
"""
from __future__ import annotations

import difflib
import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Set

from ..errors import UserError

log = logging.getLogger(__name__)

BEST = "best/"
"""`best/<split>/<name>`: the exported best checkpoint's value, which falls back to `<split>/<name>`."""
SELECTABLE = ("best/", "val/", "test/")


def run_metric(run, metric: str, mode: str = "max", client=None) -> Optional[float]:
    """A run's value of `metric`; `best/val/x` (the exported best checkpoint) falls back to `val/x`. The fallback
    is the best `val/x` the run logged in `mode`'s direction, read from its history through `client` (the run's
    metrics hold only the last value: the alias was decided on the last epoch's score while the model registered
    is the best checkpoint's); without a client, the last value."""
    value = run.data.metrics.get(metric)
    if value is None and metric.startswith("best/"):
        plain = metric[len("best/"):]
        value = run.data.metrics.get(plain)
        if value is not None and client is not None:
            from ..checkpoint import better  # (here: checkpoint loads torch, which the journal and sync never need)

            for point in client.get_metric_history(run.info.run_id, plain):
                if better(point.value, value, mode):
                    value = point.value
    return value


class UnknownMetricError(UserError):
    """The selection metric is none the run logged; the message names the metric and the run's metrics."""


def has_metric(metrics: Mapping[str, float], metric: str) -> bool:
    """Whether `metric` has a value in `metrics` (`best/x` falls back to `x`, as `run_metric` reads it)."""
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


MLFLOW_REFUSED = re.compile(r"[^/\w.\- :]")
"""A character MLflow refuses in a metric name (it takes alphanumerics, `_ - . : /` and spaces)."""
MLFLOW_KEY_LENGTH = 250
"""The longest metric name MLflow takes."""
_renamed: Set[str] = set()


def mlflow_key(name: str) -> str:
    """`name` as MLflow takes it: each refused character an underscore, the path MLflow reads it as made plain
    (`val//acc`, `/val/acc` -> `val/acc`; a `..` part `__`), cut to `MLFLOW_KEY_LENGTH`. Warned about once."""
    cut = MLFLOW_REFUSED.sub("_", name)[:MLFLOW_KEY_LENGTH]
    key = "/".join(("__" if p == ".." else p) for p in cut.split("/") if p not in ("", ".")) or "_"
    if key != name and name not in _renamed:
        _renamed.add(name)
        log.warning("MLflow refuses the metric name %r (a character, a path or its length): logged to MLflow as "
                    "%r", name, key)
    return key


def mlflow_names(names, seen: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The MLflow key of each metric name (`mlflow_key`): {key: name}, added to `seen` (the names logged before
    under each key, in the same run) when given. Two names of one key raise `ValueError` naming both: a store keeps
    both values under the key, one metric's history mixed with the other's (or one dropped)."""
    seen = {} if seen is None else seen
    for name in names:
        first = seen.setdefault(mlflow_key(name), name)
        if first != name:
            raise ValueError(f"metrics {first!r} and {name!r} are both logged to MLflow as {mlflow_key(name)!r} (it "
                             f"refuses a character or the length of a name): their values would be mixed in one "
                             f"metric; rename one of them")
    return seen


def mlflow_metrics(event: Dict[str, Any]) -> List[Any]:
    """A journal `metrics` event as MLflow `Metric`s, each name one MLflow takes (`mlflow_key`)."""
    from mlflow.entities import Metric

    return [Metric(mlflow_key(k), v, event["ts"], event["step"]) for k, v in event["metrics"].items()]
