"""A study's table: each row's values over seeds, mean and standard deviation, and its markdown. A run with no
number (it diverged, or it failed) is marked as such in its row instead of printing nan."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple


Rows = Dict[str, Tuple[str, List[str]]]


def first_line(err: BaseException) -> str:
    """What a failed run's row shows of its error: the type and the first line of the message."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


def summarise(results: Dict[Tuple[str, int], Dict[str, Any]], available: Rows, chosen: Sequence[str],
              seeds: Sequence[int], metrics: Sequence[str], split: str) -> Dict[str, Dict[str, Any]]:
    """Per row: each metric's values over seeds, their mean and (sample) standard deviation: None for one seed,
    where it is undefined (a 0 would read as a row that does not vary with the seed); NaN where a seed has none."""
    table: Dict[str, Dict[str, Any]] = {}
    for row in chosen:
        entry: Dict[str, Any] = {"description": available[row][0], "overrides": list(available[row][1]),
                                 "seeds": list(seeds), "runs": [results[(row, s)]["run_dir"] for s in seeds],
                                 "diverged": [results[(row, s)].get("diverged") for s in seeds],
                                 "failed": [results[(row, s)].get("failed") for s in seeds]}
        for m in metrics:
            values = [float(results[(row, s)].get(f"{split}/{m}", float("nan"))) for s in seeds]
            entry[m] = values
            entry[f"{m}_mean"] = statistics.fmean(values)
            # NaN (a seed's run diverged): statistics.stdev raises on it instead of answering NaN
            entry[f"{m}_std"] = (None if len(values) < 2 else statistics.stdev(values)
                                 if all(map(math.isfinite, values)) else float("nan"))
        table[row] = entry
    return table


def _cell(mean: float, std: Optional[float]) -> str:
    """`mean ± std` (the mean alone for one seed); n/a, not "nan ± nan", where a seed's value is undefined (NaN)."""
    return "n/a" if not finite(mean) else f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def format_table(table: Dict[str, Dict[str, Any]], metrics: Sequence[str], split: str, name: str,
                 seeds: Sequence[int]) -> str:
    """A markdown table: one row per variant (reference first), `mean ± std` per metric (the value alone, and a
    heading that says so, for one seed)."""
    head = f"| row | {' | '.join(metrics)} | what it changes |"
    over = (f"mean ± std over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else
            f"seed {seeds[0]} only (no spread: give --seeds 0,1,2 for mean ± std)")
    lines = [f"Study `{name}`: {split} split, {over}", "", head, "|" + "---|" * (len(metrics) + 2)]
    for row, entry in table.items():
        marks = [f"{what} (seed {', '.join(map(str, bad))})" for what, bad in (
            (what, [s for s, d in zip(entry["seeds"], entry.get(what) or []) if d]) for what in ("diverged", "failed"))
            if bad]
        if marks:  # no number to average: say so rather than print nan
            cells = ["; ".join(marks)] * len(metrics)
        else:
            cells = [_cell(entry[f"{m}_mean"], entry[f"{m}_std"]) for m in metrics]
        lines.append(f"| {row} | {' | '.join(cells)} | {entry['description']} |")
    errors = [f"- {row}-seed{s} failed: {error}" for row, entry in table.items()
              for s, error in zip(entry["seeds"], entry.get("failed") or []) if error]
    if errors:
        lines += ["", "Failed runs (traceback in study.log; a rerun retries them, finished runs are skipped):", *errors]
    return "\n".join(lines) + "\n"


def keep_earlier_table(study_dir: Path, rows: Sequence[str], seeds: Sequence[int]) -> Optional[Path]:
    """Move the table of an earlier study in `study_dir` with other rows or seeds (`--rows full,concat`, then
    `--rows sum`) to table-<rows>-seeds-<seeds>.md / json / png before this one writes its own: the second call
    rewrote table.* with its rows alone and the first table was gone without a word. It is another study (its
    own MLflow parent run too), so both tables stay. Returns the kept table.json, or None (a rerun with the same
    rows and seeds or more, whose table holds the earlier one's, or no readable earlier table: written over)."""
    try:
        earlier = json.loads((study_dir / "table.json").read_text())
        earlier_rows, earlier_seeds = list(earlier["rows"]), sorted(int(s) for s in earlier["seeds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if set(earlier_rows) <= set(rows) and set(earlier_seeds) <= set(seeds):  # the new table holds it all
        return None
    stem = f"table-{'+'.join(earlier_rows)}-seeds-{'+'.join(map(str, earlier_seeds))}"
    for suffix in (".md", ".json", ".png"):
        if (study_dir / f"table{suffix}").is_file():
            (study_dir / f"table{suffix}").replace(study_dir / f"{stem}{suffix}")
    return study_dir / f"{stem}.json"
