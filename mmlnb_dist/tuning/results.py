"""A search's trials as rows (`trials.csv`): one per Tune trial, with its sampled values, its metric for the model it
keeps (`trial_metric`: its best epoch's, not its last report's), its status and where its run folder is."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..config import Config
from ..config.tune import search_mode
from .trial import REPORTS, read_trial_result

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RAY_STATUS = {"TERMINATED": "OK", "ERROR": "ERROR"}
"""Tune's trial statuses as `trials.csv` writes them (OK: finished, ASHA-stopped ones included); others (PENDING,
RUNNING, PAUSED: a search that was interrupted) are written as Tune names them."""
FINISHED = ("OK", "ERROR", "DIVERGED")
"""The statuses of trials that ended; any other one means the search was stopped before its end."""


def error_line(err: BaseException) -> str:
    """What failed a trial, in one line: the last line of the traceback Ray wraps a trial's error in (the exception
    itself, `RuntimeError: boom`; its first line is Ray's coloured `ray::ImplicitFunc.train() (pid=...)`), or
    `Type: message` for an error without one; colour codes stripped."""
    lines = [line.strip() for line in ANSI.sub("", str(err)).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return (lines[-1] if len(lines) > 1 else f"{type(err).__name__}: {lines[0]}")[:300]


def _tune_records(grid) -> List[Any]:
    """Tune's own records of the trials (status, id, start time), one per result and in the same order: Ray's
    ResultGrid builds its results from its ExperimentAnalysis' trials and has no public accessor for them (Ray
    2.60). [] when they are not there (then a result's error alone tells an errored trial)."""
    trials = getattr(getattr(grid, "_experiment_analysis", None), "trials", None)
    return list(trials) if trials is not None and len(trials) == len(grid) else []


def start_order(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rows in the order their trials started (Tune's start time; trials that never started last, as listed).
    Not by trial id: Optuna's ids are random hex, and Ray moves a retried trial to the end of its list."""
    indexed = list(enumerate(rows))
    indexed.sort(key=lambda item: (item[1].get("started") is None, item[1].get("started") or 0.0, item[0]))
    return [row for _, row in indexed]


def kept_value(metrics: Dict[str, Any], metric: str) -> Any:
    """A trial's `metric` for the model it keeps: the last report's, or, for a run that keeps its best validation's
    weights (`vlm.keep_best`: `best/val_loss` beside `val/loss`), the best's: the trials were ranked by their last
    validation while their adapters were their best ones."""
    kept = metrics.get("best/" + metric.replace("/", "_"))
    return kept if kept is not None else metrics.get(metric)


def best_report(result, metric: str, mode: str) -> Any:
    """The best finite `metric` among all of a trial's reports in `mode` (Ray's scope "all"; its history,
    `metrics_dataframe`), else its last report's: the epoch whose checkpoint a trial stopped early kept."""
    metrics = result.metrics or {}
    frame = getattr(result, "metrics_dataframe", None)
    column = frame[metric] if frame is not None and metric in getattr(frame, "columns", ()) else []
    values = [v for v in (finite(x) for x in column) if v is not None]
    last = kept_value(metrics, metric)
    if finite(last) is not None:
        values.append(finite(last))
    if not values:
        return last
    return max(values) if mode == "max" else min(values)


def trial_metric(result, res: Dict[str, Any], status: str, metric: str, mode: str) -> Any:
    """The number a trial is ranked and shown by: what the model it keeps gives (its best epoch's checkpoint, a
    VLM's best adapter), not its last epoch's. A finished trial: its result file's (`trial_result.json`, evaluated
    with its kept checkpoint, as its export); one stopped early (no result file): its best report in the search's
    mode; an errored or diverged one: its last report. A result file's NaN stays NaN (ranked after every finite
    value by `pick_best`): the last report's number would rank the trial on a model it did not keep."""
    if res and not res.get("diverged") and kept_value(res, metric) is not None:
        return kept_value(res, metric)
    if status == "OK" and not res:
        return best_report(result, metric, mode)
    return kept_value(result.metrics or {}, metric)


def trial_rows(results, dirs: Dict[str, Path], cfg: Config) -> List[Dict[str, Any]]:
    """One row per trial, in the order the trials started."""
    records = _tune_records(results)
    rows = []
    for i, r in enumerate(results):
        record = records[i] if records else None
        metrics = r.metrics or {}
        status = RAY_STATUS.get(record.status, record.status) if record is not None else \
            ("ERROR" if r.error else "OK")
        row: Dict[str, Any] = {"status": status}
        row.update({k: v for k, v in (r.config or {}).items()})
        # a trial that failed before its first report has no metrics: Tune's record still names it
        row["trial_id"] = record.trial_id if record is not None else (metrics.get("trial_id") or "?")
        row["started"] = getattr(getattr(record, "run_metadata", None), "start_time", None)
        row["run_dir"] = str(dirs["trials"] / f"{cfg.tune.name}-{row['trial_id']}")
        res = read_trial_result(Path(row["run_dir"])) or {}
        # a finished trial Tune restored after a kill reported its result file once: its count is the file's
        row["iterations"] = res.get(REPORTS) or metrics.get("training_iteration")
        row[cfg.tune.metric] = trial_metric(r, res, status, cfg.tune.metric, search_mode(cfg))
        row["completed"] = bool(res) and not res.get("diverged")
        if res.get("diverged") and status == "OK":  # a result of the search, not an error (trial.run_target)
            row["status"], row["error"] = "DIVERGED", str(res["diverged"])[:300]
        row["trial_seconds"] = res.get("trial_seconds")
        # A trial stopped early (ASHA) has no result file; its last report carries its cache counts.
        for k, v in {**metrics, **res}.items():
            if k.startswith("cache"):
                row[k] = v
        if r.error:
            row["error"] = error_line(r.error)
        rows.append(row)
    return start_order(rows)


def cache_stats(cache_dir: Path, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    files = sorted(str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*") if p.is_file()) \
        if cache_dir.is_dir() else []
    stats = {"cache_files": len(files), "files": files}
    for key in ("cache/hits", "cache/misses", "cache_hits", "cache_misses"):
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if vals:
            stats[key] = int(sum(vals))  # counts; a stopped trial reports them as floats
    return stats


def write_trials_csv(rows: List[Dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        keys = sorted({k for r in rows for k in r})
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def finite(value: Any) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def pick_best(rows: List[Dict[str, Any]], metric: str, mode: str) -> Optional[Dict[str, Any]]:
    """The best row by `metric` among the trials that finished (status OK: Ray's TERMINATED, trials ASHA stopped
    early included) with a finite value; the first of equals in the rows' order; None when there is none.

    Not Ray's `get_best_result`, which reads every trial's last report whatever its status: an errored trial's
    last good epoch (0.99 before it raised) was named best."""
    best = None
    for row in rows:
        value = finite(row.get(metric)) if row.get("status") == "OK" else None
        if value is not None and (best is None or (value > best[0] if mode == "max" else value < best[0])):
            best = (value, row)
    return best[1] if best is not None else None
