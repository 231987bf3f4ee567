"""What a pipeline run prints at the end and logs as `report.md`: the paper's Table 1 metrics on the held-out
test split (validation beside it), patch and slide level, how good the generated descriptions are (describe's
quality report: distinct texts, overlap with references, class naming per split), the stages' wall times, where
the MLflow store is, the registered model's URI and a ready-to-paste `mmlnb-dist predict` line."""
from __future__ import annotations

import json
import math
import shlex
from typing import Any, Dict, List, Optional, Sequence

from ..config import Config
from ..recipes.vlm.quality import QUALITY_FILE, format_report
from .finish import pipeline_config, recipe_metrics
from .changes import SETTINGS
from .stages import RUNS, SKIPPED_IMAGES, WALL_SECONDS, StageResult

PAPER_COLUMNS = [("accuracy", "Acc"), ("balanced_accuracy", "BAcc"), ("kappa", "Kappa"),
                 ("f1_weighted", "F1"), ("precision_weighted", "Prec"), ("recall_weighted", "Rec"),
                 ("auroc", "AUROC")]


def _pct(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def results_table(evaluation: Dict[str, Any]) -> List[str]:
    """Markdown rows: level x split (test first) x the seven metrics of the paper's Table 1, in %."""
    lines = ["| level | split | " + " | ".join(name for _, name in PAPER_COLUMNS) + " | QWK(ord) |",
             "|---|---|" + "---|" * (len(PAPER_COLUMNS) + 1)]
    for level in ("patch", "slide"):
        for split, m in (evaluation.get(level) or {}).items():
            cells = [_pct(m.get(key)) for key, _ in PAPER_COLUMNS] + [_pct(m.get("quadratic_kappa"))]
            n = f" (n={m['num_samples']:.0f})" if "num_samples" in m else ""
            lines.append(f"| {level} | {split}{n} | " + " | ".join(cells) + " |")
    return lines


def recipe_rows(evaluation: Dict[str, Any]) -> List[str]:
    """A recipe without the paper's columns (e.g. multi-label): its own metrics per split, as computed (not in %),
    test first."""
    patch = evaluation.get("patch") or {}
    splits = sorted(patch, key=lambda s: (s != "test", s))
    # an undefined metric (NaN, null in evaluation.json: macro AUROC on a split lacking a label's negatives) is n/a
    names = sorted({k for m in patch.values() for k in m if (m[k] is None or isinstance(m[k], (int, float)))
                    and k != "num_samples"})
    heads = [f"{s} (n={patch[s]['num_samples']:.0f})" if patch[s].get("num_samples") is not None else s
             for s in splits]
    lines = ["| metric | " + " | ".join(heads) + " |", "|---|" + "---|" * len(splits)]
    lines += [f"| {n} | " + " | ".join(_plain(patch[s].get(n)) for s in splits) + " |" for n in names]
    return lines


def _plain(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def stage_rows(results: Sequence[StageResult]) -> List[str]:
    lines = ["| stage | status | wall time | output |", "|---|---|---|---|"]
    for r in results:
        state = {"ran": "ran", "skipped": "skipped (up to date)", "reused": "reused (before --from)",
                 "reused-other": "reused (before --from), built with other settings than this config's",
                 "input": "given"}[r.status]
        built = float(r.info.get("base_model_seconds") or 0.0) if r.status == "ran" else 0.0
        # A base model built on first use (the tiny VLM: seconds to tens of seconds) is part of the stage's time.
        note = f" ({built:.1f} s of it building the base model, once per cache)" if built >= 1.0 else ""
        runs = int(r.info.get(RUNS) or 1)
        over = f" over {runs} runs" if runs > 1 else ""
        if r.status == "ran" and runs > 1:
            note += f" (resumed: {float(r.info[WALL_SECONDS]):.1f} s{over})"
        if r.status != "ran" and r.info.get(WALL_SECONDS) is not None:
            note = f" (took {float(r.info[WALL_SECONDS]):.1f} s{over} when it ran)"
        if r.status == "ran" and r.rebuilt:  # it had run before: why it was not skipped
            note = (f"{note[:-1]}; " if note else " (") + f"rebuilt: {r.rebuilt})"
        # an existing shard set's check: the set the later stages read, not the folder of its check's record
        output = f"`{r.info['shards']}` (verified; record `{r.output}`)" if r.info.get("shards") else f"`{r.output}`"
        lines.append(f"| {r.name} | {state} | {r.seconds:.1f} s{note} | {output} |")
    lines.append(f"| total | | {sum(r.seconds for r in results):.1f} s | |")
    return lines


def description_rows(results: Sequence[StageResult]) -> List[str]:
    """Describe's quality report as Markdown bullets, when this run has a describe stage whose output holds one."""
    stage = next((r for r in results if r.name == "describe"), None)
    path = stage.output / QUALITY_FILE if stage else None
    if path is None or not path.is_file():
        return []
    return [f"## Descriptions (`{stage.output}`)", ""] + \
        [f"- {line}" for line in format_report(json.loads(path.read_text())).splitlines()] + [""]


def predict_line(cfg: Config, model_uri: str, shards: str, uri: str, out: str, reads_text: bool,
                 adapter: Optional[str], split: str = "test") -> str:
    """The `mmlnb-dist predict` command for new images (here: the held-out `split` of the shards: test, or val
    for shards without one)."""
    args = ["mmlnb-dist", "predict", shards, "--split", split, "--model", model_uri]
    if reads_text:  # the fusion model reads descriptions: the VLM that wrote the training ones writes them
        # with the settings it wrote them with: the fine-tuning run's beside the adapter, else this pipeline's
        args += ["--vlm", str(cfg.vlm.model)] + (["--adapter", adapter] if adapter else
                                                 ["--config", str(pipeline_config(cfg))])
    args += ["--out", out, "--uri", uri]
    return " ".join(shlex.quote(a) for a in args)


def alias_version(registration: Dict[str, Any]) -> Optional[str]:
    """The version the registration's alias points at, when known: recorded since the register stage kept it
    (None: no version holds it, e.g. the alias was deleted since, which `finish.refresh_alias` finds); in older
    records, without the key, only when the alias moved (to the version just registered)."""
    if "alias_version" in registration:  # a recorded None is an answer, not a missing one
        held = registration["alias_version"]
        return str(held) if held is not None else None
    return str(registration["version"]) if registration.get("alias_moved") else None


def served_model(registration: Dict[str, Any]) -> str:
    """The model URI the predict line scores with: the alias when it points at the version just registered (the
    model whose numbers the report shows), else that version itself, not the alias's other holder."""
    name, version, alias = registration["name"], str(registration["version"]), registration.get("alias")
    return f"models:/{name}@{alias}" if alias and alias_version(registration) == version else \
        f"models:/{name}/{version}"


def serving_row(registration: Dict[str, Any]) -> Optional[str]:
    """Where the alias is after this registration (None without an alias)."""
    name, version, alias = registration["name"], str(registration["version"]), registration.get("alias")
    if not alias:
        return None
    holder = alias_version(registration)
    if holder == version:
        return f"- serving URI: `models:/{name}@{alias}` (version {version})"
    if holder is not None:
        return f"- serving URI: `models:/{name}@{alias}` stays on version {holder}; this run's model is " \
               f"`models:/{name}/{version}`"
    return f"- serving URI: `models:/{name}@{alias}` did not move to version {version}; this run's model is " \
           f"`models:/{name}/{version}`"


def tracking_rows(cfg: Config, results: Sequence[StageResult], uri: str) -> List[str]:
    """Where the MLflow runs are (a store no stage has made yet is not offered to `mlflow ui`, which would make it
    empty); with MLflow off, that nothing was tracked there and how to make the run later."""
    if "mlflow" in cfg.tracking.backends:
        from ..core.tracking.server import sqlite_store

        store, logged = sqlite_store(uri), any(r.name in ("finetune-vlm", "train") for r in results)
        if store is not None and not store.is_file() and not logged:  # a slice stopped before them
            return [f"- MLflow store: `{uri}` (not made yet: no stage of this run has logged to it)"]
        return [f"- MLflow store: `{uri}` (browse: `mlflow ui --backend-store-uri {uri}`)"]
    backends = ", ".join(cfg.tracking.backends) or "none"
    row = f"- MLflow: off (tracking.backends: {backends}): no MLflow run was made"
    train = next((r for r in results if r.name == "train" and r.info.get("run_dir")), None)
    if train is not None:
        row += (f"; the training run kept its config and metrics, and `mmlnb-dist tracking import "
                f"{train.info['run_dir']}` makes its MLflow run later")
    return [row]


def copy_rows(evaluation: Dict[str, Any]) -> List[str]:
    """A caveat when held-out samples are copies of train images (`ShardSet.copies_of_train`)."""
    counts = evaluation.get("copies_of_train") or {}
    if not counts:
        return []
    which = " and ".join(f"{n} {split}" for split, n in sorted(counts.items(), reverse=True))
    return [f"**Caveat:** {which} sample(s) are copies of train images (listed in the shards' manifest.json "
            f"'duplicates'): the rows above score them as held out, so they overstate.", ""]


def trained_rows(results: Sequence[StageResult]) -> List[str]:
    """Without an evaluation (a slice that stops at train): the numbers the training run scored its best checkpoint
    with on each split, from the train stage's record, said to be its own; nothing without a train stage."""
    train = next((r for r in results if r.name == "train"), None)
    scored = recipe_metrics((train.info.get("metrics") or {}) if train else {})
    if not scored["patch"]:
        return []
    return ["## Results: the training run's own, best checkpoint (not the evaluate stage's: this slice stops "
            "before evaluate)", ""] + recipe_rows(scored) + [""]


def chosen_on(cfg: Config, results: Sequence[StageResult]) -> str:
    """The metric the train stage's run chose its best checkpoint on, from the stage's record: a train stage reused
    as it is (`--from evaluate`) may have been built with another `train.best_metric` than this config's; this
    config's for a record that keeps no settings (written before they were kept)."""
    train = next((r for r in results if r.name == "train"), None)
    settings = train.info.get(SETTINGS) if train else None
    held = settings.get("train.best_metric") if isinstance(settings, dict) else None
    return held if isinstance(held, str) else cfg.train.best_metric


def final_report(cfg: Config, results: Sequence[StageResult], evaluation: Optional[Dict[str, Any]],
                 registration: Optional[Dict[str, Any]], uri: str, predict: Optional[str],
                 log_file: Optional[str]) -> str:
    """The Markdown report (also what the console shows)."""
    lines = [f"# Pipeline report: {cfg.run.name} ({cfg.train.recipe})", ""]
    if evaluation:
        has_paper = any("balanced_accuracy" in m for m in (evaluation.get("patch") or {}).values())
        on = "the held-out test split" if "test" in (evaluation.get("patch") or {}) else \
            "the validation split (the shards have no test split: the split that chose it, so optimistic)"
        lines += [f"## Results: best checkpoint (chosen on val {chosen_on(cfg, results)}) on {on}"
                  + (", %" if has_paper else ""), ""]
        if has_paper:
            lines += results_table(evaluation)
            lines += ["", "Patch level: every patch; slide level: each slide's patches' mean probabilities, argmax. "
                      "Kappa is unweighted Cohen's kappa; QWK(ord) is quadratic-weighted on the ordinal order.", ""]
        else:
            lines += recipe_rows(evaluation) + [""]
        lines += copy_rows(evaluation)
    else:
        lines += trained_rows(results)
    lines += description_rows(results)
    lines += ["## Stages", ""] + stage_rows(results) + [""]
    left_out = [f"- {r.name}: {r.info[SKIPPED_IMAGES]}" for r in results if r.info.get(SKIPPED_IMAGES)]
    lines += left_out + [""] if left_out else []
    lines += ["## Tracking and model", ""] + tracking_rows(cfg, results, uri)
    if registration and registration.get("registered"):
        lines.append(f"- registered: `models:/{registration['name']}/{registration['version']}` "
                     f"({registration['reason']})")
        serving = serving_row(registration)
        if serving:
            lines.append(serving)
    elif registration:
        lines.append(f"- not registered: {registration.get('reason')}")
    if predict:
        lines += ["", "Predict new images with the model this run registered:", "", "```", predict, "```"]
    if log_file:
        holds = " (per-epoch tables; the best checkpoint's per-class metrics and confusion matrices)" if any(
            r.name == "train" for r in results) else ""  # a slice that stopped before train has none of them
        lines += ["", f"Full log{holds}: `{log_file}`"]
    return "\n".join(lines) + "\n"
