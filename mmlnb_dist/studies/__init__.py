"""Variant studies: the rows of an ablation or baseline table, trained on the same shards over seeds, in one table.

    mmlnb-dist ablate --config clip-multilabel data.shards=...   [--rows concat,sum] [--seeds 0,1,2]
    study = run_study(cfg, rows=None, seeds=[0, 1, 2])           # what the command calls

A recipe lists its rows in a `variants` module named by the recipe table (`RecipeSpec.variants`), which defines
`rows(cfg) -> {row: (description, [dotted overrides])}` (the first row is the reference: the full model) and
`METRICS` (the table's columns, metric names of the recipe). Each row x seed is one training run of the recipe in
`<run.output_dir>/<run.name>/<row>-seed<s>`, driven as a pipeline stage: a rerun skips the runs that finished with
the same settings, resumes an interrupted one and reruns one whose settings changed. Runs that share a setting
share its caches (`run.cache_dir`: the study's `cache/`).

The table (mean and standard deviation over seeds on the test split, else validation; the reference row first)
is written to `<study dir>/table.md` and `table.json` and, with MLflow tracking, logged to a parent run whose
children are the rows' runs.
"""
from __future__ import annotations

import importlib
import json
import logging
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .config import Config, apply_overrides, config_from_dict
from .core.errors import ConfigError, UserError
from .pipeline import fingerprint, run_stage
from .recipes import RECIPES, recipe_class

log = logging.getLogger(__name__)

Rows = Dict[str, Tuple[str, List[str]]]


@dataclass
class StudyResult:
    study_dir: Path
    split: str
    """The split the table reports (test when the shards have one, else val)."""
    metrics: List[str]
    table: Dict[str, Dict[str, Any]]
    """row -> {"description", "overrides", "seeds", "runs": [run dirs], "<metric>": [values], "<metric>_mean",
    "<metric>_std"}"""
    markdown: str
    parent_run_id: Optional[str] = None
    skipped: List[str] = field(default_factory=list)
    """Runs that were up to date (`row-seedN`)."""


def study_rows(cfg: Config) -> Tuple[Rows, List[str]]:
    """The recipe's rows for `cfg` and the metrics its table reports."""
    spec = RECIPES[cfg.train.recipe]
    if not spec.variants:
        raise ConfigError(f"train.recipe: the {spec.name} recipe lists no ablation or baseline rows")
    module = importlib.import_module(spec.variants)
    return module.rows(cfg), list(module.METRICS)


def row_config(cfg: Config, row: str, overrides: Sequence[str], seed: int, study_dir: Path) -> Config:
    """The config of one run: the study's config, the row's overrides, the seed, its own run folder."""
    raw = cfg.model_dump(mode="json")
    raw = apply_overrides(raw, [*overrides, f"run.seed={seed}", f"run.output_dir={study_dir}",
                                f"run.name={row}-seed{seed}", f"run.cache_dir={study_dir / 'cache'}",
                                "run.resume=false"])
    try:
        return config_from_dict(raw, f"row '{row}'")
    except ConfigError as err:
        raise ConfigError(f"ablation row '{row}' ({' '.join(overrides)}): {err}") from None


def _split_of(result: Dict[str, Any]) -> str:
    return "test" if any(k.startswith("test/") for k in result) else "val"


