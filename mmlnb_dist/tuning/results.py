"""A search's trials as rows (`trials.csv`): one per Tune trial, with its sampled values, its last reported metric,
its status and where its run folder is."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..config import Config
from .trial import read_trial_result

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_line(err: BaseException) -> str:
    """What failed a trial, in one line: the last line of the traceback Ray wraps a trial's error in (the exception
    itself, `RuntimeError: boom`; its first line is Ray's coloured `ray::ImplicitFunc.train() (pid=...)`), or
    `Type: message` for an error without one; colour codes stripped."""
    lines = [line.strip() for line in ANSI.sub("", str(err)).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return (lines[-1] if len(lines) > 1 else f"{type(err).__name__}: {lines[0]}")[:300]


def trial_rows(results, dirs: Dict[str, Path], cfg: Config) -> List[Dict[str, Any]]:
    rows = []
    for r in results:
        cfgd = r.config or {}
        trial_id = (r.metrics or {}).get("trial_id") or "?"
        row: Dict[str, Any] = {"status": "ERROR" if r.error else "OK"}
        row.update({k: v for k, v in cfgd.items()})
        metrics = r.metrics or {}
        row["iterations"] = metrics.get("training_iteration")
        row[cfg.tune.metric] = metrics.get(cfg.tune.metric)
        row["trial_id"] = metrics.get("trial_id", trial_id)
        row["run_dir"] = str(dirs["trials"] / f"{cfg.tune.name}-{row['trial_id']}")
        res = read_trial_result(Path(row["run_dir"])) or {}
        row["completed"] = bool(res) and not res.get("diverged")
        if res.get("diverged") and not r.error:  # a result of the search, not an error (trial.run_target)
            row["status"], row["error"] = "DIVERGED", str(res["diverged"])[:300]
        row["trial_seconds"] = res.get("trial_seconds")
        # A trial stopped early (ASHA) has no result file; its last report carries its cache counts.
        for k, v in {**metrics, **res}.items():
            if k.startswith("cache"):
                row[k] = v
        if r.error:
            row["error"] = error_line(r.error)
        rows.append(row)
    return rows


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