def run_study(cfg: Config, rows: Optional[Sequence[str]] = None, seeds: Sequence[int] = (0,)) -> StudyResult:
    """Train every row x seed (skipping up-to-date runs), then write and log the table."""
    from .core.recipe import run as run_recipe

    available, metrics = study_rows(cfg)
    chosen = list(rows) if rows else list(available)
    unknown = [r for r in chosen if r not in available]
    if unknown:
        raise ConfigError(f"--rows: unknown row(s) {', '.join(unknown)}; the {cfg.train.recipe} recipe has "
                          f"{', '.join(available)}")
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    study_dir = Path(cfg.run.dir)
    # Every run's config is built (and validated) before the first one starts.
    configs = {(row, s): row_config(cfg, row, available[row][1], s, study_dir) for row in chosen for s in seeds}
    parent = _open_parent(cfg, study_dir, chosen, seeds)
    results: Dict[Tuple[str, int], Dict[str, Any]] = {}
    skipped: List[str] = []
    for (row, seed), run_cfg in configs.items():
        if parent is not None:  # the rows log where the parent is (the default store follows run.output_dir)
            run_cfg.tracking.parent_run_id, run_cfg.tracking.uri = parent.run_id, parent.uri
        klass = recipe_class(run_cfg.train.recipe)
        sections = getattr(klass, "result_sections", None)
        fp = fingerprint("study-run", {k: v for k, v in run_cfg.model_dump(mode="json").items()
                                       if sections is None or k in sections})
        log.info("study %s: row %s (%s), seed %d", study_dir.name, row, available[row][0], seed)

        def work(resume: bool, run_cfg: Config = run_cfg, klass=klass) -> Dict[str, Any]:
            run_cfg.run.resume = resume
            out = run_recipe(klass, run_cfg)
            return {"metrics": {k: v for k, v in out.items() if isinstance(v, (int, float)) and
                                k.startswith(("val/", "test/"))}}

        stage = run_stage(f"{row}-seed{seed}", Path(run_cfg.run.dir), fp, work)
        if stage.skipped:
            skipped.append(f"{row}-seed{seed}")
        results[(row, seed)] = {**stage.info.get("metrics", {}), "run_dir": str(run_cfg.run.dir)}
    split = _split_of(next(iter(results.values())))
    table = summarise(results, available, chosen, seeds, metrics, split)
    markdown = format_table(table, metrics, split, study_dir.name, seeds)
    (study_dir / "table.md").write_text(markdown)
    (study_dir / "table.json").write_text(json.dumps({"split": split, "seeds": list(seeds), "metrics": metrics,
                                                      "rows": table}, indent=2))
    if parent is not None:
        flat = {f"{row}/{m}_{stat}": table[row][f"{m}_{stat}"] for row in chosen for m in metrics
                for stat in ("mean", "std") if _finite(table[row][f"{m}_{stat}"])}
        parent.finish(metrics=flat, artifacts=[study_dir / "table.md", study_dir / "table.json"])
    return StudyResult(study_dir, split, metrics, table, markdown, parent.run_id if parent else None, skipped)


def summarise(results: Dict[Tuple[str, int], Dict[str, Any]], available: Rows, chosen: Sequence[str],
              seeds: Sequence[int], metrics: Sequence[str], split: str) -> Dict[str, Dict[str, Any]]:
    """Per row: each metric's values over seeds, their mean and (sample) standard deviation (0 for one seed)."""
    table: Dict[str, Dict[str, Any]] = {}
    for row in chosen:
        entry: Dict[str, Any] = {"description": available[row][0], "overrides": list(available[row][1]),
                                 "seeds": list(seeds), "runs": [results[(row, s)]["run_dir"] for s in seeds]}
        for m in metrics:
            values = [float(results[(row, s)].get(f"{split}/{m}", float("nan"))) for s in seeds]
            entry[m] = values
            entry[f"{m}_mean"] = statistics.fmean(values)
            entry[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table[row] = entry
    return table


def _finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def format_table(table: Dict[str, Dict[str, Any]], metrics: Sequence[str], split: str, name: str,
                 seeds: Sequence[int]) -> str:
    """A markdown table: one row per variant (reference first), `mean ± std` per metric."""
    head = f"| row | {' | '.join(metrics)} | what it changes |"
    lines = [f"Study `{name}`: {split} split, mean ± std over seeds {', '.join(map(str, seeds))}", "", head,
             "|" + "---|" * (len(metrics) + 2)]
    for row, entry in table.items():
        cells = [f"{entry[f'{m}_mean']:.4f} ± {entry[f'{m}_std']:.4f}" for m in metrics]
        lines.append(f"| {row} | {' | '.join(cells)} | {entry['description']} |")
    return "\n".join(lines) + "\n"


def _open_parent(cfg: Config, study_dir: Path, rows: Sequence[str], seeds: Sequence[int]):
    """The study's MLflow parent run (reused when the study resumes), or None without MLflow tracking."""
    if "mlflow" not in cfg.tracking.backends:
        return None
    from .core.tracking.runs import ParentRun
    from .core.tracking.server import default_tracking_uri

    state_path = study_dir / "study.json"
    try:
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    except ValueError as err:
        raise UserError(f"{state_path} is not valid JSON ({err}); remove it to start the study's MLflow run "
                        f"afresh") from None
    uri = default_tracking_uri(cfg.tracking, cfg.run.output_dir)
    parent = ParentRun.open(cfg.tracking, uri, cfg.run.output_dir, f"{study_dir.name}-study",
                            tags={"stage": "ablate", "recipe": cfg.train.recipe},
                            params={"rows": ",".join(rows), "seeds": ",".join(map(str, seeds))},
                            resume_id=state.get("parent_run_id"))
    if parent is not None:
        study_dir.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps({"parent_run_id": parent.run_id, "tracking_uri": uri}))
    return parent
